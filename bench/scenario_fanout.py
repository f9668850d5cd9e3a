"""Benchmark: fan-out, one Teams message to 250 in-call webhook users (the ACS maximum per thread) in one meeting.

The bridge reads the thread on Event Grid chat events, so what is timed is the fan-out (store, dispatch, signed
callbacks) rather than a poll interval. Set-up runs with the sandbox's rate limits off (250 identities and call
legs at once); the limits are switched back on before anything is measured. Several messages, a few seconds apart;
for each: posted (the sandbox's createdOn) → the first and the last of its 250 callbacks at the client.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from pathlib import Path
from typing import Any

from bot.config import RelaySection

from .population import (
    CLIENT,
    Room,
    bridge_config,
    join_all,
    new_sink,
    rooms,
    start_sandbox,
    teams_post,
    wait_in_call,
)
from .processes import BridgeProcess, SandboxProcess, Sink, WebhookSender
from .scenario import Result, rounded, run_alone, target

NAME = "fan-out"
USERS = 250
TARGET_S = 1.0
SPACING_S = 2.0


async def _wait_all(sink: Sink, message_id: str, count: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(sink.by_message.get(message_id, ())) >= count:
            return True
        await asyncio.sleep(0.02)
    return False


async def _messages(sandbox: SandboxProcess, sink: Sink, room: Room, count: int, label: str) -> list[dict[str, Any]]:
    """Post `count` messages SPACING_S apart; for each, when its first and its last callback arrived."""
    rows: list[dict[str, Any]] = []
    for i in range(count):
        mid, created = await teams_post(sandbox, room, f"fan-out {label} {i}")
        complete = await _wait_all(sink, mid, USERS, 60)
        arrivals = sorted(sink.by_message.get(mid, []))
        rows.append(
            {
                "delivered": len(arrivals),
                "complete": complete,
                "first_ms": round((arrivals[0] - created) * 1000, 1) if arrivals else None,
                "last_ms": round((arrivals[-1] - created) * 1000, 1) if arrivals else None,
            }
        )
        # A random part, so posts do not fall into step with the reader's polls (each would then wait alike).
        await asyncio.sleep(SPACING_S + random.uniform(0, 1))
    return rows


async def run(quick: bool, workdir: Path) -> Result:
    messages = 3 if quick else 10
    sandbox, base = await start_sandbox(workdir, "fanout", limits=False)
    sink = await new_sink()
    bridge: BridgeProcess | None = None
    sender: WebhookSender | None = None
    try:
        [room] = await rooms(sandbox, 1)
        # One client app speaks for all 250 users: its request budget must cover their joins.
        bridge = BridgeProcess(bridge_config(base, sink, [room], events=True, rate_per_second=1000), sandbox)
        await bridge.start()
        sender = WebhookSender(bridge.base, CLIENT, sink.secret)
        setup_started = time.monotonic()
        statuses = await join_all(sender, [(f"user{i}", room.code) for i in range(USERS)], concurrency=32)
        await wait_in_call(bridge, USERS, 300)
        setup_s = time.monotonic() - setup_started
        await sandbox.control("PUT", "/limits", {"enabled": True})
        warm, _ = await teams_post(sandbox, room, "warm-up")
        if not await _wait_all(sink, warm, USERS, 60):
            raise RuntimeError(f"the warm-up reached {len(sink.by_message.get(warm, ()))} of {USERS} users in 60 s")
        await asyncio.sleep(SPACING_S)
        cpu_before = bridge.cpu_seconds()
        rows = await _messages(sandbox, sink, room, messages, "events")
        cpu = bridge.cpu_seconds() - cpu_before
        # The same meeting with its Event Grid subscription gone: the next safety read finds the first message no
        # event announced, and from then on the reader finds each message at its next poll.
        for subscription in (await sandbox.control("GET", "/event-subscriptions"))["value"]:
            await sandbox.control("DELETE", f"/event-subscriptions/{subscription['id']}")
        lost, created = await teams_post(sandbox, room, "fan-out events gone")
        await _wait_all(sink, lost, USERS, RelaySection().poll_safety_s + 60)
        arrivals = sorted(sink.by_message.get(lost, []))
        lost_ms = round((arrivals[-1] - created) * 1000, 1) if len(arrivals) >= USERS else None
        await asyncio.sleep(SPACING_S)
        polled = await _messages(sandbox, sink, room, messages, "polling")
    finally:
        if sender is not None:
            await sender.close()
        if bridge is not None:
            await bridge.terminate()
        await sink.stop()
        await sandbox.stop()
    lasts = [r["last_ms"] for r in rows if r["complete"]]
    firsts = [r["first_ms"] for r in rows if r["first_ms"] is not None]
    incomplete = sum(1 for r in rows if not r["complete"])
    # A message that did not reach everyone has no "last delivery": the worst case is then unknown, not small.
    worst = max(lasts) if lasts and not incomplete else None
    figures: dict[str, float | None] = {
        "users": USERS,
        "messages": messages,
        "last_delivery_median_ms": rounded(statistics.median(lasts), 1) if lasts else None,
        "last_delivery_worst_ms": worst,
        "first_delivery_median_ms": rounded(statistics.median(firsts), 1) if firsts else None,
        "incomplete_messages": incomplete,
        "bridge_cpu_ms_per_message": round(cpu / messages * 1000, 1),
        "events_gone_last_delivery_ms": lost_ms,
        **_polled_figures(polled),
        "setup_s": round(setup_s, 1),
    }
    each = ", ".join(f"{r['last_ms']:.0f}" if r["complete"] else f"{r['delivered']}/{USERS}" for r in rows)
    return {
        "scenario": NAME,
        "figures": figures,
        "targets": [
            target(
                "last_delivery_worst_ms",
                f"≤ {TARGET_S * 1000:.0f} ms",
                worst,
                worst is not None and worst <= TARGET_S * 1000,
            ),
            target(
                "last_delivery_median_ms",
                f"≤ {TARGET_S * 1000:.0f} ms",
                figures["last_delivery_median_ms"],
                lasts != [] and statistics.median(lasts) <= TARGET_S * 1000,
            ),
        ],
        "baseline": None,
        "notes": (
            f"1 meeting, {USERS} webhook users in its call (per-user identities and call legs), Event Grid chat "
            f"events on; {messages} Teams messages {SPACING_S:g}-{SPACING_S + 1:g} s apart after a warm-up; "
            f"sandbox createdOn → the last callback at the client (one machine clock), per message: {each} ms. "
            f"Then the Event Grid subscription deleted: the first message, which no event announced, found by the "
            f"next safety read (poll_safety_s {RelaySection().poll_safety_s:g} s), last delivery after "
            f"{lost_ms} ms; that put the meeting back on polling, and {messages} more were found by polling "
            f"(poll_active_s {RelaySection().poll_active_s:g} s, "
            f"the wait for the next read included): last delivery median "
            f"{figures['polling_last_delivery_median_ms']} ms, worst {figures['polling_last_delivery_worst_ms']} ms "
            f"(figures, not the target: the target is the fan-out). Join answers "
            f"{dict(sorted(statuses.items()))}; set-up (joins until all in the call) took {setup_s:.0f} s with "
            f"sandbox limits off; limits on while measuring."
        ),
    }


def _polled_figures(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    lasts = [r["last_ms"] for r in rows if r["complete"]]
    complete = len(lasts) == len(rows)
    return {
        "polling_last_delivery_median_ms": rounded(statistics.median(lasts), 1) if lasts else None,
        "polling_last_delivery_worst_ms": max(lasts) if lasts and complete else None,
        "polling_incomplete_messages": len(rows) - len(lasts),
    }


def main() -> None:
    run_alone(run, __doc__, "fewer messages")


if __name__ == "__main__":
    main()
