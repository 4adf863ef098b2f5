"""What a new team meets first: help without a command, global options where a user
writes them, one sentence for an unknown agent, adopting a repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import author_env, git, sl
from servers import Released, accepted, ready, rejected

from stageline.errors import BLOCKED, OK, PERMISSION_DENIED, REPOSITORY
from stageline.inventory import RESHIP


@pytest.mark.parametrize("args", [(), ("agent",), ("hook",)])
def test_a_group_without_a_command_prints_its_help(args: tuple[str, ...]) -> None:
    result = sl(None, *args)
    assert result.code == OK and result.err == ""
    assert result.out.startswith(f"Usage: stageline {' '.join(args)}".rstrip() + " [OPTIONS]")


@pytest.mark.parametrize("hook", ["pre-receive", "post-receive"])
def test_the_hooks_have_help(hook: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "stageline", "hook", hook, "--help"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0 and proc.stdout.startswith(f"Usage: stageline hook {hook}")


def test_global_options_after_the_command(ready_org: Path, tmp_path: Path) -> None:
    before = sl(None, "--repo", str(ready_org), "--as", "quinn", "list")
    after = sl(None, "list", "--as", "quinn", "--repo", str(ready_org))
    assert after.code == OK and after.out == before.out
    assert sl(None, "list", "--as=quinn", f"--repo={ready_org}").out == before.out
    # after "--" nothing is moved
    assert sl(ready_org, "diff", "support-bot", "--", "--as").code != OK


COMMANDS = [("status", "supprt-bot"), ("history", "supprt-bot"), ("diff", "supprt-bot"),
            ("validate", "supprt-bot"), ("test", "supprt-bot"),
            ("promote", "supprt-bot", "--to", "staging"), ("mark-ready", "supprt-bot"),
            ("rollback", "supprt-bot")]


@pytest.mark.parametrize("args", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_an_unknown_agent_is_one_sentence_and_exit_4_everywhere(org: Path,
                                                                 args: tuple[str, ...]) -> None:
    result = sl(org, *args, actor="olga")
    assert result.code == BLOCKED
    assert result.err.strip() == (
        "stageline: there is no agent supprt-bot in any environment (did you mean "
        "support-bot?); 'stageline status' lists them, 'stageline agent new' creates one.")


def test_an_unknown_member_gets_the_nearest_name(org: Path) -> None:
    result = sl(org, "list", actor="quin")
    assert result.code == PERMISSION_DENIED and "(did you mean quinn?)" in result.err


def test_init_adopts_an_existing_repository(tmp_path: Path) -> None:
    repo = tmp_path / "existing"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "notes.md").write_text("ours\n")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-q", "-m", "first")
    assert sl(repo, "status").code == REPOSITORY
    options = ("--org", "acme", "--admin", "olga", "--admin-email", "olga@acme.test")
    refused = sl(None, "init", str(repo), *options)
    assert refused.code == BLOCKED and "init --adopt" in refused.err
    done = sl(None, "init", str(repo), "--adopt", *options)
    assert done.code == OK, done.err
    assert git(repo, "log", "--format=%an %s").split("\n")[:2] == [
        "olga Adopt stageline for the acme organization", "x first"]
    assert git(repo, "status", "--porcelain") == ""
    assert sl(repo, "agent", "new", "fresh-bot", actor="olga").code == OK
    again = sl(None, "init", str(repo), "--adopt", *options)
    assert again.code == BLOCKED and "uses stageline already" in again.err


def test_uncommitted_work_is_never_silently_ignored(staged_org: Path) -> None:
    """staging already equals the committed development: "nothing to do" would hide the
    edit on disk."""
    prompt = staged_org / "environments/development/support-bot/prompts/system.md"
    prompt.write_text("an edit not committed\n")
    result = sl(staged_org, "promote", "support-bot", "--to", "staging", actor="alice")
    assert result.code == BLOCKED
    assert result.err.strip() == (
        "stageline: development/support-bot has uncommitted changes (environments/development/"
        "support-bot/prompts/system.md); commit them first: promotion copies the committed "
        "state.")
    checked = sl(staged_org, "validate", "support-bot")
    assert checked.code == OK and "this judged the committed state" in checked.err
    on_disk = sl(staged_org, "validate", "support-bot", "--worktree")
    assert on_disk.code == OK and "committed state" not in on_disk.err
    tested = sl(staged_org, "test", "support-bot")
    assert "this judged the committed state" in tested.err


def test_a_tree_production_was_rolled_back_from_is_not_shipped_again_by_accident(
        released: Released) -> None:
    clone, server = released.clone, released.server
    assert sl(clone, "rollback", "support-bot", actor="olga").code == OK
    accepted(clone, server, "olga")
    shown = json.loads(sl(clone, "status", "--json").out)["agents"][0]
    assert shown["ready_for_production"] is True  # staging still holds v3, still marked
    assert shown["blocked_by"] == [RESHIP]
    assert sl(clone, "status").out.splitlines()[-1] == \
        f"support-bot cannot go to production now: {RESHIP}."
    again = sl(clone, "promote", "support-bot", "--to", "production", actor="omar")
    assert again.code == BLOCKED and "--force-reship" in again.err
    assert sl(clone, "promote", "support-bot", "--to", "production", "--dry-run",
              "--force-reship", actor="omar").code == OK
    assert sl(clone, "promote", "support-bot", "--to", "production", "--force-reship",
              actor="omar").code == OK
    accepted(clone, server, "omar")


def test_a_secret_in_development_is_stopped_at_commit_and_at_push_with_its_line(
        clone: Path, server: Path) -> None:
    prompt = clone / "environments/development/support-bot/prompts/system.md"
    prompt.write_text("You answer billing questions.\nkey: sk-proj-" + "a1B2" * 10 + "\n")
    git(clone, "add", "-A")
    git(clone, "config", "user.email", "alice@test.example")
    guarded = sl(clone, "guard")
    assert guarded.code != OK
    assert "system.md: this looks like an OpenAI/Stripe-style secret key (line 2)" in guarded.err
    assert "${settings.NAME}" in guarded.err
    git(clone, "commit", "-q", "-m", "Oops", env=author_env("alice"))
    rejected(clone, server, "alice", "secret key (line 2), and a secret pushed once stays")


def test_hook_install_into_a_clone_warns(org: Path) -> None:
    result = sl(None, "hook", "install", str(org))
    assert result.code == OK and "warning:" in result.out and "bare repository" in result.out


def test_an_action_in_the_hooked_server_itself_asks_for_yes(server: Path) -> None:
    refused = sl(server, "agent", "new", "fresh-bot", actor="olga")
    assert refused.code == 2 and "past the hook and the push log" in refused.err
    assert sl(server, "agent", "new", "fresh-bot", "--dry-run", actor="olga").code == OK
    assert sl(server, "agent", "new", "fresh-bot", "--yes", actor="olga").code == OK


def test_export_refuses_states_the_server_has_not_accepted(clone: Path, server: Path,
                                                           tmp_path: Path) -> None:
    ready(clone, server)
    assert sl(clone, "promote", "support-bot", "--to", "production", actor="olga").code == OK
    out = tmp_path / "dist"
    refused = sl(clone, "export", "--out", str(out))
    assert refused.code == BLOCKED and "1 commit(s) ahead of origin/main" in refused.err
    assert not out.exists()
    quiet = sl(clone, "export", "--out", str(out), "--allow-unpushed", "--quiet")
    assert quiet.code == OK and quiet.out == "" and (out / "support-bot.json").exists()


def test_an_action_on_an_unprotected_branch_says_so(org: Path) -> None:
    git(org, "checkout", "-q", "-b", "try-things")
    (org / "environments/development/support-bot/prompts/system.md").write_text("v2\n")
    git(org, "commit", "-qam", "v2", env=author_env("alice"))
    done = sl(org, "promote", "support-bot", "--to", "staging", actor="alice")
    assert done.code == OK
    assert "note: try-things is not a protected branch" in done.out


def test_force_color_colours_a_pipe(ready_org: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    plain = subprocess.run([sys.executable, "-m", "stageline", "status"], cwd=ready_org,
                           env=env, capture_output=True, text=True)
    forced = subprocess.run([sys.executable, "-m", "stageline", "status"], cwd=ready_org,
                            env={**env, "FORCE_COLOR": "1"}, capture_output=True, text=True)
    assert "\x1b[" not in plain.stdout and "\x1b[1mAGENT" in forced.stdout
    off = subprocess.run([sys.executable, "-m", "stageline", "status"], cwd=ready_org,
                         env={**env, "FORCE_COLOR": "1", "NO_COLOR": "1"}, capture_output=True,
                         text=True)
    assert "\x1b[" not in off.stdout
