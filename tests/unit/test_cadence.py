"""When a meeting's thread is read: polled, or on chat events with a safety read, and a meeting whose events stop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.config import RelaySection
from bot.relay import cadence
from bot.relay.cadence import Watch

SETTINGS = RelaySection(poll_active_s=0.8, poll_idle_s=10.0, idle_after_s=60.0, poll_safety_s=60.0)
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
A, B, C = ("m1", "v1"), ("m2", "v2"), ("m3", "v3")


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_without_events_a_reader_polls_fast_after_news_and_slowly_when_idle() -> None:
    # An idle read falls on the meeting's slot: with slot 0, on the next whole ten seconds after the read began.
    assert cadence.poll_pause(1000.3, 1000.6, None, None, 0.0, SETTINGS) == pytest.approx(9.4)
    assert cadence.poll_pause(1000.3, 1000.6, 990.0, None, 0.0, SETTINGS) == pytest.approx(0.5)
    assert cadence.poll_pause(1000.3, 1000.6, 900.0, None, 0.0, SETTINGS) == pytest.approx(9.4)
    # A read slower than the interval still leaves a tenth of it.
    assert cadence.poll_pause(995.0, 1000.0, 990.0, None, 0.0, SETTINGS) == pytest.approx(0.08)


def test_quiet_reads_of_meetings_in_one_slot_fall_on_the_same_instant() -> None:
    # Slot 0.3 of a 10 s interval: the instants ..., 993, 1003, 1013, ... whenever each read began and ended.
    for began, now in [(993.1, 993.2), (995.0, 995.4), (1001.0, 1001.5)]:
        assert now + cadence.poll_pause(began, now, None, None, 0.3, SETTINGS) == pytest.approx(1003.0)
    # Too close to its instant (under a tenth of the interval), a read waits for the next one.
    assert 1002.6 + cadence.poll_pause(1002.5, 1002.6, None, None, 0.3, SETTINGS) == pytest.approx(1013.0)


@given(
    began=st.floats(0, 1e6),
    took=st.floats(0, 30),
    slot=st.sampled_from([i / cadence.SLOTS for i in range(cadence.SLOTS)]),
)
def test_a_quiet_read_comes_within_an_interval_of_the_last_and_never_without_a_pause(
    began: float, took: float, slot: float
) -> None:
    now = began + took
    interval, shortest = SETTINGS.poll_idle_s, SETTINGS.poll_idle_s * cadence.MIN_PAUSE
    pause = cadence.poll_pause(began, now, None, None, slot, SETTINGS)
    assert pause >= shortest - 1e-6
    assert now + pause <= max(began + interval, now + shortest + interval) + 1e-6


def test_slots_spread_meetings_over_the_interval() -> None:
    slots = {cadence.slot_of(f"meeting-{i}") for i in range(1000)}
    assert len(slots) == cadence.SLOTS
    assert all(0.0 <= s < 1.0 for s in slots)
    assert cadence.slot_of("meeting-7") == cadence.slot_of("meeting-7")


def test_while_events_arrive_a_quiet_meeting_is_read_only_by_the_safety_read() -> None:
    watch = Watch(since=T0)
    # Slot 0: the safety reads fall on whole minutes, news or not (the events wake the reader for news).
    assert cadence.poll_pause(1020.0, 1020.1, 1019.0, watch, 0.0, SETTINGS) == pytest.approx(59.9)
    assert cadence.poll_pause(1030.0, 1030.1, None, watch, 0.0, SETTINGS) == pytest.approx(49.9)


def test_an_announced_message_not_found_yet_is_read_again_at_the_active_interval() -> None:
    watch = cadence.announce(Watch(since=T0), [A], 1000.0)
    assert cadence.poll_pause(1000.0, 1000.1, None, watch, 0.0, SETTINGS) == pytest.approx(0.7)
    watch = cadence.settle(cadence.found(watch, [(A, _at(1))], _at(1.1), 1000.1), 1000.1)
    assert watch.trusted and not watch.announced
    assert cadence.poll_pause(1000.0, 1000.1, 1000.1, watch, 0.0, SETTINGS) == pytest.approx(19.9)


def test_an_announced_message_the_reads_never_find_is_given_up_on() -> None:
    watch = cadence.announce(Watch(since=T0), [A], 1000.0)
    watch = cadence.settle(watch, 1000.0 + cadence.ANNOUNCED_FOR_S)
    assert not watch.announced and watch.trusted


def test_a_safety_read_that_finds_an_old_unannounced_message_falls_back_to_polling_at_once() -> None:
    watch = Watch(since=T0)
    # Posted 30 s before the safety read; no event came.
    watch = cadence.settle(cadence.found(watch, [(A, _at(30))], _at(60), 1060.0), 1060.0)
    assert not watch.trusted and watch.missed_at == 1060.0
    # Polled at the active interval from this read on, though the read itself was not news to anyone.
    assert cadence.poll_pause(1060.0, 1060.1, None, watch, 0.0, SETTINGS) == pytest.approx(0.7)
    # ... until idle_after_s passes without news; then at the idle interval, no longer the safety one.
    assert cadence.poll_pause(1130.0, 1130.1, None, watch, 0.0, SETTINGS) == pytest.approx(9.9)


def test_a_message_found_before_its_event_has_the_grace_for_it() -> None:
    watch = Watch(since=T0)
    watch = cadence.settle(cadence.found(watch, [(A, _at(10))], _at(11), 1011.0), 1011.0)
    assert watch.trusted and A in watch.unannounced
    # The reader wakes when the grace runs out, to judge it.
    left = cadence.EVENT_GRACE_S - 1.0
    assert cadence.poll_pause(1011.0, 1011.0, None, watch, 0.0, SETTINGS) == pytest.approx(left)
    late = cadence.settle(cadence.announce(watch, [A], 1011.0 + left / 2), 1011.0 + left / 2)
    assert late.trusted and not late.unannounced and late.missed_at is None
    missed = cadence.settle(watch, 1011.0 + left)
    assert not missed.trusted and missed.missed_at == 1011.0 + left


def test_repeated_and_late_events_for_what_was_read_start_no_reading() -> None:
    watch = cadence.announce(Watch(since=T0), [A], 1000.0)
    watch = cadence.settle(cadence.found(watch, [(A, _at(0))], _at(0.01), 1000.01), 1000.01)
    for again in (1001.0, 1050.0):
        repeated = cadence.settle(cadence.announce(watch, [A, A], again), again)
        assert not repeated.announced and repeated.trusted
        assert cadence.poll_pause(again, again, None, repeated, 0.0, SETTINGS) > 1.0


def test_messages_from_before_the_reader_began_are_not_judged() -> None:
    watch = Watch(since=_at(100))
    watch = cadence.settle(cadence.found(watch, [(A, _at(50))], _at(101), 1101.0), 1101.0)
    assert watch.trusted and not watch.unannounced


def test_events_are_relied_on_again_after_a_few_arrive_with_no_miss() -> None:
    watch = cadence.settle(cadence.found(Watch(since=T0), [(A, _at(0))], _at(30), 1030.0), 1030.0)
    assert not watch.trusted
    for n, key in enumerate([B, C, ("m4", "v4")], start=1):
        now = 1040.0 + n
        watch = cadence.announce(watch, [key], now)
        watch = cadence.settle(cadence.found(watch, [(key, _at(now - 1000))], _at(now - 1000 + 0.01), now), now)
        assert watch.trusted == (n == cadence.TRUST_AFTER)
    # A miss in between starts the count again.
    again = cadence.settle(cadence.found(watch, [(("m5", "v5"), _at(0))], _at(60), 1060.0), 1060.0)
    assert not again.trusted and again.streak == 0


def test_an_edit_is_a_message_of_its_own_for_the_events() -> None:
    watch = cadence.announce(Watch(since=T0), [A], 1000.0)
    watch = cadence.settle(cadence.found(watch, [(A, _at(0))], _at(0.01), 1000.01), 1000.01)
    edited = ("m1", "v9")
    watch = cadence.settle(cadence.found(watch, [(edited, _at(1))], _at(20), 1020.0), 1020.0)
    assert not watch.trusted


@given(
    events=st.lists(st.tuples(st.sampled_from([A, B, C]), st.floats(0, 30)), max_size=12),
    reads=st.lists(st.tuples(st.sampled_from([A, B, C]), st.floats(0, 30)), max_size=12),
)
def test_whatever_order_events_and_reads_come_in_each_message_is_settled_once(
    events: list[tuple[tuple[str, str], float]], reads: list[tuple[tuple[str, str], float]]
) -> None:
    steps = sorted([(t, "event", k) for k, t in events] + [(t, "read", k) for k, t in reads])
    watch = Watch(since=T0)
    for t, kind, key in steps:
        now = 1000.0 + t
        if kind == "event":
            watch = cadence.announce(watch, [key], now)
        else:
            watch = cadence.found(watch, [(key, _at(0))], _at(t), now)
        watch = cadence.settle(watch, now)
        places = [key in watch.announced, key in watch.unannounced, key in watch.done]
        # An announced message no read found is given up on after ANNOUNCED_FOR_S; otherwise it is in one place.
        assert sum(places) == 1 or (kind == "event" and sum(places) == 0)
    # Only what a read found is settled; each event either matched a read or still waits (or was given up on).
    assert set(watch.done) <= {k for k, _ in reads}
    assert not set(watch.announced) & set(watch.done)
