"""PostgreSQL store: the bridge's CPU per relayed message with bridge.store_url on PostgreSQL, against SQLite.

The inbound throughput workload (32 webhook users in 10 meetings, each sending one message after another, limits
and pacing off), run twice in this order on fresh processes: the bridge on its default SQLite file, then on a
PostgreSQL database of a temporary server (Debian's PostgreSQL 15 on loopback, tests/support/postgres.py; the
same durability settings as the tests'). Bridge CPU counts everything the messages cause until the outbox is empty
(sends, fan-out callbacks); the server's own CPU is reported beside it, not counted in the ratio: it is the
database's process, on whatever machine the database runs.
"""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .inbound import Rig, start_rig, token, wait_until
from .scenario import Result, rounded, target

NAME = "postgres_store"
MEETINGS = 10
SENDERS = 32
RELAYED = 'bridge_messages_relayed_total{channel="webhook",direction="in"}'
TARGET_RATIO = 1.3


@dataclass(frozen=True)
class Size:
    per_sender: int


SIZES = {"full": Size(40), "quick": Size(6), "tiny": Size(1)}


def _tree_cpu_seconds(root_pid: int) -> float:
    """User + system CPU of a process and its children so far (the postmaster and its backends; Linux /proc)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        pid, ppid = int(stat.parent.name), int(fields[1])
        if root_pid in (pid, ppid):
            total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / tick
    return total


async def _send_all(rig: Rig, run: int, per_sender: int) -> list[int]:
    async def one(index: int, user: Any) -> list[int]:
        return [(await rig.message(user, f"{token(run, index, n)} hello"))[0] for n in range(per_sender)]

    return [s for r in await asyncio.gather(*(one(i, u) for i, u in enumerate(rig.users))) for s in r]


async def _relayed_at_least(rig: Rig, count: float) -> bool:
    return (await rig.metrics()).get(RELAYED, 0.0) >= count


async def _fanned_out(rig: Rig, prefix: str) -> bool:
    owed, received = await rig.fanned_out(prefix)
    return received >= owed


async def _one_backend(workdir: Path, size: Size, store_url: str | None, server_pid: int | None) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        rig = await start_rig(
            stack,
            workdir,
            limits=False,
            meetings=MEETINGS,
            users=SENDERS,
            relay={"thread_send_limits": []},
            store_url=store_url,
        )
        await _send_all(rig, 0, 1)  # warm-up: tokens, thread clients, connections, prepared statements
        await wait_until(lambda: _relayed_at_least(rig, SENDERS), 60)
        await wait_until(lambda: _fanned_out(rig, "bm0x"), 60, 0.25)
        await rig.idle()
        total = SENDERS * size.per_sender
        before = (await rig.metrics()).get(RELAYED, 0.0)
        cpu0 = rig.bridge.cpu_seconds()
        db0 = _tree_cpu_seconds(server_pid) if server_pid else 0.0
        t0 = time.time()
        statuses = await _send_all(rig, 1, size.per_sender)
        done = await wait_until(lambda: _relayed_at_least(rig, before + total), 120, 0.05)
        await wait_until(lambda: _fanned_out(rig, "bm1x"), 60, 0.25)
        await rig.idle()
        cpu = rig.bridge.cpu_seconds() - cpu0
        db = _tree_cpu_seconds(server_pid) - db0 if server_pid else None
        found, _ = await rig.relayed()
    relayed = sum(1 for t in found if t.startswith("bm1x"))
    seconds = max(max((at for t, at in found.items() if t.startswith("bm1x")), default=t0) - t0, 1e-6)
    return {
        "accepted": sum(1 for s in statuses if s == 202),
        "relayed": relayed,
        "complete": done and relayed == total,
        "cpu_ms": cpu / total * 1000,
        "db_cpu_ms": None if db is None else db / total * 1000,
        "messages_per_s": relayed / seconds,
    }


async def measure(size: Size, workdir: Path) -> Result:
    from tests.support.postgres import PostgresServer

    sqlite = await _one_backend(workdir / "sqlite", size, None, None)
    server = PostgresServer()
    try:
        await asyncio.to_thread(server.init)
        await asyncio.to_thread(server.start)
        url = await server.create_database()
        dsn = f"postgresql://{url.user}:{url.password}@{url.host}:{url.port}/{url.database}"
        postgres = await _one_backend(workdir / "postgresql", size, dsn, _postmaster_pid(server.data))
    finally:
        await asyncio.to_thread(server.destroy)
    ratio = postgres["cpu_ms"] / sqlite["cpu_ms"]
    total = SENDERS * size.per_sender
    figures: dict[str, float | int | None] = {
        "messages": total,
        "sqlite_relayed": sqlite["relayed"],
        "postgres_relayed": postgres["relayed"],
        "sqlite_bridge_cpu_ms_per_message": rounded(sqlite["cpu_ms"], 3),
        "postgres_bridge_cpu_ms_per_message": rounded(postgres["cpu_ms"], 3),
        "postgres_server_cpu_ms_per_message": rounded(postgres["db_cpu_ms"], 3),
        "sqlite_messages_per_s": rounded(sqlite["messages_per_s"], 1),
        "postgres_messages_per_s": rounded(postgres["messages_per_s"], 1),
        "cpu_ratio": rounded(ratio, 3),
    }
    complete = sqlite["complete"] and postgres["complete"]
    targets = [
        target(
            "postgres_bridge_cpu_ms_per_message",
            f"≤ {TARGET_RATIO} x SQLite ({TARGET_RATIO * sqlite['cpu_ms']:.2f})",
            figures["postgres_bridge_cpu_ms_per_message"],
            complete and ratio <= TARGET_RATIO,
            figures["sqlite_bridge_cpu_ms_per_message"],
        )
    ]
    notes = (
        f"{SENDERS} senders x {size.per_sender} messages over {MEETINGS} meetings, limits and pacing off, on each "
        f"backend in turn ({sqlite['relayed']}/{total} relayed on SQLite, {postgres['relayed']}/{total} on "
        f"PostgreSQL): the bridge used {ratio:.2f} x SQLite's CPU per message on PostgreSQL (asyncpg, a pool); "
        f"the server's own processes used {figures['postgres_server_cpu_ms_per_message']} ms per message more, "
        "on the same cores here."
    )
    return {
        "scenario": NAME,
        "figures": figures,
        "targets": targets,
        "baseline": {"postgres_bridge_cpu_ms_per_message": figures["sqlite_bridge_cpu_ms_per_message"]},
        "notes": notes,
    }


def _postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


async def run(quick: bool, workdir: Path) -> dict[str, Any]:
    return dict(await measure(SIZES["quick" if quick else "full"], workdir))
