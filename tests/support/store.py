"""The bridge's store read beside the running bridge: every row, and the rows once the bridge is idle."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from bot.models import DeliveryState, Direction
from tests.support.bridge import Bridge, wait_for

DRIFTING = frozenset({"cursor"})
"""Columns that change on their own while the bridge is idle (the reader's position in the thread)."""


Rows = dict[str, list[tuple[Any, ...]]]


def stored(path: Path) -> Rows:
    """Every row of every table of the bridge's store, read beside the running bridge."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        names = [
            r[0]
            for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_stat%'")
        ]
        rows: Rows = {}
        for name in sorted(names):
            columns = [c[1] for c in db.execute(f"PRAGMA table_info({name})") if c[1] not in DRIFTING]
            found = db.execute(f"SELECT {', '.join(columns)} FROM {name}").fetchall()
            rows[name] = sorted(found, key=repr)
        return rows


async def settled(bridge: Bridge) -> Rows:
    """The store once the bridge is idle: nothing waiting to be sent, every text's carrier report in, no change."""

    async def idle() -> Rows | None:
        rows = await bridge.store.deliveries(limit=10_000)
        if any(r.state in (DeliveryState.PENDING, DeliveryState.HELD) for r in rows):
            return None
        texts = [r for r in rows if r.user_id.startswith("sms:") and r.direction == Direction.OUTBOUND]
        if any(r.state == DeliveryState.DELIVERED and r.report is None for r in texts):
            return None
        before = stored(bridge.settings.store_file)
        await asyncio.sleep(0.05)
        return before if stored(bridge.settings.store_file) == before else None

    result: Rows = await wait_for(idle, what="the bridge to settle")
    return result
