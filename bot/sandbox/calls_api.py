"""Call legs: the stand-in for what the ACS Calling SDK does when an ACS identity joins a Teams meeting."""

from __future__ import annotations

import asyncio
import json
from contextlib import suppress

from aiohttp import web

from .errors import bad_request
from .hmac_auth import verify_hmac
from .keys import STATS, WORLD
from .meetings import FINAL_LEG_STATES
from .util import JsonDict
from .web_util import acs_caller, json_body, json_response, str_field

routes = web.RouteTableDef()
MAX_DISPLAY_NAME = 256
SSE_KEEPALIVE_S = 15.0


@routes.post("/sandbox/v1/calls")
async def join_call(request: web.Request) -> web.Response:
    caller = acs_caller(request, "voip").identity
    body = await json_body(request)
    link = str_field(body, "meetingLink", required=False)
    meeting_id = str_field(body, "meetingId", required=False)
    passcode = str_field(body, "passcode", required=False)
    name = (str_field(body, "displayName", required=False) or "").strip()
    if not link and not meeting_id:
        raise bad_request("Give meetingLink, or meetingId with passcode.")
    if not name or len(name) > MAX_DISPLAY_NAME:
        raise bad_request(f"displayName is required, 1-{MAX_DISPLAY_NAME} characters.")
    world = request.app[WORLD]
    meeting = world.find_meeting(link, meeting_id, passcode)
    leg = world.join_call(meeting, caller, name)
    return json_response(leg.snapshot() | {"threadId": meeting.thread_id}, status=201)


@routes.get("/sandbox/v1/calls/{call}")
async def get_call(request: web.Request) -> web.Response:
    caller = acs_caller(request, "voip").identity
    leg = request.app[WORLD].call_leg(request.match_info["call"], caller)
    meeting = request.app[WORLD].meetings[leg.meeting_id]
    return json_response(leg.snapshot() | {"threadId": meeting.thread_id})


@routes.delete("/sandbox/v1/calls/{call}")
async def leave_call(request: web.Request) -> web.Response:
    caller = acs_caller(request, "voip").identity
    world = request.app[WORLD]
    world.leave_call(world.call_leg(request.match_info["call"], caller))
    return web.Response(status=204)


def _sse(event: JsonDict) -> bytes:
    return f"event: state\ndata: {json.dumps(event)}\n\n".encode()


@routes.get("/sandbox/v1/calls/{call}/events")
async def call_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the current state first, then every change; the stream ends after a final state."""
    caller = acs_caller(request, "voip").identity
    leg = request.app[WORLD].call_leg(request.match_info["call"], caller)
    queue: asyncio.Queue[JsonDict] = asyncio.Queue()
    leg.watchers.add(queue)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    stats = request.app[STATS]
    stats.streams_open += 1
    try:
        await response.prepare(request)
        await response.write(_sse(leg.snapshot()))
        state = leg.state
        while state not in FINAL_LEG_STATES:
            try:
                event = await asyncio.wait_for(queue.get(), SSE_KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            await response.write(_sse(event))
            state = event["state"]
        with suppress(ConnectionError):
            await response.write_eof()
    except ConnectionError:
        pass
    finally:
        leg.watchers.discard(queue)
        stats.streams_open -= 1
    return response


@routes.get("/sandbox/v1/call-events")
async def resource_call_events(request: web.Request) -> web.StreamResponse:
    """Every call leg of the resource on one stream, for a server holding many legs (HMAC, the access key): each
    leg's state first, then "synced", then every change of any leg. One connection instead of one per leg."""
    world = request.app[WORLD]
    verify_hmac(request, await request.read(), world.credentials.access_key_bytes)
    queue: asyncio.Queue[JsonDict] = asyncio.Queue()
    # Listening before the snapshot is taken: a change made meanwhile is sent again, never lost.
    world.call_watchers.add(queue)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    stats = request.app[STATS]
    stats.streams_open += 1
    try:
        await response.prepare(request)
        snapshot = [leg.snapshot() for leg in list(world.legs.values())]
        await response.write(b"".join(_sse(leg) for leg in snapshot) + b"event: synced\ndata: {}\n\n")
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), SSE_KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            await response.write(_sse(event))
    except ConnectionError:
        pass
    finally:
        world.call_watchers.discard(queue)
        stats.streams_open -= 1
    return response
