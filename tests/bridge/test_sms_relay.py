"""SMS end to end: simulated phones text the bridge through the ACS SMS gateway (Event Grid) and the Twilio-style
gateway (signed webhooks), against the sandbox, with the real SDKs and nothing of the bridge mocked.

Keywords, chat both ways with prefixes, the lobby, segment caps, bursts, STOP/START, forged and replayed inbound
posts, delivery reports, the per-number budget and the allow and deny lists.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from bot.channels.sms.acs import PATH as ACS_EVENTS_PATH
from bot.channels.sms.twilio import INBOUND_PATH as TWILIO_PATH
from bot.channels.sms.twilio import STATUS_PATH as TWILIO_STATUS_PATH
from bot.channels.sms.twilio import twilio_signature
from bot.commands import DEFAULT_TEXTS, reply
from bot.config import MeetingConfig, SmsSection
from bot.models import Delivery, DeliveryState, SessionState
from bot.sandbox import SandboxInfo
from bot.sms_text import segments
from bot.store import StoreUrl
from tests.support.bridge import wait_for
from tests.support.sandbox import Control
from tests.support.sms import CODE, IN_CHAT, MEETING_NAME, OTHER, PHONE, SmsWorld, sms_received_event, sms_world

GATEWAYS = ["acs", "twilio"]


def standard(key: str, **values: str) -> str:
    """A default reply as the bridge words it with the default program, support and frequency."""
    return reply(key, {}, **SmsSection().wording(), **values)


def fragment(key: str) -> str:
    """A piece of a default reply without placeholders, to recognise it in a phone's inbox."""
    return standard(key).split("{")[0][:40]


