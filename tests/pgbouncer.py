"""A throw-away PgBouncer in transaction mode, without prepared-statement support, for tests.

Debian's `pgbouncer` package (1.18) keeps no prepared statements across transactions, like
PgBouncer before 1.21 (or later ones with max_prepared_statements = 0) and Supabase's pooler.
It refuses to run as root, so it runs as the `postgres` user, in the foreground.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

RUN_AS = "postgres"
INI = """\
[databases]
* = host={upstream_host} port={upstream_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
logfile = {directory}/pgbouncer.log
auth_type = trust
auth_file = {directory}/userlist.txt
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 200
server_reset_query =
"""


@dataclass(frozen=True)
class Bouncer:
    """A running PgBouncer: where to connect."""

    port: int
    log_file: Path

    def url(self, database: str) -> str:
        """A PostgreSQL URL for `database` through this PgBouncer."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_listening(proc: subprocess.Popen[bytes], log_file: Path, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"pgbouncer exited with {proc.returncode}: {log_file.read_text(errors='replace')}"
            )
        if log_file.exists() and f"listening on 127.0.0.1:{port}" in log_file.read_text(errors="replace"):
            return
        time.sleep(0.02)  # polling interval of a bounded start-up wait
    raise RuntimeError(f"pgbouncer did not listen within {timeout} s")


@contextmanager
def running_pgbouncer(
    upstream: tuple[str, int], *, pool_size: int = 3, timeout: float = 15
) -> Iterator[Bouncer]:
    """PgBouncer in transaction mode in front of `upstream`, stopped afterwards.

    Raises:
        RuntimeError: when PgBouncer is not installed or cannot start (the tests then fail).
    """
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        raise RuntimeError("PgBouncer is required for the pooler tests: apt-get install -y pgbouncer")
    account = pwd.getpwnam(RUN_AS)
    directory = Path(tempfile.mkdtemp(prefix="todo-ledger-pgbouncer-"))
    os.chown(directory, account.pw_uid, account.pw_gid)
    port = _free_port()
    ini = directory / "pgbouncer.ini"
    settings = {
        "upstream_host": upstream[0],
        "upstream_port": upstream[1],
        "port": port,
        "pool_size": pool_size,
    }
    ini.write_text(INI.format(directory=directory, **settings))
    (directory / "userlist.txt").write_text('"postgres" ""\n')
    root = os.geteuid() == 0
    proc = subprocess.Popen(
        [binary, str(ini)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        user=account.pw_uid if root else None,
        group=account.pw_gid if root else None,
        extra_groups=[] if root else None,
    )
    try:
        _wait_listening(proc, directory / "pgbouncer.log", port, timeout)
        yield Bouncer(port=port, log_file=directory / "pgbouncer.log")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        shutil.rmtree(directory, ignore_errors=True)
