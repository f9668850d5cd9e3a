"""The admin API's OpenAPI 3.1 document, served at /api/v1/openapi.json and held to the routes by a test."""

from __future__ import annotations

from typing import Any

from ..models import DeliveryState, Direction, SessionState
from .console_auth import COOKIE
from .schemas import SCHEMAS, Schema, ref


def _list_of(key: str, item: str) -> Schema:
    return {"type": "object", "required": [key], "properties": {key: {"type": "array", "items": ref(item)}}}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> Schema:
    return _json(ref("Error"), description)


def _query(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _path(description: str) -> Schema:
    return {"name": "id", "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


def _op(summary: str, responses: dict[str, Schema], *, params: list[Schema] | None = None, **extra: Any) -> Schema:
    # Every authenticated operation can answer 401; listing it once here keeps the document honest.
    return {
        "summary": summary,
        "operationId": extra.pop("operation_id"),
        "parameters": params or [],
        "responses": {
            **responses,
            "401": _error("No bearer token or console session, or not the operator token"),
            "429": _error("Too many wrong tokens from this address: wait Retry-After seconds"),
        },
        **extra,
    }


def _body(name: str) -> Schema:
    return {"required": True, "content": {"application/json": {"schema": ref(name)}}}


_STATE_NAMES = "|".join(["active", *sorted(s.value for s in SessionState)])
_STATES = {"type": "string", "pattern": f"^ *({_STATE_NAMES}) *(, *({_STATE_NAMES}) *)*$"}
_MEETING_ID = _path("The meeting's id, or its join code")
_USER_ID = _path("The user's address, URL-encoded (webhook%3Aapp%2Fann)")
_SESSION_ID = _path("The session's number")
_NOT_FOUND = _error("No such id")


def _user_action(summary: str, operation_id: str, ok: Schema) -> Schema:
    return {
        "post": _op(summary, {**ok, "404": _NOT_FOUND}, params=[_USER_ID], operation_id=operation_id),
    }


PATHS: dict[str, Schema] = {
    "/openapi.json": {
        "get": {
            "summary": "This document (no token needed)",
            "operationId": "openapi",
            "security": [],
            "responses": {"200": {"description": "The OpenAPI document", "content": {"application/json": {}}}},
        }
    },
    "/status": {
        "get": _op("Counts, queue depths, latest errors", {"200": _json(ref("Status"), "OK")}, operation_id="status")
    },
    "/meetings": {
        "get": _op("List meetings", {"200": _json(_list_of("meetings", "Meeting"), "OK")}, operation_id="listMeetings"),
        "post": _op(
            "Add a meeting from a join link or Graph id",
            {
                "201": _json(ref("Meeting"), "Added"),
                "400": _error("Invalid body; field names the culprit"),
                "413": _error("The body is too large"),
                "415": _error("The body is not declared as JSON"),
                "409": _error("Already bridged, or the code is taken"),
                "422": _error("The link or id could not be looked up"),
                "503": _error("The lookup failed for now"),
            },
            requestBody=_body("NewMeeting"),
            operation_id="addMeeting",
        ),
    },
    "/meetings/{id}": {
        "get": _op(
            "One meeting",
            {"200": _json(ref("Meeting"), "OK"), "404": _NOT_FOUND},
            params=[_MEETING_ID],
            operation_id="getMeeting",
        ),
        "patch": _op(
            "Change a meeting's policy, or pause it",
            {
                "200": _json(ref("Meeting"), "Changed"),
                "400": _error("Invalid body"),
                "404": _NOT_FOUND,
                "413": _error("The body is too large"),
                "415": _error("The body is not declared as JSON"),
            },
            params=[_MEETING_ID],
            requestBody=_body("MeetingChange"),
            operation_id="updateMeeting",
        ),
        "delete": _op(
            "Remove a meeting; its sessions are ended first",
            {"204": {"description": "Removed"}, "404": _NOT_FOUND},
            params=[_MEETING_ID],
            operation_id="removeMeeting",
        ),
    },
    "/sessions": {
        "get": _op(
            "List sessions",
            {"200": _json(_list_of("sessions", "Session"), "OK"), "400": _error("Bad filter"), "404": _NOT_FOUND},
            params=[
                _query("meeting", "A meeting id or join code"),
                _query("state", "States, comma-separated; active for all live ones", _STATES),
                _query("user", "A user's address"),
            ],
            operation_id="listSessions",
        )
    },
    "/sessions/{id}": {
        "get": _op(
            "One session",
            {"200": _json(ref("Session"), "OK"), "404": _NOT_FOUND},
            params=[_SESSION_ID],
            operation_id="getSession",
        ),
        "delete": _op(
            "End a session (the user is told)",
            {"204": {"description": "Ended"}, "404": _NOT_FOUND, "409": _error("Already ended")},
            params=[_SESSION_ID],
            operation_id="endSession",
        ),
    },
    "/users/{id}": {
        "get": _op(
            "One external user, with sessions",
            {"200": _json(ref("User"), "OK"), "404": _NOT_FOUND},
            params=[_USER_ID],
            operation_id="getUser",
        )
    },
    "/users/{id}/block": _user_action(
        "Block a user; ends their sessions", "blockUser", {"200": _json(ref("User"), "OK")}
    ),
    "/users/{id}/unblock": _user_action("Unblock a user", "unblockUser", {"200": _json(ref("User"), "OK")}),
    "/users/{id}/forget": _user_action(
        "Forget a user: their ACS identity, sessions and messages", "forgetUser", {"204": {"description": "Forgotten"}}
    ),
    "/deliveries": {
        "get": _op(
            "Search deliveries, newest first",
            {"200": _json(_list_of("deliveries", "Delivery"), "OK"), "400": _error("Bad filter"), "404": _NOT_FOUND},
            params=[
                _query("meeting", "A meeting id or join code"),
                _query("user", "A user's address"),
                _query("state", "Delivery state", {"type": "string", "enum": [s.value for s in DeliveryState]}),
                _query(
                    "direction", "in: to Teams; out: to users", {"type": "string", "enum": [d.value for d in Direction]}
                ),
                _query(
                    "since", "Created at or after (ISO 8601; UTC if no zone)", {"type": "string", "format": "date-time"}
                ),
                _query("until", "Created before (ISO 8601)", {"type": "string", "format": "date-time"}),
                _query("limit", "At most this many (default 100)", {"type": "integer", "minimum": 1, "maximum": 1000}),
            ],
            operation_id="listDeliveries",
        )
    },
    "/deliveries/{id}": {
        "get": _op(
            "One delivery, with attempts and final reason",
            {"200": _json(ref("Delivery"), "OK"), "404": _NOT_FOUND},
            params=[_path("The delivery's id")],
            operation_id="getDelivery",
        )
    },
}


_FORBIDDEN = _error("Signed in to the console, but without its CSRF token or from another site")


def _paths() -> dict[str, Schema]:
    """PATHS, with the console cookie's own refusal on every operation that changes something."""
    return {
        path: {
            method: {**op, "responses": {**op["responses"], "403": _FORBIDDEN}} if method != "get" else op
            for method, op in ops.items()
        }
        for path, ops in PATHS.items()
    }


def document() -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Meeting bridge admin API",
            "version": "1",
            "description": "Operate the bridge: meetings, sessions, external users, deliveries. Every error is "
            'JSON {"error", "reason"}. Send the operator token ([admin] token) as Authorization: Bearer <token>. '
            "The console at /console signs in with the same token and then calls this API with its session cookie; "
            "its changes carry the session's CSRF token in X-CSRF-Token and must come from the console's own pages.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}, {"consoleSession": []}],
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "consoleSession": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": COOKIE,
                    "description": "Set by signing in at /console; changes also need the X-CSRF-Token header.",
                },
            },
        },
    }
