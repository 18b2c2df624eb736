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


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML/JSON-serialisable dict of a (nested) config dataclass."""
    return dataclasses.asdict(config)


def build_config(cls: type[T], values: Mapping[str, Any] | None, where: str = "") -> T:
    """Build a (nested) frozen config dataclass from plain data (YAML/JSON), recursively.

    Fields whose type is itself a config dataclass take a mapping; lists become
    tuples where the field is a tuple. An unknown key is an error that names the
    nearest valid one, with its dotted path (e.g. ``model.widht``).
    """
    import typing

    values = dict(values or {})
    if hasattr(cls, "absorb_unknown"):  # a config that passes some keys through (e.g. diffusers settings)
        values = cls.absorb_unknown(values)  # type: ignore[attr-defined]
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{where}{key}"
        if key not in fields:
            near = difflib.get_close_matches(str(key), sorted(fields), n=1)
            hint = f"; did you mean {where + near[0]!r}?" if near else ""
            raise ValueError(f"unknown config key {path!r}{hint} Valid keys here: {', '.join(sorted(fields))}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise ValueError(f"config key {path!r} takes a mapping of {hint.__name__} fields, got {value!r}")
            value = build_config(hint, value, f"{path}.")
        elif isinstance(value, list) and "tuple" in str(hint):
            value = tuple(value)
        elif isinstance(value, str) and "float" in str(hint):
            value = _yaml_float(value)
        kwargs[key] = value
    return cls(**kwargs)  # type: ignore[call-arg]


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every setting that differs; a section present on one side only is named once
    (``(absent)`` on the other side)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                out.append(f"{path}: (absent) -> {new[key]!r}")
            elif key not in new:
                out.append(f"{path}: {old[key]!r} -> (absent)")
            else:
                out += differences(old[key], new[key], path)
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``update`` key by key at every depth: a nested mapping in ``update`` changes only
    the keys it names (``{"data": {"n": 50}}`` keeps ``data.image_size``). Returns a new dict."""
    import copy

    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(values: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML: ``3``, ``1e-3``, ``[3, 5]``,
    ``null``) to a nested plain dict, returning a new dict."""
    import copy

    import yaml

    out = copy.deepcopy(dict(values))
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value (e.g. model.depth=8)")
        key, raw = item.split("=", 1)
        if not key:
            raise ValueError(f"override {item!r} has an empty key")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
        value = yaml.safe_load(raw)
        node[parts[-1]] = _yaml_float(value) if isinstance(value, str) else value
    return out


def _yaml_float(text: str) -> Any:
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; take it as the number it means."""
    try:
        return float(text)
    except ValueError:
        return text
