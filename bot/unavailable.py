"""While the store cannot be reached, a request that needs it is answered 503 with Retry-After, never a 500."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from .refusal import refuse
from .store import StoreUnavailableError

log = logging.getLogger(__name__)
# A database restart takes a few seconds; a sender that honours this comes back once it is over (the store logs
# the outage, once when it starts and once when it ends).
RETRY_AFTER_S = 5


@web.middleware
async def store_unavailable_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except StoreUnavailableError:
        # Nothing of this request was acknowledged: what it stored before failing (if anything) is found again by
        # its provider id when it is repeated, so the repeat is answered as the first try would have been.
        log.debug("%s %s refused: the store is unavailable", request.method, request.path)
        return refuse(
            503, "store_unavailable", "the bridge cannot store anything right now; try again", retry_after=RETRY_AFTER_S
        )
