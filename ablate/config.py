"""Validation helpers shared by every frozen config in the package.

Configs are frozen dataclasses; values are checked where they enter
(``__post_init__``) and every failure is a ``ValueError`` that says what was
given and what is allowed.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Iterable, Mapping, TypeVar

T = TypeVar("T")


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}")


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None,
              odd: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name}={value} is too small; allowed: >= {low}")
    if high is not None and value > high:
        raise ValueError(f"{name}={value} is too large; allowed: <= {high}")
    if odd and value % 2 == 0:
        raise ValueError(f"{name}={value} must be odd (allowed: 1, 3, 5, ...)")


def check_float(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name}={value} is out of range; allowed: {'>' if low_open else '>='} {low}")
    if high is not None and (value >= high if high_open else value > high):
        raise ValueError(f"{name}={value} is out of range; allowed: {'<' if high_open else '<='} {high}")


def from_dict(cls: type[T], values: Mapping[str, Any]) -> T:
    """Build the dataclass ``cls`` from a mapping, naming the nearest valid key on a typo."""
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in values:
        if key not in fields:
            near = difflib.get_close_matches(str(key), sorted(fields), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"unknown {cls.__name__} key {key!r}{hint} Valid keys: {', '.join(sorted(fields))}")
    return cls(**values)  # type: ignore[call-arg]


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML/JSON-serialisable dict of a (nested) config dataclass."""
    return dataclasses.asdict(config)
