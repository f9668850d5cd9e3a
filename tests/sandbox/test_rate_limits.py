"""ACS's rate limits in the sandbox: 429 with Retry-After, per thread and per user, and the switch that lifts them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from azure.core.exceptions import HttpResponseError

from bot.sandbox import SandboxInfo
from bot.sandbox.util import now
from tests.support.acs import CHAT_API, bearer, error_of, new_thread, new_user, request, retry_after, thread_client
from tests.support.sandbox import Control


class Room:
    """A regular thread created by Ann with Bob and Carol in it."""

    def __init__(self, thread_id: str, tokens: dict[str, str]) -> None:
        self.thread_id = thread_id
        self.tokens = tokens


@pytest.fixture
async def room(control: Control, info: SandboxInfo) -> Room:
    users = {name: await new_user(info) for name in ("ann", "bob", "carol")}
    members = [(users[name][0], name.capitalize()) for name in ("bob", "carol")]
    thread_id = await new_thread(info, users["ann"][1], "Limits", members)
    return Room(thread_id, {name: token for name, (_, token) in users.items()})


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The rate limiter's clock, frozen and moved by hand: windows pass without waiting, and never by accident."""
    current = [now()]
    monkeypatch.setattr("bot.sandbox.limits.now", lambda: current[0])
    yield current


