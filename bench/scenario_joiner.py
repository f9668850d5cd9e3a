"""Benchmark: the browser connector, each call leg held by the sandbox's stand-in Calling SDK in the bridge's Chromium.

The bridge and the sandbox run as their own processes (`python -m bot run` with BRIDGE__CALLS__CONNECTOR=browser).
Figures: join time, from the webhook join to the user's "in the meeting chat" notice, p50 and p99 for batches of
1, 10 and 50 users joining at once (each batch in its own meeting, ended before the next); the proportional set size
(PSS) of the whole browser tree with 10 and 50 legs held, per leg above the browser with no page open; the tree's
CPU per idle leg over a quiet window; and the recovery after SIGKILL of the browser with 50 legs: from the kill
until every user has been told they are back in the meeting chat.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from bot.calls.browser import process

from .population import CLIENT, Room, bridge_config, join_all, new_sink, rooms, start_sandbox
from .processes import BridgeProcess, Sink, WebhookSender
from .scenario import Result, percentile, rounded, run_alone, target

NAME = "joiner"
IN_CALL = "in the meeting chat"
BACK = "back in the meeting chat"
TARGET_MB_PER_LEG = 15
TARGET_CPU_PCT_PER_LEG = 0.5
TARGET_RECOVERY_S = 20
LEGS_PER_PAGE = 10


def browser_tree(bridge: BridgeProcess) -> list[int]:
    """The bridge's Chromium processes: descendants of the bridge (through Playwright's driver) named chromium."""
    found = []
    for pid in process.tree(bridge.pid):
        try:
            exe = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if b"chromium" in exe:
            found.append(pid)
    return found


def _root(bridge: BridgeProcess) -> int | None:
    tree = set(browser_tree(bridge))
    for pid in tree:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rfind(")") + 2 :].split()[1])
        if parent not in tree:
            return pid
    return None


async def _told(sink: Sink, users: list[str], fragment: str, started: float, limit_s: float) -> list[float]:
    """Seconds from `started` (time.time) until each user was told `fragment`, polled every 20 ms."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + limit_s
    while len(seen) < len(users) and time.monotonic() < deadline:
        now = time.time()
        for user in users:
            if user not in seen and any(fragment in str(p.get("text", "")) for p in sink.by_user.get(user, [])):
                seen[user] = now - started
        await asyncio.sleep(0.02)
    if len(seen) < len(users):
        raise RuntimeError(f"{len(users) - len(seen)} of {len(users)} users were not told {fragment!r} in {limit_s} s")
    return [seen[u] for u in users]


async def _quiet_cpu_pct(bridge: BridgeProcess, window_s: float) -> float:
    pids = browser_tree(bridge)
    before = process.cpu_seconds(pids)
    await asyncio.sleep(window_s)
    return (process.cpu_seconds(pids) - before) / window_s * 100


