"""Where the sandbox follows the live service as Microsoft's SDKs meet it: shareHistoryTime on thread creation,
repeatability-request-id scoped per caller, a new thread's system messages, and the Teams user token exchange."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.communication.chat import ChatMessageType, ChatParticipant, CommunicationUserIdentifier
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from bot.sandbox import SandboxInfo
from tests.support.acs import chat_client, decode_unverified, identity_client, new_user, thread_client
from tests.support.sandbox import Control

pytestmark = pytest.mark.usefixtures("control")


async def test_share_history_time_given_at_creation_is_kept_and_hides_what_came_before(info: SandboxInfo) -> None:
    ann, ann_token = await new_user(info)
    bob, bob_token = await new_user(info)
    later = datetime.now(UTC) + timedelta(hours=1)
    bob_joins = ChatParticipant(
        identifier=CommunicationUserIdentifier(bob), display_name="Bob", share_history_time=later
    )
    async with chat_client(info, ann_token) as client:
        created = await client.create_chat_thread("Handover", thread_participants=[bob_joins])
    thread_id = created.chat_thread.id
    async with thread_client(info, ann_token, thread_id) as tc:
        await tc.send_message("before Bob's history starts")
        shares = {p.identifier.raw_id: p.share_history_time async for p in tc.list_participants()}
    bob_share, ann_share = shares[bob], shares[ann]
    assert bob_share is not None and abs((bob_share - later).total_seconds()) < 0.001
    assert ann_share is not None and ann_share.timestamp() == 0  # the creator sees all of it
    async with thread_client(info, bob_token, thread_id) as tc:
        seen = [m async for m in tc.list_messages()]
    assert [m for m in seen if m.type == ChatMessageType.TEXT] == []


async def test_repeatability_request_id_is_scoped_to_the_caller(info: SandboxInfo) -> None:
    _, ann_token = await new_user(info)
    _, bob_token = await new_user(info)
    token = str(uuid.uuid4())
    async with chat_client(info, ann_token) as ann, chat_client(info, bob_token) as bob:
        first = await ann.create_chat_thread("Standup", idempotency_token=token)
        again = await ann.create_chat_thread("Standup", idempotency_token=token)
        theirs = await bob.create_chat_thread("Standup", idempotency_token=token)
    assert again.chat_thread.id == first.chat_thread.id
    assert theirs.chat_thread.id != first.chat_thread.id
    assert theirs.chat_thread.created_by.raw_id != first.chat_thread.created_by.raw_id


async def test_a_new_thread_opens_with_participant_added_then_topic_updated(info: SandboxInfo) -> None:
    ann, ann_token = await new_user(info)
    bob, _ = await new_user(info)
    bob_joins = ChatParticipant(identifier=CommunicationUserIdentifier(bob), display_name="Bob")
    async with chat_client(info, ann_token) as client:
        created = await client.create_chat_thread("Kick-off", thread_participants=[bob_joins])
    async with thread_client(info, ann_token, created.chat_thread.id) as tc:
        messages = [m async for m in tc.list_messages()]
    oldest_first = list(reversed(messages))
    assert [(m.type, m.sequence_id) for m in oldest_first] == [
        (ChatMessageType.PARTICIPANT_ADDED, "1"),
        (ChatMessageType.TOPIC_UPDATED, "2"),
    ]
    added, topic = oldest_first
    assert added.content is not None and topic.content is not None
    assert {p.identifier.raw_id for p in added.content.participants} == {ann, bob}
    assert added.content.initiator.raw_id == ann and added.sender is None
    assert topic.content.topic == "Kick-off" and topic.content.initiator.raw_id == ann


async def _teams_token(control: Control, user: str, **extra: Any) -> str:
    body = await control.ok("POST", "/sandbox/v1/teams-user-tokens", {"userId": user, **extra})
    return str(body["token"])


async def test_a_teams_users_entra_token_is_exchanged_for_an_acs_token(info: SandboxInfo, control: Control) -> None:
    user = str(uuid.uuid4())
    aad = await _teams_token(control, user)
    async with identity_client(info) as client:
        token = await client.get_token_for_teams_user(aad, info.client_id, user)
    claims = decode_unverified(token.token)
    assert claims["sub"] == f"8:orgid:{user}"
    # The identity SDK hands expiresOn back as the service's ISO string; it ends with the Entra token.
    expires = datetime.fromisoformat(str(token.expires_on).replace("Z", "+00:00")).timestamp()
    assert claims["exp"] == int(expires) <= decode_unverified(aad)["exp"]


@pytest.mark.parametrize(
    ("case", "status", "code", "message"),
    [
        ("invalid_token", 401, "InvalidAccessToken", "Provided access token is not valid."),
        ("expired_token", 401, "InvalidAccessToken", "Provided access token is not valid."),
        ("empty_client_id", 400, "ValidationError", "AppId: The AppId field is required."),
        ("invalid_client_id", 400, "ValidationError", "Provided AppId has invalid format."),
        ("wrong_client_id", 400, "ValidationError", "AAD application is not the expected one."),
        ("empty_user_object_id", 400, "ValidationError", "UserId: The UserId field is required."),
        ("invalid_user_object_id", 400, "ValidationError", "Provided UserId has invalid format."),
        ("wrong_user_object_id", 400, "ValidationError", "Provided AAD token issued for unexpected user."),
    ],
)
async def test_the_exchange_answers_its_documented_errors(
    info: SandboxInfo, control: Control, case: str, status: int, code: str, message: str
) -> None:
    """The cases of the identity SDK's own recorded tests, with the answers the live service gave them."""
    user = str(uuid.uuid4())
    aad = await _teams_token(control, user, lifetimeSeconds=-60 if case == "expired_token" else 3600)
    args = {
        "invalid_token": ("invalid", info.client_id, user),
        "empty_client_id": (aad, "", user),
        "invalid_client_id": (aad, "invalid", user),
        "wrong_client_id": (aad, str(uuid.uuid4()), user),
        "empty_user_object_id": (aad, info.client_id, ""),
        "invalid_user_object_id": (aad, info.client_id, "invalid"),
        "wrong_user_object_id": (aad, info.client_id, str(uuid.uuid4())),
    }.get(case, (aad, info.client_id, user))
    async with identity_client(info) as client:
        with pytest.raises(HttpResponseError) as caught:
            await client.get_token_for_teams_user(*args)
    assert caught.value.status_code == status
    assert isinstance(caught.value, ClientAuthenticationError) == (status == 401)
    assert caught.value.error is not None
    assert (caught.value.error.code, caught.value.error.message) == (code, message)
