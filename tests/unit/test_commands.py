"""Tests for bot.commands: SMS keyword parsing, display-name validation and the configurable replies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.commands import (
    DEFAULT_TEXTS,
    Chat,
    Command,
    Help,
    Join,
    Leave,
    Name,
    Start,
    Status,
    Stop,
    describe_state,
    parse,
    reply,
    validate_name,
)
from bot.formatting import clean_name
from bot.models import SessionState
from bot.sms_text import is_gsm7, segments


def _wide(text: str) -> str:
    """The full-width form of ASCII text, as some phone keyboards type it."""
    return "".join(chr(ord(ch) + 0xFEE0) for ch in text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("JOIN 123456", Join("123456")),
        ("join 123456", Join("123456")),
        ("  Join   123456  ", Join("123456")),
        ("JOIN", Join(None)),
        ("join.", Join(None)),
        ("join  12 34 56", Join("123456")),
        ("JOIN 123-456", Join("123456")),
        ("JOIN 123.456.", Join("123456")),
        ("JOIN #123456", Join("123456")),
        ("Join: 123456", Join("123456")),
        ("JOIN " + _wide("123456"), Join("123456")),  # full-width digits, as some phones send them
        ("LEAVE", Leave()),
        ("leave!", Leave()),
        ("HELP", Help()),
        ("info", Help()),
        ("Help?", Help()),
        ("STATUS", Status()),
        ("status ", Status()),
        ("NAME Ann Lee", Name("Ann Lee")),
        ("name   Ann \n Lee ", Name("Ann Lee")),
        ("Name: Ann", Name("Ann")),
        ("NAME", Name("")),
        ("START", Start()),
        ("unstop", Start()),
        (_wide("STOP"), Stop()),  # full-width letters
    ],
)
def test_keywords(text: str, expected: Command) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize("word", ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"])
@pytest.mark.parametrize("shape", ["{}", "{} ", "  {}\n", "{}.", "{}!", "{}!!", "{} !", "{}?"])
def test_stop_variants(word: str, shape: str) -> None:
    for form in (word, word.lower(), word.capitalize()):
        assert parse(shape.format(form)) == Stop()
        assert parse(shape.format(form), opted_out=True) == Stop()


def test_yes_starts_only_an_opted_out_number() -> None:
    assert parse("YES", opted_out=True) == Start()
    assert parse("yes!", opted_out=True) == Start()
    assert parse("Yes") == Chat("Yes")
    assert parse("START") == Start()


@pytest.mark.parametrize(
    "text",
    [
        "Stop by my office",
        "stop it",
        "Please stop",
        "STOP ALL",
        "end of the agenda",
        "help me understand",
        "Join us at 3",
        "join the call",
        "JOIN 12a456",
        "JOIN 12345678901234567",  # too many digits for a code
        "status update: done",
        "leave it to me",
        "cancel the 3pm",
        "quit it",
        "yes please",
        "stopp",
        "qu\u0131t",  # dotless i: upper-cases to QUIT but is not the keyword
        "",
        "   ",
        "hello",
        "NAMES are hard",
        "JOINED",
    ],
)
def test_chat_look_alikes(text: str) -> None:
    assert parse(text) == Chat(text)


def test_chat_keeps_the_text_exactly() -> None:
    assert parse("  hi there\n") == Chat("  hi there\n")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("Ann Lee", None),
        ("Zoë O'Brien-Smith", None),
        ("李小龍", None),
        ("R2D2", None),
        ("", "it is empty"),
        ("   ", "it is empty"),
        ("a" * 41, "it is longer than 40 characters"),
        ("a" * 40, None),
        # Checked as shown: invisible characters are taken out first, and a name of nothing else is empty.
        ("Ann\x07", None),
        ("Ann\nLee", None),
        ("\u202eAnn", None),
        ("\ud800Ann", None),
        ("Ann" + "\u200b" * 60, None),
        ("\u200b\u3164\u2060", "it is empty"),
        ("12345", "it has no letters"),
        ("!!!", "it has no letters"),
        ("\U0001f600", "it has no letters"),
        ("<b>Ann</b>", "it has < or >"),
        ("Ann > Bob", "it has < or >"),
    ],
)
def test_validate_name(name: str, reason: str | None) -> None:
    assert validate_name(name, 40) == reason


def test_validate_name_rejects_bad_limit() -> None:
    with pytest.raises(ValueError):
        validate_name("Ann", 0)


_SAMPLE = {
    "meeting": "Weekly planning with the design team",
    "state": "waiting in the lobby",
    "name": "Ann Lee (SMS)",
    "reason": "it is longer than 40 characters",
    "code": "1234567890",
}


def test_default_texts_cover_every_key() -> None:
    assert set(DEFAULT_TEXTS) == {
        "help",
        "stop",
        "start",
        "join_usage",
        "joined",
        "unknown_meeting",
        "not_allowed",
        "left",
        "no_session",
        "name_set",
        "name_invalid",
        "budget",
        "status_none",
        "status",
    }


@pytest.mark.parametrize("key", sorted(DEFAULT_TEXTS))
def test_default_texts_are_one_gsm7_segment(key: str) -> None:
    text = reply(key, {}, **_SAMPLE)
    assert "{" not in text and "}" not in text, "every placeholder of a default has a value in the sample"
    assert is_gsm7(text)
    assert segments(text) == 1
    assert len(text) <= 160


def test_carrier_required_texts() -> None:
    assert "STOP" in DEFAULT_TEXTS["help"]
    assert "START" in DEFAULT_TEXTS["stop"]


def test_reply_prefers_override() -> None:
    assert reply("help", {"help": "Text us, {name}!"}, name="Ann") == "Text us, Ann!"
    assert reply("help", {"stop": "x"}) == DEFAULT_TEXTS["help"]


def test_reply_blank_override_falls_back() -> None:
    assert reply("stop", {"stop": "  "}) == DEFAULT_TEXTS["stop"]


def test_reply_fills_safely() -> None:
    overrides = {
        "joined": "In {meeting} as {name}; {unknown} {0} {} {{x}} {meeting.__class__} {name!r:>10}",
    }
    text = reply("joined", overrides, meeting="Standup", name="Ann {meeting}")
    # One pass: a value is never re-filled; anything but a plain {word} stays as written.
    assert text == "In Standup as Ann {meeting}; {unknown} {0} {} {{x}} {meeting.__class__} {name!r:>10}"


def test_reply_unknown_key() -> None:
    with pytest.raises(KeyError):
        reply("nope", {})
    assert reply("custom", {"custom": "hi {name}"}, name="Ann") == "hi Ann"


def test_describe_state() -> None:
    assert describe_state(SessionState.IN_CALL) == "connected"
    assert describe_state("lobby") == "waiting in the lobby"
    assert describe_state("something-new") == "something-new"
    assert all(describe_state(state) != state.value for state in SessionState if state != SessionState.LEFT)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.from_regex(r"\s*(join|JOIN|Name|stop|YES)[ .!?#:0-9\-]*.*", fullmatch=True)))
def test_parse_never_raises(text: str) -> None:
    command = parse(text)
    assert parse(text, opted_out=True) is not None
    if isinstance(command, Chat):
        assert command.text == text
    if isinstance(command, Join) and command.code is not None:
        assert command.code.isdigit() and command.code.isascii()


@settings(max_examples=300, deadline=None)
@given(st.text(), st.integers(min_value=1, max_value=300))
def test_validate_name_never_raises(name: str, limit: int) -> None:
    reason = validate_name(name, limit)
    if reason is None:
        assert 0 < len(clean_name(name)) <= limit and "<" not in clean_name(name)


@settings(max_examples=300, deadline=None)
@given(st.text(), st.dictionaries(st.text(max_size=8), st.text()))
def test_reply_never_raises_on_overrides(template: str, values: dict[str, str]) -> None:
    reply("help", {"help": template}, **values)
