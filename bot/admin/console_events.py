"""The console's live updates: one server-sent event stream per open page, pushing a snapshot whenever it changes."""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web

from ..refusal import refuse
from ..store import STORE
from .console_auth import ConsoleSession, session_of
from .console_views import snapshot

log = logging.getLogger(__name__)
POLL_S = 1.0
"""How often a stream reads the store; a snapshot goes out only when it differs from the last one sent."""
KEEPALIVE_S = 15.0
"""A comment line this often on a quiet stream, so proxies and browsers keep it open."""
MAX_STREAMS = 32
MAX_PER_SESSION = 8
SHUTDOWN_GRACE_S = 5.0


class Streams:
    """The open event streams: bounded in number (overall and per sign-in), and ended when the app shuts down."""

    def __init__(self, limit: int = MAX_STREAMS, per_session: int = MAX_PER_SESSION) -> None:
        self.closing = asyncio.Event()
        self._limit, self._per_session = limit, per_session
        self._open: dict[asyncio.Task[object], str] = {}

    def admit(self, session: ConsoleSession) -> bool:
        task = asyncio.current_task()
        mine = sum(1 for owner in self._open.values() if owner == session.csrf)
        if task is None or self.closing.is_set() or len(self._open) >= self._limit or mine >= self._per_session:
            return False
        self._open[task] = session.csrf
        return True

    def release(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._open.pop(task, None)

    def __len__(self) -> int:
        return len(self._open)

    async def close(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Tell every stream to end, give them a moment to, then cancel the rest."""
        self.closing.set()
        tasks = list(self._open)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=grace_s)


STREAMS: web.AppKey[Streams] = web.AppKey("console_streams")


def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


async def events(request: web.Request) -> web.StreamResponse:
    """GET /console/events[?meeting=<id>]: `snapshot` events as JSON; `signedout` when the sign-in ends."""
    session = session_of(request)
    if session is None:
        return refuse(401, "unauthorized", "sign in at /console first")
    meeting_id = request.query.get("meeting") or None
    if meeting_id is not None and len(meeting_id) > 200:
        return refuse(400, "bad_request", "meeting: too long")
    streams = request.app[STREAMS]
    if not streams.admit(session):
        reason = "too many open console pages; close some and reload"
        return refuse(503, "unavailable", reason, retry_after=5)
    headers = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store"}
    response = web.StreamResponse(headers={**headers, "X-Accel-Buffering": "no"})
    try:
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n")
        await _pump(request, response, streams, meeting_id)
    except ConnectionResetError:  # the page went away mid-write (aiohttp's ClientConnectionResetError)
        log.debug("a console event stream closed by its page")
    finally:
        streams.release()
    return response


async def _pump(request: web.Request, response: web.StreamResponse, streams: Streams, meeting_id: str | None) -> None:
    store = request.app[STORE]
    last, quiet = "", 0.0
    while not streams.closing.is_set() and not _gone(request):
        if session_of(request) is None:  # signed out elsewhere, or expired
            await response.write(b"event: signedout\ndata: {}\n\n")
            return
        data = json.dumps(await snapshot(store, meeting_id), separators=(",", ":"))
        if data != last:
            # json.dumps writes no raw newlines, so the whole snapshot is one data line.
            await response.write(f"event: snapshot\ndata: {data}\n\n".encode())
            last, quiet = data, 0.0
        elif quiet >= KEEPALIVE_S:
            await response.write(b": keep-alive\n\n")
            quiet = 0.0
        try:
            await asyncio.wait_for(streams.closing.wait(), POLL_S)
        except TimeoutError:
            quiet += POLL_S
