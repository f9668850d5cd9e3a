"""Fault injection: injected errors with Retry-After, delays, connections dropped before or after the work is done."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest
from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError, ServiceResponseError

from bot.sandbox import SandboxInfo
from tests.support.acs import (
    CHAT_API,
    bearer,
    error_of,
    identity_client,
    join_call,
    new_thread,
    new_user,
    request,
    retry_after,
    thread_client,
)
from tests.support.sandbox import Control

SEND = "/chat/threads/*/messages"
CONNECTION_ERRORS = (ServiceRequestError, ServiceResponseError)


class Room:
    def __init__(self, thread_id: str, user: str, token: str) -> None:
        self.thread_id = thread_id
        self.user = user
        self.token = token


@pytest.fixture
async def room(control: Control, info: SandboxInfo) -> Room:
    user, token = await new_user(info)
    return Room(await new_thread(info, token, "Faults"), user, token)


async def _faults(control: Control, *rules: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"rules": list(rules)}
    if seed is not None:
        body["seed"] = seed
    result: dict[str, Any] = await control.ok("PUT", "/sandbox/v1/faults", body)
    return result


async def _texts(info: SandboxInfo, room: Room) -> list[tuple[str, dict[str, str]]]:
    """(content, metadata) of the thread's text messages, newest first, read with faults cleared."""
    async with thread_client(info, room.token, room.thread_id) as tc:
        return [(m.content.message, m.metadata or {}) async for m in tc.list_messages() if m.type == "text"]


async def _list_status(http: aiohttp.ClientSession, info: SandboxInfo, room: Room) -> int:
    path = f"/chat/threads/{room.thread_id}/messages?api-version={CHAT_API}"
    status, _, _ = await request(http, info, "GET", path, headers=bearer(room.token))
    return status


async def test_status_fault_with_retry_after(info: SandboxInfo, control: Control, room: Room) -> None:
    await _faults(
        control, {"action": "status", "path": SEND, "method": "POST", "status": 503, "retryAfter": 1, "count": 1}
    )
    async with thread_client(info, room.token, room.thread_id, retry_total=0) as tc:
        with pytest.raises(HttpResponseError) as exc:
            await tc.send_message("first try", metadata={"bridgeId": "b-1"})
        assert exc.value.status_code == 503
        assert retry_after(exc.value) == "1"
        assert exc.value.error is not None and exc.value.error.code == "ServiceUnavailable"
        assert await _texts(info, room) == []  # the fault answered before the handler: nothing stored
        await tc.send_message("second try", metadata={"bridgeId": "b-1"})  # count 1: spent
    assert await _texts(info, room) == [("second try", {"bridgeId": "b-1"})]
    shown = await control.ok("GET", "/sandbox/v1/faults")
    assert shown["rules"][0]["fired"] == 1
    assert shown["injected"]["status"] == 1


async def test_status_fault_429_in_spec_shape(
    http: aiohttp.ClientSession, info: SandboxInfo, control: Control, room: Room
) -> None:
    await _faults(control, {"action": "status", "path": "/chat/threads/*", "status": 429, "retryAfter": 7})
    path = f"/chat/threads/{room.thread_id}/messages?api-version={CHAT_API}"
    status, body, headers = await request(http, info, "GET", path, headers=bearer(room.token))
    assert status == 429
    assert headers["Retry-After"] == "7"
    assert error_of(body) == ("TooManyRequests", "Injected fault.")
    # The glob's * spans slashes: /chat/threads/* covers everything under a thread.
    assert (await control.ok("GET", "/sandbox/v1/faults"))["rules"][0]["fired"] == 1


async def test_sdk_retries_through_transient_503s(info: SandboxInfo, control: Control, room: Room) -> None:
    """azure-core retries a POST answered 503: with faults that spend themselves, the send succeeds once."""
    await _faults(control, {"action": "status", "path": SEND, "method": "POST", "status": 503, "count": 2})
    async with thread_client(info, room.token, room.thread_id, retry_backoff_factor=0.01) as tc:
        await tc.send_message("eventually")
    assert await _texts(info, room) == [("eventually", {})]
    assert (await control.ok("GET", "/sandbox/v1/faults"))["rules"][0]["fired"] == 2


async def test_delay(info: SandboxInfo, control: Control, room: Room) -> None:
    await _faults(control, {"action": "delay", "path": SEND, "method": "GET", "delayMs": 300})
    async with thread_client(info, room.token, room.thread_id) as tc:
        await tc.send_message("not delayed")  # POST does not match the GET rule
        started = time.monotonic()
        listed = [m async for m in tc.list_messages()]
        elapsed = time.monotonic() - started
    assert elapsed >= 0.3
    assert [m.content.message for m in listed if m.type == "text"] == ["not delayed"]
    shown = await control.ok("GET", "/sandbox/v1/faults")
    assert shown["rules"][0]["fired"] == 1 and shown["injected"]["delay"] == 1


