"""One event stream for every call leg of the ACS resource, shared by all the bridge's watches of single calls.

A stream per leg costs a TLS connection per session (a quarter of a megabyte of buffers in this process, a file
descriptor each, keep-alives to wake on); one resource-wide stream costs one. The stream starts with every leg's
state, so a reconnect covers whatever changed while it was down.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from email.utils import formatdate
from urllib.parse import urlsplit

import aiohttp

from ..backoff import Backoff
from ..errors import BridgeError, TransientError
from ..models import CallEvent, CallState
from .base import TokenSource
from .sse import SseParser

log = logging.getLogger(__name__)
RECONNECT_BASE_S = 0.25
RECONNECT_MAX_S = 5.0
MAX_RETRY_AFTER_S = 60.0
# A stream's reconnects: a peer's Retry-After lengthens the wait, up to a minute, never shortens it.
RECONNECT = Backoff(RECONNECT_BASE_S, RECONNECT_MAX_S, peer="at_least", peer_max_s=MAX_RETRY_AFTER_S)

# Legs only move forward: lobby, then connected, then one final state. An older state arriving late is dropped.
_RANK = {CallState.LOBBY: 0, CallState.CONNECTED: 1}


def _rank(state: CallState | None) -> int:
    return -1 if state is None else _RANK.get(state, 2)


def hmac_headers(access_key: str, method: str, url: str, body: bytes = b"") -> dict[str, str]:
    """ACS's HMAC-SHA256 request signature by the resource's access key."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    date = formatdate(usegmt=True)
    content_hash = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
    to_sign = f"{method.upper()}\n{path}\n{date};{parts.netloc};{content_hash}"
    digest = hmac.new(base64.b64decode(access_key), to_sign.encode("utf-8"), hashlib.sha256).digest()
    signature = base64.b64encode(digest).decode("ascii")
    return {
        "x-ms-date": date,
        "x-ms-content-sha256": content_hash,
        "Authorization": f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}",
    }


Item = CallEvent | BaseException | None
"""What a watch's queue carries: a leg's state, the stream's failure, or None once the stream has (re)synced."""
OpenStream = Callable[[], AbstractAsyncContextManager[aiohttp.ClientResponse]]
ParseEvent = Callable[[str], CallEvent | None]
GetState = Callable[[str, str | TokenSource], Awaitable[CallEvent | None]]


class CallEventHub:
    """Keeps the latest state of every leg from one stream and hands each watch the changes of its own call."""

    def __init__(self, open_stream: OpenStream, parse: ParseEvent, max_reconnects: int) -> None:
        self._open = open_stream
        self._parse = parse
        self._max_reconnects = max_reconnects
        self._states: dict[str, CallEvent] = {}
        self._queues: dict[str, set[asyncio.Queue[Item]]] = {}
        self._synced = False
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def watch(
        self, call_id: str, token: str | TokenSource, get_state: GetState
    ) -> AsyncGenerator[CallEvent, None]:
        """The call's current state, then each change, ending after a final one (CallConnector.watch)."""
        if self._closed:
            return
        queue: asyncio.Queue[Item] = asyncio.Queue()
        self._queues.setdefault(call_id, set()).add(queue)
        try:
            self._start()
            while not self._synced:
                item = await queue.get()  # states before the first sync are in _states already
                if isinstance(item, BaseException):
                    raise item
            current = self._states.get(call_id)
            if current is None:
                # Joined a moment ago and the stream has not told of it yet: ask the call itself.
                current = await get_state(call_id, token)
            last: CallState | None = None
            item = current
            while True:
                if isinstance(item, BaseException):
                    raise item
                if item is not None and _rank(item.state) > _rank(last):
                    last = item.state
                    yield item
                    if last.final:
                        return
                if self._closed:
                    return
                item = await queue.get()
        finally:
            watchers = self._queues.get(call_id)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._queues[call_id]

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="call event stream")
            self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # A bug, not an outage: logged, and no watch is left waiting on a stream that is gone.
            log.error("the call event stream failed", exc_info=task.exception())
            self._synced = False
            self._tell_all(TransientError("the call event stream failed"))

    def _tell(self, call_id: str, item: Item) -> None:
        for queue in self._queues.get(call_id, ()):
            queue.put_nowait(item)

    def _tell_all(self, item: Item) -> None:
        for queues in self._queues.values():
            for queue in queues:
                queue.put_nowait(item)

    async def _run(self) -> None:
        failures = 0
        while not self._closed:
            try:
                async with self._open() as resp:
                    parser = SseParser()
                    async for chunk in resp.content.iter_any():
                        for sse in parser.feed(chunk):
                            if sse.event == "synced":
                                if failures:
                                    log.info("call event stream back after %d failed attempts", failures)
                                failures = 0
                                self._synced = True
                                self._tell_all(None)
                            elif sse.event == "state":
                                self._receive(sse.data)
                raise TransientError("the call event stream ended")
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                error: BridgeError = TransientError(f"call event stream: {str(exc) or type(exc).__name__}")
            except BridgeError as exc:
                error = exc
            if self._closed:
                break
            failures += 1
            if not isinstance(error, TransientError) or failures > self._max_reconnects:
                # Every watch fails with it; the next watch starts the stream again.
                log.warning("call event stream lost: %s", error)
                self._synced = False
                self._tell_all(error)
                return
            level = logging.INFO if failures == 1 else logging.DEBUG
            log.log(level, "call event stream lost (%s); reconnecting", error)
            await asyncio.sleep(RECONNECT.delay(failures, error.retry_after))
        self._tell_all(None)

    def _receive(self, data: str) -> None:
        event = self._parse(data)
        if event is None:
            return
        known = self._states.get(event.call_id)
        if known is not None and _rank(event.state) < _rank(known.state):
            return
        # Only live legs are kept: a watch that starts after its leg ended asks the call itself.
        if event.state.final:
            self._states.pop(event.call_id, None)
        else:
            self._states[event.call_id] = event
        self._tell(event.call_id, event)

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._tell_all(None)
