"""ACS's documented rate limits, enforced with sliding windows and answered with 429 and Retry-After."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from .errors import SandboxError
from .keys import LIMITS
from .util import JsonDict, now

Scope = Literal["thread", "user_thread", "resource", "sender"]


@dataclass(frozen=True)
class Rule:
    limit: int
    window_s: float
    scope: Scope

    def describe(self) -> str:
        per = {
            "thread": "per thread",
            "user_thread": "per user per thread",
            "resource": "per resource",
            "sender": "per sending number",
        }[self.scope]
        return f"{self.limit} per {self.window_s:g} s {per}"


# From the service limits table in the ACS documentation.
DEFAULT_RULES: dict[str, tuple[Rule, ...]] = {
    "chat.send": (Rule(10, 10, "thread"), Rule(30, 60, "thread")),
    "chat.list": (
        Rule(50, 10, "user_thread"),
        Rule(200, 60, "user_thread"),
        Rule(250, 10, "thread"),
        Rule(400, 60, "thread"),
    ),
    "chat.get": (Rule(50, 10, "user_thread"), Rule(250, 10, "thread")),
    "chat.typing": (
        Rule(5, 10, "user_thread"),
        Rule(15, 60, "user_thread"),
        Rule(10, 10, "thread"),
        Rule(30, 60, "thread"),
    ),
    "chat.participants": (Rule(10, 10, "user_thread"), Rule(250, 10, "thread")),
    "identity.create": (Rule(1000, 30, "resource"),),
    "identity.token": (Rule(1000, 30, "resource"),),
    "sms.send": (Rule(200, 60, "sender"),),
}


class RateLimiter:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.rules = dict(DEFAULT_RULES)
        self._hits: dict[tuple[str, int, str], deque[float]] = {}
        self.throttled = 0

    def check(self, op: str, thread: str | None, user: str | None) -> None:
        """Count one call of op, or raise 429 with the seconds until the fullest window has room."""
        if not self.enabled:
            return
        rules = self.rules.get(op, ())
        t = now()
        windows: list[deque[float]] = []
        wait = 0.0
        for index, rule in enumerate(rules):
            key = {"thread": f"{thread}", "user_thread": f"{user}|{thread}", "resource": "", "sender": f"{user}"}[
                rule.scope
            ]
            hits = self._hits.setdefault((op, index, key), deque())
            while hits and hits[0] <= t - rule.window_s:
                hits.popleft()
            if len(hits) >= rule.limit:
                wait = max(wait, hits[0] + rule.window_s - t)
            windows.append(hits)
        if wait > 0:
            self.throttled += 1
            raise SandboxError(
                429,
                "TooManyRequests",
                f"Rate limit exceeded for {op}. Retry after {math.ceil(wait)} seconds.",
                retry_after=max(1, math.ceil(wait)),
            )
        for hits in windows:
            hits.append(t)

    def reset(self) -> None:
        self._hits.clear()
        self.throttled = 0

    def to_json(self) -> JsonDict:
        return {
            "enabled": self.enabled,
            "throttled": self.throttled,
            "rules": {op: [r.describe() for r in rules] for op, rules in self.rules.items()},
        }


def check_limit(request: web.Request, op: str, thread: str | None, user: str | None) -> None:
    request.app[LIMITS].check(op, thread, user)
