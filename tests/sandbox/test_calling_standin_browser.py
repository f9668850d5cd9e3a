"""The stand-in Calling SDK in real headless Chromium: a localhost page imports it from the sandbox and joins
meetings as the joiner page does; states, end codes, token refresh, the one-agent rules, BAD_PROTOCOL, and a
page that dies taking its legs with it after the grace period."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from azure.communication.identity import CommunicationUserIdentifier
from playwright.async_api import Error as PlaywrightError

from bot.sandbox import SandboxInfo
from tests.support.acs import identity_client
from tests.support.calling_page import (
    CHROMIUM,
    FLAGS,
    Harness,
    PageServer,
    page_server,
    require_chromium,
    standin_url,
)
from tests.support.meetings import AcsUser, new_user
from tests.support.sandbox import Control

MEETINGS = "/sandbox/v1/meetings"
Json = dict[str, Any]


@pytest.fixture(scope="module")
async def pages() -> AsyncIterator[PageServer]:
    async with page_server() as server:
        yield server


@pytest.fixture(scope="module")
async def playwright() -> AsyncIterator[Any]:
    require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
async def browser(playwright: Any) -> AsyncIterator[Any]:
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
    yield browser
    await browser.close()


class Tokens:
    """Fresh tokens for the page's tokenRefresher, by agent key; a key can be made to fail."""

    def __init__(self, info: SandboxInfo) -> None:
        self.info = info
        self.users: dict[str, AcsUser] = {}
        self.failing: set[str] = set()
        self.asked: dict[str, int] = {}

    async def fresh(self, key: str) -> str:
        self.asked[key] = self.asked.get(key, 0) + 1
        if key in self.failing:
            raise RuntimeError("no token for you")
        async with identity_client(self.info) as identities:
            token = await identities.get_token(CommunicationUserIdentifier(self.users[key].id), ["voip", "chat"])
        return str(token.token)


async def open_harness(context: Any, pages: PageServer, info: SandboxInfo, tokens: Tokens) -> Harness:
    page = await context.new_page()
    await page.expose_function("freshToken", tokens.fresh)
    harness = Harness(page)
    await harness.open(pages.url(standin_url(info.endpoint)))
    return harness


NewPage = Callable[[], Awaitable[Harness]]


@pytest.fixture
async def tokens(info: SandboxInfo) -> Tokens:
    return Tokens(info)


@pytest.fixture
async def new_page(
    browser: Any, pages: PageServer, info: SandboxInfo, control: Control, tokens: Tokens
) -> AsyncIterator[NewPage]:
    """Pages, each in its own browser context (a context per page, as one browser per bridge would not be)."""
    contexts: list[Any] = []

    async def make() -> Harness:
        context = await browser.new_context(ignore_https_errors=True)
        contexts.append(context)
        return await open_harness(context, pages, info, tokens)

    yield make
    for context in contexts:
        await context.close()


@pytest.fixture
async def harness(new_page: NewPage) -> Harness:
    return await new_page()


async def agent_for(harness: Harness, tokens: Tokens, key: str, user: AcsUser | None = None) -> AcsUser:
    user = user or await new_user(tokens.info)
    tokens.users[key] = user
    created = await harness.create_agent(key, user.token)
    assert created == {"ok": True, "connectionState": "Connected"}, created
    return user


async def roster(control: Control, meeting: Json) -> Json:
    return dict((await control.ok("GET", f"{MEETINGS}/{meeting['id']}"))["roster"])


async def acs_in_call(control: Control, meeting: Json) -> list[str]:
    return [p["id"] for p in (await roster(control, meeting))["inCall"] if p.get("kind") == "acs"]


