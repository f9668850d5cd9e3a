"""Phone numbers (pure): E.164 normalisation with `phonenumbers`, masking for logs, allow/deny patterns."""

from __future__ import annotations

import unicodedata

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code, or no + and no default region",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}
_LENGTH_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "impossible length for its country",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "too short: a local number without its area code",
}
# Shown around the hidden middle of a national number that has at least _LONG digits (+1555***4567).
_HEAD, _TAIL, _LONG = 3, 4, 10
_SHORT_TAIL = 2  # shorter numbers show only this many trailing digits, and only from _SHORT_MIN digits on
_SHORT_MIN = 6
_HIDDEN = "***"
_E164_MIN_DIGITS, _E164_MAX_DIGITS = 7, 15


class InvalidNumber(ValueError):
    """Text that is not a usable phone number; the message is the reason and never contains the number."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalize(text: str, default_region: str = "US", *, strict: bool = True) -> str:
    """The E.164 form (`+15551234567`) of a number written internationally or nationally for `default_region`.

    strict=True accepts only numbers `phonenumbers` knows to be assigned (is_valid_number). strict=False accepts
    any number of a possible length for its country (is_possible_number, local-only lengths included). The
    bridge's relay normalises senders non-strictly: the sandbox and the demo use fictional numbers such as
    +15550100 (seven digits, a local-only length) and +15555550100 (area code 555 is unassigned), which the
    strict check refuses, and a real gateway only delivers texts from numbers that exist anyway. Operators'
    configuration may use strict to catch typos.
    """
    raw = text.strip()
    if raw[:4].lower() == "tel:":
        raw = raw[4:].strip()
    if not raw:
        raise InvalidNumber("empty")
    try:
        number = phonenumbers.parse(raw, default_region.upper() or None)
    except NumberParseException as exc:
        raise InvalidNumber(_PARSE_REASONS.get(exc.error_type, "not a phone number")) from None
    if number.extension:
        raise InvalidNumber("has an extension, which cannot receive texts")
    # phonenumbers reads letters as keypad digits (1-800-FLOWERS); in a sender or a list, a letter is a mistake.
    if any(unicodedata.category(ch).startswith("L") for ch in raw):
        raise InvalidNumber("not a phone number: it has letters")
    if strict:
        if not phonenumbers.is_valid_number(number):
            possible = phonenumbers.is_possible_number_with_reason(number)
            raise InvalidNumber(_LENGTH_REASONS.get(possible, "not an assigned number"))
    else:
        possible = phonenumbers.is_possible_number_with_reason(number)
        if possible not in (ValidationResult.IS_POSSIBLE, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
            raise InvalidNumber(_LENGTH_REASONS.get(possible, "impossible number"))
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    # Local-only lengths go as low as +43000; below 7 digits nothing (ACS and the sandbox included) takes it.
    if not _E164_MIN_DIGITS <= len(e164) - 1 <= _E164_MAX_DIGITS:
        raise InvalidNumber("too short" if len(e164) - 1 < _E164_MIN_DIGITS else "too long")
    return e164


def _shown(digits: str) -> tuple[str, str]:
    """The leading and trailing digits a mask may show: never more than 7, and under half of a short number."""
    if len(digits) >= _LONG:
        return digits[:_HEAD], digits[-_TAIL:]
    if len(digits) >= _SHORT_MIN:
        return "", digits[-_SHORT_TAIL:]
    return "", ""


def mask(number: str) -> str:
    """`+1555***4567` for logs: country code, then at most 7 digits of the national number; never raises."""
    try:
        parsed = phonenumbers.parse(number, None)
        country, national = str(parsed.country_code), phonenumbers.national_significant_number(parsed)
    except Exception:  # a log line must never fail: anything phonenumbers refuses is masked as bare digits
        country = None
        national = "".join(str(unicodedata.decimal(ch)) for ch in str(number) if ch.isdecimal())
    head, tail = _shown(national)
    return ("" if country is None else "+" + country) + head + _HIDDEN + tail


def matches(number: str, patterns: list[str]) -> bool:
    """Whether an E.164 number matches a list entry: the exact number, a prefix ending in `*`, or `*` alone."""
    number = number.strip()
    for pattern in patterns:
        pattern = "".join(pattern.split())  # "+1 555 *" as written in a file means +1555*
        if not pattern:
            continue
        if pattern.endswith("*"):
            if number.startswith(pattern[:-1]):
                return True
        elif number == pattern:
            return True
    return False


def check_pattern(pattern: str) -> str | None:
    """Why an allow/deny entry can never match a normalised number, or None when it is usable."""
    pattern = "".join(pattern.split())
    if pattern == "*":
        return None
    body = pattern[:-1] if pattern.endswith("*") else pattern
    if not body.startswith("+"):
        return "must start with + and the country code, or be * alone"
    if not body[1:].isascii() or not body[1:].isdigit():
        return "only digits may follow the +, with an optional * at the end"
    if len(body) > 16:
        return "longer than any E.164 number"
    return None
