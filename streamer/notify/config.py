"""The notifier's configuration: webhook destinations, their filters, retries and rate limits.

One TOML file with a `[[destinations]]` table per webhook; every other field has a default. A
bad file is refused with one line naming the file, the key and what was wrong with it; the
value given is shown only for keys whose values are not secrets (never a URL, a header or an
unknown key's value: webhook URLs and headers carry credentials).
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from streamer.contract.messages import plain_message
from streamer.contract.vocabulary import Severity
from streamer.core.alerts import RULES
from streamer.core.config import Float, Int
from streamer.settings import host_name_problem, read_toml
from streamer.suggest import did_you_mean, unknown_key_hint

SEVERITY_RANK = {Severity.info: 0, Severity.warning: 1, Severity.critical: 2}
NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110's token


class NotifyConfigError(Exception):
    """A notifier configuration that cannot be used; the message says what to fix."""


class Format(StrEnum):
    """The body a destination receives."""

    json = "json"  # {"source": "healthstream", "alerts": [alert, ...]}
    slack = "slack"  # Slack incoming webhook: {"text": ..., "blocks": [...]}


class Strict(BaseModel):
    """Numbers as the file types them (`Float`, `Int`: pydantic's strict mode, an int is a float):
    `rate_per_minute = true` read as 1.0 and `burst = "5"` as 5."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Retry(Strict):
    """Exponential backoff: initial, initial * multiplier, ... capped at max; retried until it
    succeeds (a receiver that is down for a while loses nothing) unless max_attempts is set."""

    initial_seconds: Annotated[Float, Field(gt=0, le=3600)] = 1.0
    multiplier: Annotated[Float, Field(ge=1, le=10)] = 2.0
    max_seconds: Annotated[Float, Field(gt=0, le=86400)] = 300.0
    jitter: Annotated[Float, Field(ge=0, le=1)] = 0.1  # ± this fraction of each delay
    max_attempts: Annotated[Int, Field(ge=1, le=10**6)] | None = None  # None: retry until it succeeds

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max_seconds < self.initial_seconds:
            raise ValueError(
                f"max_seconds ({self.max_seconds}) must be at least initial_seconds ({self.initial_seconds})"
            )
        return self


class Destination(Strict):
    """One webhook and which alerts it receives (an empty filter lets everything through)."""

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=NAME_PATTERN)]
    url: AnyHttpUrl
    format: Format = Format.json
    rules: tuple[str, ...] = ()  # alert rules, e.g. ["scheduled_cancellation", "payment_failed"]
    min_severity: Severity = Severity.info
    owners: tuple[str, ...] = ()  # matched against the alert's `owner` when it has one
    segments: tuple[str, ...] = ()  # matched against the alert's `segment` when it has one
    # Messages a minute (a digest is one); at least one in 100 minutes: 5e-324 passed `gt=0`,
    # became 0 a second, and the notifier stopped at its start.
    rate_per_minute: Annotated[Float, Field(ge=0.01, le=60_000)] = 60.0
    burst: Annotated[Int, Field(ge=1, le=60_000)] = 10
    digest_seconds: Annotated[Float, Field(gt=0, le=86400)] | None = None  # None: one message per alert
    max_digest_alerts: Annotated[Int, Field(ge=1, le=1000)] = 100
    # At least 0.1 s: with 1e-9 no request could ever be answered, and each alert was retried for good.
    timeout_seconds: Annotated[Float, Field(ge=0.1, le=300)] = 10.0
    headers: dict[str, str] = Field(default_factory=dict)  # e.g. an Authorization header
    retry: Retry | None = None  # [retry] with the keys this table sets (NotifyConfig lays them over)

    @field_validator("url", mode="before")
    @classmethod
    def _url_as_written(cls, url: object) -> object:
        if not isinstance(url, str):
            return url  # the URL type says what is wrong with it
        # The URL parser drops CR, LF and tabs: the request would go elsewhere than written.
        if any(char.isspace() or unicodedata.category(char) == "Cc" for char in url):
            raise ValueError("the URL must not contain spaces or control characters")
        # It also reads `http:///hook` as host `hook` and `\` as `/`, and takes port 0, to which
        # every attempt fails and is retried for ever.
        if "\\" in url:
            raise ValueError("the URL must not contain a backslash")
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError("the URL has no host (scheme://host[:port]/path)")
        try:
            port = parts.port
        except ValueError:
            port = None  # out of range or not a number: the URL type says so
        if port == 0:
            raise ValueError("the URL's port must be 1-65535")
        return url

    @field_validator("url")
    @classmethod
    def _host_resolvable(cls, url: AnyHttpUrl) -> AnyHttpUrl:
        """A host the resolver cannot encode (`hooks..example.com`, a part over 63 characters)
        failed every delivery with a UnicodeError: each alert was given up on, with a traceback,
        and committed as if delivered. Only the host is named: the rest of a URL may be a secret."""
        problem = host_name_problem(url.host or "")
        if problem:
            raise ValueError(f"the URL's host {problem}")
        return url

    @model_validator(mode="after")
    def _digest_alerts_need_a_digest(self) -> Self:
        """Without digest_seconds every alert is a message of its own: max_digest_alerts did nothing."""
        if "max_digest_alerts" in self.model_fields_set and self.digest_seconds is None:
            raise ValueError(
                "max_digest_alerts applies to digests only: set digest_seconds too, or leave it out"
            )
        return self

    @model_validator(mode="after")
    def _one_authorization(self) -> Self:
        """aiohttp refuses a request with credentials in the URL and an Authorization header: every
        alert to such a destination was rejected, at its first delivery."""
        if (self.url.username or self.url.password) and any(
            n.lower() == "authorization" for n in self.headers
        ):
            raise ValueError(
                "the URL holds credentials (user:password@) and headers set Authorization too: keep one"
            )
        return self

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, rules: tuple[str, ...]) -> tuple[str, ...]:
        # A misspelt rule matched no alert: the destination received nothing, without a word.
        for rule in rules:
            if rule not in RULES:
                hint = did_you_mean(rule, RULES) or f"; rules are {', '.join(RULES)}"
                raise ValueError(f"unknown alert rule {rule!r}{hint}")
        return rules

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        """Refused here rather than by aiohttp at the first delivery; names the header, not its value."""
        seen: dict[str, str] = {}
        for name, value in headers.items():
            problem = header_problem(name, value)
            if problem is not None:
                raise ValueError(f"header {name!r} {problem}")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by the notifier for every message; leave it out")
            if name.lower() in seen:
                raise ValueError(
                    f"headers {seen[name.lower()]!r} and {name!r} are the same header (names ignore case)"
                )
            seen[name.lower()] = name
        return headers


