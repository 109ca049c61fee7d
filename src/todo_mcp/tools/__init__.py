"""The MCP face: tool records, the task resource, the planning prompt, and the error translator.

Domain errors become words for a model in one place, `todo_mcp.tools.errors`.
"""
