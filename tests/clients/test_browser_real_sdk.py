"""The browser connector with Microsoft's real Calling SDK bundle, offline: it loads, and the service it cannot reach
is a transient failure within a bound, never a hang. Every request stays on loopback (--host-resolver-rules)."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from bot.calls.browser import BrowserConnector
from bot.calls.browser.server import REAL_SDK
from bot.config import BrowserSection
from bot.errors import TransientError
from bot.sandbox import SandboxInfo
from tests.support.meetings import new_user
from tests.support.sandbox import Control

# No name resolves but localhost: the SDK's calls to Azure fail at once instead of leaving the machine.
LOOPBACK_ONLY = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost"
BOUND_S = 60.0


@pytest.fixture
def real_sdk() -> None:
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    if not REAL_SDK.is_file():
        pytest.skip("the Calling SDK bundle is not built (make joiner)")


@pytest.mark.usefixtures("real_sdk")
async def test_the_real_sdk_offline_is_a_transient_failure_within_a_bound(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting()
    user = await new_user(info)
    asked: list[str] = []

    async def token() -> str:
        asked.append("token")
        return user.token

    connector = BrowserConnector(BrowserSection(args=[LOOPBACK_ONLY], join_timeout_s=BOUND_S))
    await connector.start()
    try:
        with pytest.raises(TransientError, match="lost its connection"):
            async with asyncio.timeout(BOUND_S + 10):
                await connector.join(token, meeting_link=meeting["joinWebUrl"], display_name="Ann (SMS)")
        # The agent got its token through the page's binding, from the bridge's memory.
        assert asked
        assert connector.live_legs == 0
        assert not [p for p in connector.browser.pages if p.legs]
    finally:
        await connector.close()
