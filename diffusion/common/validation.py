"""The one validation kit for every file format and settings class.

Values are checked once, at the edge (a TOML scene, a JSON config, a dataclass built from
command-line options); everything downstream trusts the frozen dataclasses it produced. Every
problem is an :class:`EntropicError` of one line naming the file, the dotted key
(``grid[2].timeline.stagger``), the value and what would be accepted, with a did-you-mean for
near misses.

Two tools:

* checkers (:func:`integer`, :func:`number`, :func:`boolean`, :func:`choice`, :func:`pair`,
  :func:`text`) and :class:`TableReader`, which checks one table against a schema of
  :class:`Key` entries (the scene file);
* :func:`config_from_dict` / :func:`config_to_dict`, the generic inverse pair for the frozen
  config dataclasses written into JSON (model, schedule, training settings).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, TypeVar

from diffusion.common.errors import EntropicError

REQUIRED = object()

Checker = Callable[[Any, str], Any]


class Invalid(Exception):
    """Raised by checkers with the reason; turned into an EntropicError naming file and key."""


@dataclass(frozen=True)
class Key:
    """One key of a table: ``kind`` is a checker turning the raw value into a clean one."""

    kind: Checker
    default: Any = REQUIRED
    only_for: tuple[str, ...] = ()  # keys that belong to some kinds only (the scene's motion)


def type_name(v: Any) -> str:
    """How a value's type reads in a message: "an integer", "a table", ..."""
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a float"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "a table"
    if v is None:
        return "null"  # JSON's; TOML has none
    return type(v).__name__


def quoted(options: Sequence[str]) -> str:
    """``"a", "b", "c"``."""
    return ", ".join(f'"{o}"' for o in options)


