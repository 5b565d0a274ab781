"""The router: Flotilla's OpenAI-compatible data plane (`flotilla router`). See docs/router.md."""
