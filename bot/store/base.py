"""The store's foundation: one SQLite connection, one writer at a time, migrations and row helpers."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Self, TypeVar, cast

import aiosqlite

from ..errors import SchemaTooNewError
from ..models import (
    DeliveryState,
    Direction,
)
from .migrations import MIGRATIONS

log = logging.getLogger(__name__)
_T = TypeVar("_T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="microseconds") if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class NewDelivery:
    id: str
    direction: Direction
    meeting_id: str
    user_id: str
    kind: str
    body: dict[str, Any]
    state: DeliveryState = DeliveryState.PENDING
    session_id: int | None = None


class InlineConnection(aiosqlite.Connection):
    """aiosqlite's API, with every statement run at once on the event loop's thread instead of its worker thread.

    Profiling the relay (bench/scenario_inbound_throughput.py) found the hop to aiosqlite's thread and back costing
    some 30 µs of CPU per call (a point query is three calls), twenty times the query itself, with some thirty
    calls per relayed message. In WAL mode with synchronous=NORMAL a commit does not fsync (a checkpoint does, now
    and then), so these point queries and small commits block the loop for less time than the hop cost in CPU.
    Opening and closing still run on aiosqlite's thread.
    """

    async def _execute(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        if self._connection is None:
            return cast(_T, await super()._execute(fn, *args, **kwargs))  # type: ignore[no-untyped-call]
        return fn(*args, **kwargs)


class StoreBase:
    """One connection, one writer at a time; every multi-row change is one transaction.

    Constructed without I/O, then opened (``await store.open()``): the wiring builds every object first and opens
    each resource in its own cleanup context.
    """

    _db: aiosqlite.Connection

    def __init__(self, path: Path) -> None:
        self.path = path
        self._write = asyncio.Lock()

    async def open(self) -> Self:
        """Open the database, creating it, and bring its schema up to this version's; SchemaTooNewError if a newer
        version of the bridge wrote it."""
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Opened on aiosqlite's thread, then used on the loop's (InlineConnection): not the same thread.
        db = await InlineConnection(
            partial(sqlite3.connect, str(path), isolation_level=None, check_same_thread=False), 64
        )
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.execute("PRAGMA busy_timeout=5000")
        self._db = db
        try:
            await self._migrate()
        except BaseException:
            await db.close()
            raise
        return self

    async def close(self) -> None:
        await self._db.close()

    async def _migrate(self) -> None:
        async with self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version > len(MIGRATIONS):
            raise SchemaTooNewError(
                f"the store {self.path} has schema {version}, newer than this bridge's {len(MIGRATIONS)}: "
                "run the newer version, or restore a backup made for this one"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            async with self.transaction() as db:
                for statement in filter(str.strip, script.split(";")):
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version={number}")
            log.info("store migrated to schema %d", number)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                await self._db.execute("COMMIT")
            except BaseException:
                try:
                    await self._db.execute("ROLLBACK")
                except sqlite3.OperationalError:
                    # The transaction already ended (a COMMIT that failed after ending it): nothing is left to roll
                    # back, and the original error (a cancellation too) must propagate, or its task carries on.
                    log.debug("no transaction left to roll back")
                raise

    async def _one(self, sql: str, args: Iterable[Any] = ()) -> aiosqlite.Row | None:
        async with self._db.execute(sql, tuple(args)) as cur:
            return await cur.fetchone()

    async def _all(self, sql: str, args: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        async with self._db.execute(sql, tuple(args)) as cur:
            return list(await cur.fetchall())

    async def writable(self) -> bool:
        try:
            async with self.transaction() as db:
                await db.execute("CREATE TEMP TABLE IF NOT EXISTS probe (x)")
            return True
        except aiosqlite.Error:
            return False

    async def _insert_deliveries(self, db: aiosqlite.Connection, items: Iterable[NewDelivery]) -> None:
        now = _ts(utcnow())
        await db.executemany(
            """INSERT INTO outbox (id, direction, meeting_id, user_id, session_id, kind, body, state,
               next_attempt_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)""",
            [
                (
                    d.id,
                    d.direction.value,
                    d.meeting_id,
                    d.user_id,
                    d.session_id,
                    d.kind,
                    json.dumps(d.body),
                    d.state.value,
                    now,
                    now,
                    now,
                )
                for d in items
            ],
        )

    async def _update(self, table: str, allowed: set[str], key: str, fields: dict[str, Any]) -> None:
        if not fields or set(fields) - allowed:
            raise ValueError(f"cannot update {table} fields {sorted(set(fields) - allowed)}")
        sets = ", ".join(f"{k}=?" for k in fields)
        async with self.transaction() as db:
            await db.execute(f"UPDATE {table} SET {sets} WHERE id=?", (*fields.values(), key))
