"""``stageline guard``: the staged change judged before it is committed, and the same
verdict as the server's when that change is then committed and pushed through the hook."""


from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import author_env, git, make_org, sl
from servers import (
    DEV,
    PRD,
    STG,
    copy_dir,
    push,
    ready,
    staged,
    tip,
    write_approval,
)

from stageline.errors import CHECK_FAILED, OK, PERMISSION_DENIED, REPOSITORY


def state(repo: Path) -> tuple[str, str, str]:
    """Refs, HEAD and the index: what the guard must leave as it found them."""
    return (git(repo, "for-each-ref"), git(repo, "rev-parse", "HEAD"),
            git(repo, "status", "--porcelain=v1", "--untracked-files=all"))


def guard(repo: Path, member: str | None) -> tuple[int, str, str]:
    before = state(repo)
    result = sl(repo, "guard", actor=member)
    assert state(repo) == before
    assert "Traceback" not in result.err
    return result.code, result.out, result.err


def git_input(repo: Path, text: str, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, input=text, capture_output=True, text=True,
                          check=True, env={**os.environ, **author_env("olga")})
    return proc.stdout.strip()


def commit_staged(repo: Path, member: str, message: str = "Staged change") -> None:
    git(repo, "commit", "-q", "--no-verify", "-m", message, env=author_env(member))


# -- the verdict is the server's ---------------------------------------------------------

Scenario = Callable[[Path, Path], None]


def _dev_edit(clone: Path, server: Path) -> None:
    (clone / DEV / "prompts/system.md").write_text("better\n")


def _staging_by_hand(clone: Path, server: Path) -> None:
    staged(clone, server)
    (clone / STG / "prompts/system.md").write_text("edited in staging\n")


def _promotion_by_hand(clone: Path, server: Path) -> None:
    copy_dir(clone, DEV, STG)


def _approval(marked_by: str) -> Scenario:
    def scenario(clone: Path, server: Path) -> None:
        staged(clone, server)
        write_approval(clone, marked_by)
    return scenario


def _production_unapproved(clone: Path, server: Path) -> None:
    staged(clone, server)
    copy_dir(clone, STG, PRD)


def _production_approved(clone: Path, server: Path) -> None:
    ready(clone, server)
    copy_dir(clone, STG, PRD)


def _readme(clone: Path, server: Path) -> None:
    (clone / "README.md").write_text("notes\n")


def _invalid_policy(clone: Path, server: Path) -> None:
    (clone / "stageline.yaml").write_text("organization: testorg\nmembers: {}\n")


