"""Property-based tests of what parses inbound bodies and settings: webhook events and signatures, Event Grid
deliveries (ACS SMS and chat events), Twilio forms and signatures, and configuration files with their environment
overrides. Nothing raises but the parser's own refusal; what is valid round-trips. HYPOTHESIS_PROFILE=thorough
runs many more examples."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from bot.channels import chat_events, eventgrid, webhook
from bot.channels.sms import acs as sms_acs
from bot.channels.sms import twilio as sms_twilio
from bot.config import Settings, WebhookClient, env_overrides, load_settings
from bot.errors import MAX_RETRY_AFTER_S, ConfigError, parse_retry_after
from bot.formatting import clean_name
from tests.support.bridge import new_secret
from tests.support.properties import ANY_TEXT, PROFILE

# Any JSON value, with the awkward corners: big and negative numbers, empty containers, keys of any text.
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    ANY_TEXT.map(lambda t: t[:40]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT.map(lambda t: t[:10]), inner, max_size=4),
    max_leaves=15,
)


def nested(depth: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * depth + closer * depth


RAW_BODIES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=1, max_value=50_000).map(nested),
    st.integers(min_value=1, max_value=20_000).map(lambda d: nested(d, b'{"a":', b"}")[:-1] + b"1" + b"}"),
    st.sampled_from([b"NaN", b"[Infinity]", b'"\\ud800"', b"\xef\xbb\xbf[]", "[1]".encode("utf-16"), b"", b" "]),
)


# ---------------------------------------------------------------- webhook events and signatures

_USER_ID = st.from_regex(r"[A-Za-z0-9_.@+-]{1,128}", fullmatch=True)
_VISIBLE = st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=256)
_NAMES = _VISIBLE.map(clean_name).filter(bool)
"""Names as the door stores them: cleaned (see test_webhook_names_are_stored_clean_or_refused)."""


def _maybe_named(event: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The event as it is, or with a display name for its user."""
    return st.just(event) | _NAMES.map(lambda name: {**event, "user": {**event["user"], "displayName": name}})


_TYPES = ["message", "join", "leave", "forget", "call"]
WEBHOOK_EVENTS = st.fixed_dictionaries(
    {"type": st.sampled_from(_TYPES), "user": st.fixed_dictionaries({"id": _USER_ID})},
    optional={
        "meeting": _VISIBLE.map(lambda t: t[:128]),
        "text": st.text(max_size=200),
        "state": st.sampled_from(list(webhook.REPORTED_STATES)),
        "callId": st.from_regex(r"[A-Za-z0-9_.:@+-]{1,128}", fullmatch=True),
    },
).flatmap(_maybe_named)


@PROFILE
@given(body=RAW_BODIES | JSON_VALUES.map(lambda v: json.dumps({"type": "message", "user": v}).encode()))
def test_webhook_bodies_raise_only_validation_error(body: bytes) -> None:
    try:
        event = webhook.WebhookEvent.model_validate_json(body)
    except ValidationError as exc:
        assert exc.errors()  # the door answers with the first
        return
    assert event.type in _TYPES and event.user.id


@PROFILE
@given(event=WEBHOOK_EVENTS)
def test_valid_webhook_events_round_trip(event: dict[str, Any]) -> None:
    parsed = webhook.WebhookEvent.model_validate_json(json.dumps(event))
    assert parsed.model_dump(by_alias=True, exclude_unset=True) == event


@PROFILE
@given(name=_VISIBLE)
def test_webhook_names_are_stored_clean_or_refused(name: str) -> None:
    event = {"type": "join", "user": {"id": "ann", "displayName": name}, "meeting": "123456"}
    try:
        parsed = webhook.WebhookEvent.model_validate_json(json.dumps(event))
    except ValidationError as exc:
        assert not clean_name(name) and exc.errors()[0]["loc"] == ("user", "displayName")
        return
    assert parsed.user.display_name == clean_name(name) != ""


CLIENT = WebhookClient(secrets=[SecretStr(new_secret()), SecretStr(new_secret())])
_HEADER_VALUES = st.one_of(
    ANY_TEXT.map(lambda t: t[:60]),
    st.sampled_from(
        ["", "v1,", "v1,AAAA", "v1,@@@", "v2,abc", "v1,a,b", "v1 v1", ",", "1e400", "-1", "nan", "9" * 5000]
    ),
)


@PROFILE
@given(
    body=st.binary(max_size=200),
    headers=st.dictionaries(
        st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature", "Webhook-Signature", "x"]),
        _HEADER_VALUES,
        max_size=4,
    ),
)
def test_webhook_verify_refuses_with_a_reason_and_never_raises(body: bytes, headers: dict[str, str]) -> None:
    reason = webhook.verify(CLIENT, body, headers)
    assert reason is not None and reason == reason.lower()


