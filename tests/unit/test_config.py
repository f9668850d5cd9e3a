"""Tests for bot.config: the example and sandbox files, environment overrides, secrets, one-line errors, the CLI."""

from __future__ import annotations

import base64
import logging
import math
import os
import re
import subprocess
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from bot.config import (
    AcsSection,
    BridgeSection,
    BrowserSection,
    MeetingConfig,
    RelaySection,
    Settings,
    WebhookClient,
    env_overrides,
    load_settings,
)
from bot.errors import ConfigError
from bot.links import parse_join_link
from bot.models import IdentityMode

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "bridge.example.toml"
SANDBOX = ROOT / "config" / "sandbox.toml"

WHSEC = "whsec_" + base64.b64encode(bytes(range(1, 25))).decode()
WHSEC_2 = "whsec_" + base64.b64encode(bytes(range(101, 133))).decode()
CONNECTION = "endpoint=https://bridge-test.communication.azure.com/;accesskey=" + base64.b64encode(b"k" * 48).decode()
EXAMPLE_ENV = {
    "BRIDGE_ACS_CONNECTION_STRING": CONNECTION,
    "BRIDGE_GRAPH_CLIENT_SECRET": "gR4ph-s3cret.value~42",
    "BRIDGE_WEBHOOK_APP_SECRET": WHSEC,
    "BRIDGE_SMS_EVENTS_SECRET": "sms-events-code-8f2k",
    "BRIDGE_TWILIO_AUTH_TOKEN": "0f9e8d7c6b5a49382716a5b4c3d2e1f0",
    "BRIDGE_ADMIN_TOKEN": "adm-7Hq2LpX9vR4sT6wZ",
}
LONG_LINK = (
    "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NzdmODhiOGQtMDY4Yi00MDIyLTk1MzktMmRjNjIzNmFhMzM4"
    "%40thread.v2/0"
)


@pytest.fixture
def example_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The variables the example references, set in os.environ (for check-config subprocesses) and in the mapping
    handed to load_settings."""
    for name in list(os.environ):
        if name.startswith("BRIDGE"):
            monkeypatch.delenv(name)
    for name, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(name, value)
    return dict(EXAMPLE_ENV)


def write(tmp_path: Path, text: str, name: str = "bridge.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path | None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {} if environ is None else environ)
    message = str(caught.value)
    assert message and len(message.splitlines()) == 1, message
    return message


# the shipped files ------------------------------------------------------------------------------------------


def test_example_validates(example_env: dict[str, str]) -> None:
    s = load_settings(EXAMPLE, example_env)
    assert not s.use_sandbox
    assert s.acs.connection_string is not None
    assert s.acs.connection_string.get_secret_value() == CONNECTION
    assert s.graph.configured
    assert s.graph.client_secret is not None
    assert s.graph.client_secret.get_secret_value() == EXAMPLE_ENV["BRIDGE_GRAPH_CLIENT_SECRET"]
    app = s.webhook_clients["app"]
    assert [x.get_secret_value() for x in app.secrets] == [WHSEC]
    assert app.callback_url and app.callback_url.startswith("https://")
    long, short, graph = s.meetings
    assert long.link and "/l/meetup-join/" in long.link and long.graph_meeting_id is None
    assert short.link and "/meet/" in short.link and short.organizer_id
    assert graph.link is None and graph.graph_meeting_id and graph.organizer_id
    assert {m.identity_mode for m in s.meetings} == {IdentityMode.PER_USER, IdentityMode.SHARED}
    assert all(m.code and m.name for m in s.meetings)
    assert short.allow == ["webhook:app/*", "sms:+1555*"]
    # Secrets never show in a repr or a dump.
    assert CONNECTION not in repr(s) and WHSEC not in str(s.model_dump())


def test_example_sets_values_equal_to_the_defaults_it_documents(example_env: dict[str, str]) -> None:
    s = load_settings(EXAMPLE, example_env)
    defaults = Settings()
    for section in ("bridge", "http", "sandbox", "calls", "relay"):
        assert getattr(s, section) == getattr(defaults, section), section
    assert s.acs.token_minutes == AcsSection().token_minutes
    client = WebhookClient.model_validate({"secrets": [WHSEC]})
    assert s.webhook_clients["app"].max_message_bytes == client.max_message_bytes
    assert s.webhook_clients["app"].rate_per_second == client.rate_per_second


def _models() -> list[type[BaseModel]]:
    """Settings and every model under it, found from the annotations so a new section or field is noticed."""
    found: list[type[BaseModel]] = [Settings]
    for info in Settings.model_fields.values():
        candidates = [info.annotation, *typing.get_args(info.annotation)]
        found += [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    return found + [m for section in found[1:] for m in _subsections(section).values()]


def _subsections(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """A section's own tables, such as [calls.browser]."""
    return {
        name: info.annotation
        for name, info in model.model_fields.items()
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
    }


