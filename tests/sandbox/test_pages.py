"""The sandbox's own pages in real headless Chromium: the index, a meeting's Teams view, and a simulated phone.

With UPDATE_SCREENSHOTS=1 the tests also write docs/screenshots/sandbox-*.png.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from azure.communication.sms.aio import SmsClient
from playwright.async_api import Locator, Page, ViewportSize, expect

from bot.cli import _banner
from bot.config import load_settings
from bot.demo import Demo
from bot.sandbox import Sandbox, SandboxInfo
from bot.sandbox.bus import SMS_RECEIVED, SandboxEvent
from tests.support.meetings import AcsUser, chat, new_user
from tests.support.sandbox import Control

WAIT_MS = 10_000  # every wait is bounded; the pages poll once a second
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
MOBILE: ViewportSize = {"width": 390, "height": 844}
PHONE = "+15550100"
TWILIO_NUMBER = "+18005550199"


def ui(info: SandboxInfo, path: str) -> str:
    return f"{info.endpoint}sandbox/ui/{path}"


async def screenshot(page: Page, name: str, viewport: ViewportSize = DESKTOP) -> None:
    """Write docs/screenshots/<name> when UPDATE_SCREENSHOTS=1; the page keeps the viewport it had."""
    if os.environ.get("UPDATE_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    before = page.viewport_size
    await page.set_viewport_size(viewport)
    await page.wait_for_timeout(300)  # let the layout settle after the resize; not a correctness wait
    await page.screenshot(path=str(SCREENSHOTS / name))
    if before is not None:
        await page.set_viewport_size(before)


async def join_call(control: Control, user: AcsUser, meeting: dict[str, Any], name: str) -> dict[str, Any]:
    """What the ACS Calling SDK does to put an identity into the meeting call (it waits in a manual lobby)."""
    body = {"meetingLink": meeting["joinWebUrl"], "displayName": name}
    return dict(await control.ok("POST", "/sandbox/v1/calls", body, headers=user.auth))


def person(page: Page, roster: str, name: str) -> Locator:
    return page.locator(f"#{roster} li.person", has_text=name)


async def test_index_lists_meetings_and_links_to_them(page: Page, control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting("Weekly sync")
    await page.goto(ui(info, ""))
    await expect(page.get_by_text("no sign-in")).to_be_visible()
    link = page.get_by_role("link", name="Weekly sync")
    await expect(link).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#meetings li", has_text="Weekly sync")).to_contain_text("live")
    await expect(page.locator("#demo-phone")).to_have_attribute("href", "/sandbox/ui/phones/%2B15550100")

    # A meeting created later shows up without a reload.
    await control.meeting("Later", start=False)
    await expect(page.locator("#meetings li", has_text="Later")).to_contain_text("not started", timeout=WAIT_MS)

    await link.click()
    await expect(page).to_have_url(ui(info, f"meetings/{meeting['id']}"))
    await expect(page.locator("#subject")).to_have_text("Weekly sync", timeout=WAIT_MS)


async def test_teams_view_round_trip(page: Page, control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting("Bridge demo", lobby="manual", start=False)
    await page.goto(ui(info, f"meetings/{meeting['id']}"))
    state = page.locator("#call-state")
    await expect(state).to_have_attribute("data-state", "notStarted", timeout=WAIT_MS)
    await expect(page.locator("#end")).to_be_disabled()
    await expect(page.locator("#join-code")).to_have_text(meeting["joinMeetingId"])

    await page.locator("#start").click()
    await expect(state).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    await expect(state).to_have_text("Live")
    await expect(page.locator("#start")).to_be_disabled()
    await expect(person(page, "in-call", "Megan")).to_be_visible()

    # A Teams user joins and posts; what they type is text, not markup.
    await page.locator("#new-user").fill("Bob")
    await page.get_by_role("button", name="Add Teams user").click()
    await expect(page.locator("#chat li.system", has_text="Bob joined")).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#post-as option:checked")).to_have_text("Bob", timeout=WAIT_MS)
    await page.locator("#text").fill("<hello>")
    await page.locator("#send").click()
    posted = page.locator("#chat li.message", has_text="<hello>")
    await expect(posted).to_be_visible(timeout=WAIT_MS)
    await expect(posted.locator(".sender")).to_have_text("Bob")
    assert await page.evaluate("document.getElementsByTagName('hello').length") == 0
    await expect(page.locator("#text")).to_have_value("")
    thread = await control.ok("GET", f"/sandbox/v1/meetings/{meeting['id']}/messages")
    sent = [m for m in thread["value"] if m.get("senderDisplayName") == "Bob"]
    assert [m["content"]["message"] for m in sent] == ["<p>&lt;hello&gt;</p>"]

    # Two ACS identities wait in the lobby; the organizer admits one.
    ann = await new_user(info)
    carl = await new_user(info)
    ann_leg = await join_call(control, ann, meeting, "Ann (SMS)")
    await join_call(control, carl, meeting, "Carl (SMS)")
    assert ann_leg["state"] == "lobby"
    await expect(person(page, "lobby", "Carl (SMS)")).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#lobby-count")).to_have_text("2")
    await person(page, "lobby", "Ann (SMS)").get_by_role("button", name="Admit").click()
    await expect(person(page, "in-call", "Ann (SMS)")).to_be_visible(timeout=WAIT_MS)
    await expect(person(page, "lobby", "Ann (SMS)")).to_have_count(0)
    await expect(page.locator("#chat li.system", has_text="Ann (SMS) joined")).to_be_visible(timeout=WAIT_MS)

    # Now in the call, Ann's identity may use the chat; her text shows under her name, marked external.
    async with chat(info, ann, meeting["threadId"]) as client:
        await client.send_message("Hi all, texting from the bus", sender_display_name="Ann (SMS)")
    from_ann = page.locator("#chat li.message.external", has_text="texting from the bus")
    await expect(from_ann.locator(".sender")).to_have_text("Ann (SMS)", timeout=WAIT_MS)
    await page.locator("#text").fill("Welcome, Ann! We're on slide 3.")
    await page.locator("#text").press("Enter")
    await expect(page.locator("#chat li.message", has_text="slide 3")).to_be_visible(timeout=WAIT_MS)
    await screenshot(page, "sandbox-teams.png")
    await screenshot(page, "sandbox-teams-mobile.png", MOBILE)

    await person(page, "in-call", "Ann (SMS)").get_by_role("button", name="Remove").click()
    await expect(person(page, "in-call", "Ann (SMS)")).to_have_count(0, timeout=WAIT_MS)
    await expect(page.locator("#chat li.system", has_text="Ann (SMS) left")).to_be_visible(timeout=WAIT_MS)
    leg = await control.ok("GET", f"/sandbox/v1/calls/{ann_leg['callId']}", headers=ann.auth)
    assert leg["state"] == "removed"

    await page.locator("#end").click()
    await expect(state).to_have_attribute("data-state", "ended", timeout=WAIT_MS)
    await expect(state).to_have_text("Ended")
    await expect(page.locator("#end")).to_be_disabled()
    await expect(page.locator("#lobby li.person")).to_have_count(0)
    ended = await control.ok("GET", f"/sandbox/v1/meetings/{meeting['id']}")
    assert ended["callState"] == "ended"


async def test_admit_before_start_shows_the_reason(page: Page, control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting("Not yet", lobby="manual", start=False)
    await join_call(control, await new_user(info), meeting, "Early (SMS)")
    await page.goto(ui(info, f"meetings/{meeting['id']}"))
    await person(page, "lobby", "Early (SMS)").get_by_role("button", name="Admit").click()
    await expect(page.locator("#status")).to_contain_text("has not started", timeout=WAIT_MS)
    await expect(person(page, "lobby", "Early (SMS)")).to_be_visible()


async def test_teams_html_renders_safely(page: Page, control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting("Formatting")
    organizer = meeting["organizerId"]
    html = (
        '<p>Hi <at id="0">Ann</at>, see <a href="https://example.com/notes">the notes</a>'
        ' and <a href="javascript:window.pwned=1">this</a></p>'
        '<ul><li>one</li><li><b onclick="window.pwned=2">two</b></li></ul><script>window.pwned=3</script>'
        '<img src="/nowhere.png" onerror="window.pwned=4"><iframe src="https://example.com/"></iframe>'
    )
    path = f"/sandbox/v1/meetings/{meeting['id']}/messages"
    await control.ok("POST", path, {"from": organizer, "html": html})
    edited = await control.ok("POST", path, {"from": organizer, "html": "<p>first draft</p>"})
    await control.ok("PATCH", f"{path}/{edited['id']}", {"from": organizer, "html": "<p>second draft</p>"})
    gone = await control.ok("POST", path, {"from": organizer, "html": "<p>oops</p>"})
    await control.ok("DELETE", f"{path}/{gone['id']}?from={quote(organizer)}")

    await page.goto(ui(info, f"meetings/{meeting['id']}"))
    body = page.locator("#chat li.message", has_text="the notes").locator(".body")
    await expect(body).to_be_visible(timeout=WAIT_MS)
    await expect(body.locator(".mention")).to_have_text("@Ann")
    await expect(body.locator("a")).to_have_count(1)
    await expect(body.locator("a")).to_have_attribute("href", "https://example.com/notes")
    await expect(body.locator("a")).to_have_attribute("rel", re.compile("noopener"))
    await expect(body).to_contain_text("and this")  # the javascript: link keeps its text, loses its link
    await expect(body.locator("ul > li")).to_have_text(["one", "two"])
    assert await body.locator("script, img, iframe, [onclick], [onerror]").count() == 0
    await body.locator("b").click()
    assert await page.evaluate("window.pwned") is None
    await expect(page.locator("#chat li.message", has_text="second draft").locator(".mark")).to_have_text("Edited")
    await expect(page.locator("#chat li.message .body.deleted")).to_have_text("This message has been deleted.")
    assert await page.locator("#chat").get_by_text("oops").count() == 0


async def test_phone_sends_and_receives(page: Page, control: Control, info: SandboxInfo, sandbox: Sandbox) -> None:
    received: list[SandboxEvent] = []

    def listen(event: SandboxEvent) -> None:
        if event.type == SMS_RECEIVED:
            received.append(event)

    assert sandbox.world is not None
    sandbox.world.events.subscribe(listen)
    try:
        response = await page.goto(ui(info, f"phones/{quote(PHONE, safe='')}"))
        assert response is not None and response.status == 200
        await expect(page.locator("#number")).to_have_text(PHONE)
        await expect(page.locator("#to option")).to_have_count(2, timeout=WAIT_MS)
        await expect(page.locator("#to")).to_have_value(info.sms_number)

        await page.locator("#message").fill("JOIN 123456")
        await page.locator("#send").click()
        out = page.locator("#conversation li.sms.out", has_text="JOIN 123456")
        await expect(out.locator(".sent")).to_have_text("sent", timeout=WAIT_MS)
        await expect(out).to_contain_text(f"to {info.sms_number} (ACS)")
        assert [(e.data["from"], e.data["to"], e.data["message"]) for e in received] == [
            (PHONE, info.sms_number, "JOIN 123456")
        ]

        # The bridge's answer, sent through ACS SMS, arrives in the inbox.
        sms = SmsClient.from_connection_string(info.connection_string, connection_verify=info.ca_file)
        async with sms:
            [result] = await sms.send(info.sms_number, PHONE, "Bridge demo: you're in the meeting chat.")
            assert result.successful
            [result] = await sms.send(info.sms_number, PHONE, "Megan Bowen: Welcome, <Ann> & co!")
            assert result.successful
        incoming = page.locator("#conversation li.sms.in", has_text="Welcome")
        await expect(incoming.locator(".text")).to_have_text("Megan Bowen: Welcome, <Ann> & co!", timeout=WAIT_MS)
        await expect(incoming).to_contain_text(f"from {info.sms_number} (ACS)")
        await expect(page.locator("#conversation li.sms")).to_have_count(3)

        # The Twilio number is one choice away; with no webhook configured Twilio drops it, and says so.
        await page.locator("#to").select_option(TWILIO_NUMBER)
        await page.locator("#message").fill("Thanks!")
        await page.locator("#message").press("Enter")
        await expect(page.locator("#conversation li.sms.out", has_text="Thanks!")).to_contain_text(
            f"to {TWILIO_NUMBER} (Twilio)", timeout=WAIT_MS
        )
        twilio = await control.ok("GET", "/sandbox/v1/twilio")
        assert twilio["stats"]["inbound"]["dropped"] == 1
        assert len(received) == 1
        await screenshot(page, "sandbox-phone.png", MOBILE)

        # Texting STOP opts the phone out, as carriers do, and the phone shows it.
        await page.locator("#to").select_option(info.sms_number)
        await page.locator("#message").fill("STOP")
        await page.locator("#send").click()
        await expect(page.locator("#opted-out")).to_be_visible(timeout=WAIT_MS)
    finally:
        sandbox.world.events.unsubscribe(listen)


async def test_phone_shows_why_a_send_failed(page: Page, control: Control, info: SandboxInfo) -> None:
    await page.goto(ui(info, f"phones/{quote(PHONE, safe='')}"))
    await expect(page.locator("#to option")).to_have_count(2, timeout=WAIT_MS)
    await page.locator("#message").fill("ж" * 1100)  # 1100 UCS-2 characters: over ACS's 2048 bytes
    await page.locator("#send").click()
    failed = page.locator("#conversation li.sms.out .failed")
    await expect(failed).to_contain_text("not sent: The message is too long", timeout=WAIT_MS)


async def test_bad_ids_get_a_friendly_404(page: Page, control: Control, info: SandboxInfo) -> None:
    for path, reason in (
        ("meetings/MSpnosuchmeeting", "There is no meeting MSpnosuchmeeting"),
        ("phones/12345", "12345 is not a phone number"),
        ("nowhere/at/all", "There is no page /sandbox/ui/nowhere/at/all"),
        ("static/..%2Fpages.py", "There is no file"),
    ):
        response = await page.goto(ui(info, path))
        assert response is not None and response.status == 404, path
        await expect(page.locator("#reason")).to_contain_text(reason)
        await expect(page.get_by_role("link", name="Back to the sandbox's pages")).to_have_attribute(
            "href", "/sandbox/ui/"
        )


async def test_pages_are_served_with_a_strict_policy(control: Control, info: SandboxInfo) -> None:
    for path in ("", "phones/%2B15550100", "static/teams.js", "meetings/none"):
        async with control.session.get(ui(info, path)) as resp:
            policy = resp.headers["Content-Security-Policy"]
            assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, path
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
    for script in ("common.js", "index.js", "teams.js", "phone.js"):
        async with control.session.get(ui(info, f"static/{script}")) as resp:
            assert resp.status == 200 and resp.content_type == "text/javascript", script
            code = await resp.text()
        # Data reaches the pages as text only: no HTML-parsing sinks in the live document.
        assert not re.search(r"innerHTML\s*=|outerHTML\s*=|insertAdjacentHTML|document\.write", code), script
    async with control.session.get(f"{info.endpoint}sandbox/ui", allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"] == "/sandbox/ui/"


def test_run_prints_the_pages(info: SandboxInfo) -> None:
    demo = Demo(meeting={"id": "MSpdemo"}, secret="whsec_x", webhook_url="http://127.0.0.1:8080/channels/webhook/demo")
    banner = _banner(load_settings(None, environ={}), "http://127.0.0.1:8080", info, demo)
    assert f"the meeting in Teams: {info.endpoint}sandbox/ui/meetings/MSpdemo" in banner
    assert f"the demo phone:       {info.endpoint}sandbox/ui/phones/%2B15550100" in banner
    assert info.ca_file in banner
