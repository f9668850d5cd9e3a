"""A real PostgreSQL server for the tests: Debian's binaries, a temporary cluster, a free loopback port, no Docker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from bot.store_url import StoreUrl

BIN_DIRS = [Path("/usr/lib/postgresql/15/bin"), *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]
SUPERUSER = "bridge_test"
# PostgreSQL refuses to run as root; the Debian package makes this user.
UNPRIVILEGED = "postgres"


def binaries() -> Path | None:
    """Where initdb and pg_ctl are, PostgreSQL 15 first; None when none is installed (make postgresql)."""
    return next((d for d in BIN_DIRS if (d / "initdb").exists() and (d / "pg_ctl").exists()), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """initdb into a temporary folder, then pg_ctl start/stop/restart; as the postgres user when we are root.

    Listens on 127.0.0.1 only (its Unix socket in the same folder), with password authentication, so the bridge's
    URL handling is exercised as a real deployment's would be. Durability is off (fsync, synchronous_commit): these
    clusters are thrown away, and the tests measure behaviour, not the disk."""

    def __init__(self) -> None:
        found = binaries()
        if found is None:
            raise RuntimeError("PostgreSQL is not installed (make postgresql installs Debian's package)")
        self.bin = found
        self.root = Path(tempfile.mkdtemp(prefix="bridge-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.password = secrets.token_urlsafe(18)
        self._as_root = os.geteuid() == 0
        self._databases = 0

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", UNPRIVILEGED, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")

    def init(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password, encoding="utf-8")
        if self._as_root:
            shutil.chown(self.root, UNPRIVILEGED)
            shutil.chown(pwfile, UNPRIVILEGED)
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "--pwfile", str(pwfile), "-A", "scram-sha-256",
            "-E", "UTF8", "--locale", "C.UTF-8", "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "log_min_messages": "warning",
        }
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """fast: disconnects every client and stops, as a restart by an operator does; immediate: as a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass  # not running
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> StoreUrl:
        return StoreUrl(
            "postgresql", host="127.0.0.1", port=self.port, user=SUPERUSER, password=self.password, database=database
        )

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    async def create_database(self) -> StoreUrl:
        """A fresh, empty database for one test."""
        self._databases += 1
        name = f"t{self._databases}_{secrets.token_hex(3)}"
        conn = await asyncpg.connect(self.dsn())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)

    async def restart(self, down_s: float) -> None:
        """Stop, stay down `down_s` seconds, start again: a database restart or a short outage."""
        await asyncio.to_thread(self.stop)
        await asyncio.sleep(down_s)
        await asyncio.to_thread(self.start)


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    """A server started for the block and destroyed after it (the session's, or one a test may stop and start)."""
    server = PostgresServer()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()
