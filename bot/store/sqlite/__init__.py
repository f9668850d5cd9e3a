"""The store on SQLite (aiosqlite, WAL): one connection, one writer at a time, statements run on the loop."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, Self, TypeVar, cast

import aiosqlite

from ...errors import SchemaTooNewError
from ..base import Row, StoreConflictError, Tx
from ..store import Store
from .migrations import MIGRATIONS
from .sql import STATEMENTS

log = logging.getLogger(__name__)
_T = TypeVar("_T")


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


class SqliteTx:
    """The one connection's statements; a broken uniqueness rule becomes StoreConflictError."""

    __slots__ = ("_db",)

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def one(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        try:
            async with self._db.execute(sql, tuple(args)) as cur:
                return cast(Row | None, await cur.fetchone())
        except sqlite3.IntegrityError as exc:
            raise StoreConflictError(str(exc)) from exc

    async def all(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        async with self._db.execute(sql, tuple(args)) as cur:
            return cast(list[Row], list(await cur.fetchall()))

    async def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        try:
            async with self._db.execute(sql, tuple(args)) as cur:
                return cur.rowcount
        except sqlite3.IntegrityError as exc:
            raise StoreConflictError(str(exc)) from exc

    async def run_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            await self._db.executemany(sql, [tuple(r) for r in rows])
        except sqlite3.IntegrityError as exc:
            raise StoreConflictError(str(exc)) from exc


class SqliteStore(Store):
    """One connection, one writer at a time; every multi-row change is one transaction."""

    sql = STATEMENTS
    _db: aiosqlite.Connection
    _tx: SqliteTx

    def __init__(self, path: Path) -> None:
        self.path = path
        self._write = asyncio.Lock()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    async def open(self) -> Self:
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
        self._db, self._tx = db, SqliteTx(db)
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
            async with self.transaction():
                for statement in filter(str.strip, script.split(";")):
                    await self._db.execute(statement)
                await self._db.execute(f"PRAGMA user_version={number}")
            log.info("store migrated to schema %d", number)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._write:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._tx
                await self._db.execute("COMMIT")
            except BaseException:
                try:
                    await self._db.execute("ROLLBACK")
                except sqlite3.OperationalError:
                    # The transaction already ended (a COMMIT that failed after ending it): nothing is left to roll
                    # back, and the original error (a cancellation too) must propagate, or its task carries on.
                    log.debug("no transaction left to roll back")
                raise

    def one_statement(self) -> AbstractAsyncContextManager[Tx]:
        return self.transaction()

    async def _one(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        return await self._tx.one(sql, args)

    async def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        return await self._tx.all(sql, args)

    async def writable(self) -> bool:
        try:
            async with self.transaction():
                await self._db.execute("CREATE TEMP TABLE IF NOT EXISTS probe (x)")
            return True
        except aiosqlite.Error:
            return False

    async def available(self) -> None:
        return None
