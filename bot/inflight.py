"""InFlight: work under way, counted, so that a stop can refuse new work and wait for what had started."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager


class InFlight:
    """How many units of work are under way; `settled()` returns once none is. After `close()` callers start no
    new unit (they check `closed`: what the refusal looks like is theirs to say), so the count only falls."""

    def __init__(self) -> None:
        self._busy = 0
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> int:
        """Start no new unit from now on; returns how many are under way."""
        self._closed = True
        return self._busy

    @contextmanager
    def track(self) -> Iterator[None]:
        """Count the block as one unit while it runs, whether it returns or raises."""
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._idle.set()

    async def settled(self) -> None:
        """Returns once no unit is under way (at once when none is)."""
        await self._idle.wait()
