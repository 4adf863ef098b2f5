"""The pre-receive hook through real pushes: a bare server with the hook installed, a clone,
and the server's identity variable naming the pusher (a local push hands it to the hook)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import author_env, commit_all, git, make_org, sl
from servers import (
    DEV,
    PRD,
    STG,
    Released,
    accepted,
    copy_dir,
    push,
    ready,
    rejected,
    release,
    staged,
    tip,
    write_approval,
)

from stageline.errors import CHECK_FAILED, OK

# -- the legitimate workflow ------------------------------------------------------------


def test_the_whole_workflow_is_accepted(clone: Path, server: Path) -> None:
    ready(clone, server)
    assert sl(clone, "promote", "support-bot", "--to", "production", actor="olga").code == OK
    accepted(clone, server, "olga")
    (clone / DEV / "prompts/system.md").write_text("v2\n")
    commit_all(clone, "alice", "Improve the prompt")
    accepted(clone, server, "alice")
    (clone / "README.md").write_text("docs\n")
    commit_all(clone, "dan", "Docs")
    accepted(clone, server, "dan")
    log = [json.loads(line) for line in
           (server / "stageline-pushes.jsonl").read_text().splitlines()]
    assert [r["pusher"] for r in log] == ["alice", "quinn", "olga", "alice", "dan"]
    assert log[-1]["new"] == tip(server)
    assert log[-1]["ref"] == "refs/heads/main"


def test_a_hand_made_promotion_is_a_promotion(clone: Path, server: Path) -> None:
    copy_dir(clone, DEV, STG)
    commit_all(clone, "alice", "Copy development to staging by hand")
    accepted(clone, server, "alice")


def test_policy_change_by_admin_is_accepted(clone: Path, server: Path) -> None:
    policy = clone / "stageline.yaml"
    policy.write_text(policy.read_text() + "  eve: {name: Eve, email: eve@test.example, "
                                            "roles: [developer]}\n")
    commit_all(clone, "olga", "Add eve")
    accepted(clone, server, "olga")


def test_merge_of_development_work_is_accepted(clone: Path, server: Path) -> None:
    git(clone, "checkout", "-q", "-b", "feature")
    (clone / DEV / "prompts/system.md").write_text("feature\n")
    commit_all(clone, "alice", "Feature work")
    git(clone, "checkout", "-q", "main")
    (clone / "README.md").write_text("main moved\n")
    commit_all(clone, "dan", "Docs")
    git(clone, "merge", "-q", "--no-ff", "feature", "-m", "Merge feature",
        env=author_env("alice"))
    accepted(clone, server, "alice")


# -- attacks, each rejected with the branch unchanged ----------------------------------------


def test_hand_edit_of_staging(clone: Path, server: Path) -> None:
    staged(clone, server)
    (clone / STG / "prompts/system.md").write_text("edited in staging\n")
    commit_all(clone, "alice", "Fix staging directly")
    err = rejected(clone, server, "alice", "staging must be an exact copy of development")
    assert "stageline promote support-bot --to staging" in err
    assert git(clone, "rev-parse", "--short=12", "HEAD") in err
    assert STG in err


def test_developer_production_push(clone: Path, server: Path) -> None:
    ready(clone, server)
    copy_dir(clone, STG, PRD)
    commit_all(clone, "alice", "Ship it")
    rejected(clone, server, "alice", "may not push to production")


def test_forged_author(clone: Path, server: Path) -> None:
    """A developer makes the production commit as an org-admin and pushes it as themself."""
    ready(clone, server)
    assert sl(clone, "promote", "support-bot", "--to", "production", actor="olga").code == OK
    rejected(clone, server, "alice", "the pusher alice (developer) may not push to production")


def test_approval_written_by_a_developer(clone: Path, server: Path) -> None:
    staged(clone, server)
    write_approval(clone, "alice")
    commit_all(clone, "alice", "Approve myself")
    rejected(clone, server, "alice", "may not mark an agent Ready for Production")


def test_approval_pushed_by_a_developer(clone: Path, server: Path) -> None:
    staged(clone, server)
    assert sl(clone, "mark-ready", "support-bot", actor="quinn").code == OK
    rejected(clone, server, "alice", "the pusher alice (developer) may not mark")


def test_approval_marked_by_someone_else(clone: Path, server: Path) -> None:
    staged(clone, server)
    write_approval(clone, "rita")
    commit_all(clone, "quinn", "Approve in rita's name")
    rejected(clone, server, "quinn", "the approval must add quinn's own mark")


def test_production_push_by_the_member_who_marked_it(clone: Path, server: Path) -> None:
    ready(clone, server, qa="sam")
    copy_dir(clone, STG, PRD)
    commit_all(clone, "sam", "Ship what I approved")
    rejected(clone, server, "sam", "separation of duties")


def test_trailers_claiming_another_action(clone: Path, server: Path) -> None:
    (clone / "README.md").write_text("innocent\n")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "Docs\n\nStageline-Action: promote-to-production\n"
        "Stageline-Agent: support-bot\nStageline-Actor: dan", env=author_env("dan"))
    rejected(clone, server, "dan", "the trailers claim promote-to-production")


def test_trailers_claiming_another_actor(clone: Path, server: Path) -> None:
    (clone / "README.md").write_text("innocent\n")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "Docs\n\nStageline-Actor: olga", env=author_env("dan"))
    rejected(clone, server, "dan", "Stageline-Actor claims 'olga' but the author is dan")


def test_qa_editing_development(clone: Path, server: Path) -> None:
    (clone / DEV / "prompts/system.md").write_text("qa was here\n")
    commit_all(clone, "quinn", "QA tweak")
    rejected(clone, server, "quinn", "may not edit development")


def test_self_promotion_with_a_production_push(clone: Path, server: Path) -> None:
    ready(clone, server)
    policy = clone / "stageline.yaml"
    policy.write_text(policy.read_text().replace("roles: [developer]}\n  dan",
                                                 "roles: [developer, org-admin]}\n  dan", 1))
    commit_all(clone, "alice", "Make me admin")
    copy_dir(clone, STG, PRD)
    commit_all(clone, "alice", "Ship it")
    err = rejected(clone, server, "alice", "may not change stageline.yaml")
    assert "may not push to production" in err


def test_broken_policy_from_an_admin(clone: Path, server: Path) -> None:
    (clone / "stageline.yaml").write_text("organization: testorg\nmembers: {}\n")
    commit_all(clone, "olga", "Oops")
    rejected(clone, server, "olga", "the new policy is invalid")


def test_non_member_pusher(clone: Path, server: Path) -> None:
    (clone / "README.md").write_text("x\n")
    commit_all(clone, "alice", "Docs")
    rejected(clone, server, "mallory", "the pusher mallory is not a member")


def test_no_identity(clone: Path, server: Path) -> None:
    (clone / "README.md").write_text("x\n")
    commit_all(clone, "alice", "Docs")
    rejected(clone, server, None, "did not say who is pushing")


def test_non_member_author(clone: Path, server: Path) -> None:
    (clone / "README.md").write_text("x\n")
    commit_all(clone, "mallory", "Docs")
    rejected(clone, server, "alice", "mallory@test.example is not a member")


def test_force_push(clone: Path, server: Path) -> None:
    (clone / "README.md").write_text("x\n")
    commit_all(clone, "alice", "Docs")
    accepted(clone, server, "alice")
    git(clone, "reset", "-q", "--hard", "HEAD~1")
    (clone / "README.md").write_text("rewritten\n")
    commit_all(clone, "alice", "Rewrite")
    rejected(clone, server, "alice", "not a fast-forward", "+HEAD:refs/heads/main")


def test_rewind(clone: Path, server: Path) -> None:
    (clone / "README.md").write_text("x\n")
    commit_all(clone, "alice", "Docs")
    accepted(clone, server, "alice")
    rejected(clone, server, "olga", "not a fast-forward", "+HEAD~1:refs/heads/main")


def test_delete_branch(clone: Path, server: Path) -> None:
    rejected(clone, server, "olga", "may not be deleted", ":refs/heads/main")


def test_case_variant_of_protected_branch_is_protected(clone: Path, server: Path) -> None:
    (clone / STG).mkdir(parents=True)
    (clone / STG / "agent.yaml").write_text("fake\n")
    commit_all(clone, "olga", "Fake staging")
    rejected(clone, server, "olga", "differs only in case", "HEAD:refs/heads/MAIN")


def test_approval_for_an_older_staging_tree(clone: Path, server: Path) -> None:
    staged(clone, server)
    old_tree = git(clone, "rev-parse", f"HEAD:{STG}")
    (clone / DEV / "prompts/system.md").write_text("v2\n")
    commit_all(clone, "alice", "v2")
    assert sl(clone, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    accepted(clone, server, "alice")
    write_approval(clone, "quinn", old_tree)
    commit_all(clone, "quinn", "Approve the old tree")
    rejected(clone, server, "quinn", "not for the staging tree of the same commit")


def test_merge_that_fabricates_staging(clone: Path, server: Path) -> None:
    git(clone, "checkout", "-q", "-b", "side")
    (clone / STG).mkdir(parents=True)
    (clone / STG / "agent.yaml").write_text("fabricated\n")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "side", env=author_env("alice"))
    git(clone, "checkout", "-q", "main")
    (clone / "README.md").write_text("main moved\n")
    commit_all(clone, "alice", "Docs")
    git(clone, "merge", "-q", "--no-ff", "side", "-m", "Merge", env=author_env("alice"))
    err = rejected(clone, server, "alice", "a merge commit may not change staging")
    assert "exact copy" in err  # the side commit is judged too


def test_merge_bringing_back_an_old_production_tree(clone: Path, server: Path) -> None:
    ready(clone, server)
    assert sl(clone, "promote", "support-bot", "--to", "production", actor="olga").code == OK
    accepted(clone, server, "olga")
    v1 = git(clone, "rev-parse", "HEAD")
    (clone / DEV / "prompts/system.md").write_text("v2\n")
    commit_all(clone, "alice", "v2")
    assert sl(clone, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    accepted(clone, server, "alice")
    assert sl(clone, "mark-ready", "support-bot", actor="quinn").code == OK
    accepted(clone, server, "quinn")
    assert sl(clone, "promote", "support-bot", "--to", "production", actor="olga").code == OK
    accepted(clone, server, "olga")
    # a merge whose second parent is v1 and whose tree takes v1's production
    git(clone, "checkout", v1, "--", PRD)
    tree = git(clone, "write-tree")
    merge = git(clone, "commit-tree", tree, "-p", "HEAD", "-p", v1, "-m", "Merge old state",
                env=author_env("olga"))
    git(clone, "reset", "-q", "--hard", merge)
    rejected(clone, server, "olga", "a merge commit may not change production")


def test_old_tip_off_the_first_parent_chain(clone: Path, server: Path) -> None:
    base = git(clone, "rev-parse", "HEAD")
    git(clone, "checkout", "-q", "-b", "other", base)
    (clone / "README.md").write_text("other line\n")
    commit_all(clone, "alice", "Other")

    git(clone, "checkout", "-q", "main")
    (clone / "notes.md").write_text("main line\n")
    commit_all(clone, "alice", "Main")
    accepted(clone, server, "alice")
    # a merge whose FIRST parent is the other line: main's tip is only a second parent
    git(clone, "checkout", "-q", "other")
    git(clone, "merge", "-q", "--no-ff", "main", "-m", "Merge main into other",
        env=author_env("alice"))
    rejected(clone, server, "alice", "not a fast-forward along its first parents",
             "HEAD:refs/heads/main")


def test_second_protected_branch_with_its_own_policy(clone: Path, server: Path) -> None:
    policy = clone / "stageline.yaml"
    policy.write_text(policy.read_text().replace("protected_branches: [main]",
                                                 "protected_branches: [main, release]")
                      .replace("roles: [developer]}\n  dan", "roles: [org-admin]}\n  dan", 1))
    commit_all(clone, "alice", "My own rules")
    rejected(clone, server, "alice", "the pushed stageline.yaml protects release",
             "HEAD:refs/heads/release")


def test_new_protected_branch_from_the_default_policy(clone: Path, server: Path) -> None:
    policy = clone / "stageline.yaml"
    policy.write_text(policy.read_text().replace("protected_branches: [main]",
                                                 "protected_branches: [main, release]"))
    commit_all(clone, "olga", "Protect release")
    accepted(clone, server, "olga")
    (clone / STG).mkdir(parents=True)
    (clone / STG / "agent.yaml").write_text("fake\n")
    commit_all(clone, "olga", "Fake staging")
    rejected(clone, server, "olga", "exact copy", "HEAD:refs/heads/release")


def test_symlink_under_environments(clone: Path, server: Path) -> None:
    (clone / DEV / "secret.md").symlink_to("/etc/passwd")
    commit_all(clone, "alice", "Link")
    rejected(clone, server, "alice", "this is a symlink")


def test_file_outside_an_agent_directory(clone: Path, server: Path) -> None:
    (clone / "environments/development/.gitkeep").write_text("")
    (clone / "environments/qa/x").mkdir(parents=True)
    (clone / "environments/qa/x/agent.yaml").write_text("x\n")
    (clone / "environments/development/Bad_Name").mkdir()
    (clone / "environments/development/Bad_Name/agent.yaml").write_text("x\n")
    commit_all(clone, "alice", "Junk")
    err = rejected(clone, server, "alice", "only agent directories")
    assert "'qa' is not an environment" in err
    assert "'Bad_Name' is not a valid agent name" in err


def test_change_smuggled_through_another_branch(clone: Path, server: Path) -> None:
    git(clone, "checkout", "-q", "-b", "smuggle")
    (clone / PRD).mkdir(parents=True)
    (clone / PRD / "agent.yaml").write_text("evil\n")
    commit_all(clone, "alice", "Smuggle")
    ok, err = push(clone, "alice", "HEAD:refs/heads/smuggle")
    assert ok, err  # other branches are not checked...
    rejected(clone, server, "alice", "production must be an exact copy",
             "HEAD:refs/heads/main")  # ...until their commits enter a protected one


def test_gitlab_prefix(clone: Path, server: Path) -> None:
    (clone / DEV / "prompts/system.md").write_text("qa was here\n")
    commit_all(clone, "quinn", "QA tweak")
    err = rejected(clone, server, "quinn", "GL-HOOK-ERR: stageline", var="GL_USERNAME")
    lines = [ln for ln in err.splitlines() if "stageline" in ln]
    assert all("GL-HOOK-ERR: " in ln for ln in lines)


def test_rejected_objects_stay_out_of_the_server(clone: Path, server: Path) -> None:
    (clone / STG).mkdir(parents=True)
    (clone / STG / "agent.yaml").write_text("unique content 8c1f\n")
    commit_all(clone, "alice", "Fake")
    blob = git(clone, "rev-parse", f"HEAD:{STG}/agent.yaml")
    rejected(clone, server, "alice", "exact copy")
    assert git(server, "cat-file", "-e", blob, check=False) == ""
    import subprocess

    assert subprocess.run(["git", "cat-file", "-e", blob], cwd=server).returncode != 0


# -- rollback ------------------------------------------------------------------------------


def _rollback_commit(clone: Path, member: str, restores: str, source: str) -> None:
    shutil.rmtree(clone / PRD)
    git(clone, "checkout", source, "--", PRD)
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", f"Roll back\n\nStageline-Action: rollback\n"
        f"Stageline-Agent: support-bot\nStageline-Actor: {member}\n"
        f"Stageline-Restores: {restores}", env=author_env(member))


def test_rollback_by_hand_is_judged(released: Released) -> None:
    clone, server, (v1, _v2, _v3) = released.clone, released.server, released.versions
    _rollback_commit(clone, "olga", v1, v1)
    accepted(clone, server, "olga")
    assert git(server, "rev-parse", f"main:{PRD}") == git(server, "rev-parse", f"{v1}:{PRD}")


def test_rollback_to_a_tree_that_does_not_match(released: Released) -> None:
    clone, server, (v1, v2, _v3) = released.clone, released.server, released.versions
    _rollback_commit(clone, "olga", v1, v2)  # claims v1, restores v2
    rejected(clone, server, "olga", "does not restore production as it was")


def test_rollback_to_a_commit_off_the_branch(clone: Path, server: Path) -> None:
    release(clone, server, "v1\n")
    git(clone, "checkout", "-q", "-b", "elsewhere")
    (clone / PRD / "prompts/system.md").write_text("never released\n")
    commit_all(clone, "olga", "elsewhere")
    stray = git(clone, "rev-parse", "HEAD")
    git(clone, "checkout", "-q", "main")
    _rollback_commit(clone, "olga", stray, stray)
    rejected(clone, server, "olga", "is not an earlier state of the branch")


def test_rollback_by_a_developer(released: Released) -> None:
    v1 = released.versions[0]
    _rollback_commit(released.clone, "alice", v1, v1)
    rejected(released.clone, released.server, "alice", "may not roll production back")


# -- bootstrap ---------------------------------------------------------------------------


def test_bootstrap_adopts_the_first_policy(tmp_path: Path) -> None:
    srv = tmp_path / "empty.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(srv))
    assert sl(None, "hook", "install", str(srv)).code == OK
    local = make_org(tmp_path / "local")
    git(local, "remote", "add", "origin", str(srv))
    ok, err = push(local, "alice", "HEAD:refs/heads/main")
    assert not ok
    assert "must name the pusher (alice) org-admin" in err
    ok, err = push(local, "olga", "HEAD:refs/heads/main")
    assert ok, err
    # bootstrap is over: the policy now governs
    (local / STG).mkdir(parents=True)
    (local / STG / "agent.yaml").write_text("fake\n")
    commit_all(local, "olga", "Fake")
    ok, err = push(local, "olga", "HEAD:refs/heads/main")
    assert not ok
    assert "exact copy" in err


# -- verify ----------------------------------------------------------------------------


def test_verify_reports_violations(clone: Path, server: Path) -> None:
    base = git(clone, "rev-parse", "HEAD")
    (clone / STG).mkdir(parents=True)
    (clone / STG / "agent.yaml").write_text("fake\n")
    commit_all(clone, "alice", "Fake")
    result = sl(clone, "verify", "--range", f"{base}..HEAD")
    assert result.code == CHECK_FAILED
    assert "exact copy" in result.out
    assert "authors only" in result.err
    data = json.loads(sl(clone, "verify", "--range", f"{base}..HEAD", "--json").out)
    assert data["violations"][0]["path"] == STG
    assert data["pusher_checked"] is False


def test_verify_clean_range_and_pusher(clone: Path, server: Path) -> None:
    base = git(clone, "rev-parse", "HEAD")
    assert sl(clone, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    assert sl(clone, "verify", "--range", f"{base}..HEAD").code == OK
    result = sl(clone, "verify", "--range", f"{base}..HEAD", "--pusher", "quinn")
    assert result.code == CHECK_FAILED
    assert "the pusher quinn" in result.out
    assert sl(clone, "verify", "--range", "nope..HEAD").code == 2
    assert sl(clone, "verify", "--range", "HEAD").code == 2


# -- install -----------------------------------------------------------------------------


def test_install_chains_a_foreign_hook_and_uninstall_restores_it(tmp_path: Path) -> None:
    srv = tmp_path / "s.git"
    git(tmp_path, "init", "-q", "--bare", str(srv))
    foreign = srv / "hooks/pre-receive"
    foreign.write_text("#!/bin/sh\necho foreign ran >&2\ncat >/dev/null\nexit 0\n")
    foreign.chmod(0o755)
    out = sl(None, "hook", "install", str(srv))
    assert out.code == OK
    assert "runs first" in out.out
    assert (srv / "hooks/pre-receive.chained").read_text().startswith("#!/bin/sh\necho foreign")
    assert "stageline-managed-hook" in foreign.read_text()
    assert sl(None, "hook", "install", str(srv)).code == OK  # re-install: only its own file
    assert (srv / "hooks/pre-receive.chained").exists()
    assert sl(None, "hook", "uninstall", str(srv)).code == OK
    assert foreign.read_text().startswith("#!/bin/sh\necho foreign")
    assert not (srv / "hooks/post-receive").exists()


def test_a_failing_chained_hook_rejects(tmp_path: Path) -> None:
    srv = make_org(tmp_path / "s.git", bare=True)
    foreign = srv / "hooks/pre-receive"
    foreign.write_text("#!/bin/sh\necho 'foreign says no' >&2\nexit 1\n")
    foreign.chmod(0o755)
    assert sl(None, "hook", "install", str(srv)).code == OK
    work = tmp_path / "w"
    git(tmp_path, "clone", "-q", str(srv), str(work))
    (work / "README.md").write_text("x\n")
    commit_all(work, "alice", "Docs")
    ok, err = push(work, "alice")
    assert not ok
    assert "foreign says no" in err


def test_chained_hooks_without_a_shebang_run_as_git_runs_them(tmp_path: Path) -> None:
    """A legacy hook with no #! line: the kernel refuses to execute it (ENOEXEC) and git
    runs it with sh; so does stageline, for pre-receive and post-receive alike."""
    srv = make_org(tmp_path / "s.git", bare=True)
    for hook in ("pre-receive", "post-receive"):
        legacy = srv / "hooks" / hook
        legacy.write_text(f"cat >/dev/null\necho legacy {hook} ran >&2\n")
        legacy.chmod(0o755)
    assert sl(None, "hook", "install", str(srv)).code == OK
    work = tmp_path / "w"
    git(tmp_path, "clone", "-q", str(srv), str(work))
    (work / "README.md").write_text("x\n")
    commit_all(work, "alice", "Docs")
    ok, err = push(work, "alice")
    assert ok, err
    assert "legacy pre-receive ran" in err and "legacy post-receive ran" in err
    assert "Traceback" not in err
    assert (srv / "stageline-pushes.jsonl").read_text().count("\n") == 1


def test_a_chained_post_receive_that_cannot_run_is_one_sentence(tmp_path: Path) -> None:
    srv = make_org(tmp_path / "s.git", bare=True)
    broken = srv / "hooks/post-receive"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o755)
    assert sl(None, "hook", "install", str(srv)).code == OK
    work = tmp_path / "w"
    git(tmp_path, "clone", "-q", str(srv), str(work))
    (work / "README.md").write_text("x\n")
    commit_all(work, "alice", "Docs")
    ok, err = push(work, "alice")
    assert ok, err  # the push is done before post-receive runs
    assert "Traceback" not in err
    assert "could not run (No such file or directory)" in err
    assert (srv / "stageline-pushes.jsonl").read_text().count("\n") == 1  # still logged


@pytest.mark.parametrize(("layout", "path"), [
    ("gitlab", "custom_hooks/pre-receive.d/stageline"),
    ("gitea", "hooks/pre-receive.d/stageline"),
])
def test_install_layouts(tmp_path: Path, layout: str, path: str) -> None:
    srv = tmp_path / "s.git"
    git(tmp_path, "init", "-q", "--bare", str(srv))
    assert sl(None, "hook", "install", str(srv), "--layout", layout).code == OK
    assert (srv / path).stat().st_mode & 0o111
    assert (srv / path.replace("pre-receive", "post-receive")).exists()
    assert sl(None, "hook", "uninstall", str(srv), "--layout", layout).code == OK
    assert not (srv / path).exists()


# -- failing closed ------------------------------------------------------------------------


def _run_hook(cwd: Path, stdin: bytes, **env: str) -> tuple[int, str]:
    import os
    import subprocess
    import sys

    full = dict(os.environ)
    full.update(env)
    proc = subprocess.run([sys.executable, "-P", "-m", "stageline", "hook", "pre-receive"],
                          cwd=cwd, input=stdin, capture_output=True, env=full)
    return proc.returncode, proc.stderr.decode()


def test_garbage_on_stdin_rejects_in_one_sentence(server: Path) -> None:
    code, err = _run_hook(server, b"this is not a ref update\n", REMOTE_USER="olga")
    assert code == 1
    assert "push rejected because the check itself failed" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unreadable_objects_reject(server: Path) -> None:
    old = git(server, "rev-parse", "main")
    missing = "1" * 40
    code, err = _run_hook(server, f"{old} {missing} refs/heads/main\n".encode(),
                          GL_USERNAME="olga")
    assert code == 1
    assert err.startswith("GL-HOOK-ERR: stageline:")
    assert "Traceback" not in err


def test_sha256_repositories(tmp_path: Path) -> None:
    from conftest import RESOURCES, tree_files

    from stageline.actions import import_organization
    from stageline.git.store import Store

    srv = tmp_path / "s.git"
    git(tmp_path, "init", "-q", "--bare", "--object-format=sha256", "-b", "main", str(srv))
    with Store.open(srv) as store:
        import_organization(store, "refs/heads/main", tree_files(RESOURCES / "org"))
    assert len(git(srv, "rev-parse", "main")) == 64
    assert sl(None, "hook", "install", str(srv)).code == OK
    work = tmp_path / "w"
    git(tmp_path, "clone", "-q", str(srv), str(work))
    assert sl(work, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    ok, err = push(work, "alice")
    assert ok, err
    (work / STG / "agent.yaml").write_text("tampered\n")
    commit_all(work, "alice", "Tamper")
    rejected(work, srv, "alice", "staging must be an exact copy")
