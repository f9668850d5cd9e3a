"""bridge.store_url: the default from state_dir, both schemes, env:/file: passwords, and no password in any text."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import ConfigError
from bot.store_url import StoreUrl, StoreUrlError, parse_store_url

SECRET = "s3cr3t-Pa55"


def test_the_default_is_sqlite_in_the_state_dir() -> None:
    settings = load_settings(None, environ={"BRIDGE__BRIDGE__STATE_DIR": "/var/lib/bridge"})
    assert settings.store_url == StoreUrl.sqlite(Path("/var/lib/bridge/bridge.db"))
    assert settings.store_file == Path("/var/lib/bridge/bridge.db")


def test_sqlite_urls_name_a_relative_or_an_absolute_file() -> None:
    assert parse_store_url("sqlite:///state/bridge.db").path == Path("state/bridge.db")
    assert parse_store_url("sqlite:////var/lib/bridge.db").path == Path("/var/lib/bridge.db")
    with pytest.raises(StoreUrlError):
        parse_store_url("sqlite://bridge.db")


def test_a_postgresql_url_from_the_environment_with_its_password_in_another_variable() -> None:
    environ = {
        "BRIDGE__BRIDGE__STORE_URL": "postgresql://bridge:env:BRIDGE_DB_PASSWORD@db.internal:6432/meetings?pool_size=4",
        "BRIDGE_DB_PASSWORD": SECRET,
    }
    url = load_settings(None, environ=environ).store_url
    assert (url.backend, url.host, url.port, url.user, url.database, url.pool_size) == (
        "postgresql",
        "db.internal",
        6432,
        "bridge",
        "meetings",
        4,
    )
    assert url.password == SECRET
    assert str(url) == "postgresql://bridge:***@db.internal:6432/meetings"
    assert SECRET not in repr(url)
    with pytest.raises(ConfigError, match="the store is not a file"):
        _ = load_settings(None, environ=environ).store_file


def test_a_file_password_needs_no_escaping_and_a_literal_one_is_percent_decoded(tmp_path: Path) -> None:
    secret_file = tmp_path / "pg-password"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    environ = {"BRIDGE__BRIDGE__STORE_URL": f"postgres://bridge:file:{secret_file}@127.0.0.1/bridge"}
    url = load_settings(None, environ=environ).store_url
    assert (url.password, url.port, url.database) == (SECRET, 5432, "bridge")
    assert parse_store_url("postgresql://u:p%40ss%2Fw@h/db").password == "p@ss/w"
    assert parse_store_url("postgresql://[::1]:5433/db").host == "::1"


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        (f"mysql://bridge:{SECRET}@h/db", "must start with"),
        (f"postgresql://bridge:{SECRET}@h:99999/db", "port"),
        (f"postgresql://bridge:{SECRET}@h/", "names no database"),
        (f"postgresql://bridge:{SECRET}@h/db?sslmode=sometimes", "sslmode"),
        (f"postgresql://bridge:{SECRET}@h/db?application_name={SECRET}", "unknown option"),
        (f"postgresql://bridge:{SECRET}@h/db?pool_size=0", "pool_size"),
        ("postgresql://bridge:env:NOT_SET_ANYWHERE@h/db", "NOT_SET_ANYWHERE is not set"),
    ],
)
def test_a_bad_url_is_refused_in_one_line_without_the_password(url: str, complaint: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(None, environ={"BRIDGE__BRIDGE__STORE_URL": url})
    message = str(raised.value)
    assert message.startswith("bridge.store_url: ") and complaint in message
    assert SECRET not in message and "\n" not in message
    # Not in the chained validation error either, which a traceback would print.
    assert SECRET not in str(raised.value.__cause__)
