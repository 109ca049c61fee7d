"""`python -m todo_mcp` and the `todo-ledger` command.

The command line is imported inside `run`, so that Ctrl-C while the server is still starting
(importing its libraries takes a moment) ends it as quietly as Ctrl-C while it serves.
"""

from __future__ import annotations

import os


def run() -> None:
    """Import and run the command line; Ctrl-C at any point exits with 130 and no traceback."""
    try:
        from todo_mcp.cli import main

        main()
    except KeyboardInterrupt:
        os._exit(130)


if __name__ == "__main__":
    run()