async def test_drop_before_stores_nothing(info: SandboxInfo, control: Control, room: Room) -> None:
    await _faults(control, {"action": "drop_before", "path": SEND, "method": "POST", "count": 1})
    async with thread_client(info, room.token, room.thread_id, retry_total=0) as tc:
        with pytest.raises(CONNECTION_ERRORS):
            await tc.send_message("lost on the way", metadata={"bridgeId": "b-2"})
    assert await _texts(info, room) == []
    assert (await control.ok("GET", "/sandbox/v1/faults"))["injected"]["drop_before"] == 1


async def test_drop_after_stores_the_message(info: SandboxInfo, control: Control, room: Room) -> None:
    """The duplicate-creating case: the client sees a connection error, yet the message is in the thread."""
    await _faults(control, {"action": "drop_after", "path": SEND, "method": "POST", "count": 1})
    async with thread_client(info, room.token, room.thread_id, retry_total=0) as tc:
        with pytest.raises(CONNECTION_ERRORS):
            await tc.send_message("answer lost", metadata={"bridgeId": "b-3"})
    # A sender that must not duplicate looks for its own id before resending, and finds it.
    assert await _texts(info, room) == [("answer lost", {"bridgeId": "b-3"})]
    assert (await control.ok("GET", "/sandbox/v1/faults"))["injected"]["drop_after"] == 1


async def test_drop_after_then_blind_resend_duplicates(info: SandboxInfo, control: Control, room: Room) -> None:
    await _faults(control, {"action": "drop_after", "path": SEND, "method": "POST", "count": 1})
    async with thread_client(info, room.token, room.thread_id, retry_total=0) as tc:
        for _ in range(2):
            try:
                await tc.send_message("said twice", metadata={"bridgeId": "b-4"})
            except AzureError:
                continue
            break
    assert await _texts(info, room) == [("said twice", {"bridgeId": "b-4"})] * 2


async def test_drop_before_and_after_look_the_same_to_the_client(
    info: SandboxInfo, control: Control, room: Room
) -> None:
    """The client cannot tell a lost request from a lost answer: only the thread can, so look before resending."""
    errors: list[type[BaseException]] = []
    for action in ("drop_before", "drop_after"):
        await _faults(control, {"action": action, "path": SEND, "method": "POST", "count": 1})
        # Default SDK retries: azure-core does not retry a POST whose connection broke.
        async with thread_client(info, room.token, room.thread_id) as tc:
            with pytest.raises(CONNECTION_ERRORS) as exc:
                await tc.send_message(action)
        errors.append(type(exc.value))
    assert errors[0] is errors[1]
    assert await _texts(info, room) == [("drop_after", {})]


async def test_drop_after_also_loses_refusals(
    http: aiohttp.ClientSession, info: SandboxInfo, control: Control, room: Room
) -> None:
    """A refused request's answer is lost too (nothing was stored); only 5xx answers get through."""
    await _faults(control, {"action": "drop_after", "path": SEND, "method": "POST"})
    headers = bearer(room.token) | {"Content-Type": "application/json"}
    path = f"/chat/threads/{room.thread_id}/messages?api-version={CHAT_API}"
    with pytest.raises(aiohttp.ClientError):
        await request(http, info, "POST", path, body=json.dumps({"content": "x" * 30_000}).encode(), headers=headers)
    await control.ok("DELETE", "/sandbox/v1/faults")
    assert await _texts(info, room) == []


async def test_count_exhausts(http: aiohttp.ClientSession, info: SandboxInfo, control: Control, room: Room) -> None:
    await _faults(control, {"action": "status", "path": SEND, "method": "GET", "status": 500, "count": 3})
    statuses = [await _list_status(http, info, room) for _ in range(5)]
    assert statuses == [500, 500, 500, 200, 200]
    shown = await control.ok("GET", "/sandbox/v1/faults")
    assert shown["rules"][0]["fired"] == 3 and shown["rules"][0]["count"] == 3


async def test_probability_zero_never_fires(
    http: aiohttp.ClientSession, info: SandboxInfo, control: Control, room: Room
) -> None:
    await _faults(control, {"action": "status", "path": SEND, "probability": 0})
    assert {await _list_status(http, info, room) for _ in range(30)} == {200}
    assert (await control.ok("GET", "/sandbox/v1/faults"))["rules"][0]["fired"] == 0


async def test_seeded_probability_is_reproducible(
    http: aiohttp.ClientSession, info: SandboxInfo, control: Control, room: Room
) -> None:
    rule = {"action": "status", "path": SEND, "method": "GET", "status": 503, "probability": 0.5}
    runs = []
    for _ in range(2):
        await _faults(control, rule, seed=1234)
        runs.append([await _list_status(http, info, room) for _ in range(20)])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 503}
    shown = await control.ok("GET", "/sandbox/v1/faults")
    assert shown["rules"][0]["fired"] == runs[1].count(503)


async def test_first_matching_rule_wins_and_method_filters(
    http: aiohttp.ClientSession, info: SandboxInfo, control: Control, room: Room
) -> None:
    await _faults(
        control,
        {"action": "status", "path": SEND, "method": "post", "status": 502},
        {"action": "status", "path": "/chat/*", "status": 504},
        {"action": "status", "path": SEND, "status": 500},
    )
    assert await _list_status(http, info, room) == 504  # GET skips the POST-only rule
    async with thread_client(info, room.token, room.thread_id, retry_total=0) as tc:
        with pytest.raises(HttpResponseError) as exc:
            await tc.send_message("hi")
    assert exc.value.status_code == 502
    shown = await control.ok("GET", "/sandbox/v1/faults")
    assert [r["fired"] for r in shown["rules"]] == [1, 1, 0]
    assert shown["rules"][0]["method"] == "POST"


