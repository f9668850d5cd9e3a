"""Shared fixtures: one sandbox over TLS on loopback for the session, reset before each test."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.sandbox import Sandbox, SandboxInfo
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
