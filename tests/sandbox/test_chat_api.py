"""The Chat API through the real chat SDK, on a regular ACS thread and on a Teams meeting thread."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import jwt
import pytest
from azure.communication.chat import ChatMessage, ChatMessageType, ChatParticipant, CommunicationUserIdentifier
from azure.communication.identity import CommunicationUserIdentifier as IdentityUser
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from bot.sandbox import Sandbox, SandboxInfo
from bot.sandbox.util import now
from tests.support.acs import (
    CHAT_API,
    bearer,
    chat_client,
    decode_unverified,
    error_of,
    identity_client,
    join_call,
    new_thread,
    new_user,
    request,
    thread_client,
)
from tests.support.sandbox import Control

MAX_BYTES = 28 * 1024


@dataclass
class Room:
    """A thread with two ACS members, Ann and Bob, who can both use its chat."""

    kind: str
    thread_id: str
    ann: str
    ann_token: str
    bob: str
    bob_token: str
    meeting: dict[str, Any] | None = None


async def _regular_room(info: SandboxInfo) -> Room:
    ann, ann_token = await new_user(info)
    bob, bob_token = await new_user(info)
    thread_id = await new_thread(info, ann_token, "Project chat", [(bob, "Bob")])
    return Room("regular", thread_id, ann, ann_token, bob, bob_token)


async def _meeting_room(control: Control, http: aiohttp.ClientSession, info: SandboxInfo) -> Room:
    meeting = await control.meeting()
    ann, ann_token = await new_user(info)
    bob, bob_token = await new_user(info)
    await join_call(http, info, ann_token, meeting, "Ann (SMS)")
    await join_call(http, info, bob_token, meeting, "Bob (SMS)")
    return Room("meeting", meeting["threadId"], ann, ann_token, bob, bob_token, meeting)


@pytest.fixture(params=["regular", "meeting"])
async def room(
    request: pytest.FixtureRequest, control: Control, http: aiohttp.ClientSession, info: SandboxInfo
) -> Room:
    if request.param == "regular":
        return await _regular_room(info)
    return await _meeting_room(control, http, info)


@pytest.fixture
async def regular(control: Control, info: SandboxInfo) -> Room:
    return await _regular_room(info)


@pytest.fixture
async def meeting_room(control: Control, http: aiohttp.ClientSession, info: SandboxInfo) -> Room:
    return await _meeting_room(control, http, info)


async def _texts(info: SandboxInfo, token: str, thread_id: str, **kwargs: Any) -> list[ChatMessage]:
    """The thread's text and html messages as the token's identity lists them (newest first)."""
    async with thread_client(info, token, thread_id) as tc:
        return [m async for m in tc.list_messages(**kwargs) if m.type in (ChatMessageType.TEXT, ChatMessageType.HTML)]


def _messages_path(thread_id: str, suffix: str = "") -> str:
    return f"/chat/threads/{thread_id}/messages{suffix}?api-version={CHAT_API}"


async def _raw_send(
    http: aiohttp.ClientSession, info: SandboxInfo, token: str, thread_id: str, body: dict[str, Any]
) -> tuple[int, Any]:
    headers = bearer(token) | {"Content-Type": "application/json"}
    status, answer, _ = await request(
        http, info, "POST", _messages_path(thread_id), body=json.dumps(body).encode(), headers=headers
    )
    return status, answer


# --- messages, on both kinds of thread ------------------------------------------------------------------


async def test_send_text_and_html_with_metadata(info: SandboxInfo, room: Room) -> None:
    async with thread_client(info, room.ann_token, room.thread_id) as tc:
        text = await tc.send_message(
            "Hello from the bridge", sender_display_name="Ann (SMS)", metadata={"bridgeMessageId": "m-1"}
        )
        html = await tc.send_message(
            "<p>Hello <b>all</b></p>", chat_message_type=ChatMessageType.HTML, metadata={"bridgeMessageId": "m-2"}
        )
        got_text = await tc.get_message(text.id)
        got_html = await tc.get_message(html.id)
    assert got_text.id == text.id
    assert got_text.type == ChatMessageType.TEXT
    assert got_text.content.message == "Hello from the bridge"
    assert got_text.sender_display_name == "Ann (SMS)"
    assert got_text.metadata == {"bridgeMessageId": "m-1"}
    assert got_text.sender.raw_id == room.ann
    assert got_text.deleted_on is None and got_text.edited_on is None
    assert abs(got_text.created_on.timestamp() - now()) < 60
    assert got_html.type == ChatMessageType.HTML
    assert got_html.content.message == "<p>Hello <b>all</b></p>"
    assert got_html.metadata == {"bridgeMessageId": "m-2"}
    # Without sender_display_name, the name the member has in the thread is used.
    expected = "Ann (SMS)" if room.kind == "meeting" else None
    assert got_html.sender_display_name == expected
    # Bob sees Ann's messages too.
    assert [m.id for m in await _texts(info, room.bob_token, room.thread_id)] == [html.id, text.id]


async def test_sequence_ids_and_versions(info: SandboxInfo, room: Room) -> None:
    async with thread_client(info, room.ann_token, room.thread_id) as tc:
        ids = [(await tc.send_message(f"n{i}")).id for i in range(3)]
        messages = [await tc.get_message(mid) for mid in ids]
    seqs = [int(m.sequence_id) for m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + 3))
    for message in messages:
        assert message.version == message.id  # an unedited message's version is its id
    assert [int(mid) for mid in ids] == sorted(int(mid) for mid in ids)


async def test_list_messages_newest_first_paged(http: aiohttp.ClientSession, info: SandboxInfo, room: Room) -> None:
    async with thread_client(info, room.ann_token, room.thread_id) as tc:
        sent = [(await tc.send_message(f"message {i}")).id for i in range(7)]
        pages: list[list[ChatMessage]] = []
        async for page in tc.list_messages(results_per_page=3).by_page():
            pages.append([m async for m in page])
    assert all(len(page) <= 3 for page in pages)
    assert len(pages) >= 3  # 7 texts (plus any system messages) at 3 a page: nextLink was followed
    flat = [m for page in pages for m in page]
    seqs = [int(m.sequence_id) for m in flat]
    assert seqs == sorted(seqs, reverse=True)
    assert len(set(m.id for m in flat)) == len(flat)
    texts = [m.id for m in flat if m.type == ChatMessageType.TEXT]
    assert texts == list(reversed(sent))

    # The raw nextLink is an absolute https URL on the sandbox that keeps the page size.
    path = f"/chat/threads/{room.thread_id}/messages?api-version={CHAT_API}&maxPageSize=3"
    status, body, _ = await request(http, info, "GET", path, headers=bearer(room.ann_token))
    assert status == 200
    assert [m["content"]["message"] for m in body["value"]] == ["message 6", "message 5", "message 4"]
    assert body["nextLink"].startswith(info.endpoint.rstrip("/") + f"/chat/threads/{room.thread_id}/messages?")
    async with http.get(body["nextLink"], headers=bearer(room.ann_token)) as resp:
        assert resp.status == 200
        second = await resp.json()
    assert [m["content"]["message"] for m in second["value"]] == ["message 3", "message 2", "message 1"]


async def test_list_messages_start_time(info: SandboxInfo, room: Room) -> None:
    async with thread_client(info, room.ann_token, room.thread_id) as tc:
        first = await tc.send_message("before the cut")
        await asyncio.sleep(0.05)
        cut = datetime.now(UTC)
        await asyncio.sleep(0.05)
        second = await tc.send_message("after the cut")
        assert [m.id for m in await _texts(info, room.ann_token, room.thread_id, start_time=cut)] == [second.id]
        # A message edited after the cut counts as changed since then.
        await tc.update_message(first.id, "before the cut, edited")
    after = await _texts(info, room.ann_token, room.thread_id, start_time=cut)
    assert {m.id for m in after} == {first.id, second.id}
    future = datetime.now(UTC) + timedelta(minutes=5)
    assert await _texts(info, room.ann_token, room.thread_id, start_time=future) == []


async def test_update_message(info: SandboxInfo, room: Room) -> None:
    async with thread_client(info, room.ann_token, room.thread_id) as tc:
        sent = await tc.send_message("typo hre", metadata={"a": "1", "b": "2"})
        original = await tc.get_message(sent.id)
        await tc.update_message(sent.id, "typo here", metadata={"b": "3", "c": "4"})
        edited = await tc.get_message(sent.id)
    assert edited.content.message == "typo here"
    assert edited.edited_on is not None and edited.edited_on >= original.created_on
    assert edited.metadata == {"a": "1", "b": "3", "c": "4"}  # merge-patch
    assert int(edited.version) > int(original.version)
    assert edited.sequence_id == original.sequence_id and edited.created_on == original.created_on

    async with thread_client(info, room.bob_token, room.thread_id) as bob:
        with pytest.raises(HttpResponseError) as exc:
            await bob.update_message(sent.id, "not yours")
    assert exc.value.status_code == 403


async def test_delete_message(info: SandboxInfo, room: Room) -> None:
    async with thread_client(info, room.ann_token, room.thread_id) as tc:
        keep = await tc.send_message("keep me")
        gone = await tc.send_message("delete me")
        async with thread_client(info, room.bob_token, room.thread_id) as bob:
            with pytest.raises(HttpResponseError) as exc:
                await bob.delete_message(gone.id)
            assert exc.value.status_code == 403
        await tc.delete_message(gone.id)
        await tc.delete_message(gone.id)  # deleting twice succeeds
        deleted = await tc.get_message(gone.id)
    assert deleted.deleted_on is not None
    assert deleted.content is None or not deleted.content.message
    listed = {m.id: m for m in await _texts(info, room.ann_token, room.thread_id)}
    assert listed[gone.id].deleted_on is not None  # still listed, marked deleted
    assert listed[keep.id].deleted_on is None


async def test_get_unknown_message_is_404(http: aiohttp.ClientSession, info: SandboxInfo, room: Room) -> None:
    async with thread_client(info, room.ann_token, room.thread_id) as tc:
        with pytest.raises(ResourceNotFoundError):
            await tc.get_message("1234")
    status, body, _ = await request(
        http, info, "GET", _messages_path(room.thread_id, "/1234"), headers=bearer(room.ann_token)
    )
    assert status == 404
    assert error_of(body)[0] == "NotFound"


async def test_list_participants(info: SandboxInfo, room: Room) -> None:
    async with thread_client(info, room.ann_token, room.thread_id) as tc:
        people = {p.identifier.raw_id: p for p in [p async for p in tc.list_participants()]}
    assert {room.ann, room.bob} <= set(people)
    if room.kind == "meeting":
        assert room.meeting is not None
        assert room.meeting["organizerId"] in people  # the Teams organizer is in the meeting chat
        assert people[room.ann].display_name == "Ann (SMS)"
        assert people[room.bob].display_name == "Bob (SMS)"
        # Members joined by the call only see history from when they joined.
        shared_from = people[room.ann].share_history_time
        assert shared_from is not None and shared_from.timestamp() > 0
    else:
        assert set(people) == {room.ann, room.bob}
        assert people[room.bob].display_name == "Bob"


async def test_list_participants_paged(info: SandboxInfo, room: Room) -> None:
    async with thread_client(info, room.ann_token, room.thread_id) as tc:
        pages = [[p async for p in page] async for page in tc.list_participants(results_per_page=1).by_page()]
    assert all(len(page) == 1 for page in pages)
    assert len(pages) == (3 if room.kind == "meeting" else 2)


async def test_typing_notification(info: SandboxInfo, room: Room) -> None:
    async with thread_client(info, room.ann_token, room.thread_id) as tc:
        await tc.send_typing_notification(sender_display_name="Ann (SMS)")
        await tc.send_typing_notification()


async def test_message_size_limit(http: aiohttp.ClientSession, info: SandboxInfo, room: Room) -> None:
    async with thread_client(info, room.ann_token, room.thread_id) as tc:
        await tc.send_message("x" * MAX_BYTES)  # exactly the limit is fine
        with pytest.raises(HttpResponseError) as exc:
            await tc.send_message("x" * (MAX_BYTES + 1))
        assert exc.value.status_code == 400
        assert "Message size exceeded." in str(exc.value)
        # Metadata counts towards the size; multi-byte characters count as bytes.
        with pytest.raises(HttpResponseError) as meta_exc:
            await tc.send_message("x" * (MAX_BYTES - 10), metadata={"key": "v" * 10})
        assert meta_exc.value.status_code == 400
        with pytest.raises(HttpResponseError) as utf8_exc:
            await tc.send_message("é" * (MAX_BYTES // 2 + 1))
        assert utf8_exc.value.status_code == 400
    status, body = await _raw_send(http, info, room.ann_token, room.thread_id, {"content": "x" * (MAX_BYTES + 1)})
    assert status == 400
    assert error_of(body) == ("BadRequest", "Message size exceeded.")
    # An edit that grows a message past the limit is refused too.
    async with thread_client(info, room.ann_token, room.thread_id) as tc:
        sent = await tc.send_message("small")
        with pytest.raises(HttpResponseError) as edit_exc:
            await tc.update_message(sent.id, "x" * (MAX_BYTES + 1))
        assert edit_exc.value.status_code == 400
        assert (await tc.get_message(sent.id)).content.message == "small"


async def test_bad_message_bodies_are_400(http: aiohttp.ClientSession, info: SandboxInfo, room: Room) -> None:
    for body, reason in (
        ({}, "content is required."),
        ({"content": "hi", "type": "richtext/html"}, "type must be text or html."),
        ({"content": "hi", "metadata": {"n": 1}}, "metadata must be an object whose values are strings."),
        ({"content": 5}, "content must be a string."),
    ):
        status, answer = await _raw_send(http, info, room.ann_token, room.thread_id, body)
        assert status == 400, body
        assert error_of(answer) == ("BadRequest", reason)
    assert await _texts(info, room.ann_token, room.thread_id) == []


async def test_other_errors_are_in_spec_shape(http: aiohttp.ClientSession, info: SandboxInfo, room: Room) -> None:
    auth = bearer(room.ann_token) | {"Content-Type": "application/json"}
    messages = f"/chat/threads/{room.thread_id}/messages"
    for method, path, body, status, code in (
        ("POST", f"{messages}?api-version={CHAT_API}", b"{not json", 400, "BadRequest"),
        ("POST", messages, b'{"content": "hi"}', 400, "MissingApiVersionParameter"),
        ("POST", f"{messages}?api-version=1999-01-01", b'{"content": "hi"}', 400, "UnsupportedApiVersion"),
        ("GET", f"{messages}?api-version={CHAT_API}&maxPageSize=201", b"", 400, "BadRequest"),
        ("PUT", f"{messages}?api-version={CHAT_API}", b"{}", 405, "MethodNotAllowed"),
        ("GET", f"/chat/nothing-here?api-version={CHAT_API}", b"", 404, "NotFound"),
        ("POST", f"{messages}?api-version={CHAT_API}", b'{"content": "' + b"x" * 1_100_000 + b'"}', 413, None),
    ):
        got, answer, _ = await request(http, info, method, path, body=body, headers=auth)
        assert got == status, (method, path, answer)
        assert error_of(answer)[0] == (code or "RequestEntityTooLarge")


# --- tokens ---------------------------------------------------------------------------------------------


def _expired_copy(sandbox: Sandbox, token: str) -> str:
    """The same token, re-signed with the sandbox's key but expired a minute ago."""
    assert sandbox.world is not None
    claims = decode_unverified(token)
    claims["iat"] = int(now()) - 3 * 3600
    claims["exp"] = int(now()) - 60
    return jwt.encode(claims, sandbox.world.credentials.signing_key_bytes, algorithm="HS256")