async def wait_until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20.0) -> None:
    for _ in range(int(timeout_s / 0.1)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def joined(harness: Harness, meeting: Json, key: str = "ann", state: str = "Connected") -> str:
    call = await harness.join(key, {"meetingLink": meeting["joinWebUrl"]})
    await harness.wait_state(call["id"], state)
    return str(call["id"])


async def test_lobby_then_admit_connects_with_the_states_of_the_sdk(
    control: Control, harness: Harness, tokens: Tokens
) -> None:
    meeting = await control.meeting(lobby="manual")
    ann = await agent_for(harness, tokens, "ann")
    call = await harness.join("ann", {"meetingLink": meeting["joinWebUrl"]})
    # join() returns at once, in state None, with the thread id read from the link.
    assert call["state"] == "None"
    assert call["threadId"] == meeting["threadId"]
    await harness.wait_state(call["id"], "InLobby")
    [waiting] = (await roster(control, meeting))["lobby"]
    assert waiting["id"] == call["id"] and waiting["identity"] == ann.id and waiting["muted"] is True
    await control.ok("POST", f"{MEETINGS}/{meeting['id']}/lobby/{call['id']}/admit")
    await harness.wait_state(call["id"], "Connected")
    assert await harness.states(call["id"]) == ["None", "Connecting", "InLobby", "Connected"]
    assert await acs_in_call(control, meeting) == [call["id"]]
    after = await harness.run("muteIncoming", call["id"])
    assert after["incomingMuted"] is True

    async def incoming_muted() -> bool:
        return bool([p for p in (await roster(control, meeting))["inCall"] if p.get("incomingAudioMuted")])

    await wait_until(incoming_muted, "the roster to show incoming audio muted")


@pytest.mark.parametrize("sub_code", [5000, 5300])
async def test_removal_by_the_organizer_ends_the_call_0_5000_or_5300(
    control: Control, harness: Harness, tokens: Tokens, sub_code: int
) -> None:
    meeting = await control.meeting()
    await agent_for(harness, tokens, "ann")
    call_id = await joined(harness, meeting)
    status, _ = await control.call("DELETE", f"{MEETINGS}/{meeting['id']}/participants/{call_id}?subCode={sub_code}")
    assert status == 204
    ended = await harness.wait_state(call_id, "Disconnected")
    assert ended["end"] == {"code": 0, "subCode": sub_code}
    assert await harness.states(call_id) == ["None", "Connecting", "Connected", "Disconnected"]


async def test_the_meeting_ending_for_all_ends_the_call_0_4097(
    control: Control, harness: Harness, tokens: Tokens
) -> None:
    meeting = await control.meeting()
    await agent_for(harness, tokens, "ann")
    call_id = await joined(harness, meeting)
    await control.ok("POST", f"{MEETINGS}/{meeting['id']}/end")
    assert (await harness.wait_state(call_id, "Disconnected"))["end"] == {"code": 0, "subCode": 4097}


async def test_hang_up_ends_the_call_0_0_and_leaves_the_roster(
    control: Control, harness: Harness, tokens: Tokens
) -> None:
    meeting = await control.meeting()
    await agent_for(harness, tokens, "ann")
    call_id = await joined(harness, meeting)
    after = await harness.run("hangUp", call_id)
    assert after["state"] == "Disconnected" and after["end"] == {"code": 0, "subCode": 0}
    assert (await harness.states(call_id))[-2:] == ["Disconnecting", "Disconnected"]
    assert await acs_in_call(control, meeting) == []


async def test_join_by_meeting_id_learns_the_thread_id_from_the_sandbox(
    control: Control, harness: Harness, tokens: Tokens
) -> None:
    meeting = await control.meeting()
    await agent_for(harness, tokens, "ann")
    call = await harness.join("ann", {"meetingId": meeting["joinMeetingId"], "passcode": meeting["passcode"]})
    assert call["threadId"] is None
    connected = await harness.wait_state(call["id"], "Connected")
    assert connected["threadId"] == meeting["threadId"]
    wrong = await harness.join("ann", {"meetingId": meeting["joinMeetingId"], "passcode": "nope"})
    assert (await harness.wait_state(wrong["id"], "Disconnected"))["end"] == {"code": 403, "subCode": 0}
    assert (await harness.run("badJoin", "ann"))["subCode"] == 40209


async def test_one_agent_per_identity_anywhere_and_per_call_client(
    control: Control, new_page: NewPage, tokens: Tokens
) -> None:
    first = await new_page()
    ann = await agent_for(first, tokens, "ann")
    again = await first.create_agent("ann-2", ann.token)
    assert (again["name"], again["code"], again["subCode"]) == ("CallingCommunicationError", 409, 40228)
    elsewhere = await (await new_page()).create_agent("ann", ann.token)
    assert (elsewhere["code"], elsewhere["subCode"]) == (409, 40228)
    bob = await new_user(tokens.info)
    same_client = await first.run("sameClientAgain", "ann", bob.token)
    assert (same_client["code"], same_client["subCode"]) == (400, 40008)


async def test_interop_not_enabled_fails_the_join_403_5221(control: Control, harness: Harness, tokens: Tokens) -> None:
    meeting = await control.meeting()
    await agent_for(harness, tokens, "ann")
    await control.ok("PUT", "/sandbox/v1/call-settings", {"interopRefusal": 5221})
    call = await harness.join("ann", {"meetingLink": meeting["joinWebUrl"]})
    ended = await harness.wait_state(call["id"], "Disconnected")
    assert ended["end"] == {"code": 403, "subCode": 5221}
    assert await harness.states(call["id"]) == ["None", "Connecting", "Disconnected"]


async def test_an_end_code_set_by_the_service_reaches_the_page(
    control: Control, harness: Harness, tokens: Tokens
) -> None:
    meeting = await control.meeting()
    await agent_for(harness, tokens, "ann")
    call_id = await joined(harness, meeting)
    await control.ok("POST", f"{MEETINGS}/{meeting['id']}/participants/{call_id}/end", {"code": 777, "subCode": 1})
    assert (await harness.wait_state(call_id, "Disconnected"))["end"] == {"code": 777, "subCode": 1}


async def test_a_short_token_is_refreshed_on_the_live_connection_and_the_call_holds(
    control: Control, harness: Harness, tokens: Tokens
) -> None:
    meeting = await control.meeting()
    await control.ok("PUT", "/sandbox/v1/token-settings", {"lifetimeSeconds": 6})
    await agent_for(harness, tokens, "ann")
    call_id = await joined(harness, meeting)

    async def refreshed_twice() -> bool:
        [agent] = (await control.ok("GET", "/sandbox/v1/call-agents"))["value"]
        return int(agent["tokenRefreshes"]) >= 2

    # Two refreshes: the call outlived its first token and a refreshed one.
    await wait_until(refreshed_twice, "two token refreshes")
    assert (await harness.call(call_id))["state"] == "Connected"
    assert tokens.asked["ann"] >= 2
    assert await acs_in_call(control, meeting) == [call_id]


async def test_a_token_the_refresher_cannot_renew_ends_the_call_495_4507(
    control: Control, harness: Harness, tokens: Tokens
) -> None:
    meeting = await control.meeting()
    await control.ok("PUT", "/sandbox/v1/token-settings", {"lifetimeSeconds": 4})
    tokens.failing.add("ann")
    await agent_for(harness, tokens, "ann")
    call_id = await joined(harness, meeting)
    assert (await harness.wait_state(call_id, "Disconnected"))["end"] == {"code": 495, "subCode": 4507}
    await harness.page.wait_for_function("harness.connectionState('ann') === 'Disconnected'")
    assert {"agent": "ann", "newValue": "Disconnected", "reason": "invalidToken"} in await harness.connection_log("ann")


async def test_a_network_drop_ends_connected_calls_410_3112_and_waiting_ones_490_4525(
    control: Control, harness: Harness, tokens: Tokens
) -> None:
    meeting = await control.meeting()
    lobby = await control.meeting(lobby="manual")
    await agent_for(harness, tokens, "ann")
    connected = await joined(harness, meeting)
    waiting = await joined(harness, lobby, state="InLobby")
    await control.call("POST", f"{MEETINGS}/{meeting['id']}/participants/{connected}/drop")
    assert (await harness.wait_state(connected, "Disconnected"))["end"] == {"code": 410, "subCode": 3112}
    assert (await harness.wait_state(waiting, "Disconnected"))["end"] == {"code": 490, "subCode": 4525}
    await harness.page.wait_for_function("harness.connectionState('ann') === 'Disconnected'")
    assert {"agent": "ann", "newValue": "Disconnected", "reason": "connectionIssue"} in await harness.connection_log(
        "ann"
    )
    # The service does not know yet: the leg stays until the grace period ends.
    assert await acs_in_call(control, meeting) == [connected]
    await control.ok("PUT", "/sandbox/v1/call-settings", {"graceSeconds": 0})

    async def dropped() -> bool:
        return await acs_in_call(control, meeting) == []

    await wait_until(dropped, "the dropped leg to leave the call")


async def test_dispose_hangs_up_every_call_at_once(control: Control, harness: Harness, tokens: Tokens) -> None:
    meeting = await control.meeting()
    await agent_for(harness, tokens, "ann")
    call_id = await joined(harness, meeting)
    assert await harness.run("dispose", "ann") == "Disconnected"
    assert (await harness.call(call_id))["end"] == {"code": 0, "subCode": 0}
    assert await acs_in_call(control, meeting) == []
    assert (await control.ok("GET", "/sandbox/v1/call-agents"))["lingering"] == []


async def test_a_closed_page_leaves_its_leg_until_the_grace_period_ends(
    control: Control, new_page: NewPage, tokens: Tokens
) -> None:
    meeting = await control.meeting()
    harness = await new_page()
    await control.ok("PUT", "/sandbox/v1/call-settings", {"graceSeconds": 60})
    await agent_for(harness, tokens, "ann")
    call_id = await joined(harness, meeting)
    await harness.page.close()

    async def lingering() -> bool:
        listing = await control.ok("GET", "/sandbox/v1/call-agents")
        return [item["callId"] for item in listing["lingering"]] == [call_id]

    await wait_until(lingering, "the vanished page's leg to linger")
    assert await acs_in_call(control, meeting) == [call_id]
    await control.ok("PUT", "/sandbox/v1/call-settings", {"graceSeconds": 1})

    async def dropped() -> bool:
        return await acs_in_call(control, meeting) == []

    await wait_until(dropped, "the leg to be dropped")
    thread = await control.ok("GET", f"{MEETINGS}/{meeting['id']}/messages")
    assert [m["type"] for m in thread["value"]][-1] == "participantRemoved"


def _browser_pids(profile: str) -> list[int]:
    """Every process of the Chromium whose profile is `profile` (its command lines name it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if profile.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


async def test_a_killed_browser_leaves_its_legs_until_the_grace_period_ends_and_the_identity_can_rejoin(
    control: Control, playwright: Any, harness: Harness, pages: PageServer, info: SandboxInfo, tokens: Tokens
) -> None:
    meeting = await control.meeting()
    await control.ok("PUT", "/sandbox/v1/call-settings", {"graceSeconds": 60})
    with tempfile.TemporaryDirectory(prefix="chromium-killed-") as profile:
        doomed = await playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS, ignore_https_errors=True
        )
        try:
            victim = await open_harness(doomed, pages, info, tokens)
            ann = await agent_for(victim, tokens, "ann")
            old = await joined(victim, meeting)
            for pid in _browser_pids(profile):
                os.kill(pid, signal.SIGKILL)

            async def lingering() -> bool:
                listing = await control.ok("GET", "/sandbox/v1/call-agents")
                return [item["callId"] for item in listing["lingering"]] == [old]

            await wait_until(lingering, "the killed browser's leg to linger")
        finally:
            with suppress(PlaywrightError):  # it is dead already
                await doomed.close()
    # A new agent for the same identity while the old leg lingers: a new leg, a new participant.
    await agent_for(harness, tokens, "ann", ann)
    new = await joined(harness, meeting)
    assert sorted(await acs_in_call(control, meeting)) == sorted([old, new])
    await control.ok("PUT", "/sandbox/v1/call-settings", {"graceSeconds": 0})

    async def only_new() -> bool:
        return await acs_in_call(control, meeting) == [new]

    await wait_until(only_new, "the old leg to be dropped")
    assert (await harness.call(new))["state"] == "Connected"


async def test_an_http_127_0_0_1_page_gets_bad_protocol(
    browser: Any, pages: PageServer, control: Control, tokens: Tokens
) -> None:
    context = await browser.new_context(ignore_https_errors=True)
    try:
        page = await context.new_page()
        harness = Harness(page)
        # The stand-in from the page's own origin: CORS lets only localhost pages import it from the sandbox.
        await harness.open(pages.url("/standin/standin.js", host="127.0.0.1"))
        refused = await harness.run("newClient")
        assert (refused["code"], refused["subCode"]) == (400, 40100)
        assert refused["message"] == "ACS Web Calling SDK must be used through https, file:, or localhost"
    finally:
        await context.close()
