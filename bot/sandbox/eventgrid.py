"""Placeholder: filled in by its own change."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()


def setup(app: web.Application) -> None:
    """Attach this module's state and background tasks to the sandbox app."""
