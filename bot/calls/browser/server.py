"""The joiner page's own web server: static files on 127.0.0.1, addressed as http://localhost by the browser."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).with_name("static")
REAL_SDK = STATIC / "sdk" / "calling.js"
"""The bundle of @azure/communication-calling that `make joiner` builds (not in git)."""
REAL_SDK_PATH = "/sdk/calling.js"
PAGE_PATH = "/joiner.html"


@web.middleware
async def _headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    # Nothing here is secret, but nothing is for anyone else either: no framing, no sniffing, no caching.
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    return response


class PageServer:
    """Serves joiner.html, joiner.js and the real SDK bundle. The Calling SDK refuses any origin but https:,
    file: and the host name localhost (http://127.0.0.1 fails with BAD_PROTOCOL), hence the name in the URL;
    the socket stays on loopback. No token ever passes here: they go through the page's Playwright binding."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.base = ""

    async def start(self) -> str:
        app = web.Application(middlewares=[_headers])
        app.router.add_static("/", STATIC, show_index=False, follow_symlinks=False)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://localhost:{port}"
        return self.base

    @property
    def page_url(self) -> str:
        return self.base + PAGE_PATH

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
