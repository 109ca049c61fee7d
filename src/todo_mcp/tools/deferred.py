"""The repository, loaded when a tool first uses it.

Answering `initialize` and `tools/list` needs only the tool records; the repository brings
SQLAlchemy and the database driver, which take longer to import than the rest of the server. A
stdio server therefore lists its tools first and loads storage afterwards (see `todo_mcp.cli`).
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """Module `name`, imported now if it already was, otherwise executed on first attribute access."""
    found = sys.modules.get(name)
    if found is not None:
        return found
    spec = importlib.util.find_spec(name)
    assert spec is not None, name
    assert spec.loader is not None, name
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


repository = lazy_module("todo_mcp.storage.repository")
