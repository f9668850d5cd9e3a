"""The crash and fault soak: external users and Teams users talk through a bridge that is SIGKILLed and restarted
while the sandbox injects faults; at the end every sink is counted for lost, duplicated and out-of-order messages.

    python -m bench.soak [--messages N] [--kills K] [--full] [--seed S] [--connector browser] [--output FILE]

The bridge and the sandbox run as their own processes (bench/processes.py). This process plays everyone else:
webhook clients that resend the same webhook-id until they get a 2xx, phones texting the ACS number, Teams users
posting in the meetings, the callback sink, the killer and the fault injector. Exit status 1 when anything was
lost, duplicated, out of order or left in the outbox.

With --connector browser the bridge holds every call leg in its headless Chromium (the sandbox's stand-in Calling
SDK): each SIGKILL takes the browser down with the bridge, and the Teams messages that no leg could read meanwhile
are counted apart (bench/soak_gaps.py).
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import math
import os
import platform
import random
import secrets
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from bot.address import Address
from bot.channels.sms.intake import BUSY_TEXT
from bot.relay.workers import BACKLOG_TEXT
from bot.store.outbox import BACKLOG_NOTICE as BACKLOG_FULL

from .processes import BridgeConfig, BridgeProcess, SandboxProcess, Sink, WebhookSender, new_secret
from .soak_check import Tally, check_recipient, check_thread, token, tokens
from .soak_gaps import away_spans, epoch, excusable, gap_report, post_times
from .soak_report import CHAT_EVENT_FAULTS, EXPECTED_FAILURES, FAULTS, by_kind, table

CLIENT = "soak"
FILLERS = (
    "hello from outside Teams",
    "a < b & c > d, said the <b>tag</b> that must stay text",
    "ünïcödé ✓ and an emoji 🎉",
    "see https://example.com/agenda?x=1&y=2",
    "short",
    "a somewhat longer message that goes on for a while so that texts get split into segments now and then",
)


class FlakySink(Sink):
    """The webhook client's callback endpoint, misbehaving now and then: a 503 before it takes the callback, or
    the callback taken and the answer lost (the connection cut), which makes the bridge send it again."""

    def __init__(self, secret: str, seed: int, refuse: float = 0.03, lose_answer: float = 0.03) -> None:
        super().__init__(secret)
        self._rng = random.Random(f"{seed}/sink")
        self._refuse = refuse
        self._lose_answer = lose_answer
        self.refused = 0
        self.answers_lost = 0

    async def _receive(self, request: web.Request) -> web.Response:
        roll = self._rng.random()
        if roll < self._refuse:
            self.refused += 1
            return web.Response(status=503, headers={"Retry-After": "1"})
        response = await super()._receive(request)
        if roll < self._refuse + self._lose_answer and response.status == 200 and request.transport is not None:
            self.answers_lost += 1
            request.transport.abort()
        return response


@dataclass
class SoakOptions:
    messages: int = 1000
    kills: int = 5
    duration_s: float = 120.0
    """How long the senders spread their messages over (they fall behind while the bridge is down)."""
    meetings: int | None = None
    """Default: enough that each meeting gets about `per_meeting_per_minute` inbound messages a minute."""
    per_meeting_per_minute: float = 20.0
    webhook_per_meeting: int = 2
    sms_per_meeting: int = 1
    teams_posts: int | None = None
    """Default: a fifth of `messages`."""
    seed: int = 1
    faults: bool = True
    chat_events: bool = False
    """Event Grid chat events on: meetings are read on them (with faults, a share lost and a share repeated)."""
    drain_timeout_s: float = 240.0
    state_dir: Path | None = None
    connector: str = "sandbox"
    """calls.connector of the bridge: sandbox (legs in the sandbox, untouched by a crash) or browser."""
    leg_grace_s: float = 0.0
    """With the browser: how long the sandbox keeps a leg whose browser vanished. 0, the pessimistic case: every crash
    takes the meeting's legs out of the chat at once, so what is posted until they are back is unreadable (real Teams
    keeps a vanished client about 60 s)."""

    @classmethod
    def full(cls) -> SoakOptions:
        return cls(messages=10_000, kills=20, duration_s=600.0, drain_timeout_s=600.0)

    def meeting_count(self) -> int:
        if self.meetings is not None:
            return self.meetings
        return max(1, math.ceil(self.messages / (self.duration_s / 60 * self.per_meeting_per_minute)))

    def teams_post_count(self) -> int:
        return self.messages // 5 if self.teams_posts is None else self.teams_posts


@dataclass
class External:
    owner: str
    """Token owner, u007."""
    kind: str
    """webhook or sms."""
    meeting: int
    address: str
    """The webhook user id, or the phone number."""
    planned: int = 0
    acked: list[int] = field(default_factory=list)
    texts: dict[str, int] = field(default_factory=dict)
    """An SMS user's texts: the gateway's message id → the token number it carried."""

    @property
    def user_id(self) -> str:
        return str(Address.webhook(CLIENT, self.address) if self.kind == "webhook" else Address.sms(self.address))


@dataclass
class Poster:
    owner: str
    """Token owner, t003."""
    teams_id: str
    meeting: int
    planned: int = 0
    posted: list[int] = field(default_factory=list)


@dataclass
class SoakMeeting:
    index: int
    id: str
    code: str
    link: str


@dataclass
class Shed:
    """Tokens the bridge refused by design under overload, and told the user so: they are not expected."""

    outbound: dict[str, set[tuple[str, int]]] = field(default_factory=dict)
    """Bridge user id → tokens of deliveries failed backlog_full."""
    inbound: set[tuple[str, int]] = field(default_factory=set)
    """Tokens of texts the gateway accepted and the bridge answered busy."""


@dataclass
class Kill:
    at_s: float
    down_s: float
    restart_s: float
    browser_left: int = 0
    """Processes the bridge had started (its browser's) still running 2 s after it was gone, then killed."""
    wall: float = 0.0
    """time.time() of the kill."""


@dataclass
class ClientStats:
    """What the webhook clients went through to get their messages acknowledged."""

    requests: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, options: SoakOptions, state_dir: Path) -> None:
        self.o = options
        self.state_dir = state_dir
        self.rng = random.Random(options.seed)
        self.sandbox = SandboxProcess(state_dir / "sandbox")
        self.secret = new_secret()
        self.sink = FlakySink(self.secret, options.seed) if options.faults else Sink(self.secret)
        self.admin_token = secrets.token_urlsafe(24)
        self.meetings: list[SoakMeeting] = []
        self.externals: list[External] = []
        self.posters: list[Poster] = []
        self.kills: list[Kill] = []
        self.client = ClientStats()
        self.findings: list[str] = []
        self.bridge: BridgeProcess | None = None
        self.sender: WebhookSender | None = None
        self._admin: aiohttp.ClientSession | None = None

    # set-up -----------------------------------------------------------------------------------------------

    async def setup(self) -> None:
        await self.sandbox.start()
        await self.sink.start()
        count = self.o.meeting_count()
        phone = 0
        for i in range(count):
            m = await self.sandbox.meeting(f"Soak {i:03d}")
            self.meetings.append(SoakMeeting(i, m["id"], f"{700000 + i}", m["joinWebUrl"]))
            posters = [m["organizerId"]]
            for name in ("Bob", "Carol"):
                user = await self.sandbox.control("POST", f"/meetings/{m['id']}/teams-users", {"displayName": name})
                posters.append(user["id"])
            for teams_id in posters:
                self.posters.append(Poster(f"t{len(self.posters):03d}", teams_id, i))
            for kind, n in (("webhook", self.o.webhook_per_meeting), ("sms", self.o.sms_per_meeting)):
                for _ in range(n):
                    owner = f"u{len(self.externals):03d}"
                    address = owner if kind == "webhook" else f"+1555{2000 + phone:04d}"
                    phone += kind == "sms"
                    self.externals.append(External(owner, kind, i, address))
        for index in range(self.o.messages):
            self.externals[index % len(self.externals)].planned += 1
        for index in range(self.o.teams_post_count()):
            self.posters[index % len(self.posters)].planned += 1
        config = BridgeConfig(
            state_dir=self.state_dir / "bridge",
            clients={CLIENT: {"secrets": [self.secret], "callback_url": self.sink.url, "rate_per_second": 50}},
            meetings=[{"link": m.link, "code": m.code, "name": f"Soak {m.index:03d}"} for m in self.meetings],
            sms=True,
            # Every text must reach the phone whole (token counting), and the hourly bill guard is not under test.
            sms_settings={"cap_policy": "split", "segment_cap": 10, "budget_segments_per_hour": 1_000_000},
            admin_token=self.admin_token,
            event_delivery_attempts=30,
            events=self.o.chat_events,
            chat_event_faults=CHAT_EVENT_FAULTS | {"seed": self.o.seed}
            if self.o.chat_events and self.o.faults
            else None,
            connector=self.o.connector,
            # A crash must be noticed by the legs' own stream, not a late heartbeat; several pages share the crowd.
            browser={"heartbeat_s": 1.0, "heartbeat_timeout_s": 3.0} if self.o.connector == "browser" else {},
        )
        if self.o.connector == "browser":
            await self.sandbox.control("PUT", "/call-settings", {"graceSeconds": self.o.leg_grace_s})
        self.bridge = BridgeProcess(config, self.sandbox)
        await self.bridge.start()
        self.sender = WebhookSender(self.bridge.base, CLIENT, self.secret)
        self._admin = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.admin_token}"})

    async def admin(self, path: str) -> Any:
        assert self._admin is not None and self.bridge is not None
        async with self._admin.get(f"{self.bridge.base}/api/v1{path}", timeout=aiohttp.ClientTimeout(total=10)) as r:
            r.raise_for_status()
            return await r.json()

    async def everyone_in_call(self, limit_s: float) -> bool:
        deadline = time.monotonic() + limit_s
        while True:
            sessions = (await self.admin("/sessions?state=in_call"))["sessions"]
            if len(sessions) >= len(self.externals):
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.5)

    async def join_everyone(self, limit_s: float = 120.0) -> None:
        meetings = {m.index: m for m in self.meetings}
        for user in self.externals:
            code = meetings[user.meeting].code
            if user.kind == "webhook":
                event = {"type": "join", "user": {"id": user.address, "displayName": f"User {user.owner}"}}
                await self.post_webhook(event | {"meeting": code}, f"join_{user.owner}")
            else:
                await self.text(user.address, f"JOIN {code}")
        if not await self.everyone_in_call(limit_s):
            sessions = (await self.admin("/sessions?state=in_call"))["sessions"]
            raise RuntimeError(f"only {len(sessions)} of {len(self.externals)} users got into their calls")

    # the actors ---------------------------------------------------------------------------------------------

    async def post_webhook(self, event: dict[str, Any], webhook_id: str) -> bool:
        """Send until acknowledged, as a client that must not lose a message does; False on a refusal."""
        assert self.sender is not None
        pause = 0.2
        while True:
            self.client.requests += 1
            try:
                status, body, headers = await self.sender.send(event, webhook_id, timeout_s=15)
            except (aiohttp.ClientError, TimeoutError, OSError):
                self.client.retries["connection"] += 1
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            if 200 <= status < 300:
                return True
            if status == 429 or status >= 500:
                self.client.retries[str(status)] += 1
                if status == 500:
                    self.client.findings.append(f"{webhook_id}: 500 {body}")
                retry_after = headers.get("Retry-After", "")
                await asyncio.sleep(float(retry_after) if retry_after.isdigit() else pause)
                pause = min(pause * 2, 2.0)
                continue
            self.client.findings.append(f"{webhook_id}: {status} {body}")
            return False

    async def text(self, phone: str, message: str) -> str:
        body = {"to": self.sandbox.info["smsNumber"], "message": message}
        answer = await self.sandbox.control("POST", f"/phones/{quote(phone, safe='')}/sms", body)
        return str(answer["messageId"])

    def _gaps(self, rng: random.Random, count: int) -> list[float]:
        """Think times spreading `count` messages over the duration, a third of them in quick bursts."""
        burst = [rng.random() < 0.35 for _ in range(count)]
        gaps = [rng.uniform(0, 0.3) if b else rng.expovariate(1.0) for b in burst]
        # Scaled so that every sender ends near the end of the duration, however few messages it has.
        spread = sum(g for g, b in zip(gaps, burst, strict=True) if not b) or 1.0
        room = max(
            0.0, self.o.duration_s * rng.uniform(0.9, 1.0) - sum(g for g, b in zip(gaps, burst, strict=True) if b)
        )
        return [g if b else g * room / spread for g, b in zip(gaps, burst, strict=True)]

    async def run_external(self, user: External) -> None:
        rng = random.Random(f"{self.o.seed}/{user.owner}")
        code = self.meetings[user.meeting].code
        for number, gap in enumerate(self._gaps(rng, user.planned), start=1):
            await asyncio.sleep(gap)
            text = f"{token(user.owner, number)} {rng.choice(FILLERS)}"
            if user.kind == "sms":
                message_id = await self.text(user.address, text)  # accepted by the gateway: acknowledged
                user.texts[message_id] = number
                user.acked.append(number)
                continue
            event = {"type": "message", "user": {"id": user.address}, "meeting": code, "text": text}
            if await self.post_webhook(event, f"msg_{user.owner}_{number}_{uuid.uuid4().hex[:8]}"):
                user.acked.append(number)

    async def run_poster(self, poster: Poster) -> None:
        rng = random.Random(f"{self.o.seed}/{poster.owner}")
        meeting = self.meetings[poster.meeting]
        for number, gap in enumerate(self._gaps(rng, poster.planned), start=1):
            await asyncio.sleep(gap)
            words = html.escape(rng.choice(FILLERS))
            body = {"from": poster.teams_id, "html": f"<p>{token(poster.owner, number)} {words}</p>"}
            await self.sandbox.control("POST", f"/meetings/{meeting.id}/messages", body)
            poster.posted.append(number)

    async def run_killer(self, started: float) -> None:
        assert self.bridge is not None
        rng = random.Random(f"{self.o.seed}/kills")
        # Through the traffic and a little past it, when the outbox is fullest.
        moments = sorted(rng.uniform(0.05, 1.1) * self.o.duration_s for _ in range(self.o.kills))
        for at in moments:
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            wall = time.time()
            left = self.bridge.kill()
            killed = time.monotonic()
            await asyncio.sleep(rng.uniform(0.0, 1.5))
            restart = await self.bridge.start()
            down = round(time.monotonic() - killed, 2)
            self.kills.append(Kill(round(killed - started, 2), down, round(restart, 2), left, wall))

    # the run ------------------------------------------------------------------------------------------------

    async def traffic(self) -> dict[str, int]:
        """Everyone talks while the killer works and the faults fire; returns the faults fired, by rule."""
        if self.o.faults:
            rules = [rule for _, rule in FAULTS]
            await self.sandbox.control("PUT", "/faults", {"seed": self.o.seed, "rules": rules})
        started = time.monotonic()
        actors = [self.run_external(u) for u in self.externals] + [self.run_poster(p) for p in self.posters]
        await asyncio.gather(*actors, self.run_killer(started))
        shown = await self.sandbox.control("GET", "/faults")
        await self.sandbox.control("DELETE", "/faults")
        return {label: rule["fired"] for (label, _), rule in zip(FAULTS, shown["rules"], strict=True)}

    async def raw_threads(self) -> dict[int, list[dict[str, Any]]]:
        """Each meeting's chat as Teams shows it, system messages (who joined and left the chat) included."""
        found = {}
        for m in self.meetings:
            body = await self.sandbox.control("GET", f"/meetings/{m.id}/messages")
            found[m.index] = list(body["value"])
        return found

    @staticmethod
    def contents(raw: list[dict[str, Any]]) -> list[str]:
        """The contents of a thread's text and HTML messages, oldest first."""
        return [str(x["content"].get("message", "")) for x in raw if x["type"] in ("text", "html")]

    async def threads(self) -> dict[int, list[str]]:
        return {index: self.contents(raw) for index, raw in (await self.raw_threads()).items()}

    def store_view(self) -> tuple[dict[str, set[tuple[str, int]]], dict[str, list[tuple[str, float]]]]:
        """From the bridge's store: the tokens of every outbound message it stored for each user (what the reader
        handed them), and each user's session states with their times."""
        assert self.bridge is not None
        handed: dict[str, set[tuple[str, int]]] = {}
        events: dict[str, list[tuple[str, float]]] = {}
        path = self.bridge.config.state_dir / "bridge.db"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            for user_id, body in db.execute("SELECT user_id, body FROM outbox WHERE direction='out'"):
                handed.setdefault(user_id, set()).update(tokens(str(json.loads(body).get("text", ""))))
            for user_id, state, at in db.execute(
                "SELECT s.user_id, e.state, e.at FROM session_events e JOIN sessions s ON s.id = e.session_id "
                "ORDER BY e.rowid"
            ):
                events.setdefault(user_id, []).append((state, epoch(at)))
        return handed, events

    def excuses(self, raw: dict[int, list[dict[str, Any]]], received: dict[str, list[str]]) -> dict[str, set[Any]]:
        """Per user, the tokens a re-join of call legs explains (bench/soak_gaps.py); none without the browser,
        whose legs a crash does not touch."""
        if self.o.connector != "browser":
            return {}
        handed, events = self.store_view()
        end, kills = time.time(), [k.wall for k in self.kills]
        found: dict[str, set[Any]] = {}
        for m in self.meetings:
            users = [u for u in self.externals if u.meeting == m.index]
            times = post_times(raw[m.index])
            away = {u.owner: away_spans(events.get(u.user_id, []), kills, end) for u in users}
            down = [span for spans in away.values() for span in spans]
            anyone = set().union(*(handed.get(u.user_id, set()) for u in users))
            for user in users:
                got = {t for text in received[user.owner] for t in tokens(text)}
                missing = [t for t in times if t not in got and t[0] != user.owner]
                mine = handed.get(user.user_id, set())
                found[user.owner] = excusable(missing, times, mine, anyone, away[user.owner], down)
        return found

    async def received(self, *, notices: bool = False) -> dict[str, list[str]]:
        """What each external user got from the meeting, in arrival order (webhook notices only when asked)."""
        got: dict[str, list[str]] = {}
        kinds = ("message", "notice") if notices else ("message",)
        for user in self.externals:
            if user.kind == "webhook":
                got[user.owner] = [p["text"] for p in self.sink.by_user.get(user.address, []) if p["type"] in kinds]
            else:
                inbox = await self.sandbox.control("GET", f"/phones/{quote(user.address, safe='')}/sms")
                number = self.sandbox.info["smsNumber"]
                got[user.owner] = [s["message"] for s in inbox["value"] if s["from"] == number]
        return got

    async def check(self, shed: Shed | None = None) -> dict[str, Tally]:
        """Count every sink; what the bridge refused by design under overload (`shed`) is not expected."""
        shed = shed or Shed()
        raw, received = await self.raw_threads(), await self.received()
        threads = {index: self.contents(messages) for index, messages in raw.items()}
        excuses = self.excuses(raw, received)
        inbound, teams, relayed = Tally(), Tally(), Tally()
        for m in self.meetings:
            users = [u for u in self.externals if u.meeting == m.index]
            acked = {u.owner: [n for n in u.acked if (u.owner, n) not in shed.inbound] for u in users}
            inbound.add(check_thread(f"meeting {m.index}", threads[m.index], acked))
            in_thread = list(dict.fromkeys(t for content in threads[m.index] for t in tokens(content)))
            for user in users:
                dropped = shed.outbound.get(user.user_id, set())
                mine = [t for t in in_thread if t[0] != user.owner and t not in dropped]
                where = f"{user.kind} user {user.owner}"
                excused = excuses.get(user.owner, set())
                teams.add(check_recipient(where, received[user.owner], mine, user.owner, "t", excused))
                relayed.add(check_recipient(where, received[user.owner], mine, user.owner, "u", excused))
        # Every Teams post must be in its thread for the check above to expect it.
        posted = sum(len(p.posted) for p in self.posters)
        teams_in_threads = sum(
            len({t for c in threads[m.index] for t in tokens(c) if t[0].startswith("t")}) for m in self.meetings
        )
        if teams_in_threads != posted:
            self.findings.append(f"{posted} Teams posts made, {teams_in_threads} found in the threads")
        return {"inbound": inbound, "teams": teams, "relayed": relayed}

    async def drain(self) -> float:
        """Wait until the outbox is empty, Event Grid has delivered everything and the sinks are complete."""
        started = time.monotonic()
        stable_since, last = time.monotonic(), None
        while True:
            status = await self.admin("/status")
            depth = sum(status["outbox"].values())
            subs = await self.sandbox.control("GET", "/event-subscriptions")
            pending = sum(s["stats"]["pending"] for s in subs["value"])
            tallies = await self.check()
            self.findings.clear()
            complete = all(t.lost == 0 for t in tallies.values())
            snapshot = (depth, pending, tuple(t.arrived for t in tallies.values()))
            if snapshot != last:
                stable_since, last = time.monotonic(), snapshot
            if depth == 0 and pending == 0 and (complete or time.monotonic() - stable_since > 30):
                return time.monotonic() - started
            if time.monotonic() - started > self.o.drain_timeout_s:
                self.findings.append(f"not drained after {self.o.drain_timeout_s:.0f} s: outbox {status['outbox']}")
                return time.monotonic() - started
            await asyncio.sleep(1.0)

    def shed(self) -> Shed:
        """What the stopped bridge refused by design under overload, each refusal told to its user: deliveries to
        a user whose backlog was full, and texts that found their meeting busy (their tokens, from the store)."""
        assert self.bridge is not None
        found = Shed()
        with sqlite3.connect(self.bridge.config.state_dir / "bridge.db") as db:
            for user_id, body in db.execute(
                "SELECT user_id, body FROM outbox WHERE state='failed' AND last_error=?", (BACKLOG_FULL,)
            ):
                found.outbound.setdefault(user_id, set()).update(tokens(str(json.loads(body).get("text", ""))))
            busy = {pid for pid, answer in db.execute("SELECT provider_id, answer FROM inbox") if "busy" in answer}
        for user in self.externals:
            found.inbound.update((user.owner, n) for pid, n in user.texts.items() if pid in busy)
        return found

    async def check_told(self, shed: Shed) -> None:
        """Whoever had messages shed must have been told so (the bridge's promise when a limit is reached)."""
        received = await self.received(notices=True)
        for user in self.externals:
            texts = "\n".join(received[user.owner])
            if user.user_id in shed.outbound and BACKLOG_TEXT not in texts:
                self.findings.append(f"{user.owner} had deliveries shed (backlog_full) but was not told")
            if any(t[0] == user.owner for t in shed.inbound) and BUSY_TEXT not in texts:
                self.findings.append(f"{user.owner} had texts refused as busy but was not told")

    def leftovers(self) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Outbox rows that did not end delivered, and delivered counts by direction, read from the stopped store."""
        assert self.bridge is not None
        with sqlite3.connect(self.bridge.config.state_dir / "bridge.db") as db:
            rows = db.execute(
                "SELECT direction, kind, state, COALESCE(last_error, ''), COUNT(*) FROM outbox "
                "WHERE state != 'delivered' GROUP BY 1, 2, 3, 4"
            ).fetchall()
            done = db.execute("SELECT direction, COUNT(*) FROM outbox WHERE state='delivered' GROUP BY 1").fetchall()
        left = [{"direction": d, "kind": k, "state": s, "reason": r, "count": n} for d, k, s, r, n in rows]
        return left, {d: n for d, n in done}

    def sink_faults(self) -> dict[str, int]:
        if not isinstance(self.sink, FlakySink):
            return {}
        return {"callback 503": self.sink.refused, "callback answer lost": self.sink.answers_lost}

    def bridge_errors(self) -> int:
        assert self.bridge is not None
        text = self.bridge.log_file.read_text(errors="replace") if self.bridge.log_file.exists() else ""
        # ERROR is what the bridge logs for what it did not expect (a task that died); a handled transient error is
        # a WARNING, even with its traceback.
        return sum(1 for line in text.splitlines() if " ERROR " in line or " CRITICAL " in line)

    async def run(self) -> dict[str, Any]:
        wall = time.monotonic()
        try:
            await self.setup()
            await self.join_everyone()
            traffic_started = time.monotonic()
            fired = await self.traffic()
            traffic_s = time.monotonic() - traffic_started
            if self.o.connector == "browser" and not await self.everyone_in_call(120.0):
                self.findings.append("not every session was back in the call 120 s after the traffic")
            drain_s = await self.drain()
            handed, _ = self.store_view()
            by_meeting = {
                m.index: set().union(*(handed.get(u.user_id, set()) for u in self.externals if u.meeting == m.index))
                for m in self.meetings
            }
            gaps = gap_report(await self.raw_threads(), time.time(), by_meeting)
            sessions = (await self.admin("/sessions"))["sessions"]
            for s in sessions:
                if s["state"] != "in_call":
                    self.findings.append(f"session {s['id']} of {s['userId']} ended {s['state']} ({s['reason']})")
            assert self.bridge is not None
            exit_code = await self.bridge.terminate()
            left, delivered = self.leftovers()
            shed = self.shed()
            tallies = await self.check(shed)
            await self.check_told(shed)
            subs = await self.sandbox.control("GET", "/event-subscriptions")
        finally:
            await self.close()
        unexpected = [x for x in left if not (x["state"] == "failed" and x["reason"].startswith(EXPECTED_FAILURES))]
        inbound_by_kind: Counter[str] = Counter()
        for u in self.externals:
            inbound_by_kind[u.kind] += len(u.acked)
        grids = {_kind(sub): sub["stats"] for sub in subs["value"]}
        ok = (
            all(t.clean for t in tallies.values())
            and not unexpected
            and not self.findings
            and not self.client.findings
            and exit_code == 0
        )
        return {
            "ok": ok,
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.o).items()},
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "stateDir": str(self.state_dir),
            "meetings": len(self.meetings),
            "users": {
                "webhook": sum(u.kind == "webhook" for u in self.externals),
                "sms": sum(u.kind == "sms" for u in self.externals),
                "teams": len(self.posters),
            },
            "messages": {
                "inboundWebhook": inbound_by_kind["webhook"],
                "inboundSms": inbound_by_kind["sms"],
                "teamsPosts": sum(len(p.posted) for p in self.posters),
                "deliveredInbound": delivered.get("in", 0),
                "deliveredOutbound": delivered.get("out", 0),
            },
            "kills": [asdict(k) for k in self.kills],
            "faults": fired | self.sink_faults(),
            "faultsByKind": by_kind(fired | self.sink_faults()),
            "callbackRepeats": self.sink.repeats,
            "eventGrid": {
                kind: {k: grid.get(k, 0) for k in ("delivered", "attempts", "failed", "dropped", "lost", "duplicated")}
                for kind, grid in grids.items()
            },
            "webhookClient": {
                "requests": self.client.requests,
                "retries": dict(self.client.retries),
                "findings": self.client.findings[:20],
            },
            "connector": self.o.connector,
            "legGaps": gaps.to_json() | {"legGraceS": self.o.leg_grace_s if self.o.connector == "browser" else None},
            "inbound": tallies["inbound"].to_json(),
            "outboundTeams": tallies["teams"].to_json(),
            "outboundRelayed": tallies["relayed"].to_json(),
            "shed": {
                "outboundBacklogFull": sum(len(t) for t in shed.outbound.values()),
                "inboundBusy": len(shed.inbound),
            },
            "leftovers": left,
            "unexpectedLeftovers": unexpected,
            "findings": self.findings,
            "bridgeExit": exit_code,
            "bridgeErrorsLogged": self.bridge_errors(),
            "seconds": {
                "traffic": round(traffic_s, 1),
                "drain": round(drain_s, 1),
                "wall": round(time.monotonic() - wall, 1),
            },
        }

    async def close(self) -> None:
        if self.bridge is not None and self.bridge.proc is not None and self.bridge.proc.poll() is None:
            await self.bridge.terminate()
        for closing in (self.sender, self._admin):
            if closing is not None:
                await closing.close()
        await self.sink.stop()
        await self.sandbox.stop()


def _kind(subscription: dict[str, Any]) -> str:
    """sms or chat: which of the bridge's event doors a subscription delivers to."""
    return "chat" if "/channels/acs/events" in subscription["endpoint"] else "sms"