async def _call(
    http: aiohttp.ClientSession,
    info: SandboxInfo,
    token: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    sep = "&" if "?" in path else "?"
    headers = bearer(token) | {"Content-Type": "application/json"}
    data = json.dumps(body).encode() if body is not None else b""
    return await request(http, info, method, f"{path}{sep}api-version={CHAT_API}", body=data, headers=headers)


async def _send(http: aiohttp.ClientSession, info: SandboxInfo, token: str, thread_id: str, text: str) -> int:
    status, _, _ = await _call(http, info, token, "POST", f"/chat/threads/{thread_id}/messages", {"content": text})
    return status


def _assert_429(status: int, body: Any, headers: dict[str, str], max_wait: int) -> None:
    assert status == 429, body
    assert error_of(body)[0] == "TooManyRequests"
    assert 1 <= int(headers["Retry-After"]) <= max_wait


async def test_eleventh_send_in_ten_seconds_is_429(http: aiohttp.ClientSession, info: SandboxInfo, room: Room) -> None:
    ann = room.tokens["ann"]
    async with thread_client(info, ann, room.thread_id, retry_total=0) as tc:
        for i in range(10):
            await tc.send_message(f"burst {i}")
        with pytest.raises(HttpResponseError) as exc:
            await tc.send_message("one too many")
        assert exc.value.status_code == 429
        assert 1 <= int(retry_after(exc.value)) <= 10
        assert exc.value.error is not None and exc.value.error.code == "TooManyRequests"
        # The limit is per thread, not per sender: Bob is throttled too.
        status, body, headers = await _call(
            http, info, room.tokens["bob"], "POST", f"/chat/threads/{room.thread_id}/messages", {"content": "me too"}
        )
        _assert_429(status, body, headers, 10)
        texts = [m.content.message async for m in tc.list_messages() if m.type == "text"]
    assert len(texts) == 10 and "one too many" not in texts  # a throttled send stores nothing


async def test_send_limit_is_per_thread(http: aiohttp.ClientSession, info: SandboxInfo, room: Room) -> None:
    ann = room.tokens["ann"]
    other = await new_thread(info, ann, "Another thread")
    for i in range(10):
        assert await _send(http, info, ann, room.thread_id, f"m{i}") == 201
    assert await _send(http, info, ann, room.thread_id, "throttled") == 429
    assert await _send(http, info, ann, other, "a fresh thread has its own budget") == 201


async def test_updates_and_deletes_share_the_send_budget(
    http: aiohttp.ClientSession, info: SandboxInfo, room: Room
) -> None:
    ann = room.tokens["ann"]
    async with thread_client(info, ann, room.thread_id, retry_total=0) as tc:
        ids = [(await tc.send_message(f"m{i}")).id for i in range(5)]
        for mid in ids[:4]:
            await tc.update_message(mid, "edited")
        await tc.delete_message(ids[4])
        for attempt in (tc.update_message(ids[0], "again"), tc.delete_message(ids[1]), tc.send_message("more")):
            with pytest.raises(HttpResponseError) as exc:
                await attempt
            assert exc.value.status_code == 429


async def test_send_windows_slide_ten_seconds_and_one_minute(
    http: aiohttp.ClientSession, info: SandboxInfo, room: Room, clock: list[float]
) -> None:
    ann = room.tokens["ann"]
    for burst in range(3):
        for i in range(10):
            assert await _send(http, info, ann, room.thread_id, f"burst {burst}/{i}") == 201
        assert await _send(http, info, ann, room.thread_id, "too soon") == 429
        clock[0] += 10.5  # the 10 s window has passed
    # 30 sends in the last ~31 s: the per-minute window is full although the 10 s one is empty.
    status, body, headers = await _call(
        http, info, ann, "POST", f"/chat/threads/{room.thread_id}/messages", {"content": "31st in a minute"}
    )
    _assert_429(status, body, headers, 60)
    assert int(headers["Retry-After"]) > 10
    clock[0] += float(headers["Retry-After"])
    assert await _send(http, info, ann, room.thread_id, "the minute has passed") == 201


async def test_list_messages_limit_is_per_user(http: aiohttp.ClientSession, info: SandboxInfo, room: Room) -> None:
    path = f"/chat/threads/{room.thread_id}/messages"
    for _ in range(50):
        status, _, _ = await _call(http, info, room.tokens["ann"], "GET", path)
        assert status == 200
    status, body, headers = await _call(http, info, room.tokens["ann"], "GET", path)
    _assert_429(status, body, headers, 10)
    status, _, _ = await _call(http, info, room.tokens["bob"], "GET", path)
    assert status == 200  # another user of the same thread is not affected
    async with thread_client(info, room.tokens["ann"], room.thread_id, retry_total=0) as tc:
        with pytest.raises(HttpResponseError) as exc:
            _ = [m async for m in tc.list_messages()]
    assert exc.value.status_code == 429


async def test_typing_limits_per_user_and_per_thread(
    http: aiohttp.ClientSession, info: SandboxInfo, room: Room
) -> None:
    path = f"/chat/threads/{room.thread_id}/typing"
    for name in ("ann", "bob"):
        for _ in range(5):
            status, _, _ = await _call(http, info, room.tokens[name], "POST", path, {})
            assert status == 200
        status, body, headers = await _call(http, info, room.tokens[name], "POST", path, {})
        _assert_429(status, body, headers, 10)  # 5 per user per 10 s
    # Carol has sent none, but the thread has had 10 in 10 s.
    status, body, headers = await _call(http, info, room.tokens["carol"], "POST", path, {})
    _assert_429(status, body, headers, 10)
    async with thread_client(info, room.tokens["carol"], room.thread_id, retry_total=0) as tc:
        with pytest.raises(HttpResponseError) as exc:
            await tc.send_typing_notification()
    assert exc.value.status_code == 429


async def test_list_participants_limit_is_per_user(http: aiohttp.ClientSession, info: SandboxInfo, room: Room) -> None:
    path = f"/chat/threads/{room.thread_id}/participants"
    for _ in range(10):
        assert (await _call(http, info, room.tokens["ann"], "GET", path))[0] == 200
    status, body, headers = await _call(http, info, room.tokens["ann"], "GET", path)
    _assert_429(status, body, headers, 10)
    assert (await _call(http, info, room.tokens["bob"], "GET", path))[0] == 200


async def test_get_message_limit_is_per_user(http: aiohttp.ClientSession, info: SandboxInfo, room: Room) -> None:
    async with thread_client(info, room.tokens["ann"], room.thread_id) as tc:
        mid = (await tc.send_message("read me often")).id
    path = f"/chat/threads/{room.thread_id}/messages/{mid}"
    for _ in range(50):
        assert (await _call(http, info, room.tokens["ann"], "GET", path))[0] == 200
    status, body, headers = await _call(http, info, room.tokens["ann"], "GET", path)
    _assert_429(status, body, headers, 10)
    assert (await _call(http, info, room.tokens["bob"], "GET", path))[0] == 200


async def test_limits_can_be_lifted_and_shown(
    http: aiohttp.ClientSession, info: SandboxInfo, control: Control, room: Room
) -> None:
    shown = await control.ok("GET", "/sandbox/v1/limits")
    assert shown["enabled"] is True
    assert shown["throttled"] == 0
    assert shown["rules"]["chat.send"] == ["10 per 10 s per thread", "30 per 60 s per thread"]
    assert "5 per 10 s per user per thread" in shown["rules"]["chat.typing"]

    for i in range(10):
        assert await _send(http, info, room.tokens["ann"], room.thread_id, f"m{i}") == 201
    assert await _send(http, info, room.tokens["ann"], room.thread_id, "throttled") == 429
    assert (await control.ok("GET", "/sandbox/v1/limits"))["throttled"] == 1

    lifted = await control.ok("PUT", "/sandbox/v1/limits", {"enabled": False})
    assert lifted["enabled"] is False
    assert (await control.ok("GET", "/sandbox/v1/limits"))["enabled"] is False
    async with thread_client(info, room.tokens["ann"], room.thread_id, retry_total=0) as tc:
        for i in range(15):
            await tc.send_message(f"unlimited {i}")
        for _ in range(8):
            await tc.send_typing_notification()

    assert (await control.ok("PUT", "/sandbox/v1/limits", {"enabled": True}))["enabled"] is True
    assert await _send(http, info, room.tokens["ann"], room.thread_id, "limited again") == 429


async def test_reset_turns_limits_back_on(control: Control) -> None:
    await control.ok("PUT", "/sandbox/v1/limits", {"enabled": False})
    await control.ok("POST", "/sandbox/v1/reset")
    shown = await control.ok("GET", "/sandbox/v1/limits")
    assert shown["enabled"] is True and shown["throttled"] == 0


@pytest.mark.parametrize("body", [{}, {"enabled": "no"}, {"enabled": 0}, [True]])
async def test_bad_limits_body_is_400(control: Control, body: Any) -> None:
    status, answer = await control.call("PUT", "/sandbox/v1/limits", body)
    assert status == 400
    assert error_of(answer)[0] == "BadRequest"
