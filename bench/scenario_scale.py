"""Benchmark: scale, many live meetings with in-call webhook users sitting idle, and the bridge's restart with them.

Set-up (sandbox limits off): the meetings are bridged through the admin API, then every user joins through the
signed webhook door until all sessions are in the call; the limits go back on before anything is measured.
Figures: resident memory per session above the same bridge process before any session existed; CPU (% of one
core) and chat reads per meeting per minute over the idle window, the reads counted by the sandbox, first with
Event Grid chat events subscribed (a meeting is then read on its events and by a safety read every
poll_safety_s), then without (polled every poll_idle_s); each time the bridge is killed (SIGKILL) and started
again, and resume is timed from the start until it serves and has taken every session back up (each call leg's
state looked up or watched again, each meeting's thread read once).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bot.config import RelaySection

from .population import (
    CLIENT,
    Room,
    bridge_config,
    gather_limited,
    join_all,
    new_sink,
    outbox_depth,
    rooms,
    session_counts,
    start_sandbox,
    wait_in_call,
)
from .processes import BridgeProcess, SandboxProcess, WebhookSender, py_spy
from .scenario import Result, target

NAME = "scale"
READS = "GET /chat/threads/{thread}/messages"
CALL_GETS = "GET /sandbox/v1/calls/{call}"
HUB_STREAM = "GET /sandbox/v1/call-events"
TARGET_KB_PER_SESSION = 30
TARGET_CPU_PCT = 10
TARGET_CPU_PCT_EVENTS = 3
TARGET_READS_PER_MIN = 6
TARGET_READS_PER_MIN_EVENTS = 60 / RelaySection().poll_safety_s
TARGET_RESUME_S = 10


async def _add_meetings(bridge: BridgeProcess, token: str, rooms_: list[Room]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def add(room: Room) -> None:
            async with http.post(f"{bridge.base}/api/v1/meetings", json=room.config()) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"adding meeting {room.code}: {resp.status} {await resp.text()}")

        await gather_limited((add(r) for r in rooms_), 8)


async def _requests(sandbox: SandboxProcess) -> dict[str, int]:
    return dict((await sandbox.control("GET", "/stats"))["requests"])


def _since(after: dict[str, int], before: dict[str, int], key: str) -> int:
    return after.get(key, 0) - before.get(key, 0)


async def _wait_quiet(bridge: BridgeProcess, timeout_s: float) -> None:
    """Until the join notices are all delivered: nothing left in the outbox."""
    deadline = time.monotonic() + timeout_s
    while await outbox_depth(bridge) > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.5)


async def _bare_sdk_reads(
    sandbox: SandboxProcess, rooms_: list[Room], window_s: float, workdir: Path
) -> dict[str, Any]:
    """The baseline: the bare chat SDK, in a process of its own, reading every meeting at the bridge's idle rate."""
    await sandbox.control("PUT", "/limits", {"enabled": False})  # its own identities and call legs, at once
    spec = {
        "sandbox_info": str(sandbox.state_dir / "sandbox.json"),
        "meetings": [[r.meeting["joinWebUrl"], r.meeting["threadId"]] for r in rooms_],
        "interval_s": RelaySection().poll_idle_s,
        "window_s": window_s,
    }
    path = workdir / "idle-reads.json"
    path.write_text(json.dumps(spec))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.idle_reads", str(path), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the bare SDK baseline failed with exit code {proc.returncode}")
    return dict(json.loads(out))


async def _resume(bridge: BridgeProcess, sandbox: SandboxProcess, meetings: int, sessions: int) -> dict[str, float]:
    """SIGKILL, start again; seconds until it serves and until every session is taken back up."""
    bridge.kill()
    before = await _requests(sandbox)
    started = time.monotonic()
    serving_s = await bridge.start(timeout_s=120)
    deadline = started + 300
    while True:
        now = await _requests(sandbox)
        legs = _since(now, before, CALL_GETS) >= sessions or _since(now, before, HUB_STREAM) >= 1
        read = _since(now, before, READS) >= meetings
        in_call = (await session_counts(bridge)).get("in_call", 0) >= sessions
        if legs and read and in_call:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"not resumed after 300 s: legs {legs}, meetings read {read}, in call {in_call}")
        await asyncio.sleep(0.1)
    return {"serving_s": round(serving_s, 2), "resume_s": round(time.monotonic() - started, 2)}