async def _until_no_legs(bridge: BridgeProcess, limit_s: float = 30.0) -> None:
    """Ended meetings' pages are closed once empty: wait for the tree to shrink back to its pageless size."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        renderers = [p for p in browser_tree(bridge) if b"--type=renderer" in Path(f"/proc/{p}/cmdline").read_bytes()]
        if len(renderers) <= 1:
            return
        await asyncio.sleep(0.5)


async def run(quick: bool, workdir: Path) -> Result:
    sizes = (1, 5, 10) if quick else (1, 10, 50)
    window_s = 5.0 if quick else 15.0
    started = time.monotonic()
    sandbox, base = await start_sandbox(workdir, NAME, limits=False)
    sink = await new_sink()
    bridge: BridgeProcess | None = None
    sender: WebhookSender | None = None
    figures: dict[str, float | None] = {}
    try:
        rooms_: list[Room] = await rooms(sandbox, len(sizes), poster=False)
        config = bridge_config(
            base, sink, rooms_, rate_per_second=1000.0, connector="browser", browser={"legs_per_page": LEGS_PER_PAGE}
        )
        bridge = BridgeProcess(config, sandbox)
        await bridge.start()
        sender = WebhookSender(bridge.base, CLIENT, sink.secret)
        await asyncio.sleep(2.0)
        idle_pss = process.pss_bytes(browser_tree(bridge))
        figures["browser_pss_mb_no_legs"] = rounded(idle_pss / 2**20, 1)
        largest = sizes[-1]
        for size, room in zip(sizes, rooms_, strict=True):
            users = [f"j{size}-{i:02d}" for i in range(size)]
            t0 = time.time()
            statuses = await join_all(sender, [(u, room.code) for u in users])
            if set(statuses) != {202}:
                raise RuntimeError(f"joins answered {statuses}")
            waits = await _told(sink, users, IN_CALL, t0, 120.0)
            figures[f"join_p50_s_{size}"] = rounded(percentile(waits, 50))
            figures[f"join_p99_s_{size}"] = rounded(percentile(waits, 99))
            if size >= 10 or size == largest:
                await asyncio.sleep(3.0)  # let the joins' work settle before measuring the legs at rest
                pss = process.pss_bytes(browser_tree(bridge))
                figures[f"browser_pss_mb_{size}"] = rounded(pss / 2**20, 1)
                figures[f"pss_mb_per_leg_{size}"] = rounded((pss - idle_pss) / size / 2**20, 2)
                cpu = await _quiet_cpu_pct(bridge, window_s)
                figures[f"idle_cpu_pct_per_leg_{size}"] = rounded(cpu / size, 3)
            if size != largest:
                await sandbox.control("POST", f"/meetings/{room.id}/end")
                await _until_no_legs(bridge)
        root = _root(bridge)
        if root is None:
            raise RuntimeError("the bridge's browser was not found")
        users = [f"j{largest}-{i:02d}" for i in range(largest)]
        killed = time.time()
        os.kill(root, signal.SIGKILL)
        back = await _told(sink, users, BACK, killed, 120.0)
        figures[f"recovery_s_{largest}"] = rounded(max(back))
        figures[f"recovery_p50_s_{largest}"] = rounded(percentile(back, 50))
    finally:
        if sender is not None:
            await sender.close()
        if bridge is not None:
            await bridge.terminate()
        await sink.stop()
        await sandbox.stop()
    figures["setup_and_run_s"] = rounded(time.monotonic() - started, 1)
    big = sizes[-1]
    mem = figures.get(f"pss_mb_per_leg_{big}")
    per_leg_cpu = figures.get(f"idle_cpu_pct_per_leg_{big}")
    rec = figures.get(f"recovery_s_{big}")
    targets = [
        target(f"pss_mb_per_leg_{big}", f"≤ {TARGET_MB_PER_LEG} MB", mem, mem is not None and mem <= TARGET_MB_PER_LEG),
        target(
            f"idle_cpu_pct_per_leg_{big}",
            f"≤ {TARGET_CPU_PCT_PER_LEG} % of a core",
            per_leg_cpu,
            per_leg_cpu is not None and per_leg_cpu <= TARGET_CPU_PCT_PER_LEG,
        ),
        target(f"recovery_s_{big}", f"≤ {TARGET_RECOVERY_S} s", rec, rec is not None and rec <= TARGET_RECOVERY_S),
        target(f"join_p99_s_{big}", "reported", figures.get(f"join_p99_s_{big}"), True),
    ]
    return {
        "scenario": NAME,
        "figures": figures,
        "targets": targets,
        "baseline": None,
        "notes": (
            f"Stand-in SDK, {LEGS_PER_PAGE} legs per page, one meeting per batch ({', '.join(map(str, sizes))} users "
            f"joining at once). Join: webhook join to the 'in the meeting chat' notice. PSS: the whole Chromium tree "
            f"(smaps_rollup), per leg above the tree with no page open ({figures['browser_pss_mb_no_legs']} MB). "
            f"CPU: the tree over {window_s:g} s with the legs idle. Recovery: SIGKILL of the browser's root process "
            f"until every user was told they are back (presence's first re-join waits 1 s). The real SDK cannot hold "
            f"a leg offline (its agent disconnects after about 15 s), so its figures are not measured here."
        ),
    }


if __name__ == "__main__":
    run_alone(run, __doc__, "batches of 1, 5 and 10 users instead of 1, 10 and 50")
