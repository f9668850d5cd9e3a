"""Plain data types shared across the bridge: meetings, sessions, chat messages as the bridge sees them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class SessionState(StrEnum):
    REQUESTED = "requested"
    JOINING = "joining"
    LOBBY = "lobby"
    IN_CALL = "in_call"
    LEFT = "left"
    ENDED = "ended"
    FAILED = "failed"


class SessionCondition(StrEnum):
    """What may hold a session that is in the call."""

    CHAT_REFUSED = "chat_refused"
    """The meeting's chat answers 403 though the call leg is connected."""


class IdentityMode(StrEnum):
    """Who speaks for an external user in a meeting: their own ACS identity and call leg (per_user), or one identity
    and leg per meeting for everyone, each message prefixed with its sender's name (shared)."""

    PER_USER = "per_user"
    SHARED = "shared"
    RELAY = "shared"
    """The old name of SHARED, kept while code written before the rename is merged."""

    @classmethod
    def _missing_(cls, value: object) -> IdentityMode | None:
        # "relay" named the shared mode until the word also meant the relay package and its runtime object: it is
        # still read from configuration files, the admin API and meetings stored before the rename.
        return cls.SHARED if value == DEPRECATED_SHARED else None


DEPRECATED_SHARED = "relay"


class CallState(StrEnum):
    """What a CallConnector reports about one call leg."""

    LOBBY = "lobby"
    CONNECTED = "connected"
    REMOVED = "removed"
    ENDED = "ended"
    LEFT = "left"
    FAILED = "failed"
    """Final for the session too: retrying cannot help (an unknown end code, Teams interop refused, ...)."""
    DROPPED = "dropped"
    """The leg was lost without anyone meaning it (network, media, the browser holding it): joined again."""

    @property
    def final(self) -> bool:
        return self not in (CallState.LOBBY, CallState.CONNECTED)


@dataclass(frozen=True)
class MeetingInfo:
    """What the bridge knows of a Teams meeting once its link or id is resolved."""

    thread_id: str
    join_web_url: str | None = None
    join_meeting_id: str | None = None
    passcode: str | None = None
    subject: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    organizer_id: str | None = None
    tenant_id: str | None = None


@dataclass(frozen=True)
class CallEvent:
    call_id: str
    state: CallState
    reason: str | None = None


@dataclass(frozen=True)
class CallHandle:
    call_id: str
    state: CallState
    thread_id: str | None = None


class ReportVerdict(StrEnum):
    """What became of one report from an app that holds its call leg itself (the client-reported connector)."""

    TAKEN = "reported"
    """The leg is now in the reported state; the session follows."""
    SAME = "unchanged"
    """The leg was in that state already."""
    IGNORED = "ignored"
    """Too late to count: the leg's call had ended, had moved past that state, or the app has replaced that call."""


@dataclass(frozen=True)
class Reported:
    verdict: ReportVerdict
    state: CallState | None
    """The leg's state after the report; None while nothing has been reported since the bridge started."""


@dataclass(frozen=True)
class ChatMessageView:
    """One chat message as read from a thread, independent of the SDK's types."""

    id: str
    type: str
    """text, html, participantAdded, participantRemoved, topicUpdated."""
    sequence_id: int
    created_on: datetime
    content: str = ""
    sender_id: str | None = None
    """Raw id of the sender: 8:acs:..., 8:orgid:...; None for system messages."""
    sender_display_name: str | None = None
    edited_on: datetime | None = None
    deleted_on: datetime | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    version: str = ""
    """Changes on every edit and delete; with the id it names one state of a message."""


class Direction(StrEnum):
    INBOUND = "in"
    """External user → meeting thread."""
    OUTBOUND = "out"
    """Meeting thread (or the bridge itself) → external user."""


class DeliveryState(StrEnum):
    HELD = "held"
    """Waiting for the sender's session to reach the call."""
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass
class Meeting:
    """A Teams meeting operators bridged."""

    id: str
    code: str
    name: str
    link: str | None
    thread_id: str | None
    join_meeting_id: str | None
    passcode: str | None
    organizer_id: str | None
    identity_mode: IdentityMode
    display_name_template: str
    allow: list[str]
    paused: bool = False
    sms_segment_cap: int | None = None
    relay_identity: str | None = None
    cursor: str | None = None
    """ISO time the outbound reader has read up to (with an overlap; repeats are dropped by id and version)."""


@dataclass
class ExternalUser:
    """An address on a channel: sms:+15551234567, webhook:<client>/<user>."""

    id: str
    channel: str
    display_name: str
    identity_id: str | None = None
    blocked: bool = False
    opted_out: bool = False


@dataclass
class Session:
    """One external user in one meeting; only in_call relays."""

    id: int
    user_id: str
    meeting_id: str
    state: SessionState
    call_id: str | None = None
    reason: str | None = None
    joined_at: datetime | None = None
    last_activity: datetime | None = None
    identity_id: str | None = None
    condition: str | None = None
    """While in the call: chat_refused when the meeting's chat refuses the identity though its leg is connected."""
    condition_reason: str | None = None
    """The service's words for the condition."""


@dataclass
class Delivery:
    """One outbox row: a message, edit, delete or notice on its way, with its attempts and final state."""

    id: str
    seq: int
    direction: Direction
    meeting_id: str
    user_id: str
    kind: str
    body: dict[str, object]
    state: DeliveryState
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    remote_id: str | None = None
    session_id: int | None = None
    created_at: datetime | None = None
    first_attempt_at: datetime | None = None
    report: str | None = None
    """The carrier's final word on a text: delivered, or failed with a reason."""
