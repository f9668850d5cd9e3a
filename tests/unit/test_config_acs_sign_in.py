"""Which ways of signing in to the ACS resource the settings accept: the key of a connection string, or the endpoint
with Entra ID (DefaultAzureCredential or a client secret); anything else is one line naming the key, exit 2."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import ConfigError

ENDPOINT = "https://contoso.communication.azure.com/"
CONNECTION = f"endpoint={ENDPOINT};accesskey=" + base64.b64encode(b"k" * 48).decode()
TRIPLE = {"tenant_id": "t-1", "client_id": "c-1", "client_secret": "Zq8-app-s3cret"}


def _settings(tmp_path: Path, acs: dict[str, str]) -> Path:
    lines = ["[acs]", *(f'{key} = "{value}"' for key, value in acs.items())]
    path = tmp_path / "bridge.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("acs", "credential", "sign_in"),
    [
        ({"connection_string": CONNECTION}, None, "the access key"),
        ({"endpoint": ENDPOINT, "credential": "default"}, "default", "Entra ID (DefaultAzureCredential)"),
        ({"endpoint": ENDPOINT, **TRIPLE}, "client_secret", "Entra ID (client secret)"),
        ({"endpoint": ENDPOINT, "credential": "client_secret", **TRIPLE}, "client_secret", "Entra ID (client secret)"),
        ({"connection_string": CONNECTION, "endpoint": ENDPOINT}, None, "the access key"),
    ],
)
def test_valid_sign_ins(tmp_path: Path, acs: dict[str, str], credential: str | None, sign_in: str) -> None:
    settings = load_settings(_settings(tmp_path, acs), {})
    assert settings.acs.endpoint == ENDPOINT
    assert settings.acs.credential == credential and settings.acs.sign_in == sign_in
    assert not settings.use_sandbox


@pytest.mark.parametrize(
    ("acs", "key", "words"),
    [
        ({"endpoint": ENDPOINT}, "acs.credential", "needed with endpoint"),
        ({"credential": "default"}, "acs.endpoint", "needed with credential"),
        ({"endpoint": ENDPOINT, "credential": "default", "tenant_id": "t-1"}, "acs.tenant_id", "not used with"),
        ({"endpoint": ENDPOINT, "tenant_id": "t-1", "client_id": "c-1"}, "acs.client_secret", "needed"),
        ({"endpoint": ENDPOINT, "credential": "client_secret"}, "acs.tenant_id", "needed"),
        ({"connection_string": CONNECTION, "credential": "default"}, "acs.credential", "not used with connection"),
        ({"connection_string": CONNECTION, **TRIPLE}, "acs.tenant_id", "not used with connection"),
        ({"connection_string": CONNECTION, "endpoint": "https://other.example/"}, "acs.endpoint", "differs"),
        ({"endpoint": "http://contoso.example/", "credential": "default"}, "acs.endpoint", "https://"),
        ({"endpoint": ENDPOINT, "credential": "managed"}, "acs.credential", "'default' or 'client_secret'"),
    ],
)
def test_other_combinations_are_one_line_naming_the_key(
    tmp_path: Path, acs: dict[str, str], key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_settings(tmp_path, acs), {})
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"{key}: ") and words in message, message


def test_check_config_names_the_sign_in_or_exits_2(tmp_path: Path) -> None:
    good = _settings(tmp_path, {"endpoint": ENDPOINT, "credential": "default"})
    done = subprocess.run(
        [sys.executable, "-m", "bot", "check-config", "--config", str(good)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert f"the ACS resource at {ENDPOINT}, signing in with Entra ID (DefaultAzureCredential)" in done.stdout
    bad = _settings(tmp_path, {"endpoint": ENDPOINT})
    done = subprocess.run(
        [sys.executable, "-m", "bot", "check-config", "--config", str(bad)], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.startswith("config error: acs.credential: ") and len(done.stderr.splitlines()) == 1


def test_never_the_sandbox_needs_some_resource(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text('[sandbox]\nenabled = "never"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"acs\.connection_string"):
        load_settings(path, {})
    path.write_text(f'[sandbox]\nenabled = "never"\n[acs]\nendpoint = "{ENDPOINT}"\ncredential = "default"\n')
    assert not load_settings(path, {}).use_sandbox
