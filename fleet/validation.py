"""A small validator for wire schemas: dataclasses in, clear errors out.

Why not pydantic: the schemas are a handful of flat records on hot-ish paths (1,000 workers
heartbeating), the rules are simple, and a 150-line module keeps the wire contract readable and the
dependency list short. `parse(cls, data)` checks a decoded JSON object against the dataclass's
annotations and the constraints declared with `rule(...)`, and raises `ValidationError` naming the
offending field (`param`) so the HTTP edge can answer a 400/422 the client can act on.

Supported annotations: str, int, float (ints accepted), bool, None, `X | None`, `list[X]`,
`dict[str, X]`, `Literal[...]`, nested dataclasses, and classes with a `parse_json(data, path)`
classmethod for tagged unions.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_HINTS: dict[type, dict[str, Any]] = {}


class ValidationError(ValueError):
    """Input that does not fit the schema; `param` is the dotted path of the bad field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclasses.dataclass(frozen=True)
class _Rule:
    ge: float | None = None
    le: float | None = None
    max_len: int | None = None
    min_len: int | None = None
    pattern: re.Pattern[str] | None = None
    check: Callable[[Any], str | None] | None = None


def rule(
    default: Any = dataclasses.MISSING,
    *,
    ge: float | None = None,
    le: float | None = None,
    max_len: int | None = None,
    min_len: int | None = None,
    pattern: str | None = None,
    check: Callable[[Any], str | None] | None = None,
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """A dataclass field with constraints; `check(value)` returns an error message or None."""
    meta = {"rule": _Rule(ge, le, max_len, min_len, re.compile(pattern) if pattern else None,
                          check)}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _type_name(tp: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
             type(None): "null"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "an object"
    return getattr(tp, "__name__", str(tp))


def _value(tp: Any, data: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if data is None:
            if type(None) in options:
                return None
            raise ValidationError(f"{path} must not be null", path)
        non_null = [o for o in options if o is not type(None)]
        if len(non_null) == 1:
            return _value(non_null[0], data, path)
        if isinstance(data, dict) and all(dataclasses.is_dataclass(o) for o in non_null):
            return _tagged(non_null, data, path)
        errors = []
        for option in non_null:
            try:
                return _value(option, data, path)
            except ValidationError as exc:
                errors.append(exc.message)
        raise ValidationError(f"{path}: {'; '.join(errors)}", path)
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if data not in allowed:
            listed = ", ".join(repr(a) for a in allowed)
            raise ValidationError(f"{path} must be one of {listed}, got {data!r}", path)
        return data
    if tp is Any:
        return data
    if tp is float:
        if isinstance(data, int | float) and not isinstance(data, bool):
            if data != data or data in (float("inf"), float("-inf")):
                raise ValidationError(f"{path} must be a finite number", path)
            return float(data)
    elif tp is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
    elif tp in (str, bool):
        if type(data) is tp:
            return data
    elif tp is type(None):
        if data is None:
            return None
    elif origin is list:
        if isinstance(data, list):
            (item_tp,) = typing.get_args(tp)
            return [_value(item_tp, item, f"{path}[{i}]") for i, item in enumerate(data)]
    elif origin is dict:
        if isinstance(data, dict):
            key_tp, item_tp = typing.get_args(tp)
            return {_value(key_tp, k, f"{path} key"): _value(item_tp, v, f"{path}.{k}")
                    for k, v in data.items()}
    elif hasattr(tp, "parse_json"):
        return tp.parse_json(data, path)
    elif dataclasses.is_dataclass(tp):
        return parse(tp, data, path=path)  # type: ignore[arg-type]
    else:
        raise TypeError(f"unsupported schema type {tp!r} at {path}")
    raise ValidationError(f"{path} must be {_type_name(tp)}, got {_json_type(data)}", path)


def _tagged(options: list[Any], data: dict[str, Any], path: str) -> Any:
    """A union of dataclasses is tagged by each one's first field ({"pool": ..})."""
    tags = {dataclasses.fields(o)[0].name: o for o in options}
    present = [tag for tag in tags if tag in data]
    if len(present) != 1:
        listed = ", ".join(repr(t) for t in tags)
        raise ValidationError(f"{path} must have exactly one of {listed}", path)
    return parse(tags[present[0]], data, path=path)


def _json_type(data: Any) -> str:
    if data is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(data), type(data).__name__)


def _apply_rule(value: Any, meta: _Rule, path: str) -> None:
    if value is None:
        return
    if isinstance(value, int | float) and not isinstance(value, bool):
        if meta.ge is not None and value < meta.ge:
            raise ValidationError(f"{path} must be >= {meta.ge:g}, got {value!r}", path)
        if meta.le is not None and value > meta.le:
            raise ValidationError(f"{path} must be <= {meta.le:g}, got {value!r}", path)
    if isinstance(value, str | list | dict):
        if meta.max_len is not None and len(value) > meta.max_len:
            raise ValidationError(f"{path} is too long (at most {meta.max_len})", path)
        if meta.min_len is not None and len(value) < meta.min_len:
            raise ValidationError(f"{path} is too short (at least {meta.min_len})", path)
    if meta.pattern is not None and isinstance(value, str) and not meta.pattern.fullmatch(value):
        raise ValidationError(f"{path} has an invalid format: {value[:64]!r}", path)
    if meta.check is not None:
        problem = meta.check(value)
        if problem:
            raise ValidationError(f"{path} {problem}", path)


def parse(cls: type[T], data: Any, *, path: str = "", allow_unknown: bool = False) -> T:
    """Build `cls` from a decoded JSON object, or raise ValidationError naming the field.

    `allow_unknown=True` ignores fields the schema does not know (for messages from agents of a
    newer version); admin input is strict so a typo is reported instead of silently dropped.
    """
    if not isinstance(data, dict):
        raise ValidationError(f"{path or 'body'} must be a JSON object, got {_json_type(data)}",
                              path or None)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if not allow_unknown:
        unknown = [k for k in data if k not in fields]
        if unknown:
            name = f"{path}.{unknown[0]}" if path else str(unknown[0])
            raise ValidationError(f"unknown field {name!r}", name)
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for name, field in fields.items():
        if not field.init:
            continue
        field_path = f"{path}.{name}" if path else name
        if name not in data:
            if field.default is dataclasses.MISSING and (
                    field.default_factory is dataclasses.MISSING):
                raise ValidationError(f"{field_path} is required", field_path)
            continue
        value = _value(hints[name], data[name], field_path)
        meta: _Rule | None = field.metadata.get("rule")
        if meta is not None:
            _apply_rule(value, meta, field_path)
        values[name] = value
    try:
        return cls(**values)
    except ValidationError as exc:
        if path and exc.param and not exc.param.startswith(path):
            raise ValidationError(f"{path}.{exc.message}", f"{path}.{exc.param}") from None
        raise
