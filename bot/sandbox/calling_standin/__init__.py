"""The stand-in Calling SDK: a JavaScript module with the surface of @azure/communication-calling that the
browser connector's joiner page uses, served by the sandbox and backed by its call legs (README.md here)."""

from __future__ import annotations

from aiohttp import web

from ..keys import RESET_HOOKS, WORLD
from .agents import AgentRegistry
from .web import AGENTS, PREFIX, localhost_origin, routes

__all__ = ["AGENTS", "PREFIX", "localhost_origin", "routes", "setup"]


def setup(app: web.Application) -> None:
    registry = AgentRegistry(app[WORLD])
    app[AGENTS] = registry
    app[RESET_HOOKS].append(registry.forget)
    app.on_shutdown.append(registry.shutdown)