@PROFILE
@given(
    payload=ANY_TEXT.filter(lambda t: not any("\ud800" <= ch <= "\udfff" for ch in t)),
    msg_id=st.from_regex(r"msg_[A-Za-z0-9]{1,40}", fullmatch=True),
    skew_s=st.integers(min_value=-240, max_value=240),
    which=st.sampled_from([0, 1]),
    flip=st.integers(min_value=0, max_value=10_000),
)
def test_a_signed_body_verifies_and_any_change_does_not(
    payload: str, msg_id: str, skew_s: int, which: int, flip: int
) -> None:
    secret = CLIENT.secrets[which].get_secret_value()  # any secret of a rotation signs
    headers = webhook.sign(secret, msg_id, payload, datetime.now(UTC) + timedelta(seconds=skew_s))
    body = payload.encode()
    assert webhook.verify(CLIENT, body, headers) is None
    tampered = bytearray(body + b" ")
    tampered[flip % len(tampered)] ^= 0x01
    assert webhook.verify(CLIENT, bytes(tampered), headers) is not None
    assert webhook.verify(CLIENT, body, headers | {"webhook-id": msg_id + "x"}) is not None


# ---------------------------------------------------------------- Event Grid deliveries


@PROFILE
@given(body=RAW_BODIES)
def test_event_grid_bodies_give_events_or_bad_body(body: bytes) -> None:
    try:
        events = eventgrid.parse_events(body)
    except eventgrid.BadBody as exc:
        assert str(exc)
        return
    assert isinstance(events, list)
    assert json.loads(body.decode("utf-8")) in (events, events[0] if len(events) == 1 else object())


_KINDS = st.sampled_from(
    [sms_acs.SMS_RECEIVED, sms_acs.SMS_DELIVERY_REPORT, eventgrid.VALIDATION_EVENT, *chat_events.CHAT_EVENTS, "Other"]
)
_EVENTS = st.fixed_dictionaries(
    {},
    optional={
        "id": JSON_SCALARS,
        "eventType": _KINDS | JSON_SCALARS,
        "type": _KINDS | JSON_SCALARS,
        "data": JSON_VALUES
        | st.dictionaries(
            st.sampled_from(
                [
                    "messageId",
                    "from",
                    "to",
                    "message",
                    "deliveryStatus",
                    "deliveryStatusDetails",
                    "validationCode",
                    "threadId",
                ]
            ),
            JSON_SCALARS,
        ),
    },
)
ANY_EVENTS = st.lists(_EVENTS | JSON_VALUES, max_size=5)


@PROFILE
@given(event=_EVENTS | JSON_VALUES)
def test_sms_events_parse_or_raise_malformed(event: Any) -> None:
    try:
        parsed = sms_acs.parse_event(event)
    except sms_acs.Malformed as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    if parsed is None:
        return
    # What the door hands on is text SQLite and the SDKs can encode.
    sms, report = parsed.sms, parsed.report
    fields = [parsed.id, parsed.validation_code or ""]
    fields += [sms.provider_id, sms.from_number, sms.to_number, sms.text] if sms else []
    fields += [report.message_id, report.detail or ""] if report else []
    for value in fields:
        value.encode("utf-8")


_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=80)


@PROFILE
@given(
    event_id=_TEXT,
    message_id=_TEXT,
    sender=_TEXT,
    to=_TEXT,
    text=st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=300),
    cloud=st.booleans(),
)
def test_sms_received_events_round_trip(
    event_id: str, message_id: str, sender: str, to: str, text: str, cloud: bool
) -> None:
    data = {"messageId": message_id, "from": sender, "to": to, "message": text, "receivedTimestamp": "x"}
    event = {"id": event_id, ("type" if cloud else "eventType"): sms_acs.SMS_RECEIVED, "data": data}
    [raw] = eventgrid.parse_events(json.dumps(event).encode())
    parsed = sms_acs.parse_event(raw)
    assert parsed is not None and parsed.sms is not None
    assert (parsed.id, parsed.sms.provider_id, parsed.sms.from_number, parsed.sms.to_number, parsed.sms.text) == (
        event_id,
        message_id,
        sender,
        to,
        text,
    )


@PROFILE
@given(events=ANY_EVENTS)
def test_chat_events_name_threads_or_raise_malformed(events: list[Any]) -> None:
    try:
        read = chat_events.read_chat_events(events)
    except chat_events.Malformed as exc:
        assert str(exc)
        return
    named = {
        e["data"]["threadId"]
        for e in events
        if isinstance(e, dict) and isinstance(e.get("data"), dict) and isinstance(e["data"].get("threadId"), str)
    }
    assert set(read.threads) <= named and len(read.threads) == len(set(read.threads))
    assert 0 <= read.skipped < len(events) or not events  # all unreadable is Malformed
    for thread in read.threads:
        thread.encode("utf-8")


