"""Fault injection: rules that match method and path and answer an error, delay, or drop the connection."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import random
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler

from .errors import SandboxError, bad_request
from .keys import FAULTS
from .util import JsonDict

log = logging.getLogger(__name__)

Action = Literal["status", "delay", "drop_before", "drop_after"]
ACTIONS: tuple[Action, ...] = ("status", "delay", "drop_before", "drop_after")
_STATUS_CODES = {
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
# The control API (the test harness acting as Teams users, phones and operators) must stay reachable whatever the
# rules say; the call API under it stands in for the ACS Calling SDK, which the bridge uses, so faults reach it.
_CONTROL_PREFIX = "/sandbox/v1/"
_FAULTABLE_CONTROL_PREFIXES = ("/sandbox/v1/calls", "/sandbox/v1/call-events")


def is_exempt(path: str) -> bool:
    return path.startswith(_CONTROL_PREFIX) and not path.startswith(_FAULTABLE_CONTROL_PREFIXES)


def _is_int(value: object) -> bool:
    """JSON integers only: Python's bool is an int, but true is not a number of seconds."""
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class FaultRule:
    action: Action
    path: str
    method: str = "*"
    status: int = 503
    retry_after: int | None = None
    delay_ms: int = 0
    probability: float = 1.0
    count: int | None = None
    fired: int = 0

    @classmethod
    def parse(cls, item: object) -> FaultRule:
        if not isinstance(item, dict):
            raise bad_request("Each fault rule must be an object.")
        action = item.get("action")
        if action not in ACTIONS:
            raise bad_request(f"action must be one of {', '.join(ACTIONS)}.")
        path = item.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise bad_request("path must be a path pattern starting with / (glob: * matches any characters).")
        method = item.get("method", "*")
        if not isinstance(method, str) or not (method == "*" or method.isalpha()):
            raise bad_request("method must be an HTTP method such as POST, or * for any.")
        method = method.upper()
        status = item.get("status", 503)
        if not _is_int(status) or not 400 <= status <= 599:
            raise bad_request("status must be an HTTP error status (400-599).")
        retry_after = item.get("retryAfter")
        if retry_after is not None and (not _is_int(retry_after) or retry_after < 0):
            raise bad_request("retryAfter must be a whole number of seconds.")
        delay_ms = item.get("delayMs", 0)
        if not _is_int(delay_ms) or not 0 <= delay_ms <= 120_000:
            raise bad_request("delayMs must be between 0 and 120000.")
        if action == "delay" and delay_ms == 0:
            raise bad_request("a delay rule needs delayMs > 0.")
        probability = item.get("probability", 1.0)
        if isinstance(probability, bool) or not isinstance(probability, int | float) or not 0.0 <= probability <= 1.0:
            raise bad_request("probability must be between 0 and 1.")
        count = item.get("count")
        if count is not None and (not _is_int(count) or count < 1):
            raise bad_request("count must be a positive integer.")
        return cls(action, path, method, status, retry_after, delay_ms, float(probability), count)

    def matches(self, method: str, path: str) -> bool:
        if self.count is not None and self.fired >= self.count:
            return False
        return self.method in ("*", method) and fnmatch.fnmatchcase(path, self.path)

    def to_json(self) -> JsonDict:
        return {
            "action": self.action,
            "path": self.path,
            "method": self.method,
            "status": self.status,
            "retryAfter": self.retry_after,
            "delayMs": self.delay_ms,
            "probability": self.probability,
            "count": self.count,
            "fired": self.fired,
        }


class FaultInjector:
    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self._random = random.Random()
        self.injected: dict[str, int] = dict.fromkeys(ACTIONS, 0)

    def replace(self, rules: list[FaultRule], seed: int | None) -> None:
        self.rules = rules
        if seed is not None:
            self._random.seed(seed)

    def pick(self, method: str, path: str) -> FaultRule | None:
        if is_exempt(path):
            return None
        for rule in self.rules:
            if rule.matches(method, path) and self._random.random() < rule.probability:
                rule.fired += 1
                self.injected[rule.action] += 1
                return rule
        return None

    def reset(self) -> None:
        self.rules = []
        self.injected = dict.fromkeys(ACTIONS, 0)

    def to_json(self) -> JsonDict:
        return {"rules": [r.to_json() for r in self.rules], "injected": self.injected}


def _drop(request: web.Request) -> web.Response:
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=499)  # never reaches the client


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rule = request.app[FAULTS].pick(request.method, request.path)
    if rule is None:
        return await handler(request)
    log.debug("fault %s on %s %s", rule.action, request.method, request.path)
    if rule.action == "delay":
        await asyncio.sleep(rule.delay_ms / 1000)
        return await handler(request)
    if rule.action == "drop_before":
        return _drop(request)
    if rule.action == "status":
        code = _STATUS_CODES.get(rule.status, "InjectedFault")
        return SandboxError(rule.status, code, "Injected fault.", retry_after=rule.retry_after).response()
    # drop_after: the request is fully handled and stored, then the answer is lost.
    response = await handler(request)
    return _drop(request) if response.status < 500 else response
