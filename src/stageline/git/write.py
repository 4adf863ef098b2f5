"""Writing objects: blobs, one tree builder, ``commit-tree``, a compare-and-swap ref update.

A new tree is built from the committed state, never the work tree: the trees on the way
to each changed path are read (``Reader.read_tree``) and written again by one long-lived
``mktree --batch``, which sorts the entries as git does; nothing else is read, so the
cost is the depth of the paths and the size of their parent directories, not the size
of the repository.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stageline.errors import Blocked
from stageline.git.objects import Entry, Reader, short_ref
from stageline.git.process import GitFailed
from stageline.layout import FILE_MODE, GITLINK_MODE, TREE_MODE

Changes = Mapping[str, Entry | None]  # path -> its new entry, None removes it


@dataclass(frozen=True)
class Identity:
    name: str
    email: str


class Writer(Reader):
    """Writing objects and moving refs."""

    def hash_blob(self, data: bytes) -> str:
        return self.run("hash-object", "-w", "--stdin", input=data).decode().strip()

    def make_tree(self, entries: Mapping[str, Entry]) -> str:
        """Write a tree object from its entries (``git mktree``, one long-lived process)."""
        proc = self.process("mktree", "-z", "--missing", "--batch")
        records = []
        for name, entry in entries.items():
            kind = "tree" if entry.is_tree else "commit" if entry.mode == GITLINK_MODE else "blob"
            records.append(f"{entry.mode} {kind} {entry.oid}\t".encode()
                           + name.encode("utf-8", "surrogateescape") + b"\0")
        proc.write(b"".join(records) + b"\0")
        return proc.readline().decode().strip()

    def replace(self, root: str | None, changes: Changes) -> str:
        """A new root tree: ``root`` with each path set to its entry (None removes it).
        A directory left empty disappears, as git has no empty directories."""
        nested = {tuple(path.split("/")): entry for path, entry in changes.items()}
        return self._rebuild(root, nested) or self.make_tree({})

    def _rebuild(self, tree: str | None, changes: Mapping[tuple[str, ...], Entry | None]
                 ) -> str | None:
        entries = self.read_tree(tree) if tree else {}
        below: dict[str, dict[tuple[str, ...], Entry | None]] = {}
        for parts, entry in changes.items():
            if len(parts) > 1:
                below.setdefault(parts[0], {})[parts[1:]] = entry
            elif entry is None:
                entries.pop(parts[0], None)
            else:
                entries[parts[0]] = entry
        for name, inner_changes in below.items():
            inner = entries.get(name)
            new = self._rebuild(inner.oid if inner and inner.is_tree else None, inner_changes)
            if new is None:
                entries.pop(name, None)
            else:
                entries[name] = Entry(TREE_MODE, new)
        if not entries:
            return None
        return self.make_tree(entries)

    def build_tree(self, files: Mapping[str, bytes]) -> str:
        """A tree holding the given files (relative path → content)."""
        return self.replace(None, {p: Entry(FILE_MODE, self.hash_blob(d))
                                   for p, d in files.items()})

    def commit(self, tree: str, parents: Sequence[str], message: str, author: Identity,
               sign: bool = False) -> str:
        """``git commit-tree`` with the actor as author and committer; with ``sign``, signed
        by git's own set-up (``-S``: ``gpg.format``, ``user.signingkey``, ssh-agent), and
        otherwise not, whatever ``commit.gpgSign`` says."""
        env = {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_COMMITTER_NAME": author.name,
            "GIT_COMMITTER_EMAIL": author.email,
        }
        args = ["commit-tree", "-S" if sign else "--no-gpg-sign", tree]
        for parent in parents:
            args += ["-p", parent]
        try:
            return self.run(*args, input=message.encode(), env=env).decode().strip()
        except GitFailed as exc:
            if not sign:
                raise
            why = next((ln.strip() for ln in exc.stderr.split("\n") if ln.strip()), "")
            raise Blocked(f"git could not sign the commit ({why}); nothing was written: "
                          "'stageline keys check' says what is missing.") from None

    def update_ref(self, ref: str, new: str, old: str | None, reason: str) -> None:
        """Compare-and-swap: move ``ref`` from ``old`` (None: must not exist) to ``new``."""
        try:
            self.run("update-ref", "-m", reason, ref, new, old or self.null_oid)
        except GitFailed as exc:
            lock = _lock_file_named(exc.stderr)
            if lock:
                raise Blocked(f"a Git lock file is in the way ({lock}); remove it if no git "
                              "process is running, then run the command again.") from None
            raise Blocked(f"the branch {short_ref(ref)} moved while this ran; run it "
                          "again.") from None


def _lock_file_named(stderr: str) -> str | None:
    match = re.search(r"'([^']+\.lock)'", stderr)
    if match and "File exists" in stderr:
        return match.group(1)
    return None
