"""Reading docker-compose.yml the way Compose does, as far as the tests need: `${VAR:-default}`
interpolation with defaults (or a stand-in for required variables), YAML merge keys, profiles."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.support.processes import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?::?([-?])([^}]*))?\}")
REQUIRED_STAND_IN = "required-variable-stand-in"


def interpolate(text: str, environ: dict[str, str] | None = None) -> str:
    environ = environ or {}

    def value(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if environ.get(name):
            return environ[name]
        if kind == "-":
            return rest
        if kind == "?":
            return REQUIRED_STAND_IN
        return ""
    return _VARIABLE.sub(value, text)


def load_compose(path: Path = COMPOSE_FILE, environ: dict[str, str] | None = None
                 ) -> dict[str, Any]:
    return yaml.safe_load(interpolate(path.read_text(), environ))


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}