async def test_expired_token_is_401(
    http: aiohttp.ClientSession, info: SandboxInfo, sandbox: Sandbox, room: Room
) -> None:
    expired = _expired_copy(sandbox, room.ann_token)
    async with thread_client(info, expired, room.thread_id, retry_total=0) as tc:
        with pytest.raises(ClientAuthenticationError) as exc:
            await tc.send_message("too late")
    assert exc.value.status_code == 401
    status, body = await _raw_send(http, info, expired, room.thread_id, {"content": "too late"})
    assert status == 401
    assert error_of(body) == ("Unauthorized", "The access token has expired.")
    # The original token still works: only the expiry differs.
    async with thread_client(info, room.ann_token, room.thread_id) as tc:
        await tc.send_message("in time")


async def test_forged_or_missing_token_is_401(http: aiohttp.ClientSession, info: SandboxInfo, room: Room) -> None:
    forged = jwt.encode(decode_unverified(room.ann_token), b"not the sandbox key" * 2, algorithm="HS256")
    for headers in (bearer(forged), bearer("not-a-jwt"), {}, {"Authorization": f"Basic {room.ann_token}"}):
        status, body, _ = await request(http, info, "GET", _messages_path(room.thread_id), headers=headers)
        assert status == 401, headers
        assert error_of(body)[0] == "Unauthorized"


