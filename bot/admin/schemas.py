"""The admin API's JSON shapes, as OpenAPI 3.1 component schemas (JSON Schema 2020-12)."""

from __future__ import annotations

from typing import Any

from ..models import DeliveryState, Direction, IdentityMode, SessionCondition, SessionState

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: Any) -> Schema:
    return {"type": [kind, "null"], **extra}


_PLACEHOLDER_UNIT = r"\{\{|\}\}|\{(?:name|channel)\}"
_TEMPLATE = {
    "type": "string",
    "description": "Display name in Teams; placeholders {name} and {channel}, {{ and }} for braces",
    # Something not blank; every brace doubled or part of {name} or {channel}. No lookahead: generators choke on it.
    "pattern": rf"^(?:[^{{}}]|{_PLACEHOLDER_UNIT})*(?:[^{{}}\s]|{_PLACEHOLDER_UNIT})(?:[^{{}}]|{_PLACEHOLDER_UNIT})*$",
}
_ALLOW = {
    "type": "array",
    "items": {"type": "string", "minLength": 1, "maxLength": 256},
    "maxItems": 1000,
    "description": "Who may join: * or patterns",
}
NAME_REFUSED_CHARACTERS = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
"""What a meeting's name may not hold (a regex class body): controls, line and paragraph separators, bidi overrides."""
_NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": 200,
    "pattern": rf"^[^{NAME_REFUSED_CHARACTERS}]*[^\s{NAME_REFUSED_CHARACTERS}][^{NAME_REFUSED_CHARACTERS}]*$",
    "description": "One line of visible text: no controls, line separators or bidi overrides",
}
_MODE = {
    "type": "string",
    "enum": [m.value for m in IdentityMode],
    "description": 'per_user, or shared: one identity per meeting for all ("relay", its old name, is read as shared)',
}
_TIME = _nullable("string", format="date-time")

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error", "reason"],
        "properties": {
            "error": {"type": "string", "description": "A short machine-readable code, e.g. not_found"},
            "reason": {"type": "string", "description": "What went wrong, for people"},
            "field": _nullable("string", description="The request field at fault (400s on bodies)"),
        },
    },
    "Meeting": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "code": {"type": "string", "description": "The join code SMS and webhook users give"},
            "name": {"type": "string"},
            "link": _nullable("string"),
            "threadId": _nullable("string"),
            "organizerId": _nullable("string"),
            "identityMode": _MODE,
            "displayNameTemplate": _TEMPLATE,
            "allow": _ALLOW,
            "paused": {"type": "boolean"},
            "smsSegmentCap": _nullable("integer"),
            "source": {"type": "string", "enum": ["config", "runtime"]},
            "activeSessions": {"type": "integer"},
        },
    },
    "NewMeeting": {
        "type": "object",
        "description": "Exactly one of link, or graphMeetingId with organizerId",
        "additionalProperties": False,
        "oneOf": [
            {"required": ["link"], "not": {"required": ["graphMeetingId"]}},
            {"required": ["graphMeetingId", "organizerId"], "not": {"required": ["link"]}},
        ],
        "properties": {
            "link": {"type": "string", "minLength": 1, "description": "A Teams join link, long or short"},
            "graphMeetingId": {"type": "string", "minLength": 1, "description": "Graph's onlineMeeting id (base64)"},
            "organizerId": {
                "type": "string",
                "minLength": 1,
                "description": "The organizer's Entra object id (a GUID) or user principal name (name@domain)",
            },
            "code": {"type": "string", "pattern": "^[0-9]{4,10}$", "description": "Generated when absent"},
            "name": _NAME,
            "identityMode": _MODE,
            "displayNameTemplate": _TEMPLATE,
            "allow": _ALLOW,
            "smsSegmentCap": _nullable("integer", minimum=1, maximum=10),
        },
    },
    "MeetingChange": {
        "type": "object",
        "description": "Only the fields given change; at least one is needed",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "paused": {"type": "boolean", "description": "Paused: joins and messages answer 403 paused"},
            "allow": _ALLOW,
            "identityMode": _MODE,
            "displayNameTemplate": _TEMPLATE,
            "name": _NAME,
            "smsSegmentCap": _nullable("integer", minimum=1, maximum=10, description="null: the SMS default"),
        },
    },
    "Session": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "userId": {"type": "string"},
            "meetingId": {"type": "string"},
            "state": {"type": "string", "enum": [s.value for s in SessionState]},
            "reason": _nullable("string"),
            "callId": _nullable("string"),
            "condition": _nullable(
                "string",
                enum=[*(c.value for c in SessionCondition), None],
                description="In the call but held back: chat_refused (the meeting chat answers 403)",
            ),
            "conditionReason": _nullable("string", description="The service's words for the condition"),
            "joinedAt": _TIME,
            "lastActivity": _TIME,
        },
    },
    "User": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "description": "The address: sms:+15551234567, webhook:<client>/<user>"},
            "channel": {"type": "string"},
            "displayName": {"type": "string"},
            "identityId": _nullable("string"),
            "blocked": {"type": "boolean"},
            "optedOut": {"type": "boolean"},
            "sessions": {"type": "array", "items": ref("Session")},
        },
    },
    "Delivery": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "seq": {"type": "integer"},
            "direction": {"type": "string", "enum": [d.value for d in Direction], "description": "in: to Teams"},
            "meetingId": {"type": "string"},
            "userId": {"type": "string"},
            "sessionId": _nullable("integer"),
            "kind": {"type": "string", "description": "message, edit, delete, notice..."},
            "state": {"type": "string", "enum": [s.value for s in DeliveryState]},
            "attempts": {"type": "integer"},
            "lastError": _nullable("string", description="The final reason of a failed delivery"),
            "report": _nullable("string", description="An SMS carrier's delivery report"),
            "remoteId": _nullable("string"),
            "createdAt": _TIME,
            "firstAttemptAt": _TIME,
            "nextAttemptAt": _TIME,
            "body": {"type": "object"},
        },
    },
    "Status": {
        "type": "object",
        "properties": {
            "version": {"type": "string"},
            "uptimeSeconds": {"type": "number"},
            "acsEndpoint": {"type": "string", "description": "The ACS resource (or sandbox) the bridge uses"},
            "channels": {"type": "object"},
            "meetings": {"type": "object", "properties": {"total": {"type": "integer"}, "paused": {"type": "integer"}}},
            "sessions": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "By state"},
            "outbox": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "By direction"},
            "lastErrors": {"type": "array", "items": {"type": "object"}, "description": "Latest failed deliveries"},
            "chatRefused": {
                "type": "array",
                "description": "Meetings whose chat refuses the bridge's guests though their calls are connected",
                "items": {
                    "type": "object",
                    "properties": {
                        "meetingId": {"type": "string"},
                        "code": {"type": "string"},
                        "name": {"type": "string"},
                        "sessions": {"type": "integer"},
                        "reason": _nullable("string"),
                    },
                },
            },
        },
    },
}
