"""The bridge and the sandbox as separate processes, for the soak and the benchmarks.

Each runs exactly as an operator would run it (`python -m bot sandbox`, `python -m bot run`), configured only
through BRIDGE__* environment settings, so a SIGKILL, a SIGTERM or a measurement of one process touches nothing
of the other. The driver process plays the webhook client (signed sends, a callback sink) and the phones.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bot.calls.browser import process as browser_process
from bot.channels.webhook import sign, verify
from bot.config import WebhookClient

SMS_EVENT_TYPES = ["Microsoft.Communication.SMSReceived", "Microsoft.Communication.SMSDeliveryReportReceived"]
CHAT_EVENT_TYPES = [
    "Microsoft.Communication.ChatMessageReceivedInThread",
    "Microsoft.Communication.ChatMessageEditedInThread",
    "Microsoft.Communication.ChatMessageDeletedInThread",
]


ORPHAN_GRACE_S = 2.0
"""How long a killed bridge's browser may take to exit on its own (it took under half a second when tried)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@asynccontextmanager
async def py_spy(pid: int, label: str) -> AsyncIterator[None]:
    """With BENCH_PROFILE=<folder>, py-spy samples process `pid` meanwhile into <folder>/<label>.txt (collapsed
    stacks unless BENCH_PROFILE_FORMAT says otherwise; BENCH_PROFILE_ARGS, default --rate 250 --gil)."""
    folder = os.environ.get("BENCH_PROFILE")
    if not folder:
        yield
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--format",
            os.environ.get("BENCH_PROFILE_FORMAT", "raw"),
            *os.environ.get("BENCH_PROFILE_ARGS", "--rate 250 --gil").split(),
            "--output",
            str(Path(folder) / f"{label}.txt"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        await asyncio.to_thread(spy.wait, 30)


def _child_env(extra: Mapping[str, str]) -> dict[str, str]:
    # A driver started from a shell with BRIDGE__* set must not leak those into the processes it measures.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE__")}
    env.update(extra)
    return env


async def _wait_exit(proc: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return proc.poll()


class SandboxProcess:
    """`python -m bot sandbox` on a free port; its control API through `control()`."""

    def __init__(self, state_dir: Path, *, limits: bool = True) -> None:
        self.state_dir = state_dir
        self.limits = limits
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> dict[str, Any]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "bot", "sandbox", "--port", "0", "--state-dir", str(self.state_dir)]
        if not self.limits:
            args.append("--no-limits")
        log = (self.state_dir / "sandbox.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, env=_child_env({}))
        assert self.proc.stdout is not None
        line = await asyncio.to_thread(self.proc.stdout.readline)
        if b"ready" not in line:
            self.proc.kill()
            raise RuntimeError(f"the sandbox did not start: {line!r} (see {self.state_dir / 'sandbox.log'})")
        self.info = json.loads((self.state_dir / "sandbox.json").read_text())
        ctx = ssl.create_default_context(cafile=self.info["caFile"])
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=200))
        return self.info

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None
        return self._http

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, f"{self.info['controlUrl']}{path}", json=body) as resp:
            text = await resp.text()
            if resp.status >= 300:
                raise RuntimeError(f"sandbox {method} {path}: {resp.status} {text}")
            return json.loads(text) if text else None

    async def meeting(self, subject: str, *, lobby: str = "auto") -> dict[str, Any]:
        """A started meeting with its organizer in the call."""
        body = {"subject": subject, "organizer": {"displayName": "Megan"}, "lobby": lobby}
        meeting = await self.control("POST", "/meetings", body)
        return dict(await self.control("POST", f"/meetings/{meeting['id']}/start"))

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if await _wait_exit(self.proc, 10) is None:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@dataclass
class BridgeConfig:
    """What the bridge process is told, as BRIDGE__* settings. Meetings are given by their long join links."""

    state_dir: Path
    port: int = field(default_factory=free_port)
    clients: dict[str, dict[str, Any]] = field(default_factory=dict)
    meetings: list[dict[str, Any]] = field(default_factory=list)
    relay: dict[str, Any] = field(default_factory=dict)
    sms: bool = False
    sms_settings: dict[str, Any] = field(default_factory=dict)
    events: bool = False
    admin_token: str | None = None
    log_level: str = "INFO"
    sms_events_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    chat_events_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    event_delivery_attempts: int | None = None
    """Event Grid's tries per event (the sandbox's default when None; Azure's own default is 30)."""
    store_url: str | None = None
    """bridge.store_url; None: SQLite in state_dir."""
    chat_event_faults: dict[str, Any] | None = None
    """The sandbox's delivery faults on the chat events subscription ({"lose", "duplicate", ...})."""
    connector: str = "sandbox"
    """calls.connector; "browser" runs the sandbox's stand-in Calling SDK in the bridge's headless Chromium."""
    browser: dict[str, Any] = field(default_factory=dict)
    """calls.browser settings, for the browser connector."""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self, sandbox: Mapping[str, Any]) -> dict[str, str]:
        env = {
            "BRIDGE__BRIDGE__HOST": "127.0.0.1",
            "BRIDGE__BRIDGE__PORT": str(self.port),
            "BRIDGE__BRIDGE__STATE_DIR": str(self.state_dir),
            "BRIDGE__BRIDGE__LOG_LEVEL": self.log_level,
            "BRIDGE__ACS__CONNECTION_STRING": sandbox["connectionString"],
            "BRIDGE__ACS__CA_FILE": sandbox["caFile"],
            "BRIDGE__CALLS__CONNECTOR": self.connector,
            "BRIDGE__CALLS__BROWSER": json.dumps(self.browser),
            "BRIDGE__CALLS__SANDBOX_ENDPOINT": sandbox["endpoint"],
            "BRIDGE__SANDBOX__ENABLED": "never",
            "BRIDGE__WEBHOOK_CLIENTS": json.dumps(self.clients),
            "BRIDGE__MEETINGS": json.dumps(self.meetings),
            "BRIDGE__RELAY": json.dumps(self.relay),
        }
        if self.sms:
            sms = {"gateway": "acs", "number": sandbox["smsNumber"], "events_secret": self.sms_events_secret}
            # A gateway outside the embedded sandbox is configured as a real one: HELP must name a contact.
            sms["support"] = "https://example.com/help"
            env["BRIDGE__SMS"] = json.dumps({**sms, **self.sms_settings})
        if self.events:
            env["BRIDGE__EVENTS__SECRET"] = self.chat_events_secret
        if self.admin_token is not None:
            env["BRIDGE__ADMIN__TOKEN"] = self.admin_token
        if self.store_url is not None:
            env["BRIDGE__BRIDGE__STORE_URL"] = self.store_url
        return env


