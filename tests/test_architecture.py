"""Data flows one way: trainers import the core; the core and the benchmarks never import trainers.

The facade (``harness/api.py``, ``harness/cli.py``) is the one exception, and only inside functions, so that
``harness eval`` and every benchmark work without loading a trainer. The builtin world (``harness/builtin``) knows
no benchmark at all: a benchmark reads the builtin world, never the other way round.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACADE = {ROOT / "harness" / "api.py", ROOT / "harness" / "cli.py"}


def _imports_of(tree: ast.AST, module_level_only: bool, package: str = "trainers") -> list[int]:
    """Lines of the imports of ``package`` (at module level only, or anywhere, functions included)."""
    nodes = tree.body if module_level_only else list(ast.walk(tree))  # type: ignore[attr-defined]
    lines = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        if any(name.split(".")[0] == package for name in names):
            lines.append(node.lineno)
    return lines


def test_core_and_benchmarks_never_import_trainers() -> None:
    offenders = []
    for package in ("harness", "benchmarks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            lines = _imports_of(tree, module_level_only=path in FACADE)
            offenders += [f"{path.relative_to(ROOT)}:{line}" for line in lines]
    assert not offenders, f"imports of trainers from the core or benchmarks: {offenders}"


def test_the_check_sees_a_module_level_import(tmp_path: Path) -> None:
    tree = ast.parse("import os\nfrom trainers.loop import train\n\ndef f():\n    import trainers.d3po\n")
    assert _imports_of(tree, module_level_only=True) == [2]
    assert _imports_of(tree, module_level_only=False) == [2, 5]


def test_the_builtin_world_imports_no_benchmark() -> None:
    offenders = []
    for path in sorted((ROOT / "harness" / "builtin").rglob("*.py")):
        lines = _imports_of(ast.parse(path.read_text()), module_level_only=False, package="benchmarks")
        offenders += [f"{path.relative_to(ROOT)}:{line}" for line in lines]
    assert not offenders, f"imports of benchmarks from harness/builtin: {offenders}"


def test_the_check_sees_a_benchmark_import_inside_a_function() -> None:
    tree = ast.parse("import benchmarks_x\n\ndef f():\n    from benchmarks.geneval.rules import judge\n")
    assert _imports_of(tree, module_level_only=False, package="benchmarks") == [4]
