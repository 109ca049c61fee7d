"""Settings, read once from the environment (and a `.env` file) and validated at start-up."""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from todo_mcp.errors import ConfigError

APP_NAME = "todo-mcp"
DEFAULT_USER_ID = "local"

CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 (bracketed or not) or localhost."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def local_zone_name() -> str:
    """The IANA name of this machine's time zone, or "UTC" when it cannot be told."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            pass
        else:
            return tz
    try:
        target = str(Path("/etc/localtime").resolve())
    except OSError:
        return "UTC"
    marker = "/zoneinfo/"
    if marker in target:
        name = target.split(marker, 1)[1]
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            return "UTC"
        return name
    return "UTC"


class Settings(BaseSettings):
    """Every setting of todo-mcp. `.env.example` lists them with a comment each."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    direct_url: str | None = Field(default=None, validation_alias="DIRECT_URL")
    data_dir: Path | None = Field(default=None, validation_alias="TODO_MCP_DATA_DIR")
    user_id: str = Field(default=DEFAULT_USER_ID, validation_alias="TODO_MCP_USER_ID", min_length=1)
    timezone: str = Field(default_factory=local_zone_name, validation_alias="TODO_MCP_TIMEZONE")
    read_only: bool = Field(default=False, validation_alias="TODO_MCP_READ_ONLY")
    auto_migrate: bool | None = Field(default=None, validation_alias="TODO_MCP_AUTO_MIGRATE")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", validation_alias="TODO_MCP_LOG_LEVEL"
    )
    db_pool_size: int = Field(default=5, ge=1, le=100, validation_alias="TODO_MCP_DB_POOL_SIZE")
    db_connect_timeout: float = Field(default=15.0, gt=0, validation_alias="TODO_MCP_DB_CONNECT_TIMEOUT")

    # Network transports and Better Auth.
    public_url: str | None = Field(default=None, validation_alias="TODO_MCP_PUBLIC_URL")
    auth_jwks_url: str | None = Field(default=None, validation_alias="TODO_MCP_AUTH_JWKS_URL")
    auth_issuer: CommaList = Field(default_factory=list, validation_alias="TODO_MCP_AUTH_ISSUER")
    auth_audience: CommaList = Field(default_factory=list, validation_alias="TODO_MCP_AUTH_AUDIENCE")
    auth_algorithms: CommaList = Field(
        default_factory=lambda: ["EdDSA"], validation_alias="TODO_MCP_AUTH_ALGORITHMS"
    )
    auth_server: str | None = Field(default=None, validation_alias="TODO_MCP_AUTH_SERVER")
    auth_leeway: int = Field(default=30, ge=0, le=300, validation_alias="TODO_MCP_AUTH_LEEWAY")
    auth_default_scopes: CommaList = Field(
        default_factory=lambda: ["todo:read", "todo:write"],
        validation_alias="TODO_MCP_AUTH_DEFAULT_SCOPES",
    )
    allowed_hosts: CommaList = Field(default_factory=list, validation_alias="TODO_MCP_ALLOWED_HOSTS")
    cors_origins: CommaList = Field(default_factory=list, validation_alias="TODO_MCP_CORS_ORIGINS")
    rate_limit_per_minute: int = Field(default=120, ge=0, validation_alias="TODO_MCP_RATE_LIMIT_PER_MINUTE")

    @field_validator(
        "auth_issuer",
        "auth_audience",
        "auth_algorithms",
        "auth_default_scopes",
        "allowed_hosts",
        "cors_origins",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Paris") from exc
        return value

    def sqlite_default_path(self) -> Path:
        base = self.data_dir or platformdirs.user_data_path(APP_NAME, appauthor=False)
        return base / "todo.sqlite3"


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; a bad value becomes one ConfigError line instead of a traceback."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None


@dataclass(frozen=True)
class DatabaseTarget:
    """A database URL made ready for SQLAlchemy, with the driver options it implies."""

    url: URL
    connect_args: dict[str, Any] = field(default_factory=dict)

    @property
    def dialect(self) -> Literal["postgresql", "sqlite"]:
        return "sqlite" if self.url.get_backend_name() == "sqlite" else "postgresql"

    def describe(self) -> str:
        """The URL with its password hidden, for logs and error messages."""
        if self.dialect == "sqlite":
            return f"SQLite file {self.url.database}"
        return self.url.render_as_string(hide_password=True)


_PG_SCHEMES = {"postgres", "postgresql", "postgresql+asyncpg"}
_SSL_VERIFY = {"require", "verify-ca", "verify-full"}
_SSL_MODES = _SSL_VERIFY | {"disable", "allow", "prefer"}


def sqlite_target(path: Path) -> DatabaseTarget:
    return DatabaseTarget(url=URL.create("sqlite+aiosqlite", database=str(path)))


def parse_database_url(raw: str, *, connect_timeout: float = 15.0) -> DatabaseTarget:
    """Accept the URLs people paste (Neon's console URL included) and return one asyncpg/aiosqlite target.

    Raises ConfigError with a one-line explanation for anything else.
    """
    text = raw.strip()
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        database = text.split("://", 1)[1]
        if not database.startswith("/") or database in ("/", "/:memory:"):
            raise ConfigError(
                "DATABASE_URL: an SQLite URL needs a file path, e.g. sqlite+aiosqlite:///home/me/todo.sqlite3"
            )
        path = database[1:]
        return sqlite_target(Path(path).expanduser())
    if scheme not in _PG_SCHEMES:
        shown = scheme or text[:20]
        raise ConfigError(
            f"DATABASE_URL: unsupported scheme {shown!r}; use postgresql://user:pass@host/db "
            "or sqlite+aiosqlite:///path/to/file"
        )
    try:
        url = make_url(text.split("?", 1)[0])
    except ArgumentError:
        raise ConfigError(
            "DATABASE_URL is not a valid URL; expected postgresql://user:password@host:5432/dbname"
        ) from None
    try:
        port = url.port
    except ValueError:
        port = None
    if not url.host:
        raise ConfigError("DATABASE_URL has no host; expected postgresql://user:password@host:5432/dbname")
    if not url.database:
        raise ConfigError("DATABASE_URL has no database name; add it after the host, e.g. .../neondb")

    query = dict(parse_qsl(urlsplit(text).query, keep_blank_values=True))
    sslmode = query.pop("sslmode", "prefer")
    query.pop("channel_binding", None)  # asyncpg cannot do SCRAM channel binding; TLS still applies.
    sslrootcert = query.pop("sslrootcert", None)
    application_name = query.pop("application_name", APP_NAME)
    timeout = query.pop("connect_timeout", None)
    if query:
        names = ", ".join(sorted(query))
        raise ConfigError(
            f"DATABASE_URL: unsupported query parameter(s) {names}; supported are sslmode, channel_binding, "
            "sslrootcert, application_name and connect_timeout"
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
    connect_args: dict[str, Any] = {
        "timeout": timeout_seconds,
        "server_settings": {"application_name": application_name},
    }
    if sslmode in _SSL_VERIFY:
        context = ssl.create_default_context(cafile=sslrootcert)
        if sslmode == "verify-ca":
            context.check_hostname = False
        connect_args["ssl"] = context
    elif sslmode == "disable":
        connect_args["ssl"] = False
    else:
        connect_args["ssl"] = sslmode  # asyncpg's own "prefer"/"allow"

    clean = URL.create(
        "postgresql+asyncpg",
        username=url.username,
        password=url.password,
        host=url.host,
        port=port,
        database=url.database,
    )
    return DatabaseTarget(url=clean, connect_args=connect_args)


def resolve_database(settings: Settings, *, for_migrations: bool = False) -> DatabaseTarget:
    """The target for serving (DATABASE_URL) or for migrations (DIRECT_URL when set)."""
    raw = settings.direct_url if for_migrations and settings.direct_url else settings.database_url
    if raw is None or not raw.strip():
        return sqlite_target(settings.sqlite_default_path())
    return parse_database_url(raw, connect_timeout=settings.db_connect_timeout)
