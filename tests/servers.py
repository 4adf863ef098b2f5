"""A hooked server, a clone, and pushes through it: what the tests of the hook share.

The fixtures ``server`` (a bare repository of the test organization with the hook
installed) and ``clone`` are in conftest.py; here are the pushes and the states they
build. A push names its pusher in ``REMOTE_USER`` (a local push hands the environment to
the hook, which takes it as the server's authenticated login).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import commit_all, git, make_org, sl

from stageline.errors import OK

DEV = "environments/development/support-bot"
STG = "environments/staging/support-bot"
PRD = "environments/production/support-bot"


def push(clone: Path, member: str | None, refspec: str = "HEAD:refs/heads/main",
         *extra: str, var: str = "REMOTE_USER") -> tuple[bool, str]:
    env = {var: member} if member else {}
    full = dict(os.environ)
    full.update(env)
    proc = subprocess.run(["git", "push", *extra, "origin", refspec], cwd=clone,
                          capture_output=True, text=True, env=full)
    return proc.returncode == 0, proc.stderr


def tip(server: Path, branch: str = "main") -> str:
    return git(server, "rev-parse", f"refs/heads/{branch}")


def accepted(clone: Path, server: Path, member: str, refspec: str = "HEAD:refs/heads/main",
             *extra: str) -> None:
    ok, err = push(clone, member, refspec, *extra)
    assert ok, err
    assert tip(server) == git(clone, "rev-parse", "HEAD")


def rejected(clone: Path, server: Path, member: str | None, says: str,
             refspec: str = "HEAD:refs/heads/main", *extra: str, var: str = "REMOTE_USER") -> str:
    before = git(server, "for-each-ref")
    ok, err = push(clone, member, refspec, *extra, var=var)
    assert not ok, err
    assert says in err, err
    assert "Traceback" not in err
    assert git(server, "for-each-ref") == before
    git(server, "fsck", "--no-dangling")
    return err


def copy_dir(clone: Path, src: str, dst: str) -> None:
    shutil.rmtree(clone / dst, ignore_errors=True)
    shutil.copytree(clone / src, clone / dst)


def write_approval(clone: Path, marked_by: str, tree: str | None = None) -> None:
    """An approval file written by hand (for the current staging tree unless ``tree``)."""
    tree = tree or git(clone, "rev-parse", f"HEAD:{STG}")
    (clone / "approvals").mkdir(exist_ok=True)
    (clone / "approvals/support-bot.yaml").write_text(
        f"agent: support-bot\nstaging_tree: {tree}\nmarked_by: {marked_by}\nmarked_at: now\n")


def staged(clone: Path, server: Path) -> None:
    assert sl(clone, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    accepted(clone, server, "alice")


def ready(clone: Path, server: Path, qa: str = "quinn") -> None:
    staged(clone, server)
    assert sl(clone, "mark-ready", "support-bot", actor=qa).code == OK
    accepted(clone, server, qa)


def release(clone: Path, server: Path, text: str) -> str:
    """A developer's prompt ``text``, promoted, marked and pushed to production; the
    production commit."""
    (clone / DEV / "prompts/system.md").write_text(text)
    commit_all(clone, "alice", f"prompt {text.strip()}")
    accepted(clone, server, "alice")
    ready(clone, server)
    assert sl(clone, "promote", "support-bot", "--to", "production", actor="olga").code == OK
    accepted(clone, server, "olga")
    return git(clone, "rev-parse", "HEAD")


@dataclass(frozen=True)
class Released:
    server: Path
    clone: Path
    versions: tuple[str, ...]  # the production commits of v1, v2, v3, oldest first


_TEMPLATES: dict[str, tuple[Path, tuple[str, ...]]] = {}


def released(tmp_path: Path, factory: pytest.TempPathFactory) -> Released:
    """A hooked server and its clone after three production releases (prompts v1, v2,
    v3), built once per test process and copied for each test (a copy is milliseconds,
    the nine pushes are seconds)."""
    if "three" not in _TEMPLATES:
        base = factory.mktemp("released")
        server = make_org(base / "server.git", bare=True)
        assert sl(None, "hook", "install", str(server)).code == OK
        git(base, "clone", "-q", str(server), str(base / "work"))
        versions = tuple(release(base / "work", server, f"{v}\n") for v in ("v1", "v2", "v3"))
        _TEMPLATES["three"] = (base, versions)
    base, versions = _TEMPLATES["three"]
    shutil.copytree(base / "server.git", tmp_path / "server.git", symlinks=True)
    shutil.copytree(base / "work", tmp_path / "work", symlinks=True)
    git(tmp_path / "work", "remote", "set-url", "origin", str(tmp_path / "server.git"))
    return Released(tmp_path / "server.git", tmp_path / "work", versions)
