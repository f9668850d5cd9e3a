"""The bridge's ACS and Graph clients against the sandbox through the real SDKs: results, errors and recovery."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from typing import Any

import aiohttp
import jwt
import pytest
from azure.communication.chat.aio import CommunicationTokenCredential
from azure.core.exceptions import HttpResponseError

from bot.acs import ChatService, GraphMeetingResolver, IdentityService
from bot.acs.errors import parse_retry_after
from bot.acs.identity import epoch_seconds
from bot.errors import (
    AuthError,
    MeetingLookupError,
    NotFoundError,
    NotInCallError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from bot.sandbox import SandboxInfo
from tests.support.sandbox import Control

KEY = "bridgeMessageId"


@pytest.fixture(scope="module")
async def identities(info: SandboxInfo) -> AsyncIterator[IdentityService]:
    async with IdentityService(info.connection_string, connection_verify=info.ca_file) as service:
        yield service


@pytest.fixture
async def chat(info: SandboxInfo, identities: IdentityService, control: Control) -> AsyncIterator[ChatService]:
    # Depends on control: the sandbox is reset before the service caches any credential.
    async with ChatService(info.endpoint, identities, connection_verify=info.ca_file) as service:
        yield service


@pytest.fixture
async def graph(info: SandboxInfo) -> AsyncIterator[GraphMeetingResolver]:
    async with _resolver(info) as resolver:
        yield resolver


def _resolver(info: SandboxInfo, secret: str | None = None) -> GraphMeetingResolver:
    return GraphMeetingResolver(
        info.tenant_id,
        info.client_id,
        info.client_secret if secret is None else secret,
        authority=info.authority_host,
        base_url=info.graph_base_url,
        ca_file=info.ca_file,
    )


async def _join(control: Control, identities: IdentityService, identity: str, meeting: dict[str, Any]) -> str:
    """Join the meeting call as the identity (the Calling SDK's part); returns the call id."""
    token, _ = await identities.issue_token(identity)
    leg = await control.ok(
        "POST",
        "/sandbox/v1/calls",
        {"meetingLink": meeting["joinWebUrl"], "displayName": "Ann"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert leg["state"] == "connected" and leg["threadId"] == meeting["threadId"]
    return str(leg["callId"])


async def _leave(control: Control, identities: IdentityService, identity: str, call_id: str) -> None:
    token, _ = await identities.issue_token(identity)
    await control.ok("DELETE", f"/sandbox/v1/calls/{call_id}", headers={"Authorization": f"Bearer {token}"})


async def _in_call(control: Control, identities: IdentityService) -> tuple[dict[str, Any], str]:
    meeting = await control.meeting()
    identity = await identities.create_identity()
    await _join(control, identities, identity, meeting)
    return meeting, identity


def _just_now() -> datetime:
    return datetime.now(UTC) - timedelta(seconds=2)


async def _faults(control: Control, action: str, **rule: Any) -> None:
    rule = {"method": "POST", "path": "/chat/threads/*/messages", "action": action, "count": 1} | rule
    await control.ok("PUT", "/sandbox/v1/faults", {"rules": [rule]})


# identities and tokens ------------------------------------------------------------------------------


async def test_create_identity_and_issue_token(identities: IdentityService, control: Control) -> None:
    identity = await identities.create_identity()
    assert identity.startswith("8:acs:")
    token, expires_on = await identities.issue_token(identity)
    assert type(expires_on) is int
    assert abs(expires_on - (time.time() + 24 * 3600)) < 120
    assert abs(jwt.decode(token, options={"verify_signature": False})["exp"] - expires_on) <= 1


async def test_token_lifetime_is_configurable(info: SandboxInfo, control: Control) -> None:
    async with IdentityService(
        info.connection_string, connection_verify=info.ca_file, token_lifetime=timedelta(hours=1)
    ) as short:
        _, expires_on = await short.issue_token(await short.create_identity())
    assert abs(expires_on - (time.time() + 3600)) < 120
    with pytest.raises(ValueError, match="between 1 and 24 hours"):
        IdentityService(info.connection_string, token_lifetime=timedelta(minutes=5))


async def test_deleted_identity(identities: IdentityService, control: Control) -> None:
    identity = await identities.create_identity()
    await identities.delete_identity(identity)
    await identities.delete_identity(identity)  # already gone: still fine
    with pytest.raises(NotFoundError) as caught:
        await identities.issue_token(identity)
    assert isinstance(caught.value.__cause__, HttpResponseError)


async def test_wrong_access_key_is_auth_error(info: SandboxInfo, control: Control) -> None:
    endpoint = info.connection_string.split(";accesskey=")[0]
    wrong = base64.b64encode(b"not the key").decode()
    async with IdentityService(f"{endpoint};accesskey={wrong}", connection_verify=info.ca_file) as service:
        with pytest.raises(AuthError):
            await service.create_identity()


async def test_identity_service_can_share_the_callers_session(
    info: SandboxInfo, http: aiohttp.ClientSession, control: Control
) -> None:
    async with IdentityService(info.connection_string, session=http) as service:
        identity = await service.create_identity()
        assert (await service.issue_token(identity))[0]
    assert not http.closed


def test_epoch_seconds_reads_every_shape_the_sdk_may_hand_back() -> None:
    assert epoch_seconds("2030-01-01T00:00:00Z") == 1893456000
    assert epoch_seconds("2030-01-01T00:00:00.1234567+00:00") == 1893456000
    assert epoch_seconds("2030-01-01T01:00:00+01:00") == 1893456000
    assert epoch_seconds(datetime(2030, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == 1893456000
    assert epoch_seconds(datetime(2030, 1, 1)) == 1893456000  # naive means UTC
    assert epoch_seconds(1893456000.9) == 1893456000
    with pytest.raises(ValueError):
        epoch_seconds("next Tuesday")
    with pytest.raises(TypeError):
        epoch_seconds(True)


# the token refresher --------------------------------------------------------------------------------


def _unsigned_jwt(expires_on: int) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part({'exp': expires_on})}.sig"


class _FirstTokenExpiring:
    """An identity service whose first token is about to expire, so the credential must use the refresher."""

    def __init__(self, real: IdentityService) -> None:
        self.real = real
        self.calls = 0

    async def issue_token(self, identity_id: str) -> tuple[str, int]:
        self.calls += 1
        if self.calls == 1:
            soon = int(time.time()) + 120
            return _unsigned_jwt(soon), soon
        return await self.real.issue_token(identity_id)


async def test_refresher_returns_an_access_token_with_an_int_expiry(
    chat: ChatService, identities: IdentityService, control: Control
) -> None:
    identity = await identities.create_identity()
    token = await chat.refresh_token(identity)
    assert type(token.expires_on) is int and token.expires_on > time.time() + 3600
    # The SDK's credential takes it: it compares expires_on with ints, and would fail on the identity SDK's string.
    expiring = _unsigned_jwt(int(time.time()) + 60)
    async with CommunicationTokenCredential(
        expiring, token_refresher=partial(chat.refresh_token, identity), proactive_refresh=True
    ) as credential:
        fresh = await credential.get_token()
    assert fresh.token != expiring and fresh.expires_on > time.time() + 3600


async def test_send_refreshes_an_expiring_token(
    info: SandboxInfo, identities: IdentityService, control: Control
) -> None:
    meeting, identity = await _in_call(control, identities)
    issuer = _FirstTokenExpiring(identities)
    async with ChatService(info.endpoint, issuer, connection_verify=info.ca_file) as chat:
        # The first token is not even a valid ACS token: the send works only through the refresher's token.
        assert await chat.send(identity, meeting["threadId"], "hello", display_name="Ann (SMS)")
    assert issuer.calls == 2


# chat in a meeting thread --------------------------------------------------------------------------


async def test_send_list_and_find_in_a_meeting_thread(
    chat: ChatService, identities: IdentityService, control: Control
) -> None:
    since = _just_now()
    meeting, identity = await _in_call(control, identities)
    thread = meeting["threadId"]
    first = await chat.send(identity, thread, "hello", display_name="Ann (SMS)", metadata={KEY: "m-1"})
    second = await chat.send(identity, thread, "<p>bold <b>move</b></p>", display_name="Ann (SMS)", html=True)
    teams_user = await control.ok("POST", f"/sandbox/v1/meetings/{meeting['id']}/teams-users", {"displayName": "Lee"})
    await control.ok(
        "POST", f"/sandbox/v1/meetings/{meeting['id']}/messages", {"from": teams_user["id"], "html": "<p>hi</p>"}
    )

    views = await chat.list_since(identity, thread, since, page_size=2)  # several pages
    chat_views = [v for v in views if v.type in ("text", "html")]
    assert [v.content for v in chat_views] == ["hello", "<p>bold <b>move</b></p>", "<p>hi</p>"]
    assert [v.sequence_id for v in views] == sorted(v.sequence_id for v in views)
    mine = chat_views[0]
    assert (mine.id, mine.type, mine.sender_id, mine.sender_display_name) == (first, "text", identity, "Ann (SMS)")
    assert mine.metadata == {KEY: "m-1"} and mine.created_on.tzinfo is not None and mine.version
    assert chat_views[1].id == second and chat_views[1].type == "html"
    assert chat_views[2].sender_id == teams_user["id"] and str(teams_user["id"]).startswith("8:orgid:")

    # startTime is inclusive: what was posted in the same millisecond as the third message may come too.
    later = await chat.list_since(identity, thread, chat_views[2].created_on)
    assert [v.content for v in later if v.type in ("text", "html")][-1] == "<p>hi</p>"
    assert all(v.created_on >= chat_views[2].created_on for v in later)
    assert "hello" not in [v.content for v in later]

    assert await chat.find_by_metadata(identity, thread, KEY, "m-1", since) == first
    assert await chat.find_by_metadata(identity, thread, KEY, "m-2", since) is None


async def test_update_and_delete_own_message(chat: ChatService, identities: IdentityService, control: Control) -> None:
    meeting, identity = await _in_call(control, identities)
    thread = meeting["threadId"]
    message_id = await chat.send(identity, thread, "helo", metadata={KEY: "m-1"})
    await chat.update(identity, thread, message_id, content="hello")
    [view] = [v for v in await chat.list_since(identity, thread, None) if v.id == message_id]
    assert view.content == "hello" and view.edited_on is not None and view.metadata == {KEY: "m-1"}
    await chat.delete(identity, thread, message_id)
    [view] = [v for v in await chat.list_since(identity, thread, None) if v.id == message_id]
    assert view.deleted_on is not None
    with pytest.raises(NotFoundError):
        await chat.update(identity, thread, "1", content="nope")


async def test_not_in_call_before_joining_and_after_leaving(
    chat: ChatService, identities: IdentityService, control: Control
) -> None:
    meeting = await control.meeting()
    thread, identity = meeting["threadId"], await identities.create_identity()
    with pytest.raises(NotInCallError) as caught:
        await chat.send(identity, thread, "too early")
    cause = caught.value.__cause__
    assert isinstance(cause, HttpResponseError) and cause.status_code == 403
    with pytest.raises(NotInCallError):
        await chat.list_since(identity, thread, None)

    call_id = await _join(control, identities, identity, meeting)
    await chat.send(identity, thread, "now I am here")
    await _leave(control, identities, identity, call_id)
    with pytest.raises(NotInCallError, match="permission"):
        await chat.send(identity, thread, "gone")
    with pytest.raises(NotInCallError):
        await chat.find_by_metadata(identity, thread, KEY, "x", None)


async def test_deleted_identity_is_auth_error(chat: ChatService, identities: IdentityService, control: Control) -> None:
    meeting, identity = await _in_call(control, identities)
    await chat.send(identity, meeting["threadId"], "hello")
    await identities.delete_identity(identity)
    with pytest.raises(AuthError):
        await chat.send(identity, meeting["threadId"], "still there?")


async def test_bad_request_is_permanent_with_the_service_message(
    chat: ChatService, identities: IdentityService, control: Control
) -> None:
    meeting, identity = await _in_call(control, identities)
    with pytest.raises(PermanentError, match="Message size exceeded") as caught:
        await chat.send(identity, meeting["threadId"], "x" * 40_000)
    assert not isinstance(caught.value, TransientError)
    with pytest.raises(PermanentError, match="empty"):
        await chat.send(identity, meeting["threadId"], "")


async def test_burst_beyond_the_thread_limit_is_throttled(
    chat: ChatService, identities: IdentityService, control: Control
) -> None:
    await control.ok("PUT", "/sandbox/v1/limits", {"enabled": True})
    meeting, identity = await _in_call(control, identities)
    since = _just_now()
    for n in range(10):
        await chat.send(identity, meeting["threadId"], f"message {n}")
    with pytest.raises(ThrottledError) as caught:
        await chat.send(identity, meeting["threadId"], "one too many")
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 10
    # SDK retries are off: the refused send was tried once and never stored.
    texts = [v.content for v in await chat.list_since(identity, meeting["threadId"], since) if v.type == "text"]
    assert texts == [f"message {n}" for n in range(10)]


async def test_server_error_is_transient_and_carries_retry_after(
    chat: ChatService, identities: IdentityService, control: Control
) -> None:
    meeting, identity = await _in_call(control, identities)
    await _faults(control, "status", status=503, retryAfter=1)
    with pytest.raises(TransientError) as caught:
        await chat.send(identity, meeting["threadId"], "hello", metadata={KEY: "m-1"})
    assert not isinstance(caught.value, ThrottledError) and caught.value.retry_after == 1
    assert await chat.find_by_metadata(identity, meeting["threadId"], KEY, "m-1", _just_now()) is None
    assert await chat.send(identity, meeting["threadId"], "hello", metadata={KEY: "m-1"})


async def test_lost_answer_is_transient_but_the_message_is_found(
    chat: ChatService, identities: IdentityService, control: Control
) -> None:
    meeting, identity = await _in_call(control, identities)
    since = _just_now()
    await _faults(control, "drop_after")
    with pytest.raises(TransientError):
        await chat.send(identity, meeting["threadId"], "hello", metadata={KEY: "m-1"})
    found = await chat.find_by_metadata(identity, meeting["threadId"], KEY, "m-1", since)
    assert found is not None
    views = await chat.list_since(identity, meeting["threadId"], since)
    assert [v.id for v in views if v.metadata.get(KEY) == "m-1"] == [found]  # stored once, no SDK retry


async def test_dropped_request_is_transient_and_nothing_is_stored(
    chat: ChatService, identities: IdentityService, control: Control
) -> None:
    meeting, identity = await _in_call(control, identities)
    since = _just_now()
    await _faults(control, "drop_before")
    with pytest.raises(TransientError):
        await chat.send(identity, meeting["threadId"], "hello", metadata={KEY: "m-1"})
    assert await chat.find_by_metadata(identity, meeting["threadId"], KEY, "m-1", since) is None


async def test_unreachable_service_is_transient(identities: IdentityService, control: Control) -> None:
    identity = await identities.create_identity()
    async with ChatService("https://127.0.0.1:9/", identities, connection_timeout=2) as chat:
        with pytest.raises(TransientError):
            await chat.send(identity, "19:meeting_x@thread.v2", "hello")


# one shared HTTP session -----------------------------------------------------------------------------


def _transport_session(client: Any) -> Any:
    return client._client._client._pipeline._transport.session


async def test_every_identity_shares_one_http_session(
    chat: ChatService, identities: IdentityService, control: Control
) -> None:
    meeting = await control.meeting()
    people = [await identities.create_identity() for _ in range(25)]
    for identity in people[:3]:
        await _join(control, identities, identity, meeting)
        await chat.send(identity, meeting["threadId"], "hi")
    clients = [await chat.thread_client(identity, meeting["threadId"]) for identity in people]
    assert len({id(c) for c in clients}) == len(people)
    assert all(_transport_session(c) is chat.session for c in clients)
    assert await chat.thread_client(people[0], meeting["threadId"]) is clients[0]
    assert chat.identities == frozenset(people)

    await chat.forget(people[0])
    assert people[0] not in chat.identities
    assert not chat.session.closed
    session = chat.session
    await chat.close()
    assert session.closed and not chat.identities


async def test_a_session_from_the_caller_is_used_and_left_open(
    info: SandboxInfo, http: aiohttp.ClientSession, identities: IdentityService, control: Control
) -> None:
    meeting, identity = await _in_call(control, identities)
    async with ChatService(info.endpoint, identities, session=http) as chat:
        await chat.send(identity, meeting["threadId"], "through the caller's session")
        assert _transport_session(await chat.thread_client(identity, meeting["threadId"])) is http
    assert not http.closed


# error mapping, pure ----------------------------------------------------------------------------------


def test_retry_after_headers() -> None:
    assert parse_retry_after({"Retry-After": "7"}) == 7
    assert parse_retry_after({"retry-after-ms": "1500", "Retry-After": "7"}) == 1.5
    assert parse_retry_after({"x-ms-retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None
    # A peer's nonsense never parks work forever nor turns into a negative or NaN wait.
    assert parse_retry_after({"Retry-After": "inf"}) is None and parse_retry_after({"Retry-After": "nan"}) is None
    assert parse_retry_after({"Retry-After": "86400000"}) == 3600.0


# Graph meeting lookup ---------------------------------------------------------------------------------


def _oid(meeting: dict[str, Any]) -> str:
    return str(meeting["organizerId"]).removeprefix("8:orgid:")


def _assert_is(found: Any, meeting: dict[str, Any], info: SandboxInfo) -> None:
    assert found.thread_id == meeting["threadId"]
    assert found.join_web_url == meeting["joinWebUrl"]
    assert (found.join_meeting_id, found.passcode) == (meeting["joinMeetingId"], meeting["passcode"])
    assert found.subject == meeting["subject"] and found.organizer_id == _oid(meeting)
    assert found.tenant_id == info.tenant_id
    assert found.start is not None and found.start.tzinfo is not None and found.end is not None


async def test_resolve_by_join_link(graph: GraphMeetingResolver, control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting("Quarterly review")
    await control.meeting("Another one")
    _assert_is(await graph.by_join_url(meeting["organizerId"], meeting["joinWebUrl"]), meeting, info)
    # The same link with its %-escapes upper-cased, as some mail clients rewrite it.
    shouted = meeting["joinWebUrl"].replace("%3a", "%3A").replace("%40", "%40").replace("%7b", "%7B")
    _assert_is(await graph.by_join_url(_oid(meeting), shouted), meeting, info)


async def test_resolve_by_join_meeting_id(graph: GraphMeetingResolver, control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting("Short link")
    spaced = " ".join(meeting["joinMeetingId"][i : i + 3] for i in range(0, len(meeting["joinMeetingId"]), 3))
    _assert_is(await graph.by_join_meeting_id(_oid(meeting), spaced), meeting, info)


async def test_resolve_by_id(graph: GraphMeetingResolver, control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting("By id")
    _assert_is(await graph.by_id(_oid(meeting), meeting["id"]), meeting, info)


async def test_unknown_meetings_are_lookup_errors(graph: GraphMeetingResolver, control: Control) -> None:
    meeting = await control.meeting()
    oid = _oid(meeting)
    with pytest.raises(MeetingLookupError, match="join link"):
        await graph.by_join_url(oid, meeting["joinWebUrl"].replace("meeting_", "meeting_X"))
    with pytest.raises(MeetingLookupError, match="join meeting id 000000000000"):
        await graph.by_join_meeting_id(oid, "000000000000")
    with pytest.raises(MeetingLookupError, match="not a number"):
        await graph.by_join_meeting_id(oid, "12ab")
    with pytest.raises(MeetingLookupError, match="404"):
        await graph.by_id(oid, "MSpnosuchmeeting")
    with pytest.raises(MeetingLookupError, match="404"):
        await graph.by_join_url("00000000-0000-0000-0000-000000000000", meeting["joinWebUrl"])
    with pytest.raises(MeetingLookupError, match="organizer"):
        await graph.by_id(" ", meeting["id"])


async def test_wrong_client_secret_is_auth_error(info: SandboxInfo, control: Control) -> None:
    meeting = await control.meeting()
    async with _resolver(info, secret="not-the-secret") as graph:
        with pytest.raises(AuthError, match=r"client secret|invalid_client"):
            await graph.by_id(_oid(meeting), meeting["id"])
