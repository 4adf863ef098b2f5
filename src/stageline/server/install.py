"""``stageline hook install|uninstall``: the thin shims a Git server runs.

Each shim is the project's ``hooks/<name>`` with the installing interpreter
pinned. It carries a marker line, so re-installing and uninstalling touch only
stageline's own files; a foreign hook already at the path is kept beside it as
``<name>.chained`` and run first, never overwritten.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from stageline.errors import Blocked, UsageError
from stageline.git.store import Store
from stageline.resources import data_path

MARKER = "# stageline-managed-hook"
HOOKS = ("pre-receive", "post-receive")
LAYOUTS = {
    "plain": "hooks/{hook}",
    "gitlab": "custom_hooks/{hook}.d/stageline",
    "gitea": "hooks/{hook}.d/stageline",
}


def _targets(repo: str, layout: str) -> list[tuple[str, Path]]:
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}.")
    with Store.open(repo) as store:
        git_dir = store.git_dir
    return [(hook, git_dir / LAYOUTS[layout].format(hook=hook)) for hook in HOOKS]


def _harden(repo: str) -> None:
    """Have the server check pushed objects: a malformed tree (entries out of order) can
    make a path lookup and a diff disagree about what a commit contains."""
    with Store.open(repo) as store:
        store.run("config", "receive.fsckObjects", "true")


def _ours(path: Path) -> bool:
    try:
        return MARKER in path.read_text(encoding="utf-8", errors="replace").splitlines()[:3]
    except OSError:
        return False


def installed_in(git_dir: Path) -> bool:
    """Whether stageline's pre-receive guards this repository (in any layout)."""
    return any(_ours(git_dir / where.format(hook="pre-receive")) for where in LAYOUTS.values())


def install(repo: str, layout: str = "plain") -> str:
    """Install the shims; returns what was done, a line per hook."""
    done = []
    with Store.open(repo) as store:
        if store.work_tree is not None:
            done.append(f"warning: {repo} is a clone with a work tree, not a server's bare "
                        "repository: its hooks judge only pushes into it (and git refuses "
                        "pushes to its checked-out branch); install into the server's bare "
                        "repository.")
    for hook, target in _targets(repo, layout):
        text = data_path("hooks").joinpath(hook).read_text(encoding="utf-8")
        text = text.replace("@PYTHON@", sys.executable)
        chained = target.with_name(target.name + ".chained")
        target.parent.mkdir(parents=True, exist_ok=True)
        note = ""
        if target.exists() and not _ours(target):
            if chained.exists():
                raise Blocked(f"{target} is not stageline's and {chained} exists too; move one "
                              "of them away, then install again.")
            os.replace(target, chained)
            note = f" (the hook that was there runs first, from {chained.name})"
        tmp = target.with_name(target.name + ".stageline-tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o755)
        os.replace(tmp, target)
        done.append(f"installed {target}{note}")
    _harden(repo)
    done.append("set receive.fsckObjects=true")
    return "\n".join(done)


def uninstall(repo: str, layout: str = "plain") -> str:
    done = []
    for _hook, target in _targets(repo, layout):
        chained = target.with_name(target.name + ".chained")
        if not target.exists():
            continue
        if not _ours(target):
            done.append(f"left {target}: it is not stageline's")
            continue
        target.unlink()
        if chained.exists():
            os.replace(chained, target)
            done.append(f"removed stageline's hook; {target} is the earlier hook again")
        else:
            done.append(f"removed {target}")
    return "\n".join(done) or "no stageline hook was installed there."
