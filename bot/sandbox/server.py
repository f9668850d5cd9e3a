"""Runs the sandbox over TLS on loopback, alone or inside another process, and describes it in sandbox.json."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from . import managed_identity
from .app import create_sandbox_app
from .credentials import SandboxCredentials
from .keys import FAULTS, LIMITS
from .tls import ensure_tls
from .world import World

log = logging.getLogger(__name__)

INFO_FILE = "sandbox.json"
DEFAULT_SMS_NUMBER = "+18005550100"


@dataclass(frozen=True)
class SandboxInfo:
    """Everything a client needs to talk to a running sandbox; written to DIR/sandbox.json in camelCase."""

    endpoint: str
    connection_string: str
    ca_file: str
    graph_base_url: str
    authority_host: str
    tenant_id: str
    client_id: str
    client_secret: str
    sms_number: str
    resource_id: str
    control_url: str
    state_dir: str
    identity_endpoint: str
    """The managed identity endpoint: set it as IDENTITY_ENDPOINT (with IDENTITY_HEADER) for DefaultAzureCredential."""
    identity_header: str

    def to_json(self) -> dict[str, str]:
        def camel(name: str) -> str:
            head, *rest = name.split("_")
            return head + "".join(part.capitalize() for part in rest)

        return {camel(k): v for k, v in asdict(self).items()}


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Sandbox:
    """The embedded ACS and Teams stand-in. `async with Sandbox() as sb:` gives a running one on an ephemeral port."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: Path | str | None = None,
        *,
        sms_number: str = DEFAULT_SMS_NUMBER,
        limits_enabled: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self._own_dir = state_dir is None
        self.state_dir = Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="sandbox-"))
        self.sms_number = sms_number
        self.limits_enabled = limits_enabled
        self._runner: web.AppRunner | None = None
        self._info_body: dict[str, Any] = {}
        self.info: SandboxInfo | None = None
        self.app: web.Application | None = None
        self.world: World | None = None

    async def start(self) -> SandboxInfo:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tls = ensure_tls(self.state_dir, self.host)
        creds = SandboxCredentials.load_or_create(self.state_dir)
        self.world = World(creds, self.sms_number)
        self.app = create_sandbox_app(self.world, self._info_body, limits_enabled=self.limits_enabled)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=tls.server_context())
        await site.start()
        port = self._bound_port()
        base = f"https://{_url_host(self.host)}:{port}"
        self.info = SandboxInfo(
            endpoint=f"{base}/",
            connection_string=f"endpoint={base}/;accesskey={creds.access_key}",
            ca_file=str(tls.ca_file.resolve()),
            graph_base_url=f"{base}/v1.0",
            authority_host=base,
            tenant_id=creds.tenant_id,
            client_id=creds.client_id,
            client_secret=creds.client_secret,
            sms_number=self.sms_number,
            resource_id=creds.resource_id,
            control_url=f"{base}/sandbox/v1",
            state_dir=str(self.state_dir.resolve()),
            identity_endpoint=f"{base}{managed_identity.PATH}",
            identity_header=creds.managed_identity_header,
        )
        secret = {"clientSecret", "identityHeader"}
        self._info_body.update({k: v for k, v in self.info.to_json().items() if k not in secret})
        self._write_info()
        return self.info

    def _bound_port(self) -> int:
        assert self._runner is not None
        for address in self._runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                return int(address[1])
        raise RuntimeError("the sandbox is not listening")

    def _write_info(self) -> None:
        assert self.info is not None
        path = self.state_dir / INFO_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.info.to_json(), fh, indent=2)

    @property
    def limits(self) -> Any:
        assert self.app is not None
        return self.app[LIMITS]

    @property
    def faults(self) -> Any:
        assert self.app is not None
        return self.app[FAULTS]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
