"""The HTTP face of `todo-ledger serve`: one ASGI app for Streamable HTTP, SSE and REST.

A request passes the host allowlist, then the bearer gate (identify, scope, rate limit), then
reaches the MCP transports or the REST routes. `todo_mcp.web.app.create_app` assembles it.
"""
