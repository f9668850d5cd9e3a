"""One headless Chromium through Playwright: launched on demand, its joiner pages, and word when any of it dies."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from playwright.async_api import Browser, BrowserContext, Page, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from ...config import BrowserSection
from ...errors import PermanentError, TransientError
from ...tasks import TaskSet
from . import process

log = logging.getLogger(__name__)

# The reference set-up (shared/reference/calling-sdk.md): new headless, fake media UI so no permission prompt
# waits, autoplay so the silent WebAudio source runs, and none of Chromium's own background traffic.
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAUNCH_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 5.0


@dataclass(eq=False)
class JoinerPage:
    """One page of the joiner, holding up to calls.browser.legs_per_page legs; its identity is the object."""

    page: Page
    generation: int
    legs: set[str] = field(default_factory=set)
    lost: bool = False
    ready: bool = False
    """Loaded, with the SDK imported: only then does the heartbeat ask it anything."""


class ChromiumEvents(Protocol):
    def report(self, page: JoinerPage, leg_id: str, body: object) -> None:
        """A leg's page told of a change (the bridgeReport binding)."""

    def token(self, page: JoinerPage, leg_id: str) -> Awaitable[str]:
        """A leg's page asks for a current voip token (the bridgeToken binding)."""

    def page_lost(self, page: JoinerPage, reason: str) -> None:
        """The page crashed, hung or went with its browser: every leg it held is gone."""


