"""The sandbox's control API for Teams meetings: creation, links, roster, start and end, Teams users posting HTML."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from bot.sandbox import SandboxInfo
from tests.support.meetings import Json, join, leave, new_user, organizer_view, system_names
from tests.support.sandbox import Control

MEETINGS = "/sandbox/v1/meetings"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


async def teams_user(control: Control, meeting: Json, name: str) -> Json:
    return dict(await control.ok("POST", f"{MEETINGS}/{meeting['id']}/teams-users", {"displayName": name}))


async def teams_post(control: Control, meeting: Json, sender: str, html: str) -> Json:
    status, body = await control.call("POST", f"{MEETINGS}/{meeting['id']}/messages", {"from": sender, "html": html})
    assert status == 201, (status, body)
    return dict(body)


async def test_create_meeting(control: Control, info: SandboxInfo) -> None:
    status, meeting = await control.call(
        "POST",
        MEETINGS,
        {
            "subject": "Budget review",
            "organizer": {"displayName": "Megan Bowen"},
            "lobby": "manual",
            "startDateTime": "2030-01-02T10:00:00Z",
            "endDateTime": "2030-01-02T11:30:00Z",
        },
    )
    assert status == 201, meeting
    assert meeting["subject"] == "Budget review"
    assert meeting["lobby"] == "manual"
    assert meeting["callState"] == "notStarted"
    assert meeting["startDateTime"].startswith("2030-01-02T10:00:00")
    assert meeting["endDateTime"].startswith("2030-01-02T11:30:00")
    assert meeting["id"]
    assert re.fullmatch(r"19:meeting_[A-Za-z0-9]+@thread\.v2", meeting["threadId"])
    assert re.fullmatch(rf"8:orgid:{UUID}", meeting["organizerId"])
    assert meeting["organizer"]["displayName"] == "Megan Bowen"
    assert meeting["organizer"]["id"] == meeting["organizerId"]
    assert meeting["tenantId"] == info.tenant_id
    assert meeting["roster"] == {"inCall": [], "lobby": []}


async def test_join_web_url_is_teams_long_format(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting(start=False)
    url = meeting["joinWebUrl"]
    assert url.startswith("https://teams.microsoft.com/l/meetup-join/19%3ameeting_")
    assert "%40thread.v2/0?context=%7b%22Tid%22%3a%22" in url  # Teams writes lower-case escapes
    parts = urlsplit(url)
    segment = parts.path.split("/meetup-join/", 1)[1].split("/", 1)[0]
    assert unquote(segment) == meeting["threadId"]
    context = json.loads(parse_qs(parts.query)["context"][0])
    assert context == {"Tid": info.tenant_id, "Oid": meeting["organizerId"].removeprefix("8:orgid:")}


async def test_short_url_carries_join_id_and_passcode(control: Control) -> None:
    meeting = await control.meeting(start=False)
    assert re.fullmatch(r"[1-9][0-9]{11}", meeting["joinMeetingId"])
    assert re.fullmatch(r"[A-Za-z0-9]{6}", meeting["passcode"])
    assert meeting["shortUrl"] == f"https://teams.microsoft.com/meet/{meeting['joinMeetingId']}?p={meeting['passcode']}"


async def test_meetings_are_distinct_and_listed(control: Control) -> None:
    first = await control.meeting("One", start=False)
    second = await control.meeting("Two", start=False)
    assert len({first["threadId"], second["threadId"]}) == 2
    assert len({first["joinMeetingId"], second["joinMeetingId"]}) == 2
    listed = await control.ok("GET", MEETINGS)
    assert {m["id"] for m in listed["value"]} == {first["id"], second["id"]}


async def test_lobby_defaults_to_auto_and_times_to_now(control: Control) -> None:
    meeting = await control.ok("POST", MEETINGS, {"subject": "Stand-up", "organizer": {"displayName": "Megan"}})
    assert meeting["lobby"] == "auto"
    assert meeting["startDateTime"] < meeting["endDateTime"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"organizer": {"displayName": "Megan"}}, "subject"),
        ({"subject": "  ", "organizer": {"displayName": "Megan"}}, "subject"),
        ({"subject": 7, "organizer": {"displayName": "Megan"}}, "subject"),
        ({"subject": "x" * 300, "organizer": {"displayName": "Megan"}}, "subject"),
        ({"subject": "Sync"}, "organizer"),
        ({"subject": "Sync", "organizer": "Megan"}, "organizer"),
        ({"subject": "Sync", "organizer": {}}, "organizer.displayName"),
        ({"subject": "Sync", "organizer": {"displayName": "Megan"}, "lobby": "sometimes"}, "lobby"),
        ({"subject": "Sync", "organizer": {"displayName": "Megan"}, "startDateTime": "soon"}, "startDateTime"),
        ({"subject": "Sync", "organizer": {"displayName": "Megan"}, "startDateTime": 5}, "startDateTime"),
        (
            {
                "subject": "Sync",
                "organizer": {"displayName": "Megan"},
                "startDateTime": "2030-01-02T10:00:00Z",
                "endDateTime": "2030-01-02T09:00:00Z",
            },
            "endDateTime",
        ),
        (
            {
                "subject": "Sync",
                "organizer": {"displayName": "Megan"},
                "startDateTime": "2030-01-02T10:00:00Z",
                "endDateTime": "2030-01-02T10:00:00Z",
            },
            "endDateTime",
        ),
        (["not", "an", "object"], "object"),
    ],
)
async def test_bad_create_requests(control: Control, body: Any, reason: str) -> None:
    status, answer = await control.call("POST", MEETINGS, body)
    assert status == 400, answer
    assert reason in answer["error"]["message"]
    assert (await control.ok("GET", MEETINGS))["value"] == []


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe"])
async def test_create_rejects_non_json(control: Control, raw: bytes) -> None:
    status, answer = await control.call("POST", MEETINGS, data=raw, headers={"Content-Type": "application/json"})
    assert status == 400, answer
    assert answer["error"]["code"] == "BadRequest"
    assert answer["error"]["message"]


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("POST", "/start", None),
        ("POST", "/end", None),
        ("POST", "/teams-users", {"displayName": "Adele"}),
        ("GET", "/messages", None),
        ("POST", "/messages", {"from": "8:orgid:x", "html": "<p>hi</p>"}),
        ("PATCH", "/messages/1", {"from": "8:orgid:x", "html": "<p>hi</p>"}),
        ("DELETE", "/messages/1?from=8:orgid:x", None),
        ("POST", "/lobby/abc/admit", None),
        ("DELETE", "/participants/abc", None),
    ],
)
async def test_unknown_meeting_is_404(control: Control, method: str, suffix: str, body: Json | None) -> None:
    status, answer = await control.call(method, f"{MEETINGS}/MSpnosuchmeeting{suffix}", body)
    assert status == 404, answer
    assert answer["error"]["code"] == "NotFound"


async def test_start_and_end(control: Control) -> None:
    meeting = await control.meeting(start=False)
    assert meeting["callState"] == "notStarted"
    started = await control.ok("POST", f"{MEETINGS}/{meeting['id']}/start")
    assert started["callState"] == "live"
    assert [p["id"] for p in started["roster"]["inCall"]] == [meeting["organizerId"]]
    again = await control.ok("POST", f"{MEETINGS}/{meeting['id']}/start")
    assert again["callState"] == "live"
    ended = await control.ok("POST", f"{MEETINGS}/{meeting['id']}/end")
    assert ended["callState"] == "ended"
    assert ended["roster"] == {"inCall": [], "lobby": []}
    got = await control.ok("GET", f"{MEETINGS}/{meeting['id']}")
    assert got["callState"] == "ended"


async def test_teams_user_joins(control: Control) -> None:
    meeting = await control.meeting()
    status, user = await control.call("POST", f"{MEETINGS}/{meeting['id']}/teams-users", {"displayName": "Adele"})
    assert status == 201, user
    assert re.fullmatch(rf"8:orgid:{UUID}", user["id"])
    assert user["displayName"] == "Adele"
    assert user["inCall"] is True
    roster = (await control.ok("GET", f"{MEETINGS}/{meeting['id']}"))["roster"]
    assert {p["displayName"] for p in roster["inCall"]} == {"Megan", "Adele"}
    view = await organizer_view(control, meeting)
    assert system_names(view, "participantAdded") == ["Adele"]
    added = next(m for m in view if m["type"] == "participantAdded")
    assert added["content"]["participants"][0]["communicationIdentifier"]["rawId"] == user["id"]


async def test_teams_user_needs_a_name(control: Control) -> None:
    meeting = await control.meeting()
    status, answer = await control.call("POST", f"{MEETINGS}/{meeting['id']}/teams-users", {})
    assert status == 400, answer
    assert "displayName" in answer["error"]["message"]


HTML_SAMPLES = [
    '<p>Hi <at id="0">Ann (SMS)</at>, welcome!</p>',
    '<p>Agenda: <a href="https://contoso.example/agenda?x=1&amp;y=2">link</a></p>',
    "<ul><li>one</li><li>two</li></ul><ol><li>first</li></ol>",
    "<p>Done 🎉 <strong>bold</strong> <em>it</em> &lt;tag&gt; café</p>",
]


async def test_teams_users_post_html(control: Control) -> None:
    meeting = await control.meeting()
    adele = await teams_user(control, meeting, "Adele")
    posted = [await teams_post(control, meeting, adele["id"], html) for html in HTML_SAMPLES]
    organizer_post = await teams_post(control, meeting, meeting["organizerId"], "<p>From the organizer</p>")
    for message in posted:
        assert message["type"] == "html"
        assert message["senderDisplayName"] == "Adele"
        sender = message["senderCommunicationIdentifier"]
        assert sender["rawId"] == adele["id"]
        assert sender["microsoftTeamsUser"]["userId"] == adele["id"].removeprefix("8:orgid:")
    assert organizer_post["senderDisplayName"] == "Megan"
    view = await organizer_view(control, meeting)
    html = [m["content"]["message"] for m in view if m["type"] == "html"]
    assert html == [*HTML_SAMPLES, "<p>From the organizer</p>"]
    sequence = [int(m["sequenceId"]) for m in view]
    assert sequence == sorted(sequence) and len(set(sequence)) == len(sequence)


async def test_teams_post_needs_a_teams_user_of_the_meeting(control: Control) -> None:
    meeting = await control.meeting()
    other = await control.meeting("Other")
    stranger = await teams_user(control, other, "Stranger")
    for sender in (stranger["id"], "8:orgid:00000000-0000-0000-0000-000000000000", None):
        status, answer = await control.call(
            "POST", f"{MEETINGS}/{meeting['id']}/messages", {"from": sender, "html": "<p>hi</p>"}
        )
        assert status == 400, (sender, answer)
    assert [m for m in await organizer_view(control, meeting) if m["type"] == "html"] == []


@pytest.mark.parametrize("body", [{}, {"html": ""}, {"html": "   "}, {"html": 5}])
async def test_teams_messages_need_html(control: Control, body: Json) -> None:
    meeting = await control.meeting()
    sender = {"from": meeting["organizerId"]}
    status, answer = await control.call("POST", f"{MEETINGS}/{meeting['id']}/messages", sender | body)
    assert status == 400, answer
    assert "html" in answer["error"]["message"]
    message = await teams_post(control, meeting, meeting["organizerId"], "<p>original</p>")
    status, answer = await control.call("PATCH", f"{MEETINGS}/{meeting['id']}/messages/{message['id']}", sender | body)
    assert status == 400, answer
    view = await organizer_view(control, meeting)
    assert [m["content"]["message"] for m in view] == ["<p>original</p>"]
    assert "editedOn" not in view[0]


async def test_teams_user_edits_and_deletes(control: Control) -> None:
    meeting = await control.meeting()
    adele = await teams_user(control, meeting, "Adele")
    message = await teams_post(control, meeting, adele["id"], "<p>tpyo</p>")
    path = f"{MEETINGS}/{meeting['id']}/messages/{message['id']}"
    edited = await control.ok("PATCH", path, {"from": adele["id"], "html": "<p>typo</p>"})
    assert edited["content"]["message"] == "<p>typo</p>"
    assert "editedOn" in edited
    assert int(edited["version"]) > int(message["version"])

    status, answer = await control.call("PATCH", path, {"from": meeting["organizerId"], "html": "<p>mine</p>"})
    assert status == 403, answer
    status, answer = await control.call("DELETE", path, params={"from": meeting["organizerId"]})
    assert status == 403, answer

    status, _ = await control.call("DELETE", path, params={"from": adele["id"]})
    assert status == 204
    view = {m["id"]: m for m in await organizer_view(control, meeting)}
    assert "deletedOn" in view[message["id"]]
    assert view[message["id"]]["content"] == {}
    status, _ = await control.call("DELETE", path, params={"from": adele["id"]})
    assert status == 204  # deleting twice succeeds

    status, answer = await control.call(
        "PATCH", f"{MEETINGS}/{meeting['id']}/messages/999", {"from": adele["id"], "html": "<p>x</p>"}
    )
    assert status == 404, answer


async def test_organizer_view_shows_acs_joins_and_leaves(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting()
    ann = await new_user(info)
    call = await join(control, ann, meeting, "Ann (SMS)")
    adele = await teams_user(control, meeting, "Adele")
    await teams_post(control, meeting, adele["id"], "<p>hello Ann</p>")
    await leave(control, ann, call["callId"])
    view = await organizer_view(control, meeting)
    kinds = [m["type"] for m in view]
    assert kinds == ["participantAdded", "participantAdded", "html", "participantRemoved"]
    assert system_names(view, "participantAdded") == ["Ann (SMS)", "Adele"]
    assert system_names(view, "participantRemoved") == ["Ann (SMS)"]
    added = view[0]["content"]
    assert added["participants"][0]["communicationIdentifier"]["rawId"] == ann.id
    assert added["initiatorCommunicationIdentifier"]["rawId"] == ann.id
    assert all("senderCommunicationIdentifier" not in m for m in view if m["type"] != "html")


async def test_roster_lists_lobby_and_call(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting(lobby="manual")
    ann, bob = await new_user(info), await new_user(info)
    ann_call = await join(control, ann, meeting, "Ann (SMS)")
    bob_call = await join(control, bob, meeting, "Bob (web)")
    await control.ok("POST", f"{MEETINGS}/{meeting['id']}/lobby/{bob_call['callId']}/admit")
    roster = (await control.ok("GET", f"{MEETINGS}/{meeting['id']}"))["roster"]
    assert roster["lobby"] == [
        {"id": ann_call["callId"], "identity": ann.id, "displayName": "Ann (SMS)", "kind": "acs"}
    ]
    in_call = {p["displayName"]: p for p in roster["inCall"]}
    assert set(in_call) == {"Megan", "Bob (web)"}
    assert in_call["Bob (web)"]["id"] == bob_call["callId"]
    assert in_call["Bob (web)"]["identity"] == bob.id
    assert in_call["Megan"]["kind"] == "teams"


async def test_organizer_removes_teams_user(control: Control) -> None:
    meeting = await control.meeting()
    adele = await teams_user(control, meeting, "Adele")
    status, _ = await control.call("DELETE", f"{MEETINGS}/{meeting['id']}/participants/{adele['id']}")
    assert status == 204
    roster = (await control.ok("GET", f"{MEETINGS}/{meeting['id']}"))["roster"]
    assert [p["displayName"] for p in roster["inCall"]] == ["Megan"]
    view = await organizer_view(control, meeting)
    assert system_names(view, "participantRemoved") == ["Adele"]
    removed = view[-1]["content"]
    assert removed["initiatorCommunicationIdentifier"]["rawId"] == meeting["organizerId"]
    status, answer = await control.call("DELETE", f"{MEETINGS}/{meeting['id']}/participants/{adele['id']}")
    assert status == 404, answer
    status, answer = await control.call("DELETE", f"{MEETINGS}/{meeting['id']}/participants/{meeting['organizerId']}")
    assert status == 404, answer