@PROFILE
@given(threads=st.lists(_TEXT, min_size=1, max_size=6), junk=st.lists(_EVENTS, max_size=3))
def test_every_readable_chat_event_names_its_thread(threads: list[str], junk: list[dict[str, Any]]) -> None:
    junk = [e for e in junk if (e.get("eventType") or e.get("type")) not in (eventgrid.VALIDATION_EVENT,)]
    good = [
        {"id": str(uuid.uuid4()), "eventType": chat_events.CHAT_EVENTS[0], "data": {"threadId": t}} for t in threads
    ]
    read = chat_events.read_chat_events(good + junk)
    assert read.validation_code is None and read.threads[: len(dict.fromkeys(threads))] == list(dict.fromkeys(threads))


# ---------------------------------------------------------------- Twilio forms and signatures

_FORM_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)


@PROFILE
@given(raw=st.binary(max_size=200) | ANY_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_twilio_bodies_give_fields_or_none(raw: bytes) -> None:
    form = sms_twilio.read_form(raw)
    assert form is None or all(isinstance(k, str) and isinstance(v, str) for k, v in form)


@PROFILE
@given(pairs=st.lists(st.tuples(_FORM_TEXT.filter(bool), _FORM_TEXT), max_size=8))
def test_twilio_forms_round_trip(pairs: list[tuple[str, str]]) -> None:
    assert sms_twilio.read_form(urlencode(pairs).encode()) == pairs


_URLS = st.one_of(
    st.builds(
        lambda scheme, host, port, path: f"{scheme}://{host}{port}{path}",
        st.sampled_from(["https", "http"]),
        st.sampled_from(["bridge.example.com", "127.0.0.1", "[::1]", "xn--bcher-kva.example"]),
        st.sampled_from(["", ":443", ":80", ":8443", ":99999", ":x"]),
        st.sampled_from(["/channels/twilio-sms", "/channels/twilio-sms?tenant=a&b=%20", "/", ""]),
    ),
    ANY_TEXT.map(lambda t: t[:60]),
)


@PROFILE
@given(
    token=_TEXT,
    url=_URLS,
    pairs=st.lists(st.tuples(_FORM_TEXT, _FORM_TEXT), max_size=6),
    other=_FORM_TEXT,
    forged=_HEADER_VALUES,
)
def test_twilio_signatures_verify_and_any_change_does_not(
    token: str, url: str, pairs: list[tuple[str, str]], other: str, forged: str
) -> None:
    signature = sms_twilio.twilio_signature(token, url, pairs)
    assert sms_twilio.verify_twilio(token, url, pairs, signature)
    assert not sms_twilio.verify_twilio(token + "x", url, pairs, signature)
    assume(("Extra", other) not in pairs)
    assert not sms_twilio.verify_twilio(token, url, [*pairs, ("Extra", other)], signature)
    assert sms_twilio.verify_twilio(token, url, pairs, forged) == (forged == signature)


_RETRY_AFTERS = ["120", " 7 ", "\u00b2", "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 +2359"]
_RETRY_AFTERS += ["Mon, 01 Jan 0001 00:00:00 -2359", "99999999999999999999999", "1e9", "-5"]


@PROFILE
@given(value=st.none() | ANY_TEXT | st.sampled_from(_RETRY_AFTERS))
def test_retry_after_is_bounded_seconds_or_none(value: str | None) -> None:
    seconds = parse_retry_after({"Retry-After": value} if value is not None else None)
    assert seconds is None or 0 <= seconds <= MAX_RETRY_AFTER_S


# ---------------------------------------------------------------- configuration


def _toml_string(value: str) -> str:
    return json.dumps(value)  # TOML basic strings take JSON's escapes (\uXXXX included)


_TOML_FRAGMENTS = st.sampled_from(
    [
        "[sms]\nsegment_cap = 3\n",
        "[sms]\nsegment_cap = 0\n",
        "[bridge]\nport = 99999\n",
        '[admin]\ntoken = "short"\n',
        '[admin]\ntoken = "env:NOT_SET_ANYWHERE"\n',
        '[admin]\ntoken = "file:/nonexistent"\n',
        '[admin]\ntoken = "file:/"\n',
        '[admin]\ntoken = "file:/dev/null\\u0000x"\n',
        '[[meetings]]\nlink = "https://teams.microsoft.com/meet/12345678?p=x"\n',
        '[[meetings]]\nlink = "https://example.com"\n',
        '[webhook_clients.app]\nsecrets = ["whsec_short"]\n',
        '[webhook_clients."a b"]\nsecrets = []\n',
        "[sms]\nallow = [1, 2]\n",
        "[sms]\ntexts = { help = 5 }\n",
        "[relay]\npoll_active_s = inf\n",
        "[relay]\npoll_active_s = nan\n",
        "a = [" + "[" * 5000 + "]" * 5000 + "]\n",
        "a = " + "{b = " * 3000 + "1" + "}" * 3000 + "\n",
        "[bridge\n",
        "= 1\n",
        "\ufeff[bridge]\n",
        "[bridge]\nport = 1\n[bridge]\nport = 2\n",
    ]
)
CONFIG_TEXT = st.lists(_TOML_FRAGMENTS | ANY_TEXT.map(lambda t: t[:50]), max_size=4).map("".join)
_ENV_KEYS = st.builds(
    lambda parts: "BRIDGE__" + "__".join(parts),
    st.lists(
        st.sampled_from(["SMS", "sms", "SEGMENT_CAP", "ADMIN", "TOKEN", "BRIDGE", "PORT", "WEBHOOK_CLIENTS", "APP"])
        | st.sampled_from(["SECRETS", "MEETINGS", "", "RELAY", "x"]),
        max_size=4,
    ),
)
_ENV_VALUES = st.one_of(
    ANY_TEXT.map(lambda t: t[:30].replace("\x00", "")),
    JSON_VALUES.map(json.dumps),
    st.sampled_from(["[" * 100_000, "[" * 3000 + "]" * 3000, '{"a": ' * 3000, "null", "[]", "{}", '"x"', "1e999"]),
)
ENVIRON = st.dictionaries(_ENV_KEYS, _ENV_VALUES, max_size=4)


def _check_one_line(exc: ConfigError) -> None:
    message = str(exc)
    assert message and "\n" not in message and "\r" not in message


@PROFILE
@given(text=CONFIG_TEXT | st.binary(max_size=200).map(lambda b: b.decode("latin-1")), environ=ENVIRON)
def test_any_config_file_and_environment_load_or_raise_config_error(
    tmp_path_factory: pytest.TempPathFactory, text: str, environ: dict[str, str]
) -> None:
    path = tmp_path_factory.getbasetemp() / "properties.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        settings = load_settings(path, environ)
    except ConfigError as exc:
        _check_one_line(exc)
        return
    assert isinstance(settings, Settings)


@PROFILE
@given(raw=st.binary(max_size=100))
def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    path = tmp_path_factory.getbasetemp() / "bytes.toml"
    path.write_bytes(raw)
    try:
        load_settings(path, {})
    except ConfigError as exc:
        _check_one_line(exc)


@PROFILE
@given(environ=st.dictionaries(_ENV_KEYS | ANY_TEXT.map(lambda t: t[:20]), _ENV_VALUES, max_size=6))
def test_env_overrides_make_a_tree_or_raise_config_error(environ: dict[str, str]) -> None:
    try:
        tree = env_overrides(environ)
    except ConfigError as exc:
        _check_one_line(exc)
        return
    assert all(key == key.lower() for key in tree)


_RANGED = [
    ("sms", "segment_cap", 1, 10),
    ("sms", "name_max_chars", 1, 256),
    ("bridge", "port", 0, 65535),
    ("acs", "token_minutes", 60, 1440),
    ("relay", "max_attempts", 1, 100),
]


@PROFILE
@given(field=st.sampled_from(_RANGED), in_file=st.integers(-5, 70_000), in_env=st.integers(-5, 70_000))
def test_an_environment_override_wins_and_is_checked_like_the_file(
    tmp_path_factory: pytest.TempPathFactory, field: tuple[str, str, int, int], in_file: int, in_env: int
) -> None:
    section, key, low, high = field
    path = tmp_path_factory.getbasetemp() / "ranged.toml"
    path.write_text(f"[{section}]\n{key} = {in_file}\n", encoding="utf-8")
    environ = {f"BRIDGE__{section.upper()}__{key.upper()}": str(in_env)}
    if low <= in_env <= high:
        loaded = load_settings(path, environ)
        assert getattr(getattr(loaded, section), key) == in_env  # whatever the file said
    else:
        with pytest.raises(ConfigError) as caught:
            load_settings(path, environ)
        assert str(caught.value).startswith(f"{section}.{key}:")


@PROFILE
@given(token=st.text(alphabet=st.characters(exclude_categories=("Cs", "Cc")), max_size=40))
def test_secrets_from_the_environment_resolve_or_are_refused(token: str) -> None:
    environ = {"BRIDGE__ADMIN__TOKEN": "env:OPERATOR_TOKEN", "OPERATOR_TOKEN": token}
    try:
        settings = load_settings(None, environ)
    except ConfigError as exc:
        _check_one_line(exc)
        assert str(exc).startswith("admin.token:")
        return
    assert settings.admin.token is not None and settings.admin.token.get_secret_value() == token
    assert len(token) >= 16


def test_a_path_given_as_a_secret_file_that_is_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings(None, {"BRIDGE__ADMIN__TOKEN": f"file:{tmp_path}"})
