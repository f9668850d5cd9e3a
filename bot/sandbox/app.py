"""Wires the sandbox's aiohttp application: the model, the ACS, Graph and control APIs, its pages, limits, faults."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import (
    call_control,
    calling_standin,
    calls_api,
    chat_api,
    control_api,
    eventgrid,
    graph_api,
    identity_api,
    managed_identity,
    pages,
    sms_api,
    stats,
    teams_user_api,
    twilio_api,
)
from .errors import error_middleware
from .faults import FaultInjector, fault_middleware
from .keys import FAULTS, INFO, LIMITS, RESET_HOOKS, STATS, WORLD
from .limits import RateLimiter
from .world import World

MAX_BODY_BYTES = 1024 * 1024


def create_sandbox_app(world: World, info: dict[str, Any], *, limits_enabled: bool = True) -> web.Application:
    """The sandbox as one aiohttp app. `info` is filled with the endpoint once the server listens."""
    app = web.Application(
        middlewares=[stats.stats_middleware, fault_middleware, error_middleware], client_max_size=MAX_BODY_BYTES
    )
    app[WORLD] = world
    app[INFO] = info
    app[LIMITS] = RateLimiter(enabled=limits_enabled)
    app[FAULTS] = FaultInjector()
    app[RESET_HOOKS] = []
    app[STATS] = stats.RequestStats()
    modules = (
        identity_api,
        chat_api,
        calls_api,
        control_api,
        call_control,
        calling_standin,
        graph_api,
        managed_identity,
        sms_api,
        teams_user_api,
        twilio_api,
        eventgrid,
        pages,
        stats,
    )
    for module in modules:
        app.router.add_routes(module.routes)
    graph_api.setup(app)
    sms_api.setup(app)
    twilio_api.setup(app)  # after sms_api: it claims its number on the same phones
    eventgrid.setup(app)
    calling_standin.setup(app)
    return app