async def test_token_without_chat_scope_is_403(http: aiohttp.ClientSession, info: SandboxInfo, room: Room) -> None:
    async with identity_client(info) as client:
        voip = await client.get_token(IdentityUser(room.ann), ["voip"])
    async with thread_client(info, voip.token, room.thread_id, retry_total=0) as tc:
        with pytest.raises(HttpResponseError) as exc:
            await tc.send_message("no chat scope")
    assert exc.value.status_code == 403
    status, body, _ = await request(http, info, "GET", _messages_path(room.thread_id), headers=bearer(voip.token))
    assert status == 403
    assert error_of(body) == ("Forbidden", "The access token lacks the 'chat' scope.")


# --- regular threads only -------------------------------------------------------------------------------


async def test_create_thread_and_list_threads(info: SandboxInfo, control: Control) -> None:
    ann, ann_token = await new_user(info)
    bob, _ = await new_user(info)
    async with chat_client(info, ann_token) as client:
        first = await client.create_chat_thread(
            "Retro",
            thread_participants=[ChatParticipant(identifier=CommunicationUserIdentifier(bob), display_name="Bob")],
            idempotency_token="create-once",
        )
        again = await client.create_chat_thread("Retro", idempotency_token="create-once")
        other = await client.create_chat_thread("Planning")
        threads = [t async for t in client.list_chat_threads()]
    assert first.chat_thread.id == again.chat_thread.id  # repeatability-request-id deduplicates
    assert first.chat_thread.topic == "Retro"
    assert first.chat_thread.created_by.raw_id == ann
    assert {t.id for t in threads} == {first.chat_thread.id, other.chat_thread.id}