# Set by the notifier itself (`delivery.HttpSender`): a destination's own value would replace
# the per-message `Idempotency-Key` (a receiver that dedupes on it would drop every alert after
# the first as a duplicate) or describe a body the notifier does not send.
RESERVED_HEADERS = frozenset(
    {"content-type", "idempotency-key", "content-length", "transfer-encoding", "host"}
)


def header_problem(name: str, value: str) -> str | None:
    """What HTTP forbids in the header `name: value` (a CR or LF would even start a header of
    its own), or None."""
    if not HEADER_NAME.fullmatch(name):
        return "is not a header name: letters, digits and !#$%&'*+-.^_`|~ only"
    if any(char != "\t" and unicodedata.category(char) == "Cc" for char in value):
        return "has a control character (CR, LF or another) in its value, which HTTP forbids"
    return None


class NotifyConfig(Strict):
    """The whole notifier configuration (one TOML file)."""

    destinations: Annotated[tuple[Destination, ...], Field(min_length=1)]
    retry: Retry = Retry()
    max_in_flight: Annotated[Int, Field(ge=1, le=100_000)] = 1000  # per destination: read, not yet done

    @model_validator(mode="before")
    @classmethod
    def _inherit_retry(cls, data: object) -> object:
        """Lay each destination's `retry` keys over `[retry]` before either is validated: the table
        replaced `[retry]` whole (`{max_attempts = 5}` reset the delays to their defaults)."""
        if not isinstance(data, dict) or not isinstance(data.get("destinations"), list):
            return data
        base = data.get("retry", {})
        if not isinstance(base, dict) or not _valid_retry(base):
            return data  # refused as `retry....`, once, not again under every destination
        destinations = [_with_retry(destination, base) for destination in data["destinations"]]
        return {**data, "destinations": destinations}

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [destination.name for destination in self.destinations]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"destination names must be unique; repeated: {', '.join(repeated)}")
        return self

    def retry_for(self, destination: Destination) -> Retry:
        """The destination's retry: `[retry]` with the keys its own `retry` sets (laid over at load)."""
        return destination.retry or self.retry


def _valid_retry(table: dict[str, object]) -> bool:
    try:
        Retry.model_validate(table)
    except ValidationError:
        return False
    return True


