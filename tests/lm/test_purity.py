"""lm stays a pure library: no asyncio, SQL, chat platforms or bot code."""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = {"asyncio", "aiosqlite", "sqlite3", "discord", "slack_bolt", "slack_sdk", "bot"}


def test_lm_imports_nothing_async_or_platform():
    root = Path(__file__).resolve().parents[2] / "lm"
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert n.split(".")[0] not in FORBIDDEN, f"{path.name} imports {n}"
