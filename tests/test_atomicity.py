"""A crash or a concurrent writer leaves the branch at the old or the new commit, and the
next command finishes an interrupted work-tree update."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import commit_all, git, sl

from stageline.actions import promote
from stageline.errors import BLOCKED, OK, StagelineError
from stageline.workspace import open_workspace

STG = "environments/staging/support-bot"
DEV = "environments/development/support-bot"


def run_cli(repo: Path, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if crash_at:
        env["STAGELINE_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, "-m", "stageline", "--repo", str(repo), *args],
                          capture_output=True, text=True, env=env)


@pytest.mark.parametrize("step", ["before-journal", "before-ref-update"])
def test_crash_before_the_ref_update_changes_nothing(org: Path, step: str) -> None:
    before = git(org, "rev-parse", "HEAD")
    proc = run_cli(org, "--as", "alice", "promote", "support-bot", "--to", "staging",
                   crash_at=step)
    assert proc.returncode == -9
    assert git(org, "rev-parse", "HEAD") == before
    assert git(org, "status", "--porcelain") == ""
    assert sl(org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    assert git(org, "rev-parse", f"HEAD:{STG}") == git(org, "rev-parse", f"HEAD:{DEV}")
    assert not (org / ".git/stageline-pending.json").exists()
    git(org, "fsck")


@pytest.mark.parametrize("step", ["after-ref-update", "after-sync"])
def test_crash_after_the_ref_update_is_finished_by_the_next_command(org: Path, step: str) -> None:
    before = git(org, "rev-parse", "HEAD")
    proc = run_cli(org, "--as", "alice", "promote", "support-bot", "--to", "staging",
                   crash_at=step)
    assert proc.returncode == -9
    after = git(org, "rev-parse", "HEAD")
    assert git(org, "rev-parse", "HEAD~1") == before
    if step == "after-ref-update":
        assert not (org / STG).exists()  # the work tree has not caught up yet
    assert (org / ".git/stageline-pending.json").exists()
    result = sl(org, "status")
    assert result.code == OK
    assert git(org, "rev-parse", "HEAD") == after
    assert (org / STG / "agent.yaml").exists()
    assert git(org, "status", "--porcelain") == ""
    assert not (org / ".git/stageline-pending.json").exists()
    git(org, "fsck")


def test_a_left_lock_file_is_named(org: Path) -> None:
    proc = run_cli(org, "--as", "alice", "promote", "support-bot", "--to", "staging",
                   crash_at="after-ref-update")
    assert proc.returncode == -9
    lock = org / ".git/index.lock"
    lock.write_text("")
    result = sl(org, "status")
    assert result.code == BLOCKED
    assert str(lock) in result.err
    lock.unlink()
    assert sl(org, "status").code == OK
    assert git(org, "status", "--porcelain") == ""


def test_interrupted_update_with_later_edits_is_not_overwritten(org: Path) -> None:
    assert sl(org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    (org / DEV / "prompts/system.md").write_text("v2\n")
    commit_all(org, "alice", "v2")
    proc = run_cli(org, "--as", "alice", "promote", "support-bot", "--to", "staging",
                   crash_at="after-ref-update")
    assert proc.returncode == -9
    (org / STG / "prompts/system.md").write_text("edited meanwhile\n")
    result = sl(org, "status")
    assert result.code == BLOCKED
    assert "changed since" in result.err
    assert (org / STG / "prompts/system.md").read_text() == "edited meanwhile\n"


def test_a_concurrent_writer_is_never_lost(org: Path) -> None:
    ws = open_workspace(str(org))  # reads the tip now
    actor = ws.policy.members["alice"]
    (org / "README.md").write_text("someone else\n")
    theirs = commit_all(org, "dan", "Concurrent edit")
    with pytest.raises(StagelineError) as info:
        promote(ws, actor, "support-bot", "staging")
    assert info.value.code == BLOCKED
    assert "moved" in info.value.message
    assert git(org, "rev-parse", "HEAD") == theirs
    assert git(org, "status", "--porcelain") == ""
    # run again: it succeeds on top of the other commit
    assert sl(org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    assert git(org, "rev-parse", "HEAD~1") == theirs
