"""BrowserConnector: the CallConnector that holds each call leg in Microsoft's Calling SDK in headless Chromium."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, Mapping

from ...config import BrowserSection
from ...errors import BridgeError, NotFoundError, PermanentError, TransientError
from ...models import CallEvent, CallHandle, CallState
from ...tasks import TaskSet
from ..base import TokenSource, check_join, token_of
from ..states import Outcome, Verdict
from .chromium import Chromium, JoinerPage
from .legs import Item, Leg, join_failure, read_report
from .server import REAL_SDK, REAL_SDK_PATH, PageServer
from .trust import pin_for

log = logging.getLogger(__name__)
MAX_FINISHED_LEGS = 1000
LEAVE_TIMEOUT_S = 10.0


class BrowserConnector:
    """Joins each ACS identity in its own CallClient and CallAgent, several to a page, in one Chromium.

    Call ids are the connector's own: a leg lives as long as its page, so after a restart or a browser crash
    every id is unknown (NotFoundError), and the bridge joins again. The page asks for tokens through a binding
    whenever the SDK wants one, so a leg outlives its first token. `start` launches the browser; `close` hangs
    up every leg, then closes it.
    """

    def __init__(
        self,
        settings: BrowserSection,
        *,
        sdk_url: str | None = None,
        ca_file: str | None = None,
        trusted: tuple[str, ...] = (),
    ) -> None:
        self._settings = settings
        self._sdk_url = sdk_url
        self._ca_file = ca_file
        self._trusted = trusted
        self._server = PageServer()
        self._chromium: Chromium | None = None
        self._legs: dict[str, Leg] = {}
        self._finished: OrderedDict[str, Leg] = OrderedDict()
        self._pages_lock = asyncio.Lock()
        self._tasks = TaskSet("browser connector")
        self._closed = False

    @property
    def sdk(self) -> str:
        """Which Calling SDK the pages load, for the run banner."""
        return self._sdk_url or "the real @azure/communication-calling bundle"

    @property
    def browser(self) -> Chromium:
        if self._chromium is None:
            raise PermanentError("The browser connector has not been started.")
        return self._chromium

    @property
    def live_legs(self) -> int:
        return len(self._legs)

    async def start(self) -> None:
        base = await self._server.start()
        sdk_url = self._sdk_url
        if sdk_url is None:
            if not REAL_SDK.is_file():
                raise PermanentError(f"the Calling SDK bundle {REAL_SDK} is missing: run make joiner")
            sdk_url = base + REAL_SDK_PATH
        pins: list[str] = []
        if self._ca_file is not None:
            # Only servers with the local CA (the sandbox, serving the stand-in) are pinned; the real SDK talks to
            # Azure under the browser's own trust.
            for url in {u for u in (sdk_url, *self._trusted) if u.startswith("https://")}:
                pins.append(await pin_for(url, self._ca_file))
        self._chromium = Chromium(self._settings, self._server.page_url, sdk_url, sorted(set(pins)), self)
        await self._chromium.start()

    # the port -----------------------------------------------------------------------------------------------

    async def join(
        self,
        token: str | TokenSource,
        *,
        meeting_link: str | None = None,
        meeting_id: str | None = None,
        passcode: str | None = None,
        display_name: str,
    ) -> CallHandle:
        check_join(meeting_link, meeting_id, passcode, display_name)
        self._check_open()
        if len(self._legs) >= self._settings.max_legs:
            raise PermanentError(
                f"the bridge already holds its most call legs ({self._settings.max_legs}, calls.browser.max_legs); "
                "try again later"
            )
        leg = Leg(uuid.uuid4().hex, token)
        self._legs[leg.id] = leg
        args = {"displayName": display_name}
        if meeting_link:
            args["meetingLink"] = meeting_link
        else:
            args |= {"meetingId": meeting_id or "", "passcode": passcode or ""}
        page: JoinerPage | None = None
        try:
            page = await self._page_for(leg)
            first = await self.browser.call(
                page, "([id, args]) => joiner.join(id, args)", [leg.id, args], self._settings.join_timeout_s
            )
            if isinstance(first, dict):
                self._report(leg, first)
            if leg.state is None:
                raise TransientError("the joiner page gave no state for the call")
        except BridgeError as exc:
            if leg.state is not None and leg.state.final:
                # Its end was reported (or its page lost) before the page answered: that says why.
                raise join_failure(leg) from exc
            await self._abandon(leg, exc)
            raise
        finally:
            leg.joining = False
            if page is not None and not page.legs and not page.lost and not self._closed:
                self._tasks.spawn(self._recycle(page), name="recycle a joiner page")
        if leg.state.final:
            raise join_failure(leg)
        return CallHandle(leg.id, leg.state, leg.thread_id)

    async def leave(self, call_id: str, token: str) -> None:
        leg = self._legs.get(call_id)
        if leg is None:
            return  # finished or unknown: nothing to hang up
        page = leg.page
        if page is not None:
            try:
                await self.browser.call(page, "id => joiner.hangUp(id)", call_id, LEAVE_TIMEOUT_S)
            except TransientError as exc:
                log.warning("call leg %s: hang-up failed (%s); it ends with its page", call_id, exc)
        # The page reports the hang-up itself; this covers a page that could not.
        self._end(leg, Outcome(Verdict.LEFT))

    async def get(self, call_id: str, token: str) -> CallHandle:
        leg = self._leg(call_id)
        return CallHandle(leg.id, leg.state or CallState.LOBBY, leg.thread_id)

    async def watch(self, call_id: str, token: str | TokenSource) -> AsyncGenerator[CallEvent, None]:
        leg = self._leg(call_id)
        if not isinstance(token, str) and leg.state is not None and not leg.state.final:
            leg.token = token  # the caller's source outlives the one the join was handed
        if self._closed:
            return
        queue: asyncio.Queue[Item] = asyncio.Queue()
        leg.watchers.add(queue)
        try:
            last: CallState | None = None
            item: Item = leg.error or (leg.event() if leg.state is not None else None)
            while True:
                if isinstance(item, BridgeError):
                    raise item
                if isinstance(item, CallEvent) and item.state != last:
                    last = item.state
                    yield item
                    if last.final:
                        return
                if self._closed:
                    return
                item = await queue.get()
                if item is None:
                    return
        finally:
            leg.watchers.discard(queue)

    async def close(self) -> None:
        """Hang up every leg (the next start joins them again), then close the browser and the page server."""
        if self._closed:
            return
        self._closed = True
        chromium = self._chromium
        if chromium is not None:
            pages = [p for p in chromium.pages if not p.lost]
            hung_up = await asyncio.gather(
                *(chromium.call(p, "() => joiner.dispose()", None, LEAVE_TIMEOUT_S) for p in pages),
                return_exceptions=True,
            )
            held = sum(n for n in hung_up if isinstance(n, int))
            if held:
                log.info("hung up %d call legs", held)
        for leg in list(self._legs.values()):
            for queue in leg.watchers:
                queue.put_nowait(None)
        await self._tasks.close(grace_s=LEAVE_TIMEOUT_S)
        if chromium is not None:
            await chromium.close()
        await self._server.close()

    # events from the browser ---------------------------------------------------------------------------------

    def report(self, page: JoinerPage, leg_id: str, body: object) -> None:
        leg = self._legs.get(leg_id)
        if leg is not None and leg.page is page and isinstance(body, dict):
            self._report(leg, body)

    async def token(self, page: JoinerPage, leg_id: str) -> str:
        leg = self._legs.get(leg_id)
        if leg is None or leg.page is not page:
            raise PermanentError("no such call leg")
        return await token_of(leg.token)

    def page_lost(self, page: JoinerPage, reason: str) -> None:
        for leg_id in list(page.legs):
            leg = self._legs.get(leg_id)
            if leg is not None:
                self._end(leg, Outcome(Verdict.DROPPED, reason))

    # the legs -------------------------------------------------------------------------------------------------

    def _report(self, leg: Leg, body: Mapping[str, object]) -> None:
        reading = read_report(body)
        if reading.thread_id is not None:
            leg.thread_id = reading.thread_id
        if reading.state is not None and leg.advance(reading.state):
            leg.tell(leg.event())
        if reading.end is not None:
            self._end(leg, reading.end)

    def _end(self, leg: Leg, outcome: Outcome) -> None:
        if not leg.end(outcome):
            return
        if outcome.verdict == Verdict.FAILED:
            log.warning("call leg %s failed: %s", leg.id, outcome.reason)
        elif outcome.verdict not in (Verdict.LEFT, Verdict.ENDED, Verdict.REMOVED):
            log.info("call leg %s lost: %s", leg.id, outcome.reason)
        leg.tell(leg.error or leg.event())
        self._release(leg)

    def _release(self, leg: Leg) -> None:
        self._legs.pop(leg.id, None)
        self._finished[leg.id] = leg
        while len(self._finished) > MAX_FINISHED_LEGS:
            self._finished.popitem(last=False)
        page, leg.page = leg.page, None
        if page is not None:
            page.legs.discard(leg.id)
            if not page.legs and not page.lost and not self._closed and not leg.joining:
                self._tasks.spawn(self._recycle(page), name="recycle a joiner page")

    async def _abandon(self, leg: Leg, error: BridgeError) -> None:
        """A join that failed on the way: hang up whatever the page may still hold of it, and forget the leg."""
        page = leg.page
        if page is not None and not page.lost and not (leg.state is not None and leg.state.final):
            try:
                await self.browser.call(page, "id => joiner.hangUp(id)", leg.id, LEAVE_TIMEOUT_S)
            except TransientError:
                pass  # the page is going anyway
        self._end(leg, Outcome(Verdict.DROPPED, str(error)))

    async def _page_for(self, leg: Leg) -> JoinerPage:
        """A page with room for one more leg, opening one if none has room; the leg is counted on it at once."""
        async with self._pages_lock:
            for page in self.browser.pages:
                if not page.lost and len(page.legs) < self._settings.legs_per_page:
                    break
            else:
                page = await self.browser.open_page()
            self._check_open()
            if leg.state is not None:
                raise TransientError(leg.reason or "the call leg ended while it was joined")
            page.legs.add(leg.id)
            leg.page = page
            return page

    async def _recycle(self, page: JoinerPage) -> None:
        async with self._pages_lock:
            if page.legs or page.lost:
                return
            await self.browser.recycle(page)

    def _leg(self, call_id: str) -> Leg:
        leg = self._legs.get(call_id) or self._finished.get(call_id)
        if leg is None:
            raise NotFoundError(f"Call {call_id} is not known to this connector.")
        return leg

    def _check_open(self) -> None:
        if self._closed:
            raise PermanentError("The call connector is closed.")
