"""``Store``: a git repository (bare or with a work tree), as the rest of stageline sees it.

Its parts are the package's modules, one layer each: ``process.Git`` (running git),
``objects.Reader`` (objects and refs), ``write.Writer`` (trees, commits, refs),
``walk.Walker`` (history), ``worktree.Worktree`` (a clone's index and files).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from stageline.errors import RepositoryError
from stageline.git import process
from stageline.git.worktree import Worktree


class Store(Worktree):
    """A git repository, seen through plumbing."""

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> Store:
        where = os.fspath(path) if path is not None else os.getcwd()
        if not os.path.isdir(where):
            raise RepositoryError(f"{where} is not a directory; pass --repo with a Git repository.")
        process.version()
        try:
            out = process.run(["rev-parse", "--absolute-git-dir", "--is-bare-repository",
                               "--show-object-format"], where)
        except process.GitFailed:
            raise RepositoryError(f"{where} is not a Git repository; run stageline init or "
                                  "pass --repo.") from None
        git_dir, bare, object_format = out.decode("utf-8", "surrogateescape").split("\n")[:3]
        work_tree = None
        if bare != "true":
            top = process.run(["rev-parse", "--show-toplevel"], where, check=False)
            work_tree = top.decode("utf-8", "surrogateescape").rstrip("\n") or None
        return cls(git_dir, work_tree, object_format.strip())

    @classmethod
    def init(cls, path: str, branch: str, bare: bool = False) -> Store:
        """A new repository at ``path`` whose HEAD is the unborn ``branch``."""
        try:  # git makes the missing directories of the path
            process.run(["init", "-q", *(["--bare"] if bare else []), "-b", branch,
                         os.path.abspath(path)], "/")
        except process.GitFailed as exc:
            raise RepositoryError(f"cannot create a repository at {path}: "
                                  f"{exc.message.removeprefix('git init failed: ')}") from None
        return cls.open(path)

    @classmethod
    def clone(cls, source: str, path: str) -> Store:
        try:
            process.run(["clone", "-q", source, os.path.abspath(path)], os.getcwd())
        except process.GitFailed as exc:
            raise RepositoryError(f"cannot clone {source}: {exc.stderr.strip()}") from None
        return cls.open(path)

    def push(self, remote: str, refspec: str, env: Mapping[str, str] | None = None) -> \
            tuple[bool, str, str]:
        """``git push --porcelain``: whether it succeeded, git's report of each ref
        (stdout) and the rest, the server's ``remote:`` lines included (stderr)."""
        proc = process.spawn(["push", "--porcelain", remote, refspec], self._cwd, env,
                             stdin=None)
        out, err = proc.communicate()
        return (proc.returncode == 0, out.decode("utf-8", "replace"),
                err.decode("utf-8", "replace"))

    def fetch(self, remote: str) -> None:
        """``git fetch`` of one remote; a failure raises with git's own message."""
        self.run("fetch", "-q", "--end-of-options", remote)

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
