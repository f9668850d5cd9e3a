"""The console: in real headless Chromium against the real bridge on the sandbox, and its sign-in and CSRF over HTTP."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from bot.admin.console_auth import ConsoleSessions
from bot.models import SessionState
from bot.sandbox import SandboxInfo
from tests.support.admin import CODE, TOKEN, Admin, start_admin
from tests.support.bridge import wait_for
from tests.support.sandbox import Control

SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"
WAIT_MS = 15_000
"""The longest any page check waits for the page to catch up (the stream polls the store every second)."""


@pytest.fixture
async def console(control: Control, info: SandboxInfo, tmp_path: Path) -> AsyncIterator[Admin]:
    async for admin in start_admin(control, info, tmp_path):
        yield admin


async def screenshot(page: Page, name: str) -> None:
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


async def sign_in(page: Page, console: Admin, path: str = "/console") -> None:
    await page.goto(console.bridge.base + path)
    await page.fill("#token", TOKEN)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)


async def session_state(console: Admin, user: str) -> SessionState | None:
    mine = [s for s in await console.bridge.store.sessions() if s.user_id == f"webhook:app/{user}"]
    return mine[-1].state if mine else None


def row_of(page: Page, table: str, text: str) -> Any:
    return page.locator(f"#{table} tbody tr", has_text=text)


# in the browser ------------------------------------------------------------------------------------------------


async def test_sign_in_refuses_a_wrong_token_then_shows_the_configured_meeting(console: Admin, page: Page) -> None:
    await page.goto(console.bridge.base + "/console")
    await expect(page.locator("#token")).to_be_visible()
    await page.fill("#token", "not-the-operator-token")
    async with page.expect_response(re.compile(r"/console/login$")) as answer:
        await page.click("#login button[type=submit]")
    assert (await answer.value).status == 401
    await expect(page.locator("#login-error")).to_have_text("That is not the operator token.")
    assert await page.context.cookies() == []

    await page.fill("#token", TOKEN)
    await page.click("#login button[type=submit]")
    row = row_of(page, "meetings", "Weekly sync")
    await expect(row).to_contain_text(CODE, timeout=WAIT_MS)
    await expect(row).to_contain_text("open")
    await expect(row.locator("td[data-label='Live sessions']")).to_have_text("0")
    cookies = sorted(await page.context.cookies(), key=lambda c: c["path"])
    assert [c["path"] for c in cookies] == ["/api/v1", "/console"]
    for cookie in cookies:
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"] != TOKEN
        assert cookie["expires"] == -1  # a session cookie: gone when the browser closes


async def test_sessions_appear_live_and_the_conversation_shows_delivery(console: Admin, page: Page) -> None:
    await sign_in(page, console)
    await expect(page.locator("#no-sessions")).to_be_visible()
    await page.evaluate("window.notReloaded = true")

    await console.join("ann")
    row = row_of(page, "sessions", "webhook:app/ann")
    await expect(row).to_contain_text("in the call", timeout=WAIT_MS)
    await expect(row).to_contain_text("Weekly sync")
    await expect(row_of(page, "meetings", "Weekly sync").locator("td[data-label='Live sessions']")).to_have_text("1")
    assert await page.evaluate("window.notReloaded") is True  # the event stream brought it, not a reload
    await screenshot(page, "console-dashboard.png")

    status, _ = await console.send("ann", text="Hello from the web app")
    assert status == 202
    await row.get_by_role("link", name="Weekly sync").click()
    await expect(page.locator("#meeting-name")).to_have_text("Weekly sync", timeout=WAIT_MS)
    await expect(page.locator("#meeting-code")).to_have_text(CODE)
    mine = page.locator("#conversation li", has_text="Hello from the web app")
    await expect(mine).to_have_attribute("data-state", "delivered", timeout=WAIT_MS)
    await expect(mine.locator(".route")).to_have_text("Ann → Weekly sync (Teams)")

    organizer = console.meeting["organizerId"]
    await console.control.ok(
        "POST",
        f"/sandbox/v1/meetings/{console.meeting['id']}/messages",
        {"from": organizer, "html": "<p>Hi <b>Ann</b></p>"},
    )
    theirs = page.locator("#conversation li", has_text="Hi Ann")
    await expect(theirs).to_have_attribute("data-state", "delivered", timeout=WAIT_MS)
    await expect(theirs.locator(".route")).to_have_text("Megan (Teams) → Ann")
    assert [m["text"] for m in console.receiver.of("message", "ann")] == ["Hi Ann"]
    await expect(page.locator("#conversation li.kind-notice").first).to_contain_text("in the meeting chat")
    await screenshot(page, "console-meeting.png")

    person = row_of(page, "people", "webhook:app/ann")
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.dismiss()))
    await person.locator("[data-action=end]").click()
    await expect(page.locator("#action-result")).to_be_empty()
    assert await session_state(console, "ann") == SessionState.IN_CALL  # dismissed: nothing happened

    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await person.locator("[data-action=end]").click()
    await expect(page.locator("#action-result")).to_have_text("Ended Ann's session.", timeout=WAIT_MS)

    async def left() -> bool:
        return await session_state(console, "ann") == SessionState.LEFT

    await wait_for(left, what="ann's session left")

    async def told() -> list[dict[str, Any]]:
        return [n for n in console.receiver.of("notice", "ann") if "An operator took you out" in n["text"]]

    await wait_for(told, what="ann told she was taken out")
    await expect(page.locator("#no-people")).to_be_visible(timeout=WAIT_MS)
    notice = page.locator("#conversation li.kind-notice", has_text="An operator took you out")
    await expect(notice).to_have_attribute("data-state", "delivered", timeout=WAIT_MS)


async def test_block_user_and_pause_meeting_from_the_meeting_page(console: Admin, page: Page) -> None:
    await console.join("bob")
    meeting = (await console.ok("GET", f"/meetings/{CODE}"))["id"]
    await sign_in(page, console, f"/console/meetings/{CODE}")  # a code is redirected to the meeting's page
    assert page.url.endswith(f"/console/meetings/{meeting}")
    person = row_of(page, "people", "webhook:app/bob")
    await expect(person).to_contain_text("in the call", timeout=WAIT_MS)

    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await person.locator("[data-action=block]").click()
    await expect(page.locator("#action-result")).to_have_text("Blocked Bob.", timeout=WAIT_MS)
    user = await console.bridge.store.get_user("webhook:app/bob")
    assert user is not None and user.blocked
    status, body = await console.send("bob", text="let me back in")
    assert (status, body["error"]) == (403, "blocked")
    status, body = await console.send("bob", "join")
    assert (status, body["error"]) == (403, "blocked")
    await expect(person).to_have_count(0, timeout=WAIT_MS)

    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.click("#pause")
    await expect(page.locator("#meeting-status")).to_have_text("paused", timeout=WAIT_MS)
    status, body = await console.send("carol", "join")
    assert (status, body["error"]) == (403, "paused")
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.click("#pause")
    await expect(page.locator("#meeting-status")).to_have_text("open", timeout=WAIT_MS)
    assert (await console.send("carol", "join"))[0] == 202


async def test_add_a_meeting_by_pasting_its_join_link(console: Admin, page: Page) -> None:
    other = await console.control.meeting(subject="Planning")
    await sign_in(page, console)
    await page.fill("#link", other["joinWebUrl"])
    await page.fill("#code", "5150")
    await page.fill("#name", "Planning <b>board</b>")
    await page.click("#add-meeting button[type=submit]")
    await expect(page.locator("#add-result")).to_have_text(
        "Added “Planning <b>board</b>” with code 5150.", timeout=WAIT_MS
    )
    row = row_of(page, "meetings", "5150")
    await expect(row).to_contain_text("Planning <b>board</b>", timeout=WAIT_MS)  # shown as text, not markup
    assert await row.locator("b").count() == 0
    stored = await console.bridge.store.meeting_by_code("5150")
    assert stored is not None and stored.thread_id == other["threadId"]

    await page.fill("#link", other["joinWebUrl"])
    await page.click("#add-meeting button[type=submit]")
    await expect(page.locator("#add-result")).to_contain_text("Not added: this meeting is already bridged")
    third = await console.control.meeting(subject="Retro")
    await page.fill("#link", third["joinWebUrl"])
    await page.click("#add-meeting button[type=submit]")
    await expect(page.locator("#add-result")).to_have_text(re.compile(r"^Added “.+” with code \d+\.$"))


async def test_the_dashboard_fits_a_phone(console: Admin, page: Page) -> None:
    await console.join("ann")
    await page.set_viewport_size({"width": 390, "height": 844})
    await sign_in(page, console)
    await expect(row_of(page, "sessions", "webhook:app/ann")).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#meetings thead")).to_be_hidden()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await screenshot(page, "console-dashboard-mobile.png")
    await page.click("#meetings a")
    await expect(page.locator("#meeting-name")).to_have_text("Weekly sync", timeout=WAIT_MS)
    await expect(row_of(page, "people", "webhook:app/ann").locator("[data-action=block]")).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390


# over raw HTTP -------------------------------------------------------------------------------------------------


class Signed:
    """A signed-in console over raw HTTP: the cookie as the browser would send it, and the page's CSRF token."""

    def __init__(self, console: Admin, cookie: str, csrf: str) -> None:
        self.console, self.cookie, self.csrf = console, cookie, csrf

    async def call(
        self, method: str, path: str, *, csrf: str | None = None, headers: dict[str, str] | None = None, **kw: Any
    ) -> tuple[int, str]:
        sent = {"Cookie": f"console_session={self.cookie}", **(headers or {})}
        if csrf is not None:
            sent["X-CSRF-Token"] = csrf
        http = self.console.bridge.http
        assert http is not None
        async with http.request(
            method, self.console.bridge.base + path, headers=sent, allow_redirects=False, **kw
        ) as r:
            return r.status, await r.text()


