"""``--push``: an action's commit pushed to the branch's upstream, through the installed
hook, with the server's verdict in one line; without it, nothing says "pushed"."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import commit_all, git, sl
from servers import accepted, ready, tip

from stageline.errors import CHECK_FAILED, OK, REPOSITORY

PushingAs = Callable[[str], None]


@pytest.fixture
def pushing_as(monkeypatch: pytest.MonkeyPatch) -> PushingAs:
    """A local server learns who pushes from REMOTE_USER."""
    return lambda member: monkeypatch.setenv("REMOTE_USER", member)


def _edit(clone: Path) -> None:
    (clone / "environments/development/support-bot/prompts/system.md").write_text("v2\n")
    commit_all(clone, "alice", "v2")


def test_push_sends_the_commit_and_says_the_server_accepted_it(
        clone: Path, server: Path, pushing_as: PushingAs) -> None:
    _edit(clone)
    pushing_as("alice")
    done = sl(clone, "promote", "support-bot", "--to", "staging", "--push", actor="alice")
    assert done.code == OK, done.err
    assert "pushed to origin main: the server accepted it." in done.out
    assert "next: QA tests it and runs 'stageline mark-ready support-bot'." in done.out
    assert tip(server) == git(clone, "rev-parse", "HEAD").strip()


def test_without_push_the_commit_stays_here_and_nothing_says_pushed(
        clone: Path, server: Path) -> None:
    _edit(clone)
    accepted(clone, server, "alice")
    before = tip(server)
    done = sl(clone, "promote", "support-bot", "--to", "staging", actor="alice")
    assert done.code == OK, done.err
    assert "pushed" not in done.out + done.err
    assert "committed on main, here only" in done.out and "'git push'" in done.out
    assert tip(server) == before


def test_a_rejected_push_is_exit_1_with_the_hooks_reason_and_the_commit_kept(
        clone: Path, server: Path, pushing_as: PushingAs) -> None:
    ready(clone, server)
    before = tip(server)
    pushing_as("dan")  # olga's commit, pushed with a developer's credentials
    done = sl(clone, "promote", "support-bot", "--to", "production", "--push", actor="olga")
    assert done.code == CHECK_FAILED
    assert "the server rejected the push to origin main: push to main rejected:" in done.err
    assert "dan" in done.err and "the commit stays on your branch" in done.err
    assert "pushed to" not in done.out
    assert tip(server) == before
    assert git(clone, "log", "-1", "--format=%s").strip() == "Push support-bot to production"


def test_a_server_ahead_is_named_as_such(clone: Path, server: Path, tmp_path: Path,
                                        pushing_as: PushingAs) -> None:
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(server), str(other))
    _edit(other)
    accepted(other, server, "alice")
    (clone / "environments/development/support-bot/prompts/system.md").write_text("v3\n")
    commit_all(clone, "alice", "v3")
    pushing_as("alice")
    done = sl(clone, "promote", "support-bot", "--to", "staging", "--push", actor="alice")
    assert done.code == CHECK_FAILED
    assert "the server's branch has commits this clone lacks; run 'git pull --rebase'" \
        in done.err


def test_push_without_an_upstream_commits_nothing(clone: Path, server: Path) -> None:
    git(clone, "branch", "--unset-upstream")
    _edit(clone)
    head = git(clone, "rev-parse", "HEAD")
    done = sl(clone, "promote", "support-bot", "--to", "staging", "--push", actor="alice")
    assert done.code == REPOSITORY
    assert "main tracks no branch on a server" in done.err and "nothing was committed" in done.err
    assert git(clone, "rev-parse", "HEAD") == head


def test_push_in_json(clone: Path, server: Path, pushing_as: PushingAs) -> None:
    pushing_as("olga")
    done = sl(clone, "agent", "new", "fresh-bot", "--push", "--json", actor="olga")
    assert done.code == OK, done.err
    shown = json.loads(done.out)
    assert shown["pushed"] is True and shown["push"]["accepted"] is True
    assert shown["commit"] == tip(server)
    quiet = sl(clone, "agent", "new", "other-bot", "--json", actor="olga")
    assert json.loads(quiet.out)["pushed"] is False
