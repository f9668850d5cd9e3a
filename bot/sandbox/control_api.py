"""The sandbox's control API: Teams meetings and users, lobby and roster, faults, limits and reset."""

from __future__ import annotations

from aiohttp import web

from .errors import bad_request
from .faults import FaultRule
from .keys import FAULTS, INFO, LIMITS, RESET_HOOKS, WORLD
from .meetings import LobbyPolicy, Meeting
from .util import now, parse_iso
from .web_util import json_body, json_response, str_field

routes = web.RouteTableDef()
MAX_NAME = 256


def _meeting(request: web.Request) -> Meeting:
    return request.app[WORLD].meeting(request.match_info["meeting"])


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        raise bad_request(f"{what} must be a non-empty string of at most {MAX_NAME} characters.")
    return value.strip()


def _html(body: dict[str, object]) -> str:
    html = str_field(body, "html") or ""
    if not html.strip():
        raise bad_request("html must be a non-empty string; Teams posts no empty messages.")
    return html


def _time(body: dict[str, object], name: str, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise bad_request(f"{name} must be an ISO 8601 time.")
    try:
        return parse_iso(value)
    except ValueError as exc:
        raise bad_request(f"{name} must be an ISO 8601 time.") from exc


@routes.get("/sandbox/v1/info")
async def info(request: web.Request) -> web.Response:
    return json_response(request.app[INFO])


@routes.post("/sandbox/v1/meetings")
async def create_meeting(request: web.Request) -> web.Response:
    body = await json_body(request)
    subject = _name(body.get("subject"), "subject")
    organizer = body.get("organizer")
    if not isinstance(organizer, dict):
        raise bad_request('organizer must be an object: {"displayName": "..."}.')
    organizer_name = _name(organizer.get("displayName"), "organizer.displayName")
    lobby = body.get("lobby", "auto")
    if lobby not in ("auto", "manual"):
        raise bad_request("lobby must be auto or manual.")
    start = _time(body, "startDateTime", now())
    end = _time(body, "endDateTime", start + 3600)
    if end <= start:
        raise bad_request("endDateTime must be after startDateTime.")
    lobby_policy: LobbyPolicy = "auto" if lobby == "auto" else "manual"
    meeting = request.app[WORLD].create_meeting(subject, organizer_name, lobby_policy, start, end)
    return json_response(meeting.to_json(), status=201)


@routes.get("/sandbox/v1/meetings")
async def list_meetings(request: web.Request) -> web.Response:
    return json_response({"value": [m.to_json() for m in request.app[WORLD].meetings.values()]})


@routes.get("/sandbox/v1/meetings/{meeting}")
async def get_meeting(request: web.Request) -> web.Response:
    return json_response(_meeting(request).to_json())


@routes.post("/sandbox/v1/meetings/{meeting}/start")
async def start_meeting(request: web.Request) -> web.Response:
    meeting = _meeting(request)
    request.app[WORLD].start_meeting(meeting)
    return json_response(meeting.to_json())


@routes.post("/sandbox/v1/meetings/{meeting}/end")
async def end_meeting(request: web.Request) -> web.Response:
    meeting = _meeting(request)
    request.app[WORLD].end_meeting(meeting)
    return json_response(meeting.to_json())


def _enabled(body: dict[str, object]) -> bool:
    enabled = body.get("enabled")
    if not isinstance(enabled, bool):
        raise bad_request("enabled must be true or false.")
    return enabled


@routes.put("/sandbox/v1/meetings/{meeting}/guest-chat")
async def meeting_guest_chat(request: web.Request) -> web.Response:
    """The meeting's tenant lets ACS guests chat (true) or refuses them while their calls work (false)."""
    meeting = _meeting(request)
    meeting.guest_chat = _enabled(await json_body(request))
    return json_response(meeting.to_json())


@routes.get("/sandbox/v1/guest-chat")
async def get_guest_chat(request: web.Request) -> web.Response:
    return json_response({"enabled": not request.app[WORLD].guest_chat_refused})


@routes.put("/sandbox/v1/guest-chat")
async def resource_guest_chat(request: web.Request) -> web.Response:
    """Every meeting refuses ACS guests' chat while calls work (false), as the service did from 2026-08-24."""
    world = request.app[WORLD]
    world.guest_chat_refused = not _enabled(await json_body(request))
    return json_response({"enabled": not world.guest_chat_refused})


@routes.post("/sandbox/v1/meetings/{meeting}/teams-users")
async def teams_user_join(request: web.Request) -> web.Response:
    body = await json_body(request)
    user = request.app[WORLD].teams_user_join(_meeting(request), _name(body.get("displayName"), "displayName"))
    return json_response(user.to_json(), status=201)


@routes.post("/sandbox/v1/meetings/{meeting}/messages")
async def teams_post(request: web.Request) -> web.Response:
    meeting = _meeting(request)
    body = await json_body(request)
    world = request.app[WORLD]
    user = world.teams_user(meeting, str_field(body, "from") or "")
    html = _html(body)
    thread = world.threads[meeting.thread_id]
    message = world.post_message(thread, user.id, html, user.display_name, "html", {})
    return json_response(message.to_json(), status=201)


@routes.patch("/sandbox/v1/meetings/{meeting}/messages/{message}")
async def teams_edit(request: web.Request) -> web.Response:
    meeting = _meeting(request)
    body = await json_body(request)
    world = request.app[WORLD]
    user = world.teams_user(meeting, str_field(body, "from") or "")
    thread = world.threads[meeting.thread_id]
    message = world.update_message(thread, user.id, request.match_info["message"], _html(body), None)
    return json_response(message.to_json())


@routes.delete("/sandbox/v1/meetings/{meeting}/messages/{message}")
async def teams_delete(request: web.Request) -> web.Response:
    meeting = _meeting(request)
    world = request.app[WORLD]
    user = world.teams_user(meeting, request.query.get("from", ""))
    world.delete_message(world.threads[meeting.thread_id], user.id, request.match_info["message"])
    return web.Response(status=204)


@routes.get("/sandbox/v1/meetings/{meeting}/messages")
async def organizer_view(request: web.Request) -> web.Response:
    """The whole thread as the organizer sees it in Teams, oldest first."""
    thread = request.app[WORLD].threads[_meeting(request).thread_id]
    return json_response({"value": [m.to_json() for m in thread.messages]})


@routes.post("/sandbox/v1/meetings/{meeting}/lobby/{participant}/admit")
async def admit(request: web.Request) -> web.Response:
    leg = request.app[WORLD].admit(_meeting(request), request.match_info["participant"])
    return json_response(leg.snapshot())


@routes.get("/sandbox/v1/faults")
async def get_faults(request: web.Request) -> web.Response:
    return json_response(request.app[FAULTS].to_json())


@routes.put("/sandbox/v1/faults")
async def put_faults(request: web.Request) -> web.Response:
    body = await json_body(request)
    items = body.get("rules")
    if not isinstance(items, list):
        raise bad_request("rules must be a list (an empty list clears all faults).")
    seed = body.get("seed")
    if seed is not None and not isinstance(seed, int):
        raise bad_request("seed must be an integer.")
    request.app[FAULTS].replace([FaultRule.parse(item) for item in items], seed)
    return json_response(request.app[FAULTS].to_json())


@routes.delete("/sandbox/v1/faults")
async def clear_faults(request: web.Request) -> web.Response:
    request.app[FAULTS].replace([], None)
    return web.Response(status=204)


@routes.get("/sandbox/v1/limits")
async def get_limits(request: web.Request) -> web.Response:
    return json_response(request.app[LIMITS].to_json())


@routes.put("/sandbox/v1/limits")
async def put_limits(request: web.Request) -> web.Response:
    body = await json_body(request)
    enabled = body.get("enabled")
    if not isinstance(enabled, bool):
        raise bad_request("enabled must be true or false.")
    request.app[LIMITS].enabled = enabled
    return json_response(request.app[LIMITS].to_json())


@routes.post("/sandbox/v1/reset")
async def reset(request: web.Request) -> web.Response:
    """Forget every identity, thread, meeting, phone message and subscription; faults cleared, limits back on."""
    request.app[WORLD].reset()
    request.app[FAULTS].reset()
    request.app[LIMITS].reset()
    request.app[LIMITS].enabled = True
    for hook in request.app[RESET_HOOKS]:
        hook()
    return web.Response(status=204)
