"""The bridge end to end with connector = "browser": each leg held by the sandbox's stand-in Calling SDK in real
headless Chromium, the bridge over loopback with the real Azure SDKs. One bridge and one browser serve the module;
each test has its own meeting (by join code) and its own users, and ends its meeting when done."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.metrics import METRICS
from bot.models import SessionState
from bot.sandbox import SandboxInfo
from tests.support.bridge import Bridge, wait_for
from tests.support.browser_bridge import Stage, browser_stage

S = SessionState
LOBBY, ENDS, DROPS, UNKNOWN, CRASH, TOKENS, CROWD, HANG, REFUSED, FIFTY, RESTART = (
    "610001",
    "610002",
    "610003",
    "610004",
    "610005",
    "610006",
    "610007",
    "610008",
    "610009",
    "610010",
    "610011",
)
LEGS_PER_PAGE = 4


@pytest.fixture(scope="module")
async def stage(
    http: aiohttp.ClientSession, info: SandboxInfo, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stage]:
    auto = (ENDS, DROPS, UNKNOWN, CRASH, TOKENS, CROWD, HANG, REFUSED, FIFTY, RESTART)
    lobbies = {code: "auto" for code in auto} | {LOBBY: "manual"}
    async with browser_stage(
        http,
        info,
        tmp_path_factory.mktemp("browser-bridge"),
        lobbies,
        legs_per_page=LEGS_PER_PAGE,
        heartbeat_s=1.0,
        heartbeat_timeout_s=3.0,
    ) as stage:
        yield stage


async def test_lobby_admission_both_ways_under_the_right_name_then_removal(stage: Stage) -> None:
    await stage.join("ann", LOBBY)
    await stage.until_state("ann", LOBBY, S.LOBBY)
    await stage.until_notice("ann", "waiting to be admitted")
    await stage.say("ann", LOBBY, "held in the lobby")
    [waiting] = (await stage.roster(LOBBY))["lobby"]
    assert waiting["displayName"] == "Ann (app)"

    await stage.control.ok("POST", f"{stage.path(LOBBY)}/lobby/{waiting['id']}/admit")
    session = await stage.until_state("ann", LOBBY, S.IN_CALL)
    assert session.call_id
    await stage.until_notice("ann", "in the meeting chat")
    [leg] = await stage.acs_in_call(LOBBY)
    # Muted, with incoming audio muted: the page plays and sends nothing.
    assert leg["displayName"] == "Ann (app)" and leg["muted"] and leg["incomingAudioMuted"], leg
    await stage.until_texts(LOBBY, ["held in the lobby"])
    await stage.say("ann", LOBBY, "now in the call")
    await stage.until_texts(LOBBY, ["now in the call"])
    assert {name for name, _ in await stage.texts(LOBBY)} == {"Ann (app)"}

    await stage.post(LOBBY, "<p>Welcome, Ann</p>")
    await stage.until_message("ann", "Welcome, Ann")

    await stage.control.ok("DELETE", f"{stage.path(LOBBY)}/participants/{leg['id']}")
    session = await stage.until_state("ann", LOBBY, S.LEFT)
    assert session.reason == "removed"
    await stage.until_notice("ann", "The organizer removed you")
    assert not await stage.acs_in_call(LOBBY)


async def test_the_meeting_ending_ends_the_session(stage: Stage) -> None:
    await stage.join("bea", ENDS)
    await stage.until_state("bea", ENDS, S.IN_CALL)
    await stage.end_meeting(ENDS)
    await stage.until_state("bea", ENDS, S.ENDED)
    await stage.until_notice("bea", "has ended")


async def test_a_dropped_leg_is_joined_again_and_its_user_told_of_the_gap_once(stage: Stage) -> None:
    await stage.join("cal", DROPS)
    first = await stage.until_state("cal", DROPS, S.IN_CALL)
    await stage.until_notice("cal", "in the meeting chat")
    [leg] = await stage.acs_in_call(DROPS)
    await stage.end_leg(DROPS, leg["id"], 410, 3112)  # media connectivity lost

    async def rejoined() -> bool:
        session = await stage.session("cal", DROPS)
        assert session is not None and session.state != S.FAILED, session
        return session.state == S.IN_CALL and session.call_id != first.call_id

    await wait_for(rejoined, 30, what="cal back in the call on a new leg")
    back = await stage.until_notice("cal", "back in the meeting chat")
    assert "may be missing" in back
    await stage.say("cal", DROPS, "after the drop")
    await stage.until_texts(DROPS, ["after the drop"])
    assert len([n for n in stage.notices("cal") if "in the meeting chat" in n]) == 2, stage.notices("cal")
    assert len(await stage.acs_in_call(DROPS)) == 1
    await stage.end_meeting(DROPS)


async def test_an_unknown_end_code_fails_the_session_with_the_code_shown(stage: Stage) -> None:
    await stage.join("dot", UNKNOWN)
    await stage.until_state("dot", UNKNOWN, S.IN_CALL)
    [leg] = await stage.acs_in_call(UNKNOWN)
    await stage.end_leg(UNKNOWN, leg["id"], 487, 4242)
    session = await stage.until_state("dot", UNKNOWN, S.FAILED)
    assert session.reason is not None and "487/4242" in session.reason
    told = await stage.until_notice("dot", "Could not connect you")
    assert "487/4242" in told
    # Final: nobody joins it again.
    await asyncio.sleep(2)
    assert not await stage.acs_in_call(UNKNOWN)
    assert (await stage.session("dot", UNKNOWN)) == session


async def test_interop_refused_fails_with_what_an_operator_must_allow(stage: Stage) -> None:
    await stage.control.ok("PUT", "/sandbox/v1/call-settings", {"interopRefusal": 5221})
    try:
        await stage.join("eli", REFUSED)
        session = await stage.until_state("eli", REFUSED, S.FAILED)
    finally:
        await stage.control.ok("PUT", "/sandbox/v1/call-settings", {"interopRefusal": None})
    assert session.reason is not None and "403/5221" in session.reason and "operator" in session.reason


async def test_a_short_lived_token_is_refreshed_during_the_call(stage: Stage) -> None:
    lifetime_s = 4
    await stage.control.ok("PUT", "/sandbox/v1/token-settings", {"lifetimeSeconds": lifetime_s})
    try:
        await stage.join("fay", TOKENS)
        first = await stage.until_state("fay", TOKENS, S.IN_CALL)
        before = _refreshes(stage)
        # Several lifetimes: without a refresh the sandbox ends the leg 495/4507 once its token expires.
        await asyncio.sleep(lifetime_s * 3.5)
        session = await stage.session("fay", TOKENS)
        assert session is not None and session.state == S.IN_CALL and session.call_id == first.call_id, session
        assert _refreshes(stage) - before >= 2
        await stage.say("fay", TOKENS, "still here")
        await stage.until_texts(TOKENS, ["still here"])
    finally:
        await stage.control.ok("PUT", "/sandbox/v1/token-settings", {"lifetimeSeconds": None})
    assert len([n for n in stage.notices("fay") if "in the meeting chat" in n]) == 1
    await stage.end_meeting(TOKENS)


# 50 legs took about 13 s on two busy cores: well inside the suite's budget, so not marked slow.
@pytest.mark.parametrize(("code", "size"), [(CROWD, 10), (FIFTY, 50)], ids=["10 legs", "50 legs"])
async def test_a_crowd_of_legs_in_one_browser_across_pages(stage: Stage, code: str, size: int) -> None:
    users = [f"crowd{size}-{i:02d}" for i in range(size)]
    await asyncio.gather(*(stage.join(u, code) for u in users))
    await asyncio.gather(*(stage.until_state(u, code, S.IN_CALL, limit_s=120) for u in users))
    assert len(await stage.acs_in_call(code)) == size
    assert stage.connector.live_legs >= size
    assert len([p for p in stage.connector.browser.pages if p.legs]) >= -(-size // LEGS_PER_PAGE)
    await stage.post(code, "<p>to everyone</p>")
    for user in users:
        await stage.until_message(user, "to everyone")
    await stage.end_meeting(code)
    await asyncio.gather(*(stage.until_state(u, code, S.ENDED) for u in users))


async def test_a_hung_page_is_given_up_and_its_legs_joined_again(stage: Stage) -> None:
    await stage.join("gus", HANG)
    first = await stage.until_state("gus", HANG, S.IN_CALL)
    [page] = [p for p in stage.connector.browser.pages if first.call_id in p.legs]
    # The page's event loop never comes back: only the heartbeat can tell.
    await page.page.evaluate("() => { setTimeout(() => { for (;;) {} }, 0); }")

    async def rejoined() -> bool:
        session = await stage.session("gus", HANG)
        return session is not None and session.state == S.IN_CALL and session.call_id != first.call_id

    await wait_for(rejoined, 45, what="gus back in the call from another page")
    assert page.lost
    await stage.until_notice("gus", "back in the meeting chat")
    await stage.end_meeting(HANG)


async def test_chromium_killed_mid_meeting_every_session_comes_back_nothing_lost_or_doubled(stage: Stage) -> None:
    await stage.control.ok("PUT", "/sandbox/v1/call-settings", {"graceSeconds": 5})
    users = ["hal", "ivy", "jon"]
    for user in users:
        await stage.join(user, CRASH)
    firsts = {u: await stage.until_state(u, CRASH, S.IN_CALL) for u in users}
    for user in users:
        await stage.say(user, CRASH, f"{user} before")
    await stage.post(CRASH, "<p>teams before</p>")
    await stage.until_texts(CRASH, [f"{u} before" for u in users])
    launches = stage.connector.browser.launches
    pid = stage.connector.browser.pid
    assert pid is not None

    os.kill(pid, signal.SIGKILL)
    # Acknowledged while no leg is in the call: held, then sent once the legs are back.
    for user in users:
        await stage.say(user, CRASH, f"{user} during")

    async def all_back() -> bool:
        for user in users:
            session = await stage.session(user, CRASH)
            assert session is not None and session.state not in (S.FAILED, S.LEFT, S.ENDED), session
            if session.state != S.IN_CALL or session.call_id == firsts[user].call_id:
                return False
        return True

    await wait_for(all_back, 60, what="every session back in the call")
    assert stage.connector.browser.launches == launches + 1
    for user in users:
        await stage.say(user, CRASH, f"{user} after")
    await stage.post(CRASH, "<p>teams after</p>")
    lines = await stage.until_texts(CRASH, [f"{u} {w}" for u in users for w in ("before", "during", "after")])
    for user in users:
        for when in ("before", "during", "after"):
            assert lines.count(f"{user} {when}") == 1, (user, when, lines)
        await stage.until_message(user, "teams after")
        got = stage.messages(user)
        assert got.count("teams before") == 1 and got.count("teams after") == 1, got
        assert len([n for n in stage.notices(user) if "back in the meeting chat" in n]) == 1, stage.notices(user)

    async def one_leg_each() -> bool:
        return len(await stage.acs_in_call(CRASH)) == len(users)

    # The vanished legs linger for the grace period, beside the new ones, then go.
    await wait_for(one_leg_each, 30, what="the vanished legs to go")
    await stage.control.ok("PUT", "/sandbox/v1/call-settings", {"graceSeconds": 60})
    await stage.end_meeting(CRASH)


async def test_a_graceful_restart_hangs_up_and_joins_again_telling_each_user_once(stage: Stage) -> None:
    users = ["kim", "lou"]
    for user in users:
        await stage.join(user, RESTART)
    firsts = {u: await stage.until_state(u, RESTART, S.IN_CALL) for u in users}
    settings = stage.bridge.settings
    await stage.bridge.stop()
    # Hung up on the way out, not left to linger as a vanished client would.
    assert not await stage.acs_in_call(RESTART)
    stage.bridge = await Bridge(settings).start()

    async def back() -> bool:
        sessions = [await stage.session(u, RESTART) for u in users]
        return all(
            s is not None and s.state == S.IN_CALL and s.call_id != firsts[s.user_id[12:]].call_id for s in sessions
        )

    await wait_for(back, 60, what="both sessions back in the call after the restart")
    await stage.post(RESTART, "<p>after the restart</p>")
    for user in users:
        await stage.until_message(user, "after the restart")
        notices = stage.notices(user)
        assert len([n for n in notices if "You're in the meeting chat" in n]) == 1, notices
        assert len([n for n in notices if "back in the meeting chat" in n]) == 1, notices
    assert len(await stage.acs_in_call(RESTART)) == len(users)
    await stage.end_meeting(RESTART)


def _refreshes(stage: Stage) -> float:
    value = stage.bridge.app[METRICS].registry.get_sample_value("bridge_token_refreshes_total")
    return value or 0.0
