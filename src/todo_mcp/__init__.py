"""todo-ledger: an MCP server for a person's tasks, on PostgreSQL or an embedded SQLite file."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("todo-ledger")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without an install
    __version__ = "0.0.0"

__all__ = ["__version__"]
