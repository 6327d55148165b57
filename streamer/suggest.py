"""'Did you mean ...?' for a key a configuration file names that its model does not have."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import get_args

from pydantic import BaseModel
from pydantic_core import ErrorDetails


def _model_of(annotation: object) -> type[BaseModel] | None:
    """The model a field holds (directly, or as one member of an optional union)."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def unknown_key_hint(model: type[BaseModel], error: ErrorDetails) -> str:
    """`" (did you mean 'support'?)"` when `error` (one of `model`'s validation errors) is an
    unknown key and `model` has a field of a close name at that place; else ""."""
    if error["type"] != "extra_forbidden":
        return ""
    return _closest_key(model, error["loc"])


def _closest_key(model: type[BaseModel], location: Sequence[int | str]) -> str:
    current: type[BaseModel] | None = model
    for part in location[:-1]:
        field = current.model_fields.get(str(part)) if current is not None else None
        current = _model_of(field.annotation) if field is not None else None
    if current is None or not location:
        return ""
    return did_you_mean(str(location[-1]), list(current.model_fields))


def did_you_mean(name: str, choices: Sequence[str]) -> str:
    """`" (did you mean 'support'?)"` when one of `choices` is close to `name`; else ""."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
