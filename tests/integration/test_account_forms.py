"""The account page's override form in headless Chromium, through the real view, Kafka, worker
and Redis: a person fills the form and presses "override", the view publishes the event, the
worker applies it, the projection stores it, and the page (refreshing itself) shows it.

Chromium is driven over its DevTools protocol (a websocket, spoken with aiohttp): the test
types into the form's fields and clicks its button as a person would; nothing is posted by the
test itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from streamer.local.stack import StackInfo
from tests.fixtures import chromium_argv, stop_group
from tests.integration.test_identity import ACCOUNT, TOKEN, account, call, publish, three_days_of_use
from tests.integration.test_view import Deployment, wait_until

pytestmark = pytest.mark.integration

DEADLINE_S = 120.0  # bounds a hang only: the page refreshes every 10 s, the worker idles ahead


class Browser:
    """A headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, binary: str, url: str, profile: Path, *extra: str) -> None:
        # Chromium picks the DevTools port and writes it to DevToolsActivePort in the profile.
        argv = chromium_argv(binary, profile, "--remote-debugging-port=0", *extra, url)
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

    @contextlib.asynccontextmanager
    async def page(self) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        """A DevTools connection to the browser's one page."""
        port = self.port()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json(content_type=None)
            [page] = [target for target in targets if target.get("type") == "page"]
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as socket:
                yield socket

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
    assert after["override"]["expires_at"] == f"{until}T23:59:59Z"  # to the end of the day chosen


async def _press_override(browser: Browser, reason: str, author: str, until: str) -> dict[str, Any]:
    async with browser.page() as socket:
        await browser.until(socket, "the page to load the account", LOADED, DEADLINE_S)
        assert await browser.evaluate(socket, "document.getElementById('override').hidden") is True
        values = {name: json.dumps(value) for name, value in (("token", TOKEN), ("reason", reason))}
        values |= {"author": json.dumps(author), "until": json.dumps(until)}
        await browser.evaluate(socket, FILL_AND_PRESS % values)
        shown: dict[str, Any] = await browser.until(
            socket, "the page to show the override", SHOWN, DEADLINE_S
        )
        return shown


Act = Callable[[Browser, aiohttp.ClientWebSocketResponse], Awaitable[Any]]


def in_page(chromium: str, url: str, act: Act, *flags: str) -> Any:
    """What `act` returns, run in the page at `url` once it has loaded (Chromium given `flags`)."""
    with tempfile.TemporaryDirectory(prefix="hs-chromium-") as profile:  # a short socket path
        browser = Browser(chromium, url, Path(profile), *flags)
        try:
            return asyncio.run(_in_page(browser, act))
        finally:
            browser.close()


async def _in_page(browser: Browser, act: Act) -> Any:
    async with browser.page() as socket:
        await browser.until(socket, "the page to load", LOADED, DEADLINE_S)
        return await act(browser, socket)


# Fills the override form as given (null: left as it is) and presses a button; what the page
# POSTed (fetch watched) and what the form status then says.
PRESS = """
(async () => {
  const token = document.getElementById("token");
  token.value = %(token)s;
  token.dispatchEvent(new Event("change"));
  const form = document.getElementById("override-form");
  const values = %(values)s;
  for (const [name, value] of Object.entries(values)) form.elements[name].value = value;
  const sent = [];
  const fetched = window.fetch;
  window.fetch = function (path, init) {
    if (init && init.method === "POST") sent.push(JSON.parse(init.body));
    return fetched.apply(this, arguments);
  };
  const status = document.getElementById("form-status");
  status.textContent = "";
  document.querySelector(%(button)s).click();
  for (let waited = 0; !status.textContent && waited < 20000; waited += 100) {
    await new Promise((done) => setTimeout(done, 100));
  }
  window.fetch = fetched;
  return { sent: sent, status: status.textContent };
})()
"""


def press(values: dict[str, str], button: str = "#override-form button[type=submit]") -> str:
    return PRESS % {"token": json.dumps(TOKEN), "values": json.dumps(values), "button": json.dumps(button)}


def test_an_empty_score_without_a_band_is_asked_for_never_posted_as_zero(
    deployment: Deployment, chromium: str
) -> None:
    """Band "(set a score)" and the score left empty posted "score": 0 (Number("") is 0): the
    account was overridden to 0, red."""
    until = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%d")
    values = {"band": "", "score": "", "reason": "checking", "author": "ana@example.com", "expires_at": until}

    async def act(browser: Browser, socket: aiohttp.ClientWebSocketResponse) -> Any:
        return await browser.evaluate(socket, press(values))

    pressed = in_page(chromium, f"{deployment.url}/accounts/{ACCOUNT}?access_token={TOKEN}", act)
    assert pressed["sent"] == [], pressed
    assert "score" in pressed["status"] and "empty" in pressed["status"], pressed


