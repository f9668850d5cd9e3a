"""The CallConnector implementations: the sandbox call API over TLS with real SDK tokens, and client-reported calls."""

from __future__ import annotations

import asyncio
import base64
import inspect
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any

import aiohttp
import pytest
from azure.communication.identity.aio import CommunicationIdentityClient

from bot.calls import CallConnector, ClientReportedConnector, SandboxCallConnector
from bot.calls.sse import SseEvent, SseParser
from bot.errors import AuthError, MeetingLookupError, NotFoundError, PermanentError, TransientError
from bot.models import CallEvent, CallState, Reported, ReportVerdict
from bot.sandbox import Sandbox, SandboxInfo
from tests.support.sandbox import Control

WAIT_S = 10.0
MEETINGS = "/sandbox/v1/meetings"
EVENTS_PATH = "/sandbox/v1/calls/*/events"
HUB_PATH = "/sandbox/v1/call-events"


async def new_token(info: SandboxInfo, scopes: Sequence[str] = ("chat", "voip")) -> str:
    client = CommunicationIdentityClient.from_connection_string(info.connection_string, connection_verify=info.ca_file)
    async with client:
        _, token = await client.create_user_and_token(scopes=list(scopes))
    return str(token.token)


async def next_event(events: AsyncIterator[CallEvent]) -> CallEvent:
    return await asyncio.wait_for(anext(events), WAIT_S)


async def assert_ended(events: AsyncIterator[CallEvent]) -> None:
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(events), WAIT_S)


async def faults(control: Control, *rules: dict[str, Any]) -> None:
    await control.ok("PUT", "/sandbox/v1/faults", {"rules": list(rules)})


async def fired(control: Control) -> int:
    return sum(rule["fired"] for rule in (await control.ok("GET", "/sandbox/v1/faults"))["rules"])


def access_key(info: SandboxInfo) -> str:
    return info.connection_string.split("accesskey=", 1)[1]


@pytest.fixture(params=["per-call streams", "one resource stream"])
def shared_stream(request: pytest.FixtureRequest) -> bool:
    """Both ways a connector hears of its calls: each call's own stream, or the resource's one for all."""
    return bool(request.param == "one resource stream")


@pytest.fixture
def events_path(shared_stream: bool) -> str:
    return HUB_PATH if shared_stream else EVENTS_PATH


@pytest.fixture
async def connector(info: SandboxInfo, shared_stream: bool) -> AsyncIterator[SandboxCallConnector]:
    key = access_key(info) if shared_stream else None
    conn = SandboxCallConnector(info.endpoint, ca_file=info.ca_file, access_key=key)
    yield conn
    await conn.close()


@pytest.fixture
async def token(info: SandboxInfo, control: Control) -> str:
    return await new_token(info)


# The sandbox connector ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("link", ["joinWebUrl", "shortUrl"])
async def test_join_connects_in_an_auto_lobby_meeting(
    control: Control, connector: SandboxCallConnector, token: str, link: str
) -> None:
    meeting = await control.meeting(lobby="auto")
    handle = await connector.join(token, meeting_link=meeting[link], display_name="Ann (SMS)")
    assert handle.state is CallState.CONNECTED
    assert handle.thread_id == meeting["threadId"]
    got = await connector.get(handle.call_id, token)
    assert got == handle


async def test_join_by_meeting_id_and_passcode(control: Control, connector: SandboxCallConnector, token: str) -> None:
    meeting = await control.meeting()
    handle = await connector.join(
        token, meeting_id=meeting["joinMeetingId"], passcode=meeting["passcode"], display_name="Ann"
    )
    assert handle.state is CallState.CONNECTED
    assert handle.thread_id == meeting["threadId"]


async def test_lobby_then_admit(control: Control, connector: SandboxCallConnector, token: str) -> None:
    meeting = await control.meeting(lobby="manual")
    handle = await connector.join(token, meeting_link=meeting["joinWebUrl"], display_name="Ann")
    assert handle.state is CallState.LOBBY
    async with aclosing(connector.watch(handle.call_id, token)) as events:
        assert (await next_event(events)).state is CallState.LOBBY
        await control.ok("POST", f"{MEETINGS}/{meeting['id']}/lobby/{handle.call_id}/admit")
        assert (await next_event(events)).state is CallState.CONNECTED
    assert (await connector.get(handle.call_id, token)).state is CallState.CONNECTED


