"""Graceful shutdown: the bridge as its own process, stopped with SIGTERM under load and with sends under way.

A stop turns intake away at once (503 with Retry-After, /readyz 503), lets requests and sends under way finish
within `bridge.shutdown_grace_s`, exits 0, and the next start loses and doubles nothing.
"""

from __future__ import annotations

import asyncio
import html
import re
import secrets
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr

from bench.processes import BridgeConfig, BridgeProcess, SandboxProcess, Sink, WebhookSender, new_secret
from bot.config import MeetingConfig, Settings
from bot.drain import DRAIN
from bot.sandbox import SandboxInfo
from tests.support.bridge import bridge_for, wait_for
from tests.support.sandbox import Control

MESSAGES_PATH = "/chat/threads/*/messages"
# Exit bound of a stop: the grace period plus this much for everything around it. Generous on purpose: the
# promise is "bounded", not "fast", and CI machines are slow.
EXIT_MARGIN_S = 20.0


@dataclass
class _Config(BridgeConfig):
    grace_s: float = 10.0

    def environment(self, sandbox: Any) -> dict[str, str]:
        env = super().environment(sandbox)
        env["BRIDGE__BRIDGE__SHUTDOWN_GRACE_S"] = str(self.grace_s)
        return env


class World:
    """A sandbox process, one meeting per user (so each user's backlog merges into few paced sends), a webhook
    client with its callback sink, and the bridge process."""

    def __init__(
        self,
        sandbox: SandboxProcess,
        bridge: BridgeProcess,
        sender: WebhookSender,
        sink: Sink,
        meetings: dict[str, Any],
    ) -> None:
        self.sandbox = sandbox
        self.bridge = bridge
        self.sender = sender
        self.sink = sink
        self.meetings = meetings

    def code(self, user: str) -> str:
        return join_code(list(self.meetings), user)

    def event(self, user: str, kind: str = "message", text: str | None = None) -> dict[str, Any]:
        event: dict[str, Any] = {
            "type": kind,
            "user": {"id": user, "displayName": user.title()},
            "meeting": self.code(user),
        }
        if text is not None:
            event["text"] = text
        return event

    async def send(self, user: str, text: str, webhook_id: str) -> tuple[int, dict[str, Any], Any]:
        return await self.sender.send(self.event(user, text=text), webhook_id, timeout_s=15)

    async def join(self) -> None:
        for user in self.meetings:
            status, body, _ = await self.sender.send(self.event(user, "join"))
            assert status == 202, body

        async def all_in_call() -> bool:
            notices = {u: [p["text"] for p in self.sink.by_user[u] if p["type"] == "notice"] for u in self.meetings}
            return all(any("You're in the meeting chat" in t for t in notices[u]) for u in self.meetings)

        await wait_for(all_in_call, limit_s=30, what="every user in the call")

    async def lines(self, user: str) -> list[str]:
        """The meeting's chat as Teams shows it, one line per relayed message (a merged send holds several)."""
        meeting = self.meetings[user]
        body = await self.sandbox.control("GET", f"/meetings/{meeting['id']}/messages")
        out: list[str] = []
        for message in body["value"]:
            if message["type"] in ("text", "html") and message["senderDisplayName"] != "Megan":
                out += [html.unescape(line) for line in message["content"]["message"].split("<br>")]
        return out

    async def until_lines(self, user: str, expected: list[str], limit_s: float = 30.0) -> list[str]:
        async def all_there() -> list[str]:
            lines = await self.lines(user)
            return lines if set(expected) <= set(lines) else []

        return list(await wait_for(all_there, limit_s=limit_s, what=f"{user}'s messages in the thread"))

    async def delay_sends(self, delay_ms: int, count: int | None = 1) -> None:
        """The next `count` chat sends into any thread (None: all) hang for delay_ms in the sandbox first."""
        rule = {"method": "POST", "path": MESSAGES_PATH, "action": "delay", "delayMs": delay_ms}
        if count is not None:
            rule["count"] = count
        await self.sandbox.control("PUT", "/faults", {"rules": [rule]})

    async def until_send_hangs(self) -> None:
        async def fired() -> bool:
            return bool((await self.sandbox.control("GET", "/faults"))["rules"][0]["fired"])

        await wait_for(fired, what="a send held up by the delay rule")

    async def status_of(self, path: str) -> int | None:
        try:
            async with self.sandbox.http.get(f"{self.bridge.base}{path}", timeout=aiohttp.ClientTimeout(total=5)) as r:
                return r.status
        except (aiohttp.ClientError, TimeoutError):
            return None

    def log(self) -> str:
        return self.bridge.log_file.read_text(errors="replace")


