"""The worker agent: one per GPU machine, beside vLLM or TEI (see docs/worker-agent.md)."""
