"""What the inbound scenarios share: a sandbox and a bridge process with meetings and webhook users in the call,
the threads as the sandbox stored them, the bridge's metrics, and the bare-SDK baseline on the same sandbox."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from azure.communication.chat.aio import ChatThreadClient, CommunicationTokenCredential
from azure.communication.identity import CommunicationTokenScope
from azure.communication.identity.aio import CommunicationIdentityClient
from prometheus_client.parser import text_string_to_metric_families

from .processes import BridgeConfig, BridgeProcess, SandboxProcess, Sink, WebhookSender, new_secret

CLIENT = "bench"
# Each relayed text carries one token, so a merged chat message (several texts, one per line) counts each.
TOKEN = re.compile(r"\bbm\d+x\d+x\d+\b")


def token(run: int, user: int, n: int) -> str:
    return f"bm{run}x{user}x{n}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def epoch(iso_time: str) -> float:
    return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()


async def wait_until(check: Callable[[], Awaitable[bool]], limit_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(interval_s)
    return await check()


@dataclass
class User:
    id: str
    meeting: dict[str, Any]
    """The sandbox's meeting (id, threadId, joinWebUrl) with the bridge's join code added as "code"."""


@dataclass
class Rig:
    """A sandbox process, a bridge process on it, the webhook client app (sender and callback sink), the users."""

    sandbox: SandboxProcess
    bridge: BridgeProcess
    sender: WebhookSender
    sink: Sink
    meetings: list[dict[str, Any]]
    users: list[User] = field(default_factory=list)
    refused: int = 0
    """429 answers to messages (sent again after Retry-After)."""

    async def message(self, user: User, text: str) -> tuple[int, float]:
        """Send one signed message as a well-behaved client does: a 429 (the bridge's backlog bound) is sent again,
        same webhook-id, after its Retry-After. The final status and time.time() when it was accepted."""
        event = {"type": "message", "user": {"id": user.id, "displayName": user.id}, "meeting": user.meeting["code"]}
        event["text"] = text
        webhook_id = f"msg_{uuid.uuid4().hex}"
        while True:
            status, _, headers = await self.sender.send(event, webhook_id)
            if status != 429:
                return status, time.time()
            self.refused += 1
            await asyncio.sleep(float(headers.get("Retry-After", "1")))

    async def thread(self, meeting: dict[str, Any]) -> list[dict[str, Any]]:
        """The meeting's whole thread as the organizer sees it in Teams, oldest first."""
        body = await self.sandbox.control("GET", f"/meetings/{meeting['id']}/messages")
        return list(body["value"])

    async def relayed(self) -> tuple[dict[str, float], int]:
        """Every token found in the meetings' threads with the createdOn of the chat message that carried it, and
        how many chat messages carried tokens (the sends that made it)."""
        found: dict[str, float] = {}
        sends = 0
        for meeting in self.meetings:
            for message in await self.thread(meeting):
                tokens = TOKEN.findall(str(message.get("content", "")))
                if tokens:
                    sends += 1
                    created = epoch(message["createdOn"])
                    for t in tokens:
                        found.setdefault(t, created)
        return found, sends

    async def fanned_out(self, prefix: str) -> tuple[int, int]:
        """Callbacks owed and received for the chat messages carrying tokens that start with `prefix`: each goes
        to every other user of its meeting (external users see each other's messages; authors never get theirs)."""
        owed = 0
        for meeting in self.meetings:
            others = sum(1 for u in self.users if u.meeting is meeting) - 1
            for message in await self.thread(meeting):
                if any(t.startswith(prefix) for t in TOKEN.findall(str(message.get("content", "")))):
                    owed += others
        received = sum(
            1
            for payloads in self.sink.by_user.values()
            for p in payloads
            if p.get("type") == "message" and any(t.startswith(prefix) for t in TOKEN.findall(str(p.get("text"))))
        )
        return owed, received

    async def metrics(self) -> dict[str, float]:
        """The bridge's /metrics as {'name{label="v",...}': value}."""
        async with self.sandbox.http.get(f"{self.bridge.base}/metrics") as resp:
            text = await resp.text()
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = float(sample.value)
        return samples

    @asynccontextmanager
    async def profiled(self, label: str) -> AsyncIterator[None]:
        """With BENCH_PROFILE=<folder>, py-spy samples the bridge process meanwhile (collapsed stacks)."""
        folder = os.environ.get("BENCH_PROFILE")
        if not folder:
            yield
            return
        Path(folder).mkdir(parents=True, exist_ok=True)
        out = Path(folder) / f"{label}.txt"
        spy = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(self.bridge.pid),
                "--format",
                os.environ.get("BENCH_PROFILE_FORMAT", "raw"),
                *os.environ.get("BENCH_PROFILE_ARGS", "--rate 250 --gil").split(),
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)
            await asyncio.to_thread(spy.wait, 30)

    async def idle(self, limit_s: float = 120.0) -> bool:
        """Wait until nothing is pending or held in the bridge's outbox, in either direction."""

        async def empty() -> bool:
            m = await self.metrics()
            return all(v == 0 for k, v in m.items() if k.startswith("bridge_outbox_depth"))

        return await wait_until(empty, limit_s, 0.2)


