"""The private faust names the worker relies on exist, with the shape it expects."""

from __future__ import annotations

import pytest

from streamer.stream import faust_private
from streamer.stream.faust_private import PrivateName


def test_every_private_faust_name_exists_with_the_expected_signature_in_the_pinned_faust() -> None:
    assert faust_private.problems() == []


def test_a_renamed_or_reshaped_name_is_reported_with_what_depends_on_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class UpgradedConsumer:
        async def _wait_next_records(self, timeout: float, extra: int) -> None: ...

    names = [
        PrivateName(UpgradedConsumer, "_wait_next_records", ("self", "timeout"), "dropping fetches"),
        PrivateName(UpgradedConsumer, "_is_changelog_tp", ("self", "tp"), "changelog records"),
    ]
    monkeypatch.setattr(faust_private, "NAMES", (*faust_private.NAMES, *names))
    found = faust_private.problems()
    assert len(found) == 2
    assert "UpgradedConsumer._wait_next_records" in found[0] and "dropping fetches" in found[0]
    assert "UpgradedConsumer._is_changelog_tp is missing" in found[1]


def test_an_attribute_is_only_checked_for_existence() -> None:
    assert PrivateName(faust_private, "current_event", None, "tests").problem() is None
    assert "missing" in (PrivateName(faust_private, "nothing_here", None, "tests").problem() or "")