def join_code(users: list[str], user: str) -> str:
    return f"{4200 + users.index(user)}"


@asynccontextmanager
async def world(tmp_path: Path, users: list[str], grace_s: float) -> AsyncIterator[World]:
    sandbox = SandboxProcess(tmp_path / "sandbox")
    await sandbox.start()
    secret = new_secret()
    sink = Sink(secret)
    bridge: BridgeProcess | None = None
    sender: WebhookSender | None = None
    try:
        await sink.start()
        meetings = {user: await sandbox.meeting(f"Meeting of {user}") for user in users}
        config = _Config(
            tmp_path / "bridge",
            clients={"app": {"secrets": [secret], "callback_url": sink.url, "rate_per_second": 1000}},
            meetings=[{"link": m["joinWebUrl"], "code": join_code(users, u), "name": u} for u, m in meetings.items()],
            grace_s=grace_s,
        )
        bridge = BridgeProcess(config, sandbox)
        await bridge.start()
        sender = WebhookSender(bridge.base, "app", secret)
        w = World(sandbox, bridge, sender, sink, meetings)
        await w.join()
        yield w
    finally:
        if sender is not None:
            await sender.close()
        if bridge is not None:
            bridge.kill()
        await sink.stop()
        await sandbox.stop()


def assert_once_in_order(lines: list[str], expected: list[str]) -> None:
    counts = Counter(lines)
    assert not [t for t in expected if counts[t] != 1], f"not exactly once: {[(t, counts[t]) for t in expected]}"
    assert [line for line in lines if line in set(expected)] == expected, "out of order"


