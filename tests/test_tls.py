"""TLS to PostgreSQL: certificates verified as the URL says, and every misconfiguration one line.

A TLS-terminating proxy with a CA of the test's own stands in for a PostgreSQL server with TLS.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from sqlalchemy.engine import make_url

from tests.http_helpers import clean_env
from tests.tls_proxy import CertificateFiles, make_ca, running_tls_proxy
from todo_mcp.storage.engine import Database
from todo_mcp.storage.url import parse_database_url

pytestmark = pytest.mark.anyio

SCRIPT = Path(sys.executable).with_name("todo-ledger")


@pytest.fixture
def ca(tmp_path: Path) -> CertificateFiles:
    return make_ca(tmp_path, server_names=["localhost", "127.0.0.1"])


def _upstream(pg_url: str) -> tuple[tuple[str, int], str]:
    url = make_url(pg_url)
    return (url.host or "127.0.0.1", url.port or 5432), url.database or ""


async def _migrate(database_url: str) -> tuple[subprocess.CompletedProcess[bytes], float]:
    """`todo-ledger migrate` against `database_url`: what it printed and how long it took."""
    started = time.monotonic()
    with anyio.fail_after(60):
        result = await anyio.run_process(
            [str(SCRIPT), "migrate"], env=clean_env(DATABASE_URL=database_url), check=False
        )
    return result, time.monotonic() - started


def _one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("todo-ledger: error:")]
    assert len(errors) == 1, stderr
    assert stderr.strip().splitlines()[-1] == errors[0], stderr
    assert "retrying" not in stderr, "a certificate problem is not waited out"
    return errors[0]


async def test_verify_full_against_the_servers_ca_connects_over_tls(
    pg_url: str, ca: CertificateFiles
) -> None:
    upstream, name = _upstream(pg_url)
    async with running_tls_proxy(ca, upstream) as proxy:
        url = f"postgresql://postgres@localhost:{proxy.port}/{name}?sslmode=verify-full&sslrootcert={ca.ca_file}"
        database = Database.open(parse_database_url(url))
        try:
            await database.check_reachable()
        finally:
            await database.dispose()
        result, _ = await _migrate(url)
    assert result.returncode == 0, result.stderr.decode()
    assert proxy.handshakes >= 2


async def test_sslrootcert_system_uses_the_system_trust_store(pg_url: str, ca: CertificateFiles) -> None:
    """The test CA is in no system store, so the system's trusted CAs refuse the certificate."""
    upstream, name = _upstream(pg_url)
    async with running_tls_proxy(ca, upstream) as proxy:
        result, elapsed = await _migrate(
            f"postgresql://postgres@localhost:{proxy.port}/{name}?sslrootcert=system"
        )
    assert result.returncode == 1
    line = _one_error_line(result)
    assert line.startswith("todo-ledger: error: cannot reach the database: ")
    assert "certificate verify failed" in line
    assert elapsed < 10


async def test_a_certificate_for_another_host_fails_verify_full_and_passes_verify_ca(
    pg_url: str, tmp_path: Path
) -> None:
    other = make_ca(tmp_path, server_names=["db.internal"])
    upstream, name = _upstream(pg_url)
    base = f"postgresql://postgres@localhost:{{port}}/{name}?sslrootcert={other.ca_file}&sslmode="
    async with running_tls_proxy(other, upstream) as proxy:
        full, _ = await _migrate(base.format(port=proxy.port) + "verify-full")
        ca_only, _ = await _migrate(base.format(port=proxy.port) + "verify-ca")
    assert full.returncode == 1
    assert "Hostname mismatch" in _one_error_line(full)
    assert ca_only.returncode == 0, ca_only.stderr.decode()


async def test_requiring_tls_from_a_server_without_it_is_one_line(pg_url: str) -> None:
    result, elapsed = await _migrate(f"{pg_url}?sslmode=require")
    assert result.returncode == 1
    assert "rejected SSL upgrade" in _one_error_line(result)
    assert elapsed < 10


@pytest.fixture(params=["missing", "not a certificate"])
def unusable_ca_file(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """A CA file path that cannot be used, and what the error must say about it."""
    if request.param == "missing":
        return (
            "/nonexistent/ca.pem",
            "sslrootcert '/nonexistent/ca.pem' cannot be used (No such file or directory)",
        )
    path = tmp_path / "not-a-certificate.pem"
    path.write_text("not a certificate\n")
    return str(path), f"sslrootcert '{path}' cannot be used"


async def test_a_ca_file_that_cannot_be_used_is_one_line(
    pg_url: str, unusable_ca_file: tuple[str, str]
) -> None:
    rootcert, expected = unusable_ca_file
    result, _ = await _migrate(f"{pg_url}?sslmode=verify-full&sslrootcert={rootcert}")
    assert result.returncode == 2
    line = _one_error_line(result)
    assert line.startswith("todo-ledger: error: DATABASE_URL: ")
    assert expected in line
    assert "sslrootcert=system" in line


async def test_sslrootcert_system_with_a_weaker_sslmode_is_refused(pg_url: str) -> None:
    result, _ = await _migrate(f"{pg_url}?sslmode=prefer&sslrootcert=system")
    assert result.returncode == 2
    assert "use sslmode=verify-full" in _one_error_line(result)
