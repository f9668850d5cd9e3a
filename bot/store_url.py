"""store_url: sqlite:///path or postgresql://user:password@host:port/db, parsed once, shown without its password."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote

DEFAULT_PG_PORT = 5432
POOL_SIZE = 10
_SCHEMES = {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql"}
_SSLMODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})


class StoreUrlError(ValueError):
    """The URL is malformed; the message names what is wrong and never holds the password."""


@dataclass(frozen=True)
class StoreUrl:
    backend: Literal["sqlite", "postgresql"]
    path: Path | None = None
    """sqlite: the database file."""
    host: str = "127.0.0.1"
    port: int = DEFAULT_PG_PORT
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    sslmode: str | None = None
    pool_size: int = POOL_SIZE
    """postgresql: connections per bridge process (?pool_size=N)."""

    @classmethod
    def sqlite(cls, path: Path) -> StoreUrl:
        return cls("sqlite", path=path)

    def __str__(self) -> str:
        """The URL to show in logs and errors: the password is never in it."""
        if self.backend == "sqlite":
            return f"sqlite:///{self.path}"
        who = f"{self.user}{':***' if self.password else ''}@" if self.user else ""
        return f"postgresql://{who}{self.host}:{self.port}/{self.database or ''}"


def parse_store_url(value: str, secret: Callable[[str], str] = lambda v: v) -> StoreUrl:
    """Parse `value`; `secret` resolves a password written as env:NAME or file:PATH (config.resolve_secret).

    The userinfo is split at the last "@", so a file: password's slashes need no escaping; a literal password is
    percent-decoded, as libpq does."""
    scheme, sep, rest = value.partition("://")
    backend = _SCHEMES.get(scheme.lower())
    if not sep or backend is None:
        raise StoreUrlError("must start with sqlite:/// or postgresql://")
    if backend == "sqlite":
        # sqlite:///relative/or/absolute: the part after the third slash, as SQLAlchemy reads it; //// is absolute.
        if not rest.startswith("/") or rest == "/":
            raise StoreUrlError("sqlite URLs are sqlite:///path/to/bridge.db")
        return StoreUrl.sqlite(Path(rest[1:]))
    userinfo, at, location = rest.rpartition("@")
    if not at:
        location = rest
    hostport, _, tail = location.partition("/")
    database, _, query = tail.partition("?")
    user, colon, raw_password = userinfo.partition(":")
    password: str | None = None
    if colon:
        password = secret(raw_password) if raw_password.startswith(("env:", "file:")) else unquote(raw_password)
    host, port = _host_port(hostport)
    options = dict(parse_qsl(query, keep_blank_values=True))
    sslmode = options.pop("sslmode", None)
    if sslmode is not None and sslmode not in _SSLMODES:
        raise StoreUrlError(f"sslmode must be one of {', '.join(sorted(_SSLMODES))}")
    pool = options.pop("pool_size", str(POOL_SIZE))
    if not pool.isdigit() or not 1 <= int(pool) <= 100:
        raise StoreUrlError("pool_size must be a whole number from 1 to 100")
    if options:
        raise StoreUrlError(f"unknown option {sorted(options)[0]!r} (known: sslmode, pool_size)")
    if not unquote(database):
        raise StoreUrlError("names no database (postgresql://user:password@host:port/database)")
    return StoreUrl(
        "postgresql",
        host=host,
        port=port,
        user=unquote(user) or None,
        password=password,
        database=unquote(database),
        sslmode=sslmode,
        pool_size=int(pool),
    )


def _host_port(hostport: str) -> tuple[str, int]:
    if hostport.startswith("["):  # [::1]:5432
        host, _, after = hostport[1:].partition("]")
        port = after.removeprefix(":")
    else:
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise StoreUrlError("the port must be a number from 1 to 65535")
    return host or "127.0.0.1", int(port) if port else DEFAULT_PG_PORT
