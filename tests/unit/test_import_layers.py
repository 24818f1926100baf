"""Imports go one way: services → query_engine → indexing → docqa_core, nothing back.

Every import statement is read from the source (function-level ones too), so a lazy import
cannot hide a wrong-way dependency. Domain packages also stay free of the web framework.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# a package may import its own layer and the layers below it
LAYERS = {"docqa_core": 0, "indexing": 1, "query_engine": 2, "services": 3}
WEB_FRAMEWORKS = {"fastapi", "starlette", "uvicorn"}


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def wrong_way_imports(package: str) -> list[str]:
    layer = LAYERS[package]
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            if top in LAYERS and LAYERS[top] > layer:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
            if layer < LAYERS["services"] and top in WEB_FRAMEWORKS:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module} (web framework)")
    return found


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_imports_go_one_way(package: str) -> None:
    assert wrong_way_imports(package) == []


def test_the_walker_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from services.cli import main\n    import fastapi\n")
    assert [name for _, name in imported_modules(module)] == ["services.cli", "fastapi"]
