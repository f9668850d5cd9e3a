"""Admin API, sessions and external users: list and end sessions; look up, block, unblock and forget users."""

from __future__ import annotations

import logging

from aiohttp import web

from ..models import ExternalUser, Session, SessionState
from ..relay.runtime import RELAY
from ..sessions import ACTIVE, FINAL
from ..store import STORE, Store
from .common import ApiError, not_found
from .meetings import find_meeting
from .views import session_view, user_view

log = logging.getLogger(__name__)
STATE_NAMES = sorted(s.value for s in SessionState)


def parse_states(text: str) -> list[SessionState]:
    """A comma-separated list of states; `active` stands for every state that is not final."""
    states: list[SessionState] = []
    for part in (p.strip(" ") for p in text.split(",")):
        if part == "active":
            states += sorted(ACTIVE)
        elif part in STATE_NAMES:
            states.append(SessionState(part))
        else:
            raise ApiError(400, f"state: {part[:40]!r} is not one of active, {', '.join(STATE_NAMES)}")
    return states


async def list_sessions(request: web.Request) -> web.Response:
    store, query = request.app[STORE], request.query
    unknown = sorted(set(query) - {"meeting", "state", "user"})
    if unknown:
        raise ApiError(400, f"{unknown[0][:40]}: not a filter of sessions")
    meeting_id = (await find_meeting(store, query["meeting"])).id if query.get("meeting") else None
    # Given, a typed filter must parse, empty too: "?state=" is a mistake, not "every state".
    states = parse_states(query["state"]) if "state" in query else None
    sessions = await store.sessions(meeting_id, states)
    if query.get("user"):
        sessions = [s for s in sessions if s.user_id == query["user"]]
    return web.json_response({"sessions": [session_view(s) for s in sessions]})


async def _session(store: Store, ref: str) -> Session:
    # More digits than SQLite's integers hold is simply no such session, not an overflow.
    session = await store.get_session(int(ref)) if ref.isascii() and ref.isdigit() and len(ref) <= 18 else None
    if session is None:
        not_found("session", ref)
    return session


async def get_session(request: web.Request) -> web.Response:
    return web.json_response(session_view(await _session(request.app[STORE], request.match_info["id"])))


async def end_session(request: web.Request) -> web.Response:
    store = request.app[STORE]
    session = await _session(store, request.match_info["id"])
    if session.state in FINAL:
        raise ApiError(409, f"session {session.id} has already ended ({session.state.value})")
    await request.app[RELAY].presence.leave(session, "ended by an operator")
    log.info("session %d ended by an operator", session.id)
    return web.Response(status=204)


async def _user(store: Store, user_id: str) -> ExternalUser:
    user = await store.get_user(user_id)
    if user is None:
        not_found("user", user_id)
    return user


async def _user_response(store: Store, user_id: str) -> web.Response:
    user = await _user(store, user_id)
    sessions = [s for s in await store.sessions() if s.user_id == user.id]
    return web.json_response(user_view(user, sessions))


async def get_user(request: web.Request) -> web.Response:
    return await _user_response(request.app[STORE], request.match_info["id"])


async def block_user(request: web.Request) -> web.Response:
    store = request.app[STORE]
    user = await _user(store, request.match_info["id"])
    await store.update_user(user.id, blocked=True)
    # Blocked first, so the user cannot join again while their sessions are being ended.
    for session in await store.sessions(states=ACTIVE):
        if session.user_id == user.id:
            await request.app[RELAY].presence.leave(session, "blocked by an operator")
    # The channel, not the address: addresses may be phone numbers, which stay out of the log.
    log.info("a %s user was blocked by an operator", user.channel)
    return await _user_response(store, user.id)


async def unblock_user(request: web.Request) -> web.Response:
    store = request.app[STORE]
    user = await _user(store, request.match_info["id"])
    await store.update_user(user.id, blocked=False)
    return await _user_response(store, user.id)


async def forget_user(request: web.Request) -> web.Response:
    store = request.app[STORE]
    user = await _user(store, request.match_info["id"])
    await request.app[RELAY].forget(user.id)
    log.info("a %s user was forgotten at an operator's request", user.channel)
    return web.Response(status=204)
