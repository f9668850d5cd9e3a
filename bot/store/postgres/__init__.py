"""The store on PostgreSQL (asyncpg, a pool): real transactions, several writers, outages ridden out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal, Self, cast

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ...errors import SchemaTooNewError
from ...store_url import StoreUrl
from ..base import Row, StoreConflictError, StoreUnavailableError, Tx
from ..outage import Outage
from ..store import Store
from .migrations import MIGRATIONS
from .sql import STATEMENTS

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0
# Any constant: every bridge process migrating the same database takes this one lock, so one migrates at a time
# and the others find the work done.
MIGRATION_LOCK = 0x6D62_7374_6F72_65
# What says the database is away (not what says a statement is wrong): connection failures (class 08), the server
# shutting down or starting up (57), out of connections (53), a standby that cannot write (25006), and the socket.
_AWAY: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.ReadOnlySQLTransactionError,
    OSError,
    TimeoutError,
)
# Also a connection the pool handed out that turns out closed: the database went away while it sat idle.
_AWAY_OR_CLOSED: tuple[type[BaseException], ...] = (*_AWAY, asyncpg.InterfaceError)
# At open, also a refused password or a database that does not exist: the bridge cannot start on it.
_CANNOT_OPEN: tuple[type[BaseException], ...] = (
    *_AWAY_OR_CLOSED,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
)
_Conn = asyncpg.Connection | PoolConnectionProxy


async def _reset(conn: _Conn) -> None:
    # asyncpg's default reset on release is a round trip (unlock advisory locks, close cursors, UNLISTEN, RESET ALL),
    # on every release: a third of a relayed message's round trips, each some 35 µs of CPU in send and recv
    # (bench/store_drivers.py). The store leaves no session state behind (its locks are transaction-scoped, it
    # opens no cursor, sets nothing), so only a transaction a cancellation left open needs ending.
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def _exchange_timestamps_as_text(conn: _Conn) -> None:
    # The domain methods speak ISO 8601 text for every timestamp, as on SQLite; the columns stay timestamptz (the
    # server parses and compares them), and the server's ISO output (TimeZone UTC) reads back with fromisoformat.
    await conn.set_type_codec("timestamptz", schema="pg_catalog", encoder=str, decoder=str, format="text")


class PgTx:
    """One pooled connection's statements, with the driver's errors made the store's."""

    __slots__ = ("_conn", "_outage")

    def __init__(self, conn: _Conn, outage: Outage) -> None:
        self._conn = conn
        self._outage = outage

    @property
    def closed(self) -> bool:
        return self._conn.is_closed()

    def _error(self, exc: Exception) -> Exception:
        if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
            return StoreConflictError(str(exc))
        if isinstance(exc, _AWAY) or (isinstance(exc, asyncpg.InterfaceError) and self._conn.is_closed()):
            return self._outage.failed(exc)
        return exc

    async def one(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        try:
            return cast(Row | None, await self._conn.fetchrow(sql, *args))
        except Exception as exc:
            raise self._error(exc) from exc

    async def all(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        try:
            return cast(list[Row], await self._conn.fetch(sql, *args))
        except Exception as exc:
            raise self._error(exc) from exc

    async def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        try:
            status = await self._conn.execute(sql, *args)
        except Exception as exc:
            raise self._error(exc) from exc
        # "UPDATE 3", "INSERT 0 1", "DELETE 0", "SELECT 1": the count is the last word.
        tail = status.rpartition(" ")[2]
        return int(tail) if tail.isdigit() else 0

    async def run_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            await self._conn.executemany(sql, list(rows))
        except Exception as exc:
            raise self._error(exc) from exc


class PostgresStore(Store):
    """A pool of connections (StoreUrl.pool_size); each transaction holds one, READ COMMITTED, with the rows a
    count must bound serialized by advisory locks (StoreBase). Reads outside a transaction take any free
    connection. While the database is away every call raises StoreUnavailableError at once (Outage)."""

    sql = STATEMENTS
    _pool: asyncpg.Pool

    def __init__(self, url: StoreUrl) -> None:
        if url.backend != "postgresql":
            raise ValueError(f"not a PostgreSQL URL: {url}")
        self.url = url
        self._outage = Outage(str(url), self._probe)

    def __repr__(self) -> str:
        return f"PostgresStore({str(self.url)!r})"

    async def open(self) -> Self:
        url = self.url
        sslmode = cast(Literal["disable", "prefer", "allow", "require", "verify-ca", "verify-full"] | None, url.sslmode)
        self._pool = asyncpg.create_pool(
            host=url.host,
            port=url.port,
            user=url.user,
            password=url.password,
            database=url.database,
            ssl=sslmode,
            # No floor: the pool would refill one in the background through an outage, logging each failure.
            min_size=0,
            max_size=url.pool_size,
            timeout=CONNECT_TIMEOUT_S,
            command_timeout=COMMAND_TIMEOUT_S,
            init=_exchange_timestamps_as_text,
            reset=_reset,
            server_settings={"TimeZone": "UTC", "DateStyle": "ISO", "application_name": "meeting-bridge"},
        )
        try:
            await self._pool
            await self._migrate()
        except _CANNOT_OPEN as exc:
            await self._pool.close()
            # The driver's words name the host, the user and the database at most, never the password.
            raise StoreUnavailableError(f"cannot open the store {url}: {type(exc).__name__}: {exc}") from None
        except BaseException:
            await self._pool.close()
            raise
        return self

    async def close(self) -> None:
        await self._outage.close()
        await self._pool.close()

    async def _migrate(self) -> None:
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
                version = await conn.fetchval("SELECT version FROM schema_version")
                if version is None:
                    version = 0
                    await conn.execute("INSERT INTO schema_version VALUES (0)")
                if version > len(MIGRATIONS):
                    raise SchemaTooNewError(
                        f"the store {self.url} has schema {version}, newer than this bridge's {len(MIGRATIONS)}: "
                        "run the newer version, or restore a backup made for this one"
                    )
                if version == len(MIGRATIONS):
                    return
                # Without arguments asyncpg sends the script as one simple query: its statements run in order.
                await conn.execute(MIGRATIONS[version])
                await conn.execute("UPDATE schema_version SET version=$1", version + 1)
            log.info("store migrated to schema %d", version + 1)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[PgTx]:
        """A pooled connection's statements, in autocommit unless the caller begins a transaction."""
        if self._outage.active:
            raise self._outage.refusal()
        # Acquired by hand, not with `async with`: a driver error in the body must reach the caller as it is (PgTx
        # has made it the store's), and only the pool's own failure to hand out a connection means it is away.
        holder = self._pool.acquire()
        try:
            conn = await holder.__aenter__()
        except _AWAY_OR_CLOSED as exc:
            raise self._outage.failed(exc) from exc
        try:
            yield PgTx(conn, self._outage)
        finally:
            try:
                await holder.__aexit__(None, None, None)
            except Exception:
                # The pool could not reset the connection and closed it: the next acquire opens another.
                log.debug("a store connection was dropped on release")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._connection() as tx:
            await tx.run("BEGIN")
            try:
                yield tx
                await tx.run("COMMIT")
            except BaseException:
                # Not asyncpg's transaction(): on a connection that died it raises its own error in place of the
                # body's, and the body's (a cancellation too) must propagate, or its task carries on.
                if not tx.closed:
                    try:
                        await tx.run("ROLLBACK")
                    except Exception:
                        log.debug("no transaction left to roll back")
                raise

    def one_statement(self) -> AbstractAsyncContextManager[Tx]:
        return self._connection()

    async def _one(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        async with self._connection() as tx:
            return await tx.one(sql, args)

    async def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        async with self._connection() as tx:
            return await tx.all(sql, args)

    async def writable(self) -> bool:
        try:
            row = await self._one("SELECT NOT pg_is_in_recovery()")
        except StoreUnavailableError:
            return False
        return bool(row and row[0])

    async def available(self) -> None:
        await self._outage.wait()

    async def _probe(self) -> None:
        # Connections opened before the outage are dead: each would fail once more on its next use.
        await self._pool.expire_connections()
        async with self._pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
