"""Backoff: how long to wait after failures in a row, and how a peer's Retry-After bears on that wait."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .errors import MAX_RETRY_AFTER_S


@dataclass(frozen=True)
class Backoff:
    """Waits that double with each failure in a row: `base_s` after the first, never more than `cap_s`.

    `peer`: what a peer's Retry-After does to the wait. "instead" (the outbox): the peer knows when it can take the
    work again, so its word is the wait, shorter or longer than ours. "at_least" (a stream's reconnects): the wait is
    never shorter than ours, and the peer's word counts up to `peer_max_s`, so a watch never goes quiet for long.
    """

    base_s: float
    cap_s: float
    peer: Literal["instead", "at_least"] = "instead"
    peer_max_s: float = MAX_RETRY_AFTER_S

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"a backoff needs 0 < base_s <= cap_s, not {self.base_s} and {self.cap_s}")

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after `failures` failures in a row (1 for the first; 0 counts as 1)."""
        # The exponent is bounded first: a count of thousands would overflow the float before min() caps it.
        ours = min(self.cap_s, self.base_s * 2.0 ** min(max(0, failures - 1), 64))
        if retry_after is None:
            return ours
        peer = min(max(0.0, retry_after), self.peer_max_s)
        return peer if self.peer == "instead" else max(ours, peer)
