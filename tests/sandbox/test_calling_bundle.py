"""Microsoft's real Calling SDK bundle (make joiner) in headless Chromium with every request kept on loopback: it
loads as an ES module, constructs a CallClient, and createCallAgent with a sandbox token ends offline, within a
bound, by rejecting or by resolving Disconnected; it never hangs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.sandbox import SandboxInfo
from tests.support.calling_page import (
    BUNDLE,
    CHROMIUM,
    FLAGS,
    LOOPBACK_ONLY,
    Harness,
    PageServer,
    page_server,
    require_chromium,
)
from tests.support.meetings import new_user
from tests.support.sandbox import Control

# The trial on this kind of machine saw createCallAgent resolve Disconnected after about 14 s offline.
OFFLINE_BOUND_S = 90.0


@pytest.fixture
async def bundle_page() -> AsyncIterator[tuple[Harness, PageServer]]:
    if not BUNDLE.is_file():
        pytest.skip(f"the Calling SDK bundle {BUNDLE.name} is not built (make joiner builds it; make test runs it)")
    require_chromium()
    from playwright.async_api import async_playwright

    async with page_server() as pages, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*FLAGS, LOOPBACK_ONLY])
        try:
            context = await browser.new_context(ignore_https_errors=True)
            harness = Harness(await context.new_page())
            await harness.page.expose_function("freshToken", _no_refresh)
            await harness.open(pages.url("/sdk/calling.js"))
            yield harness, pages
        finally:
            await browser.close()


async def _no_refresh(key: str) -> str:
    raise RuntimeError("no fresh token offline")


async def test_the_real_sdk_loads_and_ends_offline_within_a_bound_never_hanging(
    bundle_page: tuple[Harness, PageServer], control: Control, info: SandboxInfo
) -> None:
    """createCallAgent rejects or resolves Disconnected; a join on a resolved agent knows the thread at once and
    ends 490/4525 (what the connector treats as a drop)."""
    harness, _ = bundle_page
    assert await harness.run("newClient") == {"ok": True}
    meeting = await control.meeting()
    ann = await new_user(info)
    created: dict[str, Any] = await asyncio.wait_for(harness.create_agent("ann", ann.token), OFFLINE_BOUND_S)
    if not created["ok"]:
        assert created["name"] == "CallingCommunicationError" and isinstance(created["code"], int), created
        return
    assert created["connectionState"] == "Disconnected", created
    call = await harness.join("ann", {"meetingLink": meeting["joinWebUrl"]})
    assert call["state"] == "None" and call["threadId"] == meeting["threadId"]
    ended = await harness.wait_state(call["id"], "Disconnected", timeout_ms=int(OFFLINE_BOUND_S * 1000))
    assert (ended["end"]["code"], ended["end"]["subCode"]) == (490, 4525)
    assert await harness.states(call["id"]) == ["None", "Connecting", "Disconnected"]