async def test_sigterm_under_load_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """Senders and a Teams user keep going while the bridge stops: every request is acknowledged, refused with
    Retry-After or cut off; after a restart (and the clients' resends) everything acknowledged is in its thread
    exactly once, in order, and every Teams post reached its user exactly once."""
    users = ["ann", "bob", "cem"]
    async with world(tmp_path, users, grace_s=5) as w:
        acked: dict[str, list[str]] = {u: [] for u in users}
        unsent: dict[str, tuple[str, str]] = {}  # user -> (webhook-id, text) of the first request not acknowledged
        odd: list[tuple[str, int, dict[str, Any]]] = []
        refused = cut = 0
        posts: dict[str, list[str]] = {u: [] for u in users}
        bridge_down = asyncio.Event()

        async def drive(user: str) -> None:
            nonlocal refused, cut
            for i in range(2000):
                text, webhook_id = f"{user} says {i}", f"{user}-{i}"
                try:
                    status, body, headers = await w.send(user, text, webhook_id)
                except (aiohttp.ClientError, TimeoutError):
                    unsent[user] = (webhook_id, text)
                    cut += 1
                    return
                if status == 202:
                    acked[user].append(text)
                elif status == 503 and body.get("error") == "shutting_down" and headers.get("Retry-After"):
                    unsent[user] = (webhook_id, text)
                    refused += 1
                    return
                else:
                    odd.append((user, status, body))
                    return
                # About ten a second per user: a steady stream, well below any backlog limit.
                await asyncio.sleep(0.1)

        async def teams_posts(user: str) -> None:
            meeting = w.meetings[user]
            i = 0
            while not bridge_down.is_set():
                text = f"megan to {user} {i}"
                await w.sandbox.control(
                    "POST", f"/meetings/{meeting['id']}/messages", {"from": meeting["organizerId"], "html": text}
                )
                posts[user].append(text)
                i += 1
                await asyncio.sleep(0.2)

        # Slow sends keep the outbox busy, so the stop has sends to wait for while the drivers run into its 503s.
        await w.delay_sends(1500, count=None)
        drivers = [asyncio.create_task(drive(u)) for u in users]
        talkers = [asyncio.create_task(teams_posts(u)) for u in users]

        async def going() -> bool:
            return all(len(acked[u]) >= 10 for u in users) or any(d.done() for d in drivers)

        await wait_for(going, what="a steady stream of acknowledged messages")
        started = time.monotonic()
        code = await w.bridge.terminate(timeout_s=5 + EXIT_MARGIN_S)
        elapsed = time.monotonic() - started
        bridge_down.set()
        await asyncio.gather(*drivers, *talkers)

        assert odd == [], "only 202, 503 with Retry-After or a cut connection are expected"
        assert code == 0, w.log()[-3000:]
        assert elapsed < 5 + EXIT_MARGIN_S
        assert set(unsent) == set(users), "every sender ran into the stop"
        assert "stopping: draining" in w.log() and "\nstopped\n" in w.log()

        await w.sandbox.control("PUT", "/faults", {"rules": []})
        await w.bridge.start()
        for user, (webhook_id, text) in unsent.items():
            status, body, _ = await w.send(user, text, webhook_id)  # the client's retry, same webhook-id
            assert status == 202, body
            acked[user].append(text)
            status, body, _ = await w.send(user, f"{user} after the restart", f"{user}-after")
            assert status == 202, body
            acked[user].append(f"{user} after the restart")

        for user in users:
            assert_once_in_order(await w.until_lines(user, acked[user]), acked[user])

            async def all_posts(user: str = user) -> list[str]:
                got = [p["text"] for p in w.sink.by_user[user] if p["type"] == "message"]
                return got if set(posts[user]) <= set(got) else []

            received = await wait_for(all_posts, limit_s=30, what=f"every Teams post to {user}")
            assert sorted(Counter(received).values()) == [1] * len(received), "a Teams post arrived twice"
        print(f"stopped in {elapsed:.1f} s; {sum(map(len, acked.values()))} acknowledged, {refused} refused, {cut} cut")


async def test_sigterm_with_a_send_stuck_past_the_grace(tmp_path: Path) -> None:
    """A send that hangs longer than the grace: while draining, /readyz and the door answer 503 and /healthz 200;
    the process still exits 0 in bounded time, and after a restart the backlog arrives exactly once."""
    grace_s = 3.0
    async with world(tmp_path, ["ann"], grace_s=grace_s) as w:
        await w.delay_sends(8000)
        texts = [f"backlog {i}" for i in range(5)]
        for i, text in enumerate(texts):
            status, body, _ = await w.send("ann", text, f"ann-{i}")
            assert status == 202, body
        await w.until_send_hangs()

        started = time.monotonic()
        stopping = asyncio.create_task(w.bridge.terminate(timeout_s=grace_s + EXIT_MARGIN_S))

        async def not_ready() -> bool:
            return await w.status_of("/readyz") == 503

        await wait_for(not_ready, limit_s=grace_s + EXIT_MARGIN_S, what="/readyz answering 503 while draining")
        assert await w.status_of("/healthz") == 200
        status, body, headers = await w.send("ann", "sent while stopping", "ann-late")
        assert (status, body["error"]) == (503, "shutting_down")
        assert int(headers["Retry-After"]) > 0
        texts.append("sent while stopping")

        code = await stopping
        assert code == 0, w.log()[-3000:]
        assert time.monotonic() - started < grace_s + EXIT_MARGIN_S
        assert "outbox sends still under way are retried on the next start" in w.log()

        # The cut send never reached the thread (the sandbox drops a held-up request whose client went away): the
        # restart looks for it by its bridgeId, finds nothing and sends it, once.
        await w.bridge.start()
        status, body, _ = await w.send("ann", "sent while stopping", "ann-late")
        assert status == 202, body
        assert_once_in_order(await w.until_lines("ann", texts), texts)


