"""The oracle of invariants.py finds the forbidden states it is meant to find (so that its
silence after every hook test means something), and none in a legitimate history."""

from __future__ import annotations

import shutil
from pathlib import Path

import invariants
import pytest
from conftest import author_env, commit_all, git, make_org, sl

from stageline.errors import OK

DEV = "environments/development/support-bot"
STG = "environments/staging/support-bot"
PRD = "environments/production/support-bot"


@pytest.fixture
def unhooked(tmp_path: Path) -> tuple[Path, Path]:
    """A hooked server, a clone, and a way around the hook: the clone's commits are put on
    the server's branch with update-ref, as an attacker who got past the hook would."""
    server = make_org(tmp_path / "server.git", bare=True)
    assert sl(None, "hook", "install", str(server)).code == OK
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(server), str(work))
    return server, work


def _force(server: Path, work: Path) -> None:
    git(work, "push", "-q", str(server), "HEAD:refs/heads/bypass")
    git(server, "update-ref", "refs/heads/main", git(server, "rev-parse", "refs/heads/bypass"))
    git(server, "update-ref", "-d", "refs/heads/bypass")


def test_a_legitimate_release_holds_the_invariants(unhooked: tuple[Path, Path]) -> None:
    server, work = unhooked
    assert sl(work, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    assert sl(work, "mark-ready", "support-bot", actor="quinn").code == OK
    assert sl(work, "promote", "support-bot", "--to", "production", actor="olga").code == OK
    assert sl(work, "rollback", "support-bot", "--to", "HEAD~1", actor="olga").code in (OK, 4)
    _force(server, work)
    assert invariants.hooked_servers(server.parent) == [server]
    assert invariants.check_server(server) == []


@pytest.mark.no_invariants
def test_a_hand_edit_of_staging_is_found(unhooked: tuple[Path, Path]) -> None:
    server, work = unhooked
    (work / STG).mkdir(parents=True, exist_ok=True)
    (work / STG / "agent.yaml").write_text("name: support-bot\n# edited in staging\n")
    commit_all(work, "alice", "Edit staging")
    _force(server, work)
    assert any("staging of support-bot differs from development" in p
               for p in invariants.check_server(server))


@pytest.mark.no_invariants
def test_unapproved_production_is_found(unhooked: tuple[Path, Path]) -> None:
    server, work = unhooked
    shutil.rmtree(work / STG, ignore_errors=True)
    shutil.copytree(work / DEV, work / STG)
    shutil.rmtree(work / PRD, ignore_errors=True)
    shutil.copytree(work / DEV, work / PRD)
    commit_all(work, "olga", "Ship without QA")
    _force(server, work)
    assert any("holds a tree no approval names" in p for p in invariants.check_server(server))


@pytest.mark.no_invariants
def test_a_rewritten_history_is_found(unhooked: tuple[Path, Path]) -> None:
    server, work = unhooked
    (work / "README.md").write_text("one\n")
    commit_all(work, "alice", "One")
    _force(server, work)
    tree = git(work, "rev-parse", "HEAD^{tree}")
    root = git(work, "commit-tree", tree, "-m", "Wipe", env=author_env("quinn"))
    git(server, "update-ref", "refs/heads/main", git(work, "rev-parse", "HEAD"))
    git(work, "push", "-q", str(server), f"{root}:refs/heads/wipe")
    git(server, "update-ref", "refs/heads/main", root)
    assert any("history rewritten" in p for p in invariants.check_server(server))


@pytest.mark.no_invariants
def test_an_empty_production_directory_is_found(unhooked: tuple[Path, Path]) -> None:
    server, work = unhooked
    empty = _mktree(work, "")
    production = _mktree(work, f"040000 tree {empty}\tghost-bot\n")
    environments = _mktree(work, _replace(git(work, "ls-tree", "HEAD:environments"),
                                          "production", production))
    root = _mktree(work, _replace(git(work, "ls-tree", "HEAD"), "environments", environments))
    commit = git(work, "commit-tree", root, "-p", "HEAD", "-m", "Ghost", env=author_env("alice"))
    git(work, "update-ref", "refs/heads/main", commit)
    _force(server, work)
    assert any("ghost-bot: an empty directory" in p for p in invariants.check_server(server))


def _mktree(repo: Path, listing: str) -> str:
    import subprocess

    return subprocess.run(["git", "mktree", "--missing"], cwd=repo, input=listing, text=True,
                          capture_output=True, check=True).stdout.strip()


def _replace(listing: str, name: str, tree: str) -> str:
    lines = [ln for ln in listing.split("\n") if ln and not ln.endswith(f"\t{name}")]
    return "\n".join([*lines, f"040000 tree {tree}\t{name}"]) + "\n"


@pytest.mark.no_invariants
def test_a_wrongly_signed_action_is_found(unhooked: tuple[Path, Path], tmp_path: Path) -> None:
    """Under signing.require, an action signed by another member's key (and one unsigned)
    put past the hook: git's own verification, in the oracle, says so."""
    import subprocess

    server, work = unhooked
    for member in ("alice", "olga"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(tmp_path / member)], check=True)
    policy = (work / "stageline.yaml").read_text()
    for member in ("alice", "olga"):
        line = (tmp_path / f"{member}.pub").read_text().split()
        policy = policy.replace(f"email: {member}@test.example,",
                                f"email: {member}@test.example, keys: ['{line[0]} {line[1]}'],")
    (work / "stageline.yaml").write_text(policy + "signing: {require: actions}\n")
    commit_all(work, "olga", "Signed actions")
    git(work, "config", "gpg.format", "ssh")
    git(work, "config", "user.signingkey", str(tmp_path / "alice"))
    assert sl(work, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    _force(server, work)
    assert invariants.check_server(server) == []
    shutil.rmtree(work / PRD, ignore_errors=True)
    shutil.copytree(work / STG, work / PRD)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-S", "-m", "Forged in olga's name", env=author_env("olga"))
    _force(server, work)
    problems = invariants.check_server(server)
    assert any("signature as G by alice@test.example (author olga@test.example" in p
               for p in problems), problems
