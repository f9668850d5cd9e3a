"""Inbound throughput: signed webhook messages per second relayed into meeting threads, against the bare SDK.

32 webhook users in 10 meetings (user i in meeting i % 10) each send their messages one after another (the next
once the bridge answered 202), all at once. A message counts as relayed when its text is in the thread (the
sandbox's copy); messages/s runs from the first send to the createdOn of the last chat message. Baseline, in the
same run and on the same sandbox process: 32 ACS identities in 10 other meetings' calls sending through the real
async ChatThreadClient with the same concurrency, and this process's CPU per send.

ACS's chat limits (10 sends per 10 s, 30 per minute per thread) would make this a measurement of the pacer, not
of the bridge: the sandbox runs with limits off and the bridge with `relay.thread_send_limits = []`, as for a
resource whose limits Azure Support raised. The throttled meeting scenario measures the paced case.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .inbound import Rig, User, cpu_seconds, sdk_baseline, start_rig, token, wait_until
from .scenario import Result, rounded, target

NAME = "inbound_throughput"
MEETINGS = 10
SENDERS = 32
RELAYED = 'bridge_messages_relayed_total{channel="webhook",direction="in"}'


@dataclass(frozen=True)
class Size:
    per_sender: int
    baseline_per_sender: int
    paced: bool
    """Also run the same burst with ACS's limits on and the bridge paced to them (a figure, not a target)."""


SIZES = {"full": Size(60, 60, True), "quick": Size(12, 15, False), "tiny": Size(2, 2, False)}


async def _send_all(rig: Rig, run: int, per_sender: int) -> list[int]:
    async def one(index: int, user: User) -> list[int]:
        statuses = []
        for n in range(per_sender):
            status, _ = await rig.message(user, f"{token(run, index, n)} hello from outside Teams")
            statuses.append(status)
        return statuses

    results = await asyncio.gather(*(one(i, u) for i, u in enumerate(rig.users)))
    return [s for r in results for s in r]


