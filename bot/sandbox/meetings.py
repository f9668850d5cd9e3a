"""Teams meetings as the sandbox models them: organizer, links, lobby policy, the call and its legs."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Literal, Protocol
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .util import JsonDict, iso

CallState = Literal["notStarted", "live", "ended"]
LegState = Literal["lobby", "connected", "removed", "ended", "left", "failed"]
LobbyPolicy = Literal["auto", "manual"]
FINAL_LEG_STATES: frozenset[str] = frozenset({"removed", "ended", "left", "failed"})

# Call-end reasons (code, subCode) as the Calling SDK reports them in call.callEndReason.
OWN_HANG_UP = (0, 0)
ENDED_FOR_ALL = (0, 4097)
REMOVED = (0, 5000)
REMOVED_FROM_MEETING = (0, 5300)
VANISHED = (0, 4521)
TOKEN_INVALID = (495, 4507)
INTEROP_NOT_ENABLED = (403, 5221)
INTEROP_NOT_ENABLED_RESOURCE = (403, 5222)
DEFAULT_GRACE_S = 60.0
"""Real Teams drops a client that vanished (no hang-up, connection gone) after about a minute."""


def state_for_end(code: int, sub_code: int) -> LegState:
    """The final leg state an end reason amounts to: the reasons the service names, failed for any other."""
    if (code, sub_code) == OWN_HANG_UP:
        return "left"
    if (code, sub_code) == ENDED_FOR_ALL:
        return "ended"
    if (code, sub_code) in (REMOVED, REMOVED_FROM_MEETING):
        return "removed"
    return "failed"


@dataclass
class CallSettings:
    """Switches over the call side of the world; a reset puts them back."""

    grace_s: float = DEFAULT_GRACE_S
    """How long a leg whose page connection vanished stays in the call before it is dropped."""
    interop_refusal: int | None = None
    """A subCode (5221 tenant, 5222 resource) to refuse every join with 403, as when interop is not enabled."""


class LegWatcher(Protocol):
    """Told of every change of a leg: a stream's queue, or the page connection that holds the leg."""

    def put_nowait(self, item: JsonDict, /) -> None: ...


@dataclass
class TeamsUser:
    id: str
    """Raw id, 8:orgid:<Entra object id>."""
    display_name: str
    in_call: bool = False

    @property
    def object_id(self) -> str:
        return self.id.split(":", 2)[2]

    def to_json(self) -> JsonDict:
        return {"id": self.id, "displayName": self.display_name, "inCall": self.in_call, "kind": "teams"}


@dataclass
class CallLeg:
    id: str
    meeting_id: str
    identity: str
    display_name: str
    state: LegState
    created_on: float
    connected_on: float | None = None
    ended_on: float | None = None
    reason: str | None = None
    end_reason: tuple[int, int] | None = None
    """(code, subCode) once the leg is final."""
    muted: bool | None = None
    incoming_audio_muted: bool | None = None
    """Known for legs of the stand-in Calling SDK only (the page says); None for legs joined over HTTP."""
    watchers: set[LegWatcher] = field(default_factory=set)
    hub: set[asyncio.Queue[JsonDict]] = field(default_factory=set, repr=False, compare=False)
    """The resource-wide call event streams (shared by every leg of the world), told of this leg's changes too."""

    def snapshot(self) -> JsonDict:
        body: JsonDict = {
            "callId": self.id,
            "state": self.state,
            "meetingId": self.meeting_id,
            "identity": self.identity,
            "displayName": self.display_name,
            "createdOn": iso(self.created_on),
        }
        if self.connected_on is not None:
            body["connectedOn"] = iso(self.connected_on)
        if self.reason:
            body["reason"] = self.reason
        if self.end_reason is not None:
            body["callEndReason"] = {"code": self.end_reason[0], "subCode": self.end_reason[1]}
        return body

    def set_state(
        self, state: LegState, when: float, reason: str | None = None, end_reason: tuple[int, int] | None = None
    ) -> None:
        self.state = state
        if state == "connected":
            self.connected_on = when
        elif state in FINAL_LEG_STATES:
            self.ended_on = when
            self.end_reason = end_reason
        self.reason = reason
        self.publish()

    def publish(self) -> None:
        event = self.snapshot()
        for queue in (*self.watchers, *self.hub):
            queue.put_nowait(event)


