"""The core's dataclasses whose `__init__` is written out (so that mypyc compiles it; the one
`@dataclass` generates runs interpreted): each must still set every field it declares, keep the
declared defaults, and behave as the dataclass did (equality, `dataclasses.replace`)."""

from __future__ import annotations

import ast
import dataclasses
from functools import cache
from typing import Any

import pytest

from streamer.contract.vocabulary import Band, LifecycleStage
from streamer.core.alerts import Observed, Trigger
from streamer.core.engine import Outcome
from streamer.core.facts import Facts
from streamer.core.identity import Applied, Override, Profile
from streamer.core.revenue import Revenue
from streamer.core.score import Evaluation, Inputs
from streamer.core.sentiment import Sentiment
from streamer.core.support import Support
from streamer.core.usage import Usage, Volume, Windows
from streamer.native import CORE_DIR

WRITTEN_OUT = [Facts, Evaluation, Outcome, Trigger, Observed, Windows, Volume, Inputs]

# A value of the right type for the fields whose type says nothing simple, by class and name.
SAMPLES: dict[str, Any] = {
    "percentiles": {"events_28d": 12.5},
    "band": Band.yellow,
    "stage": LifecycleStage.renewal,
    "components": {"adoption": 40.0, "support": None},
    "weights": {"adoption": 1.0},
    "signals": {"dau": (3, 50.0)},
    "facts": Facts(dau=9),
    "inert": frozenset({"features"}),
    "override": Applied(Override(1, "e1", "csm", "why", Band.red), 55.0, Band.green),
    "alerts": [{"alert_id": "a"}],
    "held_back": True,
    "revenue": Revenue(),
    "usage": Usage(),
    "support": Support(),
    "sentiment": Sentiment(),
    "profile": Profile(1, "e1", segment="enterprise"),
}


@cache
def declared_types(cls: type) -> dict[str, str]:
    """Field -> its annotation as written (the compiled classes do not keep them as text)."""
    tree = ast.parse((CORE_DIR / f"{cls.__module__.rsplit('.', 1)[-1]}.py").read_text())
    node = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == cls.__name__)
    return {
        item.target.id: ast.unparse(item.annotation)
        for item in node.body
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
    }


def distinct_value(cls: type, field: dataclasses.Field[Any], index: int) -> Any:
    """A value unlike the default, of the field's type, different for every field."""
    if field.name in SAMPLES:
        return SAMPLES[field.name]
    kind = declared_types(cls)[field.name].split(" | ")[0]
    if kind == "int":
        return 1000 + index
    if kind == "float":
        return 1000.5 + index
    if kind == "str":
        return f"value-{index}"
    raise AssertionError(f"no sample value for {field.name}: {field.type}")


def default_of(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    assert field.default_factory is not dataclasses.MISSING, field.name
    return field.default_factory()


@pytest.mark.parametrize("cls", WRITTEN_OUT, ids=lambda cls: cls.__name__)
def test_the_written_out_init_sets_every_field(cls: type) -> None:
    fields = dataclasses.fields(cls)
    given = {field.name: distinct_value(cls, field, index) for index, field in enumerate(fields)}
    built = cls(**given)
    assert {field.name: getattr(built, field.name) for field in fields} == given


@pytest.mark.parametrize("cls", WRITTEN_OUT, ids=lambda cls: cls.__name__)
def test_the_written_out_init_keeps_the_declared_defaults(cls: type) -> None:
    fields = dataclasses.fields(cls)
    required = {
        field.name: distinct_value(cls, field, index)
        for index, field in enumerate(fields)
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    }
    built = cls(**required)
    for field in fields:
        expected = required[field.name] if field.name in required else default_of(field)
        assert getattr(built, field.name) == expected, field.name
    # a default made by a factory is a fresh object each time, as the dataclass made it
    again = cls(**required)
    for field in fields:
        if field.default_factory is not dataclasses.MISSING:
            assert getattr(built, field.name) is not getattr(again, field.name), field.name


@pytest.mark.parametrize("cls", WRITTEN_OUT, ids=lambda cls: cls.__name__)
def test_equality_and_replace_behave_as_the_dataclass_did(cls: type) -> None:
    fields = dataclasses.fields(cls)
    given = {field.name: distinct_value(cls, field, index) for index, field in enumerate(fields)}
    built = cls(**given)
    assert built == cls(**given)
    changed_field = next(field for field in fields if field.name not in SAMPLES)  # one value each
    changed = dataclasses.replace(built, **{changed_field.name: distinct_value(cls, changed_field, 99)})
    assert changed != built
    assert dataclasses.replace(changed, **{changed_field.name: given[changed_field.name]}) == built


def test_facts_stay_frozen_and_hashable() -> None:
    facts = Facts(dau=3, percentiles={})
    assert facts == Facts(dau=3) and facts != Facts(dau=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        facts.wau = 1  # type: ignore[misc]
    assert hash(Facts(dau=3, percentiles=())) == hash(Facts(dau=3, percentiles=()))  # type: ignore[arg-type]
