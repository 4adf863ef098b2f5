"""Hand-made git objects for attack tests: trees and commits git's porcelain would never
write (out of order, duplicated, odd modes, odd headers), hashed with ``--literally``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import author_env

Entry = tuple[str, str, str]  # (mode as written, name, object id)


def hash_object(repo: Path, kind: str, data: bytes) -> str:
    return subprocess.run(["git", "hash-object", "--literally", "-t", kind, "-w", "--stdin"],
                          cwd=repo, input=data, capture_output=True, check=True
                          ).stdout.decode().strip()


def entries(repo: Path, tree: str | None) -> list[Entry]:
    """A tree's entries as git lists them (``ls-tree -z``; modes as git canonicalises them)."""
    if tree is None:
        return []
    out = subprocess.run(["git", "ls-tree", "-z", tree], cwd=repo, capture_output=True,
                         check=True).stdout
    found = []
    for record in out.split(b"\0"):
        if record:
            meta, _, name = record.partition(b"\t")
            mode, _kind, oid = meta.decode().split(" ")
            found.append((mode.lstrip("0"), name.decode("utf-8", "surrogateescape"), oid))
    return found


def git_order(entry: Entry) -> bytes:
    mode, name, _oid = entry
    key = name.encode("utf-8", "surrogateescape")
    return key + b"/" if mode.lstrip("0") == "40000" else key


def tree_bytes(items: list[Entry]) -> bytes:
    return b"".join(f"{mode} ".encode() + name.encode("utf-8", "surrogateescape") + b"\0"
                    + bytes.fromhex(oid) for mode, name, oid in items)


def write_tree(repo: Path, items: list[Entry], sort: bool = True) -> str:
    """A tree of exactly these entries, in git's order unless ``sort`` is False."""
    return hash_object(repo, "tree", tree_bytes(sorted(items, key=git_order) if sort else items))


def empty_tree(repo: Path) -> str:
    return write_tree(repo, [])


def with_entry(repo: Path, tree: str | None, path: str, mode: str, oid: str | None) -> str:
    """``tree`` with ``path`` set to ``(mode, oid)`` (None removes it), every tree on the way
    rewritten in git's order; the entry itself is written as given, however odd."""
    name, _, rest = path.partition("/")
    old = entries(repo, tree)
    kept = [e for e in old if e[1] != name]
    if rest:
        inner = next((e[2] for e in old if e[1] == name and e[0] == "40000"), None)
        kept.append(("40000", name, with_entry(repo, inner, rest, mode, oid)))
    elif oid is not None:
        kept.append((mode, name, oid))
    return write_tree(repo, kept)


def blob(repo: Path, text: str | bytes) -> str:
    return hash_object(repo, "blob", text.encode() if isinstance(text, str) else text)


def commit(repo: Path, tree: str, member: str, message: str, *parents: str) -> str:
    """An ordinary commit (``commit-tree``) authored and committed by ``member``."""
    args = ["git", "commit-tree", tree]
    for parent in parents:
        args += ["-p", parent]
    env = {**os.environ, **author_env(member)}
    return subprocess.run([*args, "-m", message], cwd=repo, env=env, capture_output=True,
                          text=True, check=True).stdout.strip()


def ident(member: str, when: int = 1700000000) -> str:
    return f"{member.capitalize()} <{member}@test.example> {when} +0000"


def raw_commit(repo: Path, header: str, message: str = "Hand-made\n") -> str:
    """A commit object of exactly this header (``tree ...\\nparent ...\\n...``)."""
    return hash_object(repo, "commit", f"{header}\n\n{message}".encode())


def update_branch(repo: Path, commit_id: str, branch: str = "main") -> None:
    subprocess.run(["git", "update-ref", f"refs/heads/{branch}", commit_id], cwd=repo,
                   check=True)