async def test_update_topic_and_properties(info: SandboxInfo, regular: Room) -> None:
    async with thread_client(info, regular.ann_token, regular.thread_id) as tc:
        await tc.update_topic("New topic")
        props = await tc.get_properties()
        system = [m async for m in tc.list_messages() if m.type == ChatMessageType.TOPIC_UPDATED]
        with pytest.raises(HttpResponseError) as exc:
            await tc.update_topic("")
    assert props.topic == "New topic"
    assert props.created_by.raw_id == regular.ann
    # Newest first: the update, then the topic the thread was created with.
    assert len(system) == 2 and system[0].content.topic == "New topic" and system[1].content.topic != "New topic"
    assert exc.value.status_code == 400


async def test_read_receipts(info: SandboxInfo, regular: Room) -> None:
    async with thread_client(info, regular.ann_token, regular.thread_id) as ann:
        sent = await ann.send_message("did you read this?")
        async with thread_client(info, regular.bob_token, regular.thread_id) as bob:
            await bob.send_read_receipt(sent.id)
        receipts = [r async for r in ann.list_read_receipts()]
    assert len(receipts) == 1
    assert receipts[0].sender.raw_id == regular.bob
    assert receipts[0].chat_message_id == sent.id
    assert receipts[0].read_on is not None


