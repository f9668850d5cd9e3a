"""The relay assembled: presence, intake, the outbox workers and the meeting readers, started and stopped together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from functools import partial

from aiohttp import web

from ..config import RelaySection
from ..errors import BridgeError
from ..inflight import InFlight
from ..metrics import Metrics
from ..models import Direction
from ..sessions import ACTIVE
from ..store import Store, utcnow
from ..store.outage import outlasting
from ..tasks import TaskSet
from .chat_refused import ChatRefusals
from .identities import IdentityBroker
from .intake import Intake
from .ports import CallConnector, CallReports, Channel, ChatApi, IdentityApi
from .presence import Presence
from .reader import MeetingReaders
from .workers import InboundSender, OutboundDispatcher

log = logging.getLogger(__name__)
SWEEP_EVERY_S = 30.0
PRUNE_EVERY_S = 3600.0
Work = Callable[[str], Awaitable[float | None]]


async def _unit(units: InFlight, key: str, work: Work) -> float | None:
    """One unit of the outbox's work (a send into a thread, a delivery to a user, each with its result stored),
    counted, so a stop can let those under way finish rather than cut them; once closed, none starts."""
    if units.closed:
        return None  # the worker ends; what it would have done stays pending in the store for the next start
    with units.track():
        return await work(key)


# The outbox's own workers, each call of work() (one unit) counted: the outbox itself needs to know nothing of stops.
class _Sender(InboundSender):
    units: InFlight

    async def work(self, key: str) -> float | None:
        return await _unit(self.units, key, super().work)


class _Dispatcher(OutboundDispatcher):
    units: InFlight

    async def work(self, key: str) -> float | None:
        return await _unit(self.units, key, super().work)


class Relay:
    def __init__(
        self,
        store: Store,
        identity_api: IdentityApi,
        chat: ChatApi,
        connector: CallConnector,
        channels: Mapping[str, Channel],
        settings: RelaySection,
        metrics: Metrics | None = None,
        *,
        chat_events: bool = False,
        reports: CallReports | None = None,
    ) -> None:
        """`chat_events`: Event Grid chat events are subscribed (the readers then poll only meetings whose events
        do not arrive). `reports`: the connector again when the users' own apps hold the call legs and report on
        them."""
        self.store = store
        self.metrics = metrics or Metrics()
        self.tasks = TaskSet("relay")
        self.units = InFlight()
        self.broker = IdentityBroker(store, identity_api)
        self.presence = Presence(store, self.broker, connector, self, settings, self.tasks, reports)
        self.dispatcher = _Dispatcher(store, channels, settings, self.tasks, self.metrics)
        self.dispatcher.units = self.units
        self.sender = _Sender(store, chat, self.presence, settings, self.tasks, self.dispatcher, self.metrics)
        self.sender.units = self.units
        self.refusals = ChatRefusals(store, chat, settings, self.tasks, self, self.metrics)
        self.readers = MeetingReaders(
            store,
            chat,
            self.broker,
            self.dispatcher,
            settings,
            self.tasks,
            self.metrics,
            # A reader's 403 after a drop must not restart the leg's driver, which is re-joining by then.
            forbidden=partial(self.presence.forbidden, recheck=False),
            chat_events=chat_events,
        )
        self.intake = Intake(store, self.presence, settings, self, self.metrics)
        self._settings = settings
        self._chat = chat
        self.sweeps: list[Callable[[], Awaitable[object]]] = []
        """Housekeeping the periodic sweep runs after the inactivity check (e.g. retention pruning)."""

    # events from presence, intake and the chat refusals
    def in_call(self, meeting_id: str) -> None:
        self.readers.ensure(meeting_id)
        self.sender.wake(meeting_id)
        self.refusals.joined(meeting_id)

    async def chat_refused(self, meeting_id: str, reason: str) -> None:
        await self.refusals.refused(meeting_id, reason)

    def chat_back(self, meeting_id: str) -> None:
        self.sender.wake(meeting_id)
        self.readers.poke(meeting_id)

    def notify(self, user_id: str) -> None:
        self.dispatcher.wake(user_id)

    def queued(self, meeting_id: str) -> None:
        self.sender.wake(meeting_id)

    async def start(self) -> None:
        await self.broker.load()
        legs = await self.presence.resume()
        await self.refusals.resume()
        await self.readers.resume()
        await self.dispatcher.resume()
        for meeting_id in await self.store.pending_keys(Direction.INBOUND, "meeting_id"):
            self.sender.wake(meeting_id)
        self.tasks.spawn(self._sweep(), name="inactivity sweep")
        await self.prune_repeats()
        self.tasks.spawn(self._prune(), name="repeat-record pruning")
        if legs:
            log.info("resumed %d call legs", legs)

    async def prune_repeats(self) -> int:
        """Forget the provider ids of messages accepted longer ago than the retention (repeat_retention_days)."""
        days = self._settings.repeat_retention_days
        gone = await self.store.prune_inbox(utcnow() - timedelta(days=days))
        if gone:
            log.info("pruned %d repeat-detection records older than %g days", gone, days)
        return gone

    async def _prune(self) -> None:
        # At least twice per retention, so nothing outlives it by more than half of it; hourly at most.
        every = min(PRUNE_EVERY_S, self._settings.repeat_retention_days * 86400 / 2)
        while True:
            await asyncio.sleep(every)
            try:
                await outlasting(self.store, self.prune_repeats)
            except Exception as exc:  # either backend's driver error too: the next round tries again
                log.warning("pruning repeat-detection records failed: %s", exc)

    async def _sweep(self) -> None:
        while True:
            # Often enough that nobody stays much past the timeout.
            await asyncio.sleep(min(SWEEP_EVERY_S, self._settings.inactivity_timeout_s / 2))
            try:
                taken = await outlasting(self.store, self.presence.sweep_inactive)
            except BridgeError as exc:
                log.warning("inactivity sweep failed: %s", exc)
                continue
            if taken:
                log.info("took %d inactive sessions out of their calls", taken)
            for sweep in self.sweeps:
                try:
                    await sweep()
                except Exception as exc:  # housekeeping that failed once must not end the inactivity sweep too
                    log.warning("periodic sweep failed: %s", exc)

    async def forget(self, user_id: str) -> None:
        """Forget a user: leave every call, delete their ACS identity and every stored message of theirs."""
        user = await self.store.get_user(user_id)
        if user is None:
            return
        for session in await self.store.sessions(states=ACTIVE):
            if session.user_id == user_id:
                await self.presence.leave(session, "forgotten")
        if user.identity_id:
            await self._chat.forget(user.identity_id)
            await self.broker.delete(user.identity_id)
        await self.store.forget_user(user_id)

    def wind_down(self) -> int:
        """Start no new send or delivery; the number under way, which `units.settled()` waits for."""
        return self.units.close()

    async def stop(self) -> None:
        # Whatever is still running is cancelled: pending rows stay in the store, an interrupted send is looked up
        # by its bridgeId before it is sent again, and call legs are not left, so sessions resume on the next start.
        await self.tasks.close()


RELAY: web.AppKey[Relay] = web.AppKey("relay")
