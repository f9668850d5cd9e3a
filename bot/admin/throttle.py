"""Wrong operator tokens per peer: a few are free, then every attempt waits, each wrong one doubling the wait.

The API and the console's sign-in are two doors to one token, so they share one throttle. An attempt made while a
peer waits is answered 429 with Retry-After whatever it carries, so a guess is never checked early; a wrong one
made then still doubles the wait. A spell of failures is logged once, at WARNING, with the peer and never the
token, and ends at a right token or after SPELL_ENDS_S without a wrong one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from ..metrics import Metrics
from ..peers import peer_key
from .console_auth import token_matches

log = logging.getLogger(__name__)
SPELL_ENDS_S = 900.0
MAX_PEERS = 10_000
"""Spells kept at once: a flood from many addresses forgets its oldest peers rather than grow without bound."""


@dataclass
class _Spell:
    failures: int = 0
    last: float = 0.0
    until: float = 0.0
    """When the peer may try again (the clock's seconds); 0 while its free attempts last."""
    warned: bool = False


@dataclass(frozen=True)
class Attempt:
    accepted: bool
    retry_after: int = 0
    """Non-zero: the peer is waiting; answer 429 with this Retry-After, whether or not the token was right."""


class TokenThrottle:
    def __init__(
        self, allowed: int, max_wait_s: float, metrics: Metrics, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._allowed, self._max_wait, self._metrics, self._clock = allowed, max_wait_s, metrics, clock
        self._spells: dict[str, _Spell] = {}

    def _spell(self, peer: str) -> _Spell | None:
        spell = self._spells.get(peer)
        if spell is not None and self._clock() - spell.last > max(SPELL_ENDS_S, self._max_wait):
            self._end(peer, spell, "after a quiet spell")
            return None
        return spell

    def wait(self, peer: str) -> int:
        """Seconds (rounded up) this peer must wait before an attempt of its counts; 0 when it may try now."""
        spell = self._spell(peer)
        left = spell.until - self._clock() if spell is not None else 0.0
        return max(1, math.ceil(left)) if left > 0 else 0

    def attempt(self, peer: str, door: str, right: bool) -> Attempt:
        """One attempt with a token (`right`: whether it is the operator's), and what the door answers."""
        if self.wait(peer):
            self._metrics.auth_throttled.labels(door).inc()
            if not right:
                self.failed(peer, door)
            return Attempt(False, self.wait(peer))
        if right:
            self.succeeded(peer)
        else:
            self.failed(peer, door)
        return Attempt(right)

    def failed(self, peer: str, door: str) -> None:
        self._metrics.auth_failures.labels(door).inc()
        spell = self._spell(peer)
        if spell is None:
            while len(self._spells) >= MAX_PEERS:
                del self._spells[next(iter(self._spells))]  # the oldest first
            spell = self._spells[peer] = _Spell()
        now = self._clock()
        spell.failures += 1
        spell.last = now
        beyond = spell.failures - self._allowed
        if beyond <= 0:
            return
        spell.until = now + min(self._max_wait, 2.0 ** min(beyond - 1, 30))
        if not spell.warned:
            spell.warned = True
            log.warning(
                "operator token: %d wrong tokens from %s; its attempts now wait, doubling up to %g s",
                spell.failures,
                peer,
                self._max_wait,
            )

    def succeeded(self, peer: str) -> None:
        spell = self._spells.get(peer)
        if spell is not None:
            self._end(peer, spell, "with the right token")

    def _end(self, peer: str, spell: _Spell, how: str) -> None:
        del self._spells[peer]
        if spell.warned:
            log.info("operator token: the spell of %d wrong tokens from %s ended %s", spell.failures, peer, how)


THROTTLE: web.AppKey[TokenThrottle] = web.AppKey("token_throttle")


def try_token(request: web.Request, given: str, door: str) -> Attempt:
    """Check a token sent to `door` (api, console) against the operator's, counted for the request's peer: the
    connection's address (a proxy's, behind one)."""
    right = token_matches(request, given)  # compared in every case, so the answer's timing tells nothing
    return request.app[THROTTLE].attempt(peer_key(request.remote), door, right)