async def raw_sign_in(console: Admin) -> tuple[Signed, list[str]]:
    http = console.bridge.http
    assert http is not None
    async with http.post(console.bridge.base + "/console/login", data={"token": TOKEN}, allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/console"
        set_cookies = resp.headers.getall("Set-Cookie")
    value = set_cookies[0].split(";")[0].split("=", 1)[1]
    signed = Signed(console, value, "")
    status, text = await signed.call("GET", "/console")
    assert status == 200
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', text)
    assert match is not None
    signed.csrf = match.group(1)
    return signed, set_cookies


async def test_cookie_flags_and_what_the_cookie_holds(console: Admin) -> None:
    signed, set_cookies = await raw_sign_in(console)
    assert len(set_cookies) == 2
    for header, path in zip(set_cookies, ("/console", "/api/v1"), strict=True):
        flags = [part.strip().lower() for part in header.split(";")[1:]]
        assert f"path={path}" in flags and "httponly" in flags and "samesite=strict" in flags
        assert not any(f.startswith(("max-age", "expires")) for f in flags)  # a session cookie
        assert "secure" not in flags  # plain http on loopback; https requests get Secure
    assert TOKEN not in signed.cookie and len(signed.cookie) >= 40
    assert signed.csrf and signed.csrf != signed.cookie


async def test_a_wrong_token_or_another_site_cannot_sign_in(console: Admin) -> None:
    http = console.bridge.http
    assert http is not None
    base = console.bridge.base
    async with http.post(base + "/console/login", data={"token": TOKEN[:-1]}, allow_redirects=False) as resp:
        assert resp.status == 401 and "Set-Cookie" not in resp.headers
        assert "That is not the operator token." in await resp.text()
    evil = {"Origin": "https://evil.example"}
    async with http.post(base + "/console/login", data={"token": TOKEN}, headers=evil, allow_redirects=False) as resp:
        assert resp.status == 403 and "Set-Cookie" not in resp.headers
    async with http.get(base + "/console") as resp:
        text = await resp.text()
        assert resp.status == 200 and 'name="token"' in text and "csrf-token" not in text
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]


