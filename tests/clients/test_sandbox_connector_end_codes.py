"""The sandbox connector reads a finished leg's callEndReason through the one end-code table (bot/calls/states.py):
a network drop ends the watch DROPPED (the bridge joins again), an unknown code FAILED with the code in its reason."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.calls import SandboxCallConnector
from bot.models import CallState
from bot.sandbox import SandboxInfo
from tests.support.meetings import new_user
from tests.support.sandbox import Control


@pytest.fixture(params=["per-call streams", "one resource stream"])
async def connector(request: pytest.FixtureRequest, info: SandboxInfo) -> AsyncIterator[SandboxCallConnector]:
    key = info.connection_string.split("accesskey=", 1)[1] if request.param == "one resource stream" else None
    conn = SandboxCallConnector(info.endpoint, ca_file=info.ca_file, access_key=key)
    yield conn
    await conn.close()


@pytest.mark.parametrize(
    ("code", "sub_code", "state", "reason"),
    [
        (410, 3112, CallState.DROPPED, "media or network connectivity was lost (410/3112)"),
        (487, 4242, CallState.FAILED, "the call ended with code 487/4242, which the bridge does not know"),
        (0, 4097, CallState.ENDED, "the meeting has ended"),
    ],
)
async def test_a_leg_ended_with_a_code_ends_its_watch_as_the_table_says(
    connector: SandboxCallConnector,
    control: Control,
    info: SandboxInfo,
    code: int,
    sub_code: int,
    state: CallState,
    reason: str,
) -> None:
    meeting = await control.meeting()
    user = await new_user(info)
    handle = await connector.join(user.token, meeting_link=meeting["joinWebUrl"], display_name="Ann")
    events = connector.watch(handle.call_id, user.token)
    first = await asyncio.wait_for(anext(events), 10)
    assert first.state == CallState.CONNECTED
    body = {"code": code, "subCode": sub_code}
    await control.ok("POST", f"/sandbox/v1/meetings/{meeting['id']}/participants/{handle.call_id}/end", body)
    last = await asyncio.wait_for(anext(events), 10)
    assert (last.state, last.reason) == (state, reason)
    await events.aclose()