async def _idle(bridge: BridgeProcess, sandbox: SandboxProcess, meetings: int, idle_s: float, label: str) -> Any:
    """CPU and reads over an idle window: % of a core (and the kernel's part), reads per meeting per minute."""
    before = await _requests(sandbox)
    async with py_spy(bridge.pid, f"{NAME}-{label}"):
        (user0, sys0), t0 = bridge.cpu_times(), time.monotonic()
        await asyncio.sleep(idle_s)
        (user1, sys1), window = bridge.cpu_times(), time.monotonic() - t0
    after = await _requests(sandbox)
    cpu_s = (user1 - user0) + (sys1 - sys0)
    reads = _since(after, before, READS)
    return {
        "idle_s": round(window, 1),
        "idle_cpu_pct": round(cpu_s / window * 100, 2),
        "idle_cpu_system_pct": round((sys1 - sys0) / window * 100, 2),
        "reads_per_meeting_per_min": round(reads / meetings / (window / 60), 2),
        "cpu_ms_per_read": round(cpu_s / reads * 1000, 3) if reads else None,
        "other_requests_per_s": round((sum(after.values()) - sum(before.values()) - reads) / window, 1),
    }


async def _events(bridge: BridgeProcess, sandbox: SandboxProcess, on: bool) -> None:
    """Chat events on or off for the bridge's next start: its door, and the sandbox's subscription to it."""
    bridge.config.events = on
    for sub in (await sandbox.control("GET", "/event-subscriptions"))["value"]:
        if "/channels/acs/events" in sub["endpoint"]:
            await sandbox.control("DELETE", f"/event-subscriptions/{sub['id']}")
    if on:
        await bridge.subscribe_chat_events()


async def measure(meetings: int, users: int, idle_s: float, workdir: Path) -> dict[str, Any]:
    sessions = meetings * users
    sandbox, base = await start_sandbox(workdir, "scale", limits=False)
    sink = await new_sink()
    bridge: BridgeProcess | None = None
    sender: WebhookSender | None = None
    try:
        rooms_ = await rooms(sandbox, meetings, poster=False)
        admin = secrets.token_urlsafe(32)
        # The client app joins every user itself: its request budget must cover the set-up burst.
        config = bridge_config(base, sink, [], admin_token=admin, rate_per_second=100_000, events=True)
        bridge = BridgeProcess(config, sandbox)
        await bridge.start()
        await _add_meetings(bridge, admin, rooms_)
        await asyncio.sleep(2)
        rss_empty = bridge.rss_bytes()
        cpu0, t0 = bridge.cpu_seconds(), time.monotonic()
        await asyncio.sleep(5)
        empty_cpu_pct = (bridge.cpu_seconds() - cpu0) / (time.monotonic() - t0) * 100
        sender = WebhookSender(bridge.base, CLIENT, sink.secret)
        started = time.monotonic()
        users_ = [(f"m{m}-u{u}", room.code) for m, room in enumerate(rooms_) for u in range(users)]
        statuses = await join_all(sender, users_, concurrency=32)
        await wait_in_call(bridge, sessions, 1800)
        await _wait_quiet(bridge, 300)
        setup_s = time.monotonic() - started
        await sandbox.control("PUT", "/limits", {"enabled": True})
        await asyncio.sleep(2)
        rss_setup = bridge.rss_bytes()
        events = await _idle(bridge, sandbox, meetings, idle_s, "events")
        resumed_events = await _resume(bridge, sandbox, meetings, sessions)
        await asyncio.sleep(2)
        rss_resumed = bridge.rss_bytes()
        # The same bridge without chat events: killed, and started again without its door and subscription.
        bridge.kill()
        await _events(bridge, sandbox, on=False)
        resumed = await _resume(bridge, sandbox, meetings, sessions)
        await asyncio.sleep(RelaySection().poll_idle_s)  # past the reads that take every meeting up again
        polling = await _idle(bridge, sandbox, meetings, idle_s, "polling")
        await bridge.terminate()
        # One idle interval is enough for the baseline's steady rate (each meeting read once).
        baseline = await _bare_sdk_reads(sandbox, rooms_, RelaySection().poll_idle_s, workdir)
        return {
            "meetings": meetings,
            "sessions": sessions,
            "rss_empty_mb": round(rss_empty / 2**20, 1),
            "rss_setup_mb": round(rss_setup / 2**20, 1),
            "kb_per_session": round((rss_setup - rss_empty) / sessions / 1024, 1),
            "rss_resumed_mb": round(rss_resumed / 2**20, 1),
            "kb_per_session_after_resume": round((rss_resumed - rss_empty) / sessions / 1024, 1),
            **polling,
            **{f"{k}_events": v for k, v in events.items()},
            "bare_sdk_idle_reads_cpu_pct": baseline["cpu_pct"],
            "bare_sdk_cpu_ms_per_read": round(baseline["cpu_pct"] * 10 / baseline["reads_per_s"], 3),
            "empty_cpu_pct": round(empty_cpu_pct, 2),
            "setup_s": round(setup_s, 1),
            "join_failures": sessions - statuses.get(202, 0),
            **resumed,
            **{f"{k}_events": v for k, v in resumed_events.items()},
        }
    finally:
        if sender is not None:
            await sender.close()
        if bridge is not None:
            await bridge.terminate()
        await sink.stop()
        await sandbox.stop()