class BridgeProcess:
    """`python -m bot run` on the sandbox process; restartable on the same port and state folder."""

    def __init__(self, config: BridgeConfig, sandbox: SandboxProcess) -> None:
        self.config = config
        self.sandbox = sandbox
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._subscribed = False

    @property
    def base(self) -> str:
        return self.config.base

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log_file(self) -> Path:
        return self.config.state_dir / "bridge.log"

    async def start(self, timeout_s: float = 60.0) -> float:
        """Start and wait until it serves; returns the seconds it took."""
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        log = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_child_env(self.config.environment(self.sandbox.info)),
        )
        self.starts += 1
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the bridge exited with {self.proc.returncode}; see {self.log_file}")
                try:
                    async with http.get(f"{self.base}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if resp.status == 200:
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    self.proc.kill()
                    raise RuntimeError(f"the bridge did not answer within {timeout_s} s; see {self.log_file}")
                await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        if not self._subscribed:
            await self._subscribe()
            self._subscribed = True
        return elapsed

    async def _subscribe(self) -> None:
        """Event Grid subscriptions live on the sandbox's side and outlive bridge restarts (same port)."""
        if self.config.sms:
            endpoint = f"{self.base}/channels/acs-sms/events?code={self.config.sms_events_secret}"
            body = {"endpoint": endpoint, "eventTypes": SMS_EVENT_TYPES, "schema": "EventGrid"}
            await self.sandbox.control("POST", "/event-subscriptions", body | self._attempts())
        if self.config.events:
            await self.subscribe_chat_events()

    async def subscribe_chat_events(self) -> dict[str, Any]:
        """The sandbox's Event Grid subscription to the bridge's chat events door, with the config's faults."""
        endpoint = f"{self.base}/channels/acs/events?code={self.config.chat_events_secret}"
        body = {"endpoint": endpoint, "eventTypes": CHAT_EVENT_TYPES, "schema": "EventGrid"} | self._attempts()
        if self.config.chat_event_faults is not None:
            body["faults"] = self.config.chat_event_faults
        return dict(await self.sandbox.control("POST", "/event-subscriptions", body))

    def _attempts(self) -> dict[str, Any]:
        attempts = self.config.event_delivery_attempts
        return {"maxDeliveryAttempts": attempts} if attempts is not None else {}

    def kill(self) -> int:
        """SIGKILL: no chance to clean up, as a crash or an OOM kill. What the bridge had started (the browser
        connector's Playwright driver and its Chromium tree) is given ORPHAN_GRACE_S to go with it, as it does when
        its driver's pipe to the dead bridge closes; whatever is still running then is killed, as a crash of the
        whole container would: a browser left running would keep its call legs, and its agents' identities, in the
        call. Returns how many processes that was."""
        if self.proc is None or self.proc.poll() is not None:
            return 0
        # Read before the kill: once the bridge is gone its children belong to init and no longer look like its own.
        started = [pid for pid in browser_process.tree(self.proc.pid) if pid != self.proc.pid]
        groups = {_group(pid) for pid in started} - {None, os.getpgrp()}
        self.proc.kill()
        self.proc.wait()
        deadline = time.monotonic() + ORPHAN_GRACE_S
        while any(_running(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.02)
        left = [pid for pid in started if _running(pid)]
        for group in groups if left else ():
            # Chromium runs in a process group of its own (Playwright starts it detached): its renderers and zygotes,
            # forked after the tree was read, go with it.
            assert group is not None
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in left:
            browser_process.kill(pid)
        return len(left)

    async def terminate(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM and wait; the exit code, or None if it did not exit in time (then it is killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = await _wait_exit(self.proc, timeout_s)
        if code is None:
            self.kill()
        return code

    def cpu_seconds(self) -> float:
        """User + system CPU of the bridge process so far (Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def cpu_times(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the bridge process so far: system time is the kernel's share (sockets)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / ticks, int(fields[12]) / ticks

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


class WebhookSender:
    """A webhook client app: signed sends to the bridge's door."""

    def __init__(self, base: str, client: str, secret: str, *, connections: int = 64) -> None:
        self.url = f"{base}/channels/webhook/{client}"
        self.secret = secret
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections))

    async def send(
        self, event: dict[str, Any], webhook_id: str | None = None, timeout_s: float = 30.0
    ) -> tuple[int, dict[str, Any], Mapping[str, str]]:
        payload = json.dumps(event)
        headers = sign(self.secret, webhook_id or f"msg_{uuid.uuid4().hex}", payload)
        async with self._http.post(
            self.url, data=payload, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as resp:
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                body = {}
            return resp.status, body if isinstance(body, dict) else {}, resp.headers

    async def close(self) -> None:
        await self._http.close()


class Sink:
    """The webhook client's callback endpoint: verifies signatures and records what each user received."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.arrived: dict[str, float] = {}
        """webhook-id → time.time() of its first arrival."""
        self.by_message: dict[str, list[float]] = defaultdict(list)
        """Payload id (a relayed message's ACS message id) → time.time() of each first arrival, one per recipient."""
        self.repeats = 0
        """Callbacks whose webhook-id was seen before (retries after a lost answer): receivers drop them."""
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/callbacks", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/callbacks"
        return self.url

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        client = WebhookClient.model_validate({"secrets": [self.secret]})
        if verify(client, body, request.headers) is not None:
            return web.Response(status=401)
        webhook_id = request.headers["webhook-id"]
        if webhook_id in self.arrived:
            self.repeats += 1
            return web.json_response({"ok": True})
        arrived = self.arrived[webhook_id] = time.time()
        payload = json.loads(body)
        self.by_user[payload["user"]["id"]].append(payload)
        self.by_message[str(payload.get("id"))].append(arrived)
        return web.json_response({"ok": True})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