def test_the_model_list_is_complete() -> None:
    assert {WebhookClient, MeetingConfig, BridgeSection, RelaySection, BrowserSection} <= set(_models())
    assert len(_models()) == len(Settings.model_fields) + 1 + 1  # Settings, its sections, and [calls.browser]


@pytest.mark.parametrize("model", _models(), ids=lambda m: m.__name__)
def test_example_mentions_every_setting(model: type[BaseModel]) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for field in model.model_fields:
        if model is Settings:
            assert re.search(rf"^\[\[?{field}[\].]", text, re.M), f"no [{field}] section in the example"
        elif field in _subsections(model):
            assert re.search(rf"^\[[a-z_]+\.{field}\]", text, re.M), f"no [*.{field}] table in the example"
        else:
            key = model.model_fields[field].alias or field  # the name the file uses
            assert re.search(rf"^#? ?{key} = ", text, re.M), f"{model.__name__}.{key} is not in the example"


def test_example_documents_the_variables_it_references() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    referenced = set(re.findall(r'^[a-z_]+ = \[?"env:([A-Z0-9_]+)"', text, re.M))
    assert referenced == set(EXAMPLE_ENV)
    header = text.split("\n\n[bridge]")[0]
    for name in referenced:
        assert f"#     {name}" in header, f"{name} is not listed in the example's header"


def test_example_meeting_links_parse(example_env: dict[str, str]) -> None:
    links = [m.link for m in load_settings(EXAMPLE, example_env).meetings if m.link]
    assert len(links) == 2
    long, short = (parse_join_link(link) for link in links)
    assert long.thread_id and long.thread_id.endswith("@thread.v2")
    assert short.is_short and short.join_meeting_id and short.passcode


def test_example_fails_clearly_without_its_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in EXAMPLE_ENV:
        monkeypatch.delenv(name, raising=False)
    message = config_error(EXAMPLE)
    assert message.startswith("acs.connection_string: ")
    assert "BRIDGE_ACS_CONNECTION_STRING" in message and str(EXAMPLE) in message


def test_sandbox_file_validates_as_is() -> None:
    s = load_settings(SANDBOX, {})
    assert s.use_sandbox
    assert s.sandbox.demo
    assert s.acs.connection_string is None
    assert s.meetings == [] and s.webhook_clients == {}


def test_sandbox_file_is_what_run_uses_without_a_config() -> None:
    assert load_settings(SANDBOX, {}) == load_settings(None, {})


# environment overrides --------------------------------------------------------------------------------------


