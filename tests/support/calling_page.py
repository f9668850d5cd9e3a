"""A test page for Calling SDK modules (the sandbox's stand-in, the real bundle) in headless Chromium.

The page is served over http://localhost by a small server of the test's own, imports the SDK module named in
its query, and drives it through `window.harness` (calling_harness.js). Each stateChanged and
connectionStateChanged is logged in the page, so a test waits for a state instead of sleeping.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from bot.sandbox.calling_standin import PREFIX

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Every name but localhost fails to resolve: the page can reach only loopback, whatever the SDK tries.
LOOPBACK_ONLY = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost"
STANDIN_DIR = Path(__file__).parents[2] / "bot" / "sandbox" / "calling_standin"
BUNDLE = Path(__file__).parents[2] / "bot" / "calls" / "browser" / "static" / "sdk" / "calling.js"
HARNESS = Path(__file__).with_name("calling_harness.js")
WAIT_MS = 20_000

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Calling SDK test page</title></head>
<body><script type="module" src="/harness.js"></script></body></html>
"""


def require_chromium() -> None:
    if shutil.which("chromium") is None and not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it)")


class PageServer:
    """Serves the test page and harness; /standin/ has the stand-in's files on the page's own origin."""

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/harness.js", self._file(HARNESS))
        app.router.add_get("/sdk/calling.js", self._file(BUNDLE))
        for path in STANDIN_DIR.glob("*.js"):
            app.router.add_get(f"/standin/{path.name}", self._file(path))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    def _file(self, path: Path) -> Any:
        async def serve(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(path, headers={"Content-Type": "text/javascript", "Cache-Control": "no-cache"})

        return serve

    def url(self, sdk: str, host: str = "localhost") -> str:
        return f"http://{host}:{self.port}/?sdk={quote(sdk, safe='')}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@asynccontextmanager
async def page_server() -> AsyncIterator[PageServer]:
    server = PageServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def standin_url(endpoint: str) -> str:
    """Where the sandbox serves the stand-in module."""
    return endpoint.rstrip("/") + PREFIX + "/standin.js"


class Harness:
    """One page with the harness loaded: thin async wrappers over window.harness."""

    def __init__(self, page: Any) -> None:
        self.page = page

    async def open(self, url: str) -> None:
        await self.page.goto(url)
        await self.page.wait_for_function("window.harness !== undefined || window.harnessError !== undefined")
        error = await self.page.evaluate("window.harnessError ?? null")
        assert error is None, error

    async def create_agent(self, key: str, token: str, name: str = "Ann (SMS)") -> dict[str, Any]:
        result: dict[str, Any] = await self.page.evaluate(
            "([key, token, name]) => harness.createAgent(key, token, name)", [key, token, name]
        )
        return result

    async def join(self, key: str, locator: dict[str, str]) -> dict[str, Any]:
        result: dict[str, Any] = await self.page.evaluate("([k, l]) => harness.join(k, l)", [key, locator])
        return result

    async def call(self, call_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.page.evaluate("(id) => harness.call(id)", call_id)
        return result

    async def wait_state(self, call_id: str, state: str, timeout_ms: int = WAIT_MS) -> dict[str, Any]:
        await self.page.wait_for_function(
            "([id, state]) => harness.call(id).state === state", arg=[call_id, state], timeout=timeout_ms
        )
        return await self.call(call_id)

    async def states(self, call_id: str) -> list[str]:
        log = await self.page.evaluate(
            "(id) => harness.log.filter((e) => e.callId === id).map((e) => e.state)", call_id
        )
        return [str(state) for state in log]

    async def connection_log(self, key: str) -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = await self.page.evaluate("(key) => harness.log.filter((e) => e.agent === key)", key)
        return log

    async def run(self, method: str, *args: Any) -> Any:
        return await self.page.evaluate("([m, args]) => harness[m](...args)", [method, list(args)])
