"""Paces sends to one thread under ACS's limits (10 per 10 s and 30 per minute), so no 429 is provoked."""

from __future__ import annotations

from collections import deque

THREAD_SEND_LIMITS: tuple[tuple[int, float], ...] = ((10, 10.0), (30, 60.0))


class Pacer:
    """Sliding windows; `delay(now)` says how long to wait before the next send, `record(now)` counts one."""

    def __init__(self, limits: tuple[tuple[int, float], ...] = THREAD_SEND_LIMITS, margin: float = 0.05) -> None:
        self._limits = limits
        self._margin = margin
        self._sent: deque[float] = deque()
        # No limits (a resource whose limits were lifted): nothing to wait for, nothing to remember.
        self._horizon = max((window for _, window in limits), default=0.0)

    def delay(self, now: float, count: int = 1) -> float:
        """Seconds until `count` more sends fit in every window."""
        if not self._limits:
            return 0.0
        while self._sent and self._sent[0] <= now - self._horizon:
            self._sent.popleft()
        wait = 0.0
        for limit, window in self._limits:
            recent = [t for t in self._sent if t > now - window]
            over = len(recent) + count - limit
            if over > 0:
                # The oldest `over` sends must have left the window (all of them, for more than it holds).
                wait = max(wait, recent[min(over, len(recent)) - 1] + window - now + self._margin)
        return wait

    def record(self, now: float) -> None:
        if self._limits:
            self._sent.append(now)
