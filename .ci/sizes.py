"""Name the modules, classes and functions past their usual room (a smell to look at, never a
reason to split a cohesive module): modules over 400 lines, classes over 200, functions over 60.

Run by .ci/run as a tool step; it prints and exits 0.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    for path in sorted((ROOT / "tracked").rglob("*.py")):
        source = path.read_text()
        name = path.relative_to(ROOT)
        lines = len(source.splitlines())
        if lines > 400:
            print(f"size: {name}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                limit = 200 if isinstance(node, ast.ClassDef) else 60
                size = node.end_lineno - node.lineno + 1
                if size > limit:
                    print(f"size: {name}: {node.name} {size} lines")


if __name__ == "__main__":
    main()