async def test_removed_by_the_organizer_ends_the_watch(
    control: Control, connector: SandboxCallConnector, token: str
) -> None:
    meeting = await control.meeting()
    handle = await connector.join(token, meeting_link=meeting["joinWebUrl"], display_name="Ann")
    async with aclosing(connector.watch(handle.call_id, token)) as events:
        assert (await next_event(events)).state is CallState.CONNECTED
        await control.ok("DELETE", f"{MEETINGS}/{meeting['id']}/participants/{handle.call_id}")
        removed = await next_event(events)
        assert removed.state is CallState.REMOVED
        assert removed.call_id == handle.call_id
        assert removed.reason
        await assert_ended(events)


async def test_meeting_end_ends_the_call(control: Control, connector: SandboxCallConnector, token: str) -> None:
    meeting = await control.meeting()
    handle = await connector.join(token, meeting_link=meeting["joinWebUrl"], display_name="Ann")
    async with aclosing(connector.watch(handle.call_id, token)) as events:
        assert (await next_event(events)).state is CallState.CONNECTED
        await control.ok("POST", f"{MEETINGS}/{meeting['id']}/end")
        assert (await next_event(events)).state is CallState.ENDED
        await assert_ended(events)
    with pytest.raises(PermanentError, match="ended"):
        await connector.join(token, meeting_link=meeting["joinWebUrl"], display_name="Ann")


async def test_leave_is_idempotent(control: Control, connector: SandboxCallConnector, token: str) -> None:
    meeting = await control.meeting()
    handle = await connector.join(token, meeting_link=meeting["joinWebUrl"], display_name="Ann")
    async with aclosing(connector.watch(handle.call_id, token)) as events:
        assert (await next_event(events)).state is CallState.CONNECTED
        await connector.leave(handle.call_id, token)
        assert (await next_event(events)).state is CallState.LEFT
        await assert_ended(events)
    await connector.leave(handle.call_id, token)
    await connector.leave("no-such-call", token)
    assert (await connector.get(handle.call_id, token)).state is CallState.LEFT
    # A finished call's watch yields its final state once and ends.
    async with aclosing(connector.watch(handle.call_id, token)) as events:
        assert (await next_event(events)).state is CallState.LEFT
        await assert_ended(events)


async def test_join_errors(control: Control, connector: SandboxCallConnector, info: SandboxInfo, token: str) -> None:
    meeting = await control.meeting()
    with pytest.raises(PermanentError, match="passcode") as wrong:
        await connector.join(token, meeting_id=meeting["joinMeetingId"], passcode="nope00", display_name="Ann")
    assert not isinstance(wrong.value, AuthError | NotFoundError)
    chat_only = await new_token(info, ["chat"])
    with pytest.raises(PermanentError, match="voip") as scope:
        await connector.join(chat_only, meeting_link=meeting["joinWebUrl"], display_name="Ann")
    assert not isinstance(scope.value, AuthError)
    with pytest.raises(AuthError):
        await connector.join("not-a-token", meeting_link=meeting["joinWebUrl"], display_name="Ann")
    with pytest.raises(MeetingLookupError):
        await connector.join(token, meeting_link="https://teams.microsoft.com/meet/1?p=x", display_name="Ann")
    with pytest.raises(NotFoundError):
        await connector.get("no-such-call", token)
    with pytest.raises(PermanentError):
        await connector.join(token, display_name="Ann")
    with pytest.raises(PermanentError):
        await connector.join(token, meeting_link=meeting["joinWebUrl"], display_name="  ")


async def test_watch_survives_a_dropped_stream(
    control: Control, connector: SandboxCallConnector, token: str, events_path: str
) -> None:
    meeting = await control.meeting(lobby="manual")
    handle = await connector.join(token, meeting_link=meeting["joinWebUrl"], display_name="Ann")
    await faults(control, {"method": "GET", "path": events_path, "action": "drop_before", "count": 1})
    async with aclosing(connector.watch(handle.call_id, token)) as events:
        assert (await next_event(events)).state is CallState.LOBBY
        await control.ok("POST", f"{MEETINGS}/{meeting['id']}/lobby/{handle.call_id}/admit")
        assert (await next_event(events)).state is CallState.CONNECTED
        await connector.leave(handle.call_id, token)
        assert (await next_event(events)).state is CallState.LEFT
        await assert_ended(events)
    assert await fired(control) == 1


