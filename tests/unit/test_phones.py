"""Tests for bot.phones: E.164 normalisation (strict and not), masking for logs, allow/deny patterns."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.phones import InvalidNumber, check_pattern, mask, matches, normalize


@pytest.mark.parametrize(
    ("text", "region", "expected"),
    [
        ("+12025550100", "US", "+12025550100"),
        ("(202) 555-0100", "US", "+12025550100"),
        ("202.555.0100", "US", "+12025550100"),
        ("1 202 555 0100", "US", "+12025550100"),
        ("+1 800 555 0100", "US", "+18005550100"),
        ("+18005550100", "US", "+18005550100"),  # the sandbox's own number
        ("tel:+12025550100", "US", "+12025550100"),
        ("  +44 20 7946 0958 ", "US", "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("020 7946 0958", "gb", "+442079460958"),
        ("+" + "".join(chr(ord(d) + 0xFEE0) for d in "12025550100"), "US", "+12025550100"),  # full-width digits
    ],
)
def test_normalize_strict(text: str, region: str, expected: str) -> None:
    assert normalize(text, region) == expected
    assert normalize(text, region, strict=False) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Fictional numbers the sandbox, the demo and the tests use: possible, not assigned.
        ("+15550100", "+15550100"),
        ("+15550123", "+15550123"),
        ("+15555550100", "+15555550100"),
        ("+15551234567", "+15551234567"),
        ("(555) 123-4567", "+15551234567"),
        ("555-0100", "+15550100"),
    ],
)
def test_fictional_numbers_pass_only_non_strict(text: str, expected: str) -> None:
    assert normalize(text, strict=False) == expected
    with pytest.raises(InvalidNumber):
        normalize(text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("tel:", "empty"),
        ("hello", "not a phone number"),
        ("JOIN 123456", "not a phone number"),
        ("+", "not a phone number"),
        ("12345", "too short"),
        ("+1555012345", "too short"),
        ("+1555123456789", "too long"),
        ("+99912345", "unknown country code"),
        ("1-800-FLOWERS", "not a phone number: it has letters"),
        ("+15551234567 ext 12", "has an extension, which cannot receive texts"),
        ("+15551234567;ext=12", "has an extension, which cannot receive texts"),
        ("x" * 300, "too long"),  # phonenumbers checks the length first
        ("1" * 300, "too long"),
        ("+43000", "too short"),  # possible locally in Austria, too short for E.164 and for SMS
    ],
)
def test_normalize_rejects(text: str, reason: str) -> None:
    for strict in (True, False):
        with pytest.raises(InvalidNumber) as info:
            normalize(text, strict=strict)
        assert info.value.reason.startswith(reason.split(",")[0]), info.value.reason
        assert isinstance(info.value, ValueError)


def test_invalid_number_message_never_holds_the_number() -> None:
    with pytest.raises(InvalidNumber) as info:
        normalize("+1555123456789")
    assert "555" not in str(info.value)


def test_national_number_without_region() -> None:
    with pytest.raises(InvalidNumber, match="country code"):
        normalize("020 7946 0958", "")
    with pytest.raises(InvalidNumber, match="country code"):
        normalize("020 7946 0958", "XX")


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+15551234567", "+1555***4567"),
        ("+12025550100", "+1202***0100"),
        ("+442079460958", "+44207***0958"),
        ("+15550100", "+1***00"),  # seven national digits: mostly masked
        ("+4479460", "+44***"),
        ("+1", "***"),
        ("", "***"),
        ("garbage", "***"),
        ("15551234567", "155***4567"),  # no +: bare digits, no country code assumed
        ("+99912345", "***45"),
        ("+1 (555) 123-4567", "+1555***4567"),
        ("+15551234567;ext=99", "+1555***4567"),
    ],
)
def test_mask(number: str, masked: str) -> None:
    assert mask(number) == masked


def test_mask_never_raises_on_odd_input() -> None:
    for odd in ("\x00", "+" * 1000, "9" * 10_000, "\ud800", "١٢٣٤٥٦٧٨٩٠١٢"):
        assert "***" in mask(odd)


@pytest.mark.parametrize(
    ("number", "patterns", "expected"),
    [
        ("+15551234567", ["*"], True),
        ("+15551234567", ["+15551234567"], True),
        ("+15551234567", ["+1555*"], True),
        ("+15551234567", [" +1 555 * "], True),
        ("+15551234567", ["+1556*"], False),
        ("+15551234567", ["+1555123456"], False),  # exact means exact
        ("+15551234567", [], False),
        ("+15551234567", ["", "  "], False),
        ("+15551234567", ["+44*", "+1555*"], True),
        ("+442079460958", ["+1*"], False),
    ],
)
def test_matches(number: str, patterns: list[str], expected: bool) -> None:
    assert matches(number, patterns) is expected


@pytest.mark.parametrize(
    ("pattern", "ok"),
    [
        ("*", True),
        ("+1555*", True),
        ("+15551234567", True),
        ("+1 555 *", True),
        ("1555*", False),
        ("sms:+1555*", False),
        ("+1*555", False),
        ("+*", False),
        ("+" + "1" * 16, False),
    ],
)
def test_check_pattern(pattern: str, ok: bool) -> None:
    assert (check_pattern(pattern) is None) is ok


_DIGITS_AFTER_COUNTRY = re.compile(r"^(?:\+\d{1,3})?(\d{0,3})\*\*\*(\d{0,4})$")


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.from_regex(r"\+?[0-9 ()\-.]{0,25}", fullmatch=True),
        st.builds(lambda cc, n: f"+{cc}{n}", st.integers(1, 999), st.integers(0, 10**15)),
    )
)
def test_mask_reveals_at_most_seven_digits(number: str) -> None:
    masked = mask(number)
    shape = _DIGITS_AFTER_COUNTRY.fullmatch(masked)
    assert shape, masked
    assert len(shape.group(1)) + len(shape.group(2)) <= 7
    assert masked.isascii()


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.from_regex(r"\+?[0-9 ()\-.]{0,25}", fullmatch=True)), st.booleans())
def test_normalize_returns_e164_or_raises_invalid_number(text: str, strict: bool) -> None:
    try:
        number = normalize(text, strict=strict)
    except InvalidNumber as exc:
        assert exc.reason
        return
    assert re.fullmatch(r"\+[1-9][0-9]{6,14}", number), number
    assert normalize(number, strict=strict) == number