class Chromium:
    """The bridge process's one browser. Launched when a page is first wanted and again after it died, so a crash
    costs the legs it held and the time of one launch, never the bridge.

    A crash is seen three ways: the browser's connection closing ('disconnected': a killed or crashed browser), a
    page's 'crash' (its renderer died), and a heartbeat that evaluates a no-op in every page and gives up on one
    that does not answer in time (a hung renderer). A browser none of whose pages answer is killed outright.
    """

    def __init__(
        self, settings: BrowserSection, page_url: str, sdk_url: str, pins: list[str], events: ChromiumEvents
    ) -> None:
        self._settings = settings
        self._page_url = page_url
        self._sdk_url = sdk_url
        self._pins = pins
        self._events = events
        self._tasks = TaskSet("chromium")
        self._lock = asyncio.Lock()
        self._pw: Playwright | None = None
        self._browser: Browser | None = None
        self._context: BrowserContext | None = None
        self._pages: dict[Page, JoinerPage] = {}
        self._generation = 0
        self._marker = ""
        self._closing = False
        self.pid: int | None = None
        self.launches = 0

    @property
    def running(self) -> bool:
        return self._browser is not None

    @property
    def pages(self) -> list[JoinerPage]:
        return list(self._pages.values())

    async def start(self) -> None:
        """Launch now, so a missing or broken Chromium shows when the bridge starts rather than at a join."""
        async with self._lock:
            await self._launch()

    async def _launch(self) -> None:
        if self._browser is not None:
            return
        if self._closing:
            raise PermanentError("The call connector is closed.")
        if not await asyncio.to_thread(Path(self._settings.chromium).is_file):
            raise PermanentError(f"calls.browser.chromium: {self._settings.chromium} does not exist")
        if self._pw is None:
            self._pw = await async_playwright().start()
        self._marker = uuid.uuid4().hex
        # A pin trusts the one server certificate Python verified (trust.py), never every certificate: the
        # context's ignore_https_errors stays off, with the real SDK and the stand-in alike.
        pins = [f"--ignore-certificate-errors-spki-list={','.join(self._pins)}"] if self._pins else []
        try:
            browser = await self._pw.chromium.launch(
                executable_path=self._settings.chromium,
                headless=True,
                args=[*FLAGS, *pins, *self._settings.args, process.marker_switch(self._marker)],
                # The bridge's own stop hangs the legs up first; Playwright must not kill the browser on a signal.
                handle_sigint=False,
                handle_sigterm=False,
                handle_sighup=False,
                timeout=LAUNCH_TIMEOUT_S * 1000,
            )
            context = await browser.new_context(user_agent=self._settings.user_agent)
            await context.expose_binding("bridgeReport", self._on_report)
            await context.expose_binding("bridgeToken", self._on_token)
        except PlaywrightError as exc:
            raise TransientError(f"the browser could not start: {exc.message}") from exc
        self._generation += 1
        generation = self._generation
        browser.on("disconnected", lambda _: self._disconnected(generation))
        self._browser, self._context = browser, context
        self.pid = process.find_root(self._marker)
        self.launches += 1
        self._tasks.spawn(self._heartbeat(generation), name="browser heartbeat")
        log.info("browser started (Chromium %s, pid %s)", browser.version, self.pid)

    async def open_page(self) -> JoinerPage:
        """A new page with the SDK loaded, launching the browser first if none runs."""
        async with self._lock:
            await self._launch()
            assert self._context is not None
            context, generation = self._context, self._generation
        timeout = self._settings.page_timeout_s
        try:
            page = await context.new_page()
        except PlaywrightError as exc:
            raise TransientError(f"the browser could not open a page: {exc.message}") from exc
        joiner = JoinerPage(page, generation)
        self._pages[page] = joiner
        page.on("crash", lambda _: self.lose(joiner, "the browser page holding the call crashed"))
        # The page's own errors, at DEBUG: an SDK message is no place to look for a token, but nor is INFO.
        page.on("pageerror", lambda error: log.debug("joiner page error: %s", error))
        try:
            await asyncio.wait_for(page.goto(self._page_url), timeout)
            await asyncio.wait_for(page.wait_for_function("() => globalThis.joiner !== undefined"), timeout)
            await asyncio.wait_for(page.evaluate("url => joiner.init(url)", self._sdk_url), timeout)
        except (PlaywrightError, TimeoutError) as exc:
            self.lose(joiner, "the joiner page did not load")
            message = exc.message if isinstance(exc, PlaywrightError) else f"no answer within {timeout:g} s"
            raise TransientError(f"the joiner page could not load the Calling SDK: {message}") from exc
        joiner.ready = True
        return joiner

    async def call(self, joiner: JoinerPage, expression: str, arg: Any, limit_s: float) -> Any:
        """page.evaluate, bounded; a page that is gone or does not answer is a TransientError."""
        if joiner.lost:
            raise TransientError("the browser page holding the call is gone")
        try:
            return await asyncio.wait_for(joiner.page.evaluate(expression, arg), limit_s)
        except TimeoutError as exc:
            raise TransientError(f"the joiner page did not answer within {limit_s:g} s") from exc
        except PlaywrightError as exc:
            raise TransientError(f"the joiner page failed: {exc.message}") from exc

    def lose(self, joiner: JoinerPage, reason: str) -> None:
        """Give a page up: its legs are reported gone, and the page is closed (the browser killed if it will not)."""
        if joiner.lost:
            return
        joiner.lost = True
        self._pages.pop(joiner.page, None)
        if not self._closing:
            log.warning("browser page lost (%s) with %d call legs", reason, len(joiner.legs))
        self._events.page_lost(joiner, reason)
        # A page of a browser that is gone has nothing left to close.
        if not self._closing and self._browser is not None and joiner.generation == self._generation:
            self._tasks.spawn(self._close_page(joiner), name="close a lost page")

    async def recycle(self, joiner: JoinerPage) -> None:
        """Close a page that holds no legs any more."""
        if joiner.lost:
            return
        joiner.lost = True
        self._pages.pop(joiner.page, None)
        await self._close_page(joiner)

    async def _close_page(self, joiner: JoinerPage) -> None:
        try:
            await asyncio.wait_for(joiner.page.close(), CLOSE_TIMEOUT_S)
        except PlaywrightError:
            pass  # gone already
        except TimeoutError:
            self.kill("a page would not close")

    def kill(self, why: str) -> None:
        """SIGKILL the browser; its 'disconnected' then reports every leg and the next page launches a new one."""
        if self.pid is not None:
            log.warning("killing the browser (pid %d): %s", self.pid, why)
            process.kill(self.pid)

    def _disconnected(self, generation: int) -> None:
        if generation != self._generation or self._browser is None:
            return
        self._browser = self._context = None
        self.pid = None
        if not self._closing:
            log.warning("the browser stopped; its call legs are joined again in a new one")
        for joiner in list(self._pages.values()):
            self.lose(joiner, "the browser holding the call stopped")

    async def _heartbeat(self, generation: int) -> None:
        while generation == self._generation and self._browser is not None:
            await asyncio.sleep(self._settings.heartbeat_s)
            pages = [p for p in self._pages.values() if p.generation == generation and p.ready]
            if not pages:
                continue
            answers = await asyncio.gather(*(self._ping(p) for p in pages))
            if not any(answers) and generation == self._generation and self._browser is not None:
                self.kill("no page answered its heartbeat")

    async def _ping(self, joiner: JoinerPage) -> bool:
        try:
            await asyncio.wait_for(joiner.page.evaluate("() => joiner.ping()"), self._settings.heartbeat_timeout_s)
            return True
        except TimeoutError:
            self.lose(joiner, "the browser page holding the call stopped answering")
        except PlaywrightError:
            if not joiner.lost:
                self.lose(joiner, "the browser page holding the call is gone")
        return False

    async def _on_report(self, source: dict[str, Any], leg_id: object, body: object) -> None:
        joiner = self._pages.get(source.get("page"))  # type: ignore[arg-type]
        if joiner is not None and isinstance(leg_id, str):
            self._events.report(joiner, leg_id, body)

    async def _on_token(self, source: dict[str, Any], leg_id: object) -> str:
        joiner = self._pages.get(source.get("page"))  # type: ignore[arg-type]
        if joiner is None or not isinstance(leg_id, str):
            raise PermanentError("no such call leg")
        return await self._events.token(joiner, leg_id)

    async def close(self) -> None:
        """Close the browser and Playwright; the caller hangs the legs up first."""
        self._closing = True
        await self._tasks.close(grace_s=CLOSE_TIMEOUT_S)
        browser, self._browser, self._context = self._browser, None, None
        if browser is not None:
            try:
                await asyncio.wait_for(browser.close(), CLOSE_TIMEOUT_S)
            except (PlaywrightError, TimeoutError):
                self.kill("it would not close")
        self._pages.clear()
        if self._pw is not None:
            await self._pw.stop()
            self._pw = None
