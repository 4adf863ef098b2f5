"""``stageline diff``: what differs between two states of an agent.

A state is an environment at the branch's tip (``staging``) or at a revision
(``production@v1.2``, ``staging@HEAD~3``). YAML files are compared key by key;
other text files get a unified diff.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stageline import yamlsafe
from stageline.errors import UsageError
from stageline.layout import check_env, env_dir, file_text
from stageline.workspace import Workspace

# Which environment a state is compared with when only one is named: the one that
# would replace it (for development, the staging it would replace).
COUNTERPART = {"development": "staging", "staging": "development", "production": "staging"}


@dataclass(frozen=True)
class State:
    label: str
    commit: str
    tree: str | None

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "commit": self.commit, "tree": self.tree}


@dataclass(frozen=True)
class KeyChange:
    key: str
    kind: str  # added | removed | changed
    old: Any = None
    new: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class FileChange:
    path: str
    status: str  # added | removed | modified
    added: int
    removed: int
    keys: tuple[KeyChange, ...] = ()
    text_diff: tuple[str, ...] = ()
    binary: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "status": self.status, "added": self.added,
                "removed": self.removed, "keys": [k.to_json() for k in self.keys],
                "binary": self.binary}


@dataclass(frozen=True)
class Comparison:
    agent: str
    old: State
    new: State
    files: list[FileChange] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.files

    def to_json(self) -> dict[str, Any]:
        return {"agent": self.agent, "from": self.old.to_json(), "to": self.new.to_json(),
                "identical": self.identical, "files": [f.to_json() for f in self.files]}


def resolve_state(ws: Workspace, agent: str, spec: str) -> State:
    env, sep, rev = spec.partition("@")
    check_env(env)
    commit = ws.store.resolve(rev) if sep else ws.head
    if commit is None:
        raise UsageError(f"{rev!r} names no commit; use ENV or ENV@REV.")
    return State(spec, commit, ws.store.tree_at(commit, env_dir(env, agent)))


def compare(ws: Workspace, agent: str, old_spec: str | None, new_spec: str | None,
            listings: Mapping[str, dict[str, str]] | None = None) -> Comparison:
    """What differs between two states of an agent. ``listings`` (tree id → path → blob
    id) may hold trees already listed, as the site lists every agent's in one call."""
    if old_spec is None:
        old_spec, new_spec = "staging", "development"
    elif new_spec is None:
        new_spec = COUNTERPART[check_env(old_spec.partition("@")[0])]
    old, new = resolve_state(ws, agent, old_spec), resolve_state(ws, agent, new_spec)
    if old.tree is None and new.tree is None:
        raise UsageError(f"{agent} is in neither {old_spec} nor {new_spec}.")
    before = _listing(ws, old.tree, listings)
    after = _listing(ws, new.tree, listings)
    files = []
    for path in sorted(set(before) | set(after)):
        if before.get(path) == after.get(path):
            continue
        old_data = ws.store.read_blob(before[path]) if path in before else None
        new_data = ws.store.read_blob(after[path]) if path in after else None
        files.append(_file_change(path, old_data, new_data, old.label, new.label))
    return Comparison(agent, old, new, files)


def _listing(ws: Workspace, tree: str | None,
             listings: Mapping[str, dict[str, str]] | None) -> dict[str, str]:
    if tree is None:
        return {}
    if listings is not None and tree in listings:
        return listings[tree]
    return {path: oid for _mode, oid, path in ws.store.files(tree)}


def _file_change(path: str, old: bytes | None, new: bytes | None, old_label: str,
                 new_label: str) -> FileChange:
    status = "added" if old is None else "removed" if new is None else "modified"
    old_text, new_text = file_text(old), file_text(new)
    if (old is not None and old_text is None) or (new is not None and new_text is None):
        return FileChange(path, status, 0, 0, binary=True)
    old_lines = (old_text or "").splitlines(keepends=True)
    new_lines = (new_text or "").splitlines(keepends=True)
    diff = tuple(difflib.unified_diff(old_lines, new_lines, f"a/{path} ({old_label})",
                                      f"b/{path} ({new_label})"))
    added = sum(1 for ln in diff if ln.startswith("+") and not ln.startswith("+++"))
    removed = sum(1 for ln in diff if ln.startswith("-") and not ln.startswith("---"))
    keys: tuple[KeyChange, ...] = ()
    if path.endswith((".yaml", ".yml")):
        keys = _key_changes(path, old, new)
    return FileChange(path, status, added, removed, keys, diff)


def _key_changes(path: str, old: bytes | None, new: bytes | None) -> tuple[KeyChange, ...]:
    try:
        before = flatten(yamlsafe.load(old, path)) if old is not None else {}
        after = flatten(yamlsafe.load(new, path)) if new is not None else {}
    except yamlsafe.YamlError:
        return ()
    changes = []
    for key in sorted(set(before) | set(after)):
        if key not in before:
            changes.append(KeyChange(key, "added", None, after[key]))
        elif key not in after:
            changes.append(KeyChange(key, "removed", before[key], None))
        elif before[key] != after[key]:
            changes.append(KeyChange(key, "changed", before[key], after[key]))
    return tuple(changes)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys for nested mappings (``model.temperature``); lists of mappings are
    indexed (``integrations[0].url``); lists of plain values stay whole."""
    if isinstance(value, dict) and value:
        result: dict[str, Any] = {}
        for key, item in value.items():
            result.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return result
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        result = {}
        for i, item in enumerate(value):
            result.update(flatten(item, f"{prefix}[{i}]"))
        return result
    return {prefix or "(document)": value}


def show(value: Any, width: int = 70) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[:width - 1] + "…"


def line_kind(line: str) -> str:
    """What a line of ``render`` is: file, hunk, added, removed, changed or context (the
    CLI colours by it, the site marks it)."""
    if line.startswith(("+++ ", "--- ")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    for prefixes, kind in ((("+", "      + ", "  added "), "added"),
                           (("-", "      - ", "  removed "), "removed"),
                           (("      ~ ", "  modified "), "changed")):
        if line.startswith(prefixes):
            return kind
    return "context"


def render(comparison: Comparison, stat: bool = False) -> list[str]:
    """The human report: the summary, then (unless ``stat``) the text diffs."""
    old, new = comparison.old, comparison.new
    lines = [f"{comparison.agent}: {old.label} ({(old.tree or '—')[:7]}) → "
             f"{new.label} ({(new.tree or '—')[:7]})"]
    if comparison.identical:
        lines.append("  identical")
        return lines
    width = max(len(f.path) for f in comparison.files)
    for f in comparison.files:
        if stat:
            counts = "binary" if f.binary else f"+{f.added} -{f.removed}"
            lines.append(f"  {f.path.ljust(width)} | {counts}")
            continue
        lines.append(f"  {f.status:<9} {f.path}")
        for k in f.keys:
            if k.kind == "added":
                lines.append(f"      + {k.key}: {show(k.new)}")
            elif k.kind == "removed":
                lines.append(f"      - {k.key}: {show(k.old)}")
            else:
                lines.append(f"      ~ {k.key}: {show(k.old, 34)} → {show(k.new, 34)}")
    if not stat:
        for f in comparison.files:
            if f.text_diff and not f.path.endswith((".yaml", ".yml")):
                lines.append("")
                lines.extend(ln.rstrip("\n") for ln in f.text_diff)
    return lines
