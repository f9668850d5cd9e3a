"""What the console shows, read from the store: meetings, live sessions and one meeting's relayed conversation."""

from __future__ import annotations

from typing import Any

from ..models import Delivery, Direction, ExternalUser, Meeting, Session, SessionState
from ..sessions import ACTIVE
from ..store import Store
from .common import iso
from .views import chat_refused_view

CONVERSATION_LIMIT = 200
"""The newest deliveries a meeting page shows (oldest first)."""
SESSIONS_LIMIT = 500


def _text(d: Delivery) -> str:
    text = d.body.get("text")
    if d.kind == "delete":
        return "(deleted a message)"
    return text if isinstance(text, str) else ""


def _teams_sender(d: Delivery) -> str:
    sender = d.body.get("from")
    name = sender.get("displayName") if isinstance(sender, dict) else None
    return f"{name} (Teams)" if isinstance(name, str) and name else "Teams"


def conversation_item(d: Delivery, user_name: str, meeting_name: str) -> dict[str, Any]:
    """One delivery as a line of the conversation: who to whom, what, and how its delivery went."""
    if d.direction == Direction.INBOUND:
        sender, recipient = user_name, f"{meeting_name} (Teams)"
    elif d.kind == "notice":
        sender, recipient = "bridge", user_name
    else:
        sender, recipient = _teams_sender(d), user_name
    return {
        "id": d.id,
        "direction": d.direction.value,
        "kind": d.kind,
        "from": sender,
        "to": recipient,
        "userId": d.user_id,
        "text": _text(d),
        "state": d.state.value,
        "attempts": d.attempts,
        "reason": d.last_error,
        "report": d.report,
        "at": iso(d.created_at),
    }


def _meeting(m: Meeting, live: int) -> dict[str, Any]:
    return {"id": m.id, "code": m.code, "name": m.name, "paused": m.paused, "liveSessions": live, "link": m.link}


def _session(s: Session, user: ExternalUser | None, meeting: Meeting | None) -> dict[str, Any]:
    return {
        "id": s.id,
        "userId": s.user_id,
        "displayName": user.display_name if user is not None else s.user_id,
        "blocked": user.blocked if user is not None else False,
        "meetingId": s.meeting_id,
        "meetingName": meeting.name if meeting is not None else s.meeting_id,
        "meetingCode": meeting.code if meeting is not None else "",
        "state": s.state.value,
        "reason": s.reason,
        "condition": s.condition,
        "since": iso(s.joined_at),
        "lastActivity": iso(s.last_activity),
    }


class _Users:
    """Users looked up once per snapshot."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._known: dict[str, ExternalUser | None] = {}

    async def get(self, user_id: str) -> ExternalUser | None:
        if user_id not in self._known:
            self._known[user_id] = await self._store.get_user(user_id)
        return self._known[user_id]

    async def name(self, user_id: str) -> str:
        user = await self.get(user_id)
        return user.display_name if user is not None and user.display_name else user_id


async def snapshot(store: Store, meeting_id: str | None = None) -> dict[str, Any]:
    """Meetings and live sessions; with a meeting id also that meeting and its conversation (None if it is gone)."""
    meetings = await store.list_meetings()
    by_id = {m.id: m for m in meetings}
    live = (await store.sessions(states=ACTIVE))[:SESSIONS_LIMIT]
    counts: dict[str, int] = {}
    for s in live:
        counts[s.meeting_id] = counts.get(s.meeting_id, 0) + 1
    users = _Users(store)
    body: dict[str, Any] = {
        "meetings": [_meeting(m, counts.get(m.id, 0)) for m in meetings],
        "sessions": [_session(s, await users.get(s.user_id), by_id.get(s.meeting_id)) for s in live],
        "chatRefused": chat_refused_view(meetings, [s for s in live if s.state == SessionState.IN_CALL]),
    }
    if meeting_id is not None:
        meeting = by_id.get(meeting_id)
        body["meeting"] = _meeting(meeting, counts.get(meeting.id, 0)) if meeting is not None else None
        rows = await store.deliveries(meeting_id=meeting_id, newest_first=True, limit=CONVERSATION_LIMIT)
        name = meeting.name if meeting is not None else meeting_id
        body["conversation"] = [conversation_item(d, await users.name(d.user_id), name) for d in reversed(rows)]
    return body