def test_an_override_until_today_lasts_to_its_end_and_a_score_override_shows_its_score(
    deployment: Deployment, chromium: str
) -> None:
    """ "until" was sent as 00:00 UTC of the day chosen, so today was refused (expires_at must be
    after occurred_at); a score override's band is null, and the page showed a pill "null"."""
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    values = {
        "band": "",
        "score": "20",
        "reason": "exec sponsor left",
        "author": "ana@example.com",
        "expires_at": today,
    }

    async def act(browser: Browser, socket: aiohttp.ClientWebSocketResponse) -> Any:
        pressed = await browser.evaluate(socket, press(values))
        assert pressed["status"].startswith("saved"), pressed
        [sent] = pressed["sent"]
        assert sent["score"] == 20 and "band" not in sent and sent["expires_at"] == f"{today}T23:59:59Z", sent
        return await browser.until(socket, "the page to show the override", SHOWN, DEADLINE_S)

    if datetime.now(UTC).hour == 23 and datetime.now(UTC).minute >= 58:
        pytest.skip("a minute before midnight UTC: the day ends before the override is applied")
    shown = in_page(chromium, f"{deployment.url}/accounts/{ACCOUNT}?access_token={TOKEN}", act)
    assert shown.get("band") is None and shown["score"] == "score 20.0", shown
    after = account(deployment)
    assert after is not None and after["override"] is not None
    assert after["override"]["score"] == 20 and after["override"]["expires_at"] == f"{today}T23:59:59Z"


CLEAR_BUTTON = (
    "(() => { const b = document.getElementById('override-clear'); return [b.disabled, b.title]; })()"
)


def test_remove_the_override_needs_an_override_in_force_and_an_author(
    deployment: Deployment, chromium: str
) -> None:
    """With an empty author it posted author "unknown", and said "saved" with no override in force."""

    async def act(browser: Browser, socket: aiohttp.ClientWebSocketResponse) -> Any:
        disabled, why = await browser.evaluate(socket, CLEAR_BUTTON)
        assert disabled and why == "no override is in force", (disabled, why)
        until = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"band": "red", "reason": "r", "author": "bo@example.com", "expires_at": until}
        status, answer = await asyncio.to_thread(
            call, deployment, "POST", f"/api/accounts/{ACCOUNT}/override", body
        )
        assert status == 202, answer
        await browser.until(socket, "the page to show the override", SHOWN, DEADLINE_S)
        assert (await browser.evaluate(socket, CLEAR_BUTTON))[0] is False
        return await browser.evaluate(socket, press({"author": ""}, "#override-clear"))

    pressed = in_page(chromium, f"{deployment.url}/accounts/{ACCOUNT}?access_token={TOKEN}", act)
    assert pressed["sent"] == [] and "author" in pressed["status"], pressed
    after = account(deployment)
    assert after is not None and after["override"] is not None  # still in force


PROFILE_FORM = """
(() => {
  const form = document.getElementById("profile-form");
  const fields = ["name", "owner", "segment", "tier"];
  return Object.fromEntries(fields.map((name) => [name, form.elements[name].value]));
})()
"""

SAVE_TIER = """
(async () => {
  const token = document.getElementById("token");
  token.value = %(token)s;
  token.dispatchEvent(new Event("change"));
  const form = document.getElementById("profile-form");
  form.elements.tier.value = "platinum";  // the person changes the tier only
  const status = document.getElementById("form-status");
  status.textContent = "";
  form.querySelector("button[type=submit]").click();
  for (let waited = 0; !status.textContent && waited < 20000; waited += 100) {
    await new Promise((done) => setTimeout(done, 100));
  }
  return status.textContent;
})()
"""