async def test_watch_survives_server_errors(
    control: Control, connector: SandboxCallConnector, token: str, events_path: str
) -> None:
    meeting = await control.meeting()
    handle = await connector.join(token, meeting_link=meeting["joinWebUrl"], display_name="Ann")
    await faults(control, {"method": "GET", "path": events_path, "action": "status", "status": 503, "count": 2})
    async with aclosing(connector.watch(handle.call_id, token)) as events:
        assert (await next_event(events)).state is CallState.CONNECTED
        await control.ok("POST", f"{MEETINGS}/{meeting['id']}/end")
        assert (await next_event(events)).state is CallState.ENDED
        await assert_ended(events)
    assert await fired(control) == 2


async def test_sandbox_down_is_transient(info: SandboxInfo, shared_stream: bool) -> None:
    async with Sandbox() as gone:
        assert gone.info is not None
        endpoint = gone.info.endpoint
    key = access_key(info) if shared_stream else None
    conn = SandboxCallConnector(endpoint, ca_file=info.ca_file, access_key=key, max_reconnects=1)
    try:
        with pytest.raises(TransientError):
            await conn.join("token", meeting_link="https://teams.microsoft.com/meet/1?p=x", display_name="Ann")
        with pytest.raises(TransientError):
            await conn.get("call", "token")
        with pytest.raises(TransientError):
            await conn.leave("call", "token")
        with pytest.raises(TransientError):
            await asyncio.wait_for(anext(aiter(conn.watch("call", "token"))), WAIT_S)
    finally:
        await conn.close()


async def test_close_ends_open_watches_and_keeps_a_given_session(
    control: Control, http: aiohttp.ClientSession, info: SandboxInfo, token: str, shared_stream: bool
) -> None:
    meeting = await control.meeting(lobby="manual")
    key = access_key(info) if shared_stream else None
    conn = SandboxCallConnector(info.endpoint, ca_file=info.ca_file, session=http, access_key=key)
    handle = await conn.join(token, meeting_link=meeting["joinWebUrl"], display_name="Ann")
    async with aclosing(conn.watch(handle.call_id, token)) as events:
        assert (await next_event(events)).state is CallState.LOBBY
        await conn.close()
        await assert_ended(events)
    assert not http.closed
    with pytest.raises(PermanentError, match="closed"):
        await conn.get(handle.call_id, token)


