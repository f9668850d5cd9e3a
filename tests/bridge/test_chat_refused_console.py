"""The console's banner and the `status` command while a meeting's chat refuses the bridge's guests in the call."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from bot.admin.tables import status_lines
from bot.sandbox import SandboxInfo
from tests.bridge.test_console import WAIT_MS, sign_in
from tests.support.admin import CODE, TOKEN, Admin, start_admin
from tests.support.bridge import wait_for
from tests.support.sandbox import Control


@pytest.fixture
async def console(control: Control, info: SandboxInfo, tmp_path: Path) -> AsyncIterator[Admin]:
    async for admin in start_admin(control, info, tmp_path, probe_refused_s=0.2):
        yield admin


async def _refuse(console: Admin, enabled: bool) -> None:
    path = f"/sandbox/v1/meetings/{console.meeting['id']}/guest-chat"
    await console.control.ok("PUT", path, {"enabled": enabled})


async def test_the_banner_names_the_refused_meeting_and_goes_when_chat_returns(console: Admin, page: Page) -> None:
    await console.join("ann")
    await sign_in(page, console)
    banner = page.locator("#chat-refused")
    await expect(banner).to_be_hidden()
    await _refuse(console, False)
    assert (await console.send("ann", text="anyone?"))[0] == 202
    await expect(banner).to_contain_text("Weekly sync", timeout=WAIT_MS)
    await expect(banner).to_contain_text(f"code {CODE}")
    await expect(banner).to_contain_text("1 guest is in the call")
    await expect(page.locator("#sessions tbody tr", has_text="webhook:app/ann")).to_contain_text("chat refused")
    await _refuse(console, True)
    await expect(banner).to_be_hidden(timeout=WAIT_MS)


async def test_status_has_a_line_for_the_refused_meeting(console: Admin) -> None:
    await console.join("ann")
    await _refuse(console, False)
    assert (await console.send("ann", text="anyone?"))[0] == 202

    async def refused() -> list[str]:
        lines = status_lines(await console.ok("GET", "/status"))
        return [line for line in lines if line.startswith("chat refused:")]

    [line] = await wait_for(refused, what="a chat refused line")
    assert f"Weekly sync (code {CODE}), 1 in the call cannot chat: " in line and "permission" in line
    command = [sys.executable, "-m", "bot", "status", "--url", console.bridge.base, "--token", TOKEN]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert line in done.stdout.splitlines()
