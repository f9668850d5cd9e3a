"""The ACS Chat API (2024-03-07) as seen by ACS identities with bearer tokens, including Teams interop rules."""

from __future__ import annotations

import json

from aiohttp import web

from .errors import bad_request, interop_forbidden, not_found
from .keys import WORLD
from .limits import check_limit
from .threads import Message, Participant, Thread
from .util import JsonDict, acs_identifier, b64url, b64url_decode, iso, now, parse_iso, raw_id_of
from .web_util import acs_caller, int_query, json_body, json_response, require_api_version, str_field

routes = web.RouteTableDef()
API_VERSIONS = ("2024-03-07", "2023-11-07", "2021-09-07", "2021-04-05", "2021-03-07")
DEFAULT_PAGE, MAX_PAGE = 100, 200


def _caller(request: web.Request) -> str:
    require_api_version(request, *API_VERSIONS)
    return acs_caller(request, "chat").identity


def _member(request: web.Request) -> tuple[str, Thread, Participant]:
    caller = _caller(request)
    thread, member = request.app[WORLD].member_thread(caller, request.match_info["thread"])
    return caller, thread, member


def _metadata(body: JsonDict) -> dict[str, str]:
    meta = body.get("metadata") or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise bad_request("metadata must be an object whose values are strings.")
    return dict(meta)


def _participants(body: JsonDict) -> list[tuple[str, str | None, float]]:
    items = body.get("participants") or []
    if not isinstance(items, list):
        raise bad_request("participants must be a list.")
    out: list[tuple[str, str | None, float]] = []
    for item in items:
        raw = raw_id_of(item.get("communicationIdentifier")) if isinstance(item, dict) else None
        if raw is None:
            raise bad_request("Each participant needs a communicationIdentifier.")
        share = item.get("shareHistoryTime")
        try:
            floor = parse_iso(share) if isinstance(share, str) else 0.0
        except ValueError as exc:
            raise bad_request("shareHistoryTime must be an ISO 8601 time.") from exc
        name = item.get("displayName")
        out.append((raw, name if isinstance(name, str) else None, floor))
    return out


def _page(request: web.Request) -> tuple[int, float | None, int | None]:
    """maxPageSize, startTime and the position a nextLink continues from."""
    state = request.query.get("syncState")
    if state:
        try:
            data = json.loads(b64url_decode(state))
            return int(data["n"]), data.get("s"), int(data["b"])
        except (ValueError, KeyError, TypeError) as exc:
            raise bad_request("syncState is not valid.") from exc
    size = int_query(request, "maxPageSize", DEFAULT_PAGE, 1, MAX_PAGE)
    start = request.query.get("startTime")
    try:
        return size, parse_iso(start) if start else None, None
    except ValueError as exc:
        raise bad_request("startTime must be an ISO 8601 time.") from exc


def _next_link(request: web.Request, size: int, start: float | None, before: int) -> str:
    state = b64url(json.dumps({"n": size, "s": start, "b": before}).encode())
    return str(request.url.with_query({"syncState": state, "api-version": request.query.get("api-version", "")}))


@routes.post("/chat/threads")
async def create_thread(request: web.Request) -> web.Response:
    caller = _caller(request)
    body = await json_body(request)
    thread = request.app[WORLD].create_thread(
        caller, body.get("topic"), _participants(body), request.headers.get("repeatability-request-id")
    )
    return json_response({"chatThread": thread.to_json()}, status=201)


@routes.get("/chat/threads")
async def list_threads(request: web.Request) -> web.Response:
    caller = _caller(request)
    size, start, before = _page(request)
    threads = [
        t
        for t in request.app[WORLD].threads.values()
        if caller in t.participants and (start is None or (t.last_message_on or t.created_on) >= start)
    ]
    threads.sort(key=lambda t: t.last_message_on or t.created_on, reverse=True)
    offset = before or 0
    page = threads[offset : offset + size]
    body: JsonDict = {"value": [t.to_item_json() for t in page]}
    if offset + size < len(threads):
        body["nextLink"] = _next_link(request, size, start, offset + size)
    return json_response(body)


@routes.get("/chat/threads/{thread}")
async def get_thread(request: web.Request) -> web.Response:
    _, thread, _ = _member(request)
    return json_response(thread.to_json())


@routes.patch("/chat/threads/{thread}")
async def update_thread(request: web.Request) -> web.Response:
    caller, thread, _ = _member(request)
    body = await json_body(request)
    request.app[WORLD].update_topic(thread, caller, body.get("topic"))
    return web.Response(status=204)


@routes.delete("/chat/threads/{thread}")
async def delete_thread(request: web.Request) -> web.Response:
    _, thread, _ = _member(request)
    request.app[WORLD].delete_thread(thread)
    return web.Response(status=204)


