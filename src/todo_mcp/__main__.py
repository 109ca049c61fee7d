"""`python -m todo_mcp`: the same command as `todo-mcp`."""

from todo_mcp.cli import main

if __name__ == "__main__":
    main()