async def run(quick: bool, workdir: Path, *, meetings: int | None = None, idle_s: float | None = None) -> Result:
    meetings = meetings or (100 if quick else 1000)
    users = 10
    # A whole number of idle poll intervals: a shorter window counts one read more or less per meeting by phase.
    idle_s = idle_s or (20.0 if quick else 60.0)
    f = await measure(meetings, users, idle_s, workdir)
    kb, cpu, reads, resume = f["kb_per_session"], f["idle_cpu_pct"], f["reads_per_meeting_per_min"], f["resume_s"]
    cpu_events, reads_events = f["idle_cpu_pct_events"], f["reads_per_meeting_per_min_events"]
    scaled = "" if meetings == 1000 and idle_s >= 60 else " (smaller than the issue's 1,000 x 10 for 60 s)"
    bare = f["bare_sdk_idle_reads_cpu_pct"]
    return {
        "scenario": NAME,
        "figures": f,
        "targets": [
            target("kb_per_session", f"≤ {TARGET_KB_PER_SESSION} KB", kb, kb <= TARGET_KB_PER_SESSION),
            target("idle_cpu_pct", f"≤ {TARGET_CPU_PCT} % of a core", cpu, cpu <= TARGET_CPU_PCT, bare),
            target(
                "idle_cpu_pct_events",
                f"≤ {TARGET_CPU_PCT_EVENTS} % of a core",
                cpu_events,
                cpu_events <= TARGET_CPU_PCT_EVENTS,
                bare,
            ),
            target("reads_per_meeting_per_min", f"≤ {TARGET_READS_PER_MIN}", reads, reads <= TARGET_READS_PER_MIN),
            target(
                "reads_per_meeting_per_min_events",
                f"≤ {TARGET_READS_PER_MIN_EVENTS:g}",
                reads_events,
                reads_events <= TARGET_READS_PER_MIN_EVENTS,
            ),
            target("resume_s", f"≤ {TARGET_RESUME_S} s", resume, resume <= TARGET_RESUME_S),
            target(
                "resume_s_events",
                f"≤ {TARGET_RESUME_S} s",
                f["resume_s_events"],
                f["resume_s_events"] <= TARGET_RESUME_S,
            ),
        ],
        "baseline": {"idle_cpu_pct": bare, "idle_cpu_pct_events": bare},
        "notes": (
            f"{meetings} meetings x {users} webhook users = {f['sessions']} sessions, idle {f['idle_s']:g} s{scaled}, "
            f"first with Event Grid chat events subscribed ({f['cpu_ms_per_read_events']} ms of CPU per read), then "
            f"without, polling ({f['cpu_ms_per_read']} ms per read). Memory: RSS after set-up minus RSS of the same "
            f"bridge with the meetings but no session ({f['rss_empty_mb']:g} MB); after the restart "
            f"{f['kb_per_session_after_resume']:g} KB per session. CPU baseline: the bare async chat SDK in a process "
            f"of its own reading the same {meetings} idle threads at the polling rate (one read per meeting per "
            f"poll_idle_s, nothing returned), {bare:g} % ({f['bare_sdk_cpu_ms_per_read']} ms per read); the empty "
            f"bridge idles at {f['empty_cpu_pct']:g} %. Reads = list-messages requests the sandbox served in the idle "
            f"window. Resume: SIGKILL, then start until every session is back in the call, each leg's state looked up "
            f"or watched again and each meeting read once ({f['serving_s']:g} s until it served; with events "
            f"{f['resume_s_events']:g} s). Set-up took {f['setup_s']:g} s."
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100 meetings and 20 s idle instead of 1,000 and 60 s")
    parser.add_argument("--meetings", type=int, help="override the number of meetings (10 users each)")
    parser.add_argument("--idle", type=float, help="override the idle window in seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        result = asyncio.run(run(args.quick, Path(tmp), meetings=args.meetings, idle_s=args.idle))
        print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
