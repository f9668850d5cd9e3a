"""HTTP side of the stand-in Calling SDK: the module files with CORS for localhost pages, the agent WebSocket, and
the control routes over page connections (list them, cut one as a network drop would)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from ..errors import SandboxError, bad_request, forbidden, not_found
from ..keys import WORLD
from ..web_util import json_response
from .agents import CLOSE_REFUSED, CLOSE_TOKEN_EXPIRED, AgentRegistry, AgentSession, Refusal, refusal_for, writer

routes = web.RouteTableDef()
AGENTS: web.AppKey[AgentRegistry] = web.AppKey("calling_agents")

PREFIX = "/sandbox/calling-sdk"
MODULE_DIR = Path(__file__).parent
MODULE_NAME = re.compile(r"^[a-z][a-z0-9_-]*\.js$")
HELLO_TIMEOUT_S = 10.0
# aiohttp pings every HEARTBEAT_S and drops a connection whose pong is missing: a page that froze or a network
# path that died without a FIN is noticed as a vanished client, like one whose browser was killed.
HEARTBEAT_S = 10.0
MAX_MESSAGE_BYTES = 64 * 1024
WRITER_DRAIN_S = 5.0
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
}


def localhost_origin(origin: str | None) -> bool:
    """Pages the stand-in serves: http://localhost on any port (where the bridge serves its joiner page)."""
    if not origin:
        return False
    parts = urlsplit(origin)
    return parts.scheme == "http" and parts.hostname == "localhost" and parts.path == ""


def _allowed_socket_origin(request: web.Request) -> bool:
    # WebSockets are not covered by CORS; check the Origin a browser sends (a non-browser client sends none).
    origin = request.headers.get("Origin")
    return origin is None or localhost_origin(origin) or origin == f"https://{request.host}"


def _cors(request: web.Request) -> dict[str, str]:
    origin = request.headers.get("Origin")
    return {"Access-Control-Allow-Origin": origin or "", "Vary": "Origin"} if localhost_origin(origin) else {}


@routes.route("OPTIONS", PREFIX + "/{tail:.*}")
async def preflight(request: web.Request) -> web.Response:
    headers = _cors(request)
    if not headers:
        raise forbidden("Only pages on http://localhost may use the stand-in Calling SDK.")
    return web.Response(status=204, headers=headers | CORS_HEADERS)


async def _hello(ws: web.WebSocketResponse) -> tuple[str, str | None]:
    """The first message: the token (never in the URL) and the agent's display name."""
    try:
        message = await ws.receive(timeout=HELLO_TIMEOUT_S)
    except TimeoutError as exc:
        raise Refusal(408, 40101, "Failed to create CallAgent, timeout during initialization.") from exc
    try:
        body = json.loads(message.data) if message.type == WSMsgType.TEXT else None
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("type") != "hello" or not isinstance(body.get("token"), str):
        raise Refusal(400, 0, 'The first message must be {"type": "hello", "token": "...", "displayName": "..."}.')
    name = body.get("displayName")
    return body["token"], name if isinstance(name, str) else None


async def _serve(registry: AgentRegistry, session: AgentSession) -> None:
    """Read until the page says goodbye, the connection ends, or the token runs out."""
    ws = session.ws
    goodbye = expired = False
    sending = asyncio.create_task(writer(session))
    try:
        while not ws.closed:
            try:
                message = await ws.receive(timeout=max(0.0, session.expires_on - time.time()))
            except TimeoutError:
                registry.expire(session)
                expired = True
                break
            if message.type == WSMsgType.TEXT:
                if not registry.handle(session, message.data):
                    goodbye = True
                    break
            elif message.type == WSMsgType.BINARY:
                session.send({"type": "error", "reason": "Messages are JSON text."})
            else:
                break
    finally:
        registry.close(session, goodbye=goodbye)
        session.outbox.put_nowait(None)
        if goodbye or expired:
            with suppress(TimeoutError):  # a page that stopped reading is not waited for
                await asyncio.wait_for(asyncio.shield(sending), WRITER_DRAIN_S)
            await ws.close(code=CLOSE_TOKEN_EXPIRED if expired else 1000)
        sending.cancel()


@routes.get(PREFIX + "/agent")
async def agent_socket(request: web.Request) -> web.StreamResponse:
    """One CallAgent's connection: hello, then joins, hang-ups, audio flags and fresh tokens; its calls' changes."""
    if not _allowed_socket_origin(request):
        raise forbidden("Only pages on http://localhost may use the stand-in Calling SDK.")
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES)
    if not ws.can_prepare(request).ok:
        raise bad_request("This is the stand-in Calling SDK's WebSocket: connect with a WebSocket.")
    await ws.prepare(request)
    registry = request.app[AGENTS]
    try:
        token, name = await _hello(ws)
        try:
            claims = request.app[WORLD].authenticate(token, "voip")
        except SandboxError as exc:
            raise refusal_for(exc) from exc
        session = registry.open(claims, name, ws, request)
    except Refusal as refusal:
        with suppress(ConnectionError, RuntimeError):  # the page may have gone already
            await ws.send_json(refusal.body)
        await ws.close(code=CLOSE_REFUSED)
        return ws
    await _serve(registry, session)
    return ws


@routes.get("/sandbox/v1/call-agents")
async def list_agents(request: web.Request) -> web.Response:
    """Live page connections (one per CallAgent) and legs lingering after their page vanished."""
    registry = request.app[AGENTS]
    grace = request.app[WORLD].call_settings.grace_s
    lingering = [
        item.to_json(grace) for item in registry.lingering.values() if item.leg.state in ("lobby", "connected")
    ]
    return json_response({"value": [s.to_json() for s in registry.sessions.values()], "lingering": lingering})


@routes.post("/sandbox/v1/meetings/{meeting}/participants/{participant}/drop")
async def drop_connection(request: web.Request) -> web.Response:
    """The network drops the page connection that holds this leg (every leg of that agent): the page sees 410/3112
    (490/4525 for a call not yet connected); the service keeps the legs for the grace period, then drops them."""
    leg_id = request.match_info["participant"]
    request.app[WORLD].meeting(request.match_info["meeting"])
    for session in request.app[AGENTS].sessions.values():
        if leg_id in session.legs:
            session.cut()
            return web.Response(status=204)
    raise bad_request(f"{leg_id} is not held by a live page connection of the stand-in Calling SDK.")


@routes.get(PREFIX + "/{name}")
async def module_file(request: web.Request) -> web.StreamResponse:
    """standin.js (and any module beside it), importable cross-origin by a page on http://localhost."""
    name = request.match_info["name"]
    path = MODULE_DIR / name
    if not MODULE_NAME.match(name) or not path.is_file():
        raise not_found(f"No module {name} here.")
    headers = _cors(request) | {
        "Content-Type": "text/javascript; charset=utf-8",
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    return web.FileResponse(path, headers=headers)