def test_env_overrides_win_over_the_file(example_env: dict[str, str]) -> None:
    other = CONNECTION.replace("bridge-test", "other")
    meetings = '[{"link": "https://teams.microsoft.com/meet/2151234567890?p=Ab3xYz9Q", "code": "4321"}]'
    environ = example_env | {
        "BRIDGE__BRIDGE__PORT": "9000",
        "BRIDGE__ACS__CONNECTION_STRING": other,
        "BRIDGE__RELAY__HOLD_WHILE_JOINING": "false",
        "BRIDGE__RELAY__POLL_ACTIVE_S": "0.5",
        "BRIDGE__MEETINGS": meetings,
        "BRIDGE__WEBHOOK_CLIENTS__APP__SECRETS": f'["{WHSEC_2}", "env:BRIDGE_WEBHOOK_APP_SECRET"]',
        "BRIDGE__Relay__Max_Attempts": "5",  # section and key are case-insensitive
        "bridge__bridge__host": "0.0.0.0",  # the prefix is not
        "NOT_BRIDGE__BRIDGE__PORT": "1",
        "PATH": os.environ.get("PATH", ""),
    }
    s = load_settings(EXAMPLE, environ)
    assert s.bridge.port == 9000
    assert s.acs.connection_string is not None and s.acs.connection_string.get_secret_value() == other
    assert s.relay.hold_while_joining is False and s.relay.poll_active_s == 0.5
    assert [m.code for m in s.meetings] == ["4321"]  # a list is replaced, not merged
    assert [x.get_secret_value() for x in s.webhook_clients["app"].secrets] == [WHSEC_2, WHSEC]
    # The rest of the client's table still comes from the file.
    assert s.webhook_clients["app"].callback_url == "https://app.example.com/bridge/callback"
    assert s.relay.max_attempts == 5
    assert s.bridge.host == "127.0.0.1"


def test_env_overrides_alone_configure_a_bridge() -> None:
    environ = {
        "BRIDGE__ACS__CONNECTION_STRING": CONNECTION,
        "BRIDGE__WEBHOOK_CLIENTS__APP__SECRETS": WHSEC,
        "BRIDGE__MEETINGS": f'[{{"link": "{LONG_LINK}", "allow": ["webhook:app/*"]}}]',
    }
    s = load_settings(None, environ)
    assert not s.use_sandbox
    assert s.webhook_clients["app"].secrets[0].get_secret_value() == WHSEC
    assert s.meetings[0].allow == ["webhook:app/*"]


def test_env_override_tree() -> None:
    tree = env_overrides({"BRIDGE__A__B": "1", "BRIDGE__A__C": '"x"', "BRIDGE__D": "plain text", "OTHER": "1"})
    # Scalars stay strings for each setting's own type to parse; lists, tables and quoted strings are JSON.
    assert tree == {"a": {"b": "1", "c": "x"}, "d": "plain text"}


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("BRIDGE__BRIDGE__PORT", "not-a-port", "bridge.port"),
        ("BRIDGE__BRIDGE__PORT", "70000", "bridge.port"),
        ("BRIDGE__RELAY__MAX_ATTEMPTS", "0", "relay.max_attempts"),
        ("BRIDGE__MEETINGS", '[{"code": "1234"}]', "meetings.0"),
        ("BRIDGE__MEETINGS", "not json", "meetings"),
        ("BRIDGE__NOPE__X", "1", "nope"),
        ("BRIDGE__WEBHOOK_CLIENTS__APP__SECRETS", "[]", "webhook_clients.app.secrets"),
    ],
)
def test_bad_env_override_names_the_key(name: str, value: str, key: str) -> None:
    message = config_error(None, {name: value})
    assert message.startswith(f"{key}: "), message


def test_conflicting_env_overrides_are_a_config_error() -> None:
    message = config_error(None, {"BRIDGE__BRIDGE": "5", "BRIDGE__BRIDGE__PORT": "1"})
    assert "BRIDGE__BRIDGE__PORT" in message


# secrets ----------------------------------------------------------------------------------------------------


def test_env_and_file_secrets_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_BRIDGE_CONN", CONNECTION)
    (tmp_path / "whsec").write_text(f"  {WHSEC}\n", encoding="utf-8")
    (tmp_path / "graph").write_text("graph-secret-value\n", encoding="utf-8")
    path = write(
        tmp_path,
        f"""
[acs]
connection_string = "env:TEST_BRIDGE_CONN"
[graph]
tenant_id = "t"
client_id = "c"
client_secret = "file:{tmp_path / "graph"}"
[webhook_clients.app]
secrets = ["file:{tmp_path / "whsec"}", "{WHSEC_2}"]
""",
    )
    s = load_settings(path, {"TEST_BRIDGE_CONN": CONNECTION})
    assert s.acs.connection_string is not None and s.acs.connection_string.get_secret_value() == CONNECTION
    assert s.graph.client_secret is not None and s.graph.client_secret.get_secret_value() == "graph-secret-value"
    assert [x.get_secret_value() for x in s.webhook_clients["app"].secrets] == [WHSEC, WHSEC_2]


