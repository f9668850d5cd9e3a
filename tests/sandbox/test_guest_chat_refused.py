"""A meeting (or the whole resource) can refuse ACS guests its chat while their calls stay connected, answering every
chat call with the 403 the live service sends (Azure/Communication#600), through the real chat SDK."""

from __future__ import annotations

import pytest

from bot.sandbox import SandboxInfo
from tests.support.meetings import chat, expect_forbidden, get_call, join, new_user, texts
from tests.support.sandbox import Control


@pytest.mark.parametrize("scope", ["meeting", "resource"])
async def test_refused_guest_chat_is_a_403_while_the_call_stays_connected(
    control: Control, info: SandboxInfo, scope: str
) -> None:
    meeting = await control.meeting()
    user = await new_user(info)
    leg = await join(control, user, meeting, "Ann")
    switch = f"/sandbox/v1/meetings/{meeting['id']}/guest-chat" if scope == "meeting" else "/sandbox/v1/guest-chat"
    async with chat(info, user, meeting["threadId"]) as client:
        await client.send_message("before")

    await control.ok("PUT", switch, {"enabled": False})
    await expect_forbidden(info, control, user, meeting["threadId"])
    assert (await get_call(control, user, leg["callId"]))["state"] == "connected"
    organizer = meeting["organizerId"]
    # Teams users chat on as before.
    await control.ok("POST", f"/sandbox/v1/meetings/{meeting['id']}/messages", {"from": organizer, "html": "<p>hi</p>"})

    await control.ok("PUT", switch, {"enabled": True})
    async with chat(info, user, meeting["threadId"]) as client:
        await client.send_message("after")
        assert await texts(client) == ["before", "<p>hi</p>", "after"]


async def test_the_switches_show_and_reset(control: Control) -> None:
    meeting = await control.meeting()
    assert meeting["guestChat"] is True
    changed = await control.ok("PUT", f"/sandbox/v1/meetings/{meeting['id']}/guest-chat", {"enabled": False})
    assert changed["guestChat"] is False
    assert await control.ok("PUT", "/sandbox/v1/guest-chat", {"enabled": False}) == {"enabled": False}
    status, body = await control.call("PUT", "/sandbox/v1/guest-chat", {"enabled": "no"})
    assert status == 400 and "enabled" in body["error"]["message"]
    await control.ok("POST", "/sandbox/v1/reset")
    assert await control.ok("GET", "/sandbox/v1/guest-chat") == {"enabled": True}
