"""The browser connector: ACS identities in Teams meeting calls through Microsoft's Calling SDK in headless Chromium."""

from __future__ import annotations

from ...config import Settings
from ..choice import STANDIN_PATH, sandbox_of, sdk_url
from .connector import BrowserConnector


def browser_connector(settings: Settings, endpoint: str) -> BrowserConnector:
    """The connector as configured: on the sandbox, its stand-in SDK and its CA (pinned, see trust.py)."""
    sandbox = sandbox_of(settings, endpoint)
    url = sdk_url(settings.calls.browser, sandbox)
    on_sandbox = sandbox is not None and url is not None and url.startswith(sandbox.rstrip("/"))
    return BrowserConnector(
        settings.calls.browser,
        sdk_url=url,
        # The local CA is trusted for the sandbox's own servers only, and only while the pages load its stand-in.
        ca_file=settings.acs.ca_file if on_sandbox else None,
        trusted=(sandbox,) if on_sandbox and sandbox else (),
    )


__all__ = ["STANDIN_PATH", "BrowserConnector", "browser_connector", "sdk_url"]
