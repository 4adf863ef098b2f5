"""``stageline diff``: what differs between two states of an agent.

A state is an environment at the branch's tip (``staging``) or at a revision
(``production@v1.2``, ``staging@HEAD~3``). YAML files are compared key by key;
other text files get a unified diff.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
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
    mode: str | None = None  # "100644 → 100755" when the file mode changed

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "status": self.status, "added": self.added,
                "removed": self.removed, "keys": [k.to_json() for k in self.keys],
                "binary": self.binary, "mode": self.mode}


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


Listing = dict[str, tuple[str, str]]  # path → (mode, object id)


def compare(ws: Workspace, agent: str, old_spec: str | None, new_spec: str | None,
            listings: Mapping[str, Listing] | None = None) -> Comparison:
    """What differs between two states of an agent: contents and file modes (a mode is
    part of what is deployed). ``listings`` (tree id → path → (mode, id)) may hold trees
    already listed, as the site lists every agent's in one call."""
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
        was, now = before.get(path), after.get(path)
        if was == now:
            continue
        if was is not None and now is not None and was[1] == now[1]:
            files.append(FileChange(path, "modified", 0, 0, mode=f"{was[0]} → {now[0]}"))
            continue
        old_data = ws.store.read_blob(was[1]) if was else None
        new_data = ws.store.read_blob(now[1]) if now else None
        change = _file_change(path, old_data, new_data, old.label, new.label,
                              functools.partial(_git_diff, ws, was, now))
        if was and now and was[0] != now[0]:
            change = replace(change, mode=f"{was[0]} → {now[0]}")
        files.append(change)
    return Comparison(agent, old, new, files)


def _listing(ws: Workspace, tree: str | None,
             listings: Mapping[str, Listing] | None) -> Listing:
    if tree is None:
        return {}
    if listings is not None and tree in listings:
        return listings[tree]
    return {path: (mode, oid) for mode, oid, path in ws.store.files(tree)}


# difflib's matcher grows with the product of the two files' line counts (and worse on
# repetitive input: an attack pass hung it for minutes on 140 KB); beyond this product
# git diffs the two blobs (Myers with its heuristics) in one process.
_DIFFLIB_LIMIT = 1_000_000


def _git_diff(ws: Workspace, old: tuple[str, str] | None,
              new: tuple[str, str] | None) -> list[str]:
    """git's unified diff of two blobs, from its first hunk on: every option that shapes
    the hunks given, so that no configuration (``diff.algorithm``, ``diff.indentHeuristic``,
    ``diff.interHunkContext``, ``diff.suppressBlankEmpty``) makes another diff of the same
    files."""
    assert old is not None and new is not None
    out = ws.store.run("-c", "diff.suppressBlankEmpty=false", "diff", "--no-color",
                       "--no-ext-diff", "--no-textconv", "--diff-algorithm=myers",
                       "--indent-heuristic", "--inter-hunk-context=0", "-U3",
                       old[1], new[1], check=False).decode("utf-8", "replace")
    lines = out.split("\n")
    first = next((i for i, line in enumerate(lines) if line.startswith("@@")), len(lines))
    return [f"{line}\n" for line in lines[first:] if line]


def _file_change(path: str, old: bytes | None, new: bytes | None, old_label: str,
                 new_label: str, large: Callable[[], list[str]]) -> FileChange:
    status = "added" if old is None else "removed" if new is None else "modified"
    old_text, new_text = file_text(old), file_text(new)
    if (old is not None and old_text is None) or (new is not None and new_text is None):
        return FileChange(path, status, 0, 0, binary=True)
    old_lines = (old_text or "").splitlines(keepends=True)
    new_lines = (new_text or "").splitlines(keepends=True)
    if old_lines and new_lines and len(old_lines) * len(new_lines) > _DIFFLIB_LIMIT:
        diff = (f"--- a/{path} ({old_label})\n", f"+++ b/{path} ({new_label})\n", *large())
    else:
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
        lines.append(f"  {f.status:<9} {f.path}" + (f" (mode {f.mode})" if f.mode else ""))
        for k in f.keys:
            if k.kind == "added":
                lines.append(f"      + {k.key}: {show(k.new)}")
            elif k.kind == "removed":
                lines.append(f"      - {k.key}: {show(k.old)}")
            else:
                lines.append(f"      ~ {k.key}: {show(k.old, 34)} → {show(k.new, 34)}")
    if not stat:
        for f in comparison.files:
            if f.text_diff:  # YAML too: its key summary is a summary, the lines are the truth
                lines.append("")
                lines.extend(ln.rstrip("\n") for ln in f.text_diff)
    return [yamlsafe.visible(line) for line in lines]
