"""The directions of docs/architecture.md, checked on the source: no import cycles, rules
import no git, git/ imports no logic, and only git/ starts git."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "stageline"
FORMATS = {"stageline.errors", "stageline.yamlsafe", "stageline.layout", "stageline.policy",
           "stageline.approval", "stageline.trailers", "stageline.settings",
           "stageline.progress", "stageline.resources", "stageline.windows",
           "stageline.sshkeys"}


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(("stageline", *path.relative_to(SRC).with_suffix("").parts))
        found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The stageline modules ``path`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and \
                node.module.startswith("stageline"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("stageline")}
    return found


GRAPH = {name: imports(path, modules()) - {name} for name, path in modules().items()}


def test_no_module_imports_itself_through_others() -> None:
    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for nxt in GRAPH.get(todo.pop(), set()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = sorted(name for name in GRAPH if name in reach(name))
    assert cycles == []


def test_the_rules_import_no_git_and_no_io() -> None:
    assert {m for m in GRAPH["stageline.rules"] if m.startswith("stageline.git")} == set()
    assert GRAPH["stageline.rules"] <= FORMATS


def test_formats_import_only_formats() -> None:
    for name in FORMATS:
        assert GRAPH[name] <= FORMATS, name


def test_git_imports_no_logic() -> None:
    for name, deps in GRAPH.items():
        if name.startswith("stageline.git"):
            assert {d for d in deps if not d.startswith("stageline.git")} <= FORMATS, name


def test_only_git_starts_processes() -> None:
    """subprocess is imported in git/process.py (every git process) and in the hooks'
    entry points (a foreign hook chained before stageline's, which is not git)."""
    users = {name for name, path in modules().items()
             if "subprocess" in path.read_text(encoding="utf-8")
             and ("import subprocess" in path.read_text(encoding="utf-8"))}
    assert users == {"stageline.git.process", "stageline.server.hooks"}


def test_no_source_file_is_over_700_lines() -> None:
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text(encoding="utf-8").split("\n"))) > 700}
    assert long == {}