def _merge_bringing_staging(clone: Path, server: Path) -> None:
    """A conflicted merge whose first-parent diff brings a promotion from a side branch."""
    git(clone, "checkout", "-q", "-b", "side")
    assert sl(clone, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    (clone / "README.md").write_text("side\n")
    git(clone, "commit", "-q", "-am", "Side docs", env=author_env("alice"))
    git(clone, "checkout", "-q", "main")
    (clone / "README.md").write_text("main\n")
    git(clone, "commit", "-q", "-am", "Main docs", env=author_env("alice"))
    assert git(clone, "merge", "side", check=False, env=author_env("alice")) is not None
    (clone / "README.md").write_text("both\n")


SCENARIOS: list[tuple[str, Scenario, str, str | None]] = [
    ("development edit", _dev_edit, "alice", None),
    ("development edit by QA", _dev_edit, "quinn", "the author quinn (qa) may not edit development"),
    ("staging edited by hand", _staging_by_hand, "alice",
     "staging must be an exact copy of development in the same commit; "
     "run 'stageline promote support-bot --to staging'"),
    ("promotion by hand", _promotion_by_hand, "alice", None),
    ("approval by hand", _approval("quinn"), "quinn", None),
    ("approval by a developer", _approval("alice"), "alice",
     "the author alice (developer) may not mark an agent Ready for Production"),
    ("production without approval", _production_unapproved, "olga",
     "support-bot has not been marked Ready for Production"),
    ("production by hand, approved", _production_approved, "olga", None),
    ("production by a developer", _production_approved, "alice",
     "the author alice (developer) may not push to production"),
    ("docs", _readme, "dan", None),
    ("docs by QA", _readme, "rita", "the author rita (qa) may not change files outside"),
    ("invalid policy", _invalid_policy, "olga", "the new policy is invalid"),
    ("policy by a developer", _invalid_policy, "alice", "may not change stageline.yaml"),
    ("merge bringing staging", _merge_bringing_staging, "alice",
     "a merge commit may not change staging"),
]


@pytest.mark.parametrize(("scenario", "member", "rule"), [s[1:] for s in SCENARIOS],
                         ids=[s[0] for s in SCENARIOS])
def test_guard_says_what_the_server_says(clone: Path, server: Path, scenario: Scenario,
                                         member: str, rule: str | None) -> None:
    scenario(clone, server)
    git(clone, "add", "-A")
    code, out, err = guard(clone, member)
    if rule is None:
        assert (code, out, err) == (OK, "", "")
    else:
        assert code == CHECK_FAILED, err
        assert rule in err
        assert f"judged as {member} by the policy at origin/main" in err
    commit_staged(clone, member)
    ok, said = push(clone, member)
    assert ok == (code == OK), said
    # Each line of the guard is a line of the server, less the commit id it cannot know yet.
    for line in err.splitlines()[:-1]:
        assert line.removeprefix("stageline: ") in said


# -- what is judged ---------------------------------------------------------------------


def test_nothing_staged_is_fine_and_unstaged_work_is_not_judged(clone: Path) -> None:
    assert guard(clone, "alice") == (OK, "", "")
    (clone / "README.md").write_text("unstaged\n")
    (clone / "environments/staging").mkdir()
    shutil.copytree(clone / DEV, clone / STG)
    (clone / STG / "agent.yaml").write_text("not a copy\n")
    assert guard(clone, "alice") == (OK, "", "")
    git(clone, "add", "--", STG)
    assert guard(clone, "alice")[0] == CHECK_FAILED


def test_the_author_is_who_git_will_record(clone: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """git commit hands its hooks GIT_AUTHOR_EMAIL; the server checks author and pusher."""
    _dev_edit(clone, clone)
    git(clone, "add", "-A")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "quinn@test.example")
    code, _out, err = guard(clone, "alice")
    assert code == CHECK_FAILED
    assert "the author quinn (qa) may not edit development" in err
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "nobody@test.example")
    assert "the author nobody@test.example is not a member of testorg" in guard(clone, "alice")[2]


def test_the_actor_is_resolved_like_every_command(clone: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _dev_edit(clone, clone)
    git(clone, "add", "-A")
    code, _out, err = guard(clone, None)
    assert code == PERMISSION_DENIED
    assert "pass --as MEMBER" in err
    git(clone, "config", "user.email", "dan@test.example")
    assert guard(clone, None)[0] == OK
    monkeypatch.setenv("STAGELINE_ACTOR", "rita")
    code, _out, err = guard(clone, None)
    assert code == CHECK_FAILED
    assert "the author rita (qa) may not edit development" in err  # run by hand: the actor
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "dan@test.example")  # as git commit sets it
    code, _out, err = guard(clone, None)
    assert code == CHECK_FAILED
    assert "the pusher rita (qa) may not edit development" in err
    assert "the author" not in err
    code, _out, err = guard(clone, "nobody")
    assert code == PERMISSION_DENIED
    assert "nobody is not a member of testorg" in err


def test_any_branch_is_judged(clone: Path, server: Path) -> None:
    """The change reaches the protected branch in the end: a working branch is judged too."""
    staged(clone, server)
    git(clone, "checkout", "-q", "-b", "experiment")
    (clone / STG / "prompts/system.md").write_text("edited in staging\n")
    git(clone, "add", "-A")
    code, _out, err = guard(clone, "alice")
    assert code == CHECK_FAILED
    assert "staging must be an exact copy of development" in err


# -- the policy it judges by --------------------------------------------------------------


def _demote_alice(repo: Path) -> None:
    policy = repo / "stageline.yaml"
    policy.write_text(policy.read_text().replace("roles: [developer]}", "roles: [qa]}", 1))
    git(repo, "commit", "-q", "-am", "Alice moves to QA", env=author_env("olga"))


