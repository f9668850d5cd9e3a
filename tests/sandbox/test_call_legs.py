"""Call legs: ACS identities joining a Teams meeting's call, the lobby, leaving, removal, the end, and SSE states."""

from __future__ import annotations

import re

import pytest
from azure.communication.identity import CommunicationUserIdentifier
from azure.communication.identity.aio import CommunicationIdentityClient

from bot.sandbox import SandboxInfo
from tests.support.meetings import (
    Json,
    call_events,
    chat,
    get_call,
    join,
    leave,
    new_user,
    organizer_view,
    participant_names,
    system_names,
)
from tests.support.sandbox import Control

CALLS = "/sandbox/v1/calls"
MEETINGS = "/sandbox/v1/meetings"


async def roster(control: Control, meeting: Json) -> Json:
    return dict((await control.ok("GET", f"{MEETINGS}/{meeting['id']}"))["roster"])


async def admit(control: Control, meeting: Json, call_id: str) -> Json:
    return dict(await control.ok("POST", f"{MEETINGS}/{meeting['id']}/lobby/{call_id}/admit"))


async def remove(control: Control, meeting: Json, call_id: str) -> None:
    status, body = await control.call("DELETE", f"{MEETINGS}/{meeting['id']}/participants/{call_id}")
    assert status == 204, body


@pytest.mark.parametrize("by", ["link", "short", "id"])
async def test_join_connects_in_an_auto_lobby_meeting(control: Control, info: SandboxInfo, by: str) -> None:
    meeting = await control.meeting()
    ann = await new_user(info)
    call = await join(control, ann, meeting, "Ann (SMS)", by=by)
    assert call["callId"]
    assert call["state"] == "connected"
    assert call["threadId"] == meeting["threadId"]
    assert call["meetingId"] == meeting["id"]
    assert call["identity"] == ann.id
    assert call["displayName"] == "Ann (SMS)"
    assert "connectedOn" in call
    got = await get_call(control, ann, call["callId"])
    assert got["state"] == "connected"
    assert got["threadId"] == meeting["threadId"]


async def test_join_by_id_tolerates_spaces(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting()
    ann = await new_user(info)
    spaced = " ".join(meeting["joinMeetingId"][i : i + 3] for i in range(0, 12, 3))
    status, call = await control.call(
        "POST", CALLS, {"meetingId": spaced, "passcode": meeting["passcode"], "displayName": "Ann"}, headers=ann.auth
    )
    assert status == 201, call
    assert call["threadId"] == meeting["threadId"]


async def test_join_link_matches_what_it_names_not_its_text(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting()
    ann = await new_user(info)
    long_link = meeting["joinWebUrl"]
    head = long_link.partition("?")[0]
    variants = [
        re.sub(r"%[0-9a-f]{2}", lambda m: m.group(0).upper(), long_link),  # upper-case escapes
        long_link + "&anon=true",
        head,  # without the context
        meeting["shortUrl"] + "&sdkver=1",
    ]
    for link in variants:
        status, call = await control.call("POST", CALLS, {"meetingLink": link, "displayName": "Ann"}, headers=ann.auth)
        assert status == 201, (link, call)
        assert call["meetingId"] == meeting["id"]
    wrong = f"https://teams.microsoft.com/meet/{meeting['joinMeetingId']}?p=nope00"
    status, answer = await control.call("POST", CALLS, {"meetingLink": wrong, "displayName": "Ann"}, headers=ann.auth)
    assert status == 403, answer
    for unknown in ("https://teams.microsoft.com/l/channel/19%3aabc%40thread.tacv2/General", "not a link"):
        status, answer = await control.call(
            "POST", CALLS, {"meetingLink": unknown, "displayName": "Ann"}, headers=ann.auth
        )
        assert status == 404, (unknown, answer)


async def test_join_finds_the_right_meeting(control: Control, info: SandboxInfo) -> None:
    first = await control.meeting("First")
    second = await control.meeting("Second")
    ann = await new_user(info)
    assert (await join(control, ann, second, "Ann", by="id"))["meetingId"] == second["id"]
    assert (await join(control, ann, first, "Ann", by="short"))["meetingId"] == first["id"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"meetingId": "JOINID", "passcode": "wrong1", "displayName": "Ann"}, 403),
        ({"meetingId": "JOINID", "displayName": "Ann"}, 403),
        ({"meetingId": "999999999999", "passcode": "abcdef", "displayName": "Ann"}, 404),
        (
            {
                "meetingLink": "https://teams.microsoft.com/l/meetup-join/19%3ameeting_x%40thread.v2/0",
                "displayName": "A",
            },
            404,
        ),
        ({"meetingLink": "LINK"}, 400),
        ({"meetingLink": "LINK", "displayName": "   "}, 400),
        ({"meetingLink": "LINK", "displayName": "x" * 257}, 400),
        ({"meetingLink": "LINK", "displayName": 5}, 400),
        ({"displayName": "Ann"}, 400),
    ],
)
async def test_bad_joins(control: Control, info: SandboxInfo, body: Json, status: int) -> None:
    meeting = await control.meeting()
    ann = await new_user(info)
    for key, value in list(body.items()):
        if value == "JOINID":
            body[key] = meeting["joinMeetingId"]
        elif value == "LINK":
            body[key] = meeting["joinWebUrl"]
    got, answer = await control.call("POST", CALLS, body, headers=ann.auth)
    assert got == status, answer
    assert answer["error"]["message"]
    assert await roster(control, meeting) == {"inCall": [await _organizer(control, meeting)], "lobby": []}