async def start_rig(
    stack: AsyncExitStack,
    workdir: Path,
    *,
    limits: bool,
    meetings: int,
    users: int,
    relay: dict[str, Any] | None = None,
    store_url: str | None = None,
) -> Rig:
    """Start everything and put `users` webhook users (user i in meeting i % meetings) in their meetings' calls."""
    sandbox = SandboxProcess(workdir / "sandbox", limits=limits)
    await sandbox.start()
    stack.push_async_callback(sandbox.stop)
    made = [await sandbox.meeting(f"bench {i}") for i in range(meetings)]
    for i, meeting in enumerate(made):
        meeting["code"] = str(100000 + i)
    secret = new_secret()
    sink = Sink(secret)
    await sink.start()
    stack.push_async_callback(sink.stop)
    config = BridgeConfig(
        state_dir=workdir / "bridge",
        # The webhook door's per-client rate limit would measure itself, not the relay.
        clients={CLIENT: {"secrets": [secret], "callback_url": sink.url, "rate_per_second": 100_000}},
        meetings=[{"link": m["joinWebUrl"], "code": m["code"], "name": m["subject"]} for m in made],
        relay=relay or {},
        log_level="WARNING",
        store_url=store_url,
    )
    bridge = BridgeProcess(config, sandbox)
    await bridge.start()
    stack.push_async_callback(bridge.terminate)
    sender = WebhookSender(bridge.base, CLIENT, secret)
    stack.push_async_callback(sender.close)
    rig = Rig(sandbox, bridge, sender, sink, made)
    rig.users = [User(f"u{i}", made[i % meetings]) for i in range(users)]
    await join(rig, rig.users)
    return rig


async def join(rig: Rig, users: list[User], limit_s: float = 120.0) -> None:
    gate = asyncio.Semaphore(8)

    async def one(user: User) -> None:
        async with gate:
            event = {"type": "join", "user": {"id": user.id, "displayName": user.id}, "meeting": user.meeting["code"]}
            status, body, _ = await rig.sender.send(event)
            if status != 202:
                raise RuntimeError(f"join of {user.id} answered {status} {body}")

    await asyncio.gather(*(one(u) for u in users))

    async def all_in() -> bool:
        return (await rig.metrics()).get('bridge_sessions{state="in_call"}', 0) >= len(users)

    if not await wait_until(all_in, limit_s, 0.2):
        raise RuntimeError(f"the users were not all in the call within {limit_s} s")


async def sdk_baseline(sandbox: SandboxProcess, meetings: int, senders: int, per_sender: int) -> dict[str, float]:
    """The bare async chat SDK on the same sandbox: `senders` ACS identities in the calls of `meetings` fresh
    meetings (sender i in meeting i % meetings), each sending `per_sender` messages one after another through its
    own ChatThreadClient, all at once. Sends per second and this process's CPU per send."""
    made = [await sandbox.meeting(f"baseline {i}") for i in range(meetings)]
    info = sandbox.info
    tokens: list[tuple[str, str]] = []
    async with CommunicationIdentityClient.from_connection_string(
        info["connectionString"], connection_verify=info["caFile"]
    ) as identities:
        for i in range(senders):
            _, access = await identities.create_user_and_token(
                scopes=[CommunicationTokenScope.CHAT, CommunicationTokenScope.VOIP]
            )
            meeting = made[i % meetings]
            async with sandbox.http.post(
                f"{info['endpoint'].rstrip('/')}/sandbox/v1/calls",
                json={"meetingLink": meeting["joinWebUrl"], "displayName": f"Sender {i}"},
                headers={"Authorization": f"Bearer {access.token}"},
            ) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"baseline sender {i} could not join: {resp.status} {await resp.text()}")
            tokens.append((access.token, str(meeting["threadId"])))

    async with AsyncExitStack() as stack:
        clients: list[ChatThreadClient] = []
        for access_token, thread_id in tokens:
            client = ChatThreadClient(
                info["endpoint"],
                CommunicationTokenCredential(access_token),
                thread_id,
                connection_verify=info["caFile"],
                retry_total=0,
            )
            clients.append(await stack.enter_async_context(client))

        async def send(client: ChatThreadClient, count: int) -> None:
            for n in range(count):
                await client.send_message(f"baseline {n}", sender_display_name="baseline")

        # Warm up connections and TLS outside the measured window, as the bridge's own warm-up does.
        await asyncio.gather(*(send(c, 1) for c in clients))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(send(c, per_sender) for c in clients))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    total = senders * per_sender
    return {"sends": total, "seconds": wall, "sends_per_s": total / wall, "client_cpu_ms_per_send": cpu / total * 1000}
