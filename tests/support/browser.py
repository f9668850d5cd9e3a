"""Real headless Chromium for page tests (Debian's chromium driven by Playwright; no browser download)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling out, which this closed network refuses.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def page() -> AsyncIterator[object]:
    """A fresh page in a fresh headless Chromium with its own profile; skipped only where no Chromium is installed
    (.ci/run installs Debian's package)."""
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                # The sandbox serves TLS from its own local CA, which this throwaway profile does not know.
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=FLAGS,
                ignore_https_errors=True,
                viewport={"width": 1280, "height": 800},
            )
            try:
                yield context.pages[0] if context.pages else await context.new_page()
            finally:
                await context.close()
