"""The command line: `sandbox` runs the ACS and Teams stand-in; `run` starts the bridge on the embedded sandbox."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from .sandbox import Sandbox

DEFAULT_STATE_DIR = Path(".sandbox")


def _sandbox_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sandbox", help="run the ACS and Teams sandbox alone over TLS on loopback")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8443, help="port to listen on, 0 for any free port (default 8443)")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="where the CA, keys and sandbox.json live")
    p.add_argument("--no-limits", action="store_true", help="start with ACS rate limits switched off")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="The meeting bridge.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    sub = parser.add_subparsers(dest="command", required=True)
    _sandbox_parser(sub)
    run = sub.add_parser("run", help="start the bridge (on the embedded sandbox when nothing else is configured)")
    run.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="the embedded sandbox's state folder")
    return parser


def _stop_event() -> asyncio.Event:
    """Set on SIGINT or SIGTERM; installed before anything announces readiness so no signal is missed."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_sandbox(host: str, port: int, state_dir: Path, limits: bool) -> int:
    stop = _stop_event()
    sandbox = Sandbox(host, port, state_dir, limits_enabled=limits)
    try:
        info = await sandbox.start()
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(
        f"sandbox ready at {info.endpoint} (control {info.control_url}); "
        f"connection details in {state_dir / 'sandbox.json'}",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await sandbox.stop()
        print("sandbox stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "sandbox":
        return asyncio.run(run_sandbox(args.host, args.port, args.state_dir, not args.no_limits))
    if args.command == "run":
        # Until the bridge core lands, `run` brings up the embedded sandbox it will run on.
        print("the bridge core is not built yet; starting the embedded sandbox it will use", flush=True)
        return asyncio.run(run_sandbox("127.0.0.1", 8443, args.state_dir, True))
    return 2