async def run_soak(options: SoakOptions) -> dict[str, Any]:
    state_dir = options.state_dir or Path(tempfile.mkdtemp(prefix="soak-"))
    return await Soak(options, state_dir).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the full run: 10,000 messages, 20 kills")
    parser.add_argument("--messages", type=int, help="inbound messages (default 1000; full 10000)")
    parser.add_argument("--kills", type=int, help="SIGKILLs of the bridge (default 5; full 20)")
    parser.add_argument("--duration", type=float, help="seconds the senders spread their messages over")
    parser.add_argument("--meetings", type=int, help="meetings (default: from the messages and the duration)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-faults", action="store_true", help="kills only, no injected faults")
    parser.add_argument(
        "--chat-events",
        action="store_true",
        help="Event Grid chat events on (with faults: some lost, some delivered twice)",
    )
    parser.add_argument(
        "--connector",
        choices=["sandbox", "browser"],
        default="sandbox",
        help="who holds the call legs: the sandbox's call API, or the bridge's headless Chromium (killed with it)",
    )
    parser.add_argument(
        "--leg-grace",
        type=float,
        default=0.0,
        help="with the browser: seconds the sandbox keeps a vanished leg (default 0; real Teams about 60)",
    )
    parser.add_argument("--state-dir", type=Path, help="where the processes keep state (default: a temp folder)")
    parser.add_argument("--output", type=Path, default=Path("soak-results.json"))
    args = parser.parse_args(argv)
    options = SoakOptions.full() if args.full else SoakOptions()
    for name, value in (
        ("messages", args.messages),
        ("kills", args.kills),
        ("duration_s", args.duration),
        ("meetings", args.meetings),
        ("state_dir", args.state_dir),
    ):
        if value is not None:
            setattr(options, name, value)
    options.seed, options.faults, options.chat_events = args.seed, not args.no_faults, args.chat_events
    options.connector, options.leg_grace_s = args.connector, args.leg_grace
    result = asyncio.run(run_soak(options))
    result["command"] = "python -m bench.soak " + " ".join(sys.argv[1:] if argv is None else argv)
    print(table(result))
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {args.output}; state and logs: {result['stateDir']}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