def test_a_single_secret_string_is_accepted(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, f'[webhook_clients.app]\nsecrets = "{WHSEC}"\n'), {})
    assert len(s.webhook_clients["app"].secrets) == 1


@pytest.mark.parametrize(
    ("toml", "key", "words"),
    [
        ('[acs]\nconnection_string = "env:BRIDGE_TEST_UNSET_VAR"', "acs.connection_string", "BRIDGE_TEST_UNSET_VAR"),
        ('[graph]\nclient_secret = "env:BRIDGE_TEST_UNSET_VAR"', "graph.client_secret", "is not set"),
        (
            '[webhook_clients.app]\nsecrets = ["env:BRIDGE_TEST_UNSET_VAR"]',
            "webhook_clients.app.secrets",
            "BRIDGE_TEST_UNSET_VAR",
        ),
        ('[acs]\nconnection_string = "file:/nonexistent/bridge/secret"', "acs.connection_string", "cannot read"),
        ('[webhook_clients.app]\nsecrets = ["file:/nonexistent/s"]', "webhook_clients.app.secrets", "/nonexistent/s"),
    ],
)
def test_missing_secret_source_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, key: str, words: str
) -> None:
    monkeypatch.delenv("BRIDGE_TEST_UNSET_VAR", raising=False)
    message = config_error(write(tmp_path, toml))
    assert message.startswith(f"{key}: ") and words in message, message


def test_secret_file_that_is_a_directory(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, f'[acs]\nconnection_string = "file:{tmp_path}"'))
    assert message.startswith("acs.connection_string: cannot read secret file")


@pytest.mark.parametrize(
    "placeholder",
    ["change_me", "CHANGEME", "<your key>", "TODO", "xxx", "replace-this"],
)
@pytest.mark.parametrize(
    ("template", "key"),
    [
        ('[acs]\nconnection_string = "endpoint=https://a.example/;accesskey={}"', "acs.connection_string"),
        ('[graph]\nclient_secret = "{}"', "graph.client_secret"),
        ('[webhook_clients.app]\nsecrets = ["whsec_{}"]', "webhook_clients.app.secrets"),
    ],
)
def test_placeholder_secrets_are_refused(tmp_path: Path, placeholder: str, template: str, key: str) -> None:
    message = config_error(write(tmp_path, template.format(placeholder)))
    assert message.startswith(f"{key}: ") and "placeholder" in message, message


def test_placeholder_behind_an_env_reference_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_TEST_GRAPH_SECRET", "change_me")
    message = config_error(write(tmp_path, '[graph]\nclient_secret = "env:BRIDGE_TEST_GRAPH_SECRET"'))
    assert message.startswith("graph.client_secret: ") and "placeholder" in message


def test_secret_references_resolve_against_the_given_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIDGE_TEST_ONLY_IN_MAPPING", raising=False)
    path = write(tmp_path, '[acs]\nconnection_string = "env:BRIDGE_TEST_ONLY_IN_MAPPING"')
    s = load_settings(path, {"BRIDGE_TEST_ONLY_IN_MAPPING": CONNECTION})
    assert s.acs.connection_string is not None


# every invalid case names its key ---------------------------------------------------------------------------

MEETING = f'[[meetings]]\nlink = "{LONG_LINK}"\n'
CLIENT = f'[webhook_clients.app]\nsecrets = ["{WHSEC}"]\n'

