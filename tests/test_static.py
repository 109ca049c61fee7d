"""Lint, format and strict type checks are part of the test run."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHECKED = ["src", "tests", "bench", "migrations"]


@pytest.mark.parametrize(
    "command",
    [
        [str(BIN / "ruff"), "check", *CHECKED],
        [str(BIN / "ruff"), "format", "--check", *CHECKED],
        [str(BIN / "mypy")],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_static_check(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_print_in_server_code() -> None:
    """stdout belongs to the stdio transport: server code logs to stderr instead."""
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in (ROOT / "src").rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if line.lstrip().startswith("print(")
    ]
    assert not offenders, offenders


MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


def test_functions_and_modules_stay_small() -> None:
    """No function in src/ longer than 60 lines, no module longer than 400 (ruff holds complexity)."""
    too_long: list[str] = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        text = path.read_text()
        where = path.relative_to(ROOT)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{where}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{where}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, too_long