async def test_watches_share_one_resource_stream(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting(lobby="manual")
    conn = SandboxCallConnector(info.endpoint, ca_file=info.ca_file, access_key=access_key(info))
    tokens = [await new_token(info) for _ in range(3)]
    handles = [
        await conn.join(t, meeting_link=meeting["joinWebUrl"], display_name=f"U{i}") for i, t in enumerate(tokens)
    ]
    opened = (await control.ok("GET", "/sandbox/v1/stats"))["requests"].get(f"GET {HUB_PATH}", 0)
    try:
        watches = [conn.watch(h.call_id, t) for h, t in zip(handles, tokens, strict=True)]
        for events in watches:
            assert (await next_event(events)).state is CallState.LOBBY
        assert (await control.ok("GET", "/sandbox/v1/stats"))["requests"][f"GET {HUB_PATH}"] == opened + 1
        await control.ok("POST", f"{MEETINGS}/{meeting['id']}/lobby/{handles[1].call_id}/admit")
        assert (await next_event(watches[1])).state is CallState.CONNECTED
        await control.ok("POST", f"{MEETINGS}/{meeting['id']}/end")
        for events in watches:
            final = await next_event(events)
            assert final.state is CallState.ENDED
            await assert_ended(events)
        # A watch that starts after its call ended hears the final state once, asked of the call itself.
        async with aclosing(conn.watch(handles[0].call_id, tokens[0])) as late:
            assert (await next_event(late)).state is CallState.ENDED
            await assert_ended(late)
        with pytest.raises(NotFoundError):
            await next_event(conn.watch("no-such-call", tokens[0]))
    finally:
        await conn.close()


async def test_the_resource_stream_needs_the_access_key(control: Control, info: SandboxInfo, token: str) -> None:
    meeting = await control.meeting()
    wrong = base64.b64encode(b"not the key, 32 bytes long......").decode()
    conn = SandboxCallConnector(info.endpoint, ca_file=info.ca_file, access_key=wrong)
    try:
        handle = await conn.join(token, meeting_link=meeting["joinWebUrl"], display_name="Ann")
        with pytest.raises(AuthError):
            await next_event(conn.watch(handle.call_id, token))
    finally:
        await conn.close()


def _port_methods() -> dict[str, inspect.Signature]:
    """The methods CallConnector declares, each with its parameters after `self`."""
    methods = {name: m for name, m in vars(CallConnector).items() if not name.startswith("_") and callable(m)}
    return {
        name: inspect.signature(m).replace(parameters=list(inspect.signature(m).parameters.values())[1:])
        for name, m in methods.items()
    }


async def test_connectors_satisfy_the_port(info: SandboxInfo) -> None:
    """mypy checks the list's type (`make typecheck`); the loop checks the same while the suite runs: every method
    of the port, with its parameters, a coroutine where the port's is one."""
    connectors: list[CallConnector] = [SandboxCallConnector(info.endpoint, ca_file=None), ClientReportedConnector()]
    port = _port_methods()
    assert {"join", "leave", "get", "watch", "close"} <= set(port)
    for conn in connectors:
        for name, wanted in port.items():
            method = getattr(conn, name, None)
            assert callable(method), (type(conn).__name__, name)
            got = inspect.signature(method)
            assert [(p.name, p.kind) for p in got.parameters.values()] == [
                (p.name, p.kind) for p in wanted.parameters.values()
            ], (type(conn).__name__, name, got, wanted)
            if inspect.iscoroutinefunction(getattr(CallConnector, name)):
                assert inspect.iscoroutinefunction(method), (type(conn).__name__, name)
        await conn.close()


# Server-sent events --------------------------------------------------------------------------------------------


def test_sse_parser_handles_fields_comments_and_line_endings() -> None:
    parser = SseParser()
    stream = b'\xef\xbb\xbf: keep-alive\r\n\r\nevent: state\rdata: {"a":\r\ndata:  1}\nid: 7\nretry: 3000\n\ndata: x\n'
    events: list[SseEvent] = []
    for i in range(len(stream)):  # one byte at a time: every split point, including inside CRLF and UTF-8
        events += parser.feed(stream[i : i + 1])
    assert events == [SseEvent("state", '{"a":\n 1}', "7")]
    assert parser.retry_ms == 3000
    assert parser.feed(b"\n") == [SseEvent("message", "x", "7")]


def test_sse_parser_decodes_utf8_and_bounds_events() -> None:
    parser = SseParser()
    encoded = "data: Zoë ☎\n\n".encode()
    assert parser.feed(encoded[:8]) == []
    assert parser.feed(encoded[8:]) == [SseEvent("message", "Zoë ☎")]
    assert SseParser().feed(b"event: state\n\n") == []  # no data, no event
    with pytest.raises(ValueError):
        SseParser(max_event_chars=100).feed(b"data: " + b"x" * 200)


# The client-reported connector ---------------------------------------------------------------------------------


async def test_client_reported_call_lifecycle() -> None:
    conn = ClientReportedConnector()
    handle = await conn.join("t", meeting_link="https://teams.microsoft.com/meet/1?p=x", display_name="Ann")
    assert handle.state is CallState.LOBBY
    async with aclosing(conn.watch(handle.call_id, "t")) as events:
        assert (await next_event(events)) == CallEvent(handle.call_id, CallState.LOBBY)
        taken = conn.report(handle.call_id, CallState.CONNECTED, thread_id="19:meeting_x@thread.v2")
        assert taken == Reported(ReportVerdict.TAKEN, CallState.CONNECTED)
        assert conn.report(handle.call_id, CallState.CONNECTED).verdict is ReportVerdict.SAME
        assert conn.report(handle.call_id, CallState.LOBBY).verdict is ReportVerdict.IGNORED  # arrived late
        removed = conn.report(handle.call_id, CallState.REMOVED, "the organizer removed you")
        assert removed.verdict is ReportVerdict.TAKEN
        assert (await next_event(events)).state is CallState.CONNECTED
        assert (await next_event(events)) == CallEvent(handle.call_id, CallState.REMOVED, "the organizer removed you")
        await assert_ended(events)
    assert conn.report(handle.call_id, CallState.ENDED) == Reported(ReportVerdict.IGNORED, CallState.REMOVED)
    got = await conn.get(handle.call_id, "t")
    assert (got.state, got.thread_id) == (CallState.REMOVED, "19:meeting_x@thread.v2")
    await conn.leave(handle.call_id, "t")
    assert (await conn.get(handle.call_id, "t")).state is CallState.REMOVED


async def test_client_reported_leave_unknown_and_close() -> None:
    conn = ClientReportedConnector(max_finished=1)
    first = await conn.join("t", meeting_id="123", passcode="abc", display_name="Ann")
    second = await conn.join("t", meeting_id="123", passcode="abc", display_name="Bob")
    async with aclosing(conn.watch(first.call_id, "t")) as events:
        assert (await next_event(events)).state is CallState.LOBBY
        await conn.leave(first.call_id, "t")
        assert (await next_event(events)).state is CallState.LEFT
        await assert_ended(events)
    await conn.leave(first.call_id, "t")
    await conn.leave("unknown", "t")
    with pytest.raises(NotFoundError):
        await conn.get("unknown", "t")
    with pytest.raises(PermanentError):
        await conn.join("t", display_name="Ann")
    async with aclosing(conn.watch(second.call_id, "t")) as events:
        assert (await next_event(events)).state is CallState.LOBBY
        await conn.close()
        await assert_ended(events)
    with pytest.raises(PermanentError, match="closed"):
        await conn.join("t", meeting_id="123", passcode="abc", display_name="Cy")


async def test_client_reported_forgets_the_oldest_finished_calls() -> None:
    conn = ClientReportedConnector(max_finished=2)
    handles = [await conn.join("t", meeting_id="1", passcode="p", display_name=f"U{i}") for i in range(3)]
    for handle in handles:
        conn.report(handle.call_id, CallState.LEFT)
    with pytest.raises(NotFoundError):
        await conn.get(handles[0].call_id, "t")
    assert (await conn.get(handles[2].call_id, "t")).state is CallState.LEFT


async def test_client_reported_takes_up_a_call_it_never_saw_with_its_state_unknown_until_reported() -> None:
    """After a restart the bridge watches its sessions' calls again: nothing is said of them until the app reports."""
    conn = ClientReportedConnector()
    async with aclosing(conn.watch("call-from-before", "t")) as events:
        waiting = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        with pytest.raises(NotFoundError):
            await conn.get("call-from-before", "t")
        taken = conn.report("call-from-before", CallState.CONNECTED)
        assert taken == Reported(ReportVerdict.TAKEN, CallState.CONNECTED)
        assert (await asyncio.wait_for(waiting, WAIT_S)).state is CallState.CONNECTED
        conn.report("call-from-before", CallState.ENDED)
        assert (await next_event(events)).state is CallState.ENDED
        await assert_ended(events)


async def test_client_reported_a_new_call_of_the_app_replaces_the_old_one_for_good() -> None:
    conn = ClientReportedConnector()
    handle = await conn.join("t", meeting_id="1", passcode="p", display_name="Ann")
    async with aclosing(conn.watch(handle.call_id, "t")) as events:
        assert (await next_event(events)).state is CallState.LOBBY
        assert conn.report(handle.call_id, CallState.CONNECTED, client_call="sdk-a").verdict is ReportVerdict.TAKEN
        assert (await next_event(events)).state is CallState.CONNECTED
        # The app's call dropped and it joined again: the new call starts in the lobby.
        assert conn.report(handle.call_id, CallState.LOBBY, client_call="sdk-b").verdict is ReportVerdict.TAKEN
        assert (await next_event(events)).state is CallState.LOBBY
        # The old call's own end, delivered late, is not the leg's.
        assert conn.report(handle.call_id, CallState.LEFT, client_call="sdk-a").verdict is ReportVerdict.IGNORED
        assert conn.report(handle.call_id, CallState.CONNECTED, client_call="sdk-a").verdict is ReportVerdict.IGNORED
        assert conn.report(handle.call_id, CallState.CONNECTED, client_call="sdk-b").verdict is ReportVerdict.TAKEN
        assert (await next_event(events)).state is CallState.CONNECTED
        assert (await conn.get(handle.call_id, "t")).state is CallState.CONNECTED
