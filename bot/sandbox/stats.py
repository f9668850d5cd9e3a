"""Request counts by route, and open call event streams: how benchmarks see what a client asked of the sandbox."""

from __future__ import annotations

from collections import Counter

from aiohttp import web
from aiohttp.typedefs import Handler

from .keys import STATS
from .web_util import json_response

routes = web.RouteTableDef()


class RequestStats:
    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.streams_open = 0
        """Call event streams (server-sent events) being served right now."""

    def reset(self) -> None:
        self.requests.clear()


@web.middleware
async def stats_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Counted by route template, not by path: "GET /chat/threads/{thread}/messages" sums every thread's reads.
    info = request.match_info
    route = info.route.resource.canonical if info.route.resource is not None else "unmatched"
    request.app[STATS].requests[f"{request.method} {route}"] += 1
    return await handler(request)


@routes.get("/sandbox/v1/stats")
async def get_stats(request: web.Request) -> web.Response:
    stats = request.app[STATS]
    body = {"requests": dict(sorted(stats.requests.items())), "callStreamsOpen": stats.streams_open}
    return json_response(body)


@routes.delete("/sandbox/v1/stats")
async def reset_stats(request: web.Request) -> web.Response:
    request.app[STATS].reset()
    return web.Response(status=204)
