"""The scale benchmark's baseline: the bare async chat SDK reading idle meeting threads at the bridge's idle rate.

Run as its own process (`python -m bench.idle_reads SPEC.json`), so its CPU is measured alone: one new ACS identity
joins each meeting's call, then every thread is listed from "now" (an idle read: nothing comes back) once per
`interval_s`, the reads spread evenly, through one ChatThreadClient per thread sharing one HTTP session and SSL
context, SDK retries off, as the bridge does. Prints {"cpu_pct", "reads_per_s", "reads"} as JSON.
"""

from __future__ import annotations

import asyncio
import json
import resource
import ssl
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from azure.communication.chat.aio import ChatThreadClient, CommunicationTokenCredential
from azure.communication.identity import CommunicationTokenScope
from azure.communication.identity.aio import CommunicationIdentityClient
from azure.core.pipeline.transport import AioHttpTransport

from .population import gather_limited


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _client(
    info: dict[str, Any], http: aiohttp.ClientSession, identities: CommunicationIdentityClient, link: str, thread: str
) -> ChatThreadClient:
    _, token = await identities.create_user_and_token(
        scopes=[CommunicationTokenScope.CHAT, CommunicationTokenScope.VOIP]
    )
    body = {"meetingLink": link, "displayName": "Baseline reader"}
    headers = {"Authorization": f"Bearer {token.token}"}
    async with http.post(f"{info['endpoint'].rstrip('/')}/sandbox/v1/calls", json=body, headers=headers) as resp:
        if resp.status != 201:
            raise RuntimeError(f"joining the call: {resp.status} {await resp.text()}")
    transport = AioHttpTransport(session=http, session_owner=False)
    return ChatThreadClient(
        info["endpoint"], CommunicationTokenCredential(token.token), thread, transport=transport, retry_total=0
    )


async def _read(client: ChatThreadClient, since: datetime) -> int:
    return len([m async for m in client.list_messages(results_per_page=100, start_time=since)])


async def measure(spec: dict[str, Any]) -> dict[str, float]:
    info = json.loads(Path(spec["sandbox_info"]).read_text())
    trust = ssl.create_default_context(cafile=info["caFile"])
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust), auto_decompress=False) as http,
        CommunicationIdentityClient.from_connection_string(
            info["connectionString"], transport=AioHttpTransport(session=http, session_owner=False)
        ) as identities,
    ):
        meetings: list[tuple[str, str]] = [tuple(m) for m in spec["meetings"]]
        clients = await gather_limited((_client(info, http, identities, link, t) for link, t in meetings), 16)
        since = datetime.now(UTC)
        await gather_limited((_read(c, since) for c in clients), 16)  # tokens and connections warm
        interval, window = float(spec["interval_s"]), float(spec["window_s"])
        gap = interval / len(clients)
        loop = asyncio.get_running_loop()
        started, cpu0 = loop.time(), _cpu()
        reads = 0
        pending: set[asyncio.Task[int]] = set()
        while loop.time() - started < window:
            task = asyncio.create_task(_read(clients[reads % len(clients)], since))
            pending.add(task)
            task.add_done_callback(pending.discard)
            reads += 1
            await asyncio.sleep(max(0.0, started + reads * gap - loop.time()))
        await asyncio.gather(*pending)
        elapsed, cpu = loop.time() - started, _cpu() - cpu0
        for client in clients:
            await client.close()
    return {"cpu_pct": round(cpu / elapsed * 100, 2), "reads_per_s": round(reads / elapsed, 1), "reads": reads}


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    print(json.dumps(asyncio.run(measure(spec))))


if __name__ == "__main__":
    main()
