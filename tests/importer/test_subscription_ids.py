"""Subscription ids are made from the account and the add-on's name: an add-on whose name the
contract takes as a plan but not inside an id gets a stable hash of it there instead, and an
account id too long for its subscription ids is a bad row of the account column."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from streamer.cli import main

from .test_import import read_events

HASHED = re.compile(r"^a1:addon=#[0-9a-f]{12}:1$")


def import_addons(tmp_path: Path, account: str, addons: list[str], *options: str) -> tuple[Result, Path]:
    """An account on the plan `basic` with each of `addons` from 2024-01-01, open-ended."""
    rows = [f"{account},basic,2024-01-01,,100"] + [f"{account},{addon},2024-01-01,,10" for addon in addons]
    (tmp_path / "subs.csv").write_text(
        "account_id,product,start_date,end_date,mrr\n" + "\n".join(rows) + "\n"
    )
    listed = json.dumps(addons, ensure_ascii=False)  # TOML reads a JSON list of strings
    (tmp_path / "map.toml").write_text(
        f'data_end = "2024-02-01"\n[subscriptions]\nfile = "subs.csv"\naddon_products = {listed}\n'
    )
    out = tmp_path / "out.jsonl"
    args = ["import", str(tmp_path), "--mapping", str(tmp_path / "map.toml"), "--out", str(out), *options]
    return CliRunner().invoke(main, args), out


def started_ids(out: Path) -> dict[str, str]:
    """plan -> subscription id of each subscription.started."""
    return {
        event["plan"]: event["subscription_id"]
        for event in read_events(out)
        if event["event_type"] == "subscription.started"
    }


ADDONS_NOT_IN_AN_ID = [
    "Seats\u00a0Pack",  # a no-break space
    "Cafe\u0301",  # "Café" decomposed (NFD)
    "\U0001f680\ufe0f Boost",  # an emoji with its variation selector
]


@pytest.mark.parametrize("addon", ADDONS_NOT_IN_AN_ID, ids=["no-break-space", "nfd", "variation-selector"])
def test_an_addon_whose_name_cannot_be_part_of_an_id_gets_a_hash_of_it_there(
    tmp_path: Path, addon: str
) -> None:
    """Each was a bad row "field 'subscription_id' ...", a field the tables do not hold."""
    result, out = import_addons(tmp_path, "a1", [addon])
    assert result.exit_code == 0, result.output
    assert "skipped bad rows: 0" in result.output
    ids = started_ids(out)  # the plan keeps the name as written
    assert ids["basic"] == "a1:plan:1" and HASHED.match(ids[addon]), ids


def test_the_hashes_of_addon_names_differ_and_are_the_same_on_every_run(tmp_path: Path) -> None:
    result, out = import_addons(tmp_path, "a1", ADDONS_NOT_IN_AN_ID)
    assert result.exit_code == 0, result.output
    ids = started_ids(out)
    assert len({ids[addon] for addon in ADDONS_NOT_IN_AN_ID}) == len(ADDONS_NOT_IN_AN_ID)
    (tmp_path / "again").mkdir()
    again, out_again = import_addons(tmp_path / "again", "a1", list(reversed(ADDONS_NOT_IN_AN_ID)))
    assert again.exit_code == 0, again.output
    assert started_ids(out_again) == ids  # whatever the rows' order


def test_an_addon_whose_id_would_be_too_long_gets_a_hash_of_its_name(tmp_path: Path) -> None:
    account, addon = "a" * 100, "x" * 46  # 100 + ":" + 46 + ":1": 149 characters
    result, out = import_addons(tmp_path, account, [addon, "short"])
    assert result.exit_code == 0, result.output
    ids = started_ids(out)
    assert re.fullmatch(rf"{account}:addon=#[0-9a-f]{{12}}:1", ids[addon]), ids[addon]
    assert ids["short"] == f"{account}:short:1"  # an id that can be read stays as it was


def test_an_account_id_too_long_for_its_subscription_ids_is_a_bad_row_of_the_account_column(
    tmp_path: Path,
) -> None:
    account = "a" * 125  # with ":plan:1", 132 characters: the contract takes 128
    result, _ = import_addons(tmp_path, account, [])
    assert result.exit_code == 1, result.output
    assert "subscription_id" not in result.output
    assert f"subs.csv:2: account_id '{account[:40]}'... (125 characters) is too long for" in result.output
    assert "at most 121 characters" in result.output