async def test_changes_need_the_csrf_token_and_our_own_origin(console: Admin) -> None:
    signed, _ = await raw_sign_in(console)
    status, text = await signed.call("GET", "/api/v1/meetings")  # reading needs only the cookie
    assert status == 200 and CODE in text
    pause = {"paused": True}
    for csrf in (None, "", "wrong", signed.csrf + "x"):
        status, text = await signed.call("PATCH", f"/api/v1/meetings/{CODE}", csrf=csrf, json=pause)
        assert status == 403 and '"forbidden"' in text, csrf
    for cross in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        status, text = await signed.call(
            "PATCH", f"/api/v1/meetings/{CODE}", csrf=signed.csrf, headers=cross, json=pause
        )
        assert status == 403 and "cross-site" in text, cross
    stored = await console.bridge.store.meeting_by_code(CODE)
    assert stored is not None and not stored.paused
    same = {"Origin": console.bridge.base, "Sec-Fetch-Site": "same-origin"}
    status, _ = await signed.call("PATCH", f"/api/v1/meetings/{CODE}", csrf=signed.csrf, headers=same, json=pause)
    assert status == 200
    stored = await console.bridge.store.meeting_by_code(CODE)
    assert stored is not None and stored.paused
    # Bearer requests (the CLI) are as before: no cookie, no CSRF token.
    assert (await console.api("PATCH", f"/meetings/{CODE}", {"paused": False}))[0] == 200


