"""Draining: once the bridge is told to stop, intake is turned away with 503 while the requests under way finish."""

from __future__ import annotations

from contextlib import AbstractContextManager

from aiohttp import web
from aiohttp.typedefs import Handler

from .admin.common import PREFIX as ADMIN_PREFIX
from .inflight import InFlight
from .refusal import refuse

# Long enough for a restart to come up; a client that honours it lands on the new process.
RETRY_AFTER_S = 5
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Drain:
    """Whether the bridge is stopping, and how many intake requests it still owes an answer."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._requests = InFlight()

    @property
    def active(self) -> bool:
        return self.reason is not None

    @property
    def in_flight(self) -> int:
        return self._requests.busy

    def begin(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self._requests.close()

    async def settled(self) -> None:
        """Returns once no intake request is under way; after begin() none starts, so it stays that way."""
        await self._requests.settled()

    def track(self) -> AbstractContextManager[None]:
        return self._requests.track()


DRAIN: web.AppKey[Drain] = web.AppKey("drain")


def is_intake(request: web.Request) -> bool:
    """Requests that store something: every inbound door, and the admin API's changes. Reads (health, metrics,
    the console's pages and event stream) keep being served while the bridge drains."""
    if request.path.startswith("/channels/"):
        return True
    admin = request.path == ADMIN_PREFIX or request.path.startswith(ADMIN_PREFIX + "/")
    return admin and request.method not in _SAFE_METHODS


@web.middleware
async def drain_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_intake(request):
        return await handler(request)
    drain = request.app[DRAIN]
    if drain.active:
        return refuse(503, "shutting_down", drain.reason or "", retry_after=RETRY_AFTER_S)
    # Counted from here on: a request that got past the check is finished (stored and answered) before the stop.
    with drain.track():
        return await handler(request)