@routes.post("/chat/threads/{thread}/messages")
async def send_message(request: web.Request) -> web.Response:
    caller, thread, _ = _member(request)
    body = await json_body(request)
    content = str_field(body, "content")
    kind = str_field(body, "type", required=False, default="text")
    if kind not in ("text", "html"):
        raise bad_request("type must be text or html.")
    check_limit(request, "chat.send", thread.id, caller)
    name = str_field(body, "senderDisplayName", required=False)
    participant = thread.participants[caller]
    message = request.app[WORLD].post_message(
        thread, caller, content or "", name or participant.display_name, kind or "text", _metadata(body)
    )
    return json_response({"id": message.id}, status=201)


@routes.get("/chat/threads/{thread}/messages")
async def list_messages(request: web.Request) -> web.Response:
    caller, thread, reader = _member(request)
    check_limit(request, "chat.list", thread.id, caller)
    size, start, before = _page(request)
    matches = thread.visible(reader, start, before)
    page: list[Message] = matches[:size]
    body: JsonDict = {"value": [m.to_json() for m in page]}
    if len(matches) > size:
        body["nextLink"] = _next_link(request, size, start, page[-1].sequence_id)
    return json_response(body)


def _visible_message(thread: Thread, reader: Participant, message_id: str) -> Message:
    message = thread.by_id.get(message_id)
    if message is None or not reader.sees(message):
        raise not_found(f"Message {message_id} does not exist.")
    return message


@routes.get("/chat/threads/{thread}/messages/{message}")
async def get_message(request: web.Request) -> web.Response:
    caller, thread, reader = _member(request)
    check_limit(request, "chat.get", thread.id, caller)
    return json_response(_visible_message(thread, reader, request.match_info["message"]).to_json())


@routes.patch("/chat/threads/{thread}/messages/{message}")
async def update_message(request: web.Request) -> web.Response:
    caller, thread, reader = _member(request)
    body = await json_body(request)
    content = str_field(body, "content", required=False)
    _visible_message(thread, reader, request.match_info["message"])
    check_limit(request, "chat.send", thread.id, caller)
    request.app[WORLD].update_message(thread, caller, request.match_info["message"], content, body.get("metadata"))
    return web.Response(status=204)


@routes.delete("/chat/threads/{thread}/messages/{message}")
async def delete_message(request: web.Request) -> web.Response:
    caller, thread, reader = _member(request)
    message = thread.by_id.get(request.match_info["message"])
    if message is not None and not reader.sees(message):
        raise not_found(f"Message {message.id} does not exist.")
    check_limit(request, "chat.send", thread.id, caller)
    request.app[WORLD].delete_message(thread, caller, request.match_info["message"])
    return web.Response(status=204)


@routes.get("/chat/threads/{thread}/participants")
async def list_participants(request: web.Request) -> web.Response:
    caller, thread, _ = _member(request)
    check_limit(request, "chat.participants", thread.id, caller)
    size = int_query(request, "maxPageSize", DEFAULT_PAGE, 1, MAX_PAGE)
    skip = int_query(request, "skip", 0, 0, 1_000_000)
    people = list(thread.participants.values())
    body: JsonDict = {"value": [p.to_json() for p in people[skip : skip + size]]}
    if skip + size < len(people):
        body["nextLink"] = str(
            request.url.with_query(
                {"maxPageSize": size, "skip": skip + size, "api-version": request.query["api-version"]}
            )
        )
    return json_response(body)


@routes.post("/chat/threads/{thread}/participants/:add")
async def add_participants(request: web.Request) -> web.Response:
    caller, thread, _ = _member(request)
    body = await json_body(request)
    request.app[WORLD].add_participants(thread, caller, _participants(body))
    return json_response({}, status=201)


@routes.post("/chat/threads/{thread}/participants/:remove")
async def remove_participant(request: web.Request) -> web.Response:
    caller, thread, _ = _member(request)
    body = await json_body(request)
    raw = raw_id_of(body)
    if raw is None:
        raise bad_request("The body must be the communicationIdentifier of the participant to remove.")
    request.app[WORLD].remove_participant(thread, caller, raw)
    return web.Response(status=204)


@routes.post("/chat/threads/{thread}/typing")
async def typing(request: web.Request) -> web.Response:
    caller, thread, _ = _member(request)
    await json_body(request, required=False)
    check_limit(request, "chat.typing", thread.id, caller)
    return web.Response(status=200)


@routes.post("/chat/threads/{thread}/readReceipts")
async def send_read_receipt(request: web.Request) -> web.Response:
    caller, thread, reader = _member(request)
    if thread.meeting_id is not None:
        raise interop_forbidden()  # read receipts are not available to ACS users in Teams meetings
    body = await json_body(request)
    message_id = str_field(body, "chatMessageId") or ""
    _visible_message(thread, reader, message_id)
    thread.read_receipts[caller] = (message_id, now())
    return web.Response(status=200)


@routes.get("/chat/threads/{thread}/readReceipts")
async def list_read_receipts(request: web.Request) -> web.Response:
    _, thread, _ = _member(request)
    if thread.meeting_id is not None:
        raise interop_forbidden()
    value = [
        {"senderCommunicationIdentifier": acs_identifier(who), "chatMessageId": mid, "readOn": iso(when)}
        for who, (mid, when) in thread.read_receipts.items()
    ]
    return json_response({"value": value})
