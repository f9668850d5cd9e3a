"""The browser connector: ACS identities in Teams meeting calls through Microsoft's Calling SDK in headless Chromium."""

from __future__ import annotations

from ...config import BrowserSection, Settings
from .connector import BrowserConnector

STANDIN_PATH = "/sandbox/calling-sdk/standin.js"
"""Where the sandbox serves its stand-in of the Calling SDK (bot/sandbox/calling_standin)."""


def sdk_url(browser: BrowserSection, sandbox_endpoint: str | None) -> str | None:
    """The SDK module the pages load; None for the real bundle the connector serves itself."""
    if browser.sdk == "real":
        return None
    if browser.sdk == "auto":
        return sandbox_endpoint.rstrip("/") + STANDIN_PATH if sandbox_endpoint else None
    return browser.sdk


def browser_connector(settings: Settings, endpoint: str) -> BrowserConnector:
    """The connector as configured: on the sandbox, its stand-in SDK and its CA (pinned, see trust.py)."""
    sandbox = settings.calls.sandbox_endpoint or (endpoint if settings.use_sandbox else None)
    url = sdk_url(settings.calls.browser, sandbox)
    on_sandbox = sandbox is not None and url is not None and url.startswith(sandbox.rstrip("/"))
    return BrowserConnector(
        settings.calls.browser,
        sdk_url=url,
        # The local CA is trusted for the sandbox's own servers only, and only while the pages load its stand-in.
        ca_file=settings.acs.ca_file if on_sandbox else None,
        trusted=(sandbox,) if on_sandbox and sandbox else (),
    )


__all__ = ["BrowserConnector", "browser_connector", "sdk_url"]
