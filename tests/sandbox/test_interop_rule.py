"""The interop rule through the real chat SDK: an ACS identity uses a meeting's chat only while it is in the call."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from azure.communication.chat import (
    ChatMessageType,
    ChatParticipant,
    CommunicationUserIdentifier,
    MicrosoftTeamsUserIdentifier,
)
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from bot.sandbox import SandboxInfo
from tests.support.meetings import (
    AcsUser,
    Json,
    chat,
    chat_client,
    chat_path,
    expect_forbidden,
    join,
    leave,
    messages,
    new_user,
    organizer_view,
    participant_names,
    texts,
)
from tests.support.sandbox import Control

MEETINGS = "/sandbox/v1/meetings"


async def teams_user(control: Control, meeting: Json, name: str) -> str:
    user = await control.ok("POST", f"{MEETINGS}/{meeting['id']}/teams-users", {"displayName": name})
    return str(user["id"])


async def teams_post(control: Control, meeting: Json, sender: str, html: str) -> str:
    message = await control.ok("POST", f"{MEETINGS}/{meeting['id']}/messages", {"from": sender, "html": html})
    return str(message["id"])


async def in_call(control: Control, info: SandboxInfo, name: str = "Ann (SMS)") -> tuple[Json, AcsUser, Json]:
    """A started meeting and an ACS user connected to its call."""
    meeting = await control.meeting()
    user = await new_user(info)
    call = await join(control, user, meeting, name)
    assert call["state"] == "connected"
    return meeting, user, call


async def test_never_joined_is_forbidden(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting()
    ann = await new_user(info)
    await expect_forbidden(info, control, ann, meeting["threadId"])


@pytest.mark.parametrize(("lobby", "start"), [("manual", True), ("auto", False)])
async def test_forbidden_while_in_the_lobby(control: Control, info: SandboxInfo, lobby: str, start: bool) -> None:
    meeting = await control.meeting(lobby=lobby, start=start)
    ann = await new_user(info)
    call = await join(control, ann, meeting, "Ann")
    assert call["state"] == "lobby"
    await expect_forbidden(info, control, ann, meeting["threadId"])
    if start:
        await control.ok("POST", f"{MEETINGS}/{meeting['id']}/lobby/{call['callId']}/admit")
    else:
        await control.ok("POST", f"{MEETINGS}/{meeting['id']}/start")
    async with chat(info, ann, meeting["threadId"]) as client:
        await client.send_message("let in")
        assert await texts(client) == ["let in"]


async def test_chat_works_while_connected(control: Control, info: SandboxInfo) -> None:
    meeting, ann, _ = await in_call(control, info)
    async with chat(info, ann, meeting["threadId"]) as client:
        sent = await client.send_message("Hello from SMS", metadata={"bridgeId": "m-1"})
        assert sent.id
        html = await client.send_message("<p>Hi <b>all</b></p>", chat_message_type=ChatMessageType.HTML)
        listed = await messages(client)
        by_id = {m.id: m for m in listed}
        assert by_id[sent.id].content.message == "Hello from SMS"
        assert by_id[sent.id].metadata == {"bridgeId": "m-1"}
        assert by_id[sent.id].sender_display_name == "Ann (SMS)"
        assert by_id[html.id].type == ChatMessageType.HTML
        got = await client.get_message(sent.id)
        assert got.content.message == "Hello from SMS"
        properties = await client.get_properties()
        assert properties.id == meeting["threadId"]
        assert properties.topic == meeting["subject"]
        assert isinstance(properties.created_by, MicrosoftTeamsUserIdentifier)
        assert properties.created_by.raw_id == meeting["organizerId"]
        names = await participant_names(client)
        assert names == {meeting["organizerId"]: "Megan", ann.id: "Ann (SMS)"}
        await client.send_typing_notification()
    view = await organizer_view(control, meeting)
    mine = [m for m in view if m.get("senderCommunicationIdentifier", {}).get("rawId") == ann.id]
    assert [m["content"]["message"] for m in mine] == ["Hello from SMS", "<p>Hi <b>all</b></p>"]
    assert all(m["senderDisplayName"] == "Ann (SMS)" for m in mine)


async def test_teams_html_reaches_the_acs_user(control: Control, info: SandboxInfo) -> None:
    meeting, ann, _ = await in_call(control, info)
    adele = await teams_user(control, meeting, "Adele")
    html = '<p>Hi <at id="0">Ann (SMS)</at> 👋 see <a href="https://contoso.example/x">this</a></p>'
    message_id = await teams_post(control, meeting, adele, html)
    async with chat(info, ann, meeting["threadId"]) as client:
        message = await client.get_message(message_id)
    assert message.type == ChatMessageType.HTML
    assert message.content.message == html
    assert message.sender_display_name == "Adele"
    assert isinstance(message.sender, MicrosoftTeamsUserIdentifier)
    assert message.sender.raw_id == adele
    assert message.sender.properties["user_id"] == adele.removeprefix("8:orgid:")


@pytest.mark.parametrize("how", ["leave", "removed", "meeting_end"])
async def test_forbidden_once_out_of_the_call(control: Control, info: SandboxInfo, how: str) -> None:
    meeting, ann, call = await in_call(control, info)
    async with chat(info, ann, meeting["threadId"]) as client:
        await client.send_message("before I go")
        assert await texts(client) == ["before I go"]
    if how == "leave":
        await leave(control, ann, call["callId"])
    elif how == "removed":
        status, body = await control.call("DELETE", f"{MEETINGS}/{meeting['id']}/participants/{call['callId']}")
        assert status == 204, body
    else:
        await control.ok("POST", f"{MEETINGS}/{meeting['id']}/end")
    await expect_forbidden(info, control, ann, meeting["threadId"])
    status, answer = await control.call("GET", chat_path(meeting["threadId"], "/messages/1"), headers=ann.auth)
    assert status == 403, answer  # not even messages from its own stay


async def test_history_starts_at_the_join(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting()
    adele = await teams_user(control, meeting, "Adele")
    before = await teams_post(control, meeting, adele, "<p>before Ann</p>")
    ann = await new_user(info)
    await join(control, ann, meeting, "Ann")
    await teams_post(control, meeting, adele, "<p>after Ann</p>")
    async with chat(info, ann, meeting["threadId"]) as client:
        assert await texts(client) == ["<p>after Ann</p>"]
        listed = await messages(client)
        assert before not in {m.id for m in listed}
        assert [m.type for m in listed if m.type not in ("text", "html")] == [ChatMessageType.PARTICIPANT_ADDED]
        with pytest.raises(ResourceNotFoundError):
            await client.get_message(before)
        # a start time earlier than the join does not reach further back
        early = datetime(2000, 1, 1, tzinfo=UTC)
        assert before not in {m.id for m in await messages(client, start_time=early)}


async def test_rejoin_sees_only_messages_since_the_new_join(control: Control, info: SandboxInfo) -> None:
    meeting, ann, call = await in_call(control, info, "Ann")
    adele = await teams_user(control, meeting, "Adele")
    async with chat(info, ann, meeting["threadId"]) as client:
        await client.send_message("first stay")
    await teams_post(control, meeting, adele, "<p>during first stay</p>")
    await leave(control, ann, call["callId"])
    await teams_post(control, meeting, adele, "<p>while away</p>")
    await join(control, ann, meeting, "Ann again")
    await teams_post(control, meeting, adele, "<p>after rejoin</p>")
    async with chat(info, ann, meeting["threadId"]) as client:
        assert await texts(client) == ["<p>after rejoin</p>"]
        listed = await messages(client)
        added = [m for m in listed if m.type == ChatMessageType.PARTICIPANT_ADDED]
        assert len(added) == 1
        assert added[0].content.participants[0].display_name == "Ann again"
        assert not [m for m in listed if m.type == ChatMessageType.PARTICIPANT_REMOVED]
        assert (await participant_names(client))[ann.id] == "Ann again"
    html = [m["content"]["message"] for m in await organizer_view(control, meeting) if m["type"] in ("text", "html")]
    assert html == ["first stay", "<p>during first stay</p>", "<p>while away</p>", "<p>after rejoin</p>"]


async def test_acs_user_cannot_manage_the_meeting_thread(control: Control, info: SandboxInfo) -> None:
    meeting, ann, _ = await in_call(control, info)
    bob = await new_user(info)
    thread_id = meeting["threadId"]
    async with chat(info, ann, thread_id, retry_total=0) as client:
        with pytest.raises(HttpResponseError) as add:
            await client.add_participants([ChatParticipant(identifier=CommunicationUserIdentifier(bob.id))])
        assert add.value.status_code == 403
        organizer = MicrosoftTeamsUserIdentifier(meeting["organizerId"].removeprefix("8:orgid:"))
        with pytest.raises(HttpResponseError) as remove:
            await client.remove_participant(organizer)
        assert remove.value.status_code == 403
        with pytest.raises(HttpResponseError) as remove_self:
            await client.remove_participant(CommunicationUserIdentifier(ann.id))
        assert remove_self.value.status_code == 403
        with pytest.raises(HttpResponseError) as topic:
            await client.update_topic("Hijacked")
        assert topic.value.status_code == 403
        with pytest.raises(HttpResponseError) as receipt:
            await client.send_read_receipt("1")
        assert receipt.value.status_code == 403
        assert (await client.get_properties()).topic == meeting["subject"]
        assert set(await participant_names(client)) == {meeting["organizerId"], ann.id}
    async with chat_client(info, ann, retry_total=0) as client_:
        with pytest.raises(HttpResponseError) as delete:
            await client_.delete_chat_thread(thread_id)
        assert delete.value.status_code == 403
    for method, rest, body in (
        ("POST", "/participants/:add", {"participants": [{"communicationIdentifier": {"rawId": bob.id}}]}),
        ("POST", "/participants/:remove", {"rawId": meeting["organizerId"]}),
        ("PATCH", "", {"topic": "Hijacked"}),
        ("DELETE", "", None),
    ):
        status, answer = await control.call(method, chat_path(thread_id, rest), body, headers=ann.auth)
        assert status == 403, (method, rest, answer)
        assert answer["CommunicationError"]["Code"] == "Forbidden"
    got = await control.ok("GET", f"{MEETINGS}/{meeting['id']}")
    assert got["subject"] == meeting["subject"]
    async with chat(info, ann, thread_id) as client:
        await client.send_message("thread still here")
    await expect_forbidden(info, control, bob, thread_id)


async def test_acs_user_edits_only_its_own_messages(control: Control, info: SandboxInfo) -> None:
    meeting, ann, _ = await in_call(control, info)
    adele = await teams_user(control, meeting, "Adele")
    theirs = await teams_post(control, meeting, adele, "<p>mine</p>")
    async with chat(info, ann, meeting["threadId"], retry_total=0) as client:
        sent = await client.send_message("helo")
        await client.update_message(sent.id, content="hello")
        assert (await client.get_message(sent.id)).content.message == "hello"
        with pytest.raises(HttpResponseError) as edit:
            await client.update_message(theirs, content="changed")
        assert edit.value.status_code == 403
        await client.delete_message(sent.id)
        assert (await client.get_message(sent.id)).deleted_on is not None
    view = {m["id"]: m for m in await organizer_view(control, meeting)}
    assert view[theirs]["content"]["message"] == "<p>mine</p>"
    assert "deletedOn" in view[sent.id]


async def test_joins_and_leaves_are_system_messages(control: Control, info: SandboxInfo) -> None:
    meeting, ann, _ = await in_call(control, info, "Ann (SMS)")
    bob = await new_user(info)
    bob_call = await join(control, bob, meeting, "Bob (web)")
    await leave(control, bob, bob_call["callId"])
    async with chat(info, ann, meeting["threadId"]) as client:
        listed = list(reversed(await messages(client)))
    system = [(m.type, [(p.identifier.raw_id, p.display_name) for p in m.content.participants]) for m in listed]
    assert system == [
        (ChatMessageType.PARTICIPANT_ADDED, [(ann.id, "Ann (SMS)")]),
        (ChatMessageType.PARTICIPANT_ADDED, [(bob.id, "Bob (web)")]),
        (ChatMessageType.PARTICIPANT_REMOVED, [(bob.id, "Bob (web)")]),
    ]
    assert all(m.sender is None for m in listed)
    assert listed[1].content.initiator is not None
    assert listed[1].content.initiator.raw_id == bob.id


async def test_removal_is_initiated_by_the_organizer(control: Control, info: SandboxInfo) -> None:
    meeting, ann, _ = await in_call(control, info, "Ann")
    bob = await new_user(info)
    bob_call = await join(control, bob, meeting, "Bob")
    status, body = await control.call("DELETE", f"{MEETINGS}/{meeting['id']}/participants/{bob_call['callId']}")
    assert status == 204, body
    async with chat(info, ann, meeting["threadId"]) as client:
        removed = [m for m in await messages(client) if m.type == ChatMessageType.PARTICIPANT_REMOVED]
        assert bob.id not in await participant_names(client)
    assert len(removed) == 1
    assert removed[0].content.participants[0].display_name == "Bob"
    assert removed[0].content.initiator.raw_id == meeting["organizerId"]


async def test_chat_scope_is_still_required(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting()
    voip_only = await new_user(info, ("voip",))
    call = await join(control, voip_only, meeting, "Voice only")
    assert call["state"] == "connected"
    async with chat(info, voip_only, meeting["threadId"], retry_total=0) as client:
        with pytest.raises(HttpResponseError) as exc:
            await client.send_message("hi")
    assert exc.value.status_code == 403


async def test_other_meetings_stay_closed(control: Control, info: SandboxInfo) -> None:
    _, ann, _ = await in_call(control, info)
    other = await control.meeting("Other meeting")
    await expect_forbidden(info, control, ann, other["threadId"])
