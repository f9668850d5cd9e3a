"""The sandbox as a process: `python -m bot sandbox`, sandbox.json, TLS from its own CA, state kept across restarts."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azure.communication.identity.aio import CommunicationIdentityClient

from bot.sandbox import Sandbox

REQUIRED_KEYS = {
    "endpoint",
    "connectionString",
    "caFile",
    "graphBaseUrl",
    "authorityHost",
    "tenantId",
    "clientId",
    "clientSecret",
    "smsNumber",
}


class SandboxProcess:
    def __init__(self, state_dir: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "sandbox", "--port", "0", "--state-dir", str(state_dir), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.ready_line = self.proc.stdout.readline()
        self.info: dict[str, Any] = json.loads((state_dir / "sandbox.json").read_text())

    def stop(self) -> str:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=20)
        return out


@pytest.fixture
def proc_factory() -> Iterator[list[SandboxProcess]]:
    procs: list[SandboxProcess] = []
    yield procs
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


def test_cli_start_writes_sandbox_json_and_stops_on_sigterm(tmp_path: Path, proc_factory: list[SandboxProcess]) -> None:
    p = SandboxProcess(tmp_path / "state")
    proc_factory.append(p)
    assert "ready" in p.ready_line and p.info["endpoint"] in p.ready_line
    assert REQUIRED_KEYS <= set(p.info)
    assert p.info["connectionString"].startswith(f"endpoint={p.info['endpoint']};accesskey=")
    assert p.info["endpoint"].startswith("https://127.0.0.1:")
    assert Path(p.info["caFile"]).exists()
    assert "stopped" in p.stop()
    assert p.proc.returncode == 0


async def test_restart_with_same_state_dir_keeps_ca_and_keys(
    tmp_path: Path, proc_factory: list[SandboxProcess]
) -> None:
    state = tmp_path / "state"
    first = SandboxProcess(state)
    proc_factory.append(first)
    ca_before = Path(first.info["caFile"]).read_bytes()
    first.stop()
    second = SandboxProcess(state)
    proc_factory.append(second)
    assert Path(second.info["caFile"]).read_bytes() == ca_before
    key = first.info["connectionString"].split("accesskey=", 1)[1]
    assert second.info["connectionString"].endswith("accesskey=" + key)
    assert second.info["clientSecret"] == first.info["clientSecret"]
    # The real SDK, trusting only the CA written on first start, talks to the restarted sandbox.
    async with CommunicationIdentityClient.from_connection_string(
        second.info["connectionString"], connection_verify=str(state / "ca.pem")
    ) as client:
        user = await client.create_user()
        assert user.properties["id"].startswith("8:acs:")
    second.stop()


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "bot", "sandbox", "--port", str(port), "--state-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


async def test_tls_only_trusted_through_the_sandbox_ca(tmp_path: Path) -> None:
    async with Sandbox(state_dir=tmp_path) as sandbox:
        assert sandbox.info is not None
        url = sandbox.info.control_url + "/info"
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(url)
            ctx = ssl.create_default_context(cafile=sandbox.info.ca_file)
            async with session.get(url, ssl=ctx) as resp:
                body = await resp.json()
        assert body["endpoint"] == sandbox.info.endpoint
        assert "clientSecret" not in body


async def test_programmatic_sandbox_on_ephemeral_port_cleans_its_temp_dir() -> None:
    sandbox = Sandbox()
    info = await sandbox.start()
    assert not info.endpoint.endswith(":0/")
    state = Path(info.state_dir)
    assert (state / "sandbox.json").exists()
    await sandbox.stop()
    assert not state.exists()
