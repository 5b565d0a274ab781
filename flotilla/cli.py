"""The `flotilla` console script: one subcommand per service.

Each subcommand is a module with `main(argv: list[str]) -> int`, imported only when chosen so that
`flotilla sim` does not pay for importing the router's or the control plane's dependencies.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module with main(argv), one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("flotilla.up", "router + control plane + simulated workers on this machine"),
    "router": ("router.main", "the OpenAI-compatible router (data plane)"),
    "control-plane": ("control_plane.main", "the control plane alone (REDIS_URL required)"),
    "agent": ("worker_agent.main", "a worker agent beside an engine (vLLM or TEI)"),
    "sim": ("simulator.cli", "a vLLM / TEI compatible engine simulator (no GPU needed)"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: flotilla <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Run `flotilla <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if args[0] in {"-V", "--version"}:
        from flotilla import __version__

        print(f"flotilla {__version__}")
        return 0
    entry = COMMANDS.get(args[0])
    if entry is None:
        print(f"flotilla: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(entry[0])
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
