"""Throttled meeting: ACS's limits on, 300 messages from 10 users burst into one meeting.

The sandbox enforces ACS's chat limits (10 sends per 10 s and 30 per minute per thread, answering 429 beyond);
the bridge runs with its defaults (paced to those limits, merging a backlog by sender, its overload bounds on).
Ten webhook users in one meeting each send 30 messages one after another, all ten at once; a message the bridge
answers 429 (its backlog bound) is sent again after Retry-After, as a client should. Targets: no 429 reaches the
bridge's sends (it paces to the limit instead of finding it), and every text is in the thread within 60 s of the
burst's start.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .inbound import Rig, User, start_rig, token, wait_until
from .scenario import Result, rounded, target

NAME = "throttled_meeting"
USERS = 10
SEND_429 = 'bridge_acs_throttled_total{operation="send"}'


@dataclass(frozen=True)
class Size:
    per_user: int


# The burst is the scenario; a quick run is already short (its length is set by the thread's limits).
SIZES = {"full": Size(30), "quick": Size(30), "tiny": Size(2)}


async def _burst(rig: Rig, per_user: int) -> list[int]:
    async def one(index: int, user: User) -> list[int]:
        statuses = []
        for n in range(per_user):
            status, _ = await rig.message(user, f"{token(1, index, n)} message {n + 1} of {per_user}")
            statuses.append(status)
        return statuses

    results = await asyncio.gather(*(one(i, u) for i, u in enumerate(rig.users)))
    return [s for r in results for s in r]


async def measure(size: Size, workdir: Path) -> Result:
    total = USERS * size.per_user
    async with AsyncExitStack() as stack:
        rig = await start_rig(stack, workdir, limits=True, meetings=1, users=USERS)
        limits0 = await rig.sandbox.control("GET", "/limits")
        async with rig.profiled(NAME):
            t0 = time.time()
            statuses = await _burst(rig, size.per_user)
            accepted_s = time.time() - t0

            async def all_visible() -> bool:
                found, _ = await rig.relayed()
                return len(found) >= total

            await wait_until(all_visible, 120, 0.25)
        found, sends = await rig.relayed()
        metrics = await rig.metrics()
        limits1 = await rig.sandbox.control("GET", "/limits")

    last = max(found.values(), default=None)
    seconds = rounded(last - t0, 2) if last is not None and len(found) == total else None
    send_429 = int(metrics.get(SEND_429, 0))
    figures: dict[str, float | int | None] = {
        "messages": total,
        "visible": len(found),
        "seconds_until_all_visible": seconds,
        "sends": sends,
        "messages_per_send": rounded(len(found) / sends, 2) if sends else None,
        "throttled_sends_at_bridge": send_429,
        "throttled_reads_at_bridge": int(metrics.get('bridge_acs_throttled_total{operation="list"}', 0)),
        "sandbox_429s_answered": int(limits1["throttled"]) - int(limits0["throttled"]),
        "refused_429_by_bridge_then_resent": rig.refused,
        "accepted": sum(1 for s in statuses if s == 202),
        "accept_seconds": rounded(accepted_s, 2),
    }
    targets = [
        target("throttled_sends_at_bridge", "0 (pacing matches the limit)", send_429, send_429 == 0),
        target("seconds_until_all_visible", "≤ 60 s", seconds, seconds is not None and seconds <= 60),
    ]
    notes = (
        f"{USERS} users x {size.per_user} messages into one meeting, ACS limits on; {len(found)}/{total} texts "
        f"visible in {sends} chat messages (merged by sender); the bridge answered {rig.refused} requests 429 "
        f"(its per-meeting backlog bound), each sent again after Retry-After."
    )
    return {"scenario": NAME, "figures": figures, "targets": targets, "baseline": None, "notes": notes}


async def run(quick: bool, workdir: Path) -> dict[str, Any]:
    return dict(await measure(SIZES["quick" if quick else "full"], workdir))