async def measure(size: Size, workdir: Path) -> Result:
    async with AsyncExitStack() as stack:
        rig = await start_rig(
            stack, workdir, limits=False, meetings=MEETINGS, users=SENDERS, relay={"thread_send_limits": []}
        )
        baseline = await sdk_baseline(rig.sandbox, MEETINGS, SENDERS, size.baseline_per_sender)

        # Warm-up: every user's first message makes its token, thread client and connections.
        await _send_all(rig, 0, 1)
        await wait_until(lambda: _relayed_at_least(rig, SENDERS), 60)
        await wait_until(lambda: _all_fanned_out(rig, "bm0x"), 60, 0.25)
        await rig.idle()

        total = SENDERS * size.per_sender
        before = (await rig.metrics()).get(RELAYED, 0.0)
        cpu0, driver0 = rig.bridge.cpu_seconds(), time.process_time()
        sandbox0 = cpu_seconds(rig.sandbox.pid)
        async with rig.profiled(NAME):
            t0 = time.time()
            statuses = await _send_all(rig, 1, size.per_sender)
            accepted_s = time.time() - t0
            driver_cpu = time.process_time() - driver0
            done = await wait_until(lambda: _relayed_at_least(rig, before + total), 120, 0.05)
            cpu_relayed = rig.bridge.cpu_seconds() - cpu0
            # Until every other user of each meeting has each relayed message: the meeting readers may be at
            # their idle pace (poll_idle_s), so this can take a few seconds of nearly no CPU.
            await wait_until(lambda: _all_fanned_out(rig, "bm1x"), 60, 0.25)
            await rig.idle()
            cpu_idle = rig.bridge.cpu_seconds() - cpu0
            sandbox_cpu = cpu_seconds(rig.sandbox.pid) - sandbox0
        found, _ = await rig.relayed()
        measured = {t: at for t, at in found.items() if t.startswith("bm1x")}
        sends = await _sends_of(rig, "bm1x")
        last = max(measured.values(), default=t0)
        seconds = max(last - t0, 1e-6)
        owed, fanout = await rig.fanned_out("bm1x")
    paced = await _paced(size, workdir / "paced") if size.paced else {}

    relayed = len(measured)
    per_s = relayed / seconds
    cpu_ms = cpu_idle / total * 1000
    figures: dict[str, float | int | None] = {
        "messages": total,
        "accepted": sum(1 for s in statuses if s == 202),
        "refused_429_then_resent": rig.refused,
        "relayed": relayed,
        "seconds": rounded(seconds),
        "messages_per_s": rounded(per_s, 1),
        "sends": sends,
        "sends_per_s": rounded(sends / seconds, 1),
        "accept_seconds": rounded(accepted_s),
        "bridge_cpu_ms_per_message": rounded(cpu_ms, 3),
        "bridge_cpu_ms_per_message_until_relayed": rounded(cpu_relayed / total * 1000, 3),
        "bridge_cpu_ms_per_send": rounded(cpu_idle / sends * 1000, 3) if sends else None,
        "driver_cpu_ms_per_webhook": rounded(driver_cpu / total * 1000, 3),
        "sandbox_cpu_ms_per_message": rounded(sandbox_cpu / total * 1000, 3),
        "fanout_callbacks_owed": owed,
        "fanout_callbacks": fanout,
        "baseline_sends_per_s": rounded(baseline["sends_per_s"], 1),
        "baseline_client_cpu_ms_per_send": rounded(baseline["client_cpu_ms_per_send"], 3),
    }
    figures.update(paced)
    ratio = per_s / baseline["sends_per_s"]
    cpu_ratio = cpu_ms / baseline["client_cpu_ms_per_send"]
    figures["throughput_ratio"] = rounded(ratio, 3)
    figures["cpu_ratio"] = rounded(cpu_ratio, 3)
    targets = [
        target(
            "messages_per_s",
            f"≥ 0.8 x baseline ({0.8 * baseline['sends_per_s']:.1f})",
            figures["messages_per_s"],
            done and relayed == total and ratio >= 0.8,
            figures["baseline_sends_per_s"],
        ),
        target(
            "bridge_cpu_ms_per_message",
            f"≤ 2 x baseline ({2 * baseline['client_cpu_ms_per_send']:.2f})",
            figures["bridge_cpu_ms_per_message"],
            cpu_ratio <= 2,
            figures["baseline_client_cpu_ms_per_send"],
        ),
    ]
    notes = (
        f"{SENDERS} senders x {size.per_sender} messages over {MEETINGS} meetings, limits off (pacing off); "
        f"{relayed}/{total} texts found in the threads in {sends} chat messages: the bridge accepts faster than "
        f"one send per thread at a time carries them, and the backlog merges by sender ({sends / seconds:.1f} "
        f"sends/s, {cpu_idle / max(sends, 1) * 1000:.2f} ms bridge CPU per send). Bridge CPU counts everything "
        f"the messages cause until the outbox is empty, including the {fanout} callbacks that show each relayed "
        f"message to the other users of its meeting."
    )
    if paced:
        notes += (
            f" With ACS's limits on and the bridge paced (30 sends a minute per thread: at most 5 sends/s over "
            f"{MEETINGS} meetings, one message each without merging), the same burst took "
            f"{paced['paced_seconds']} s: {paced['paced_messages_per_s']} messages/s in {paced['paced_sends']} "
            f"sends, {paced['paced_refused_429_then_resent']} requests answered 429 busy and sent again."
        )
    return {
        "scenario": NAME,
        "figures": figures,
        "targets": targets,
        "baseline": {
            "messages_per_s": figures["baseline_sends_per_s"],
            "bridge_cpu_ms_per_message": figures["baseline_client_cpu_ms_per_send"],
        },
        "notes": notes,
    }


async def _paced(size: Size, workdir: Path) -> dict[str, float | int | None]:
    """The same burst with ACS's thread limits on and the bridge at its defaults (paced, merging by sender, its
    backlog bounds): at 30 sends a minute per thread, what merging makes of them."""
    total = SENDERS * size.per_sender
    async with AsyncExitStack() as stack:
        rig = await start_rig(stack, workdir, limits=True, meetings=MEETINGS, users=SENDERS)
        t0 = time.time()
        await _send_all(rig, 1, size.per_sender)

        async def all_there() -> bool:
            return (await rig.metrics()).get(RELAYED, 0.0) >= total

        await wait_until(all_there, 180, 0.25)
        found, sends = await rig.relayed()
        metrics = await rig.metrics()
    seconds = max(max(found.values(), default=t0) - t0, 1e-6)
    return {
        "paced_relayed": len(found),
        "paced_seconds": rounded(seconds),
        "paced_messages_per_s": rounded(len(found) / seconds, 1),
        "paced_sends": sends,
        "paced_sends_per_s": rounded(sends / seconds, 1),
        "paced_refused_429_then_resent": rig.refused,
        "paced_throttled_sends_at_bridge": int(metrics.get('bridge_acs_throttled_total{operation="send"}', 0)),
    }


async def _all_fanned_out(rig: Rig, prefix: str) -> bool:
    owed, received = await rig.fanned_out(prefix)
    return received >= owed


async def _relayed_at_least(rig: Rig, count: float) -> bool:
    return (await rig.metrics()).get(RELAYED, 0.0) >= count


async def _sends_of(rig: Rig, prefix: str) -> int:
    sends = 0
    for meeting in rig.meetings:
        for message in await rig.thread(meeting):
            if prefix in str(message.get("content", "")):
                sends += 1
    return sends


async def run(quick: bool, workdir: Path) -> dict[str, Any]:
    return dict(await measure(SIZES["quick" if quick else "full"], workdir))
