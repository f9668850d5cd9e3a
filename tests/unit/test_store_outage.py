"""The PostgreSQL store through a database restart: it refuses at once while the server is away, logs the outage
once when it starts and once when it ends, and works again by itself once the server is back."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.store import PostgresStore, StoreUnavailableError
from tests.support.postgres import PostgresServer
from tests.unit.test_store import delivery, setup


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bot.store.outage" and r.levelno >= logging.INFO]


async def test_a_restart_is_one_outage_refused_while_it_lasts_and_ended_by_itself(
    own_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.store")
    store = await PostgresStore(await own_postgres.create_database()).open()
    try:
        await setup(store)
        assert (await store.record_inbound("webhook:app", "before", 202, {}, delivery("d-before")))[2]
        await asyncio.to_thread(own_postgres.stop)
        # Every kind of call fails the same way: reads, single statements, transactions.
        for attempt in range(3):
            with pytest.raises(StoreUnavailableError):
                await store.get_meeting("m-1")
            with pytest.raises(StoreUnavailableError):
                await store.mark_attempt(["d-before"])
            with pytest.raises(StoreUnavailableError):
                await store.record_inbound("webhook:app", f"during-{attempt}", 202, {}, delivery(f"d-{attempt}"))
        assert not await store.writable()
        waiting = asyncio.ensure_future(store.available())
        await asyncio.sleep(0.6)
        assert not waiting.done()  # nothing wakes the waiters while the server is away
        await asyncio.to_thread(own_postgres.start)
        await asyncio.wait_for(waiting, timeout=30)
        # Back by itself: what was acknowledged is there, what was refused is not, and a repeat is a new message.
        assert [d.id for d in await store.deliveries()] == ["d-before"]
        assert (await store.record_inbound("webhook:app", "during-0", 202, {}, delivery("d-0")))[2]
        assert await store.writable()
    finally:
        await store.close()
    lines = outage_lines(caplog)
    assert len(lines) == 2, lines
    assert "is unavailable" in lines[0] and "doors answer 503" in lines[0]
    assert "is available again after" in lines[1]
    assert own_postgres.password not in " ".join(r.getMessage() for r in caplog.records)


async def test_connections_that_died_with_the_server_are_replaced(
    own_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A quick restart between two calls: the pool's idle connections are dead, and the first call to meet one is
    # refused; then every connection is new, and nothing fails twice.
    caplog.set_level(logging.INFO, logger="bot.store")
    url = await own_postgres.create_database()
    store = await PostgresStore(url).open()
    try:
        await setup(store)
        await asyncio.gather(*(store.get_meeting("m-1") for _ in range(5)))  # several connections in the pool
        await own_postgres.restart(down_s=0)
        failures = 0
        for _ in range(20):
            try:
                assert await store.get_meeting("m-1") is not None
            except StoreUnavailableError:
                failures += 1
                await asyncio.wait_for(store.available(), timeout=30)
        assert failures <= 1
    finally:
        await store.close()
    assert len(outage_lines(caplog)) in (0, 2)
