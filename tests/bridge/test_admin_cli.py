"""The operators' CLI as a subprocess (python -m bot ...) against a bridge started in the test."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.demo import Demo, save_demo
from bot.models import SessionState
from bot.sandbox import SandboxInfo
from tests.support.admin import ANN, CODE, TOKEN, Admin, start_admin
from tests.support.sandbox import Control

ROOT = Path(__file__).resolve().parents[2]


class Cli:
    """Runs `python -m bot` in an empty folder, with no token in the environment unless given."""

    def __init__(self, admin: Admin, folder: Path) -> None:
        self.admin, self.folder = admin, folder

    async def run(
        self, *args: str, token: str | None = TOKEN, env: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        clean = {k: v for k, v in os.environ.items() if k not in ("BRIDGE_ADMIN_TOKEN", "BRIDGE_URL")}
        clean["PYTHONPATH"] = str(ROOT)
        extra = ["--url", self.admin.bridge.base, "--state-dir", str(self.folder / ".bridge")]
        if token is not None:
            extra += ["--token", token]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            *args,
            *extra,
            cwd=self.folder,
            env={**clean, **(env or {})},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def ok(self, *args: str) -> str:
        code, out, err = await self.run(*args)
        assert code == 0, (args, out, err)
        return out

    async def json(self, *args: str) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(await self.ok(*args, "--json"))
        return answer


@pytest.fixture
async def cli(control: Control, info: SandboxInfo, tmp_path: Path) -> AsyncIterator[Cli]:
    async for admin in start_admin(control, info, tmp_path):
        folder = tmp_path / "cwd"
        folder.mkdir()
        yield Cli(admin, folder)


def one_error_line(err: str) -> str:
    # Progress ("resolving the link…") may come first; the error itself is one line.
    lines = [line for line in err.splitlines() if line.strip() and not line.endswith("…")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


async def test_meetings_list_add_and_remove(cli: Cli) -> None:
    out = await cli.ok("meetings", "list")
    header, row = out.splitlines()
    assert header.split() == ["ID", "CODE", "NAME", "STATE", "SESSIONS", "SOURCE"]
    assert CODE in row and "Weekly sync" in row and "live" in row
    assert header.index("CODE") == row.index(CODE)  # aligned columns
    listed = await cli.json("meetings", "list")
    assert [m["code"] for m in listed["meetings"]] == [CODE]

    other = await cli.admin.control.meeting(subject="Planning")
    code, out, err = await cli.run("meetings", "add", other["joinWebUrl"], "--code", "8080", "--name", "Planning")
    assert code == 0, err
    assert "resolving the link…" in err and out.startswith("added: code 8080 (m-")
    assert "8080" in await cli.ok("meetings", "list")
    code, out, err = await cli.run("meetings", "add", other["joinWebUrl"])
    assert code == 1 and "already bridged" in one_error_line(err)
    code, out, err = await cli.run("meetings", "add", "https://example.com/nope")
    assert code == 1 and "link" in one_error_line(err)

    assert (await cli.ok("meetings", "remove", "8080")).startswith("removed: m-")
    assert "8080" not in await cli.ok("meetings", "list")
    code, out, err = await cli.run("meetings", "remove", "8080")
    assert code == 1 and one_error_line(err) == "error: no meeting '8080'"


async def test_sessions_list_and_end(cli: Cli) -> None:
    assert (await cli.ok("sessions", "list")).strip() == "(none)"
    session = await cli.admin.join("ann")
    out = await cli.ok("sessions", "list", "--meeting", CODE)
    header, row = out.splitlines()
    assert header.split()[:4] == ["ID", "USER", "MEETING", "STATE"]
    assert row.split()[:4] == [str(session["id"]), ANN, CODE, "in_call"]
    listed = await cli.json("sessions", "list", "--state", "active")
    assert [s["userId"] for s in listed["sessions"]] == [ANN]
    assert "ann" not in await cli.ok("sessions", "list", "--state", "left")
    assert (await cli.ok("sessions", "end", str(session["id"]))).strip() == f"ended: session {session['id']}"
    assert "ended by an operator" in await cli.ok("sessions", "list")
    code, _, err = await cli.run("sessions", "list", "--state", "bogus")
    assert code == 1 and "state" in one_error_line(err)


async def test_users_block_unblock_and_forget(cli: Cli) -> None:
    await cli.admin.join("ann")
    assert (await cli.ok("users", "block", ANN)).strip() == f"blocked: {ANN}"
    status, body = await cli.admin.send("ann", "join")
    assert status == 403 and body["error"] == "blocked"
    sessions = await cli.admin.bridge.store.sessions()
    assert [s.state for s in sessions] == [SessionState.LEFT]
    blocked = await cli.json("users", "unblock", ANN)
    assert blocked["blocked"] is False
    assert (await cli.ok("users", "forget", ANN)).strip() == f"forgotten: {ANN}"
    assert await cli.admin.bridge.store.get_user(ANN) is None
    code, _, err = await cli.run("users", "block", "webhook:app/nobody")
    assert code == 1 and one_error_line(err) == "error: no user 'webhook:app/nobody'"


async def test_status(cli: Cli) -> None:
    await cli.admin.join("ann")
    out = await cli.ok("status")
    assert out.startswith("bridge ") and "meetings:  1 (0 paused)" in out and "in_call 1" in out
    assert "webhook (app, nocb)" in out and "last errors: none" in out
    status = await cli.json("status")
    assert status["meetings"] == {"total": 1, "paused": 0} and status["sessions"]["in_call"] == 1


async def test_token_from_the_environment_or_the_demo_file(cli: Cli) -> None:
    code, out, _ = await cli.run("status", token=None, env={"BRIDGE_ADMIN_TOKEN": TOKEN})
    assert code == 0 and out.startswith("bridge ")
    code, _, err = await cli.run("status", token=None)
    assert code == 1 and "no operator token" in one_error_line(err)
    state_dir = cli.folder / ".bridge"
    state_dir.mkdir()
    save_demo(state_dir, Demo({"id": "MSdemo"}, "whsec_x", "http://x/channels/webhook/demo", admin_token=TOKEN))
    code, out, _ = await cli.run("meetings", "list", token=None)
    assert code == 0 and CODE in out


async def test_wrong_token_and_no_bridge_are_one_line_errors(cli: Cli) -> None:
    code, out, err = await cli.run("meetings", "list", token="not-the-operator-token")
    assert code == 1 and out == ""
    assert "refused the token" in one_error_line(err) and "--token" in err
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens there now: the connection is refused.
    cli.admin.bridge.base, real = f"http://127.0.0.1:{port}", cli.admin.bridge.base
    try:
        for args in (("status",), ("meetings", "list", "--json"), ("users", "forget", ANN)):
            code, out, err = await cli.run(*args)
            assert code == 1 and out == ""
            assert one_error_line(err) == f"error: no bridge is running at http://127.0.0.1:{port} (connection refused)"
    finally:
        cli.admin.bridge.base = real


async def test_a_bridge_without_the_admin_api_says_so(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    async for off in start_admin(control, info, tmp_path, token=None):
        folder = tmp_path / "cwd"
        folder.mkdir()
        code, out, err = await Cli(off, folder).run("meetings", "list")
        assert code == 1 and out == "" and "has no admin API" in one_error_line(err)
