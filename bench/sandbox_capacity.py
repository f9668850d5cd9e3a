"""Benchmark: the sandbox's own capacity, chat sends per second through the real async chat SDK.

The sandbox runs in its own process (as `python -m bot sandbox`) with rate limits off; this process plays
32 ACS identities in one Teams meeting's call, each sending through its own ChatThreadClient. Later figures
(the bridge's throughput, issue 7) are stated as ratios against this one, measured on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from azure.communication.chat.aio import ChatThreadClient, CommunicationTokenCredential
from azure.communication.identity import CommunicationTokenScope
from azure.communication.identity.aio import CommunicationIdentityClient


async def _start_sandbox(state_dir: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "sandbox", "--port", "0", "--state-dir", str(state_dir), "--no-limits"],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.to_thread(proc.stdout.readline)
    if b"ready" not in line:
        proc.kill()
        raise RuntimeError(f"sandbox did not start: {line!r}")
    info = json.loads((state_dir / "sandbox.json").read_text())
    return proc, info


async def _prepare(info: dict[str, Any], senders: int) -> tuple[str, list[str]]:
    import ssl

    ctx = ssl.create_default_context(cafile=info["caFile"])
    base = info["endpoint"].rstrip("/")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
        async with http.post(
            f"{base}/sandbox/v1/meetings", json={"subject": "bench", "organizer": {"displayName": "Megan"}}
        ) as resp:
            meeting = await resp.json()
        await http.post(f"{base}/sandbox/v1/meetings/{meeting['id']}/start")
        tokens: list[str] = []
        async with CommunicationIdentityClient.from_connection_string(
            info["connectionString"], connection_verify=info["caFile"]
        ) as identities:
            for i in range(senders):
                _, token = await identities.create_user_and_token(
                    scopes=[CommunicationTokenScope.CHAT, CommunicationTokenScope.VOIP]
                )
                async with http.post(
                    f"{base}/sandbox/v1/calls",
                    json={"meetingLink": meeting["joinWebUrl"], "displayName": f"Sender {i}"},
                    headers={"Authorization": f"Bearer {token.token}"},
                ) as resp:
                    assert resp.status == 201, await resp.text()
                tokens.append(token.token)
    return str(meeting["threadId"]), tokens


async def _sender(info: dict[str, Any], thread_id: str, token: str, count: int, latencies: list[float]) -> None:
    async with ChatThreadClient(
        info["endpoint"],
        CommunicationTokenCredential(token),
        thread_id,
        connection_verify=info["caFile"],
        retry_total=0,
    ) as client:
        for i in range(count):
            started = time.perf_counter()
            await client.send_message(f"message {i}", sender_display_name="bench")
            latencies.append(time.perf_counter() - started)


async def run(senders: int, per_sender: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        proc, info = await _start_sandbox(Path(tmp))
        try:
            thread_id, tokens = await _prepare(info, senders)
            # Warm up connections and TLS sessions outside the measured window.
            await asyncio.gather(*(_sender(info, thread_id, t, 1, []) for t in tokens))
            latencies: list[float] = []
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await asyncio.gather(*(_sender(info, thread_id, t, per_sender, latencies) for t in tokens))
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    total = senders * per_sender
    latencies.sort()
    return {
        "scenario": "sandbox chat sends through the async SDK",
        "senders": senders,
        "messages": total,
        "seconds": round(wall, 3),
        "sends_per_second": round(total / wall, 1),
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "latency_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "client_cpu_ms_per_send": round(cpu / total * 1000, 3),
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--per-sender", type=int, default=60)
    parser.add_argument("--output", type=Path, default=Path("bench-results-sandbox.json"))
    args = parser.parse_args()
    result = asyncio.run(run(args.senders, args.per_sender))
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
