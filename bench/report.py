"""Each benchmark owns one section of docs/benchmarks.md and rewrites only that section."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "benchmarks.md"
TITLE = "# Benchmarks\n"


def write_section(name: str, body: str, path: Path = REPORT) -> None:
    """Replace the section between `<!-- bench:name -->` markers, or append it."""
    block = f"<!-- bench:{name} -->\n{body.strip()}\n<!-- /bench:{name} -->\n"
    text = path.read_text(encoding="utf-8") if path.exists() else TITLE
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->\n", re.S)
    found = pattern.search(text)
    text = pattern.sub(lambda _: block, text) if found else text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
