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
    # False behind a transaction-mode pooler without prepared-statement support.
    named_statements: bool = True

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


def parse_database_url(raw: str, *, connect_timeout: float = 5.0) -> DatabaseTarget:
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
    connect_args, named_statements = _connect_args(query, connect_timeout)
    return DatabaseTarget(url=url, connect_args=connect_args, named_statements=named_statements)


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


_SUPPORTED = (
    "sslmode",
    "sslrootcert",
    "channel_binding",
    "application_name",
    "connect_timeout",
    "statement_cache_size",
    "pgbouncer",
)


def _connect_args(query: dict[str, str], connect_timeout: float) -> tuple[dict[str, Any], bool]:
    """The asyncpg connect arguments for the URL's query parameters, and whether to name statements."""
    unknown = sorted(set(query) - set(_SUPPORTED))
    if unknown:
        raise ConfigError(
            f"DATABASE_URL: unsupported query parameter(s) {', '.join(unknown)}; supported are "
            f"{', '.join(_SUPPORTED)}"
        )
    args: dict[str, Any] = {
        "timeout": _seconds(query.get("connect_timeout"), connect_timeout),
        # "UTF8" as the server spells it: PgBouncer then sees no difference to SET before each transaction.
        "server_settings": {
            "application_name": query.get("application_name", APP_NAME),
            "client_encoding": "UTF8",
        },
        "ssl": _tls(query.get("sslmode"), query.get("sslrootcert")),
    }
    cache_size = _statement_cache_size(query)
    if cache_size is not None:
        args["statement_cache_size"] = cache_size
    return args, cache_size != 0


def _seconds(text: str | None, default: float) -> float:
    try:
        return float(text) if text else default
    except ValueError:
        raise ConfigError(
            f"DATABASE_URL: connect_timeout must be a number of seconds, not {text!r}"
        ) from None


def _statement_cache_size(query: dict[str, str]) -> int | None:
    """The asyncpg statement cache size; 0 (or pgbouncer=true) turns named prepared statements off.

    Transaction-mode poolers without prepared-statement support (PgBouncer before 1.21, or
    with max_prepared_statements = 0; Supabase's pooler) need it off.
    """
    flag = query.get("pgbouncer", "false").lower()
    if flag not in ("true", "false", "1", "0"):
        raise ConfigError(f"DATABASE_URL: pgbouncer must be true or false, not {query['pgbouncer']!r}")
    size = query.get("statement_cache_size")
    if size is not None and not size.isdigit():
        raise ConfigError(
            f"DATABASE_URL: statement_cache_size must be a whole number (0 for a pooler without prepared "
            f"statements), not {size!r}"
        )
    if flag in ("true", "1"):
        return 0
    return int(size) if size is not None else None


def _tls(sslmode: str | None, rootcert: str | None) -> ssl.SSLContext | str | bool:
    """The asyncpg `ssl` argument: a verifying context, False, or its own "prefer"/"allow".

    `sslrootcert=system` (libpq 16's keyword) verifies against the system's trusted CAs, and
    implies sslmode=verify-full.
    """
    mode = sslmode or ("verify-full" if rootcert == "system" else "prefer")
    if mode not in _SSL_MODES:
        raise ConfigError(
            f"DATABASE_URL: unknown sslmode {mode!r}; use one of {', '.join(sorted(_SSL_MODES))}"
        )
    if rootcert == "system" and mode not in _SSL_VERIFY:
        raise ConfigError(
            f"DATABASE_URL: sslrootcert=system verifies the server's certificate, which sslmode={mode} "
            "does not do; use sslmode=verify-full (or leave sslmode out)"
        )
    if mode == "disable":
        return False
    if mode not in _SSL_VERIFY:
        return mode
    try:
        context = ssl.create_default_context(cafile=None if rootcert in (None, "system") else rootcert)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(
            f"DATABASE_URL: sslrootcert {rootcert!r} cannot be used ({error.strerror or error}); give the "
            "path of a PEM file holding the server's CA certificate, or sslrootcert=system"
        ) from None
    context.check_hostname = mode != "verify-ca"
    return context


def resolve_database(settings: Settings, *, for_migrations: bool = False) -> DatabaseTarget:
    """The target for serving (DATABASE_URL) or for migrations (DIRECT_URL when set)."""
    raw = settings.direct_url if for_migrations and settings.direct_url else settings.database_url
    if raw is None or not raw.strip():
        return sqlite_target(settings.sqlite_default_path())
    return parse_database_url(raw, connect_timeout=settings.db_connect_timeout)