def did_you_mean(word: str, options: Sequence[str]) -> str:
    """`` (did you mean "x"?)`` for the closest option, or "" when none is close."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean \"{close[0]}\"?)" if close else ""


def join_key(where: str, name: str) -> str:
    """The dotted key of ``name`` inside table ``where``."""
    return f"{where}.{name}" if where else name


# ----------------------------------------------------------------------------- checkers


def integer(lo: int | None = None, hi: int | None = None) -> Checker:
    """Checker: an integer (not a bool, not a float) within [lo, hi]."""

    def check(v: Any, key: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise Invalid(f"must be an integer, got {type_name(v)} ({brief(v)})")
        if lo is not None and v < lo:
            raise Invalid(f"must be >= {lo}, got {brief(v)}")
        if hi is not None and v > hi:
            raise Invalid(f"must be <= {hi}, got {brief(v)}")
        return int(v)

    return check


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False) -> Checker:
    """Checker: a finite number (int or float; nan/inf refused) within the bounds."""

    def check(v: Any, key: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise Invalid(f"must be a number, got {type_name(v)} ({brief(v)})")
        f = float(v)
        if not math.isfinite(f):
            raise Invalid(f"must be a finite number, got {v!r}")
        if lo is not None and (f <= lo if lo_open else f < lo):
            raise Invalid(f"must be {'>' if lo_open else '>='} {lo:g}, got {v!r}")
        if hi is not None and (f >= hi if hi_open else f > hi):
            raise Invalid(f"must be {'<' if hi_open else '<='} {hi:g}, got {v!r}")
        return f

    return check


def boolean(v: Any, key: str) -> bool:
    """Checker: true or false."""
    if not isinstance(v, bool):
        raise Invalid(f"must be true or false, got {type_name(v)} ({brief(v)})")
    return v


def choice(options: Sequence[str]) -> Checker:
    """Checker: one of ``options`` (with a did-you-mean for near misses)."""

    def check(v: Any, key: str) -> str:
        if not isinstance(v, str):
            raise Invalid(f"must be one of {quoted(options)}, got {type_name(v)} ({brief(v)})")
        if v not in options:
            raise Invalid(f"{brief(v)} is not one of {quoted(options)}{did_you_mean(v, options)}")
        return v

    return check


def pair(item: Checker, allow_scalar: bool) -> Checker:
    """Checker: [x, y] of ``item``; a single value means (v, v) when ``allow_scalar``."""

    def check(v: Any, key: str) -> tuple[Any, Any]:
        if isinstance(v, list):
            if len(v) != 2:
                raise Invalid(f"must be a pair [x, y], got {len(v)} values")
            return (item(v[0], key), item(v[1], key))
        if allow_scalar:
            x = item(v, key)
            return (x, x)
        raise Invalid(f"must be a pair [x, y], got {type_name(v)} ({brief(v)})")

    return check


def text(v: Any, key: str) -> str:
    """Checker: a non-empty string."""
    if not isinstance(v, str) or not v.strip():
        raise Invalid(f"must be a non-empty string, got {type_name(v)} ({brief(v)})")
    return v


def passthrough(v: Any, key: str) -> Any:
    """Checker for a sub-table that its own schema checks later."""
    return v


class TableReader:
    """Checks tables against schemas, naming ``source`` (the file) and the dotted key in errors."""

    def __init__(self, source: str, what: str = "file") -> None:
        self.source = source
        self.what = what  # how the top-level table is named when it is not a table at all

    def fail(self, key: str, message: str) -> EntropicError:
        """The one-line error for ``key``."""
        return EntropicError(f"{self.source}: {key}: {message}")

    def table(self, raw: Any, schema: Mapping[str, Key], where: str, skip: Sequence[str] = ()) -> dict[str, Any]:
        """``raw`` checked against ``schema``: unknown keys refused, defaults filled in."""
        label = where or "top level"
        if not isinstance(raw, dict):
            raise self.fail(where or self.what, f"must be a table, got {type_name(raw)}")
        for name in raw:
            if name not in schema:
                hint = did_you_mean(name, list(schema))
                known = ", ".join(schema)
                raise self.fail(join_key(where, name), f"unknown key in {label}{hint or f' (known keys: {known})'}")
        out: dict[str, Any] = {}
        for name, key in schema.items():
            if name in skip:
                continue
            path = join_key(where, name)
            if name not in raw:
                if key.default is REQUIRED:
                    raise self.fail(path, f"is required in {label}")
                out[name] = key.default
                continue
            try:
                out[name] = key.kind(raw[name], path)
            except Invalid as err:
                raise self.fail(path, str(err)) from None
        return out


# ----------------------------------------------------------------------------- config dataclasses

C = TypeVar("C")


def _is_tuple_field(f: dataclasses.Field) -> bool:
    return _field_type(f).startswith("tuple")


def _field_type(f: dataclasses.Field) -> str:
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


# A config field's annotation -> (does a JSON value fit it, how the message names the type).
_JSON_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "float": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v), "a finite number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "tuple[int, ...]": (
        lambda v: isinstance(v, (list, tuple)) and all(isinstance(i, int) and not isinstance(i, bool) for i in v),
        "an array of integers",
    ),
    "tuple[str, ...]": (
        lambda v: isinstance(v, (list, tuple)) and all(isinstance(i, str) for i in v),
        "an array of strings",
    ),
}


def brief(v: Any, limit: int = 60) -> str:
    """``repr(v)``, shortened for a one-line message (a value may be thousands of characters)."""
    try:
        text = repr(v)
    except ValueError:  # an int of more digits than Python converts to text
        return "a number of thousands of digits"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def config_from_dict(cls: type[C], data: Any, what: str) -> C:
    """Build the frozen config dataclass ``cls`` from JSON ``data`` and validate it.

    The inverse of :func:`config_to_dict`. A non-object, an unknown key, or a value whose JSON
    type does not fit the field (a string for an integer, NaN for a number) is an
    EntropicError naming ``what`` ("model config") and the key; JSON lists become the tuples
    the dataclass holds; ``cls.validate()`` (when defined) checks the values.
    """
    if not isinstance(data, Mapping):
        raise EntropicError(f"{what} must be a JSON object, got {type_name(data)}")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    known = {f.name for f in fields}
    unknown = sorted(set(data) - known, key=str)
    if unknown:
        raise EntropicError(f"unknown {what} key(s) {', '.join(map(str, unknown))}; known keys: {', '.join(sorted(known))}")
    values = dict(data)
    for f in fields:
        kind = _JSON_KINDS.get(_field_type(f))
        if kind is not None and f.name in values and not kind[0](values[f.name]):
            value = values[f.name]
            raise EntropicError(f"{what} {f.name} must be {kind[1]}, got {type_name(value)} ({brief(value)})")
        if _is_tuple_field(f) and isinstance(values.get(f.name), list):
            values[f.name] = tuple(values[f.name])
    cfg = cls(**values)
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-ready dict (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def defaults(cls: type) -> dict[str, Any]:
    """The default value of every field of a dataclass (for command-line defaults and help)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out
