"""A database outage: noticed on the first failure, logged once when it starts and once when it ends."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .base import StoreBase, StoreUnavailableError

log = logging.getLogger(__name__)
_T = TypeVar("_T")
PROBE_EVERY_S = 0.5
"""While the database is away, how often it is asked whether it is back: the gap between its return and the doors
taking messages again."""


class Outage:
    """While one lasts, the store fails fast (no request waits on a connection that cannot be made) and a probe
    asks the database every PROBE_EVERY_S; the first probe that succeeds ends it and wakes whoever waits."""

    def __init__(self, name: str, probe: Callable[[], Awaitable[object]]) -> None:
        self._name = name
        """The store's URL without its password."""
        self._probe = probe
        self._since: float | None = None
        self._reason = ""
        self._back = asyncio.Event()
        self._back.set()
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self._since is not None

    def refusal(self) -> StoreUnavailableError:
        """The error for a call made during the outage, without trying the database."""
        return StoreUnavailableError(f"the store is unavailable ({self._reason})")

    def failed(self, exc: BaseException) -> StoreUnavailableError:
        """A call could not reach the database: start the outage if none is under way; the error to raise."""
        if self._since is None:
            self._since = time.monotonic()
            # The driver's words for what failed (refused, shutting down, starting up): never a password.
            self._reason = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
            self._back.clear()
            log.warning("store %s is unavailable (%s): doors answer 503 until it is back", self._name, self._reason)
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="store outage probe")
        return self.refusal()

    async def wait(self) -> None:
        await self._back.wait()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(PROBE_EVERY_S)
            try:
                await self._probe()
            except Exception as exc:
                log.debug("store still unavailable: %s", type(exc).__name__)
                continue
            break
        assert self._since is not None
        log.info("store %s is available again after %.1f s", self._name, time.monotonic() - self._since)
        self._since, self._task = None, None
        self._back.set()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def outlasting(store: StoreBase, work: Callable[[], Awaitable[_T]]) -> _T:
    """Run `work`; each time the store turns out unavailable, wait until it is back and run it again from the start.

    For background work that only moves data between the store and a peer (a reader, a sender's step, a call leg's
    watch): the store holds where each stands, so starting again loses nothing. The outage itself is logged once by
    the store; this says nothing more."""
    while True:
        try:
            return await work()
        except StoreUnavailableError:
            await store.available()
            # Not at once even so: a database that answers the probe but refuses this work must not spin the loop.
            await asyncio.sleep(PROBE_EVERY_S)
