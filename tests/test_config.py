"""DATABASE_URL normalisation: what people paste becomes one asyncpg or aiosqlite target."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest

from todo_mcp.config import load_settings, unknown_settings
from todo_mcp.errors import ConfigError
from todo_mcp.storage.url import parse_database_url, resolve_database

NEON = (
    "postgresql://alex:AbC123dEf@ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech/neondb"
    "?sslmode=require&channel_binding=require"
)


def test_a_neon_url_as_pasted_uses_asyncpg_with_verified_tls() -> None:
    target = parse_database_url(NEON)
    assert target.url.drivername == "postgresql+asyncpg"
    assert target.url.host == "ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech"
    assert target.url.database == "neondb"
    assert target.url.password == "AbC123dEf"
    assert dict(target.url.query) == {}, "libpq-only parameters must not reach asyncpg.connect"
    context = target.connect_args["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert "AbC123dEf" not in target.describe()


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+asyncpg"])
def test_every_postgres_spelling_becomes_asyncpg(scheme: str) -> None:
    target = parse_database_url(f"{scheme}://u:p@db.example.com:6543/app")
    assert target.url.drivername == "postgresql+asyncpg"
    assert target.url.port == 6543
    assert target.dialect == "postgresql"
    assert target.connect_args["ssl"] == "prefer"


def test_sslmode_disable_and_connect_timeout() -> None:
    target = parse_database_url("postgresql://u@localhost/app?sslmode=disable&connect_timeout=3")
    assert target.connect_args["ssl"] is False
    assert target.connect_args["timeout"] == 3.0


def test_unknown_parameters_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="options"):
        parse_database_url("postgresql://u@h/db?options=-c%20search_path%3Dx")


def test_sqlite_urls(tmp_path: Path) -> None:
    target = parse_database_url(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    assert target.dialect == "sqlite"
    assert target.url.database == f"{tmp_path}/t.db"
    assert parse_database_url(f"sqlite:///{tmp_path}/t.db").url.drivername == "sqlite+aiosqlite"


def test_unset_database_url_is_the_embedded_default(tmp_path: Path) -> None:
    settings = load_settings(TODO_MCP_DATA_DIR=str(tmp_path))
    target = resolve_database(settings)
    assert target.dialect == "sqlite"
    assert target.url.database == str(tmp_path / "todo.sqlite3")


def test_direct_url_is_used_for_migrations_only() -> None:
    settings = load_settings(DATABASE_URL=NEON, DIRECT_URL=NEON.replace("-pooler", ""))
    assert "-pooler" in (resolve_database(settings).url.host or "")
    assert "-pooler" not in (resolve_database(settings, for_migrations=True).url.host or "")


def test_settings_errors_are_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(TODO_MCP_TIMEZONE="Mars/Olympus")
    assert "\n" not in str(caught.value)
    assert "IANA" in str(caught.value)


def test_comma_separated_lists() -> None:
    settings = load_settings(TODO_MCP_AUTH_ISSUER="https://a.example, https://a.example/api/auth")
    assert settings.auth_issuer == ["https://a.example", "https://a.example/api/auth"]


def test_the_embedded_database_lives_in_the_todo_ledger_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    settings = load_settings()
    assert settings.sqlite_default_path() == tmp_path / "todo-ledger" / "todo.sqlite3"


def test_tasks_kept_under_the_former_name_are_still_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    former = tmp_path / "todo-mcp" / "todo.sqlite3"
    former.parent.mkdir()
    former.write_bytes(b"")
    assert load_settings().sqlite_default_path() == former
    current = tmp_path / "todo-ledger" / "todo.sqlite3"
    current.parent.mkdir()
    current.write_bytes(b"")
    assert load_settings().sqlite_default_path() == current


@pytest.mark.parametrize("option", ["statement_cache_size=0", "pgbouncer=true", "pgbouncer=1"])
def test_a_pooler_option_turns_named_prepared_statements_off(option: str) -> None:
    target = parse_database_url(f"postgresql://u:p@pooler.example.com:6432/app?{option}")
    assert target.named_statements is False
    assert target.connect_args["statement_cache_size"] == 0


def test_without_a_pooler_option_statements_are_named_and_cached() -> None:
    target = parse_database_url("postgresql://u:p@db.example.com/app?statement_cache_size=500")
    assert target.named_statements is True
    assert target.connect_args["statement_cache_size"] == 500
    assert parse_database_url("postgresql://u:p@db.example.com/app").named_statements is True


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("statement_cache_size=off", "statement_cache_size must be a whole number (0 for a pooler"),
        ("pgbouncer=yes", "pgbouncer must be true or false"),
        ("prepared_statement_cache_size=0", "unsupported query parameter(s) prepared_statement_cache_size"),
    ],
)
def test_bad_pooler_options_are_one_line(query: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_database_url(f"postgresql://u:p@db.example.com/app?{query}")


def test_sslrootcert_system_verifies_against_the_system_store_with_the_host_name() -> None:
    for query in (
        "sslrootcert=system",
        "sslrootcert=system&sslmode=require",
        "sslrootcert=system&sslmode=verify-full",
    ):
        context = parse_database_url(f"postgresql://u:p@db.example.com/app?{query}").connect_args["ssl"]
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname
        assert (
            context.cert_store_stats()["x509_ca"]
            == ssl.create_default_context().cert_store_stats()["x509_ca"]
        )


def test_a_todo_mcp_variable_that_is_not_a_setting_is_named_with_the_likely_one() -> None:
    lines = unknown_settings(
        {"TODO_MCP_RATE_LIMIT": "2", "TODO_MCP_TIMEZONE": "UTC", "TODO_MCP_ZZZ": "1", "PATH": "/bin"}
    )
    assert lines == [
        "TODO_MCP_RATE_LIMIT is not a todo-ledger setting and has no effect; "
        "did you mean TODO_MCP_RATE_LIMIT_PER_MINUTE?",
        "TODO_MCP_ZZZ is not a todo-ledger setting and has no effect; the settings are listed by --help",
    ]
