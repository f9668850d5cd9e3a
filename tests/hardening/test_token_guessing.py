"""Guessing the operator token (finding 3 of the security probe), over the wire: throttled per peer, told once.

500 wrong tokens took 0.09 s with no delay, no lockout and, for the API, no log line. Now a peer may send a few
wrong tokens; after that each attempt waits, the wait doubling with every further wrong one (up to
admin.lockout_max_s), and meanwhile every attempt from it, even with the right token, is answered 429 with
Retry-After. The spell is logged once at WARNING with the peer's address, never the token, and counted.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.config import Settings
from bot.sandbox import SandboxInfo
from tests.hardening.operator_bridge import TOKEN, Probe, operator_bridge
from tests.support.sandbox import Control

WRONG = "operator-token-guess-00000"
ALLOWED = 5
"""admin.failed_tokens_allowed's default."""


def lockout(max_s: float) -> Any:
    def adjust(settings: Settings) -> Settings:
        return settings.model_copy(update={"admin": settings.admin.model_copy(update={"lockout_max_s": max_s})})

    return adjust


async def api(http: aiohttp.ClientSession, probe: Probe, token: str) -> tuple[int, dict[str, str]]:
    async with http.get(f"{probe.base}/api/v1/status", headers={"Authorization": f"Bearer {token}"}) as resp:
        await resp.read()
        return resp.status, dict(resp.headers)


async def console(http: aiohttp.ClientSession, probe: Probe, token: str) -> tuple[int, dict[str, str], str]:
    async with http.post(f"{probe.base}/console/login", data={"token": token}, allow_redirects=False) as resp:
        return resp.status, dict(resp.headers), await resp.text()


async def until_held_off(attempt: Callable[[], Awaitable[tuple[Any, ...]]]) -> list[tuple[Any, ...]]:
    """Wrong tokens until three in a row are answered 429: the wait has then doubled to 8 s, so what the test
    sends next arrives while it lasts. The first is refused 401 (it starts the wait); at most 20 are sent."""
    answers: list[tuple[Any, ...]] = []
    while len(answers) < 20 and [a[0] for a in answers[-3:]] != [429] * 3:
        answers.append(await attempt())
    assert answers[0][0] == 401 and [a[0] for a in answers[-3:]] == [429] * 3, [a[0] for a in answers]
    return answers


def counted(metrics: str, name: str, door: str) -> float:
    match = re.search(rf'^{name}_total{{door="{door}"}} ([0-9.]+)$', metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_wrong_api_tokens_are_throttled_logged_once_and_counted(
    control: Control, info: SandboxInfo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with operator_bridge(control, info, tmp_path) as probe:
        statuses = [(await api(probe.http, probe, WRONG))[0] for _ in range(ALLOWED)]
        assert statuses == [401] * ALLOWED
        # From here every wrong token makes the peer wait longer; those sent while it waits count too.
        later = await until_held_off(lambda: api(probe.http, probe, WRONG))
        # Waiting: even the right token is turned away (it is not even told whether it was right).
        status, headers = await api(probe.http, probe, TOKEN)
        assert status == 429 and 1 <= int(headers["Retry-After"]) <= 300, headers
        # The sign-in page is the same door to the same token: it waits too.
        status, headers, page = await console(probe.http, probe, TOKEN)
        assert status == 429 and "Retry-After" in headers and "Set-Cookie" not in headers
        assert "try again" in page.lower()
        # Another address is not held up by this one's guesses.
        elsewhere = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))
        async with elsewhere:
            assert (await api(elsewhere, probe, TOKEN))[0] == 200
            async with elsewhere.get(probe.base + "/metrics") as resp:
                metrics = await resp.text()
        assert counted(metrics, "bridge_auth_failures", "api") == ALLOWED + len(later)
        assert counted(metrics, "bridge_auth_throttled", "api") == len(later)  # all but the first, and the right one
        assert counted(metrics, "bridge_auth_throttled", "console") == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "token" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "127.0.0.1" in warnings[0].getMessage()
    assert WRONG not in caplog.text and TOKEN not in caplog.text


async def test_once_the_wait_is_over_the_right_token_works_and_the_count_starts_afresh(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with operator_bridge(control, info, tmp_path, adjust=lockout(1.0)) as probe:
        for _ in range(ALLOWED + 3):
            status, headers = await api(probe.http, probe, WRONG)
        assert status == 429 and headers["Retry-After"] == "1", headers
        await asyncio.sleep(1.1)  # the longest wait configured
        assert (await api(probe.http, probe, TOKEN))[0] == 200
        statuses = [(await api(probe.http, probe, WRONG))[0] for _ in range(ALLOWED)]
        assert statuses == [401] * ALLOWED


async def test_wrong_tokens_at_the_console_sign_in_are_throttled_and_counted(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with operator_bridge(control, info, tmp_path) as probe:
        first = [await console(probe.http, probe, WRONG) for _ in range(ALLOWED)]
        assert [status for status, _, _ in first] == [401] * ALLOWED
        later = await until_held_off(lambda: console(probe.http, probe, WRONG))
        assert all("Set-Cookie" not in answer[1] for answer in [*first, *later])
        status, _ = await api(probe.http, probe, TOKEN)
        assert status == 429  # the API is the same token's other door
        async with probe.http.get(probe.base + "/metrics") as resp:
            metrics = await resp.text()
        assert counted(metrics, "bridge_auth_failures", "console") == ALLOWED + len(later)
