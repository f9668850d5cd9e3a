"""A readiness check's answer kept for a few seconds: /readyz is unauthenticated, and each call must not cost one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

READY_CACHE_S = 5.0
"""Short against a load balancer's probe interval (typically 5-30 s), long against anyone calling in a loop."""


class CachedCheck:
    """Runs `check` at most once per `ttl_s`; callers meanwhile get its last answer, and callers that arrive while
    it runs wait for that run rather than starting their own."""

    def __init__(
        self,
        check: Callable[[], Awaitable[bool]],
        ttl_s: float = READY_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check, self._ttl, self._clock = check, ttl_s, clock
        self._answer: bool | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def __call__(self) -> bool:
        async with self._lock:
            if self._answer is None or self._clock() - self._at >= self._ttl:
                self._answer = await self._check()
                self._at = self._clock()
            return self._answer