INVALID = [
    ("[bridge]\nport = 70000", "bridge.port"),
    ("[bridge]\nport = -1", "bridge.port"),
    ('[bridge]\nport = "eighty"', "bridge.port"),
    ('[bridge]\nlog_level = "LOUD"', "bridge.log_level"),
    ("[bridge]\nhost = 5", "bridge.host"),
    ('[acs]\nconnection_string = "Server=db;Password=hunter2"', "acs.connection_string"),
    ("[acs]\ntoken_minutes = 30", "acs.token_minutes"),
    ("[acs]\ntoken_minutes = 2000", "acs.token_minutes"),
    ('[sandbox]\nenabled = "sometimes"', "sandbox.enabled"),
    ("[sandbox]\nport = 70000", "sandbox.port"),
    ('[sandbox]\ndemo = "perhaps"', "sandbox.demo"),
    ('[calls]\nconnector = "teams"', "calls.connector"),
    ("[calls.browser]\nlegs_per_page = 0", "calls.browser.legs_per_page"),
    ("[relay]\npoll_active_s = 0", "relay.poll_active_s"),
    ("[relay]\npoll_idle_s = 601", "relay.poll_idle_s"),
    ("[relay]\nidle_after_s = -1", "relay.idle_after_s"),
    ("[relay]\ninactivity_timeout_s = 0", "relay.inactivity_timeout_s"),
    ("[relay]\nmax_attempts = 0", "relay.max_attempts"),
    ("[relay]\nmerge_backlog = 1", "relay.merge_backlog"),
    ('[relay]\nhold_while_joining = "yes please"', "relay.hold_while_joining"),
    ("[webhook_clients.app]\ncallback_url = 'https://a.example'", "webhook_clients.app.secrets"),
    ("[webhook_clients.app]\nsecrets = []", "webhook_clients.app.secrets"),
    ('[webhook_clients.app]\nsecrets = ["s3cretvalue-without-prefix"]', "webhook_clients.app.secrets"),
    ('[webhook_clients.app]\nsecrets = ["whsec_not base64!"]', "webhook_clients.app.secrets"),
    ('[webhook_clients.app]\nsecrets = ["whsec_c2hvcnQ="]', "webhook_clients.app.secrets"),
    (CLIENT + 'callback_url = "ftp://a.example/x"', "webhook_clients.app.callback_url"),
    (CLIENT + "max_message_bytes = 0", "webhook_clients.app.max_message_bytes"),
    (CLIENT + "max_message_bytes = 28001", "webhook_clients.app.max_message_bytes"),
    (CLIENT + "rate_per_second = 0", "webhook_clients.app.rate_per_second"),
    (f'[webhook_clients."has space"]\nsecrets = ["{WHSEC}"]', "webhook_clients"),
    ("[[meetings]]\nname = 'no source'", "meetings.0"),
    (MEETING + 'graph_meeting_id = "abc"\norganizer_id = "4b1d7c8e-2f3a-4c5d-9e6f-7a8b9c0d1e2f"', "meetings.0"),
    ('[[meetings]]\ngraph_meeting_id = "abc"\norganizer_id = ".."', "meetings.0.organizer_id"),
    ('[[meetings]]\ngraph_meeting_id = "abc"\norganizer_id = "megan"', "meetings.0.organizer_id"),
    ('[[meetings]]\ngraph_meeting_id = ".."\norganizer_id = "megan@contoso.com"', "meetings.0.graph_meeting_id"),
    ('[[meetings]]\ngraph_meeting_id = "abc"', "meetings.0"),
    (MEETING + MEETING + 'code = "12"', "meetings.1.code"),
    (MEETING + 'code = "12ab56"', "meetings.0.code"),
    (MEETING + "code = 123456", "meetings.0.code"),
    (MEETING + 'identity_mode = "solo"', "meetings.0.identity_mode"),
    (MEETING + 'display_name_template = "{name} {email}"', "meetings.0.display_name_template"),
    (MEETING + 'display_name_template = "{name!r}"', "meetings.0.display_name_template"),
    (MEETING + 'display_name_template = "{name"', "meetings.0.display_name_template"),
    (MEETING + 'display_name_template = "  "', "meetings.0.display_name_template"),
    (MEETING + 'allow = "*"', "meetings.0.allow"),
    ("meetings = 5", "meetings"),
    ('bridge = "x"', "bridge"),
]