async def test_identity_api_faults(info: SandboxInfo, control: Control) -> None:
    await _faults(control, {"action": "status", "path": "/identities", "method": "POST", "status": 500, "count": 1})
    async with identity_client(info, retry_total=0) as client:
        with pytest.raises(HttpResponseError) as exc:
            await client.create_user()
        assert exc.value.status_code == 500
        await client.create_user()


async def test_control_paths_are_exempt(http: aiohttp.ClientSession, info: SandboxInfo, control: Control) -> None:
    user, token = await new_user(info)
    await _faults(control, {"action": "status", "path": "/*", "status": 503})
    # The ACS surfaces fail ...
    status, _, _ = await request(http, info, "GET", f"/chat/threads?api-version={CHAT_API}", headers=bearer(token))
    assert status == 503
    # ... the control API keeps working, Teams-side actions included ...
    meeting = await control.meeting()
    await control.ok(
        "POST", f"/sandbox/v1/meetings/{meeting['id']}/messages", {"from": meeting["organizerId"], "html": "<p>hi</p>"}
    )
    assert (await control.ok("GET", "/sandbox/v1/limits"))["enabled"] is True
    shown = await control.ok("GET", "/sandbox/v1/faults")
    assert shown["rules"][0]["fired"] == 1
    # ... but joining a call is the Calling SDK's job, which faults do reach.
    status, _, _ = await request(
        http,
        info,
        "POST",
        "/sandbox/v1/calls",
        body=json.dumps({"meetingLink": meeting["joinWebUrl"], "displayName": "Ann"}).encode(),
        headers=bearer(token) | {"Content-Type": "application/json"},
    )
    assert status == 503
    await control.ok("DELETE", "/sandbox/v1/faults")
    await join_call(http, info, token, meeting)
    assert (await control.ok("GET", "/sandbox/v1/faults"))["rules"] == []
    assert user


async def test_reset_clears_faults(control: Control) -> None:
    await _faults(control, {"action": "status", "path": "/*"})
    await control.ok("POST", "/sandbox/v1/reset")
    shown = await control.ok("GET", "/sandbox/v1/faults")
    assert shown["rules"] == []
    assert set(shown["injected"].values()) == {0}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"rules": {"action": "status"}}, "rules must be a list"),
        ({"rules": ["status"]}, "Each fault rule must be an object."),
        (
            {"rules": [{"action": "explode", "path": "/x"}]},
            "action must be one of status, delay, drop_before, drop_after.",
        ),
        ({"rules": [{"action": "status"}]}, "path must be a path pattern starting with /"),
        ({"rules": [{"action": "status", "path": "chat/*"}]}, "path must be a path pattern starting with /"),
        ({"rules": [{"action": "status", "path": "/x", "status": 200}]}, "status must be an HTTP error status"),
        ({"rules": [{"action": "status", "path": "/x", "retryAfter": -1}]}, "retryAfter must be a whole number"),
        ({"rules": [{"action": "status", "path": "/x", "retryAfter": 1.5}]}, "retryAfter must be a whole number"),
        ({"rules": [{"action": "delay", "path": "/x"}]}, "a delay rule needs delayMs > 0."),
        ({"rules": [{"action": "delay", "path": "/x", "delayMs": 200_000}]}, "delayMs must be between 0 and 120000."),
        ({"rules": [{"action": "status", "path": "/x", "probability": 1.5}]}, "probability must be between 0 and 1."),
        (
            {"rules": [{"action": "status", "path": "/x", "probability": "half"}]},
            "probability must be between 0 and 1.",
        ),
        ({"rules": [{"action": "status", "path": "/x", "count": 0}]}, "count must be a positive integer."),
        ({"rules": [{"action": "status", "path": "/x", "retryAfter": True}]}, "retryAfter must be a whole number"),
        ({"rules": [{"action": "status", "path": "/x", "count": True}]}, "count must be a positive integer."),
        ({"rules": [{"action": "status", "path": "/x", "method": None}]}, "method must be an HTTP method"),
        ({"rules": [{"action": "status", "path": "/x", "method": "GET /x"}]}, "method must be an HTTP method"),
        ({"rules": [], "seed": "abc"}, "seed must be an integer."),
    ],
)
async def test_bad_rules_are_400(control: Control, body: dict[str, Any], reason: str) -> None:
    await _faults(control, {"action": "status", "path": "/keep-me"})
    status, answer = await control.call("PUT", "/sandbox/v1/faults", body)
    assert status == 400
    code, message = error_of(answer)
    assert code == "BadRequest"
    assert reason in message
    # A refused PUT leaves the previous rules in place.
    assert [r["path"] for r in (await control.ok("GET", "/sandbox/v1/faults"))["rules"]] == ["/keep-me"]