def test_policy_of_the_remote_tracking_protected_branch(clone: Path, server: Path) -> None:
    """An unpushed policy change does not judge the commits pushed with it: the server's
    policy, as last fetched, does."""
    _demote_alice(clone)
    _dev_edit(clone, server)
    git(clone, "add", "-A")
    assert guard(clone, "alice")[0] == OK
    commit_staged(clone, "alice")
    ok, said = push(clone, "olga")
    assert ok, said
    assert tip(server) == git(clone, "rev-parse", "HEAD")
    git(clone, "fetch", "-q")
    (clone / DEV / "prompts/system.md").write_text("again\n")
    git(clone, "add", "-A")
    code, _out, err = guard(clone, "alice")
    assert code == CHECK_FAILED
    assert "the author alice (qa) may not edit development" in err


def test_policy_at_head_without_a_remote(org: Path) -> None:
    _demote_alice(org)
    _dev_edit(org, org)
    git(org, "add", "-A")
    assert guard(org, "dan")[0] == OK
    code, _out, err = guard(org, "alice")
    assert code == CHECK_FAILED
    assert "the author alice (qa) may not edit development" in err
    assert "judged as alice by the policy at HEAD" in err


def test_a_broken_server_policy_is_exit_5(clone: Path) -> None:
    blob = git_input(clone, "members: [\n", "hash-object", "-w", "--stdin")
    tree = git_input(clone, f"100644 blob {blob}\tstageline.yaml\n", "mktree")
    broken = git(clone, "commit-tree", tree, "-m", "broken", env=author_env("olga"))
    git(clone, "update-ref", "refs/remotes/origin/main", broken)
    _dev_edit(clone, clone)
    git(clone, "add", "-A")
    code, _out, err = guard(clone, "alice")
    assert code == REPOSITORY
    assert "the server's stageline.yaml (at origin/main) is invalid" in err


def test_not_an_organization_is_exit_5(tmp_path: Path) -> None:
    repo = tmp_path / "plain"
    git(tmp_path, "init", "-q", str(repo))
    result = sl(repo, "guard", actor="alice")
    assert result.code == REPOSITORY
    assert "HEAD has no commits yet" in result.err
    (repo / "README.md").write_text("x\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "x", env=author_env("alice"))
    result = sl(repo, "guard", actor="alice")
    assert result.code == REPOSITORY
    assert "there is no stageline.yaml at HEAD" in result.err
    assert sl(tmp_path, "guard", actor="alice").code == REPOSITORY
    bare = make_org(tmp_path / "org.git", bare=True)
    result = sl(bare, "guard", actor="alice")
    assert result.code == REPOSITORY
    assert "is a bare repository" in result.err


# -- rollbacks: the one rule that reads the message -----------------------------------------


def test_a_hand_made_rollback_is_allowed_with_its_trailers(tmp_path: Path) -> None:
    server = make_org(tmp_path / "server.git", bare=True)
    assert sl(None, "hook", "install", str(server)).code == OK
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(server), str(work))
    releases = []
    for text in ("v1\n", "v2\n"):
        (work / DEV / "prompts/system.md").write_text(text)
        git(work, "commit", "-q", "-am", f"Prompt {text.strip()}", env=author_env("alice"))
        for member, args in [("alice", ("promote", "support-bot", "--to", "staging")),
                             ("quinn", ("mark-ready", "support-bot")),
                             ("olga", ("promote", "support-bot", "--to", "production"))]:
            assert sl(work, *args, actor=member).code == OK
            assert push(work, member)[0]
        releases.append(git(work, "rev-parse", "HEAD"))

    (work / PRD / "prompts/system.md").write_text("v3, never released\n")
    git(work, "add", "-A")
    assert guard(work, "olga")[0] == CHECK_FAILED
    git(work, "checkout", releases[0], "--", PRD)
    code, out, _err = guard(work, "olga")
    assert code == OK
    trailers = out.split("end the commit message with:\n", 1)[1]
    assert f"Stageline-Restores: {releases[0]}" in trailers
    assert "Stageline-Actor: olga" in trailers
    code, _out, err = guard(work, "alice")
    assert code == CHECK_FAILED
    assert "production must be an exact copy of staging" in err
    commit_staged(work, "olga", f"Roll back by hand\n\n{trailers}")
    ok, said = push(work, "olga")
    assert ok, said