def _lower_escapes(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def _thread_id(meeting_key: str) -> str:
    return f"19:meeting_{meeting_key}@thread.v2"


@dataclass
class Meeting:
    id: str
    """The Graph onlineMeeting id."""
    key: str
    subject: str
    organizer: TeamsUser
    tenant_id: str
    start: float
    end: float
    join_meeting_id: str
    passcode: str
    lobby: LobbyPolicy
    created_on: float
    call_state: CallState = "notStarted"
    guest_chat: bool = True
    """False: the tenant refuses meeting chat to ACS guests (MeetingChatEnabledType = EnabledExceptAnonymous) while
    the call works; every chat call of theirs answers 403."""
    teams_users: dict[str, TeamsUser] = field(default_factory=dict)
    legs: dict[str, CallLeg] = field(default_factory=dict)

    @property
    def thread_id(self) -> str:
        return _thread_id(self.key)

    @property
    def join_web_url(self) -> str:
        context = json.dumps({"Tid": self.tenant_id, "Oid": self.organizer.object_id}, separators=(",", ":"))
        # Teams writes its percent escapes in lower case.
        return (
            "https://teams.microsoft.com/l/meetup-join/"
            + _lower_escapes(quote(self.thread_id, safe=""))
            + "/0?context="
            + _lower_escapes(quote(context, safe=""))
        )

    @property
    def short_url(self) -> str:
        return f"https://teams.microsoft.com/meet/{self.join_meeting_id}?p={self.passcode}"

    def active_legs(self, identity: str | None = None) -> list[CallLeg]:
        return [
            leg
            for leg in self.legs.values()
            if leg.state not in FINAL_LEG_STATES and (identity is None or leg.identity == identity)
        ]

    def connected_leg(self, identity: str) -> CallLeg | None:
        for leg in self.legs.values():
            if leg.identity == identity and leg.state == "connected":
                return leg
        return None

    def acs_in_call(self) -> int:
        return len({leg.identity for leg in self.legs.values() if leg.state == "connected"})

    def online_meeting_json(self) -> JsonDict:
        """The Graph onlineMeeting resource."""
        return {
            "@odata.type": "#microsoft.graph.onlineMeeting",
            "id": self.id,
            "subject": self.subject,
            "creationDateTime": iso(self.created_on),
            "startDateTime": iso(self.start),
            "endDateTime": iso(self.end),
            "joinWebUrl": self.join_web_url,
            "joinMeetingIdSettings": {
                "isPasscodeRequired": True,
                "joinMeetingId": self.join_meeting_id,
                "passcode": self.passcode,
            },
            "chatInfo": {"threadId": self.thread_id, "messageId": "0", "replyChainMessageId": None},
            "allowMeetingChat": "enabled",
            "lobbyBypassSettings": {
                "scope": "everyone" if self.lobby == "auto" else "organizer",
                "isDialInBypassEnabled": False,
            },
            "participants": {
                "organizer": {
                    "upn": None,
                    "role": "presenter",
                    "identity": {
                        "user": {
                            "id": self.organizer.object_id,
                            "displayName": self.organizer.display_name,
                            "tenantId": self.tenant_id,
                        }
                    },
                },
                "attendees": [],
            },
        }

    def to_json(self) -> JsonDict:
        """The sandbox's control view: links, call state and the roster."""
        in_call = [u.to_json() for u in self.teams_users.values() if u.in_call]
        lobby: list[JsonDict] = []
        for leg in self.legs.values():
            entry: JsonDict = {"id": leg.id, "identity": leg.identity, "displayName": leg.display_name, "kind": "acs"}
            if leg.muted is not None:
                entry |= {"muted": leg.muted, "incomingAudioMuted": leg.incoming_audio_muted}
            if leg.state == "connected":
                in_call.append(entry | {"inCall": True})
            elif leg.state == "lobby":
                lobby.append(entry)
        return {
            "id": self.id,
            "subject": self.subject,
            "threadId": self.thread_id,
            "joinWebUrl": self.join_web_url,
            "shortUrl": self.short_url,
            "joinMeetingId": self.join_meeting_id,
            "passcode": self.passcode,
            "organizerId": self.organizer.id,
            "organizer": self.organizer.to_json(),
            "tenantId": self.tenant_id,
            "lobby": self.lobby,
            "startDateTime": iso(self.start),
            "endDateTime": iso(self.end),
            "callState": self.call_state,
            "guestChat": self.guest_chat,
            "roster": {"inCall": in_call, "lobby": lobby},
        }


def parse_join_link(link: str) -> tuple[str | None, str | None, str | None]:
    """(thread id, join meeting id, passcode) named by a long or short Teams join link, whatever its escaping."""
    parts = urlsplit(link.strip())
    if parts.path.startswith("/l/meetup-join/"):
        return unquote(parts.path.removeprefix("/l/meetup-join/").split("/", 1)[0]), None, None
    if parts.path.startswith("/meet/"):
        passcode = parse_qs(parts.query).get("p", [None])[0]
        return None, parts.path.removeprefix("/meet/").strip("/"), passcode
    return None, None, None


def new_meeting_key() -> str:
    """The id inside 19:meeting_<id>@thread.v2: Teams uses the base64 of a GUID's text."""
    while True:
        key = base64.b64encode(str(uuid.uuid4()).encode("ascii")).decode("ascii")
        if key.isalnum():
            return key