def test_saving_the_profile_keeps_what_others_changed_since_the_page_was_filled(
    deployment: Deployment, chromium: str
) -> None:
    """The form was filled once at load and a save replaces the whole profile: after a CRM sync
    changed it, saving the tier re-published the old name, owner and segment and the old attributes."""
    crm = {"name": "Acme (CRM)", "owner": "bo@example.com", "segment": "enterprise", "tier": "gold"}

    def profile() -> dict[str, Any]:
        found = account(deployment)
        return (found or {}).get("profile") or {}

    def crm_sync(body: dict[str, Any]) -> None:
        status, answer = call(deployment, "POST", f"/api/accounts/{ACCOUNT}/profile", body)
        assert status == 202, answer
        wait_until("the CRM's profile", lambda: profile().get("name") == body["name"], 60)

    async def act(browser: Browser, socket: aiohttp.ClientWebSocketResponse) -> Any:
        before = await browser.evaluate(socket, PROFILE_FORM)
        await asyncio.to_thread(crm_sync, {**crm, "attributes": {"crm_id": "42"}})
        saved = await browser.evaluate(socket, SAVE_TIER % {"token": json.dumps(TOKEN)})
        assert saved.startswith("saved"), saved
        await asyncio.to_thread(wait_until, "the tier saved", lambda: profile().get("tier") == "platinum", 60)
        merged = await asyncio.to_thread(profile)
        # a newer profile refreshes the fields the person has not touched, not one they typed in
        await browser.evaluate(
            socket, "document.getElementById('profile-form').elements.owner.value = 'mine@example.com'"
        )
        await asyncio.to_thread(
            crm_sync, {**crm, "name": "Acme 2", "owner": "cy@example.com", "tier": "platinum"}
        )
        await browser.until(
            socket,
            "the page to show the newer name",
            "document.getElementById('name').textContent === 'Acme 2'",
            DEADLINE_S,
        )
        return before, merged, await browser.evaluate(socket, PROFILE_FORM)

    before, merged, after_refresh = in_page(
        chromium, f"{deployment.url}/accounts/{ACCOUNT}?access_token={TOKEN}", act
    )
    assert before == {"name": "", "owner": "", "segment": "", "tier": ""}, before  # no profile at first
    # the CRM's name, owner, segment and attributes, the person's tier
    assert merged == {**crm, "tier": "platinum", "attributes": {"crm_id": "42"}}, merged
    assert after_refresh == {
        "name": "Acme 2",
        "owner": "mine@example.com",
        "segment": "enterprise",
        "tier": "platinum",
    }


# Where the page is and whether it has loaded; None while Chromium is between two documents.
LEAVE = "window.testLeftIt = true"  # this document is being left: `_where` waits for the next one

WHERE = """
(() => document.body === null ? null : {
  path: location.pathname, search: location.search, loaded: document.body.dataset.loaded === "true",
  error: (document.getElementById("error") || {}).textContent || "", cookie: document.cookie,
  left: window.testLeftIt === true,
})()
"""


async def _where(browser: Browser, socket: aiohttp.ClientWebSocketResponse, path: str) -> dict[str, Any]:
    """The page at `path`, once loaded: polled, since a navigation replaces the document (an
    evaluation then answers with no result); not one marked as left (`LEAVE`: a reload keeps
    the path, and the old document answered until the new one replaced it, whose links were not
    there yet); the deadline only bounds a hang."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            found = await browser.evaluate(socket, WHERE)
        except (AssertionError, KeyError):  # the old document went away mid-evaluation
            found = None
        if found and found["path"] == path and (found["loaded"] or found["error"]) and not found["left"]:
            return dict(found)
        assert time.monotonic() < deadline, f"timed out waiting for {path}: {found}"
        await asyncio.sleep(0.5)


def test_a_page_opened_with_the_token_follows_its_links_and_reloads_without_it(
    deployment: Deployment, chromium: str
) -> None:
    """A browser sends no header on a page load: with the token taken off the address bar, the
    dashboard's account links, the account page's way home and a reload were 401 pages."""
    account_path = f"/accounts/{ACCOUNT}"

    async def act(browser: Browser, socket: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
        seen = [await _where(browser, socket, "/")]
        await browser.evaluate(socket, f"document.querySelector('a[data-account=\"{ACCOUNT}\"]').click()")
        seen.append(await _where(browser, socket, account_path))
        await browser.evaluate(socket, f"{LEAVE}; location.reload()")
        seen.append(await _where(browser, socket, account_path))
        await browser.evaluate(socket, "document.querySelector('a.home').click()")
        seen.append(await _where(browser, socket, "/"))
        return seen

    seen = in_page(chromium, f"{deployment.url}/?access_token={TOKEN}", act)
    assert [(page["path"], page["loaded"], page["error"]) for page in seen] == [
        ("/", True, ""),
        (account_path, True, ""),
        (account_path, True, ""),
        ("/", True, ""),
    ], seen
    assert all(page["search"] == "" and page["cookie"] == "" for page in seen), (
        seen
    )  # HttpOnly, not in the address
