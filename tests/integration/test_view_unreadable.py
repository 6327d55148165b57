"""One unreadable value in the real projection: a `streamer worker` projects a replayed history
into the local Redis, then one account's list row, snapshot and one of its alerts are overwritten
with a raw Redis command. The `streamer view` process still answers every list with the other
entries and says it left one out; only that account's own page is a 503.

A deployment of its own (the shared one of test_view.py must stay intact), its worker stopped
before the values are planted so that nothing writes them back.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis

from streamer.local.stack import StackInfo
from streamer.projection.keys import Keys
from tests.fixtures import wait_until
from tests.integration.test_view import Deployment, make_history, projection_settled

pytestmark = pytest.mark.integration

NOT_JSON = "{planted: not JSON"
LISTS = (
    "/api/accounts?limit=500",  # a page of a sorted set
    "/api/accounts?at_risk=true&sort=-mrr&limit=500",  # the at-risk list, from the MRR-at-risk set
    "/api/accounts?at_risk=true&sort=score&limit=500",  # filtered row by row in the view
    "/api/accounts?band=red,yellow&stage=adopted,onboarding,renewal&limit=500",
)


@pytest.fixture
def projected(stack: StackInfo, tmp_path: Path) -> Iterator[Deployment]:
    """A settled projection written by a real worker, and a view over it; the worker stopped."""
    history = make_history(tmp_path / "history", seed=11)
    deployment = Deployment(stack.bootstrap, stack.redis_url, tmp_path / "deployment")
    deployment.root.mkdir(parents=True)
    try:
        deployment.create_topics()
        worker = deployment.start_worker()
        deployment.start_view()
        deployment.replay(history.events)
        wait_until("the projection to show the worker's outputs", projection_settled(deployment))
        worker.stop()
        yield deployment
    finally:
        deployment.close()


def answer(deployment: Deployment, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(deployment.url + path, timeout=10) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_one_unreadable_account_is_left_out_of_the_lists_and_counted(projected: Deployment) -> None:
    view = projected
    rows = view.get("/api/accounts?limit=500")["items"]
    alerts = view.get("/api/alerts?limit=500")["items"]
    alerted = {alert["account_id"] for alert in alerts}
    bad = next(
        row["account_id"]
        for row in rows
        if row["band"] != "green" and Decimal(row["mrr"]) > 0 and row["account_id"] in alerted
    )
    bad_alert = next(alert["alert_id"] for alert in alerts if alert["account_id"] == bad)
    before = {path: view.get(path) for path in LISTS}
    assert all(any(r["account_id"] == bad for r in before[path]["items"]) for path in LISTS)

    keys = Keys(view.app_id)
    client = redis.Redis.from_url(view.redis_url)
    try:
        client.execute_command("HSET", keys.summaries, bad, NOT_JSON)
        client.execute_command("HSET", keys.account(bad), "snapshot", NOT_JSON)
        client.execute_command("HSET", keys.alert_data, bad_alert, NOT_JSON)
    finally:
        client.close()

    for path in LISTS:
        status, body = answer(view, path)
        assert status == 200, (path, body)
        assert body["unreadable"] == 1 and body["total"] == before[path]["total"], path
        assert body["items"] == [r for r in before[path]["items"] if r["account_id"] != bad], path
    for path in ("/api/alerts?limit=500", f"/api/accounts/{bad}/alerts?limit=500"):
        status, body = answer(view, path)
        assert status == 200, (path, body)
        assert body["unreadable"] == 1 and bad_alert not in {a["alert_id"] for a in body["items"]}, path
        assert len(body["items"]) + 1 == body["total"], path

    status, body = answer(view, f"/api/accounts/{bad}")
    assert status == 503 and body["error"].startswith("the projection holds a value the view cannot read")
    other = next(row["account_id"] for row in rows if row["account_id"] != bad)
    assert answer(view, f"/api/accounts/{other}")[0] == 200
    status, health = answer(view, "/healthz")
    assert status == 200 and health["redis"]["reachable"]
    with urllib.request.urlopen(view.url + "/metrics", timeout=10) as response:
        assert "healthstream_redis_up 1.0" in response.read().decode().splitlines()
    log = "\n".join(proc.log.read_text(errors="replace") for proc in view.procs)
    assert f"HDEL {keys.summaries} {bad}" in log and f"HDEL {keys.alert_data} {bad_alert}" in log
