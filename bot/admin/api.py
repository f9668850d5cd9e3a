"""Admin API routes under /api/v1: the route table, deliveries, status and the OpenAPI document."""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiohttp import web

from ..config import SETTINGS
from ..metrics import METRICS
from ..models import Delivery, DeliveryState, Direction, SessionState
from ..store import STORE
from . import meetings, people
from .common import OPENAPI_PATH, PREFIX, STARTED, ApiError, admin_middleware, iso, not_found, parse_int, parse_time
from .common import uptime as uptime_of
from .openapi import document
from .throttle import THROTTLE, TokenThrottle
from .views import chat_refused_view, delivery_view

LAST_ERRORS = 5


def _enum(name: str, value: str, kind: type[DeliveryState] | type[Direction]) -> Any:
    try:
        return kind(value)
    except ValueError as exc:
        raise ApiError(400, f"{name}: {value[:40]!r} is not one of {', '.join(m.value for m in kind)}") from exc


async def list_deliveries(request: web.Request) -> web.Response:
    store, query = request.app[STORE], request.query
    unknown = sorted(set(query) - {"meeting", "user", "state", "direction", "since", "until", "limit"})
    if unknown:
        raise ApiError(400, f"{unknown[0][:40]}: not a filter of deliveries")
    meeting = await meetings.find_meeting(store, query["meeting"]) if query.get("meeting") else None
    # Given, a typed filter must parse, empty too ("?since=" is a mistake, not "since ever"); an empty meeting or
    # user is no filter.
    since = parse_time("since", query["since"]) if "since" in query else None
    until = parse_time("until", query["until"]) if "until" in query else None
    found = await store.deliveries(
        meeting_id=meeting.id if meeting is not None else None,
        user_id=query.get("user") or None,
        state=_enum("state", query["state"], DeliveryState) if "state" in query else None,
        direction=_enum("direction", query["direction"], Direction) if "direction" in query else None,
        since=since,
        until=until,
        limit=parse_int("limit", query["limit"], 1, 1000) if "limit" in query else 100,
        newest_first=True,
    )
    return web.json_response({"deliveries": [delivery_view(d) for d in found]})


async def get_delivery(request: web.Request) -> web.Response:
    delivery = await request.app[STORE].get_delivery(request.match_info["id"])
    if delivery is None:
        not_found("delivery", request.match_info["id"])
    return web.json_response(delivery_view(delivery))


def _version() -> str:
    try:
        return version("meeting-bridge")
    except PackageNotFoundError:
        return "unknown"


def _failure(d: Delivery) -> dict[str, Any]:
    return {
        "deliveryId": d.id,
        "createdAt": iso(d.created_at),
        "direction": d.direction.value,
        "meetingId": d.meeting_id,
        "userId": d.user_id,
        "error": d.last_error,
    }


async def status(request: web.Request) -> web.Response:
    """What runs and how it is doing: counts, queue depths, the channels configured, the latest failures."""
    app = request.app
    store, settings = app[STORE], app[SETTINGS]
    all_meetings = await store.list_meetings()
    by_state = {s.value: 0 for s in SessionState}
    every = await store.sessions()
    for session in every:
        by_state[session.state.value] += 1
    depth = await store.outbox_depth()
    failed = await store.deliveries(state=DeliveryState.FAILED, newest_first=True, limit=LAST_ERRORS)
    body = {
        "version": _version(),
        "uptimeSeconds": uptime_of(app),
        "acsEndpoint": settings.acs.endpoint,
        "channels": {"webhook": sorted(settings.webhook_clients), "sms": settings.sms.gateway},
        "meetings": {"total": len(all_meetings), "paused": sum(m.paused for m in all_meetings)},
        "sessions": by_state,
        "outbox": {d.value: depth.get(d.value, 0) for d in Direction},
        "lastErrors": [_failure(d) for d in failed],
        "chatRefused": chat_refused_view(all_meetings, [s for s in every if s.state == SessionState.IN_CALL]),
    }
    return web.json_response(body)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document())


def routes() -> list[web.RouteDef]:
    """Every admin route; the OpenAPI document must list exactly these (a test holds the two together)."""
    p = PREFIX
    return [
        web.get(OPENAPI_PATH, openapi),
        web.get(f"{p}/status", status),
        web.get(f"{p}/meetings", meetings.list_meetings),
        web.post(f"{p}/meetings", meetings.add_meeting),
        web.get(f"{p}/meetings/{{id}}", meetings.get_meeting),
        web.patch(f"{p}/meetings/{{id}}", meetings.update_meeting),
        web.delete(f"{p}/meetings/{{id}}", meetings.remove_meeting),
        web.get(f"{p}/sessions", people.list_sessions),
        web.get(f"{p}/sessions/{{id}}", people.get_session),
        web.delete(f"{p}/sessions/{{id}}", people.end_session),
        web.get(f"{p}/users/{{id}}", people.get_user),
        web.post(f"{p}/users/{{id}}/block", people.block_user),
        web.post(f"{p}/users/{{id}}/unblock", people.unblock_user),
        web.post(f"{p}/users/{{id}}/forget", people.forget_user),
        web.get(f"{p}/deliveries", list_deliveries),
        web.get(f"{p}/deliveries/{{id}}", get_delivery),
    ]


def add_admin_api(app: web.Application) -> None:
    """Register the API on a bridge app before it starts (the router freezes then); handlers find the store,
    relay and registry on the app when a request comes."""
    app[STARTED] = time.monotonic()
    admin = app[SETTINGS].admin
    app[THROTTLE] = TokenThrottle(admin.failed_tokens_allowed, admin.lockout_max_s, app[METRICS])
    app.middlewares.append(admin_middleware)
    app.router.add_routes(routes())
