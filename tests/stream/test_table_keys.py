"""The tables' keys: written as faust's JSON codec writes them, and a key that is not JSON read
as an `UnreadableKey` rather than failing (faust then dropped the record without counting its
offset, and recovery waited for it for ever)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from faust.serializers import codecs

from streamer.core.config import ScoreConfig
from streamer.settings import Settings
from streamer.stream.app import create_app
from streamer.stream.table_keys import CODEC, UnreadableKey


@pytest.mark.parametrize("key", ["acct-0001", "clock-3", "péché ☃", ""])
def test_keys_are_written_as_faust_json_writes_them_and_read_back(key: str) -> None:
    written = codecs.dumps(CODEC, key)
    assert written == codecs.dumps("json", key)  # compaction pairs old records with new ones
    assert codecs.loads(CODEC, written) == key


@pytest.mark.parametrize("raw", [b"acct-0003", b"\xff\xfeacct", b'"unterminated', b""])
def test_a_key_that_is_not_json_is_read_as_an_unreadable_key_with_a_warning(
    raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        found = codecs.loads(CODEC, raw)
    assert found == UnreadableKey(raw) and not isinstance(found, str)
    assert "a tombstone must be keyed the same way" in caplog.text


def test_the_worker_tables_read_keys_with_this_codec(tmp_path: Path) -> None:
    app = create_app(Settings(app_id="hs-test", data_dir=tmp_path), ScoreConfig(), store="memory://")
    tables = list(app.tables.values())
    assert len(tables) == 2
    for table in tables:  # faust took the key type's codec (JSON) over the schema's
        assert table.key_serializer == CODEC
        assert table.changelog_topic.schema.key_serializer == CODEC  # what recovery decodes with
