"""How the Twilio stand-in calls back: signed form posts, retried, on tasks tracked and cancelled on shutdown."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import ssl
from collections.abc import AsyncIterator, Coroutine, Iterable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from .util import JsonDict

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
# Twilio itself retries webhooks only when the URL asks it to; the sandbox retries a few times so the bridge's
# at-least-once handling (the same MessageSid again) is exercised.
MAX_ATTEMPTS = 5
BACKOFF_START_S = 0.2
ATTEMPT_TIMEOUT_S = 10.0
RETRY_STATUSES = frozenset({408, 429})


def signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """X-Twilio-Signature: base64 HMAC-SHA1 of the URL followed by each parameter's name and value, sorted."""
    data = url + "".join(name + value for name, value in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


@dataclass
class Stats:
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None

    def to_json(self) -> JsonDict:
        body = asdict(self)
        return body | {"lastStatus": body.pop("last_status"), "lastError": body.pop("last_error")}


class WebhookSender:
    """Posts signed webhooks in the background; a 2xx delivers, 408/429/5xx and lost connections are retried."""

    def __init__(self, info: dict[str, Any]) -> None:
        self._info = info
        self._ssl: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Twilio webhook task %s died", task.get_name(), exc_info=task.exception())

    def _ssl_context(self) -> ssl.SSLContext:
        # System roots plus the sandbox's CA (known once the server listens), so sandbox-certified receivers work.
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
            if ca_file := self._info.get("caFile"):
                self._ssl.load_verify_locations(cafile=ca_file)
        return self._ssl

    async def post(self, url: str, params: dict[str, str], auth_token: str, stats: Stats, token: str) -> None:
        """Deliver one webhook, signed over url and params; token is its I-Twilio-Idempotency-Token on every try."""
        if self._session is None:
            raise RuntimeError("the Twilio stand-in has not been started")
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature(auth_token, url, params.items()),
            IDEMPOTENCY_HEADER: token,
            "User-Agent": "TwilioProxy/1.1",
        }
        body = urlencode(params).encode()
        timeout = aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT_S)
        delay = BACKOFF_START_S
        for attempt in range(MAX_ATTEMPTS):
            stats.attempts += 1
            try:
                async with self._session.post(
                    url, data=body, headers=headers, ssl=self._ssl_context(), allow_redirects=False, timeout=timeout
                ) as resp:
                    await resp.read()
                    stats.last_status = resp.status
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                stats.last_status, stats.last_error = None, f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= resp.status < 300:
                    stats.delivered, stats.last_error = stats.delivered + 1, None
                    return
                stats.last_error = f"HTTP {resp.status}"
                if resp.status < 500 and resp.status not in RETRY_STATUSES:
                    stats.dropped += 1
                    log.info("twilio webhook refused with HTTP %d: dropped", resp.status)
                    return
            if attempt + 1 < MAX_ATTEMPTS:
                await asyncio.sleep(delay)
                delay *= 2
        stats.failed += 1
        log.warning("twilio webhook: gave up after %d attempts (%s)", MAX_ATTEMPTS, stats.last_error)

    async def lifetime(self, _: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: the session webhooks go out on; pending deliveries are cancelled and awaited on shutdown."""
        async with aiohttp.ClientSession() as session:
            self._session = session
            try:
                yield
            finally:
                tasks = list(self._tasks)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                self._session = None
