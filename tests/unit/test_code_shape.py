"""Files hold one subject and functions fit in a reader's head: no module of the service
packages, the benchmarks (bench/) or the launcher (deploy/) over 500 lines, no function over 60.
A file or function that outgrows these is split by subject (see how grounding/, chunking/ and
faq/ are laid out), not exempted here."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("docqa_core", "indexing", "query_engine", "services", "bench", "deploy")
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 60


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def long_functions(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_every_module_is_at_most_500_lines() -> None:
    too_long = [
        f"{p.relative_to(ROOT)} ({n} lines)"
        for p in modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES
    ]
    assert too_long == []


def test_every_function_is_at_most_60_lines() -> None:
    assert [f for p in modules() for f in long_functions(p)] == []


def test_the_length_check_sees_methods_and_async_functions(tmp_path: Path) -> None:
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    source = tmp_path / "m.py"
    source.write_text(f"class C:\n    async def f(self):\n{body}\n")
    assert long_functions(source, tmp_path) == [f"m.py:2 f ({MAX_FUNCTION_LINES + 1} lines)"]


def test_test_modules_have_distinct_names() -> None:
    """tests/ has no packages, so pytest imports each test module by its basename: two files of
    one name in unit/ and integration/ stop the whole run at collection."""
    names: dict[str, list[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in names.items() if len(paths) > 1} == {}
