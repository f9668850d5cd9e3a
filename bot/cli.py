"""The command line: run the bridge, run the sandbox alone, check a configuration, send a signed test message."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import doctor
from .admin_commands import COMMANDS as ADMIN_COMMANDS
from .admin_commands import add_parsers as add_admin_parsers
from .admin_commands import run as run_admin
from .calls.choice import describe_connector
from .config import Settings, load_settings
from .drain import DRAIN
from .embedded import EmbeddedSandbox
from .errors import ConfigError, SchemaTooNewError
from .relay.runtime import RELAY
from .sandbox import Sandbox, SandboxInfo
from .server import BoundedRunner, BoundedSite
from .store import StoreUnavailableError
from .tools import phone, webhook_inbox, webhook_send

if TYPE_CHECKING:
    from .demo import Demo

DEFAULT_SANDBOX_DIR = Path(".sandbox")
EXIT_CONFIG = 2
# After the grace period, what the server still waits for open connections: by then only reads are left.
SERVER_SHUTDOWN_S = 1.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="The meeting bridge.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the bridge (on the embedded sandbox when no ACS resource is configured)")
    run.add_argument("--config", type=Path, help="a TOML settings file (see config/bridge.example.toml)")

    check = sub.add_parser("check-config", help="validate a settings file and the environment, then exit")
    check.add_argument("--config", type=Path, help="a TOML settings file")

    sb = sub.add_parser("sandbox", help="run the ACS and Teams sandbox alone over TLS on loopback")
    sb.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sb.add_argument("--port", type=int, default=8443, help="port, 0 for any free port (default 8443)")
    sb.add_argument(
        "--state-dir", type=Path, default=DEFAULT_SANDBOX_DIR, help="where the CA, keys and sandbox.json live"
    )
    sb.add_argument("--no-limits", action="store_true", help="start with ACS rate limits switched off")

    send = sub.add_parser("webhook-send", help="send a signed webhook event to a bridge, as a client app would")
    send.add_argument("text", nargs="?", default="", help="the message text (for --type message)")
    send.add_argument("--client", default="demo", help="the webhook client name (default demo)")
    send.add_argument("--user", required=True, help="the external user's id within the client")
    send.add_argument("--name", help="the user's display name")
    send.add_argument("--meeting", required=True, help="the meeting's join code")
    send.add_argument("--type", choices=["message", "join", "leave"], default="message")
    send.add_argument("--url", help="the bridge's base URL (default: from the demo started by run)")
    send.add_argument("--secret", help="the client's whsec_ secret (default: the demo's; or BRIDGE_WEBHOOK_SECRET)")
    send.add_argument("--state-dir", type=Path, default=Path(".bridge"), help="the bridge's state folder")

    phone = sub.add_parser("phone", help="a simulated phone on the sandbox: text the bridge, or read what it received")
    phone.add_argument("number", help="the phone's number, e.g. +15550100")
    phone.add_argument("text", nargs="?", help="what to text the bridge; without it, show the phone's inbox")
    phone.add_argument("--to", help="the number to text (default: the sandbox's ACS number)")
    phone.add_argument("--sandbox-dir", type=Path, default=Path(".bridge/sandbox"), help="where sandbox.json is")

    inbox = sub.add_parser("webhook-inbox", help="show what the demo webhook client received from the meeting")
    inbox.add_argument("--state-dir", type=Path, default=Path(".bridge"))
    add_admin_parsers(sub)  # meetings, sessions, users, status: clients of a running bridge's admin API
    doctor.add_parser(sub)
    return parser


class _Stop:
    """SIGINT or SIGTERM: the first asks for a graceful stop, a second one for an immediate one. Installed before
    anything announces readiness so no signal is missed."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.now = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._signalled)

    def _signalled(self) -> None:
        if self.requested.is_set():
            self.now.set()
        self.requested.set()

    async def wait(self) -> None:
        await self.requested.wait()


