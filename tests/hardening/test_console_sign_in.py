"""The console's sign-in over the wire: the cookie's Secure flag and the redirect after signing in."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.sandbox import SandboxInfo
from tests.hardening.operator_bridge import TOKEN, Probe, operator_bridge, with_bridge
from tests.support.sandbox import Control


async def sign_in(probe: Probe, headers: dict[str, str] | None = None, next_path: str | None = None) -> tuple[int, str]:
    """Signs in with the operator token; the status and the Location the answer sends the browser to."""
    form = {"token": TOKEN} | ({"next": next_path} if next_path is not None else {})
    async with probe.http.post(
        probe.base + "/console/login", data=form, headers=headers or {}, allow_redirects=False
    ) as resp:
        return resp.status, resp.headers.get("Location", "")


async def cookie_flags(probe: Probe, headers: dict[str, str]) -> list[set[str]]:
    """The flags of each Set-Cookie of a sign-in sent with these headers."""
    async with probe.http.post(
        probe.base + "/console/login", data={"token": TOKEN}, headers=headers, allow_redirects=False
    ) as resp:
        assert resp.status == 303, await resp.text()
        cookies = resp.headers.getall("Set-Cookie")
    assert len(cookies) == 2
    return [{part.strip().lower().partition("=")[0] for part in cookie.split(";")[1:]} for cookie in cookies]


# Finding 4: behind a TLS proxy the browser speaks https, whatever Host the proxy passes on.
PROXIED_HOSTS = [
    pytest.param({}, id="the-listening-address"),
    pytest.param({"Host": "127.0.0.1:8080"}, id="proxy-default-host"),
    pytest.param({"Host": "bridge.example.org:443"}, id="explicit-port"),
    pytest.param({"Host": "Bridge.Example.ORG"}, id="other-case"),
    pytest.param({"Host": "bridge.example.org"}, id="the-public-host"),
]


@pytest.mark.parametrize("headers", PROXIED_HOSTS)
async def test_the_cookie_is_secure_whenever_the_public_url_is_https(
    control: Control, info: SandboxInfo, tmp_path: Path, headers: dict[str, str]
) -> None:
    adjust = with_bridge(public_url="https://bridge.example.org")
    async with operator_bridge(control, info, tmp_path, adjust=adjust) as probe:
        for flags in await cookie_flags(probe, headers):
            assert "secure" in flags and "httponly" in flags, (headers, flags)


@pytest.mark.parametrize("public_url", [None, "http://bridge.example.org"])
async def test_the_cookie_is_not_secure_when_the_bridge_is_reached_over_http(
    control: Control, info: SandboxInfo, tmp_path: Path, public_url: str | None
) -> None:
    # A Secure cookie over plain http would never come back: the operator could not stay signed in.
    async with operator_bridge(control, info, tmp_path, adjust=with_bridge(public_url=public_url)) as probe:
        for flags in await cookie_flags(probe, {}):
            assert "secure" not in flags and "httponly" in flags


# Finding 5: the redirect target after signing in is one of the console's own pages, the whole string.
NEXT_PATHS = [
    pytest.param("/console/meetings/x\n", "/console", id="trailing-newline"),
    pytest.param("/console\n", "/console", id="console-newline"),
    pytest.param("/console/meetings/x\r\nSet-Cookie: a=b", "/console", id="header-injection"),
    pytest.param("/console/meetings/x\x00", "/console", id="nul"),
    pytest.param("//evil.example/console", "/console", id="other-host"),
    pytest.param("/console/meetings/m-1a2b", "/console/meetings/m-1a2b", id="a-meeting-page"),
    pytest.param("/console", "/console", id="the-dashboard"),
]


@pytest.mark.parametrize(("next_path", "location"), NEXT_PATHS)
async def test_sign_in_redirects_only_to_a_whole_console_path(
    control: Control, info: SandboxInfo, tmp_path: Path, next_path: str, location: str
) -> None:
    async with operator_bridge(control, info, tmp_path) as probe:
        assert await sign_in(probe, next_path=next_path) == (303, location)


async def test_the_sign_in_page_of_a_meeting_names_only_a_whole_console_path(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with operator_bridge(control, info, tmp_path) as probe:
        async with probe.http.get(probe.base + "/console/meetings/x%0A") as resp:
            page = await resp.text()
        assert resp.status == 200 and 'name="token"' in page
        assert 'value="/console"' in page and "/console/meetings/x" not in page
