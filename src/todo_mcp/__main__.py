"""`python -m todo_mcp`: the same command as `todo-ledger`."""

from todo_mcp.cli import main

if __name__ == "__main__":
    main()
