"""TokenThrottle and peer_key: free attempts, a wait that doubles, spells that end, peers counted apart."""

from __future__ import annotations

import pytest

from bot.admin.throttle import SPELL_ENDS_S, Attempt, TokenThrottle
from bot.metrics import Metrics
from bot.peers import peer_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: Clock, allowed: int = 3, max_wait_s: float = 60.0) -> TokenThrottle:
    return TokenThrottle(allowed, max_wait_s, Metrics(), clock)


def test_the_wait_starts_after_the_free_attempts_and_doubles_up_to_the_most() -> None:
    clock = Clock()
    t = throttle(clock)
    assert [t.attempt("a", "api", right=False) for _ in range(3)] == [Attempt(False)] * 3
    assert t.attempt("a", "api", right=False) == Attempt(False) and t.wait("a") == 1
    waits = []
    for _ in range(8):
        clock.now += t.wait("a")  # each wrong token after its wait doubles the next
        t.attempt("a", "api", right=False)
        waits.append(t.wait("a"))
    assert waits == [2, 4, 8, 16, 32, 60, 60, 60]


def test_while_waiting_even_the_right_token_is_turned_away_and_a_wrong_one_doubles_the_wait() -> None:
    clock = Clock()
    t = throttle(clock, allowed=1)
    t.attempt("a", "api", right=False)
    t.attempt("a", "api", right=False)
    assert t.wait("a") == 1
    assert t.attempt("a", "console", right=True) == Attempt(False, 1)
    assert t.attempt("a", "console", right=False) == Attempt(False, 2)
    clock.now += 2
    assert t.attempt("a", "api", right=True) == Attempt(True)
    assert t.attempt("a", "api", right=False) == Attempt(False) and t.wait("a") == 0  # counted afresh


def test_peers_wait_apart_and_a_quiet_spell_ends() -> None:
    clock = Clock()
    t = throttle(clock, allowed=1)
    for _ in range(3):
        t.attempt("a", "api", right=False)
    assert t.wait("a") > 0 and t.wait("b") == 0
    assert t.attempt("b", "api", right=True) == Attempt(True)
    clock.now += SPELL_ENDS_S + 1
    assert t.attempt("a", "api", right=False) == Attempt(False) and t.wait("a") == 0


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:db8::ffff:1", "2001:db8::/64"),
        ("2001:db8:0:1::1", "2001:db8:0:1::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("fe80::1%eth0", "fe80::/64"),
        (None, "unknown"),
        ("not an address", "not an address"),
    ],
)
def test_peer_key(address: str | None, key: str) -> None:
    assert peer_key(address) == key