async def _within(work: Awaitable[Any], deadline: float, cut: asyncio.Event) -> bool:
    """Wait for work until the loop's clock reaches deadline or cut is set; whether it finished."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    cutter = asyncio.ensure_future(cut.wait())
    await asyncio.wait({task, cutter}, timeout=max(0.0, deadline - loop.time()), return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, cutter):
        pending.cancel()
    return task.done() and not task.cancelled()


async def _drain(app: web.Application, grace_s: float, stop: _Stop) -> None:
    """Turn intake away at once, then give the requests and outbox sends under way up to grace_s to finish."""
    drain, relay = app[DRAIN], app[RELAY]
    drain.begin("the bridge is stopping; retry shortly")
    sends = relay.wind_down()
    print(
        f"stopping: draining {drain.in_flight} in-flight requests and {sends} outbox sends (up to {grace_s:g} s)...",
        flush=True,
    )
    deadline = asyncio.get_running_loop().time() + grace_s
    if drain.in_flight and not await _within(drain.settled(), deadline, stop.now):
        print(f"stopping: {drain.in_flight} requests still open are cut short", flush=True)
    if relay.units.busy and not await _within(relay.units.settled(), deadline, stop.now):
        # Each is in the store with its attempt counted: the next start looks for it in the thread before resending.
        print(f"stopping: {relay.units.busy} outbox sends still under way are retried on the next start", flush=True)
    if stop.now.is_set():
        print("stopping now: second signal", flush=True)


async def run_sandbox(host: str, port: int, state_dir: Path, limits: bool) -> int:
    stop = _Stop()
    sandbox = Sandbox(host, port, state_dir, limits_enabled=limits)
    try:
        info = await sandbox.start()
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(
        f"sandbox ready at {info.endpoint} (control {info.control_url}); "
        f"connection details in {state_dir / 'sandbox.json'}; its pages at {info.endpoint}sandbox/ui/",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await sandbox.stop()
        print("sandbox stopped", flush=True)
    return 0


def _banner(
    settings: Settings, base: str, info: SandboxInfo | None, demo: Demo | None, admin_token: str | None = None
) -> str:
    lines = [f"bridge ready at {base}", f"  webhook door:  {base}/channels/webhook/<client>"]
    lines.append(f"  calls:         {describe_connector(settings)}")
    if info is not None:
        lines.append(f"  sandbox:       {info.endpoint} (control {info.control_url}, pages {info.endpoint}sandbox/ui/)")
    if settings.admin.token is not None:
        lines.append(f"  admin API:     {base}/api/v1 (described at {base}/api/v1/openapi.json)")
        # Only a token generated here is shown; a configured one is the operator's secret and they have it.
        token = admin_token or "the one in your configuration"
        lines.append(f"  its token:     {token}  (try: python -m bot status)")
        lines.append(f"  console:       {base}/console (sign in with that token)")
    if demo is not None:
        send = "python -m bot webhook-send --client demo --user ann --name Ann --meeting 123456"
        lines += [
            "",
            f'demo meeting "Bridge demo" is live; join code 123456 (sandbox meeting {demo.meeting["id"]})',
            f"  demo webhook client: {demo.webhook_url}",
            f"  its secret:          {demo.secret}",
        ]
        if info is not None:
            # The sandbox's own pages; browsers warn about its local CA unless they trust info.ca_file.
            lines += [
                f"  watch it in a browser (trust {info.ca_file} or accept the warning):",
                f"    the meeting in Teams: {info.endpoint}sandbox/ui/meetings/{demo.meeting['id']}",
                f"    the demo phone:       {info.endpoint}sandbox/ui/phones/%2B15550100",
            ]
        lines += [
            "  try it:",
            f"    {send} --type join",
            f'    {send} "hello from outside Teams"',
            f"    curl --cacert {info.ca_file if info else ''} \\\n"
            f"      {info.control_url if info else ''}/meetings/{demo.meeting['id']}/messages",
            "    python -m bot webhook-inbox      # what the meeting sent back to the demo client",
            "  or by SMS from a simulated phone:",
            '    python -m bot phone +15550100 "JOIN 123456"',
            '    python -m bot phone +15550100 "hello from my phone"',
            "    python -m bot phone +15550100    # the phone's inbox",
        ]
    lines.append("Ctrl-C stops it.")
    return "\n".join(lines)


async def run_bridge(config: Path | None) -> int:
    # Imported here: the Azure and Graph SDKs take a second to import, which the admin commands need not pay.
    from .app import create_app, public_base

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.getLogger().setLevel(settings.bridge.log_level)
    stop = _Stop()
    base = public_base(settings)
    embedded = EmbeddedSandbox(settings, base) if settings.use_sandbox else None
    if embedded is not None:
        settings = await embedded.start()
    app = create_app(settings, extra_routes=embedded.routes() if embedded is not None else ())
    runner = BoundedRunner(app, settings.http, access_log=None, shutdown_timeout=SERVER_SHUTDOWN_S)
    try:
        try:
            await runner.setup()
            await BoundedSite(runner, settings.bridge.host, settings.bridge.port).start()
        except SchemaTooNewError as exc:
            print(f"store error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        except StoreUnavailableError as exc:
            print(f"store error: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:
            where = f"{settings.bridge.host}:{settings.bridge.port}"
            print(f"error: cannot listen on {where}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        if embedded is not None:
            await embedded.connect()
        # What start-up made (the Azure and Graph SDKs' thousands of classes, the app) lives as long as the process:
        # out of the collector's sight, a full collection no longer walks it. It took 130-160 ms a time, stalling
        # every request and send under way (the inbound latency benchmark's tail).
        gc.freeze()
        if embedded is None:
            print(_banner(settings, base, None, None), flush=True)
        else:
            print(_banner(settings, base, embedded.info, embedded.demo, embedded.admin_token), flush=True)
        await stop.wait()
        await _drain(app, settings.bridge.shutdown_grace_s, stop)
    finally:
        await runner.cleanup()
        if embedded is not None:
            await embedded.stop()
    print("stopped", flush=True)
    return 0


def check_config(config: Path | None) -> int:
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    target = (
        "the embedded sandbox"
        if settings.use_sandbox
        else f"the ACS resource at {settings.acs.endpoint}, signing in with {settings.acs.sign_in}"
    )
    print(
        f"ok: {len(settings.meetings)} meetings, {len(settings.webhook_clients)} webhook clients, running on {target}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The Azure SDKs log every request at INFO, headers included: keep them quiet unless asked.
    logging.getLogger("azure").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    if args.command == "sandbox":
        return asyncio.run(run_sandbox(args.host, args.port, args.state_dir, not args.no_limits))
    if args.command == "run":
        return asyncio.run(run_bridge(args.config))
    if args.command == "check-config":
        return check_config(args.config)
    if args.command == "webhook-send":
        return asyncio.run(webhook_send(args))
    if args.command == "phone":
        return asyncio.run(phone(args))
    if args.command == "webhook-inbox":
        return asyncio.run(webhook_inbox(args.state_dir))
    if args.command in ADMIN_COMMANDS:
        return run_admin(args)
    if args.command == "doctor":
        return doctor.run(args)
    return EXIT_CONFIG
