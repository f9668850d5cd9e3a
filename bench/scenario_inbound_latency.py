"""Inbound latency: from the bridge's 202 to the message stored in the meeting thread, at 50 messages/s offered.

20 webhook users in 10 meetings (two per meeting) send on a fixed schedule, open loop: message k leaves at
t0 + k / rate, by user k % 20, whether or not earlier answers are back. Latency is the sandbox's createdOn of the
chat message carrying the text (whole milliseconds, same machine clock) minus the time the 202 arrived here; the
p99 target is ≤ 50 ms.

At 5 messages/s per meeting ACS's thread limits (30 sends a minute) would make this a measurement of the pacer's
queue: the sandbox runs with limits off and the bridge with `relay.thread_send_limits = []` (a resource whose
limits were raised). The throttled meeting scenario measures the paced case.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .inbound import Rig, cpu_seconds, start_rig, token, wait_until
from .scenario import Result, percentile, rounded, target

NAME = "inbound_latency"
RELAYED = 'bridge_messages_relayed_total{channel="webhook",direction="in"}'


@dataclass(frozen=True)
class Size:
    meetings: int
    users: int
    rate: float
    seconds: float


SIZES = {
    "full": Size(10, 20, 50.0, 30.0),
    "quick": Size(10, 20, 50.0, 8.0),
    "tiny": Size(2, 2, 10.0, 1.0),
}


async def _relayed_at_least(rig: Rig, count: float) -> bool:
    return (await rig.metrics()).get(RELAYED, 0.0) >= count


async def _offer(rig: Rig, run: int, rate: float, count: int) -> tuple[dict[str, float], dict[str, float], int]:
    """Send `count` messages at `rate` per second, open loop; when each left and when its 202 came, by token."""
    sent: dict[str, float] = {}
    accepted: dict[str, float] = {}
    failed = 0

    async def one(k: int) -> None:
        nonlocal failed
        index = k % len(rig.users)
        name = token(run, index, k)
        sent[name] = time.time()
        status, at = await rig.message(rig.users[index], f"{name} are you there?")
        if status == 202:
            accepted[name] = at
        else:
            failed += 1

    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    for k in range(count):
        delay = start + k / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(k)))
    await asyncio.gather(*tasks)
    return sent, accepted, failed


async def measure(size: Size, workdir: Path) -> Result:
    count = int(size.rate * size.seconds)
    async with AsyncExitStack() as stack:
        rig = await start_rig(
            stack,
            workdir,
            limits=False,
            meetings=size.meetings,
            users=size.users,
            relay={"thread_send_limits": []},
        )
        # Warm-up: each user's first message makes its token, thread client and connections.
        _, warm, _ = await _offer(rig, 0, size.rate, len(rig.users))
        await wait_until(lambda: _relayed_at_least(rig, len(warm)), 60)
        await rig.idle()
        before = (await rig.metrics()).get(RELAYED, 0.0)
        cpu0, sandbox0 = rig.bridge.cpu_seconds(), cpu_seconds(rig.sandbox.pid)
        async with rig.profiled(NAME):
            sent, accepted, failed = await _offer(rig, 1, size.rate, count)
            done = await wait_until(lambda: _relayed_at_least(rig, before + len(accepted)), 60, 0.05)
            await rig.idle()
        bridge_cpu = rig.bridge.cpu_seconds() - cpu0
        sandbox_cpu = cpu_seconds(rig.sandbox.pid) - sandbox0
        stored, sends = await rig.relayed()

    latencies = [(stored[t] - at) * 1000 for t, at in accepted.items() if t in stored]
    from_sent = [(stored[t] - sent[t]) * 1000 for t in accepted if t in stored]
    p99 = rounded(percentile(latencies, 99), 1)
    figures: dict[str, float | int | None] = {
        "offered_per_s": size.rate,
        "messages": count,
        "accepted": len(accepted),
        "not_accepted": failed,
        "relayed": len(latencies),
        "latency_p50_ms": rounded(percentile(latencies, 50), 1),
        "latency_p99_ms": p99,
        "latency_max_ms": rounded(max(latencies, default=None), 1) if latencies else None,
        "request_to_stored_p50_ms": rounded(percentile(from_sent, 50), 1),
        "request_to_stored_p99_ms": rounded(percentile(from_sent, 99), 1),
        "bridge_cpu_share_of_a_core": rounded(bridge_cpu / size.seconds, 3),
        "sandbox_cpu_share_of_a_core": rounded(sandbox_cpu / size.seconds, 3),
    }
    met = done and len(latencies) == count and p99 is not None and p99 <= 50
    notes = (
        f"{count} messages at {size.rate:g}/s from {size.users} users over {size.meetings} meetings, limits off "
        f"(pacing off); latency = sandbox createdOn - the 202's arrival; {len(latencies)}/{count} found in "
        f"the threads ({sends} chat messages with run texts, warm-up included)."
    )
    return {
        "scenario": NAME,
        "figures": figures,
        "targets": [target("latency_p99_ms", "≤ 50 ms", p99, met)],
        "baseline": None,
        "notes": notes,
    }


async def run(quick: bool, workdir: Path) -> dict[str, Any]:
    return dict(await measure(SIZES["quick" if quick else "full"], workdir))
