"""Which PostgreSQL driver the store uses, by measurement: the store's own methods on asyncpg and on psycopg 3.

    python -m bench.store_drivers [--messages 2000] [--url postgresql://...]

Each message runs what the relay asks of the store for one webhook message into a meeting and one thread message
out to a user (intake with its dedupe and backlog counts, the sender's reads, attempt and finish; the fan-out with
its cursor, the dispatcher's reads, attempt and finish), through the real domain methods of bot/store, with
`concurrency` meetings at once. Figures: this process's CPU per message (the driver's and the store's Python: the
bridge's cost; the server's is its own process) and the wall time. SQLite runs the same as the baseline. Without
--url a temporary server is started (tests/support/postgres.py).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Self

from bot.models import DeliveryState, Direction, IdentityMode, Meeting
from bot.store import NewDelivery, PostgresStore, SqliteStore, Store, StoreUrl, parse_store_url
from bot.store.base import Row, Tx
from bot.store.postgres.sql import PostgresStatements

_MARK = re.compile(r"\$(\d+)")


def _named(sql: str) -> str:
    """$1 becomes %(p1)s: psycopg's placeholders, a repeated one included."""
    return _MARK.sub(r"%(p\1)s", sql)


def _params(args: Sequence[Any]) -> dict[str, Any]:
    return {f"p{n}": a for n, a in enumerate(args, start=1)}


class _Record(tuple[Any, ...]):
    """A row by position or column name, as the store reads rows (asyncpg.Record and sqlite3.Row do it in C)."""

    names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        return tuple.__getitem__(self, self.names[key] if isinstance(key, str) else key)


def _row_factory(cursor: Any) -> Any:
    names = {d.name: i for i, d in enumerate(cursor.description or ())}
    cls = type("Row", (_Record,), {"names": names})
    return lambda values: cls(values)


