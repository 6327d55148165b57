"""Write a score configuration as TOML: the base file's settings with fitted `[weights]`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(name: str) -> str:
    return name if BARE_KEY.match(name) else json.dumps(name)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def dump_toml(data: Mapping[str, Any]) -> str:
    """TOML text for plain data as `tomllib` reads it (tables, arrays, scalars)."""
    sections: list[str] = []
    _table(data, "", sections)
    return "\n\n".join(sections) + "\n"


def _table(data: Mapping[str, Any], path: str, sections: list[str]) -> None:
    """Append the table at `path` (its own key/value lines) and then its sub-tables."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if not isinstance(v, Mapping)]
    if path and (lines or not data):
        sections.append("\n".join([f"[{path}]", *lines]))
    elif lines:
        sections.append("\n".join(lines))
    for name, table in data.items():
        if isinstance(table, Mapping):
            _table(table, f"{path}.{_key(name)}" if path else _key(name), sections)


def tuned_config_text(
    base: Mapping[str, Any],
    weights: Mapping[str, float],
    header: Sequence[str],
    signal_weights: Mapping[str, float] | None = None,
    model: Mapping[str, Any] | None = None,
) -> str:
    """The base configuration (as read from its TOML file, or empty) with `[weights]` replaced,
    and `[signal_weights]` and `[model]` too when given."""
    fitted: dict[str, Any] = {"weights": dict(weights)}
    if signal_weights is not None:
        fitted["signal_weights"] = dict(signal_weights)
    if model is not None:
        fitted["model"] = dict(model)
    scalars = {k: v for k, v in base.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in base.items() if isinstance(v, Mapping) and k not in fitted}
    comments = "".join(f"# {line}\n" for line in header)
    return comments + "\n" + dump_toml({**scalars, **fitted, **tables})


def write_tuned_config(
    path: Path, base: Mapping[str, Any], weights: Mapping[str, float], header: Sequence[str]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tuned_config_text(base, weights, header))
