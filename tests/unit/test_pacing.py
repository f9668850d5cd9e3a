"""Tests for bot.relay.pacing: the Pacer keeps sends under 10 per 10 s and 30 per minute, and never waits needlessly."""

from __future__ import annotations

import bisect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import RelaySection
from bot.relay.pacing import THREAD_SEND_LIMITS, Pacer

MARGIN = 0.05


def max_in_window(times: list[float], window: float, closed: bool) -> int:
    """The most sends in any window of this length: [t, t+window) or, closed, [t, t+window]."""
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        end = bisect.bisect_right(ordered, start + window) if closed else bisect.bisect_left(ordered, start + window)
        best = max(best, end - i)
    return best


def assert_within_limits(times: list[float]) -> None:
    for limit, window in THREAD_SEND_LIMITS:
        # Closed windows too: the margin keeps a send off the exact edge of the window it must wait out.
        assert max_in_window(times, window, closed=True) <= limit, (limit, window)


def send_when_allowed(pacer: Pacer, now: float) -> float:
    """Wait as long as delay() says (once must be enough), then send; returns the send time."""
    wait = pacer.delay(now)
    assert wait >= 0
    if wait > 0:
        now += wait
        assert pacer.delay(now) == 0, "one wait of delay() must be enough"
    pacer.record(now)
    return now


def exact_wait(times: list[float], now: float) -> float:
    """The least wait after which one more send keeps every (now-window, now] window under its limit: brute force."""
    candidates = sorted({now} | {t + w for t in times for _, w in THREAD_SEND_LIMITS if t + w >= now})
    for at in candidates:
        if all(sum(1 for t in times if at - w < t <= at) < limit for limit, w in THREAD_SEND_LIMITS):
            return at - now
    raise AssertionError("no candidate time works")


def test_the_limits_are_acs_thread_limits() -> None:
    assert THREAD_SEND_LIMITS == ((10, 10.0), (30, 60.0))


def test_ten_sends_are_immediate_and_the_eleventh_waits_for_the_first_to_leave() -> None:
    pacer = Pacer()
    for _ in range(10):
        assert pacer.delay(0.0) == 0
        pacer.record(0.0)
    wait = pacer.delay(0.0)
    assert 10.0 <= wait <= 10.0 + MARGIN + 1e-9
    assert pacer.delay(5.0) == pytest.approx(5.0 + MARGIN)
    assert pacer.delay(9.99) > 0
    assert pacer.delay(10.0 + MARGIN) == 0


def test_spread_sends_wait_only_for_the_oldest_in_the_window() -> None:
    pacer = Pacer()
    for t in range(10):
        assert pacer.delay(float(t)) == 0
        pacer.record(float(t))
    # The send at t=0 leaves the 10 s window at t=10, so at 9.5 only half a second (and the margin) remains.
    assert pacer.delay(9.5) == pytest.approx(0.5 + MARGIN)
    assert pacer.delay(10.5) == 0
    pacer.record(10.5)
    # The next one waits for the send at t=1.
    assert pacer.delay(10.5) == pytest.approx(0.5 + MARGIN)


def test_the_minute_limit_takes_over_after_thirty() -> None:
    pacer = Pacer()
    now = 0.0
    times = [now := send_when_allowed(pacer, now) for _ in range(30)]
    assert times[:10] == [0.0] * 10
    assert times[10] == pytest.approx(10.0 + MARGIN) and times[20] == pytest.approx(20.0 + 2 * MARGIN)
    # The 10 s window has room again, but 30 sends are in the minute: wait until the first leaves it.
    later = times[-1] + 10.0 + MARGIN
    assert pacer.delay(later) == pytest.approx(60.0 + MARGIN - later)
    assert pacer.delay(60.0 + MARGIN) == 0


def test_a_steady_trickle_is_never_delayed() -> None:
    pacer = Pacer()
    for i in range(200):
        now = i * 2.0  # 5 per 10 s and 30 per minute: right at the minute limit, never over it
        assert pacer.delay(now) == 0, now
        pacer.record(now)


def test_custom_limits_and_no_margin() -> None:
    pacer = Pacer(limits=((2, 1.0),), margin=0.0)
    pacer.record(0.0)
    pacer.record(0.5)
    assert pacer.delay(0.5) == pytest.approx(0.5)
    assert pacer.delay(1.0) == 0


def test_memory_stays_bounded() -> None:
    pacer = Pacer()
    now = 0.0
    for _ in range(500):
        now = send_when_allowed(pacer, now)
    assert len(pacer._sent) <= 31


def test_a_greedy_sender_stays_within_limits() -> None:
    pacer = Pacer()
    now = 0.0
    times: list[float] = []
    for _ in range(300):
        now = send_when_allowed(pacer, now)
        times.append(now)
    assert_within_limits(times)
    # And it is as fast as the limits allow (less the margins): 30 per minute in the long run.
    assert times[-1] == pytest.approx(60.0 * 9 + 20.0, abs=300 * MARGIN)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=20.0, allow_nan=False), min_size=1, max_size=120))
def test_any_arrivals_stay_within_limits_without_needless_waits(gaps: list[float]) -> None:
    pacer = Pacer()
    arrival = now = 0.0
    times: list[float] = []
    for gap in gaps:
        arrival += gap
        now = max(now, arrival)  # a message is sent no earlier than it arrives, in order
        wait = pacer.delay(now)
        # Never more than the least wait the limits need, plus the margin; never less.
        needed = exact_wait(times, now)
        assert needed - 1e-9 <= wait <= needed + MARGIN + 1e-9, (now, needed, wait)
        now = send_when_allowed(pacer, now)
        times.append(now)
    assert_within_limits(times)


def test_the_default_setting_is_acs_thread_limits_and_no_limits_never_wait() -> None:
    assert tuple(RelaySection().thread_send_limits) == THREAD_SEND_LIMITS
    pacer = Pacer(tuple(RelaySection(thread_send_limits=[]).thread_send_limits))
    for i in range(1000):
        assert pacer.delay(i / 1000) == 0
        pacer.record(i / 1000)


def test_raised_limits_pace_to_the_raised_figures() -> None:
    pacer = Pacer(tuple(RelaySection.model_validate({"thread_send_limits": [[100, 10]]}).thread_send_limits))
    for _ in range(100):
        assert pacer.delay(0.0) == 0
        pacer.record(0.0)
    assert pacer.delay(0.0) == pytest.approx(10.0 + MARGIN)