@pytest.mark.parametrize(("toml", "key"), INVALID)
def test_invalid_value_names_the_key(tmp_path: Path, toml: str, key: str) -> None:
    path = write(tmp_path, toml)
    message = config_error(path)
    assert message.startswith(f"{key}: "), message
    assert message.endswith(f" in {path}")


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("colour = 'blue'", "colour"),
        ("[bridge]\nprot = 8080", "bridge.prot"),
        ("[acs]\naccess_key = 'k'", "acs.access_key"),
        ("[graph]\nsecret = 'x'", "graph.secret"),
        ("[relay]\npoll_s = 1", "relay.poll_s"),
        (CLIENT + "secret = 'x'", "webhook_clients.app.secret"),
        (MEETING + "join_code = '1234'", "meetings.0.join_code"),
        ("[webhooks.app]\nsecrets = []", "webhooks"),
    ],
)
def test_unknown_keys_are_refused(tmp_path: Path, toml: str, key: str) -> None:
    message = config_error(write(tmp_path, toml))
    assert message.startswith(f"{key}: ") and "not permitted" in message, message


def test_several_errors_are_counted_on_one_line(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, "[bridge]\nport = -1\nlog_level = 'LOUD'\n[relay]\nmax_attempts = 0"))
    assert message.startswith("bridge.port: ") and "(and 2 more)" in message


def test_key_with_a_line_break_stays_on_one_line(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, '[bridge]\n"evil\\nkey" = 1'))
    assert message.startswith("bridge.evil\\nkey: ")


# unreadable files -------------------------------------------------------------------------------------------


def test_bad_toml_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[bridge]\nport = = 8080\n")
    message = config_error(path)
    assert message.startswith(f"{path}: not valid TOML: ") and "line 2" in message


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    message = config_error(tmp_path / "absent.toml")
    assert message == f"{tmp_path / 'absent.toml'}: cannot read: No such file or directory"


def test_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "utf16.toml"
    path.write_bytes("[bridge]\nport = 1\n".encode("utf-16"))
    assert config_error(path).startswith(f"{path}: not valid TOML: ")


def test_absurdly_nested_toml_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, "x = " + "[" * 5000 + "]" * 5000)
    assert config_error(path).startswith(f"{path}: not valid TOML: ")


# the check-config command -----------------------------------------------------------------------------------


