"""The sandbox's request counts by route and its count of open call event streams (what benchmarks read)."""

from __future__ import annotations

import ssl

import aiohttp

from bot.sandbox import Sandbox, SandboxInfo
from tests.support.acs import bearer, join_call, new_user, thread_client
from tests.support.sandbox import Control

READS = "GET /chat/threads/{thread}/messages"


async def _stats(control: Control) -> dict[str, object]:
    return dict(await control.ok("GET", "/sandbox/v1/stats"))


async def test_chat_reads_are_counted_by_route_not_by_thread(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting()
    _, token = await new_user(info)
    await join_call(control.session, info, token, meeting)
    before = await _stats(control)
    async with thread_client(info, token, meeting["threadId"]) as client:
        for _ in range(3):
            [m async for m in client.list_messages()]
    after = await _stats(control)
    assert isinstance(before["requests"], dict) and isinstance(after["requests"], dict)
    assert after["requests"][READS] - before["requests"].get(READS, 0) == 3


async def test_open_call_event_streams_are_counted_while_served() -> None:
    # A sandbox of its own: another test's stream stays "served" until its next keep-alive finds it gone.
    async with Sandbox() as sandbox:
        assert sandbox.info is not None
        info = sandbox.info
        trust = ssl.create_default_context(cafile=info.ca_file)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as http:
            control = Control(http, info)
            meeting = await control.meeting()
            _, token = await new_user(info)
            leg = await join_call(http, info, token, meeting)
            url = f"{info.endpoint.rstrip('/')}/sandbox/v1/calls/{leg['callId']}/events"
            async with http.get(url, headers=bearer(token)) as resp:
                assert resp.status == 200
                await resp.content.readuntil(b"\n\n")
                assert (await _stats(control))["callStreamsOpen"] == 1
                await control.ok("DELETE", f"/sandbox/v1/calls/{leg['callId']}", headers=bearer(token))
                await resp.read()
            assert (await _stats(control))["callStreamsOpen"] == 0
