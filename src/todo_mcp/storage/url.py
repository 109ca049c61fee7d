"""Database URLs as people paste them, made ready for asyncpg or aiosqlite.

A Neon console URL (`postgresql://...?sslmode=require&channel_binding=require`) is accepted as
is: the driver becomes asyncpg, libpq-only parameters are dropped or turned into connect
arguments, and `sslmode=require` means TLS with certificate verification.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from todo_mcp.config import APP_NAME, Settings
from todo_mcp.errors import ConfigError

_PG_SCHEMES = {"postgres", "postgresql", "postgresql+asyncpg"}
_SSL_VERIFY = {"require", "verify-ca", "verify-full"}
_SSL_MODES = _SSL_VERIFY | {"disable", "allow", "prefer"}
_PG_EXAMPLE = "postgresql://user:password@host:5432/dbname"


@dataclass(frozen=True)
class DatabaseTarget:
    """A database URL made ready for SQLAlchemy, with the driver options it implies."""

    url: URL
    connect_args: dict[str, Any] = field(default_factory=dict)

    @property
    def dialect(self) -> Literal["postgresql", "sqlite"]:
        """Which of the two supported databases this is."""
        return "sqlite" if self.url.get_backend_name() == "sqlite" else "postgresql"

    def describe(self) -> str:
        """The URL with its password hidden, for logs and error messages."""
        if self.dialect == "sqlite":
            return f"SQLite file {self.url.database}"
        return self.url.render_as_string(hide_password=True)


def sqlite_target(path: Path) -> DatabaseTarget:
    """An SQLite file at `path`."""
    return DatabaseTarget(url=URL.create("sqlite+aiosqlite", database=str(path)))


def parse_database_url(raw: str, *, connect_timeout: float = 15.0) -> DatabaseTarget:
    """Accept the URLs people paste (Neon's console URL included) and return one target.

    Raises:
        ConfigError: with a one-line explanation for anything else.
    """
    text = raw.strip()
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        return _sqlite_url(text)
    if scheme not in _PG_SCHEMES:
        shown = scheme or text[:20]
        raise ConfigError(
            f"DATABASE_URL: unsupported scheme {shown!r}; use {_PG_EXAMPLE} "
            "or sqlite+aiosqlite:///path/to/file"
        )
    url = _postgres_url(text)
    query = dict(parse_qsl(urlsplit(text).query, keep_blank_values=True))
    return DatabaseTarget(url=url, connect_args=_connect_args(query, connect_timeout))


def _sqlite_url(text: str) -> DatabaseTarget:
    database = text.split("://", 1)[1]
    if not database.startswith("/") or database in ("/", "/:memory:"):
        raise ConfigError(
            "DATABASE_URL: an SQLite URL needs a file path, e.g. sqlite+aiosqlite:///home/me/todo.sqlite3"
        )
    return sqlite_target(Path(database[1:]).expanduser())


def _postgres_url(text: str) -> URL:
    try:
        url = make_url(text.split("?", 1)[0])
    except ArgumentError:
        raise ConfigError(f"DATABASE_URL is not a valid URL; expected {_PG_EXAMPLE}") from None
    try:
        port = url.port
    except ValueError:
        port = None
    if not url.host:
        raise ConfigError(f"DATABASE_URL has no host; expected {_PG_EXAMPLE}")
    if not url.database:
        raise ConfigError("DATABASE_URL has no database name; add it after the host, e.g. .../neondb")
    return URL.create(
        "postgresql+asyncpg",
        username=url.username,
        password=url.password,
        host=url.host,
        port=port,
        database=url.database,
    )


def _connect_args(query: dict[str, str], connect_timeout: float) -> dict[str, Any]:
    """The asyncpg connect arguments for the URL's query parameters."""
    sslmode = query.pop("sslmode", "prefer")
    query.pop("channel_binding", None)  # asyncpg cannot do SCRAM channel binding; TLS still applies.
    sslrootcert = query.pop("sslrootcert", None)
    application_name = query.pop("application_name", APP_NAME)
    timeout = query.pop("connect_timeout", None)
    if query:
        raise ConfigError(
            f"DATABASE_URL: unsupported query parameter(s) {', '.join(sorted(query))}; supported are "
            "sslmode, channel_binding, sslrootcert, application_name and connect_timeout"
        )
    if sslmode not in _SSL_MODES:
        raise ConfigError(
            f"DATABASE_URL: unknown sslmode {sslmode!r}; use one of {', '.join(sorted(_SSL_MODES))}"
        )
    try:
        timeout_seconds = float(timeout) if timeout else connect_timeout
    except ValueError:
        raise ConfigError(
            f"DATABASE_URL: connect_timeout must be a number of seconds, not {timeout!r}"
        ) from None
    return {
        "timeout": timeout_seconds,
        "server_settings": {"application_name": application_name},
        "ssl": _tls(sslmode, sslrootcert),
    }


def _tls(sslmode: str, sslrootcert: str | None) -> ssl.SSLContext | str | bool:
    """The asyncpg `ssl` argument: a verifying context, False, or its own "prefer"/"allow"."""
    if sslmode in _SSL_VERIFY:
        context = ssl.create_default_context(cafile=sslrootcert)
        if sslmode == "verify-ca":
            context.check_hostname = False
        return context
    if sslmode == "disable":
        return False
    return sslmode


def resolve_database(settings: Settings, *, for_migrations: bool = False) -> DatabaseTarget:
    """The target for serving (DATABASE_URL) or for migrations (DIRECT_URL when set)."""
    raw = settings.direct_url if for_migrations and settings.direct_url else settings.database_url
    if raw is None or not raw.strip():
        return sqlite_target(settings.sqlite_default_path())
    return parse_database_url(raw, connect_timeout=settings.db_connect_timeout)
