"""JSON Schema export of the contract: one file per event family and per output record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from streamer.contract.events import SubscriptionEvent, SurveyEvent, TicketEvent, UsageEvent
from streamer.contract.outputs import Alert, DeadLetter, HealthSnapshot

SCHEMA_DIR = Path("schemas")  # relative to the checkout the command runs in

FILES: dict[str, Any] = {
    "subscriptions.schema.json": SubscriptionEvent,
    "usage.schema.json": UsageEvent,
    "tickets.schema.json": TicketEvent,
    "surveys.schema.json": SurveyEvent,
    "health.schema.json": HealthSnapshot,
    "alert.schema.json": Alert,
    "deadletter.schema.json": DeadLetter,
}


def render(name: str) -> str:
    """The schema text of one file, stable byte for byte."""
    model = FILES[name]
    if isinstance(model, type) and issubclass(model, BaseModel):
        schema = model.model_json_schema(mode="validation")
    else:
        schema = TypeAdapter(model).json_schema(mode="validation")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://healthstream.dev/schemas/v1/{name}",
        "title": schema.pop("title", name.split(".")[0]),
        **schema,
    }
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def export(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in FILES:
        path = directory / name
        path.write_text(render(name))
        written.append(path)
    return written


def differences(directory: Path = SCHEMA_DIR) -> list[str]:
    """Files in `directory` that are missing or disagree with the models."""
    problems = []
    for name in FILES:
        path = directory / name
        if not path.exists():
            problems.append(f"{path} is missing")
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:  # a folder in its place, bytes that are not UTF-8
            problems.append(f"{path} cannot be read ({getattr(exc, 'strerror', None) or exc})")
            continue
        if text != render(name):
            problems.append(f"{path} disagrees with the models")
    return problems
