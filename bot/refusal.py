"""The refusal every door, the drain and the admin API answer with: JSON {"error", "reason"} and its status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web


def refuse(
    status: int,
    error: str,
    reason: str,
    *,
    retry_after: int | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> web.Response:
    """`error`: a short code a program can act on (bad_request, too_large...); `reason`: a sentence for a person,
    never with a secret or a phone number in it. `retry_after`: whole seconds, sent as Retry-After. `extra`: more
    fields after the two (the admin API names the offending field)."""
    body: dict[str, Any] = {"error": error, "reason": reason, **(extra or {})}
    if retry_after is not None:
        headers = {**(headers or {}), "Retry-After": str(retry_after)}
    return web.json_response(body, status=status, headers=headers)
