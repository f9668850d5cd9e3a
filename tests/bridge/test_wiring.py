"""The wiring (bot/app.py, bot/cli.py): a failed start closes what it opened; a store newer than the code is refused."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path

import pytest
from aiohttp import web

from bot.app import HTTP, create_app
from bot.config import load_settings
from bot.relay.runtime import RELAY
from bot.sandbox import SandboxInfo
from bot.store.sqlite.migrations import MIGRATIONS
from tests.support.bridge import bridge_settings
from tests.support.postgres import PostgresServer, free_port

# Any endpoint: nothing is reached before the store refuses to open.
UNREACHED = "endpoint=https://127.0.0.1:9/;accesskey=" + "A" * 44


def _newer_store(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")


async def test_a_start_that_fails_half_way_closes_what_it_had_opened(info: SandboxInfo, tmp_path: Path) -> None:
    settings = bridge_settings(info, tmp_path, clients={}, meetings=[])
    _newer_store(settings.store_file)
    app = create_app(settings)
    runner = web.AppRunner(app)
    with pytest.raises(Exception, match="newer than this bridge"):
        await runner.setup()
    assert not app[HTTP].closed  # opened before the store; the cleanup below is what closes it
    await runner.cleanup()
    assert app[HTTP].closed
    # The relay's start came after the store's: it never ran, so it has no task to stop.
    assert len(app[RELAY].tasks) == 0


async def test_run_refuses_a_store_newer_than_the_code_with_one_line_and_exit_code_2(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _newer_store(state / "bridge.db")
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'[bridge]\nstate_dir = "{state}"\nport = 0\n[acs]\nconnection_string = "{UNREACHED}"\n'
        '[webhook_clients.app]\nsecrets = ["whsec_' + "QkJC" * 8 + '"]\n'
    )
    load_settings(config, environ={})  # the file itself is valid: only the store is refused
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, (out, err)
    errors = [line for line in err.decode().splitlines() if line.startswith("store error:")]
    assert len(errors) == 1 and "newer than this bridge's" in errors[0], err.decode()
    assert "Traceback" not in err.decode()


@pytest.mark.parametrize("problem", ["wrong password", "nothing listening"])
async def test_run_on_a_postgresql_it_cannot_open_says_why_in_one_line_without_the_password(
    tmp_path: Path, postgres: PostgresServer, problem: str
) -> None:
    url = await postgres.create_database()
    password = "wrong-" + url.password if problem == "wrong password" and url.password else url.password
    port = url.port if problem == "wrong password" else free_port()
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'[bridge]\nstate_dir = "{tmp_path / "state"}"\nport = 0\n'
        f'store_url = "postgresql://{url.user}:env:TEST_DB_PASSWORD@127.0.0.1:{port}/{url.database}"\n'
        f'[acs]\nconnection_string = "{UNREACHED}"\n'
        '[webhook_clients.app]\nsecrets = ["whsec_' + "QkJC" * 8 + '"]\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TEST_DB_PASSWORD": password or ""},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1, (out, err)
    errors = [line for line in err.decode().splitlines() if line.startswith("store error: cannot open the store")]
    assert len(errors) == 1, err.decode()
    assert f"postgresql://{url.user}:***@127.0.0.1:{port}/" in errors[0]
    assert "Traceback" not in err.decode()
    assert password and password not in (out + err).decode()
