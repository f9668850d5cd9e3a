"""The one backoff: doubling, its cap, and the two ways a peer's Retry-After bears on the wait."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.backoff import Backoff
from bot.errors import MAX_RETRY_AFTER_S

failures = st.integers(min_value=1, max_value=1000)
waits = st.none() | st.floats(min_value=0, max_value=MAX_RETRY_AFTER_S)


def test_the_wait_doubles_with_each_failure_up_to_its_cap() -> None:
    policy = Backoff(base_s=0.5, cap_s=60.0)
    assert [policy.delay(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 32, 60, 60]


def test_no_failure_yet_waits_as_long_as_the_first() -> None:
    assert Backoff(base_s=0.5, cap_s=60.0).delay(0) == 0.5


def test_a_long_outage_stays_at_the_cap_without_overflowing() -> None:
    assert Backoff(base_s=0.25, cap_s=5.0).delay(100_000) == 5.0


def test_instead_the_peer_says_how_long_even_when_shorter_than_ours() -> None:
    policy = Backoff(base_s=0.5, cap_s=60.0)
    assert policy.delay(8, retry_after=1.0) == 1.0
    assert policy.delay(1, retry_after=30.0) == 30.0
    assert policy.delay(1, retry_after=0.0) == 0.0


def test_at_least_the_peer_lengthens_our_wait_but_never_shortens_it() -> None:
    policy = Backoff(base_s=0.25, cap_s=5.0, peer="at_least", peer_max_s=60.0)
    assert policy.delay(5, retry_after=1.0) == 4.0
    assert policy.delay(1, retry_after=30.0) == 30.0
    assert policy.delay(1, retry_after=600.0) == 60.0


def test_a_peer_wait_is_bounded_both_ways() -> None:
    policy = Backoff(base_s=0.5, cap_s=60.0, peer_max_s=100.0)
    assert policy.delay(1, retry_after=-5.0) == 0.0
    assert policy.delay(1, retry_after=1e9) == 100.0


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 5.0)])
def test_a_policy_that_cannot_back_off_is_refused(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="base_s"):
        Backoff(base_s=base, cap_s=cap)


# The three formulas this replaced, each written out as it was: the policies their callers use give the same waits.


@given(failures, waits)
def test_the_outbox_policy_waits_as_the_outbox_did(n: int, retry_after: float | None) -> None:
    old = retry_after if retry_after is not None else min(60.0, 0.5 * 2 ** max(0, n - 1))
    assert Backoff(base_s=0.5, cap_s=60.0).delay(n, retry_after) == old


@given(failures, waits)
def test_the_reconnect_policy_waits_as_the_call_streams_did(n: int, retry_after: float | None) -> None:
    old = max(min(0.25 * 2 ** (n - 1), 5.0), min(retry_after or 0.0, 60.0))
    policy = Backoff(base_s=0.25, cap_s=5.0, peer="at_least", peer_max_s=60.0)
    assert policy.delay(n, retry_after) == old


@given(failures)
def test_the_rejoin_policy_waits_as_presence_did(n: int) -> None:
    assert Backoff(base_s=1.0, cap_s=30.0).delay(n) == min(30.0, 0.5 * 2**n)
