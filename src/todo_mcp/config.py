"""Settings, read once from the environment (and a `.env` file) and validated at start-up."""

from __future__ import annotations

import difflib
import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from todo_mcp.due import zone_info
from todo_mcp.errors import ConfigError, InvalidInput

APP_NAME = "todo-ledger"
# The name this project was published under before; its data directory is still read.
FORMER_APP_NAME = "todo-mcp"
DEFAULT_USER_ID = "local"

CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def is_loopback_host(host: str) -> bool:
    """Whether `host` is 127.0.0.0/8, ::1 (bracketed or not) or localhost."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_zone(name: str) -> bool:
    try:
        zone_info(name)
    except ValueError:
        return False
    return True


def local_zone_name() -> str:
    """The IANA name of this machine's time zone, or "UTC" when it cannot be told."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and _is_zone(tz):
        return tz
    try:
        target = str(Path("/etc/localtime").resolve())
    except OSError:
        return "UTC"
    name = target.split("/zoneinfo/", 1)[1] if "/zoneinfo/" in target else ""
    return name if name and _is_zone(name) else "UTC"


class Settings(BaseSettings):
    """Every setting of todo-ledger. `.env.example` lists them with a comment each."""

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
    db_pool_size: int = Field(default=10, ge=1, le=200, validation_alias="TODO_MCP_DB_POOL_SIZE")
    db_connect_timeout: float = Field(
        default=5.0, gt=0, le=120, validation_alias="TODO_MCP_DB_CONNECT_TIMEOUT"
    )
    cursor_secret: str | None = Field(default=None, min_length=16, validation_alias="TODO_MCP_CURSOR_SECRET")
    db_statement_timeout: float = Field(
        default=5.0, gt=0, le=300, validation_alias="TODO_MCP_DB_STATEMENT_TIMEOUT"
    )

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
    auth_token_cache_size: int = Field(
        default=4096, ge=0, le=1_000_000, validation_alias="TODO_MCP_AUTH_TOKEN_CACHE_SIZE"
    )
    auth_token_cache_max_age: float = Field(
        default=300.0, ge=0, le=3600, validation_alias="TODO_MCP_AUTH_TOKEN_CACHE_MAX_AGE"
    )
    ledger_retention_days: int = Field(
        default=90, ge=1, le=36_500, validation_alias="TODO_MCP_LEDGER_RETENTION_DAYS"
    )
    allowed_hosts: CommaList = Field(default_factory=list, validation_alias="TODO_MCP_ALLOWED_HOSTS")
    cors_origins: CommaList = Field(default_factory=list, validation_alias="TODO_MCP_CORS_ORIGINS")
    rate_limit_per_minute: int = Field(default=120, ge=0, validation_alias="TODO_MCP_RATE_LIMIT_PER_MINUTE")
    max_body_bytes: int = Field(
        default=1_048_576, ge=4096, le=64 * 1_048_576, validation_alias="TODO_MCP_MAX_BODY_BYTES"
    )
    http_read_timeout: float = Field(
        default=10.0, gt=0, le=300, validation_alias="TODO_MCP_HTTP_READ_TIMEOUT"
    )
    sessions_per_user: int = Field(default=16, ge=1, le=10_000, validation_alias="TODO_MCP_SESSIONS_PER_USER")
    streams_per_user: int = Field(default=8, ge=1, le=10_000, validation_alias="TODO_MCP_STREAMS_PER_USER")
    session_idle_timeout: float = Field(
        default=1800.0, gt=0, le=86_400, validation_alias="TODO_MCP_SESSION_IDLE_TIMEOUT"
    )

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
        zone_info(value)
        return value

    def sqlite_default_path(self) -> Path:
        """Where the embedded database lives when DATABASE_URL is not set.

        A file left in the data directory of the project's former name is used where it is, so an
        upgrade keeps a person's tasks.
        """
        if self.data_dir is not None:
            return self.data_dir / "todo.sqlite3"
        path = platformdirs.user_data_path(APP_NAME, appauthor=False) / "todo.sqlite3"
        former = platformdirs.user_data_path(FORMER_APP_NAME, appauthor=False) / "todo.sqlite3"
        return former if former.exists() and not path.exists() else path


def unknown_settings(environ: dict[str, str] | None = None) -> list[str]:
    """One line for each TODO_MCP_ variable that is not a setting (a typo does nothing, silently)."""
    names = sorted(
        {
            alias
            for field in Settings.model_fields.values()
            if isinstance(alias := field.validation_alias, str) and alias.startswith("TODO_MCP_")
        }
    )
    lines = []
    for variable in sorted(environ if environ is not None else os.environ):
        if variable.startswith("TODO_MCP_") and variable not in names:
            # Compared without the shared prefix, which would make every name look alike.
            suffixes = [name.removeprefix("TODO_MCP_") for name in names]
            guess = difflib.get_close_matches(variable.removeprefix("TODO_MCP_"), suffixes, n=1, cutoff=0.6)
            hint = f"; did you mean TODO_MCP_{guess[0]}?" if guess else "; the settings are listed by --help"
            lines.append(f"{variable} is not a todo-ledger setting and has no effect{hint}")
    return lines


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; a bad value becomes one ConfigError line instead of a traceback."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = InvalidInput.from_pydantic(exc.errors(include_url=False, include_input=False))
        raise ConfigError(f"invalid settings: {problems}") from None
