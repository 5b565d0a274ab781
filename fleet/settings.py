"""Typed settings read once from flags and the environment.

Every service declares one frozen dataclass whose fields carry an `option(...)` describing the
command-line flag and the environment variable that may set it. `load_settings(cls, argv, environ)`
resolves each field as: flag if given, else environment variable if set, else the default; converts
it to the field's type; and raises `SettingsError` naming the flag or variable on bad input.
Cross-field rules live in the dataclass's `__post_init__` and raise `SettingsError` with the values.

    @dataclass(frozen=True)
    class AgentSettings:
        port: int = option(8080, flag="--port", help="agent port", minimum=1, maximum=65535)
        heartbeat_interval_s: float = option(10.0, env="HEARTBEAT_INTERVAL_S", minimum=0.05)
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the flag or environment variable."""


@dataclasses.dataclass(frozen=True)
class _Option:
    flag: str | None
    env: str | None
    help: str
    choices: tuple[str, ...] | None
    minimum: float | None
    maximum: float | None
    secret: bool


def option(
    default: Any = dataclasses.MISSING,
    *,
    flag: str | None = None,
    env: str | None = None,
    help: str = "",  # noqa: A002 - mirrors argparse's own keyword
    choices: Sequence[str] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    secret: bool = False,
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """Declare a settings field; `secret=True` keeps its value out of `describe()`."""
    meta = _Option(
        flag, env, help, tuple(choices) if choices else None, minimum, maximum, secret
    )
    # Secrets stay out of repr() so that logging a settings object cannot leak them.
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata={"option": meta},
                                 repr=not secret)
    return dataclasses.field(default=default, metadata={"option": meta}, repr=not secret)


def _required(field: dataclasses.Field[Any]) -> bool:
    return (field.default is dataclasses.MISSING
            and field.default_factory is dataclasses.MISSING)


def _source_name(meta: _Option, from_flag: bool) -> str:
    if from_flag and meta.flag:
        return meta.flag
    return meta.env or meta.flag or "?"


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def convert(raw: str, tp: Any, name: str) -> Any:
    """Convert one textual setting to `tp`; empty text means None for optional fields."""
    inner, optional = _strip_optional(tp)
    if optional and raw.strip() == "":
        return None
    if inner is str:
        return raw
    if inner is bool:
        text = raw.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise SettingsError(f"{name} must be a boolean (true/false), got {raw!r}")
    if inner is int:
        try:
            return int(raw.strip())
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if inner is float:
        try:
            return float(raw.strip())
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if typing.get_origin(inner) is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    raise TypeError(f"unsupported settings type {tp!r} for {name}")


def _check(value: Any, meta: _Option, name: str) -> None:
    if value is None:
        return
    if meta.choices is not None and value not in meta.choices:
        raise SettingsError(f"{name} must be one of {', '.join(meta.choices)}, got {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if meta.minimum is not None and value < meta.minimum:
            raise SettingsError(f"{name} must be >= {meta.minimum}, got {value!r}")
        if meta.maximum is not None and value > meta.maximum:
            raise SettingsError(f"{name} must be <= {meta.maximum}, got {value!r}")


def build_parser(cls: type, prog: str, description: str = "") -> argparse.ArgumentParser:
    """An argparse parser with one flag per field that declares one (all default to None)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        meta: _Option | None = field.metadata.get("option")
        if meta is None or meta.flag is None:
            continue
        inner, _ = _strip_optional(hints[field.name])
        env_note = f" [env {meta.env}]" if meta.env else ""
        help_text = f"{meta.help}{env_note}"
        if inner is bool and field.default is False:
            parser.add_argument(meta.flag, dest=field.name, action="store_const", const="true",
                                default=None, help=help_text)
        else:
            parser.add_argument(meta.flag, dest=field.name, default=None, help=help_text,
                                metavar=field.name.upper())
    return parser


def load_settings(
    cls: type[T],
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    prog: str = "flotilla",
    description: str = "",
) -> T:
    """Build `cls` from flags (win), then environment variables, then field defaults."""
    environ = {} if environ is None else environ
    parser = build_parser(cls, prog, description)
    args = parser.parse_args(list(argv or []))
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        meta: _Option | None = field.metadata.get("option")
        if meta is None:
            continue
        raw = getattr(args, field.name, None)
        from_flag = raw is not None
        if raw is None and meta.env and meta.env in environ:
            raw = environ[meta.env]
        if raw is None:
            if _required(field):
                raise SettingsError(f"{_source_name(meta, False)} is required")
            continue
        name = _source_name(meta, from_flag)
        value = convert(raw, hints[field.name], name)
        _check(value, meta, name)
        values[field.name] = value
    return cls(**values)


def describe(settings: Any) -> dict[str, Any]:
    """The settings as a dict for start-up logs, with secrets masked."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(settings):
        meta: _Option | None = field.metadata.get("option")
        value = getattr(settings, field.name)
        if meta is not None and meta.secret and value:
            value = "***"
        out[field.name] = value
    return out