def _with_retry(destination: object, base: dict[str, object]) -> object:
    """`destination` with its `retry` table laid over `base` (`[retry]`), when it has one."""
    if not isinstance(destination, dict) or not isinstance(destination.get("retry"), dict):
        return destination
    return {**destination, "retry": {**base, **destination["retry"]}}


def load_notify_config(path: Path) -> NotifyConfig:
    """Read and validate the notifier's TOML file; NotifyConfigError says what is wrong, in one line."""
    data = read_toml(path, "notify config", NotifyConfigError)
    try:
        return NotifyConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        deeper = {error["loc"][:1] for error in errors if len(error["loc"]) > 1}
        problems = "; ".join(
            _problem(error, data)
            for error in errors
            if not (len(error["loc"]) == 1 and error["loc"] in deeper)  # its items' errors say more
        )
        raise NotifyConfigError(f"notify config file {path} is invalid: {problems}") from None


# Keys whose values may be shown in an error: not `url` or `headers` (credentials), nor the
# tables, whose values hold them, nor a `name` that is not one (it may be a URL pasted there).
SHOWN_KEYS = (
    frozenset(Destination.model_fields) | frozenset(Retry.model_fields) | frozenset(NotifyConfig.model_fields)
) - {"url", "headers", "destinations", "retry", "name"}


def _problem(error: ErrorDetails, data: object) -> str:
    """`destinations['crm'].format: Input should be 'json' or 'slack' (got 'teams')`."""
    return f"{_where(error['loc'], data)}: {_message(error)}{_shown_input(error)}"


def _message(error: ErrorDetails) -> str:
    """What is wrong, in the file's terms: where a key set in the wrong table goes, the key an
    unknown one is close to, a list for pydantic's tuple."""
    if error["type"] == "extra_forbidden":
        return _misplaced(error["loc"]) or plain_message(error) + _closest_key(error)
    if error["type"] == "tuple_type":
        return LIST_OF.get(str(error["loc"][-1]), 'Input should be a list of strings, e.g. ["a", "b"]')
    return plain_message(error)


LIST_OF = {"destinations": "Input should be an array of tables: a [[destinations]] section for each"}
# Keys of another table, named where they were set: the table they belong in.
ELSEWHERE = {
    "max_in_flight": (
        "set it once, at the top of the file (before any [[destinations]]), for every destination"
    ),
    **{
        key: f"set it in [retry], or in this destination's retry = {{ {key} = ... }}"
        for key in Retry.model_fields
    },
}


def _misplaced(loc: tuple[int | str, ...]) -> str | None:
    """Where a known key set in a destination's table goes, or None."""
    if len(loc) == 3 and loc[0] == "destinations" and str(loc[2]) in ELSEWHERE:
        return f"is not a destination's key: {ELSEWHERE[str(loc[2])]}"
    return None


def _closest_key(error: ErrorDetails) -> str:
    """` (did you mean 'min_severity'?)`, as the score configuration says (its models have no
    lists: the destination's index is left out of the path the hint walks)."""
    keys = error.copy()
    keys["loc"] = tuple(step for step in error["loc"] if isinstance(step, str))
    return unknown_key_hint(NotifyConfig, keys)


def _shown_input(error: ErrorDetails) -> str:
    """` (got <value>)` when the value is a plain one of a key that holds no secret, else ''."""
    keys = [step for step in error["loc"] if isinstance(step, str)]
    value = error.get("input")
    if error["type"] == "extra_forbidden" or not keys or keys[-1] not in SHOWN_KEYS:
        return ""
    if not isinstance(value, str | int | float | bool):  # a table or list may hold anything
        return ""
    return f" (got {value!r})"


def _where(loc: tuple[int | str, ...], data: object) -> str:
    """`destinations[1].url` (named by the destination's name when it is a valid one)."""
    parts: list[str] = []
    node = data
    for step in loc:
        if isinstance(step, int):
            item = node[step] if isinstance(node, list) and step < len(node) else None
            index = f"[{_name(item)!r}]" if _name(item) else f"[{step}]"
            if parts:
                parts[-1] += index
            else:
                parts.append(index)
            node = item
        else:
            parts.append(step if step.isascii() and step.isprintable() else repr(step))
            node = node.get(step) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


def _name(item: object) -> str | None:
    """The destination's name when `item` is a table with a valid one (anything else given as a
    name might be a URL or a token)."""
    name = item.get("name") if isinstance(item, dict) else None
    return name if isinstance(name, str) and re.fullmatch(NAME_PATTERN, name) else None