def _check_config(path: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE")} | (extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", "check-config", "--config", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_refuses_a_bad_file_with_exit_code_2(tmp_path: Path) -> None:
    path = write(tmp_path, "[bridge]\nport = 70000\n")
    result = _check_config(path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "bridge.port" in lines[0] and str(path) in lines[0]


def test_check_config_accepts_the_example_and_the_sandbox_file() -> None:
    good = _check_config(EXAMPLE, EXAMPLE_ENV)
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("ok: 3 meetings, 1 webhook clients") and good.stderr == ""
    sandbox = _check_config(SANDBOX)
    assert sandbox.returncode == 0, sandbox.stderr
    assert sandbox.stdout.startswith("ok: ") and "embedded sandbox" in sandbox.stdout


# property: nothing but ConfigError ---------------------------------------------------------------------------


def _toml_string(value: str) -> str:
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_string(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_dumps(data: dict[str, Any]) -> str:
    """A tiny TOML writer for str/int/float/bool/list/dict values: every table inline."""
    return "".join(f"{_toml_string(k)} = {_toml_value(v)}\n" for k, v in data.items())


_SECTIONS = [name for name in Settings.model_fields]
_FIELDS = sorted({name for model in _models()[1:] for name in model.model_fields})
_SAMPLES = [
    WHSEC,
    CONNECTION,
    LONG_LINK,
    "https://teams.microsoft.com/meet/2151234567890?p=Ab3xYz9Q",
    "env:BRIDGE_TEST_UNSET_VAR",
    "env:PATH",
    "file:/nonexistent/secret",
    "file:",
    "env:",
    "{name} ({channel})",
    "{name",
    "{email}",
    "per_user",
    "relay",
    "auto",
    "always",
    "never",
    "sandbox",
    "client_reported",
    "INFO",
    "change_me",
    "https://a.example/cb",
    "123456",
    "*",
]
_leaf = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(_SAMPLES),
)
_any = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)
_field_key = st.sampled_from(_FIELDS) | st.text(max_size=6)
_section = st.dictionaries(_field_key, _leaf | _any, max_size=5)
_client = st.dictionaries(
    st.sampled_from([*WebhookClient.model_fields, "x"]),
    _leaf | st.lists(st.sampled_from(_SAMPLES) | st.text(max_size=8), max_size=3),
    max_size=4,
)
_meeting = st.dictionaries(
    st.sampled_from([*MeetingConfig.model_fields, "x"]),
    _leaf | st.lists(st.sampled_from(_SAMPLES), max_size=3),
    max_size=6,
)
_document = st.dictionaries(
    st.sampled_from(_SECTIONS) | st.text(max_size=6),
    st.one_of(
        _section,
        st.dictionaries(st.sampled_from(["app", "demo", "a b", ""]) | st.text(max_size=4), _client, max_size=2),
        st.lists(_meeting, max_size=3),
        _any,
    ),
    max_size=6,
)
_env_name = st.builds(
    lambda parts: "BRIDGE__" + "__".join(parts),
    st.lists(st.sampled_from([*_SECTIONS, *_FIELDS, "app", "secrets"]) | st.text(max_size=4), max_size=3),
)
_environ = st.dictionaries(
    _env_name, st.text(max_size=12) | st.sampled_from(["1", "true", "[]", "{}", '["*"]', "null", "{"]), max_size=3
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_document, environ=_environ)
def test_any_document_loads_or_raises_config_error(
    tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any], environ: dict[str, str]
) -> None:
    text = toml_dumps(data)
    assert tomllib.loads(text) == data  # the writer round-trips
    path = tmp_path_factory.getbasetemp() / "property.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_settings(path, environ)
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message and "\r" not in message


@pytest.mark.parametrize("pattern", ["sms:+1555*", "555*", "+1-555", "+1555*9"])
def test_sms_number_patterns_that_can_never_match_are_refused(tmp_path: Path, pattern: str) -> None:
    path = write(tmp_path, f'[sms]\ndeny = ["{pattern}"]\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    assert str(caught.value).startswith("sms.deny:")


def test_twilio_beyond_loopback_needs_its_public_url(tmp_path: Path) -> None:
    twilio = (
        '[acs]\nconnection_string = "endpoint=https://x.communication.azure.com/;accesskey=a2V5"\n'
        '[sms]\ngateway = "twilio"\nnumber = "+18005550199"\n'
        '[twilio]\naccount_sid = "AC0123"\nauth_token = "a-real-looking-token-value"\n'
    )
    exposed = write(tmp_path, '[bridge]\nhost = "0.0.0.0"\n' + twilio)
    assert "twilio.public_url is required" in config_error(exposed)
    # On loopback (a proxy on the same host, the sandbox) or with a public URL it is accepted.
    assert load_settings(write(tmp_path, twilio, "loopback.toml"), {}).sms.gateway == "twilio"
    public = twilio + 'public_url = "https://bridge.example.com/channels/twilio-sms"\n'
    assert load_settings(write(tmp_path, '[bridge]\nhost = "0.0.0.0"\n' + public, "public.toml"), {}).twilio.public_url


def test_the_shared_identity_mode_is_still_read_under_its_old_name(caplog: pytest.LogCaptureFixture) -> None:
    # Meetings stored and files written before the rename say "relay".
    assert IdentityMode("relay") is IdentityMode.SHARED
    with caplog.at_level(logging.WARNING, logger="bot.config"):
        meeting = MeetingConfig.model_validate({"link": LONG_LINK, "identity_mode": "relay"})
    assert meeting.identity_mode is IdentityMode.SHARED
    assert any('"relay" is now called "shared"' in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError):
        IdentityMode("relayed")