async def _organizer(control: Control, meeting: Json) -> Json:
    got = await control.ok("GET", f"{MEETINGS}/{meeting['id']}")
    return dict(got["organizer"])


async def test_join_needs_a_voip_token(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting()
    body = {"meetingLink": meeting["joinWebUrl"], "displayName": "Ann"}
    chat_only = await new_user(info, ("chat",))
    status, answer = await control.call("POST", CALLS, body, headers=chat_only.auth)
    assert status == 403, answer
    assert "voip" in answer["error"]["message"]
    status, answer = await control.call("POST", CALLS, body)
    assert status == 401, answer
    status, answer = await control.call("POST", CALLS, body, headers={"Authorization": "Bearer not-a-token"})
    assert status == 401, answer
    status, answer = await control.call("POST", CALLS, body, headers={"Authorization": "Basic abc"})
    assert status == 401, answer
    assert await roster(control, meeting) == {"inCall": [await _organizer(control, meeting)], "lobby": []}


async def test_manual_lobby_waits_for_admission(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting(lobby="manual")
    ann = await new_user(info)
    call = await join(control, ann, meeting, "Ann (SMS)")
    assert call["state"] == "lobby"
    assert "connectedOn" not in call
    assert (await roster(control, meeting))["lobby"] == [
        {"id": call["callId"], "identity": ann.id, "displayName": "Ann (SMS)", "kind": "acs"}
    ]
    admitted = await admit(control, meeting, call["callId"])
    assert admitted["state"] == "connected"
    assert (await get_call(control, ann, call["callId"]))["state"] == "connected"
    after = await roster(control, meeting)
    assert after["lobby"] == []
    assert any(p.get("identity") == ann.id for p in after["inCall"])
    status, answer = await control.call("POST", f"{MEETINGS}/{meeting['id']}/lobby/{call['callId']}/admit")
    assert status == 400, answer  # no longer waiting


async def test_admit_unknown_leg(control: Control) -> None:
    meeting = await control.meeting(lobby="manual")
    status, answer = await control.call("POST", f"{MEETINGS}/{meeting['id']}/lobby/nobody/admit")
    assert status == 400, answer


async def test_leg_of_another_meeting_cannot_be_admitted_here(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting(lobby="manual")
    other = await control.meeting("Other", lobby="manual")
    ann = await new_user(info)
    call = await join(control, ann, other, "Ann")
    status, answer = await control.call("POST", f"{MEETINGS}/{meeting['id']}/lobby/{call['callId']}/admit")
    assert status == 400, answer
    assert (await get_call(control, ann, call["callId"]))["state"] == "lobby"


async def test_not_started_meeting_holds_joiners_until_start(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting(start=False)
    ann, bob = await new_user(info), await new_user(info)
    ann_call = await join(control, ann, meeting, "Ann")
    bob_call = await join(control, bob, meeting, "Bob", by="id")
    assert ann_call["state"] == bob_call["state"] == "lobby"
    await control.ok("POST", f"{MEETINGS}/{meeting['id']}/start")
    assert (await get_call(control, ann, ann_call["callId"]))["state"] == "connected"
    assert (await get_call(control, bob, bob_call["callId"]))["state"] == "connected"


async def test_manual_lobby_before_start(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting(lobby="manual", start=False)
    ann = await new_user(info)
    call = await join(control, ann, meeting, "Ann")
    status, answer = await control.call("POST", f"{MEETINGS}/{meeting['id']}/lobby/{call['callId']}/admit")
    assert status == 409, answer
    await control.ok("POST", f"{MEETINGS}/{meeting['id']}/start")
    assert (await get_call(control, ann, call["callId"]))["state"] == "lobby"
    await admit(control, meeting, call["callId"])
    assert (await get_call(control, ann, call["callId"]))["state"] == "connected"


async def test_leave(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting()
    ann = await new_user(info)
    call = await join(control, ann, meeting, "Ann")
    await leave(control, ann, call["callId"])
    got = await get_call(control, ann, call["callId"])
    assert got["state"] == "left"
    await leave(control, ann, call["callId"])  # leaving twice is harmless
    assert (await get_call(control, ann, call["callId"]))["state"] == "left"
    assert all(p.get("identity") != ann.id for p in (await roster(control, meeting))["inCall"])


async def test_leave_from_the_lobby(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting(lobby="manual")
    ann = await new_user(info)
    call = await join(control, ann, meeting, "Ann")
    await leave(control, ann, call["callId"])
    assert (await get_call(control, ann, call["callId"]))["state"] == "left"
    assert (await roster(control, meeting))["lobby"] == []
    status, _ = await control.call("POST", f"{MEETINGS}/{meeting['id']}/lobby/{call['callId']}/admit")
    assert status == 400
    assert system_names(await organizer_view(control, meeting), "participantAdded") == []


async def test_calls_are_private_to_their_identity(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting()
    ann, eve = await new_user(info), await new_user(info)
    call = await join(control, ann, meeting, "Ann")
    for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/events")):
        status, answer = await control.call(method, f"{CALLS}/{call['callId']}{suffix}", headers=eve.auth)
        assert status == 404, (method, suffix, answer)
        status, answer = await control.call(method, f"{CALLS}/{call['callId']}{suffix}")
        assert status == 401, (method, suffix, answer)
    status, answer = await control.call("GET", f"{CALLS}/no-such-call", headers=ann.auth)
    assert status == 404, answer
    assert (await get_call(control, ann, call["callId"]))["state"] == "connected"


async def test_organizer_removes_a_leg(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting()
    ann = await new_user(info)
    call = await join(control, ann, meeting, "Ann (SMS)")
    await remove(control, meeting, call["callId"])
    got = await get_call(control, ann, call["callId"])
    assert got["state"] == "removed"
    assert got["reason"]
    view = await organizer_view(control, meeting)
    assert system_names(view, "participantRemoved") == ["Ann (SMS)"]
    assert view[-1]["content"]["initiatorCommunicationIdentifier"]["rawId"] == meeting["organizerId"]
    status, _ = await control.call("DELETE", f"{MEETINGS}/{meeting['id']}/participants/{call['callId']}")
    assert status == 404


async def test_organizer_rejects_from_the_lobby(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting(lobby="manual")
    ann = await new_user(info)
    call = await join(control, ann, meeting, "Ann")
    await remove(control, meeting, call["callId"])
    assert (await get_call(control, ann, call["callId"]))["state"] == "removed"
    assert (await roster(control, meeting))["lobby"] == []
    view = await organizer_view(control, meeting)
    assert system_names(view, "participantRemoved") == []  # never was in the chat


async def test_meeting_end_ends_every_leg(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting(lobby="manual")
    ann, bob = await new_user(info), await new_user(info)
    in_call = await join(control, ann, meeting, "Ann")
    await admit(control, meeting, in_call["callId"])
    waiting = await join(control, bob, meeting, "Bob")
    ended = await control.ok("POST", f"{MEETINGS}/{meeting['id']}/end")
    assert ended["roster"] == {"inCall": [], "lobby": []}
    assert (await get_call(control, ann, in_call["callId"]))["state"] == "ended"
    assert (await get_call(control, bob, waiting["callId"]))["state"] == "ended"
    assert system_names(await organizer_view(control, meeting), "participantRemoved") == ["Ann"]


async def test_joining_an_ended_meeting_is_409(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting()
    await control.ok("POST", f"{MEETINGS}/{meeting['id']}/end")
    ann = await new_user(info)
    for by in ("link", "short", "id"):
        answer = await join(control, ann, meeting, "Ann", by=by, expect=409)
        assert answer["error"]["message"]


async def test_teams_sees_the_display_name(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting()
    ann = await new_user(info)
    await join(control, ann, meeting, "Ann Lee (SMS) 🌷")
    in_call = {p["displayName"] for p in (await roster(control, meeting))["inCall"]}
    assert in_call == {"Megan", "Ann Lee (SMS) 🌷"}
    async with chat(info, ann, meeting["threadId"]) as client:
        names = await participant_names(client)
    assert names[ann.id] == "Ann Lee (SMS) 🌷"
    assert names[meeting["organizerId"]] == "Megan"
    assert system_names(await organizer_view(control, meeting), "participantAdded") == ["Ann Lee (SMS) 🌷"]


async def test_display_name_is_trimmed(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting()
    ann = await new_user(info)
    call = await join(control, ann, meeting, "  Ann  ")
    assert call["displayName"] == "Ann"


async def test_two_legs_of_one_identity(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting()
    ann = await new_user(info)
    first = await join(control, ann, meeting, "Ann")
    second = await join(control, ann, meeting, "Ann")
    assert first["callId"] != second["callId"]
    await leave(control, ann, first["callId"])
    view = await organizer_view(control, meeting)
    assert system_names(view, "participantAdded") == ["Ann"]
    assert system_names(view, "participantRemoved") == []  # still in the call through the other leg
    async with chat(info, ann, meeting["threadId"]) as client:
        await client.send_message("still here")
    await leave(control, ann, second["callId"])
    assert system_names(await organizer_view(control, meeting), "participantRemoved") == ["Ann"]


async def test_deleting_the_identity_leaves_the_call(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting()
    ann = await new_user(info)
    await join(control, ann, meeting, "Ann")
    client = CommunicationIdentityClient.from_connection_string(info.connection_string, connection_verify=info.ca_file)
    async with client:
        await client.delete_user(CommunicationUserIdentifier(ann.id))
    assert all(p.get("identity") != ann.id for p in (await roster(control, meeting))["inCall"])
    assert system_names(await organizer_view(control, meeting), "participantRemoved") == ["Ann"]


# server-sent events ------------------------------------------------------------------------------


async def test_events_follow_lobby_admission_and_removal(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting(lobby="manual")
    ann = await new_user(info)
    call = await join(control, ann, meeting, "Ann")
    async with call_events(control, ann, call["callId"]) as events:
        first = await events.next()
        assert first is not None
        assert first["state"] == "lobby"
        assert first["callId"] == call["callId"]
        await admit(control, meeting, call["callId"])
        connected = await events.next()
        assert connected is not None and connected["state"] == "connected"
        assert "connectedOn" in connected
        await remove(control, meeting, call["callId"])
        removed = await events.next()
        assert removed is not None and removed["state"] == "removed"
        assert removed["reason"]
        assert await events.next() is None  # the stream ends after a final state


async def test_events_on_start_and_end(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting(start=False)
    ann = await new_user(info)
    call = await join(control, ann, meeting, "Ann")
    async with call_events(control, ann, call["callId"]) as events:
        first = await events.next()
        assert first is not None and first["state"] == "lobby"
        await control.ok("POST", f"{MEETINGS}/{meeting['id']}/start")
        await control.ok("POST", f"{MEETINGS}/{meeting['id']}/end")
        assert await events.states() == ["connected", "ended"]


async def test_events_on_leave(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting()
    ann = await new_user(info)
    call = await join(control, ann, meeting, "Ann")
    async with call_events(control, ann, call["callId"]) as events:
        first = await events.next()
        assert first is not None and first["state"] == "connected"
        await leave(control, ann, call["callId"])
        assert await events.states() == ["left"]


async def test_events_of_a_finished_leg_give_the_final_state_and_end(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting()
    ann = await new_user(info)
    call = await join(control, ann, meeting, "Ann")
    await leave(control, ann, call["callId"])
    async with call_events(control, ann, call["callId"]) as events:
        assert await events.states() == ["left"]


async def test_several_watchers_see_the_same_changes(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting(lobby="manual")
    ann = await new_user(info)
    call = await join(control, ann, meeting, "Ann")
    async with call_events(control, ann, call["callId"]) as one, call_events(control, ann, call["callId"]) as two:
        for events in (one, two):
            first = await events.next()
            assert first is not None and first["state"] == "lobby"
        await admit(control, meeting, call["callId"])
        await leave(control, ann, call["callId"])
        assert await one.states() == ["connected", "left"]
        assert await two.states() == ["connected", "left"]
