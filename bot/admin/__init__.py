"""Operators' doors into the bridge: the admin API under /api/v1 and the CLI commands that use it."""

from .api import add_admin_api

__all__ = ["add_admin_api"]
