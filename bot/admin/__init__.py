"""Operators' doors into the bridge: the admin API under /api/v1, the console at /console, and the CLI."""

from .api import add_admin_api
from .console import add_console

__all__ = ["add_admin_api", "add_console"]
