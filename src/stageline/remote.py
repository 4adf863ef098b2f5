"""The branch and its server: where the branch stands against the branch it tracks
(``status`` and ``list`` say it first), fetching it (``--fetch``), and pushing an
action's commit (``--push``) with the server's verdict in one sentence.

An action only commits; the server's hook judges it when it is pushed, and each member
pushes their own commits (the hook checks the pusher). The word "pushed" is printed
only for a push the server accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

from stageline.errors import RepositoryError
from stageline.git.objects import Tracking, short_ref
from stageline.workspace import Workspace


@dataclass(frozen=True)
class Standing:
    """The branch against the branch it tracks, as this clone last fetched it."""

    branch: str
    upstream: str | None  # "origin/main"; None when it tracks nothing
    ahead: int | None
    behind: int | None
    bare: bool

    def line(self) -> str:
        """One line, as ``git status -sb`` says it: ``main, 2 ahead / 1 behind origin/main``."""
        if self.bare:
            return (f"{self.branch}, in a bare repository: the server's own copy, where "
                    "actions would bypass its hook")
        if self.upstream is None:
            return f"{self.branch}, tracking no server branch (commits stay here until pushed)"
        if self.ahead is None or self.behind is None:
            return f"{self.branch}, tracking {self.upstream}, which is not fetched or is gone"
        if not self.ahead and not self.behind:
            return f"{self.branch}, up to date with {self.upstream}"
        parts = [f"{n} {word}" for n, word in ((self.ahead, "ahead"), (self.behind, "behind"))
                 if n]
        return f"{self.branch}, {' / '.join(parts)} {self.upstream}"

    def to_json(self) -> dict[str, object]:
        return {"name": self.branch, "upstream": self.upstream, "ahead": self.ahead,
                "behind": self.behind}


def standing(ws: Workspace) -> Standing:
    t = ws.store.tracking(ws.ref)
    if t is None:
        return Standing(short_ref(ws.ref), None, None, None, ws.store.work_tree is None)
    name = t.upstream.removeprefix("refs/remotes/").removeprefix("refs/heads/")
    return Standing(short_ref(ws.ref), name, t.ahead, t.behind, ws.store.work_tree is None)


def upstream(ws: Workspace) -> Tracking:
    """The branch ``--push`` pushes to; an error before anything is committed when the
    branch tracks none."""
    t = ws.store.tracking(ws.ref)
    if t is None:
        branch = short_ref(ws.ref)
        raise RepositoryError(f"{branch} tracks no branch on a server, so --push has nowhere "
                              f"to push; set one with 'git push -u origin {branch}' (nothing "
                              "was committed).")
    return t


def fetch(ws: Workspace) -> None:
    """Fetch the remote the branch tracks (``origin`` when it tracks none)."""
    t = ws.store.tracking(ws.ref)
    ws.store.fetch(t.remote if t is not None and t.remote != "." else "origin")


@dataclass(frozen=True)
class Pushed:
    accepted: bool
    sentence: str  # what the server said, in one line

    def to_json(self) -> dict[str, object]:
        return {"accepted": self.accepted, "server": self.sentence}


def push(ws: Workspace, t: Tracking) -> Pushed:
    """Push the branch to the branch it tracks; the verdict in one sentence: accepted,
    or the hook's first reason, or git's."""
    accepted, report, said = ws.store.push(t.remote, f"{ws.ref}:{t.remote_ref}")
    where = f"{t.remote} {short_ref(t.remote_ref)}"
    # --porcelain: "<flag>\t<from>:<to>\t<summary>" per ref; a ref name holds no control
    # character, so a line is a record.
    flags = [line[0] for line in report.split("\n") if line.count("\t") >= 2]
    if accepted:
        if flags and all(f == "=" for f in flags):
            return Pushed(True, f"{where} already has this commit; nothing to push.")
        return Pushed(True, f"pushed to {where}: the server accepted it.")
    return Pushed(False, f"the server rejected the push to {where}: {_reason(report, said)}")


def _reason(report: str, said: str) -> str:
    """The hook's first sentence (``remote: stageline: ...``), else git's reason."""
    for line in said.split("\n"):
        text = line.removeprefix("remote: ").strip().removeprefix("GL-HOOK-ERR: ")
        if line.startswith("remote: ") and text.startswith("stageline: "):
            return text.removeprefix("stageline: ")
    for line in report.split("\n"):
        fields = line.split("\t")
        if len(fields) >= 3 and fields[0] == "!":
            if "fetch first" in fields[2] or "non-fast-forward" in fields[2]:
                return ("the server's branch has commits this clone lacks; run 'git pull "
                        "--rebase' and push again.")
            return f"{fields[2].strip()}."
    first = next((ln.strip() for ln in said.split("\n")
                  if ln.startswith(("fatal:", "error:"))), "git push failed")
    return f"{first.removeprefix('fatal: ').removeprefix('error: ')}."


__all__ = ["Pushed", "Standing", "fetch", "push", "standing", "upstream"]
