"""`python -m bot doctor`: walks a real set-up in order and says for each step what is right, or what to fix."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp

from ..acs.auth import acs_auth
from ..acs.chat import ChatService
from ..acs.identity import IdentityService
from ..acs.sms import AcsSmsGateway
from ..app import call_connector, graph_resolver
from ..calls.base import CallConnector
from ..calls.client_reported import ClientReportedConnector
from ..config import Settings, load_settings
from ..errors import ConfigError
from . import calls, doors, meetings, resource
from .report import Step, as_json, failed, lines, ok, passed, skipped

CONFIG = "configuration valid"
JOIN_TIMEOUT_S = 60.0


class Doctor:
    """Each check uses the bridge's own clients, built as `run` builds them, against the configured services."""

    def __init__(self, settings: Settings, *, join: bool = False, join_timeout_s: float = JOIN_TIMEOUT_S) -> None:
        self.settings = settings
        self.join = join
        self.join_timeout_s = join_timeout_s

    async def run(self) -> list[Step]:
        settings = self.settings
        steps = [passed(CONFIG, f"ACS at {settings.acs.endpoint}, signing in with {settings.acs.sign_in}")]
        if settings.use_sandbox:
            steps[0] = passed(CONFIG, "no ACS resource configured: `run` starts the embedded sandbox")
            return [*steps, skipped("the rest", "configure acs (and [graph], the meetings) to check a real set-up")]
        async with aiohttp.ClientSession() as http:
            steps.append(await resource.endpoint_reachable(settings, http))
            if steps[-1].status == "fail":
                unreachable = "not tried: the ACS endpoint does not answer"
                steps += [skipped(resource.CREDENTIAL, unreachable), doors.event_grid(settings)]
                return steps
            steps += await self._with_clients(http)
        return steps

    async def _with_clients(self, http: aiohttp.ClientSession) -> list[Step]:
        settings = self.settings
        verify: str | bool = settings.acs.ca_file or True
        auth = acs_auth(settings.acs)
        identities = IdentityService(auth, connection_verify=verify)
        chat = ChatService(auth.endpoint, identities, connection_verify=verify)
        graph = graph_resolver(settings)
        assert settings.acs.endpoint is not None
        connector = call_connector(settings, settings.acs.endpoint, http)
        number = settings.sms.number
        gateway = (
            AcsSmsGateway(auth, number, connection_verify=verify) if settings.sms.gateway == "acs" and number else None
        )
        steps: list[Step] = []
        try:
            steps.append(await resource.credential_accepted(settings, identities))
            signed_in = steps[-1].status == "pass"
            found: list[meetings.Resolved] = []
            for index, cfg in enumerate(settings.meetings):
                step, resolved = await meetings.resolve(cfg, index, graph)
                steps.append(step)
                found.append(resolved)
            if not settings.meetings:
                steps.append(skipped("meetings", "none configured (operators add them with `meetings add`)"))
            ready = await calls.connector_ready(settings, connector, identities, signed_in)
            steps += ready
            connected = all(s.status != "fail" for s in ready)
            if self.join:
                steps += await self._joins(found, signed_in and connected, connector, identities, chat)
            steps.append(doors.event_grid(settings))
            steps.append(await doors.sms(settings, http, gateway))
        finally:
            for closing in (gateway, connector, chat, identities, graph, auth):
                if closing is not None:
                    await closing.close()
        return steps

    async def _joins(
        self,
        found: list[meetings.Resolved],
        ready: bool,
        connector: CallConnector,
        identities: IdentityService,
        chat: ChatService,
    ) -> list[Step]:
        if not ready:
            return [skipped("join", "not tried: the credential or the call connector is not ready")]
        if isinstance(connector, ClientReportedConnector):
            return [skipped("join", "not tried: with a client-reported connector the bridge joins no call itself")]
        return [
            await calls.join_meeting(meeting, connector, identities, chat, self.join_timeout_s) for meeting in found
        ]


def add_parser(sub: Any) -> None:
    """The doctor subcommand, on the main parser's subparsers."""
    doctor = sub.add_parser("doctor", help="check a set-up step by step: ACS, meetings, the call side, doors, SMS")
    doctor.add_argument("--config", type=Path, help="a TOML settings file")
    doctor.add_argument("--json", action="store_true", help="print the steps as JSON")
    doctor.add_argument(
        "--join", action="store_true", help="also join each live meeting as a test guest, send one test message, leave"
    )
    doctor.add_argument(
        "--join-timeout", type=float, default=JOIN_TIMEOUT_S, help="seconds a test guest may wait in the lobby"
    )


async def check(config: Path | None, *, join: bool = False, join_timeout_s: float = JOIN_TIMEOUT_S) -> list[Step]:
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        return [failed(CONFIG, str(exc), "correct the key it names (python -m bot check-config says the same)")]
    return await Doctor(settings, join=join, join_timeout_s=join_timeout_s).run()


def run(args: argparse.Namespace) -> int:
    """Exit 0 when every step passed (or was skipped), 1 otherwise."""
    steps = asyncio.run(check(args.config, join=args.join, join_timeout_s=args.join_timeout))
    print(as_json(steps) if args.json else "\n".join(lines(steps)), file=sys.stdout, flush=True)
    return 0 if ok(steps) else 1
