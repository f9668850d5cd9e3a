"""The bridge's HTTP server: each stage of a request bounded in time, and the connections of one peer capped.

aiohttp bounds the request head's size (max_line_size, max_field_size, max_headers: 8190 bytes, 8190 bytes, 128)
and closes a connection that has no request under way after keepalive_timeout, counted from its opening or its
last answer. It bounds neither the time a head takes to arrive once begun, nor the body's, nor how many
connections one address holds. This module adds those (http.* settings):

- head: from a request's first byte, http.head_timeout_s to finish its head, or 408 and the connection closes;
- body: from the head, http.body_timeout_s to finish the body; every reader of it (read_body, request.read(),
  request.post()) then raises BodyTimeout, answered 408, and the connection closes;
- idle: aiohttp's keepalive_timeout, set to http.idle_timeout_s;
- peers: beyond http.max_connections_per_peer open connections from one address, a new one is answered 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

from aiohttp import web
from aiohttp.log import access_logger
from aiohttp.streams import StreamReader
from aiohttp.typedefs import Handler

from .config import HttpSection
from .peers import peer_key
from .refusal import refuse

log = logging.getLogger(__name__)


class BodyTimeout(TimeoutError):
    """The request's body did not arrive in time. A TimeoutError, so aiohttp's discarding of an unread body after
    the answer (its "lingering") takes it quietly."""


def _raw_answer(status: int, phrase: str, body: dict[str, str], headers: str = "") -> bytes:
    """An answer written straight to a connection that has no request being handled to answer through."""
    data = json.dumps(body).encode()
    head = f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json; charset=utf-8\r\n{headers}"
    return f"{head}Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data


class PeerConnections:
    """Open connections by peer (see peer_key). A peer at the cap is warned about once a spell: the spell ends when
    it holds fewer than half the cap, so a peer hovering at the cap does not fill the log."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: dict[str, int] = {}
        self._warned: set[str] = set()

    def admit(self, peer: str) -> bool:
        count = self._open.get(peer, 0)
        if self.cap and count >= self.cap:
            if peer not in self._warned:
                self._warned.add(peer)
                log.warning("%s holds %d connections, the most one address may: further ones are refused", peer, count)
            return False
        self._open[peer] = count + 1
        return True

    def release(self, peer: str) -> None:
        count = self._open.pop(peer, 1) - 1
        if count > 0:
            self._open[peer] = count
        if count < self.cap / 2:
            self._warned.discard(peer)


class BoundedHandler(web.RequestHandler):
    """aiohttp's protocol for one connection, with the head deadline and the peer cap. The body deadline is set by
    deadline_middleware, which also tells the protocol when a request is under way."""

    def __init__(self, manager: web.Server, *, limits: HttpSection, peers: PeerConnections, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits, self._peers = limits, peers
        self._peer: str | None = None
        self._serving: web.BaseRequest | None = None
        self._draining: StreamReader | None = None
        """The body of the last request when its answer went before all of it came (aiohttp discards the rest)."""
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peername = transport.get_extra_info("peername")
        peer = peer_key(peername[0] if isinstance(peername, tuple) else None)
        if not self._peers.admit(peer):
            reason = f"this address has {self._peers.cap} connections open already; close one, or retry"
            refusal = {"error": "too_many_connections", "reason": reason}
            assert isinstance(transport, asyncio.Transport)
            transport.write(_raw_answer(503, "Service Unavailable", refusal, "Retry-After: 1\r\n"))
            transport.close()
            return
        self._peer = peer
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_timer()
        if self._peer is not None:
            self._peers.release(self._peer)
            self._peer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._peer is None:
            return  # refused: closing
        super().data_received(data)
        if data and self._head_timer is None and self._awaiting_head():
            loop = asyncio.get_running_loop()
            self._head_timer = loop.call_later(self._limits.head_timeout_s, self._head_expired)

    def _awaiting_head(self) -> bool:
        return self._serving is None and (self._draining is None or self._draining.is_eof())

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.transport is None or not self._awaiting_head():
            return
        reason = f"the request's head did not arrive within {self._limits.head_timeout_s:g} s"
        self.transport.write(_raw_answer(408, "Request Timeout", {"error": "request_timeout", "reason": reason}))
        self.force_close()  # closing flushes what was written first

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def request_started(self, request: web.BaseRequest) -> asyncio.TimerHandle | None:
        """The head is in: its timer stops, and the body's starts (the handle to cancel), if a body is coming."""
        self._stop_head_timer()
        self._serving, self._draining = request, None
        body = request.content
        if body.is_eof():
            return None
        limit = self._limits.body_timeout_s

        def expire() -> None:
            if not body.is_eof():
                body.set_exception(BodyTimeout(f"the request's body did not arrive within {limit:g} s"))

        return asyncio.get_running_loop().call_later(limit, expire)

    def request_finished(self, request: web.BaseRequest) -> None:
        self._serving = None
        self._draining = None if request.content.is_eof() else request.content


@web.middleware
async def deadline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    protocol = request.protocol
    if not isinstance(protocol, BoundedHandler):
        return await handler(request)
    body_timer = protocol.request_started(request)
    try:
        return await handler(request)
    except BodyTimeout as exc:
        response = refuse(408, "request_timeout", str(exc))
        response.force_close()
        return response
    finally:
        if body_timer is not None:
            body_timer.cancel()
        protocol.request_finished(request)


class BoundedRunner(web.AppRunner):
    """An AppRunner whose sites speak through BoundedHandler; it puts deadline_middleware first on the app."""

    def __init__(self, app: web.Application, limits: HttpSection, **kwargs: Any) -> None:
        # Outermost, before the app freezes at setup: every request, even one the drain turns away, is timed.
        app.middlewares.insert(0, deadline_middleware)
        self._handler_kwargs: dict[str, Any] = {
            "keepalive_timeout": limits.idle_timeout_s,
            "access_log": kwargs.get("access_log", access_logger),
        }
        super().__init__(app, keepalive_timeout=limits.idle_timeout_s, **kwargs)
        self.limits = limits
        self.peers = PeerConnections(limits.max_connections_per_peer)

    def protocol(self) -> BoundedHandler:
        """The protocol factory a site listens with: one BoundedHandler per connection."""
        assert self.server is not None, "setup() first"
        loop = asyncio.get_running_loop()
        return BoundedHandler(self.server, limits=self.limits, peers=self.peers, loop=loop, **self._handler_kwargs)


class BoundedSite(web.BaseSite):
    """A listening socket (host and port, or one already bound) served by a BoundedRunner's protocol."""

    def __init__(
        self, runner: BoundedRunner, host: str | None = None, port: int = 0, *, sock: socket.socket | None = None
    ) -> None:
        super().__init__(runner)
        self._bounded, self._host, self._port, self._sock = runner, host, port, sock

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}" if self._sock is None else f"http://{self._sock.getsockname()}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        if self._sock is not None:
            self._server = await loop.create_server(self._bounded.protocol, sock=self._sock, backlog=self._backlog)
        else:
            self._server = await loop.create_server(
                self._bounded.protocol, self._host, self._port, backlog=self._backlog
            )
