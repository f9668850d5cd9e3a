"""The in-flight counter the drain and the relay's stop share: counting, settling, and closing to new work."""

from __future__ import annotations

import asyncio

import pytest

from bot.inflight import InFlight


async def test_settled_returns_at_once_when_nothing_is_under_way() -> None:
    units = InFlight()
    await asyncio.wait_for(units.settled(), timeout=5)
    assert units.busy == 0


async def test_settled_waits_for_the_last_unit_under_way() -> None:
    units = InFlight()
    release = asyncio.Event()

    async def unit() -> None:
        with units.track():
            await release.wait()

    tasks = [asyncio.create_task(unit()) for _ in range(3)]
    await asyncio.sleep(0)
    assert units.busy == 3
    waiter = asyncio.create_task(units.settled())
    await asyncio.sleep(0)
    assert not waiter.done()
    release.set()
    await asyncio.wait_for(waiter, timeout=5)
    await asyncio.gather(*tasks)
    assert units.busy == 0


async def test_a_unit_that_raises_is_counted_out() -> None:
    units = InFlight()
    with pytest.raises(RuntimeError), units.track():
        assert units.busy == 1
        raise RuntimeError("boom")
    assert units.busy == 0
    await asyncio.wait_for(units.settled(), timeout=5)


async def test_close_says_how_many_are_under_way_and_stays_closed() -> None:
    units = InFlight()
    assert not units.closed
    with units.track():
        assert units.close() == 1
        assert units.closed
    assert units.closed and units.busy == 0
    await asyncio.wait_for(units.settled(), timeout=5)
