"""Validation messages in plain words (pure)."""

from __future__ import annotations

from typing import Any


def plain_message(error: Any) -> str:
    """A pydantic validation error's message (an item of `ValidationError.errors()`) without
    the "Value error, " pydantic puts in front of the messages our own validators raise."""
    return str(error["msg"]).removeprefix("Value error, ")
