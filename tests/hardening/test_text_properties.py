"""Property-based tests of the pure parsers and formatters that external text reaches: SMS keywords, SMS shaping and
segmenting, phone numbers, Teams HTML and text, join links. Each raises nothing but its own validation error, and
keeps a round-trip or an invariant. Examples are few by default; HYPOTHESIS_PROFILE=thorough runs many more."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from urllib.parse import quote

import phonenumbers
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bot import commands, formatting, links, phones, sms_text
from bot.commands import Chat, Help, Join, Leave, Name, Start, Status, Stop
from bot.formatting import clean_name
from tests.support.properties import ANY_TEXT, PROFILE

_GSM_BASIC = "".join(sorted(sms_text.GSM7_BASIC))
_GSM_ALL = _GSM_BASIC + "".join(sorted(sms_text.GSM7_EXTENSION))
SMS_TEXT = st.one_of(
    ANY_TEXT,
    st.text(alphabet=_GSM_ALL, max_size=700),
    st.text(alphabet=st.sampled_from([*_GSM_BASIC[:40], " ", "€", "é", "ш", "😀", "\u2019", "…", "\n"]), max_size=700),
    st.text(alphabet="…\u2014\u2019a ", min_size=40, max_size=200),  # look-alikes that grow as GSM-7
)


# ---------------------------------------------------------------- SMS keywords


COMMAND_TYPES = (Join, Leave, Stop, Start, Help, Name, Status, Chat)
BARE: dict[str, type] = {
    **dict.fromkeys(commands.STOP_WORDS, Stop),
    **dict.fromkeys(commands.START_WORDS, Start),
    **dict.fromkeys(commands.HELP_WORDS, Help),
    "LEAVE": Leave,
    "STATUS": Status,
}
_SPACE = st.text(alphabet=" \t\n\r\u00a0\u2003", max_size=3)


@PROFILE
@given(text=ANY_TEXT | st.from_regex(r"\s*(join|name|stop|yes|help)\b.{0,40}", fullmatch=True), opted_out=st.booleans())
def test_parse_is_total_and_keeps_chat_exact(text: str, opted_out: bool) -> None:
    command = commands.parse(text, opted_out=opted_out)
    assert isinstance(command, COMMAND_TYPES)
    if isinstance(command, Chat):
        assert command.text == text  # chat goes to the meeting exactly as typed
    elif isinstance(command, Join):
        assert command.code is None or (command.code.isascii() and command.code.isdigit() and len(command.code) <= 16)
    elif isinstance(command, Name):
        assert command.name == " ".join(command.name.split())
    else:
        assert text.split()  # a keyword is never made of nothing


def _any_case(word: str, flips: list[bool]) -> str:
    return "".join(ch.lower() if flip else ch for ch, flip in zip(word, flips + [False] * len(word), strict=False))


@PROFILE
@given(
    word=st.sampled_from(sorted(BARE)),
    flips=st.lists(st.booleans(), max_size=12),
    before=_SPACE,
    after=_SPACE,
    punctuation=st.text(alphabet=".!?", max_size=3),
)
def test_bare_keywords_survive_case_spacing_and_punctuation(
    word: str, flips: list[bool], before: str, after: str, punctuation: str
) -> None:
    text = before + _any_case(word, flips) + punctuation + after
    expected = BARE[word]
    assert isinstance(commands.parse(text, opted_out=True), expected)
    # YES is START only for an opted-out number; otherwise "yes" is an answer for the meeting.
    assert isinstance(commands.parse(text, opted_out=False), Chat if word == "YES" else expected)


@PROFILE
@given(word=st.sampled_from(sorted(BARE)), rest=st.from_regex(r"[A-Za-z][A-Za-z ]{0,20}", fullmatch=True))
def test_a_keyword_followed_by_words_is_chat(word: str, rest: str) -> None:
    text = f"{word} {rest}"
    assert commands.parse(text, opted_out=True) == Chat(text)


@PROFILE
@given(
    groups=st.lists(st.text(alphabet="0123456789", min_size=1, max_size=4), min_size=1, max_size=5),
    separators=st.lists(st.sampled_from([" ", ".", "-"]), min_size=5, max_size=5),
    hash_sign=st.booleans(),
    keyword=st.sampled_from(["join", "JOIN", "Join", "join:", "\uff2a\uff2f\uff29\uff2e"]),
)
def test_join_codes_written_any_way_read_as_their_digits(
    groups: list[str], separators: list[str], hash_sign: bool, keyword: str
) -> None:
    code = groups[0] + "".join(sep + group for sep, group in zip(separators, groups[1:], strict=False))
    text = f"{keyword} {'#' if hash_sign else ''}{code}"
    digits = "".join(groups)
    expected = Join(digits) if len(digits) <= 16 else Chat(text)
    assert commands.parse(text) == expected


@PROFILE
@given(name=ANY_TEXT, limit=st.integers(min_value=1, max_value=300))
def test_validate_name_gives_a_reason_or_passes_a_clean_name(name: str, limit: int) -> None:
    reason = commands.validate_name(name, limit)
    if reason is None:
        shown = clean_name(name)  # what the bridge stores and Teams sees
        assert shown and len(shown) <= limit and "<" not in shown and ">" not in shown
        assert not any(unicodedata.category(ch) in ("Cc", "Cs", "Cf") for ch in shown)
        assert any(unicodedata.category(ch).startswith("L") for ch in shown)
    else:
        assert reason and "\n" not in reason


@PROFILE
@given(
    key=st.sampled_from(sorted(commands.DEFAULT_TEXTS)),
    overrides=st.dictionaries(st.sampled_from(sorted(commands.DEFAULT_TEXTS)), ANY_TEXT, max_size=3),
    values=st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), ANY_TEXT, max_size=4),
)
def test_reply_fills_only_given_placeholders(key: str, overrides: dict[str, str], values: dict[str, str]) -> None:
    text = commands.reply(key, overrides, **values)
    assert text.strip()  # a blank override falls back: the STOP confirmation can never be silenced
    template = overrides.get(key) if (overrides.get(key) or "").strip() else commands.DEFAULT_TEXTS[key]
    if not values:
        assert text == template


# ---------------------------------------------------------------- SMS text: encoding, segments, fitting


def _reference_segments(text: str) -> int | None:
    """Segments by the textbook formula, for texts where every unit is one (no extension characters, no
    characters outside the BMP); None for others."""
    if sms_text.is_gsm7(text):
        if any(ch in sms_text.GSM7_EXTENSION for ch in text):
            return None
        single, part = 160, 153
    elif all(ord(ch) <= 0xFFFF and not 0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        single, part = 70, 67
    else:
        return None
    return 1 if len(text) <= single else math.ceil(len(text) / part)


@PROFILE
@given(text=SMS_TEXT)
def test_segments_agree_with_the_textbook_formula(text: str) -> None:
    count = sms_text.segments(text)
    assert count >= 1
    assert sms_text.encoding(text) == ("GSM-7" if sms_text.is_gsm7(text) else "UCS-2")
    expected = _reference_segments(text)
    if expected is not None:
        assert count == expected


@PROFILE
@given(text=SMS_TEXT, cut=st.integers(min_value=0, max_value=700))
def test_segments_never_shrink_as_text_grows(text: str, cut: int) -> None:
    assert sms_text.segments(text[:cut]) <= sms_text.segments(text)


@PROFILE
@given(text=SMS_TEXT, cap=st.integers(min_value=1, max_value=5))
def test_split_parts_each_fit_the_cap_and_join_back(text: str, cap: int) -> None:
    parts = sms_text.fit(text, cap, "split")
    assert "".join(parts) == text
    assert all(sms_text.segments(part) <= cap for part in parts)
    assert all(parts) or parts == [text]
    if sms_text.segments(text) <= cap:
        assert parts == [text]
    # No part ends inside a surrogate pair or holds half of an extension character's escape.
    for part in parts[:-1]:
        assert not "\ud800" <= part[-1] <= "\udbff"


@PROFILE
@given(text=SMS_TEXT, cap=st.integers(min_value=1, max_value=5), marker=st.sampled_from(["…", "...", "", " [+]"]))
def test_truncate_fits_the_cap_and_keeps_a_prefix(text: str, cap: int, marker: str) -> None:
    [out] = sms_text.fit(text, cap, "truncate", marker)
    assert sms_text.segments(out) <= cap
    if sms_text.segments(text) <= cap:
        assert out == text
        return
    kept = out
    for ending in (marker, sms_text.GSM7_MARKER):
        if ending and out.endswith(ending) and text.startswith(out[: -len(ending)].rstrip()):
            kept = out[: -len(ending)]
            break
    assert text.startswith(kept.rstrip()) or text.startswith(kept)


@PROFILE
@given(text=SMS_TEXT, cap=st.integers(min_value=-3, max_value=0), policy=st.sampled_from(["split", "truncate", "x"]))
def test_fit_refuses_a_cap_below_one_with_value_error(text: str, cap: int, policy: str) -> None:
    with pytest.raises(ValueError):
        sms_text.fit(text, cap, policy)  # type: ignore[arg-type]  # "x" is outside the Literal, on purpose


@PROFILE
@given(text=SMS_TEXT)
def test_simplify_is_idempotent_and_never_costs_a_segment(text: str) -> None:
    simple = sms_text.simplify(text)
    assert simple == text or sms_text.is_gsm7(simple)
    assert sms_text.simplify(simple) == simple
    assert sms_text.segments(simple) <= sms_text.segments(text)


@PROFILE
@given(sender=ANY_TEXT, text=ANY_TEXT)
def test_sender_labels_are_one_short_clean_line(sender: str, text: str) -> None:
    label = sms_text.sender_label(sender)
    assert len(label) <= sms_text.SENDER_MAX
    assert label == label.strip() and "\n" not in label and "  " not in label
    assert not any(unicodedata.category(ch) == "Cc" for ch in label)
    assert sms_text.sender_label(label) == label
    prefixed = sms_text.prefix(sender, text)
    assert prefixed.endswith(text) and (prefixed == text) == (label == "")


@PROFILE
@given(items=st.lists(st.tuples(ANY_TEXT, ANY_TEXT), max_size=6))
def test_combine_keeps_every_visible_message_once(items: list[tuple[str, str]]) -> None:
    combined = sms_text.combine(items)
    visible = [text.strip() for _, text in items if text.strip()]
    if not visible:
        assert combined == ""
    for body in visible:
        assert body in combined


# ---------------------------------------------------------------- phone numbers


_OTHER_DIGITS = "".join(chr(0x660 + d) + chr(0xFF10 + d) for d in range(10))  # Arabic-Indic, full-width
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
PHONEISH = st.one_of(
    ANY_TEXT,
    st.from_regex(r"\s*(tel:)?\+?[0-9 ()\-.]{0,25}(\s*(x|ext\.?)\s*[0-9]{1,5})?\s*", fullmatch=True),
    st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    st.text(alphabet="+0123456789 -" + _OTHER_DIGITS, max_size=20),
)


@PROFILE
@given(text=PHONEISH, region=st.sampled_from(["US", "GB", "DE", "", "us", "ZZ", "??", "ß"]), strict=st.booleans())
def test_normalize_gives_e164_or_invalid_number_and_is_idempotent(text: str, region: str, strict: bool) -> None:
    try:
        number = phones.normalize(text, region, strict=strict)
    except phones.InvalidNumber as exc:
        assert exc.reason and "\n" not in exc.reason
        # The reason never repeats the number: it ends up in logs and replies.
        digits = "".join(ch for ch in text if ch.isdigit())
        assert len(digits) < 4 or digits not in exc.reason
        return
    assert E164.match(number), number
    assert phones.normalize(number, region, strict=strict) == number
    assert phones.normalize(number, "US", strict=False) == number
    if strict:
        assert phones.normalize(text, region, strict=False) == number


@PROFILE
@given(region=st.sampled_from(REGIONS))
def test_every_way_of_writing_a_real_number_normalises_to_the_same(region: str) -> None:
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assume(example is not None)
    assert example is not None
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    assume(E164.match(e164))
    written = {
        phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
        phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.RFC3966),
        phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL),
        e164,
    }
    for text in written:
        assert phones.normalize(text, region, strict=False) == e164, (region, text)


@PROFILE
@given(number=PHONEISH | st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True))
def test_mask_never_raises_and_hides_the_middle(number: str) -> None:
    masked = phones.mask(number)
    assert "***" in masked
    assert not re.search(r"[0-9]{8}", masked.replace("+", ""))


@PROFILE
@given(
    number=st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    cut=st.integers(min_value=2, max_value=16),  # "+*" alone is refused: "*" says it
    patterns=st.lists(ANY_TEXT | st.from_regex(r"\+?[0-9 ]{0,8}\*?", fullmatch=True), max_size=4),
)
def test_allow_patterns_match_what_they_name(number: str, cut: int, patterns: list[str]) -> None:
    prefix = number[:cut]
    for pattern in (number, prefix + "*", "*", " ".join(number)):
        assert phones.check_pattern(pattern) is None
        assert phones.matches(number, [pattern])
    for pattern in patterns:
        problem = phones.check_pattern(pattern)
        assert problem is None or isinstance(problem, str)
        phones.matches(number, [pattern])  # never raises, whatever an operator wrote


# ---------------------------------------------------------------- Teams HTML and text

_TAGS = [
    "p", "div", "br", "b", "i", "a", "at", "ul", "ol", "li", "blockquote", "pre", "codeblock", "emoji", "img",
    "attachment", "script", "style", "table", "tr", "td", "span", "h1", "hr", "title",
]  # fmt: skip
_ATTRS = st.sampled_from(
    [
        "",
        ' href="https://example.com/a?b=1&amp;c=2"',
        ' href="javascript:alert(1)"',
        ' href="mailto:a@b.c"',
        ' itemtype="http://schema.skype.com/Emoji" alt="🙂"',
        ' start="3"',
        ' start="99999999999999999999"',
        ' name="report.pdf"',
        " alt",
        ' href="http://[::1"',
    ]
)
_PIECE = st.one_of(
    st.builds(lambda tag, attrs: f"<{tag}{attrs}>", st.sampled_from(_TAGS), _ATTRS),
    st.builds(lambda tag: f"</{tag}>", st.sampled_from(_TAGS)),
    st.sampled_from(["&amp;", "&lt;", "&#x1F600;", "&#0;", "&#xD800;", "&nbsp;", "&bogus;", "&#99999999999;", "&"]),
    st.sampled_from(["<!--", "-->", "<![CDATA[", "<!doctype html>", "<?x?>", "</", "<", ">", "<a", "'", '"']),
    ANY_TEXT.map(lambda t: t[:20]),
)
TEAMS_HTML = st.one_of(st.lists(_PIECE, max_size=40).map("".join), ANY_TEXT)


@PROFILE
@given(markup=TEAMS_HTML, note=st.booleans())
def test_html_to_text_is_total_and_clean(markup: str, note: bool) -> None:
    text = formatting.html_to_text(markup, attachments_note=note)
    assert formatting.clean_text(text) == text


@pytest.mark.parametrize("tag", ["div", "a", "li", "blockquote", "b", "ol", "at", "pre"])
def test_html_to_text_survives_hostile_nesting(tag: str) -> None:
    deep = f"<{tag}>" * 20_000 + "x" + f"</{tag}>" * 20_000
    assert "x" in formatting.html_to_text(deep)


@PROFILE
@given(text=ANY_TEXT | st.from_regex(r"(see |\()https?://[a-z.]{1,12}/[a-z()?.,!]{0,12}[ )\n]?", fullmatch=True))
def test_text_to_html_to_text_round_trips(text: str) -> None:
    markup = formatting.text_to_html(text)
    assert formatting.html_to_text(markup) == formatting.clean_text(text)
    # Only the two tags the bridge makes: a line break, and a link to http(s).
    for tag in re.findall(r"<[^>]*>", markup):
        assert tag == "<br>" or tag == "</a>" or re.fullmatch(r'<a href="https?://[^"<>]*">', tag), tag


@PROFILE
@given(markup=TEAMS_HTML)
def test_teams_text_is_a_fixed_point_of_the_round_trip(markup: str) -> None:
    text = formatting.html_to_text(markup)
    assert formatting.html_to_text(formatting.text_to_html(text)) == text


@PROFILE
@given(text=ANY_TEXT)
def test_clean_text_is_idempotent(text: str) -> None:
    once = formatting.clean_text(text)
    assert formatting.clean_text(once) == once


@PROFILE
@given(template=ANY_TEXT | st.from_regex(r"[a-z ]{0,5}(\{[a-z!:0-9]{0,8}\}?[ ()]{0,3}){0,3}", fullmatch=True))
def test_display_name_templates_raise_only_value_error(template: str) -> None:
    try:
        formatting.validate_template(template)
    except ValueError as exc:
        assert str(exc)
        return
    name = formatting.display_name(template, name="Ann\n\u202eLee", channel="SMS")
    assert "\n" not in name and "\u202e" not in name and len(name) <= formatting.DISPLAY_NAME_LIMIT


# ---------------------------------------------------------------- join links


_THREAD_KEY = st.text(
    alphabet=st.characters(exclude_categories=("Cs", "Zs", "Cc", "Zl", "Zp")), min_size=1, max_size=60
)
GUID = st.uuids().map(str)


def long_link(thread: str, context: dict[str, str] | None) -> str:
    query = "" if context is None else "?context=" + quote(json.dumps(context), safe="")
    return f"https://teams.microsoft.com/l/meetup-join/{quote(thread, safe='')}/0{query}"


@PROFILE
@given(
    key=_THREAD_KEY.filter(lambda k: not any(ch.isspace() or ch in "/@" for ch in k)),
    suffix=st.sampled_from(["v2", "skype", "tacv2"]),
    tenant=GUID,
    organizer=GUID,
    with_context=st.booleans(),
    wrapping=st.sampled_from(["plain", "no scheme", "safelinks", "spaces"]),
)
def test_long_links_round_trip(
    key: str, suffix: str, tenant: str, organizer: str, with_context: bool, wrapping: str
) -> None:
    thread = f"19:{key}@thread.{suffix}"
    link = long_link(thread, {"Tid": tenant, "Oid": organizer} if with_context else None)
    assume(len(link) <= links.MAX_LINK_LENGTH - 200)
    if wrapping == "no scheme":
        text = link.removeprefix("https://")
    elif wrapping == "safelinks":
        text = f"https://nam06.safelinks.protection.outlook.com/?url={quote(link, safe='')}&data=x"
    elif wrapping == "spaces":
        text = f"  {link}\n"
    else:
        text = link
    parsed = links.parse_join_link(text)
    assert parsed.thread_id == thread and not parsed.is_short
    assert (parsed.tenant_id, parsed.organizer_id) == ((tenant, organizer) if with_context else (None, None))


@PROFILE
@given(
    meeting_id=st.from_regex(r"[0-9]{6,20}", fullmatch=True),
    passcode=st.none() | st.from_regex(r"[A-Za-z0-9._~\-]{1,64}", fullmatch=True),
)
def test_short_links_round_trip(meeting_id: str, passcode: str | None) -> None:
    link = f"https://teams.microsoft.com/meet/{meeting_id}" + ("" if passcode is None else f"?p={passcode}")
    parsed = links.parse_join_link(link)
    assert parsed.is_short and (parsed.join_meeting_id, parsed.passcode) == (meeting_id, passcode)


@PROFILE
@given(
    text=st.one_of(
        ANY_TEXT,
        st.builds(
            lambda scheme, host, path, query: f"{scheme}{host}{path}{query}",
            st.sampled_from(["https://", "http://", "", "HTTPS://", "ftp://", "https:///"]),
            st.sampled_from(
                ["teams.microsoft.com", "teams.live.com", "x.safelinks.protection.outlook.com", "[::1", "a:99999"]
            ),
            st.sampled_from(["/l/meetup-join/", "/meet/", "/l/meetup-join/19%3ax%40thread.v2/0", "/meet/123456"])
            | ANY_TEXT.map(lambda t: "/" + t[:30]),
            st.sampled_from(["", "?context=%7b", "?context=%5b%5d", "?context=" + "%5b" * 5000, "?url=", "?p=%00"])
            | ANY_TEXT.map(lambda t: "?" + t[:30]),
        ),
    )
)
def test_join_link_parsing_raises_only_join_link_error(text: str) -> None:
    try:
        parsed = links.parse_join_link(text)
    except links.JoinLinkError as exc:
        assert str(exc)
        return
    assert parsed.thread_id is not None or parsed.join_meeting_id is not None