async def test_add_and_remove_participants(info: SandboxInfo, regular: Room) -> None:
    carol, carol_token = await new_user(info)
    async with thread_client(info, regular.ann_token, regular.thread_id) as ann:
        errors = await ann.add_participants(
            [ChatParticipant(identifier=CommunicationUserIdentifier(carol), display_name="Carol")]
        )
        assert not errors
        async with thread_client(info, carol_token, regular.thread_id, retry_total=0) as tc:
            await tc.send_message("hi, I'm Carol")
            await ann.remove_participant(CommunicationUserIdentifier(carol))
            with pytest.raises(HttpResponseError) as exc:
                await tc.send_message("still here?")
        assert exc.value.status_code == 403
        kinds = [m.type async for m in ann.list_messages()]
    assert ChatMessageType.PARTICIPANT_ADDED in kinds and ChatMessageType.PARTICIPANT_REMOVED in kinds


async def test_non_member_is_403_in_spec_shape(http: aiohttp.ClientSession, info: SandboxInfo, regular: Room) -> None:
    _, stranger = await new_user(info)
    status, body = await _raw_send(http, info, stranger, regular.thread_id, {"content": "let me in"})
    assert status == 403
    assert error_of(body)[0] == "Forbidden"
    status, body, _ = await request(
        http, info, "GET", _messages_path("19:nope@thread.v2"), headers=bearer(regular.ann_token)
    )
    assert status == 404
    assert error_of(body)[0] == "NotFound"


