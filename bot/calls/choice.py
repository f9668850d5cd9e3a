"""Which call connector the settings pick, and the run banner's line saying so (pure)."""

from __future__ import annotations

from ..config import BrowserSection, Settings

STANDIN_PATH = "/sandbox/calling-sdk/standin.js"
"""Where the sandbox serves its stand-in of the Calling SDK (bot/sandbox/calling_standin)."""


def connector_kind(settings: Settings) -> str:
    """auto: the sandbox's call API on the sandbox, else client-reported; any other value is taken as it is."""
    kind = settings.calls.connector
    if kind == "auto":
        return "sandbox" if settings.use_sandbox or settings.calls.sandbox_endpoint else "client_reported"
    return kind


def sdk_url(browser: BrowserSection, sandbox_endpoint: str | None) -> str | None:
    """The SDK module the browser connector's pages load; None for the real bundle the connector serves itself."""
    if browser.sdk == "real":
        return None
    if browser.sdk == "auto":
        return sandbox_endpoint.rstrip("/") + STANDIN_PATH if sandbox_endpoint else None
    return browser.sdk


def sandbox_of(settings: Settings, endpoint: str | None = None) -> str | None:
    """The sandbox the bridge runs on, if it does: the stand-in SDK and the local CA belong to it."""
    return settings.calls.sandbox_endpoint or (endpoint if settings.use_sandbox else None)


def describe_connector(settings: Settings, endpoint: str | None = None) -> str:
    """For the run banner: the connector, and for the browser connector the Calling SDK its pages load."""
    kind = connector_kind(settings)
    if kind != "browser":
        return {"sandbox": "the sandbox's call API", "client_reported": "client-reported (apps hold the call)"}.get(
            kind, kind
        )
    url = sdk_url(settings.calls.browser, sandbox_of(settings, endpoint))
    sdk = f"stand-in SDK at {url}" if url else "@azure/communication-calling (bundled by make joiner)"
    return f"browser (headless {settings.calls.browser.chromium}, {sdk})"