class PsycopgTx:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def one(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        cur = await self._conn.execute(_named(sql), _params(args))
        row: Row | None = await cur.fetchone()
        return row

    async def all(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        cur = await self._conn.execute(_named(sql), _params(args))
        rows: list[Row] = await cur.fetchall()
        return rows

    async def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        cur = await self._conn.execute(_named(sql), _params(args))
        return int(cur.rowcount)

    async def run_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self._conn.cursor() as cur:
            await cur.executemany(_named(sql), [_params(r) for r in rows])


class PsycopgStore(Store):
    """The PostgreSQL backend's statements on psycopg 3 with its async pool: only what this measurement needs."""

    sql = PostgresStatements()

    def __init__(self, url: StoreUrl) -> None:
        self.url = url

    async def open(self) -> Self:
        from psycopg.types.string import TextLoader
        from psycopg_pool import AsyncConnectionPool

        async def configure(conn: Any) -> None:
            for oid in ("timestamptz", "jsonb"):  # text out, as the asyncpg backend reads them
                conn.adapters.register_loader(oid, TextLoader)
            conn.row_factory = _row_factory
            await conn.set_autocommit(True)

        u = self.url
        conninfo = f"host={u.host} port={u.port} user={u.user} password={u.password} dbname={u.database}"
        self._pool = AsyncConnectionPool(
            conninfo, min_size=1, max_size=u.pool_size, configure=configure, open=False, kwargs={"prepare_threshold": 1}
        )
        await self._pool.open()
        await (await PostgresStore(u).open()).close()  # the schema, migrated by the real backend
        return self

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._pool.connection() as conn, conn.transaction():
            yield PsycopgTx(conn)

    @asynccontextmanager
    async def one_statement(self) -> AsyncIterator[Tx]:
        async with self._pool.connection() as conn:  # autocommit: one statement is atomic
            yield PsycopgTx(conn)

    async def _one(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        async with self._pool.connection() as conn:
            return await PsycopgTx(conn).one(sql, args)

    async def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        async with self._pool.connection() as conn:
            return await PsycopgTx(conn).all(sql, args)


async def one_message(store: Store, meeting_id: str, user_id: str, session_id: int, n: int) -> None:
    """The store's share of one message in and one out, as the relay asks for it."""
    inbound = NewDelivery(str(uuid.uuid4()), Direction.INBOUND, meeting_id, user_id, "message", {"text": f"hi {n}"})
    inbound = NewDelivery(**{**inbound.__dict__, "session_id": session_id})
    await store.record_inbound(
        "webhook:app", f"msg-{meeting_id}-{n}", 202, {"id": inbound.id}, inbound, max_meeting=500, max_user=100
    )
    await store.get_user(user_id)
    await store.active_session(user_id, meeting_id)
    [head] = await store.pending(Direction.INBOUND, "meeting_id", meeting_id, limit=20)
    await store.get_meeting(meeting_id)
    await store.get_session(session_id)
    await store.get_user(user_id)
    await store.mark_attempt([head.id])
    await store.finish([head.id], DeliveryState.DELIVERED, remote_id=f"r{n}")
    out = NewDelivery(str(uuid.uuid4()), Direction.OUTBOUND, meeting_id, user_id, "message", {"text": f"re {n}"})
    await store.record_outbound(meeting_id, f"t{n}", "v1", [out], cursor=f"2026-01-01T00:00:{n % 60:02d}+00:00")
    await store.outbound_backlog(user_id)
    [row] = await store.pending(Direction.OUTBOUND, "user_id", user_id, limit=20)
    await store.get_user(user_id)
    await store.get_meeting(meeting_id)
    await store.mark_attempt([row.id])
    await store.finish([row.id], DeliveryState.DELIVERED, remote_id=f"s{n}")


async def measure(store: Store, messages: int, concurrency: int, tag: str) -> dict[str, float]:
    async def meeting(index: int) -> None:
        mid, uid = f"{tag}-m{index}", f"webhook:app/{tag}-u{index}"
        await store.upsert_meeting(
            Meeting(
                mid,
                f"{tag}{index}",
                "bench",
                None,
                f"19:{mid}",
                None,
                None,
                None,
                IdentityMode.PER_USER,
                "{name}",
                ["*"],
            )
        )
        await store.upsert_user(uid, "webhook", None)
        session = await store.create_session(uid, mid, "8:acs:x")
        for n in range(messages // concurrency):
            await one_message(store, mid, uid, session.id, n)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(meeting(i) for i in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = messages // concurrency * concurrency
    return {"cpu_us_per_message": cpu / done * 1e6, "wall_ms_per_message": wall / done * 1e3, "messages": done}


async def main(messages: int, url: str | None, concurrency: int) -> None:
    server = None
    if url is None:
        from tests.support.postgres import PostgresServer

        server = PostgresServer()
        server.init()
        server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in ("sqlite", "asyncpg", "psycopg"):
                if name == "psycopg" and importlib.util.find_spec("psycopg_pool") is None:
                    print("psycopg  not installed: pip install -e '.[bench]'")
                    continue
                if name == "sqlite":
                    store: Store = SqliteStore(Path(tmp) / f"{uuid.uuid4().hex}.db")
                else:
                    pg = parse_store_url(url) if url else await server.create_database()  # type: ignore[union-attr]
                    store = PostgresStore(pg) if name == "asyncpg" else PsycopgStore(pg)
                await store.open()
                try:
                    await measure(store, max(concurrency, messages // 10), concurrency, "warm")  # plans, caches
                    figures = await measure(store, messages, concurrency, "run")
                finally:
                    await store.close()
                print(
                    f"{name:8} {figures['cpu_us_per_message']:8.0f} µs CPU/message"
                    f"  {figures['wall_ms_per_message']:6.2f} ms wall/message  ({figures['messages']:.0f} messages)"
                )
    finally:
        if server is not None:
            server.destroy()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4, help="meetings at once")
    parser.add_argument("--url", help="a PostgreSQL URL to use instead of a temporary server (its data is added to)")
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.url, args.concurrency))
