"""Shared fixtures: one sandbox over TLS on loopback for the session, reset before each test; one PostgreSQL server
for the session, started when a test first asks for it; a store URL on each backend."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from bot.sandbox import Sandbox, SandboxInfo
from bot.store import StoreUrl
from tests.support.postgres import PostgresServer, binaries, running_server
from tests.support.sandbox import Control

pytest_plugins = ("tests.support.browser",)  # the Chromium `page` fixture, for the page tests in every folder


@pytest.fixture(scope="session")
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sb:
        yield sb


@pytest.fixture(scope="session")
def info(sandbox: Sandbox) -> SandboxInfo:
    assert sandbox.info is not None
    return sandbox.info


@pytest.fixture(scope="session")
async def http(info: SandboxInfo) -> AsyncIterator[aiohttp.ClientSession]:
    ctx = ssl.create_default_context(cafile=info.ca_file)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        yield session


@pytest.fixture
async def control(http: aiohttp.ClientSession, info: SandboxInfo) -> Control:
    ctl = Control(http, info)
    await ctl.ok("POST", "/sandbox/v1/reset")
    return ctl


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    if binaries() is None:
        pytest.skip("PostgreSQL is not installed (make postgresql installs Debian's package)")
    with running_server() as server:
        yield server


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    """A server of the module's own, for tests that stop and start it: other tests' databases stay up."""
    if binaries() is None:
        pytest.skip("PostgreSQL is not installed (make postgresql installs Debian's package)")
    with running_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> StoreUrl:
    """A fresh store's URL on each backend in turn: a new SQLite file, or a new database on the session's server."""
    if request.param == "sqlite":
        return StoreUrl.sqlite(tmp_path / "state" / "bridge.db")
    server: PostgresServer = request.getfixturevalue("postgres")
    return await server.create_database()
