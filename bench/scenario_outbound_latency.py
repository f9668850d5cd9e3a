"""Benchmark: outbound latency, Teams message posted in the sandbox → signed callback received by the webhook client.

20 Teams messages per second over 10 meetings, 2 in-call webhook users per meeting, run twice against a fresh
sandbox and bridge: reading by polling alone (the relay's default poll settings), then with Event Grid chat events
pushed to the bridge. The baseline for the events run is the same events reaching a bare receiver in this
process: what Event Grid delivery itself costs, before the bridge reads and fans out.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bot.config import RelaySection

from .population import (
    CLIENT,
    EventProbe,
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
from .scenario import Result, percentile, rounded, run_alone, target

NAME = "outbound latency"
MEETINGS = 10
USERS_PER_MEETING = 2
RATE_PER_S = 20.0
TARGET_POLLING_S = 1.0
TARGET_EVENTS_S = 0.1


async def _post_all(sandbox: SandboxProcess, rooms_: list[Room], count: int, rate: float) -> list[tuple[str, float]]:
    """Open loop: message i is posted at start + i / rate whatever the answers' times, round robin over meetings."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1
    tasks: list[asyncio.Task[tuple[str, float]]] = []
    for i in range(count):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(teams_post(sandbox, rooms_[i % len(rooms_)], f"bench message {i}")))
    return list(await asyncio.gather(*tasks))


async def _wait_delivered(sink: Sink, ids: list[str], each: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(len(sink.by_message.get(i, ())) >= each for i in ids):
            return True
        await asyncio.sleep(0.1)
    return False


def _ms(value: float | None) -> float | None:
    return rounded(value * 1000 if value is not None else None, 1)


def _summary(prefix: str, latencies: list[float]) -> dict[str, float | None]:
    return {
        f"{prefix}p50_ms": _ms(percentile(latencies, 50)),
        f"{prefix}p99_ms": _ms(percentile(latencies, 99)),
        f"{prefix}max_ms": _ms(max(latencies)) if latencies else None,
    }


async def run_mode(workdir: Path, *, events: bool, seconds: float) -> dict[str, float | None]:
    """One run: a fresh sandbox and bridge, joins, a warm-up message per meeting, then the measured stream."""
    sandbox, base = await start_sandbox(workdir, "events" if events else "polling")
    sink = await new_sink()
    probe = EventProbe() if events else None
    bridge: BridgeProcess | None = None
    sender: WebhookSender | None = None
    try:
        rooms_ = await rooms(sandbox, MEETINGS)
        bridge = BridgeProcess(bridge_config(base, sink, rooms_, events=events), sandbox)
        await bridge.start()
        if probe is not None:
            await probe.start(sandbox)
        sender = WebhookSender(bridge.base, CLIENT, sink.secret)
        users = [(f"m{m}-u{k}", room.code) for m, room in enumerate(rooms_) for k in range(USERS_PER_MEETING)]
        await join_all(sender, users, concurrency=8)
        await wait_in_call(bridge, len(users), 60)
        # Warm-up: every reader running and every connection open before anything is timed.
        warm = [await teams_post(sandbox, room, "warm-up") for room in rooms_]
        if not await _wait_delivered(sink, [m for m, _ in warm], USERS_PER_MEETING, 30):
            raise RuntimeError("warm-up messages were not delivered within 30 s")
        count = int(seconds * RATE_PER_S)
        cpu_before = bridge.cpu_seconds()
        started = time.monotonic()
        posted = await _post_all(sandbox, rooms_, count, RATE_PER_S)
        offered_s = time.monotonic() - started
        complete = await _wait_delivered(sink, [m for m, _ in posted], USERS_PER_MEETING, 30)
        cpu = bridge.cpu_seconds() - cpu_before
        latencies = [arrived - created for mid, created in posted for arrived in sink.by_message.get(mid, [])]
        result: dict[str, float | None] = {
            "messages": count,
            "offered_per_s": round(count / offered_s, 1),
            "deliveries_missing": count * USERS_PER_MEETING - len(latencies),
            "repeats": sink.repeats,
            "bridge_cpu_ms_per_message": round(cpu / count * 1000, 2),
            **_summary("", latencies),
        }
        if not complete:
            result["p99_ms"] = None  # a lost delivery has no latency: the figure would flatter
        if probe is not None:
            bare = [probe.arrived[mid] - created for mid, created in posted if mid in probe.arrived]
            result |= _summary("event_grid_alone_", bare)
        return result
    finally:
        if sender is not None:
            await sender.close()
        if bridge is not None:
            await bridge.terminate()
        if probe is not None:
            await probe.stop()
        await sink.stop()
        await sandbox.stop()


async def run(quick: bool, workdir: Path) -> Result:
    seconds = 6.0 if quick else 30.0
    polling = await run_mode(workdir, events=False, seconds=seconds)
    events = await run_mode(workdir, events=True, seconds=seconds)
    figures = {f"polling_{k}": v for k, v in polling.items()} | {f"events_{k}": v for k, v in events.items()}
    relay = RelaySection()
    p99_poll, p99_events = figures["polling_p99_ms"], figures["events_p99_ms"]
    notes = (
        f"{MEETINGS} meetings x {USERS_PER_MEETING} webhook users, {RATE_PER_S:g} Teams messages/s for {seconds:g} s "
        f"(open loop); latency = callback arrival - the sandbox's createdOn (one machine clock), one sample per "
        f"delivery; a run with a lost delivery reports no p99. Polling at the defaults (poll_active_s="
        f"{relay.poll_active_s:g}, poll_idle_s={relay.poll_idle_s:g}, idle_after_s={relay.idle_after_s:g}): the "
        f"wait for the next read alone is up to {relay.poll_active_s:g} s. Baseline for events: the same Event Grid "
        f"events reaching a bare receiver in the driver."
    )
    return {
        "scenario": NAME,
        "figures": figures,
        "targets": [
            target(
                "polling_p99_ms",
                f"≤ {TARGET_POLLING_S * 1000:.0f} ms",
                p99_poll,
                p99_poll is not None and p99_poll <= TARGET_POLLING_S * 1000,
            ),
            target(
                "events_p99_ms",
                f"≤ {TARGET_EVENTS_S * 1000:.0f} ms",
                p99_events,
                p99_events is not None and p99_events <= TARGET_EVENTS_S * 1000,
                figures.get("events_event_grid_alone_p99_ms"),
            ),
        ],
        "baseline": {"events_p99_ms": figures.get("events_event_grid_alone_p99_ms")},
        "notes": notes,
    }


def main() -> None:
    run_alone(run, __doc__, "a shorter run")


if __name__ == "__main__":
    main()
