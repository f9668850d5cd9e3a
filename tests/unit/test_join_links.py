"""Teams join link parsing: the long and short links, the ways people paste them, and everything else refused."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.links import JoinLinkError, ParsedLink, parse_join_link

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ORGANIZER = "4b1d7c8e-2f3a-4c5d-9e6f-7a8b9c0d1e2f"
THREAD = "19:meeting_NzdmODhiOGQtMDY4Yi00MDIyLTk1MzktMmRjNjIzNmFhMzM4@thread.v2"


def long_link(thread: str = THREAD, context: object = None, host: str = "teams.microsoft.com") -> str:
    ctx = {"Tid": TENANT, "Oid": ORGANIZER} if context is None else context
    encoded = quote(json.dumps(ctx, separators=(",", ":")) if not isinstance(ctx, str) else ctx, safe="")
    return f"https://{host}/l/meetup-join/{quote(thread, safe='')}/0?context={encoded}"


LONG = (
    "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NzdmODhiOGQtMDY4Yi00MDIyLTk1MzktMmRjNjIzNmFhMzM4"
    "%40thread.v2/0?context=%7b%22Tid%22%3a%2272f988bf-86f1-41af-91ab-2d7cd011db47%22%2c%22Oid%22%3a%22"
    "4b1d7c8e-2f3a-4c5d-9e6f-7a8b9c0d1e2f%22%7d"
)


def test_long_link() -> None:
    parsed = parse_join_link(LONG)
    assert parsed == ParsedLink(url=LONG, thread_id=THREAD, tenant_id=TENANT, organizer_id=ORGANIZER)
    assert not parsed.is_short


@pytest.mark.parametrize(
    "text",
    [
        LONG.replace("%3a", "%3A").replace("%7b", "%7B").replace("%22", "%22").replace("%7d", "%7D"),
        LONG.replace("https://teams.microsoft.com", "HTTPS://Teams.Microsoft.com"),
        "  " + LONG + "\n",
        LONG.removeprefix("https://"),
        LONG.replace("/0?context", "?context"),
        LONG.replace("Tid", "tid").replace("Oid", "oid"),
        long_link(context={"Tid": TENANT, "Oid": ORGANIZER, "IsBroadcastMeeting": False}),
    ],
)
def test_long_link_variants(text: str) -> None:
    parsed = parse_join_link(text)
    assert parsed.thread_id == THREAD and parsed.organizer_id is not None
    assert parsed.organizer_id.lower() == ORGANIZER and parsed.tenant_id is not None


def test_long_link_without_context_still_names_the_thread() -> None:
    parsed = parse_join_link(LONG.split("?")[0])
    assert (parsed.thread_id, parsed.tenant_id, parsed.organizer_id) == (THREAD, None, None)


@pytest.mark.parametrize("host", ["gov.teams.microsoft.us", "dod.teams.microsoft.us", "teams.microsoft.us"])
def test_government_cloud_links_are_refused_with_the_reason(host: str) -> None:
    with pytest.raises(JoinLinkError, match="government cloud") as caught:
        parse_join_link(long_link(host=host))
    assert host in str(caught.value) and "cannot be bridged" in str(caught.value)


def test_short_link() -> None:
    url = "https://teams.microsoft.com/meet/2151234567890?p=Ab3xYz9Q"
    parsed = parse_join_link(url)
    assert parsed == ParsedLink(url=url, join_meeting_id="2151234567890", passcode="Ab3xYz9Q")
    assert parsed.is_short
    assert parse_join_link("teams.microsoft.com/meet/2151234567890").passcode is None


def test_safe_links_wrapper_is_unwrapped() -> None:
    wrapped = f"https://nam12.safelinks.protection.outlook.com/?url={quote(LONG, safe='')}&data=05%7C01&reserved=0"
    parsed = parse_join_link(wrapped)
    assert parsed.thread_id == THREAD and parsed.url == LONG


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no link"),
        ("   ", "no link"),
        (LONG.replace("https://", "http://"), "https://"),
        (LONG.replace("https://", "ftp://"), "https://"),
        ("https://teams.microsoft.com:8443/meet/123456789?p=x", "port"),
        (LONG.replace("teams.microsoft.com", "teams.example.com"), "not a Teams address"),
        (LONG.replace("teams.microsoft.com", "teams.microsoft.com.evil.example"), "not a Teams address"),
        ("https://teams.live.com/meet/9312345678901?p=abc", "personal use"),
        ("https://teams.microsoft.com/l/chat/0/0?users=someone", "not a meeting join link"),
        ("https://teams.microsoft.com/", "not a meeting join link"),
        ("https://teams.microsoft.com/l/meetup-join/", "the form"),
        ("https://teams.microsoft.com/l/meetup-join/hello/0", "chat thread"),
        (long_link(thread="19:abc/x@thread.v2"), "chat thread"),
        (long_link(context="{not json"), "not valid JSON"),
        (long_link(context="[1, 2]"), "not a JSON object"),
        (long_link(context={"Tid": TENANT, "Oid": 42}), "organizer id"),
        (long_link(context={"Tid": "contoso", "Oid": ORGANIZER}), "tenant id"),
        (long_link(context="[" * 5000 + "]" * 5000), "longer than"),
        (LONG.split("?")[0] + "?context=" + "[" * 1300 + "]" * 1300, "not valid JSON"),  # too deep for json
        ("https://teams.microsoft.com/meet/abc?p=x", "meeting id digits"),
        ("https://teams.microsoft.com/meet/123456789/extra", "meeting id digits"),
        ("https://teams.microsoft.com/meet/123456789?p=%3Cscript%3E", "passcode"),
        ("https://[teams.microsoft.com/meet/1", "not a valid URL"),
        ("https://nam12.safelinks.protection.outlook.com/?data=1", "Safe Links"),
        ("mailto:someone@example.com", "not a Teams address"),
        ("join the meeting at " + LONG, "spaces"),
    ],
)
def test_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(JoinLinkError, match=reason):
        parse_join_link(text)


def test_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_join_link("nope")


@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_our_error(text: str) -> None:
    try:
        parse_join_link(text)
    except JoinLinkError:
        pass


_URL_ALPHABET = st.sampled_from([*"abc019:/?&=%@._-~[]{}\"'#+ ", "%3a", "%40", "%7b", "%7d", "%22", "%2c"])


@given(
    prefix=st.sampled_from(
        ["https://teams.microsoft.com/l/meetup-join/", "https://teams.microsoft.com/meet/", "teams.microsoft.com/", ""]
    ),
    rest=st.lists(_URL_ALPHABET, max_size=60).map("".join),
)
def test_link_shaped_text_raises_only_our_error(prefix: str, rest: str) -> None:
    try:
        parsed = parse_join_link(prefix + rest)
    except JoinLinkError:
        return
    assert (parsed.thread_id is None) != (parsed.join_meeting_id is None)


@given(key=st.text(alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd")), min_size=1, max_size=40))
def test_any_meeting_key_round_trips(key: str) -> None:
    thread = f"19:meeting_{key}@thread.v2"
    assert parse_join_link(long_link(thread=thread)).thread_id == thread