async def test_delete_thread(info: SandboxInfo, regular: Room) -> None:
    async with chat_client(info, regular.ann_token) as client:
        await client.delete_chat_thread(regular.thread_id)
    async with thread_client(info, regular.ann_token, regular.thread_id) as tc:
        with pytest.raises(ResourceNotFoundError):
            await tc.send_message("anyone?")


# --- Teams meeting threads only -------------------------------------------------------------------------


async def test_teams_messages_arrive_as_html(info: SandboxInfo, control: Control, meeting_room: Room) -> None:
    meeting = meeting_room.meeting
    assert meeting is not None
    posted = await control.ok(
        "POST",
        f"/sandbox/v1/meetings/{meeting['id']}/messages",
        {"from": meeting["organizerId"], "html": '<p>Hi <at id="0">Ann</at></p>'},
    )
    async with thread_client(info, meeting_room.ann_token, meeting_room.thread_id) as tc:
        message = await tc.get_message(posted["id"])
    assert message.type == ChatMessageType.HTML
    assert message.content.message == '<p>Hi <at id="0">Ann</at></p>'
    assert message.sender.raw_id == meeting["organizerId"]
    assert message.sender_display_name == "Megan"


async def test_meeting_chat_needs_the_call(
    http: aiohttp.ClientSession, info: SandboxInfo, control: Control, meeting_room: Room
) -> None:
    meeting = meeting_room.meeting
    assert meeting is not None
    async with thread_client(info, meeting_room.ann_token, meeting_room.thread_id) as tc:
        before = await tc.send_message("sent before Carol joined")
    carol, carol_token = await new_user(info)
    # Not in the call: 403 in the live service's CommunicationError shape.
    status, body = await _raw_send(http, info, carol_token, meeting_room.thread_id, {"content": "hello?"})
    assert status == 403
    assert body["CommunicationError"]["Code"] == "Forbidden"
    async with thread_client(info, carol_token, meeting_room.thread_id, retry_total=0) as tc:
        with pytest.raises(HttpResponseError) as exc:
            await tc.send_message("hello?")
        assert exc.value.status_code == 403
        assert exc.value.error is None

        leg = await join_call(http, info, carol_token, meeting, "Carol")
        await tc.send_message("now I'm in")
        seen = [m.id for m in await _texts(info, carol_token, meeting_room.thread_id)]
        assert before.id not in seen  # history from before joining stays hidden
        with pytest.raises(HttpResponseError):
            await tc.get_message(before.id)

        status, _, _ = await request(
            http, info, "DELETE", f"/sandbox/v1/calls/{leg['callId']}", headers=bearer(carol_token)
        )
        assert status == 204
        with pytest.raises(HttpResponseError) as after:
            await tc.send_message("gone")
        assert after.value.status_code == 403
    async with thread_client(info, meeting_room.ann_token, meeting_room.thread_id) as ann:
        assert carol not in [p.identifier.raw_id async for p in ann.list_participants()]


async def test_meeting_chat_refuses_topic_receipts_and_membership(info: SandboxInfo, meeting_room: Room) -> None:
    carol, _ = await new_user(info)
    async with thread_client(info, meeting_room.ann_token, meeting_room.thread_id, retry_total=0) as tc:
        sent = await tc.send_message("hi")
        for attempt in (
            tc.update_topic("Renamed"),
            tc.send_read_receipt(sent.id),
            tc.remove_participant(CommunicationUserIdentifier(meeting_room.bob)),
        ):
            with pytest.raises(HttpResponseError) as exc:
                await attempt
            assert exc.value.status_code == 403
        with pytest.raises(HttpResponseError) as receipts:
            _ = [r async for r in tc.list_read_receipts()]
        assert receipts.value.status_code == 403
        with pytest.raises(HttpResponseError) as add_exc:
            await tc.add_participants([ChatParticipant(identifier=CommunicationUserIdentifier(carol))])
        assert add_exc.value.status_code == 403
