"""Which file and which columns hold each field: a small TOML mapping, or a built-in preset."""

from __future__ import annotations

import tomllib
import unicodedata
from contextlib import suppress
from datetime import UTC, date, datetime
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from streamer.contract.events import AttributeKey
from streamer.contract.messages import plain_message
from streamer.core.config import ScoreConfig
from streamer.settings import read_toml
from streamer.suggest import unknown_key_hint


def _printable(name: str) -> str:
    """A file or column name without control characters: a NUL in a file name stopped the
    import with a traceback (the operating system refuses it), and others print raw."""
    for char in name:
        if unicodedata.category(char) == "Cc":
            raise ValueError(f"holds a control character (U+{ord(char):04X}); names cannot")
    return name


Column = Annotated[str, Field(min_length=1), AfterValidator(_printable)]
ATTRIBUTE_KEY: TypeAdapter[str] = TypeAdapter(AttributeKey)
PROFILE_FIELDS = ("name", "owner", "segment", "tier")  # account.updated's own fields


class Preset(StrEnum):
    fightchurn = "fightchurn"


class DataEndRule(StrEnum):
    """How the end of the data (the export date) is found when no date is given."""

    latest_seen = "latest-seen"  # the latest subscription start or product event time
    latest_start = "latest-start"  # the latest subscription start date


class SubscriptionColumns(BaseModel):
    """Subscription rows: one row is active on [start, end) with its MRR."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: Column
    account: Column = "account_id"
    product: Column = "product"
    start: Column = "start_date"
    end: Column = "end_date"
    mrr: Column = "mrr"
    quantity: Column | None = None  # seats of a plan line
    bill_period_months: Column | None = None  # months per billing interval (1 when unmapped)
    addon_products: list[str] = Field(default_factory=list)  # products that are add-on lines
    addons_file: Column | None = None  # a catalogue of add-ons, used when the file exists
    addons_column: Column = "plan"


class EventColumns(BaseModel):
    """Product events: who did what, when; the event name directly or an id and a lookup table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: Column
    account: Column = "account_id"
    time: Column = "event_time"
    event: Column = "event_type"
    user: Column | None = None  # without it, the account itself is the user
    lookup_file: Column | None = None
    lookup_key: Column = "event_type_id"
    lookup_name: Column = "event_type_name"


def _attribute_names(attributes: dict[str, str]) -> dict[str, str]:
    """Attribute names the contract takes (`account.updated` refuses others on every row)."""
    limit = ScoreConfig().input.max_attributes
    if len(attributes) > limit:
        raise ValueError(f"{len(attributes)} attributes; an account.updated carries at most {limit}")
    for name in attributes:
        try:
            ATTRIBUTE_KEY.validate_python(name)
        except ValidationError as exc:
            raise ValueError(f"{name!r} cannot name an attribute: {plain_message(exc.errors()[0])}") from None
    return attributes


class AccountColumns(BaseModel):
    """The accounts: their ids and, optionally, who each is (one `account.updated` per account,
    dated at its first event); an empty value is no value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: Column
    id: Column = "id"
    name: Column | None = None
    owner: Column | None = None
    segment: Column | None = None
    tier: Column | None = None
    # attribute name -> its column
    attributes: Annotated[dict[str, Column], AfterValidator(_attribute_names)] = Field(default_factory=dict)

    def profile_columns(self) -> dict[str, str]:
        """Profile field (`name`, ..., `attributes.X`) -> its column, for the fields mapped."""
        fields = {key: getattr(self, key) for key in PROFILE_FIELDS if getattr(self, key) is not None}
        return fields | {f"attributes.{name}": column for name, column in self.attributes.items()}


class Mapping(BaseModel):
    """The whole mapping; file names are relative to the folder imported."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    data_end: DataEndRule | date = DataEndRule.latest_seen
    subscriptions: SubscriptionColumns
    events: EventColumns | None = None
    accounts: AccountColumns | None = None

    @field_validator("data_end", mode="before")
    @classmethod
    def _date_text(cls, value: Any) -> Any:
        """A rule, a date or its text; anything else (a TOML date-time, a number) in our words, not
        in those of each type pydantic tried (`data_end.str-enum[DataEndRule]: ...`)."""
        if isinstance(value, str) and value in {rule.value for rule in DataEndRule}:
            return value
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str):
            with suppress(ValueError):
                return date.fromisoformat(value)
        shown = value.isoformat() if isinstance(value, date) else repr(value)
        raise ValueError(f"expected a date YYYY-MM-DD, 'latest-seen' or 'latest-start'; got {shown}")

    def data_end_instant(self) -> datetime | None:
        """The end of the data as midnight UTC when it is a fixed date, else None (found from the data)."""
        if isinstance(self.data_end, date):
            return datetime(self.data_end.year, self.data_end.month, self.data_end.day, tzinfo=UTC)
        return None


class MappingError(ValueError):
    """A mapping that cannot be used; the message names the file and the key."""


def _validated(data: dict[str, Any], source: str) -> Mapping:
    try:
        return Mapping.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_key(error['loc'])}: {_problem(error)}" + unknown_key_hint(Mapping, error)
            for error in exc.errors(include_url=False)
        )
        raise MappingError(f"{source}: {problems}") from None


def _key(loc: tuple[int | str, ...]) -> str:
    """The mapping key of a validation error (`subscriptions.addon_products[0]`), without the
    names pydantic gives the types it tried (`str-enum[DataEndRule]`)."""
    key = ""
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        elif "[" not in part:
            key += f".{part}" if key else part
    return key or "(top)"


def _problem(error: Any) -> str:
    """A validation error's message in the mapping's words: a table where one is expected."""
    if error["type"] == "model_type":
        return "expected a table of keys (e.g. [events] with file = ...)"
    if error["loc"] == ("currency",) and error["type"] == "string_pattern_mismatch":
        return f"expected a currency code of three capital letters (e.g. USD); got {error['input']!r}"
    return plain_message(error)


def load_mapping(path: Path) -> Mapping:
    """A mapping TOML file, validated."""
    return _validated(read_toml(path, "mapping", MappingError), str(path))


def preset_data(preset: Preset) -> dict[str, Any]:
    """A built-in mapping's raw data (it is also documentation: see `streamer import --help`)."""
    text = resources.files("streamer.importer").joinpath(f"{preset.value}.toml").read_text()
    return tomllib.loads(text)


def preset_mapping(preset: Preset) -> Mapping:
    return _validated(preset_data(preset), f"preset {preset.value}")


def with_overrides(mapping: Mapping, overrides: dict[str, str]) -> Mapping:
    """Replace single keys, written `table.key` (e.g. `subscriptions.mrr`), `key` at the top, or
    `table.key.name` in a table of names (`accounts.attributes.region`); an empty value removes
    the key, so it takes its default (an optional column is then not read)."""
    data = mapping.model_dump(mode="json", exclude_none=True)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        if len(parts) > 3 or not all(parts):
            raise MappingError(
                f"--column {dotted}={value}: expected TABLE.KEY=VALUE, e.g. subscriptions.mrr=amount"
            )
        where: dict[str, Any] = data
        for depth, part in enumerate(parts[:-1]):
            inner = where.setdefault(part, {})
            if not isinstance(inner, dict):  # `currency.x`: a top-level value is no table
                shown = ".".join(parts[: depth + 1])
                raise MappingError(
                    f"--column {dotted}={value}: {shown} is a single value, not a table; "
                    f"write --column {shown}=VALUE"
                )
            where = inner
        if value:
            where[parts[-1]] = value
        else:
            where.pop(parts[-1], None)
    return _validated(data, "the mapping with --column overrides")
