"""The account page's override form in headless Chromium, through the real view, Kafka, worker
and Redis: a person fills the form and presses "override", the view publishes the event, the
worker applies it, the projection stores it, and the page (refreshing itself) shows it.

Chromium is driven over its DevTools protocol (a websocket, spoken with aiohttp): the test
types into the form's fields and clicks its button as a person would; nothing is posted by the
test itself.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from streamer.local.stack import StackInfo
from tests.fixtures import chromium_argv, stop_group
from tests.integration.test_identity import ACCOUNT, TOKEN, account, publish, three_days_of_use
from tests.integration.test_view import Deployment, wait_until

pytestmark = pytest.mark.integration

DEADLINE_S = 120.0  # bounds a hang only: the page refreshes every 10 s, the worker idles ahead


class Browser:
    """A headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, binary: str, url: str, profile: Path) -> None:
        # Chromium picks the DevTools port and writes it to DevToolsActivePort in the profile.
        argv = chromium_argv(binary, profile, "--remote-debugging-port=0", url)
        self.profile = profile
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        self._ids = itertools.count(1)

    def port(self) -> int:
        active = self.profile / "DevToolsActivePort"

        def written() -> bool:
            assert self.proc.poll() is None, (self.proc.stderr.read() if self.proc.stderr else b"")[-2000:]
            return active.exists() and bool(active.read_text().strip())

        wait_until("Chromium's DevTools port", written, 60, 0.1)
        return int(active.read_text().split()[0])

    async def evaluate(self, socket: aiohttp.ClientWebSocketResponse, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        number = next(self._ids)
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        await socket.send_json({"id": number, "method": "Runtime.evaluate", "params": params})
        while True:
            answer = await socket.receive_json(timeout=60)
            if answer.get("id") == number:
                result = answer["result"]
                assert "exceptionDetails" not in result, result["exceptionDetails"]
                return result["result"].get("value")

    async def until(
        self, socket: aiohttp.ClientWebSocketResponse, what: str, expression: str, deadline_s: float
    ) -> Any:
        """Poll an expression until it is truthy; the deadline only bounds a hang."""
        deadline = time.monotonic() + deadline_s
        while not (value := await self.evaluate(socket, expression)):
            assert time.monotonic() < deadline, f"timed out after {deadline_s:.0f} s waiting for {what}"
            await asyncio.sleep(0.5)
        return value

    def close(self) -> None:
        stop_group(self.proc)


@pytest.fixture
def deployment(stack: StackInfo, tmp_path: Path) -> Iterator[Deployment]:
    """A worker and a view with a token over one account whose history ends now (the view dates
    a person's change with the wall clock, so the account's event time must be near it)."""
    deployment = Deployment(stack.bootstrap, stack.redis_url, tmp_path)
    try:
        deployment.create_topics()
        deployment.start_worker()
        deployment.start_view(HEALTHSTREAM_VIEW_TOKEN=TOKEN)
        history = three_days_of_use("form")
        publish(deployment, tmp_path, "history", history)
        wait_until("the account in the view", lambda: account(deployment) is not None)
        yield deployment
    finally:
        deployment.close()


FILL_AND_PRESS = """
(() => {
  const token = document.getElementById("token");
  token.value = %(token)s;
  token.dispatchEvent(new Event("change"));
  const form = document.getElementById("override-form");
  form.elements.band.value = "red";
  form.elements.reason.value = %(reason)s;
  form.elements.author.value = %(author)s;
  form.elements.expires_at.value = %(until)s;
  form.querySelector("button[type=submit]").click();
  return true;
})()
"""

# Chromium may still be parsing the page when the first poll comes: no <body> yet.
LOADED = "document.body !== null && document.body.dataset.loaded === 'true'"

SHOWN = """
(() => {
  const card = document.getElementById("override");
  if (card.hidden) return null;
  return {
    band: document.querySelector("#override-band .band")?.className,
    reason: document.getElementById("override-reason").textContent,
    score: document.getElementById("override-score").textContent,
    author: document.getElementById("override-author").textContent,
    headline: document.getElementById("band").dataset.value,
    status: document.getElementById("form-status").textContent,
  };
})()
"""


def test_the_override_form_posted_in_a_browser_shows_on_the_page(
    deployment: Deployment,
    chromium: str,
) -> None:
    before = account(deployment)
    assert before is not None and before["override"] is None
    assert before["band"] != "red", "the premise: the model does not say red already"
    until = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%d")
    reason, author = "exec sponsor left", "ana@example.com"
    # Opened with the token in its address, as a link handed to a CSM would be.
    url = f"{deployment.url}/accounts/{ACCOUNT}?access_token={TOKEN}"
    with tempfile.TemporaryDirectory(prefix="hs-chromium-") as profile:  # a short socket path
        browser = Browser(chromium, url, Path(profile))
        try:
            shown = asyncio.run(_press_override(browser, reason, author, until))
        finally:
            browser.close()

    assert shown["reason"] == reason and shown["author"] == author, shown
    assert shown["band"] == "band red" and shown["headline"] == "red", shown
    assert shown["score"] == "", shown  # a band override has no score: not a dash before the "—"
    assert shown["status"].startswith("saved"), shown
    # The same override is what the API serves (it came from the worker, through Redis).
    after = account(deployment)
    assert after is not None and after["override"] is not None
    assert after["override"]["band"] == "red" and after["override"]["author"] == author
    assert after["override"]["expires_at"] == f"{until}T00:00:00Z"


async def _press_override(browser: Browser, reason: str, author: str, until: str) -> dict[str, Any]:
    port = browser.port()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json(content_type=None)
        [page] = [target for target in targets if target.get("type") == "page"]
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as socket:
            await browser.until(socket, "the page to load the account", LOADED, DEADLINE_S)
            assert await browser.evaluate(socket, "document.getElementById('override').hidden") is True
            values = {name: json.dumps(value) for name, value in (("token", TOKEN), ("reason", reason))}
            values |= {"author": json.dumps(author), "until": json.dumps(until)}
            await browser.evaluate(socket, FILL_AND_PRESS % values)
            shown: dict[str, Any] = await browser.until(
                socket, "the page to show the override", SHOWN, DEADLINE_S
            )
            return shown
