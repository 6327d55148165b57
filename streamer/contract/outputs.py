"""Output records: health snapshots (`cs.health`), alerts (`cs.alerts`), dead letters.

The scorer builds these as plain dicts on the hot path; the models here define and document
their shape, export it as JSON Schema, and let tests check that what the core emits conforms.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from streamer.contract.vocabulary import Band, LifecycleStage, Severity

Money = Annotated[str, Field(pattern=r"^-?\d+\.\d{2}$", description="Decimal string, 2 places")]


class Reason(BaseModel):
    """One plain-words reason behind a score or an alert."""

    model_config = ConfigDict(extra="forbid")

    signal: str = Field(description="Machine name of the signal, e.g. usage_trend")
    value: float | str | None = Field(description="The signal's current value")
    baseline: float | str | None = Field(description="What it is compared with, when any")
    message: str = Field(description="What a person reads, e.g. 'usage down 64% vs 4-week baseline'")
    percentile: float | None = Field(
        default=None, ge=0, le=100, description="Where the value stands among the account's peers (0-100)"
    )


class Component(BaseModel):
    """One sub-score of the health score."""

    model_config = ConfigDict(extra="forbid")

    score: float | None = Field(ge=0, le=100, description="0-100, null when the data is missing")
    weight: float = Field(ge=0, le=1, description="Effective weight after renormalisation")
    missing: bool = Field(description="True when no data fed this component (it is neutral)")


class Comment(BaseModel):
    """A recent survey comment, so a person sees the words behind a score."""

    model_config = ConfigDict(extra="forbid")

    at: AwareDatetime
    survey: str
    score: int
    comment: str


class PeerStanding(BaseModel):
    """Where an account's usage stands among its peers (paying accounts of its plan or segment, or all)."""

    model_config = ConfigDict(extra="forbid")

    group: str = Field(
        description="The plan or segment compared within (peers.group_by), or '*': all paying "
        "accounts of the partition"
    )
    size: int = Field(ge=0, description="Paying accounts in that group at the reference")
    percentiles: dict[str, float] = Field(description="Signal -> percentile 0-100 among the peers")


class AccountProfile(BaseModel):
    """Who the account is (the latest `account.updated`)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None
    owner: str | None = Field(description="The CSM who owns the account")
    segment: str | None
    tier: str | None
    attributes: dict[str, str]


class HealthOverride(BaseModel):
    """A person's override of the account's health, while it is active."""

    model_config = ConfigDict(extra="forbid")

    band: Band | None = Field(description="The band asked for (null when a score was)")
    score: float | None = Field(ge=0, le=100, description="The score asked for (null when a band was)")
    reason: str
    author: str
    set_at: AwareDatetime = Field(description="Event time of the override")
    expires_at: AwareDatetime = Field(description="Event time it stops applying")
    computed_score: float = Field(ge=0, le=100, description="What the model says")
    computed_band: Band = Field(description="What the model says")


class HealthSnapshot(BaseModel):
    """An account's latest health, as published on the compacted `cs.health` topic."""

    model_config = ConfigDict(extra="forbid")

    account_id: str
    as_of: AwareDatetime = Field(description="Event time of the evaluation")
    score: float = Field(ge=0, le=100)
    band: Band
    churn_risk_60d: float | None = Field(
        ge=0,
        le=1,
        description="Calibrated probability of churn (MRR reaching 0) within 60 days, from the "
        "configuration's fitted [model]; null when the configuration has none, or the account pays "
        "nothing (churned, or not yet paying)",
    )
    components: dict[str, Component]
    missing: list[str] = Field(description="Components without data (weights renormalised)")
    reasons: list[Reason]
    lifecycle_stage: LifecycleStage
    plan: str | None
    currency: str
    mrr: Money
    arr: Money
    metrics: dict[str, float | int | str | dict[str, int] | None] = Field(
        description="The key metrics behind the score (see the README for each definition)"
    )
    comments: list[Comment]
    peers: PeerStanding | None = Field(
        default=None, description="The account's standing among its peers; null before the first reference"
    )
    profile: AccountProfile | None = Field(
        default=None, description="Who the account is (name, owner, segment); null before an account.updated"
    )
    override: HealthOverride | None = Field(
        default=None,
        description="The active override: then score and band are the override's, computed_* the model's",
    )


class Alert(BaseModel):
    """An at-risk alert (or a recovery) on `cs.alerts`."""

    model_config = ConfigDict(extra="forbid")

    alert_id: str = Field(description="Deterministic for account, rule and triggering state")
    account_id: str
    rule: str
    severity: Severity
    raised_at: AwareDatetime = Field(description="Event time")
    score: float
    band: Band
    previous_score: float | None
    previous_band: Band | None
    mrr: Money
    reasons: list[Reason]
    profile: AccountProfile | None = Field(
        default=None, description="Who the account is (name, owner, segment); null before an account.updated"
    )


class ReroutedFrom(BaseModel):
    """Where a re-routed copy says its message was written (its `healthstream-origin` header)."""

    model_config = ConfigDict(extra="forbid")

    partition: int = Field(ge=0, description="The input topic's partition the producer wrote the message to")
    offset: int = Field(ge=0, description="The message's offset in that partition")


class DeadLetter(BaseModel):
    """A rejected input message, with everything needed to find and fix it.

    The record always fits in one Kafka message: `original` holds at most the first 64 KiB of the
    value (`truncated` says when it was cut), and `original_bytes` and `original_sha256` describe
    the whole value.
    """

    model_config = ConfigDict(extra="forbid")

    original: str = Field(
        max_length=90_000,
        description="The raw value (at most its first 65,536 bytes), as text when the whole value "
        "decodes as UTF-8, else base64; empty for a null value",
    )
    encoding: Literal["text", "base64", "null"] = Field(
        "text", description="How `original` holds the value; null: the message had no value"
    )
    original_bytes: int = Field(ge=0, description="Length of the whole value in bytes")
    original_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the whole value (hex), to match it at its source"
    )
    truncated: bool = Field(description="True when `original` is only a prefix of the value")
    topic: str
    partition: int | None
    offset: int | None
    key: str | None = Field(
        None,
        max_length=1368,
        description="The message key (its first 1,024 bytes): as text when it decodes as UTF-8, else base64",
    )
    key_encoding: Literal["text", "base64"] = Field("text", description="How `key` holds the key's bytes")
    error: str = Field(max_length=2000, description="Human-readable reason (at most 2,000 characters)")
    received_at: AwareDatetime
    rerouted_from: ReroutedFrom | None = Field(
        None,
        description="Set when the rejected message is a keyed copy a worker re-routed to its account's "
        "partition (the producer wrote it keyless or to another partition): where the copy says it "
        "was written; `partition` and `offset` name the copy",
    )


def json_object(value: bytes) -> dict[str, Any] | str:
    """A record read back from an output topic as a JSON object, or why it is not one (anything
    with write access to the topic may have written it)."""
    try:
        found = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return f"not JSON: {exc}"
    if not isinstance(found, dict):
        return f"not a JSON object: {type(found).__name__}"
    return found
