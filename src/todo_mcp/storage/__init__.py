"""Storage: the tasks table, the engine, the dialect differences, migrations and every query.

Nothing here knows about MCP or HTTP. Import the submodules you need; this package imports
nothing itself, so that reading one piece of storage does not load the others.
"""
