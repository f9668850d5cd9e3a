"""Typed aiohttp application keys for the sandbox's shared objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from .faults import FaultInjector
    from .limits import RateLimiter
    from .stats import RequestStats
    from .world import World

WORLD: web.AppKey[World] = web.AppKey("world")
LIMITS: web.AppKey[RateLimiter] = web.AppKey("limits")
FAULTS: web.AppKey[FaultInjector] = web.AppKey("faults")
INFO: web.AppKey[dict[str, Any]] = web.AppKey("info")
STATS: web.AppKey[RequestStats] = web.AppKey("stats")
RESET_HOOKS: web.AppKey[list[Callable[[], None]]] = web.AppKey("reset_hooks")
