"""CachedCheck: a readiness check asked at most once per window, however many callers ask, even at once."""

from __future__ import annotations

import asyncio

from bot.readiness import CachedCheck


async def test_the_answer_is_kept_for_the_window_then_asked_again() -> None:
    now = [100.0]
    answers = [True, False]
    asked: list[float] = []

    async def check() -> bool:
        asked.append(now[0])
        return answers[len(asked) - 1]

    cached = CachedCheck(check, ttl_s=5.0, clock=lambda: now[0])
    assert [await cached() for _ in range(10)] == [True] * 10
    now[0] += 4.9
    assert await cached() is True and asked == [100.0]
    now[0] += 0.1
    assert await cached() is False and asked == [100.0, 105.0]


async def test_callers_that_arrive_while_it_runs_share_that_run() -> None:
    release = asyncio.Event()
    runs = 0

    async def slow() -> bool:
        nonlocal runs
        runs += 1
        await release.wait()
        return True

    cached = CachedCheck(slow, ttl_s=5.0)
    waiting = [asyncio.ensure_future(cached()) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiting) == [True] * 5
    assert runs == 1