async def test_sigterm_lets_a_send_under_way_finish(tmp_path: Path) -> None:
    """A slow send under way when the stop comes is finished and recorded; nothing new is started after it."""
    async with world(tmp_path, ["ann"], grace_s=20) as w:
        await w.delay_sends(4000)
        status, body, _ = await w.send("ann", "first", "ann-0")
        assert status == 202, body
        await w.until_send_hangs()
        for i, text in enumerate(["second", "third"], start=1):
            status, body, _ = await w.send("ann", text, f"ann-{i}")
            assert status == 202, body

        code = await w.bridge.terminate(timeout_s=20 + EXIT_MARGIN_S)
        assert code == 0, w.log()[-3000:]
        log = w.log()
        assert re.search(r"and [1-9]\d* outbox sends", log) and "retried on the next start" not in log
        assert await w.lines("ann") == ["first"], "the send under way finished; no other started"

        await w.bridge.start()
        assert_once_in_order(await w.until_lines("ann", ["first", "second", "third"]), ["first", "second", "third"])


async def test_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    """A second SIGTERM during a long grace period ends the stop without waiting for it; still exit 0."""
    grace_s = 120.0
    async with world(tmp_path, ["ann"], grace_s=grace_s) as w:
        await w.delay_sends(6000)
        status, body, _ = await w.send("ann", "held up", "ann-0")
        assert status == 202, body
        await w.until_send_hangs()
        assert w.bridge.proc is not None
        w.bridge.proc.send_signal(signal.SIGTERM)

        async def draining() -> bool:
            return "stopping: draining" in w.log()

        await wait_for(draining, what="the stop to begin")
        started = time.monotonic()
        code = await w.bridge.terminate(timeout_s=EXIT_MARGIN_S)  # the second SIGTERM
        assert code == 0, w.log()[-3000:]
        assert time.monotonic() - started < EXIT_MARGIN_S < grace_s
        assert "stopping now: second signal" in w.log()

        await w.bridge.start()
        await w.send("ann", "after", "ann-1")
        assert_once_in_order(await w.until_lines("ann", ["held up", "after"]), ["held up", "after"])


async def test_draining_turns_intake_away_and_keeps_reads(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    """In process, the middleware alone: doors and admin changes get 503 with Retry-After; reads keep working."""
    meeting = await control.meeting()
    token = secrets.token_urlsafe(24)

    def with_admin(settings: Settings) -> Settings:
        return settings.model_copy(update={"admin": settings.admin.model_copy(update={"token": SecretStr(token)})})

    config = MeetingConfig(link=meeting["joinWebUrl"], code="424242")
    async with bridge_for(info, tmp_path, config, adjust=with_admin) as (bridge, _, secret):
        assert bridge.http is not None
        admin = {"Authorization": f"Bearer {token}"}
        event = {"type": "join", "user": {"id": "ann"}, "meeting": "424242"}
        bridge.app[DRAIN].begin("the bridge is stopping; retry shortly")

        status, body = await bridge.send("app", secret, event)
        assert (status, body["error"]) == (503, "shutting_down")
        for method, path, headers in [
            ("POST", "/channels/webhook/app", {}),
            ("POST", "/api/v1/meetings", admin),
            ("DELETE", "/api/v1/sessions/1", admin),
            ("POST", "/api/v1/meetings", {}),  # refused before auth is looked at: nothing to learn from it
        ]:
            async with bridge.http.request(method, bridge.base + path, json={}, headers=headers) as resp:
                assert resp.status == 503, (method, path)
                assert resp.headers["Retry-After"] == "5"
                assert (await resp.json())["error"] == "shutting_down"
        for path, headers, expected in [
            ("/healthz", {}, 200),
            ("/readyz", {}, 503),
            ("/api/v1/status", admin, 200),
            ("/api/v1/meetings", admin, 200),
        ]:
            async with bridge.http.get(bridge.base + path, headers=headers) as resp:
                assert resp.status == expected, path
        assert await bridge.store.sessions() == [], "nothing refused was stored"