@pytest.fixture(params=GATEWAYS)
def gateway(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def world(
    control: Control, info: SandboxInfo, tmp_path: Path, gateway: str, store_url: StoreUrl
) -> AsyncIterator[SmsWorld]:
    # On each store backend: the SMS wing (consent, budgets, delivery reports) is proven on PostgreSQL too.
    async with sms_world(control, info, tmp_path, gateway, store_url=store_url) as w:
        yield w


# 1-2: joining, chat both ways, status, the lobby ----------------------------------------------------------


async def test_join_chat_both_ways_and_status(world: SmsWorld) -> None:
    await world.text(f"join {CODE}")
    [joined] = await world.until_text(IN_CHAT)
    assert MEETING_NAME in joined
    await world.until_state(SessionState.IN_CALL)

    await world.text("hello from my phone")
    [(sender, _)] = await world.until_thread("hello from my phone")
    assert sender == "Guest 0100 (SMS)"

    await world.post("<p>Hi <b>phone</b> people</p>")
    [relayed] = await world.until_text("Hi phone")
    assert relayed == "Megan: Hi phone people"

    await world.text(" Status ")
    [status] = await world.until_text("connected")
    assert status.startswith(f"{MEETING_NAME}: connected.")
    # Our own text never comes back to the phone.
    assert not [t for t in await world.inbox() if "hello from my phone" in t]


async def test_manual_lobby_then_admitted(control: Control, info: SandboxInfo, tmp_path: Path, gateway: str) -> None:
    async with sms_world(control, info, tmp_path, gateway, lobby="manual") as w:
        await w.text(f"JOIN {CODE}")
        [waiting] = await w.until_text("waiting to be admitted")
        assert MEETING_NAME in waiting
        await w.until_state(SessionState.LOBBY)
        await w.text("status")
        await w.until_text("waiting in the lobby")
        assert not [t for t in await w.inbox() if IN_CHAT in t]
        waiting_text = await w.text("sent while waiting")
        answer = await w.until_handled(waiting_text)
        assert answer["status"] == "held"  # not refused: it goes in once the phone is admitted

        await w.admit_all()
        await w.until_text(IN_CHAT)
        await w.until_state(SessionState.IN_CALL)
        [(sender, _)] = await w.until_thread("sent while waiting")
        assert sender == "Guest 0100 (SMS)"
        texts = await w.inbox()
        assert texts.index(waiting) < texts.index(next(t for t in texts if IN_CHAT in t))


# 3-4: phone-shaped texts ----------------------------------------------------------------------------------

LONG = " ".join(f"word{i:03d}" for i in range(90))  # 719 GSM-7 characters: 5 segments, over the cap of 3


async def test_long_message_truncated_within_the_cap(world: SmsWorld) -> None:
    await world.joined()
    await world.post(LONG)
    [text] = await world.until_text("Megan: word000")
    assert segments(text) <= 3
    assert text.endswith("...")
    kept = text.removeprefix("Megan: ").removesuffix("...")
    assert LONG.startswith(kept) and len(kept) > 400
    await world.text("status")  # a later text arrives after it: the long one was sent once, as one text
    await world.until_text("connected")
    assert len([t for t in await world.inbox() if "word" in t]) == 1


async def test_long_message_split_within_the_cap(
    control: Control, info: SandboxInfo, tmp_path: Path, gateway: str
) -> None:
    async with sms_world(control, info, tmp_path, gateway, sms={"cap_policy": "split"}) as w:
        await w.joined()
        await w.post(LONG)

        async def whole() -> list[str]:
            parts = [t for t in await w.inbox() if "word" in t]
            return parts if "word089" in "".join(parts) else []

        parts = await wait_for(whole, what="every part of the long message")
        assert len(parts) >= 2
        assert all(segments(p) <= 3 for p in parts), [segments(p) for p in parts]
        assert "".join(parts) == f"Megan: {LONG}"


async def test_meeting_cap_counts_ucs2_segments(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    """A meeting's own cap of one segment, and a text an emoji makes UCS-2 (70 units, not 160 characters)."""
    async with sms_world(control, info, tmp_path, "acs", sms_segment_cap=1) as w:
        await w.joined()
        await w.post("Launch 🚀 " + "go " * 60)
        [text] = await w.until_text("Launch")
        assert segments(text) == 1
        assert text.startswith("Megan: Launch 🚀 go go") and text.endswith("…")
        assert len(text.encode("utf-16-le")) // 2 <= 70


async def test_burst_is_combined_into_one_text(
    control: Control, info: SandboxInfo, tmp_path: Path, gateway: str
) -> None:
    # A window wide enough that the reader's polls (0.2 s apart) always see the three as one burst.
    async with sms_world(control, info, tmp_path, gateway, sms={"burst_window_s": 1.0}) as w:
        await w.joined()
        for line in ("first of three", "second of three", "third of three"):
            await w.post(line)
        [text] = await w.until_text("third of three")
        assert text == "Megan: first of three\nsecond of three\nthird of three"
        assert len([t for t in await w.inbox() if "of three" in t]) == 1

        async def delivered() -> list[Delivery]:
            rows = [r for r in await w.outbound() if r.kind == "message"]
            return rows if rows and all(r.state == DeliveryState.DELIVERED for r in rows) else []

        rows = await wait_for(delivered, what="the burst's rows to be delivered")
        assert len(rows) == 3 and len({r.remote_id for r in rows}) == 1  # one text carried all three


# 5-6: keywords ---------------------------------------------------------------------------------------------


async def test_stop_is_honoured_until_start(world: SmsWorld) -> None:
    await world.joined()
    await world.joined(OTHER)  # a witness: when it has a message, the stopped phone would have had it too
    await world.text("STOP")

    async def stop_settled() -> list[Delivery]:
        rows = [r for r in await world.outbound() if r.body.get("always")]
        return rows if rows and rows[0].state in (DeliveryState.DELIVERED, DeliveryState.FAILED) else []

    [confirmation] = await wait_for(stop_settled, what="the STOP confirmation to settle")
    user = await world.bridge.store.get_user(f"sms:{PHONE}")
    assert user is not None and user.opted_out
    await world.until_state(SessionState.LEFT)
    stop_texts = [t for t in await world.inbox() if t == standard("stop")]
    phone = await world.control.ok("GET", f"/sandbox/v1/phones/{quote(PHONE, safe='')}/sms")
    assert phone["optedOut"]  # the carrier side opted the number out when it texted STOP ...
    # ... so the provider refuses the bridge's own confirmation, as ACS and Twilio refuse any text to a number that
    # texted STOP: the phone gets none, and the bridge recorded the refusal with its reason.
    assert stop_texts == []
    assert confirmation.state == DeliveryState.FAILED
    assert confirmation.last_error is not None and "opted out" in confirmation.last_error
    [session] = [s for s in await world.bridge.store.sessions() if s.user_id == f"sms:{PHONE}"]
    assert session.reason == "stopped"
    seen = await world.inbox()

    await world.post("after the stop")
    await world.until_text("after the stop", OTHER)
    asked = await world.text("still there?")
    assert await world.until_handled(asked) == {"handled": "opted out"}  # dropped, unanswered
    await world.post("after the question")
    await world.until_text("after the question", OTHER)
    assert await world.inbox() == seen
    assert not [m for m in await world.thread() if "still there" in m[1]]

    await world.text("START")
    [started] = await world.until_text(fragment("start"))
    assert started == standard("start")
    await world.joined()
    await world.post("welcome back")
    await world.until_text("Megan: welcome back")


async def test_help_name_unknown_code_and_bare_join(
    control: Control, info: SandboxInfo, tmp_path: Path, gateway: str
) -> None:
    async with sms_world(control, info, tmp_path, gateway, allow=[f"sms:{PHONE}"]) as w:
        await w.text("HELP")
        [help_text] = await w.until_text("Meeting bridge:")
        assert help_text == standard("help")

        await w.text("NAME <b>Bold</b>")
        [invalid] = await w.until_text(fragment("name_invalid"))
        assert "< or >" in invalid
        await w.text("NAME Alice")
        [named] = await w.until_text(fragment("name_set"))
        assert named == "Done: the meeting will see you as Alice."

        await w.text("JOIN 999999")
        [unknown] = await w.until_text("No meeting has the code")
        assert "999999" in unknown
        assert await w.state() is None

        await w.text("JOIN")  # invited to exactly one meeting: that one
        await w.until_text(IN_CHAT)
        await w.until_state(SessionState.IN_CALL)
        await w.text("named now")
        [(sender, _)] = await w.until_thread("named now")
        assert sender == "Alice (SMS)"

        # Not invited by number: a bare JOIN gets the usage, JOIN with the code the refusal.
        await w.text("JOIN", OTHER)
        await w.until_text(fragment("join_usage"), OTHER)
        await w.text(f"JOIN {CODE}", OTHER)
        await w.until_text(DEFAULT_TEXTS["not_allowed"], OTHER)
        assert await w.state(OTHER) is None


async def test_join_again_leave_and_moving_between_meetings(
    control: Control, info: SandboxInfo, tmp_path: Path, gateway: str
) -> None:
    second = await control.meeting(subject="Second")
    closed = await control.meeting(subject="Closed")
    extra = [
        MeetingConfig(link=second["joinWebUrl"], code="626262", name="Second"),
        MeetingConfig(link=closed["joinWebUrl"], code="737373", name="Closed", allow=["webhook:*"]),
    ]
    async with sms_world(control, info, tmp_path, gateway, extra_meetings=extra) as w:
        await w.joined()
        await w.text(f"JOIN {CODE}")  # already there: told so, never left without an answer
        [status] = await w.until_text(f"{MEETING_NAME}: connected")
        assert status.startswith(f"{MEETING_NAME}: connected.")
        [session] = [s for s in await w.bridge.store.sessions() if s.user_id == f"sms:{PHONE}"]

        await w.text("JOIN 737373")  # refused: the phone stays where it is
        await w.until_text(DEFAULT_TEXTS["not_allowed"])
        await w.text("still in the first")
        await w.until_thread("still in the first")
        assert await w.state() == SessionState.IN_CALL

        await w.text("JOIN 626262")  # one meeting at a time: the first is left
        await w.until_text("You left Weekly sync")
        await w.until_text("in the meeting chat of Second")
        first = await w.bridge.store.get_session(session.id)
        assert first is not None and first.state == SessionState.LEFT

        await w.text("LEAVE")
        await w.until_text("You left Second")
        await w.until_state(SessionState.LEFT)
        await w.text("LEAVE")
        await w.until_text(fragment("no_session"))
        await w.text("anyone there?")
        await w.until_text(DEFAULT_TEXTS["no_session"], count=2)


# 7-8: forged and replayed inbound --------------------------------------------------------------------------


async def test_forged_acs_events_are_refused(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    async with sms_world(control, info, tmp_path, "acs") as w:
        await w.joined()
        forged = sms_received_event(info, "Incoming_forged", "forged hello")
        for query in ("?code=wrong", "", "?code="):
            status, _ = await w.post_raw(f"{ACS_EVENTS_PATH}{query}", json=[forged])
            assert status == 401, query
        joiner = sms_received_event(info, "Incoming_forged_join", f"JOIN {CODE}", OTHER)
        status, _ = await w.post_raw(f"{ACS_EVENTS_PATH}?code=wrong", json=[joiner])
        assert status == 401

        await w.text("the real one")  # the same phone, through the gateway: relayed
        await w.until_thread("the real one")
        assert not [m for m in await w.thread() if "forged" in m[1]]
        assert [r.body["text"] for r in await w.inbound()] == ["the real one"]
        assert await w.bridge.store.inbox_answer("sms:acs", "Incoming_forged") is None
        assert await w.bridge.store.get_user(f"sms:{OTHER}") is None


async def test_forged_twilio_posts_are_refused(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    async with sms_world(control, info, tmp_path, "twilio") as w:
        await w.joined()
        form = {"MessageSid": "SMforged", "From": PHONE, "To": w.number, "Body": "forged hello", "AccountSid": "AC1"}
        url = f"{w.bridge.base}{TWILIO_PATH}"
        body = urlencode(form)
        plain = {"Content-Type": "application/x-www-form-urlencoded"}
        status, _ = await w.post_raw(TWILIO_PATH, data=body, headers=plain)
        assert status == 403
        wrong = twilio_signature("not-the-auth-token", url, form)
        status, _ = await w.post_raw(TWILIO_PATH, data=body, headers=plain | {"X-Twilio-Signature": wrong})
        assert status == 403
        assert w.bridge.settings.twilio.auth_token is not None
        token = w.bridge.settings.twilio.auth_token.get_secret_value()
        # Signed right, then tampered with: the signature no longer matches the parameters.
        good = twilio_signature(token, url, form)
        tampered = urlencode(form | {"Body": "forged and changed"})
        status, _ = await w.post_raw(TWILIO_PATH, data=tampered, headers=plain | {"X-Twilio-Signature": good})
        assert status == 403
        # A forged status callback cannot mark a text delivered either.
        status_form = {"MessageSid": "SMx", "MessageStatus": "delivered"}
        status, _ = await w.post_raw(
            TWILIO_STATUS_PATH, data=urlencode(status_form), headers=plain | {"X-Twilio-Signature": wrong}
        )
        assert status == 403

        await w.text("the real one")
        await w.until_thread("the real one")
        assert not [m for m in await w.thread() if "forged" in m[1]]
        assert [r.body["text"] for r in await w.inbound()] == ["the real one"]
        assert await w.bridge.store.inbox_answer("sms:twilio", "SMforged") is None


async def test_replayed_inbound_text_is_relayed_once(world: SmsWorld, info: SandboxInfo) -> None:
    await world.joined()
    if world.gateway == "acs":
        assert world.bridge.settings.sms.events_secret is not None
        path = f"{ACS_EVENTS_PATH}?code={world.bridge.settings.sms.events_secret.get_secret_value()}"
        event = sms_received_event(info, "Incoming_replayed", "said once")
        again = event | {"id": str(uuid.uuid4())}  # Event Grid redelivers under a new event id, too
        for body in ([event], [event], [again]):
            status, answer = await world.post_raw(path, data=json.dumps(body))
            assert status == 200, answer
    else:
        form = {"MessageSid": "SMreplayed", "From": PHONE, "To": world.number, "Body": "said once"}
        assert world.bridge.settings.twilio.auth_token is not None
        token = world.bridge.settings.twilio.auth_token.get_secret_value()
        signature = twilio_signature(token, f"{world.bridge.base}{TWILIO_PATH}", form)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
        for _ in range(3):
            status, answer = await world.post_raw(TWILIO_PATH, data=urlencode(form), headers=headers)
            assert status == 200, answer
    await world.until_thread("said once")
    await world.text("said after")
    await world.until_thread("said after")
    assert [m for m in await world.thread() if m[1] == "said once"] == [("Guest 0100 (SMS)", "said once")]
    assert [r.body["text"] for r in await world.inbound()] == ["said once", "said after"]


# 9-10: delivery reports and the budget --------------------------------------------------------------------


async def test_delivery_reports_are_recorded(world: SmsWorld) -> None:
    await world.joined()
    await world.post("report this")
    await world.until_text("Megan: report this")

    async def reported() -> list[Delivery]:
        rows = [r for r in await world.outbound() if r.state == DeliveryState.DELIVERED]
        # Every text so far: the opt-in confirmation and the notice, then the message, each reported.
        kinds = {r.kind for r in rows}
        return rows if kinds >= {"notice", "message"} and all(r.report is not None for r in rows) else []

    # Each text's report comes through the sandbox's Event Grid or Twilio callback after the text itself: on a busy
    # machine three texts' reports take longer than one wait's default.
    rows = await wait_for(reported, limit_s=60.0, what="delivery reports on every text")
    assert {r.report for r in rows} == {"delivered"}
    assert {r.kind for r in rows} == {"notice", "message"}
    for row in rows:
        assert row.remote_id
        fetched = await world.bridge.store.get_delivery(row.id)
        assert fetched is not None and fetched.report == "delivered"


async def test_undelivered_report_is_recorded_as_failed(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    async with sms_world(control, info, tmp_path, "twilio") as w:
        await w.joined()
        await control.ok("PUT", "/sandbox/v1/twilio", {"undeliverable": [PHONE]})
        await w.post("lost on the way")

        async def reported() -> list[Delivery]:
            rows = [r for r in await w.outbound() if r.kind == "message" and r.report is not None]
            return rows

        [row] = await wait_for(reported, what="the carrier's report")
        assert row.state == DeliveryState.DELIVERED  # Twilio took it ...
        assert row.report == "failed: undelivered (error 30003)"  # ... the handset never got it
        assert "lost on the way" not in " ".join(await w.inbox())


async def test_hourly_budget_tells_once_and_holds_the_rest(
    control: Control, info: SandboxInfo, tmp_path: Path, gateway: str
) -> None:
    async with sms_world(control, info, tmp_path, gateway, sms={"budget_segments_per_hour": 3}) as w:
        await w.joined()  # the opt-in confirmation and the notice are a segment each
        await w.post("within the budget")
        await w.until_text("Megan: within the budget")  # three: the budget is used up
        for line in ("over one", "over two", "over three"):
            await w.post(line)
        [budget] = await w.until_text(fragment("budget"))
        assert budget == DEFAULT_TEXTS["budget"]

        async def held(count: int) -> list[Delivery]:
            rows = [r for r in await w.outbound() if r.state == DeliveryState.PENDING]
            return rows if len(rows) == count else []

        rows = await wait_for(lambda: held(3), what="the texts over the budget to be held")
        attempted = [r for r in rows if r.attempts]
        assert attempted and all(r.next_attempt_at is not None for r in attempted)
        # Held until the hour has room, not retried in the meantime.
        assert all(
            r.next_attempt_at and (r.next_attempt_at - datetime.now(UTC)).total_seconds() > 1800 for r in attempted
        )
        await w.text("status")  # its reply waits behind them
        await w.post("one more")
        await wait_for(lambda: held(5), what="the reply and the new message to be held too")
        assert await w.inbox() == [
            standard("opt_in", meeting=MEETING_NAME),
            next(t for t in await w.inbox() if IN_CHAT in t),
            "Megan: within the budget",
            DEFAULT_TEXTS["budget"],
        ]
        used, _ = await w.bridge.store.sms_usage(f"sms:{PHONE}", datetime(2000, 1, 1, tzinfo=UTC))
        assert used == 3


# 11: allow and deny lists ---------------------------------------------------------------------------------


async def test_denied_number_gets_the_refusal(
    control: Control, info: SandboxInfo, tmp_path: Path, gateway: str
) -> None:
    async with sms_world(control, info, tmp_path, gateway, sms={"deny": [OTHER]}) as w:
        await w.text(f"JOIN {CODE}", OTHER)
        [refusal] = await w.until_text(DEFAULT_TEXTS["not_allowed"], OTHER)
        assert refusal == DEFAULT_TEXTS["not_allowed"]
        await w.joined()  # anyone else may
        denied = await w.text("from the denied one", OTHER)
        assert await w.until_handled(denied) == {"handled": "not allowed"}
        await w.until_text(DEFAULT_TEXTS["not_allowed"], OTHER, count=2)  # every text is answered the same
        await w.text("from the allowed one")
        await w.until_thread("from the allowed one")
        assert not [m for m in await w.thread() if "denied" in m[1]]
        assert await w.state(OTHER) is None


async def test_number_outside_the_allow_list_is_ignored(
    control: Control, info: SandboxInfo, tmp_path: Path, gateway: str
) -> None:
    sms = {"allow": ["+1555010*"], "unknown_policy": "ignore"}
    async with sms_world(control, info, tmp_path, gateway, sms=sms) as w:
        for text in ("HELP", f"JOIN {CODE}", "hello?"):
            assert await w.until_handled(await w.text(text, OTHER)) == {"handled": "not allowed"}
        await w.text("HELP")  # the allowed number is answered
        await w.until_text("Meeting bridge:")
        assert await w.inbox(OTHER) == []
        assert await w.bridge.store.deliveries(user_id=f"sms:{OTHER}") == []
        assert await w.state(OTHER) is None


async def test_invalid_sender_number_is_dropped(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    """A sender no carrier would deliver from (posted through the authenticated door) gets nothing, once."""
    async with sms_world(control, info, tmp_path, "acs") as w:
        assert w.bridge.settings.sms.events_secret is not None
        path = f"{ACS_EVENTS_PATH}?code={w.bridge.settings.sms.events_secret.get_secret_value()}"
        event = sms_received_event(info, "Incoming_bad_number", "HELP", phone="+1")
        status, _ = await w.post_raw(path, data=json.dumps([event]))
        assert status == 200
        assert await w.bridge.store.inbox_answer("sms:acs", "Incoming_bad_number") == (
            200,
            {"handled": "invalid number"},
        )
        assert await w.bridge.store.deliveries() == []
