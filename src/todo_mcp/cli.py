"""The `todo-ledger` command: stdio by default, `serve` for HTTP, `migrate` for the schema."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import socket
import sys
from collections.abc import Coroutine, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from todo_mcp import __version__
from todo_mcp.config import Settings, is_loopback_host, load_settings, unknown_settings
from todo_mcp.errors import ConfigError, DatabaseUnavailable, describe_db_error
from todo_mcp.web.loop import fast_event_loop

if TYPE_CHECKING:
    from todo_mcp.auth.verifier import TokenVerifier
    from todo_mcp.storage.engine import Database

log = logging.getLogger("todo_mcp")

SETTINGS_HELP = """\
settings (environment variables or a .env file in the working directory):
  DATABASE_URL                 postgresql://... (Neon URLs as pasted; add pgbouncer=true behind a pooler
                               without prepared statements) or sqlite+aiosqlite:///path;
                               unset: an SQLite file in the user data directory, created on first start
  DIRECT_URL                   non-pooled URL used for migrations (Neon: the host without -pooler)
  TODO_MCP_USER_ID             whose tasks a stdio session acts on (default: local)
  TODO_MCP_TIMEZONE            IANA zone for "today"/"overdue" when a call names none
                               (default: this machine's zone)
  TODO_MCP_READ_ONLY           true hides every tool that writes
  TODO_MCP_AUTO_MIGRATE        migrate on start (default: true for SQLite, false for PostgreSQL)
  TODO_MCP_DATA_DIR            where the default SQLite file lives
  TODO_MCP_LOG_LEVEL           DEBUG, INFO, WARNING or ERROR (logs go to stderr)
  TODO_MCP_DB_POOL_SIZE        PostgreSQL connections kept open (default 10)
  TODO_MCP_DB_CONNECT_TIMEOUT  seconds to wait for a new database connection (default 5)
  TODO_MCP_DB_STATEMENT_TIMEOUT  seconds a statement may take before the call fails (default 5)
  TODO_MCP_LEDGER_RETENTION_DAYS  days `prune` keeps the record of changes (default 90)
  HTTP and auth settings for `serve`: see `todo-ledger serve --help`.
"""

SERVE_HELP = """\
serves, on one port:
  /mcp                 Streamable HTTP (protocol 2026-07-28 and the 2024-11-05..2025-11-25 handshake era)
  /sse, /messages/     the legacy HTTP+SSE transport
  /.well-known/oauth-protected-resource/mcp, .../sse   RFC 9728 metadata of each transport
  /api/tasks           REST (OpenAPI docs at /docs); /healthz (alive), /readyz (database reachable)

HTTP and auth settings (environment variables or .env):
  TODO_MCP_PUBLIC_URL          the URL clients use for /mcp, e.g. https://todo.example.com/mcp
                               (required unless --no-auth; tokens for this resource are accepted)
  TODO_MCP_AUTH_JWKS_URL       Better Auth's public keys, e.g. https://app.example.com/api/auth/jwks
                               (required unless --no-auth)
  TODO_MCP_AUTH_ISSUER         accepted token issuers, comma-separated (default: the JWKS URL's origin
                               and origin + /api/auth, Better Auth's jwt() and OAuth issuers)
  TODO_MCP_AUTH_AUDIENCE       accepted audiences besides TODO_MCP_PUBLIC_URL, comma-separated
                               (jwt() plugin tokens carry the web app's origin)
  TODO_MCP_AUTH_ALGORITHMS     accepted signing algorithms (default EdDSA; e.g. EdDSA,ES256)
  TODO_MCP_AUTH_SERVER         authorization server named in the metadata
                               (default: the JWKS URL without /jwks, e.g. https://app.example.com/api/auth)
  TODO_MCP_AUTH_LEEWAY         seconds of clock skew allowed for exp, nbf and iat (default 30)
  TODO_MCP_AUTH_DEFAULT_SCOPES scopes of a token without a scope claim (default todo:read,todo:write)
  TODO_MCP_AUTH_TOKEN_CACHE_SIZE  verified tokens remembered to skip repeated signature checks
                               (default 4096; 0 = off)
  TODO_MCP_AUTH_TOKEN_CACHE_MAX_AGE  seconds a token is remembered, never past its exp (default 300)
  TODO_MCP_ALLOWED_HOSTS       Host header names to accept besides loopback and the host of
                               TODO_MCP_PUBLIC_URL, comma-separated (name or name:port; * = any)
  TODO_MCP_CORS_ORIGINS        browser origins allowed to call, comma-separated (default: none)
  TODO_MCP_RATE_LIMIT_PER_MINUTE  tool calls and REST calls per user per minute, counted in each
                               replica (default 120; 0 = no limit); initialize counts as a call
  TODO_MCP_MAX_BODY_BYTES      largest request body, in bytes (default 1048576)
  TODO_MCP_HTTP_READ_TIMEOUT   seconds to send a request's headers, and its body (default 10)
  TODO_MCP_SESSIONS_PER_USER   open handshake-era sessions per user (default 16)
  TODO_MCP_STREAMS_PER_USER    open SSE streams per user (default 8)
  TODO_MCP_SESSION_IDLE_TIMEOUT  seconds before an idle session ends (default 1800)
  FORWARDED_ALLOW_IPS          proxies whose X-Forwarded-For/-Proto are trusted (default 127.0.0.1)
Repeated failed authentications from one client address get 429 with Retry-After.
Database settings: see `todo-ledger --help`.
"""


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if level != "DEBUG":
        # The SDK logs each tool error it returns (a task not found, a version conflict) at INFO:
        # answers the caller was given, not events of the server. Stdio clients show this log.
        logging.getLogger("mcp.server.mcpserver.server").setLevel(logging.WARNING)


def _fail(message: str, code: int = 1) -> NoReturn:
    sys.stderr.write(f"todo-ledger: error: {message}\n")
    raise SystemExit(code)


def _run_guarded(coro: Coroutine[Any, Any, None], *, fast: bool = False) -> None:
    """Run `coro` (on uvloop's event loop if `fast` and it is there); expected failures become one line.

    A configuration problem exits with 2, a database that cannot be reached or used with 1.
    """
    try:
        with asyncio.Runner(loop_factory=fast_event_loop() if fast else None) as runner:
            runner.run(coro)
    except ConfigError as error:
        _fail(str(error), 2)
    except DatabaseUnavailable as error:
        _fail(f"cannot reach the database: {error.reason}")
    except Exception as error:
        if not _is_database_error(error):
            raise
        _fail(f"cannot reach the database: {describe_db_error(error)}")


def _is_database_error(error: Exception) -> bool:
    """A driver's or SQLAlchemy's error (their modules are looked at only if something loaded them)."""
    if isinstance(error, OSError | TimeoutError):
        return True
    sa_exc, asyncpg = sys.modules.get("sqlalchemy.exc"), sys.modules.get("asyncpg")
    return (sa_exc is not None and isinstance(error, sa_exc.DBAPIError)) or (
        asyncpg is not None and isinstance(error, asyncpg.PostgresError)
    )


def _auto_migrate(settings: Settings, dialect: str) -> bool:
    return settings.auto_migrate if settings.auto_migrate is not None else dialect == "sqlite"


async def _prepare(settings: Settings) -> bytes:
    """Migrate or check the schema; the cursor-signing key of this deployment."""
    from todo_mcp.storage.startup import prepare
    from todo_mcp.storage.url import resolve_database

    target = resolve_database(settings)
    if target.dialect == "sqlite":
        log.info("using the embedded SQLite database at %s", target.url.database)
    else:
        log.info("using PostgreSQL at %s", target.describe())
    return await prepare(
        target,
        resolve_database(settings, for_migrations=True),
        auto_migrate=_auto_migrate(settings, target.dialect),
        cursor_secret=settings.cursor_secret,
    )


async def _open_database(settings: Settings) -> Database:
    """The schema prepared, then the serving pool, with the deployment's cursor key."""
    from todo_mcp.storage.engine import Database
    from todo_mcp.storage.url import resolve_database

    cursor_key = await _prepare(settings)
    return Database.open(
        resolve_database(settings),
        pool_size=settings.db_pool_size,
        statement_timeout=settings.db_statement_timeout,
        cursor_key=cursor_key,
    )


async def _serve_stdio(settings: Settings) -> None:
    from todo_mcp.stdio import serve_stdio

    url = (settings.database_url or "").strip()
    embedded = not url or url.startswith("sqlite")
    await serve_stdio(settings, _open_database, embedded=embedded)


async def _prune(settings: Settings, days: int | None) -> None:
    from todo_mcp.storage.ledger import prune_changes
    from todo_mcp.storage.writes import utcnow

    kept = days if days is not None else settings.ledger_retention_days
    before = utcnow() - timedelta(days=kept)
    database = await _open_database(settings)
    try:
        removed = await database.run(prune_changes, before=before)
    finally:
        await database.dispose()
    log.info("removed %d changes recorded before %s; tasks are untouched", removed, before.isoformat())


async def _migrate(settings: Settings) -> None:
    from todo_mcp.storage.migrations import migrate
    from todo_mcp.storage.url import resolve_database

    target = resolve_database(settings, for_migrations=True)
    revision = await migrate(target)
    log.info("%s is at schema revision %s", target.describe(), revision)


def _verifier(args: argparse.Namespace, settings: Settings) -> TokenVerifier | None:
    """The token verifier `serve` needs, or None with --no-auth; refuses an unsafe configuration."""
    from todo_mcp.auth.verifier import TokenVerifier

    if args.no_auth:
        if not is_loopback_host(args.host):
            _fail(
                f"--no-auth only serves a loopback host (127.0.0.1, ::1 or localhost), not {args.host}: "
                "configure TODO_MCP_AUTH_JWKS_URL and TODO_MCP_PUBLIC_URL to serve the network",
                2,
            )
        return None
    missing = [
        name
        for name, value in (
            ("TODO_MCP_AUTH_JWKS_URL", settings.auth_jwks_url),
            ("TODO_MCP_PUBLIC_URL", settings.public_url),
        )
        if not value
    ]
    if missing:
        _fail(
            f"serve needs auth settings: set {' and '.join(missing)} (see todo-ledger serve --help), "
            "or pass --no-auth to act for TODO_MCP_USER_ID on a loopback host",
            2,
        )
    public = urlsplit(settings.public_url or "")
    if public.scheme not in ("http", "https") or not public.netloc:
        _fail(
            f"TODO_MCP_PUBLIC_URL must be an http(s) URL such as https://todo.example.com/mcp, "
            f"not {settings.public_url!r}",
            2,
        )
    try:
        return TokenVerifier.from_settings(settings)
    except ConfigError as error:
        _fail(str(error), 2)


def _listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound here so that a taken port is one line rather than uvicorn's several."""
    address = host.strip("[]")
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say they are TCP,
    # and without it every response on a kept-alive connection waits for a delayed ACK (40 ms).
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as error:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({error.strerror or error}); choose another --port, or stop "
            "what is using it"
        ) from None
    return sock


async def _serve_http(args: argparse.Namespace, settings: Settings, verifier: TokenVerifier | None) -> None:
    import uvicorn

    from todo_mcp.web.app import create_app
    from todo_mcp.web.http11 import BoundedHttpProtocol

    listener = _listening_socket(args.host, args.port)
    database = await _open_database(settings)
    app = create_app(settings, database=database, verifier=verifier, stateless=args.stateless)
    if verifier is None:
        log.warning(
            "AUTHENTICATION IS OFF (--no-auth): every request to http://%s:%d acts for user %r with full "
            "read and write access. Use this only for local testing.",
            args.host,
            args.port,
            settings.user_id,
        )
    else:
        log.info("serving %s for tokens from %s", settings.public_url, settings.auth_jwks_url)
    gc.freeze()  # what start-up made lives as long as the process: no later collection walks it

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        http=BoundedHttpProtocol.bounded(settings.http_read_timeout),
        log_config=None,
        log_level=settings.log_level.lower(),
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    try:
        await uvicorn.Server(config).serve(sockets=[listener])
    finally:
        await database.dispose()


def build_parser() -> argparse.ArgumentParser:
    """The command line: stdio (the default), `serve`, `migrate` and `prune`."""
    parser = argparse.ArgumentParser(
        prog="todo-ledger",
        description="An MCP server for a person's tasks. With no command it serves MCP over stdio "
        "(what Claude Desktop runs).",
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"todo-ledger {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "stdio",
        help="serve MCP over stdio (the default)",
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve = commands.add_parser(
        "serve",
        help="serve MCP (Streamable HTTP and SSE) and REST over HTTP, behind Better Auth tokens",
        description="Serve MCP over Streamable HTTP (/mcp) and HTTP+SSE (/sse), OAuth resource metadata, "
        "and a REST API (/api/tasks) on one port. Every request needs a Better Auth JWT "
        "(Authorization: Bearer ...) unless --no-auth is given.",
        epilog=SERVE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)"
    )
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument(
        "--no-auth",
        action="store_true",
        help="no tokens: every request acts for TODO_MCP_USER_ID; only allowed on a loopback host",
    )
    serve.add_argument(
        "--stateless",
        action="store_true",
        help="keep no Streamable HTTP sessions (handshake era): any replica behind a load balancer can "
        "answer any request. The 2026-07-28 protocol is stateless anyway; /sse always needs the same "
        "replica for a connection (sticky sessions)",
    )
    commands.add_parser(
        "migrate",
        help="bring the database schema to the latest version (uses DIRECT_URL if set)",
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_prune(commands)
    return parser


def _add_prune(commands: Any) -> None:
    prune = commands.add_parser(
        "prune",
        help="forget recorded changes older than TODO_MCP_LEDGER_RETENTION_DAYS (tasks stay as they are)",
        description="Remove the record of changes older than the retention period, for every user. "
        "Tasks are never touched; pruned changes can no longer be listed or undone. Run it daily "
        "(cron, a scheduled job).",
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prune.add_argument(
        "--days", type=int, default=None, help="keep this many days instead of TODO_MCP_LEDGER_RETENTION_DAYS"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line: stdio by default, `serve`, `migrate` or `prune`; Ctrl-C ends it quietly (130)."""
    try:
        _main(argv)
    except KeyboardInterrupt:
        # Served and closed (or interrupted while starting): no traceback. A thread that read stdin
        # may still wait for a line that never comes, and the interpreter would wait for it on exit.
        logging.shutdown()
        os._exit(130)


def _main(argv: Sequence[str] | None) -> None:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        if (settings.database_url or "").strip():
            # A URL is checked before anything starts; the embedded default needs no check.
            from todo_mcp.storage.url import resolve_database

            resolve_database(settings)
    except ConfigError as error:
        _fail(str(error), 2)
    _configure_logging(settings.log_level)
    for line in unknown_settings():
        log.warning("%s", line)
    if args.command == "migrate":
        _run_guarded(_migrate(settings))
    elif args.command == "prune":
        if args.days is not None and args.days < 0:
            _fail("prune: --days must be 0 or more", 2)
        _run_guarded(_prune(settings, args.days))
    elif args.command == "serve":
        verifier = _verifier(args, settings)
        _run_guarded(_serve_http(args, settings, verifier), fast=True)

    else:
        _run_guarded(_serve_stdio(settings))