async def test_the_event_stream_needs_a_session_and_sends_a_snapshot(console: Admin) -> None:
    http = console.bridge.http
    assert http is not None
    for cookie in ({}, {"Cookie": "console_session=forged"}):
        async with http.get(console.bridge.base + "/console/events", headers=cookie) as resp:
            assert resp.status == 401
    signed, _ = await raw_sign_in(console)
    async with http.get(
        console.bridge.base + "/console/events", headers={"Cookie": f"console_session={signed.cookie}"}
    ) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        lines: list[str] = []
        while not lines or not lines[-1].startswith("data: "):
            lines.append((await asyncio.wait_for(resp.content.readline(), 10)).decode().strip())
        assert "event: snapshot" in lines and f'"code":"{CODE}"' in lines[-1]


async def test_sign_out_ends_the_session(console: Admin) -> None:
    signed, _ = await raw_sign_in(console)
    assert (await signed.call("POST", "/console/logout"))[0] == 403  # no CSRF token: not signed out
    assert (await signed.call("GET", "/console/session"))[0] == 200
    status, _ = await signed.call("POST", "/console/logout", data={"csrf": signed.csrf})
    assert status == 303
    assert (await signed.call("GET", "/console/session"))[0] == 401
    assert (await signed.call("GET", "/console/events"))[0] == 401
    assert (await signed.call("GET", "/api/v1/meetings"))[0] == 401
    status, text = await signed.call("GET", "/console")
    assert status == 200 and 'name="token"' in text


async def test_an_open_stream_does_not_hold_up_shutdown(console: Admin) -> None:
    signed, _ = await raw_sign_in(console)
    http = console.bridge.http
    assert http is not None
    async with http.get(
        console.bridge.base + "/console/events", headers={"Cookie": f"console_session={signed.cookie}"}
    ) as resp:
        assert resp.status == 200
        await asyncio.wait_for(resp.content.readline(), 10)
        assert console.bridge.runner is not None
        # Bounded: without the shutdown hook the server would wait its 60 s for the stream to finish.
        await asyncio.wait_for(console.bridge.runner.cleanup(), 20)
        console.bridge.runner = None


async def test_without_a_token_there_is_no_console(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    async for off in start_admin(control, info, tmp_path, token=None):
        assert off.bridge.http is not None
        for path in ("/console", "/console/events", "/console/static/console.js"):
            async with off.bridge.http.get(off.bridge.base + path) as resp:
                assert resp.status == 404, path


def test_sessions_expire_and_are_bounded() -> None:
    now = [0.0]
    sessions = ConsoleSessions(lifetime_s=10, limit=2, clock=lambda: now[0])
    first, _ = sessions.create()
    assert sessions.get(first) is not None and sessions.get("other") is None and sessions.get(None) is None
    now[0] = 10.0
    assert sessions.get(first) is None
    a, _ = sessions.create()
    b, _ = sessions.create()
    c, _ = sessions.create()
    assert sessions.get(a) is None and sessions.get(b) is not None and sessions.get(c) is not None
    sessions.drop(b)
    assert sessions.get(b) is None and len(sessions) == 1
