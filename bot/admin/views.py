"""How the admin API shows the bridge's objects: camel-case JSON views of meetings, sessions, users, deliveries."""

from __future__ import annotations

from typing import Any

from ..models import Delivery, ExternalUser, Meeting, Session, SessionCondition
from .common import iso


def meeting_view(m: Meeting, *, source: str, active_sessions: int) -> dict[str, Any]:
    # The passcode and the reader's cursor stay inside: the link already carries what a person needs to join.
    return {
        "id": m.id,
        "code": m.code,
        "name": m.name,
        "link": m.link,
        "threadId": m.thread_id,
        "organizerId": m.organizer_id,
        "identityMode": m.identity_mode.value,
        "displayNameTemplate": m.display_name_template,
        "allow": list(m.allow),
        "paused": m.paused,
        "smsSegmentCap": m.sms_segment_cap,
        "source": source,
        "activeSessions": active_sessions,
    }


def session_view(s: Session) -> dict[str, Any]:
    return {
        "id": s.id,
        "userId": s.user_id,
        "meetingId": s.meeting_id,
        "state": s.state.value,
        "reason": s.reason,
        "callId": s.call_id,
        "condition": s.condition,
        "conditionReason": s.condition_reason,
        "joinedAt": iso(s.joined_at),
        "lastActivity": iso(s.last_activity),
    }


def chat_refused_view(meetings: list[Meeting], sessions: list[Session]) -> list[dict[str, Any]]:
    """Meetings whose chat refuses their sessions in the call, with how many and the service's words."""
    out: list[dict[str, Any]] = []
    for m in meetings:
        refused = [s for s in sessions if s.meeting_id == m.id and s.condition == SessionCondition.CHAT_REFUSED]
        if refused:
            reason = refused[0].condition_reason
            out.append({"meetingId": m.id, "code": m.code, "name": m.name, "sessions": len(refused), "reason": reason})
    return out


def user_view(u: ExternalUser, sessions: list[Session]) -> dict[str, Any]:
    return {
        "id": u.id,
        "channel": u.channel,
        "displayName": u.display_name,
        "identityId": u.identity_id,
        "blocked": u.blocked,
        "optedOut": u.opted_out,
        "sessions": [session_view(s) for s in sessions],
    }


def delivery_view(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "seq": d.seq,
        "direction": d.direction.value,
        "meetingId": d.meeting_id,
        "userId": d.user_id,
        "sessionId": d.session_id,
        "kind": d.kind,
        "state": d.state.value,
        "attempts": d.attempts,
        "lastError": d.last_error,
        "report": d.report,
        "remoteId": d.remote_id,
        "createdAt": iso(d.created_at),
        "firstAttemptAt": iso(d.first_attempt_at),
        "nextAttemptAt": iso(d.next_attempt_at),
        "body": d.body,
    }
