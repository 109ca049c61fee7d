"""The `todo-mcp` command: stdio by default, `serve` for HTTP, `migrate` for the schema."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence

from sqlalchemy import exc as sa_exc

from todo_mcp import __version__
from todo_mcp.config import Settings, load_settings, resolve_database
from todo_mcp.errors import ConfigError

log = logging.getLogger("todo_mcp")

SETTINGS_HELP = """\
settings (environment variables or a .env file in the working directory):
  DATABASE_URL                 postgresql://... (Neon URLs as pasted) or sqlite+aiosqlite:///path;
                               unset: an SQLite file in the user data directory, created on first start
  DIRECT_URL                   non-pooled URL used for migrations (Neon: the host without -pooler)
  TODO_MCP_USER_ID             whose tasks a stdio session acts on (default: local)
  TODO_MCP_TIMEZONE            IANA zone for "today"/"overdue" when a call names none
                               (default: this machine's zone)
  TODO_MCP_READ_ONLY           true hides every tool that writes
  TODO_MCP_AUTO_MIGRATE        migrate on start (default: true for SQLite, false for PostgreSQL)
  TODO_MCP_DATA_DIR            where the default SQLite file lives
  TODO_MCP_LOG_LEVEL           DEBUG, INFO, WARNING or ERROR (logs go to stderr)
  TODO_MCP_DB_POOL_SIZE        PostgreSQL connections kept open (default 5)
  TODO_MCP_DB_CONNECT_TIMEOUT  seconds to wait for a new database connection (default 15)
  HTTP and auth settings for `serve`: see `todo-mcp serve --help`.
"""


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def _fail(message: str, code: int = 1) -> None:
    sys.stderr.write(f"todo-mcp: error: {message}\n")
    raise SystemExit(code)


def _auto_migrate(settings: Settings, dialect: str) -> bool:
    return settings.auto_migrate if settings.auto_migrate is not None else dialect == "sqlite"


def _describe_db_error(error: BaseException) -> str:
    orig = getattr(error, "orig", None) or error
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


async def _prepare(settings: Settings) -> None:
    from todo_mcp import db

    target = resolve_database(settings)
    if target.dialect == "sqlite":
        log.info("using the embedded SQLite database at %s", target.url.database)
    else:
        log.info("using PostgreSQL at %s", target.describe())
    await db.prepare(
        target,
        resolve_database(settings, for_migrations=True),
        auto_migrate=_auto_migrate(settings, target.dialect),
    )


async def _serve_stdio(settings: Settings) -> None:
    from todo_mcp.db import Database
    from todo_mcp.identity import local_identity
    from todo_mcp.server import build_server

    database = Database.open(resolve_database(settings), pool_size=settings.db_pool_size)
    principal = local_identity(settings.user_id)
    try:
        server = build_server(database, settings=settings, identity=lambda: principal)
        await server.run_stdio_async()
    finally:
        await database.dispose()


async def _migrate(settings: Settings) -> None:
    from todo_mcp import db

    target = resolve_database(settings, for_migrations=True)
    revision = await db.migrate(target)
    log.info("%s is at schema revision %s", target.describe(), revision)


def _run_guarded(coro_factory: object) -> None:
    """Turn the expected start-up failures into one line on stderr and a non-zero exit."""
    import asyncpg

    try:
        asyncio.run(coro_factory)  # type: ignore[arg-type]
    except ConfigError as error:
        _fail(str(error), 2)
    except (sa_exc.DBAPIError, asyncpg.PostgresError, OSError, TimeoutError) as error:
        _fail(f"cannot reach the database: {_describe_db_error(error)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="todo-mcp",
        description="An MCP server for a person's tasks. With no command it serves MCP over stdio "
        "(what Claude Desktop runs).",
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"todo-mcp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "stdio",
        help="serve MCP over stdio (the default)",
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands.add_parser(
        "migrate",
        help="bring the database schema to the latest version (uses DIRECT_URL if set)",
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as error:
        _fail(str(error), 2)
    _configure_logging(settings.log_level)
    try:
        resolve_database(settings)
    except ConfigError as error:
        _fail(str(error), 2)

    if args.command == "migrate":
        _run_guarded(_migrate(settings))
        return
    _run_guarded(_prepare(settings))
    with contextlib.suppress(KeyboardInterrupt):
        _run_guarded(_serve_stdio(settings))
