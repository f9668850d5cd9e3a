"""Meetings ACS guests cannot join are refused when they are added, with the reason, not later in the call: Teams in
the Microsoft 365 government clouds, and Teams for personal use (teams.live.com)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.sandbox import SandboxInfo
from tests.support.admin import Admin, start_admin
from tests.support.sandbox import Control

LONG = (
    "https://{host}/l/meetup-join/19%3ameeting_NzdmODhiOGQtMDY4Yi00MDIyLTk1MzktMmRjNjIzNmFhMzM4%40thread.v2/0"
    "?context=%7b%22Tid%22%3a%2272f988bf-86f1-41af-91ab-2d7cd011db47%22%2c%22Oid%22%3a%22"
    "0b6a3f2e-9d1c-4e7a-8f55-2c4d6e8a1b3c%22%7d"
)


@pytest.fixture
async def admin(control: Control, info: SandboxInfo, tmp_path: Path) -> AsyncIterator[Admin]:
    async for a in start_admin(control, info, tmp_path):
        yield a


@pytest.mark.parametrize(
    ("link", "reason"),
    [
        (LONG.format(host="gov.teams.microsoft.us"), "government cloud (gov.teams.microsoft.us)"),
        (LONG.format(host="dod.teams.microsoft.us"), "government cloud (dod.teams.microsoft.us)"),
        ("https://teams.live.com/meet/9312345678901?p=abcDEF", "personal use (teams.live.com)"),
    ],
)
async def test_adding_such_a_meeting_is_refused_with_the_reason(admin: Admin, link: str, reason: str) -> None:
    before = await admin.ok("GET", "/meetings")
    status, answer = await admin.api("POST", "/meetings", {"link": link})
    assert status == 400, answer
    assert reason in answer["reason"] and "cannot be bridged" in answer["reason"]
    assert await admin.ok("GET", "/meetings") == before
