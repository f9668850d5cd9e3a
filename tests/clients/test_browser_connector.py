"""The browser connector's port contract against the sandbox's stand-in Calling SDK, in real headless Chromium:
joins, leaves, unknown calls, its leg limit, and a graceful close that hangs every leg up."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.calls.browser import STANDIN_PATH, BrowserConnector
from bot.config import BrowserSection
from bot.errors import NotFoundError, PermanentError
from bot.models import CallState
from bot.sandbox import SandboxInfo
from tests.support.bridge import wait_for
from tests.support.browser_bridge import needs_chromium
from tests.support.meetings import AcsUser, new_user
from tests.support.sandbox import Control


@pytest.fixture(scope="module")
async def connector(info: SandboxInfo) -> AsyncIterator[BrowserConnector]:
    needs_chromium()
    connector = BrowserConnector(
        BrowserSection(max_legs=2, legs_per_page=2),
        sdk_url=info.endpoint.rstrip("/") + STANDIN_PATH,
        ca_file=info.ca_file,
        trusted=(info.endpoint,),
    )
    await connector.start()
    yield connector
    await connector.close()


async def _roster(control: Control, meeting: dict[str, object]) -> dict[str, list[dict[str, object]]]:
    return dict((await control.ok("GET", f"/sandbox/v1/meetings/{meeting['id']}"))["roster"])


async def test_a_join_by_meeting_id_and_passcode_connects_and_a_leave_hangs_up(
    connector: BrowserConnector, control: Control, info: SandboxInfo
) -> None:
    meeting = await control.meeting()
    user = await new_user(info)
    handle = await connector.join(
        user.token, meeting_id=meeting["joinMeetingId"], passcode=meeting["passcode"], display_name="Ann (SMS)"
    )
    assert handle.state == CallState.CONNECTED and handle.thread_id == meeting["threadId"]
    [leg] = [p for p in (await _roster(control, meeting))["inCall"] if p.get("kind") == "acs"]
    assert leg["displayName"] == "Ann (SMS)" and leg["identity"] == user.id
    assert (await connector.get(handle.call_id, user.token)).state == CallState.CONNECTED

    await connector.leave(handle.call_id, user.token)
    await connector.leave(handle.call_id, user.token)  # idempotent
    assert (await connector.get(handle.call_id, user.token)).state == CallState.LEFT
    events = [e.state async for e in connector.watch(handle.call_id, user.token)]
    assert events == [CallState.LEFT]

    async def gone() -> bool:
        return not [p for p in (await _roster(control, meeting))["inCall"] if p.get("kind") == "acs"]

    await wait_for(gone, what="the leg to leave the call")


async def test_an_unknown_call_is_not_found(connector: BrowserConnector) -> None:
    with pytest.raises(NotFoundError):
        await connector.get("no-such-call", "token")
    with pytest.raises(NotFoundError):
        async for _ in connector.watch("no-such-call", "token"):
            pass
    await connector.leave("no-such-call", "token")  # nothing to hang up, no error


async def test_a_join_beyond_max_legs_fails_with_a_reason_naming_the_setting(
    connector: BrowserConnector, control: Control, info: SandboxInfo
) -> None:
    meeting = await control.meeting()
    users: list[AcsUser] = [await new_user(info) for _ in range(3)]
    held = [
        await connector.join(u.token, meeting_link=meeting["joinWebUrl"], display_name=f"User {i}")
        for i, u in enumerate(users[:2])
    ]
    with pytest.raises(PermanentError, match=r"calls\.browser\.max_legs"):
        await connector.join(users[2].token, meeting_link=meeting["joinWebUrl"], display_name="One too many")
    for handle, user in zip(held, users, strict=False):
        await connector.leave(handle.call_id, user.token)
    assert connector.live_legs == 0


async def test_close_hangs_every_leg_up(control: Control, info: SandboxInfo, http: aiohttp.ClientSession) -> None:
    needs_chromium()
    meeting = await control.meeting()
    user = await new_user(info)
    own = BrowserConnector(
        BrowserSection(),
        sdk_url=info.endpoint.rstrip("/") + STANDIN_PATH,
        ca_file=info.ca_file,
        trusted=(info.endpoint,),
    )
    await own.start()
    try:
        await own.join(user.token, meeting_link=meeting["joinWebUrl"], display_name="Ann")
    finally:
        await own.close()
    # Hung up, not vanished: the leg leaves at once instead of lingering for the grace period.
    assert not [p for p in (await _roster(control, meeting))["inCall"] if p.get("kind") == "acs"]


async def test_a_token_reaches_the_page_only_through_its_binding(
    connector: BrowserConnector, control: Control, info: SandboxInfo, caplog: pytest.LogCaptureFixture
) -> None:
    meeting = await control.meeting()
    user = await new_user(info)
    asked = 0

    async def token() -> str:
        nonlocal asked
        asked += 1
        return user.token

    caplog.set_level(logging.DEBUG)
    handle = await connector.join(token, meeting_link=meeting["joinWebUrl"], display_name="Ann")
    urls = [p.page.url for p in connector.browser.pages]
    await connector.leave(handle.call_id, user.token)
    assert asked >= 1  # the page's credential asked the bridge, through the binding
    assert urls and not [u for u in urls if user.token in u]
    assert user.token not in caplog.text
