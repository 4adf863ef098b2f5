"""Every way past the hook that an attack pass found, pushed through a real bare server with
the hook installed: each must be rejected with one sentence, the branch unchanged, and
``verify`` must find it too. docs/security.md names these tests.

The seven of issue #15 come first (each test says what it allowed before), then the
aliasing and root-file cases, then what the later attack passes found.
"""

from __future__ import annotations

import json
import shutil
import zoneinfo
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import author_env, commit_all, git, make_org, sl
from objects import (
    blob,
    commit,
    empty_tree,
    entries,
    ident,
    raw_commit,
    update_branch,
    with_entry,
    write_tree,
)
from servers import (
    DEV,
    PRD,
    STG,
    accepted,
    copy_dir,
    push,
    ready,
    rejected,
    tip,
)

from stageline.errors import CHECK_FAILED, OK


def verify_fails(clone: Path, old: str, new: str, says: str) -> None:
    result = sl(clone, "verify", "--range", f"{old}..{new}")
    assert result.code == CHECK_FAILED, result
    assert says in result.out + result.err, result


def on_top(clone: Path, member: str, tree: str, message: str = "Hand-made") -> str:
    """A commit of ``tree`` on the clone's HEAD, made the current branch's tip (the work
    tree is left as it was: git may not be able to check such a tree out)."""
    new = commit(clone, tree, member, message, "HEAD")
    update_branch(clone, new)
    return new


def shipped(clone: Path, server: Path) -> None:
    """support-bot in production, approved by quinn and shipped by olga."""
    ready(clone, server)
    assert sl(clone, "promote", "support-bot", "--to", "production", actor="olga").code == OK
    accepted(clone, server, "olga")


def set_policy(clone: Path, member: str, old: str, new: str) -> None:
    policy = clone / "stageline.yaml"
    text = policy.read_text()
    assert old in text
    policy.write_text(text.replace(old, new))
    commit_all(clone, member, "Policy")


# -- 1. a parent header after the committer ------------------------------------------------


def test_a_parent_line_after_the_committer_is_no_parent(clone: Path, server: Path) -> None:
    """Before: stageline's parser took every 'parent' line, saw the old tip as the parent of
    what git reads as a root commit, and let a QA member replace main's history by one
    commit; log then showed no events and verify exited 0."""
    old = tip(server)
    tree = git(clone, "rev-parse", "HEAD^{tree}")
    wipe = raw_commit(clone, f"tree {tree}\nauthor {ident('quinn')}\ncommitter {ident('quinn')}\n"
                             f"parent {old}")
    assert git(clone, "rev-list", "--parents", "-n", "1", wipe) == wipe  # git: no parent
    rejected(clone, server, "quinn", "not a fast-forward", f"+{wipe}:refs/heads/main")
    verify_fails(clone, old, wipe, "not a fast-forward")


def test_a_commit_git_reads_two_ways_is_refused(clone: Path, server: Path) -> None:
    """Two author lines (git's %an takes the last, its header lookup the first), or an
    author with two emails: the judged author would not be the one every git tool shows.
    (receive.fsckObjects, which install sets, refuses the second; the hook must by itself.)"""
    git(server, "config", "receive.fsckObjects", "false")
    old = tip(server)
    tree = git(clone, "rev-parse", "HEAD^{tree}")
    two = raw_commit(clone, f"tree {tree}\nparent {old}\nauthor {ident('olga')}\n"
                            f"committer {ident('alice')}\nauthor {ident('alice')}")
    rejected(clone, server, "alice", "the commit object is malformed", f"{two}:refs/heads/main")
    verify_fails(clone, old, two, "the commit object is malformed")
    odd = raw_commit(clone, f"tree {tree}\nparent {old}\n"
                            "author Olga <alice@test.example> <olga@test.example> 1 +0000\n"
                            f"committer {ident('alice')}")
    rejected(clone, server, "alice", "the commit object is malformed", f"{odd}:refs/heads/main")


# -- 2. changes that diff-tree -r cannot see ---------------------------------------------


def test_an_empty_production_directory_is_refused(clone: Path, server: Path) -> None:
    """Before: a developer created environments/production/ghost-bot as an empty tree
    (export shipped a bundle for it); diff-tree -r printed nothing, so nothing was judged."""
    old = tip(server)
    root = with_entry(clone, git(clone, "rev-parse", "HEAD^{tree}"),
                      "environments/production/ghost-bot", "40000", empty_tree(clone))
    new = on_top(clone, "alice", root)
    err = rejected(clone, server, "alice", "an empty directory")
    assert "environments/production/ghost-bot" in err
    verify_fails(clone, old, new, "an empty directory")


@pytest.mark.parametrize("path", ["environments/qa", "approvals/dir.yaml",
                                  "environments/production/-x", "approvals",
                                  "environments/development/support-bot/empty"])
def test_an_empty_directory_anywhere_under_environments_or_approvals(
        clone: Path, server: Path, path: str) -> None:
    root = with_entry(clone, git(clone, "rev-parse", "HEAD^{tree}"), path, "40000",
                      empty_tree(clone))
    on_top(clone, "alice", root)
    rejected(clone, server, "alice", "an empty directory")


@pytest.mark.parametrize("fsck", [True, False])
def test_a_non_canonical_mode_in_production_is_refused(clone: Path, server: Path,
                                                       fsck: bool) -> None:
    """Before: mode 100664 (fsck reports it only at INFO level) changed production's tree id
    with no line in diff-tree -r: production no longer equalled the approved tree."""
    shipped(clone, server)
    git(server, "config", "receive.fsckObjects", "true" if fsck else "false")
    old = tip(server)
    agent = git(clone, "rev-parse", f"HEAD:{PRD}")
    items = [("100664" if name == "agent.yaml" else mode, name, oid)
             for mode, name, oid in entries(clone, agent)]
    odd = write_tree(clone, items)
    root = with_entry(clone, git(clone, "rev-parse", "HEAD^{tree}"), PRD, "40000", odd)
    new = on_top(clone, "alice", root)
    rejected(clone, server, "alice", "mode 100664")
    verify_fails(clone, old, new, "mode 100664")


def test_staging_changed_by_an_empty_directory_makes_the_approval_stale(
        clone: Path, server: Path) -> None:
    ready(clone, server)
    root = with_entry(clone, git(clone, "rev-parse", "HEAD^{tree}"), f"{STG}/notes", "40000",
                      empty_tree(clone))
    on_top(clone, "alice", root)
    err = rejected(clone, server, "alice", "an empty directory")
    assert "staging must be an exact copy of development" in err


# -- 3. an unprotected default branch writes the organization's policy ---------------------


MALLORY_POLICY = """organization: testorg
protected_branches: [main, release]
members:
  mallory: {name: Mallory, email: mallory@test.example, roles: [org-admin]}
"""


def _mallory_owns_the_default_branch(clone: Path, server: Path) -> None:
    """The server's HEAD names develop, which no policy protects; mallory, no member, pushes
    a develop whose stageline.yaml makes her the org-admin of a future release branch."""
    git(server, "symbolic-ref", "HEAD", "refs/heads/develop")
    git(clone, "checkout", "-q", "-b", "develop")
    (clone / "stageline.yaml").write_text(MALLORY_POLICY)
    commit_all(clone, "mallory", "My rules")
    ok, err = push(clone, "mallory", "HEAD:refs/heads/develop")
    assert ok, err  # develop is nobody's: unchecked
    git(clone, "checkout", "-q", "main")


def test_an_unprotected_default_branch_does_not_govern_new_protected_branches(
        clone: Path, server: Path) -> None:
    """Before: the policy at HEAD's tip judged every new protected branch, whoever wrote it."""
    _mallory_owns_the_default_branch(clone, server)
    rejected(clone, server, "mallory", "the pushed stageline.yaml protects release",
             "develop:refs/heads/release")


def test_an_unprotected_default_branch_is_no_second_policy(clone: Path, server: Path) -> None:
    """Before: mallory's develop policy was applied to main as well, and no member of the
    organization was a member of it: everyone was locked out."""
    _mallory_owns_the_default_branch(clone, server)
    (clone / "README.md").write_text("still working\n")
    commit_all(clone, "alice", "Docs")
    accepted(clone, server, "alice")


def test_a_missing_default_branch_governs_nothing(tmp_path: Path) -> None:
    """A server made without -b main: HEAD names a branch that does not exist."""
    srv = make_org(tmp_path / "server.git", bare=True)
    assert sl(None, "hook", "install", str(srv)).code == OK
    git(srv, "symbolic-ref", "HEAD", "refs/heads/master")
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", "-b", "main", str(srv), str(work))
    (work / "README.md").write_text("x\n")
    commit_all(work, "alice", "Docs")
    accepted(work, srv, "alice")


def test_a_protected_branch_is_created_by_org_admins_only(clone: Path, server: Path) -> None:
    set_policy(clone, "olga", "protected_branches: [main]",
               "protected_branches: [main, release]")
    accepted(clone, server, "olga")
    rejected(clone, server, "alice", "only org-admins may create the protected branch release",
             "HEAD:refs/heads/release")
    ok, err = push(clone, "olga", "HEAD:refs/heads/release")
    assert ok, err


# -- 4. the push log misses protected updates ----------------------------------------------


def _log(server: Path) -> list[dict[str, str]]:
    path = server / "stageline-pushes.jsonl"
    return [json.loads(line) for line in path.read_text().split("\n") if line] \
        if path.exists() else []


def test_the_push_log_records_what_pre_receive_judged_protected(clone: Path,
                                                               server: Path) -> None:
    """Before: post-receive asked the new tip's policy. A branch that only main's policy
    protects, and the push that unprotects main, went unlogged."""
    first = git(clone, "rev-parse", "HEAD")
    set_policy(clone, "olga", "protected_branches: [main]",
               "protected_branches: [main, release]")
    accepted(clone, server, "olga")
    ok, err = push(clone, "olga", f"{first}:refs/heads/release")  # its policy: [main] only
    assert ok, err
    git(clone, "fetch", "-q", "origin")
    git(clone, "checkout", "-q", "-b", "release", "origin/release")
    (clone / DEV / "prompts/system.md").write_text("on release\n")
    commit_all(clone, "alice", "Release work")
    ok, err = push(clone, "alice", "HEAD:refs/heads/release")
    assert ok, err
    git(clone, "checkout", "-q", "main")
    (clone / "README.md").write_text("olga's notes\n")
    commit_all(clone, "olga", "Notes")
    accepted(clone, server, "olga")
    logged = [(r["ref"], r["pusher"]) for r in _log(server)]
    assert logged[-3:] == [("refs/heads/release", "olga"), ("refs/heads/release", "alice"),
                           ("refs/heads/main", "olga")]


def test_a_policy_that_stops_protecting_its_branch_is_refused(clone: Path,
                                                              server: Path) -> None:
    """Protection is a ratchet: one org-admin could otherwise switch the gate off for
    everyone, non-members included, with one push (found by the second attack pass)."""
    set_policy(clone, "olga", "protected_branches: [main]", "protected_branches: [elsewhere]")
    rejected(clone, server, "olga", "the new policy stops protecting main")


# -- 5. duplicate root entries -------------------------------------------------------------


@pytest.mark.parametrize("fsck", [True, False])
def test_a_root_tree_listing_environments_twice_is_refused(clone: Path, server: Path,
                                                           fsck: bool) -> None:
    """Before, with receive.fsckObjects off: lookups read the first 'environments' (the
    approved copy), diff-tree and checkouts the second: an org-admin alone shipped what QA
    never saw."""
    shipped(clone, server)
    git(server, "config", "receive.fsckObjects", "true" if fsck else "false")
    old = tip(server)
    root = git(clone, "rev-parse", "HEAD^{tree}")
    approved = git(clone, "rev-parse", "HEAD:environments")
    evil = with_entry(clone, root, f"{PRD}/agent.yaml", "100644",
                      blob(clone, "name: support-bot\n# never approved\n"))
    evil_envs = git(clone, "rev-parse", f"{evil}:environments")
    items = entries(clone, root) + [("40000", "environments", evil_envs)]
    assert ("40000", "environments", approved) in items
    twice = write_tree(clone, items)
    new = on_top(clone, "olga", twice)
    rejected(clone, server, "olga", "duplicate" if fsck else "it lists environments twice")
    verify_fails(clone, old, new, "it lists environments twice")


# -- 6. a line separator in a branch name ---------------------------------------------------


def _evil_on_main(clone: Path) -> str:
    """A commit on main's tip putting unapproved content into production (not pushed)."""
    root = with_entry(clone, git(clone, "rev-parse", "HEAD^{tree}"), f"{PRD}/agent.yaml",
                      "100644", blob(clone, "name: support-bot\n# never approved\n"))
    return commit(clone, root, "olga", "Ship without QA", "HEAD")


def test_a_line_separator_in_a_branch_name_forges_no_tip(clone: Path, server: Path) -> None:
    """Before: refs were split with str.splitlines(), which breaks at U+2028 too; a branch
    named 'z<U+2028>refs/heads/main' made the hook believe main's tip was its commit, and a
    new protected branch at that commit was judged as bringing nothing."""
    set_policy(clone, "olga", "protected_branches: [main]",
               "protected_branches: [main, release]")
    accepted(clone, server, "olga")
    evil = _evil_on_main(clone)
    ok, err = push(clone, "alice", f"{evil}:refs/heads/z\u2028refs/heads/main")
    assert ok, err
    rejected(clone, server, "olga", "production must be an exact copy", f"{evil}:refs/heads/release")


def test_a_line_separator_in_a_branch_name_does_not_reopen_bootstrap(clone: Path,
                                                                    server: Path) -> None:
    orphan = commit(clone, write_tree(clone, [("100644", "x", blob(clone, "x\n"))]), "mallory",
                    "Nothing")
    ok, err = push(clone, "mallory", f"{orphan}:refs/heads/z\u2028refs/heads/main")
    assert ok, err
    git(clone, "checkout", "-q", "--orphan", "mine")
    git(clone, "rm", "-rq", "--cached", ".")
    shutil.rmtree(clone / "environments")
    (clone / "stageline.yaml").write_text(MALLORY_POLICY.replace("[main, release]", "[mine]"))
    commit_all(clone, "mallory", "My organization")
    rejected(clone, server, "mallory", "protects mine", "HEAD:refs/heads/mine")


# -- 7. refs/remotes/<protected>/HEAD ----------------------------------------------------------


@pytest.mark.parametrize("ref", ["refs/remotes/main/HEAD", "refs/remotes/main",
                                 "refs/remotes/origin/main", "refs/main", "refs/tags/main"])
def test_refs_git_would_read_for_a_protected_name_are_refused(clone: Path, server: Path,
                                                              ref: str) -> None:
    evil = _evil_on_main(clone)
    rejected(clone, server, "alice", "rejected", f"{evil}:{ref}")


# -- names that alias reserved ones on other file systems, and admin-only root files --------


@pytest.mark.parametrize("top", ["environments\u200c", "environments.", "environments ",
                                 "ENVIRO~1", "approvals\ufeff", "APPROV~1",
                                 "stageline.yaml.", "ＥＮＶＩＲＯＮＭＥＮＴＳ"])
def test_a_top_level_name_aliasing_a_reserved_one_is_refused(clone: Path, server: Path,
                                                             top: str) -> None:
    root = with_entry(clone, git(clone, "rev-parse", "HEAD^{tree}"),
                      f"{top}/production/support-bot/agent.yaml", "100644",
                      blob(clone, "name: support-bot\n"))
    on_top(clone, "alice", root)
    rejected(clone, server, "alice", "may stand for")


@pytest.mark.parametrize("path", [".gitattributes", ".mailmap", "docs/.gitattributes",
                                  "CODEOWNERS", "docs/CODEOWNERS", ".github/CODEOWNERS",
                                  ".gitlab/CODEOWNERS",
                                  # other spellings of CI and hook files
                                  ".devcontainer.json", "lefthook.yaml", ".lefthook.yaml",
                                  ".config/lefthook.yml", ".woodpecker.yaml", "buildkite.yml",
                                  "appveyor.yml"])
def test_root_files_that_change_what_git_shows_are_org_admin_only(clone: Path, server: Path,
                                                                  path: str) -> None:
    (clone / path).parent.mkdir(parents=True, exist_ok=True)
    (clone / path).write_text("* filter=evil\n")
    commit_all(clone, "alice", "Attributes")
    rejected(clone, server, "alice", "only org-admins may")
    commit = git(clone, "rev-parse", "HEAD")
    git(clone, "reset", "-q", "--soft", "HEAD~1")
    git(clone, "commit", "-q", "-C", commit, "--reset-author", env=author_env("olga"))
    accepted(clone, server, "olga")


def test_a_file_entry_that_is_a_directory_is_refused(clone: Path, server: Path) -> None:
    """A file mode pointing at a tree: diff-tree reports a file, path lookups find a
    directory, and an export would ship the tree's bytes as the file. git push itself
    refuses to pack such a tree; verify, which judges whatever a CI clone holds, refuses
    it too."""
    old = tip(server)
    directory = git(clone, "rev-parse", f"HEAD:{DEV}")
    root = with_entry(clone, git(clone, "rev-parse", "HEAD^{tree}"), f"{DEV}/knowledge.md",
                      "100644", directory)
    new = on_top(clone, "alice", root)
    ok, err = push(clone, "alice")
    assert not ok and "has blob mode, but is not a blob" in err
    verify_fails(clone, old, new, "its mode says a file, but it is a tree")


# == The second attack pass (after the seven were closed): three helper sessions attacked
# the installed hook from the contract: names and checkouts, workflow and policy, git's
# object format. Each finding below was accepted before its defence.


@pytest.mark.parametrize("name", [".gitattributes", ".gitmodules", "CODEOWNERS",
                                  "prompts/.gitattributes"])
def test_repository_settings_inside_an_agent_directory_are_refused(
        clone: Path, server: Path, name: str) -> None:
    """A developer's .gitattributes with export-subst inside an agent travelled to
    production with the agent, and then git archive (and forge downloads) of production
    spliced later commit messages and tag names into the approved prompt."""
    (clone / DEV / name).parent.mkdir(parents=True, exist_ok=True)
    (clone / DEV / name).write_text("prompts/system.md export-subst\n")
    commit_all(clone, "alice", "Attributes")
    rejected(clone, server, "alice", "has no place in an agent directory")


def test_names_that_are_one_file_elsewhere_are_refused_in_an_agent(clone: Path,
                                                                    server: Path) -> None:
    """prompts/SYSTEM.md (validated) beside prompts/system.md (not): a checkout on Windows
    or macOS keeps the one written last, the unvalidated one."""
    (clone / DEV / "prompts/SYSTEM.md").write_text("the validated prompt\n")
    commit_all(clone, "alice", "Two prompts")
    rejected(clone, server, "alice", "are one file on case-insensitive")


@pytest.mark.parametrize(("name", "says"), [
    ("notes.md.", "ends with a dot or a space"),
    ("re\u0301funds.md", "composed form (NFC)"),
    ("no\u200ctes.md", "code point that file systems ignore"),
    ("x" * 300, "longer than 255 bytes"),
    ("a:b.md", "Windows refuses"),
])
def test_names_that_do_not_check_out_alike_are_refused_in_an_agent(
        clone: Path, server: Path, name: str, says: str) -> None:
    root = with_entry(clone, git(clone, "rev-parse", "HEAD^{tree}"), f"{DEV}/{name}", "100644",
                      blob(clone, "name: support-bot\n"))
    on_top(clone, "alice", root)
    rejected(clone, server, "alice", says)


@pytest.mark.parametrize("path", ["environments\\production\\support-bot\\agent.yaml",
                                  "settings\\production.yaml", "docs/a\\b.md",
                                  "EN1A2B~1/production/x/agent.yaml"])
def test_backslashes_and_short_names_are_refused_anywhere(clone: Path, server: Path,
                                                          path: str) -> None:
    """A top-level file named environments\\production\\support-bot\\agent.yaml is any
    developer's, yet unpacked from a zip on Windows it replaces production's agent.yaml
    (and Git for Windows refuses every checkout of such a repository)."""
    root = with_entry(clone, git(clone, "rev-parse", "HEAD^{tree}"), path, "100644",
                      blob(clone, "name: support-bot\n# never approved\n"))
    on_top(clone, "alice", root)
    rejected(clone, server, "alice", "so it would not check out alike everywhere")


def test_a_device_name_is_no_agent(clone: Path, server: Path) -> None:
    copy_dir(clone, DEV, "environments/development/con")
    commit_all(clone, "alice", "Agent con")
    rejected(clone, server, "alice", "is a Windows device name")
    assert sl(clone, "agent", "new", "nul", actor="alice").code == 2


@pytest.mark.parametrize("path", [".githooks/pre-commit", ".pre-commit-config.yaml",
                                  ".husky/pre-commit", ".gitea/workflows/ci.yml",
                                  ".forgejo/workflows/ci.yml", "Jenkinsfile", ".lfsconfig",
                                  ".gitmodules", ".circleci/config.yml"])
def test_shared_hooks_and_other_ci_definitions_are_org_admin_only(clone: Path, server: Path,
                                                                  path: str) -> None:
    """Before, a developer changed the shared client hooks every member runs; the next
    org-admin commit then carried a policy change of the developer's making."""
    (clone / path).parent.mkdir(parents=True, exist_ok=True)
    (clone / path).write_text("#!/bin/sh\n")
    commit_all(clone, "alice", "Hooks")
    rejected(clone, server, "alice", "only org-admins may")


@pytest.mark.parametrize(("path", "content", "member"), [
    (f"{DEV}/prompts/system.md", "Use key sk-proj-abcdefghijklmnopqrstuvwx\n", "alice"),
    (f"{DEV}/deploy_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nxyz\n", "alice"),
    ("settings/production.yaml", "aws: AKIAABCDEFGHIJKLMNOP\n", "olga"),
])
def test_a_secret_pushed_anywhere_in_environments_or_settings_is_refused(
        clone: Path, server: Path, path: str, content: str, member: str) -> None:
    """§7.4: the hook never scanned for secrets; only the CLI's validation did."""
    (clone / path).parent.mkdir(parents=True, exist_ok=True)
    (clone / path).write_text(content)
    commit_all(clone, member, "Config")
    rejected(clone, server, member, "this looks like")


def test_a_utf16_secret_is_found(clone: Path, server: Path) -> None:
    (clone / DEV / "notes.txt").write_bytes("key AKIAABCDEFGHIJKLMNOP\n".encode("utf-16"))
    commit_all(clone, "alice", "Notes")
    rejected(clone, server, "alice", "an AWS access key id")


def _mark(clone: Path, server: Path, qa: str) -> None:
    assert sl(clone, "mark-ready", "support-bot", actor=qa).code == OK
    accepted(clone, server, qa)


def test_every_marker_is_bound_by_separation_of_duties(clone: Path, server: Path) -> None:
    """Before, rita's mark replaced sam's in the record, and sam then shipped the tree he
    had marked himself."""
    ready(clone, server, qa="sam")
    _mark(clone, server, "rita")
    record = (clone / "approvals/support-bot.yaml").read_text()
    assert "sam" in record and "rita" in record
    copy_dir(clone, STG, PRD)
    commit_all(clone, "sam", "Ship")
    rejected(clone, server, "sam", "separation of duties")


def test_a_mark_may_not_drop_or_forge_another(clone: Path, server: Path) -> None:
    ready(clone, server, qa="sam")
    tree = git(clone, "rev-parse", f"HEAD:{STG}")
    (clone / "approvals/support-bot.yaml").write_text(
        f"agent: support-bot\nstaging_tree: {tree}\nmarked_by: rita\nmarked_at: x\n")
    commit_all(clone, "rita", "My mark only")
    rejected(clone, server, "rita", "the approval must add rita's own mark")
    git(clone, "reset", "-q", "--hard", "HEAD~1")
    (clone / "approvals/support-bot.yaml").write_text(
        f"agent: support-bot\nstaging_tree: {tree}\nmarked_by: quinn\nmarked_at: x\n"
        "approvals: [{by: sam, at: y}, {by: rita, at: z}, {by: quinn, at: x}]\n")
    commit_all(clone, "quinn", "A mark of rita's that never happened")
    rejected(clone, server, "quinn", "the approval must add quinn's own mark")


def test_two_approvals_are_required_when_the_policy_says_so(clone: Path,
                                                            server: Path) -> None:
    set_policy(clone, "olga", "protected_branches: [main]\n",
               "protected_branches: [main]\npromotion: {production: {approvals: {required: 2}}}\n")
    accepted(clone, server, "olga")
    ready(clone, server)
    copy_dir(clone, STG, PRD)
    commit_all(clone, "olga", "Ship")
    rejected(clone, server, "olga", "approvals 1 of 2 (quinn)")
    git(clone, "reset", "-q", "--hard", "HEAD~1")
    _mark(clone, server, "rita")
    assert sl(clone, "promote", "support-bot", "--to", "production", actor="olga").code == OK
    accepted(clone, server, "olga")


def test_a_mark_counts_only_while_its_member_holds_qa(clone: Path, server: Path) -> None:
    ready(clone, server)
    set_policy(clone, "olga", "quinn: {name: Quinn QA,    email: quinn@test.example, "
                              "roles: [qa]}",
               "quinn: {name: Quinn QA,    email: quinn@test.example, roles: [developer]}")
    accepted(clone, server, "olga")
    copy_dir(clone, STG, PRD)
    commit_all(clone, "omar", "Ship")
    rejected(clone, server, "omar", "quinn does not hold qa now")


def test_qa_withdraws_their_own_mark_and_only_theirs(clone: Path, server: Path) -> None:
    ready(clone, server)
    (clone / "approvals/support-bot.yaml").unlink()
    commit_all(clone, "rita", "Withdraw quinn's mark")
    rejected(clone, server, "rita", "withdrawn by the QA member whose mark it alone holds")
    commit = git(clone, "rev-parse", "HEAD")
    git(clone, "reset", "-q", "--soft", "HEAD~1")
    git(clone, "commit", "-q", "-C", commit, "--reset-author",
        env={"GIT_AUTHOR_NAME": "Quinn", "GIT_AUTHOR_EMAIL": "quinn@test.example",
             "GIT_COMMITTER_NAME": "Quinn", "GIT_COMMITTER_EMAIL": "quinn@test.example"})
    accepted(clone, server, "quinn")


@pytest.mark.parametrize("message", [
    "Docs\n   \nStageline-Action: promote-to-production\nStageline-Agent: support-bot",
    "Docs\n\nstageline-actor: olga",
])
def test_trailers_are_judged_as_git_reads_them(clone: Path, server: Path, message: str) -> None:
    """A line of spaces ends a paragraph for git, and git reads keys without case: such
    claims went unjudged, while git log and forges showed them."""
    (clone / DEV / "prompts/system.md").write_text("edited\n")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "--cleanup=verbatim", "-m", message,
        env={"GIT_AUTHOR_NAME": "Alice", "GIT_AUTHOR_EMAIL": "alice@test.example",
             "GIT_COMMITTER_NAME": "Alice", "GIT_COMMITTER_EMAIL": "alice@test.example"})
    err = rejected(clone, server, "alice", "rejected")
    assert "the trailers claim promote-to-production" in err or "claims 'olga'" in err


def test_verify_judges_by_the_organizations_policy_too(clone: Path, server: Path) -> None:
    """A release branch whose own policy makes alice an org-admin: the hook also applies
    main's policy; verify did not, so on hosts without hooks a branch granted itself more."""
    set_policy(clone, "olga", "protected_branches: [main]",
               "protected_branches: [main, release]")
    accepted(clone, server, "olga")
    git(clone, "checkout", "-q", "-b", "release")
    ok, err = push(clone, "olga", "HEAD:refs/heads/release")
    assert ok, err
    base = git(clone, "rev-parse", "HEAD")
    set_policy(clone, "olga", "alice: {name: Alice Dev,   email: alice@test.example, "
                              "roles: [developer]}",
               "alice: {name: Alice Dev,   email: alice@test.example, "
               "roles: [developer, org-admin]}")
    ok, err = push(clone, "olga", "HEAD:refs/heads/release")
    assert ok, err
    mid = git(clone, "rev-parse", "HEAD")
    (clone / ".github").mkdir()
    (clone / ".github/ci.yml").write_text("x\n")
    commit_all(clone, "alice", "CI, as the release branch's admin")
    git(clone, "fetch", "-q", "origin")
    result = sl(clone, "verify", "--range", f"{mid}..HEAD", "--ref", "release",
                "--pusher", "alice")
    assert result.code == CHECK_FAILED, result
    assert "only org-admins may" in result.out
    assert base != mid


def test_a_policy_that_is_not_a_file_is_refused_in_one_sentence(clone: Path,
                                                                 server: Path) -> None:
    root = git(clone, "rev-parse", "HEAD^{tree}")
    root = with_entry(clone, root, "stageline.yaml", "100644", None)
    root = with_entry(clone, root, "stageline.yaml/x", "100644", blob(clone, "x\n"))
    on_top(clone, "olga", root)
    err = rejected(clone, server, "olga", "stageline.yaml may not be deleted")
    assert "check itself failed" not in err


def test_a_branch_must_point_at_a_commit(clone: Path, server: Path) -> None:
    git(clone, "tag", "-a", "-m", "a tag", "v1", env=author_env("olga"))
    tag = git(clone, "rev-parse", "v1")
    err = rejected(clone, server, "alice", "main must point at a commit, not a tag",
                   f"{tag}:refs/heads/main")
    assert "Traceback" not in err


@pytest.mark.parametrize("fault", ["duplicate", "unsorted", "mode"])
def test_a_large_directory_is_checked_in_every_version(clone: Path, server: Path,
                                                       fault: str) -> None:
    """A directory of many agents is checked whole once per push, then each next version
    against the one before (fsck.TreeIndex): a fault in the third version of a push of
    three is still found."""
    dev = git(clone, "rev-parse", "HEAD:environments/development")
    agent = git(clone, "rev-parse", f"HEAD:{DEV}")
    items = [("40000", f"agent-{i:04}", agent) for i in range(400)]
    base = git(clone, "rev-parse", "HEAD^{tree}")
    first = with_entry(clone, base, "environments/development", "40000",
                       write_tree(clone, [*entries(clone, dev), *items]))
    one = commit(clone, first, "alice", "Many agents", "HEAD")
    second_dir = write_tree(clone, [*entries(clone, dev), *items[:-1]])
    two = commit(clone, with_entry(clone, base, "environments/development", "40000",
                                   second_dir), "alice", "One fewer", one)
    listed = [*entries(clone, dev), *items[:-2]]
    if fault == "duplicate":
        bad = write_tree(clone, [*listed, items[5]])
    elif fault == "unsorted":
        bad = write_tree(clone, [items[7], *listed], sort=False)
    else:
        bad = write_tree(clone, [*listed[:-1], ("040000", *listed[-1][1:])])
    three = commit(clone, with_entry(clone, base, "environments/development", "40000", bad),
                   "alice", "Faulty", two)
    update_branch(clone, three)
    git(server, "config", "receive.fsckObjects", "false")
    rejected(clone, server, "alice", "the commit's tree is malformed")


# == The third attack pass, on the code after the second.


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32", "gzip", "der",
                                      "ed25519"])
def test_secrets_in_other_encodings_are_found(clone: Path, server: Path, encoding: str) -> None:
    """Before, only UTF-8 and UTF-16 with its byte order mark were read: the same key in
    UTF-16 without the mark, in UTF-32, gzipped, or a private key in DER went through,
    all the way to the export bundle."""
    import gzip

    text = "token sk-live-abcdefghijklmnopqrstuvwx\n"
    data = {"gzip": gzip.compress(text.encode()),
            "der": bytes.fromhex("308204be020100300d06092a864886f70d0101010500") + b"\0" * 40,
            "ed25519": bytes.fromhex("302e020100300506032b657004220420") + bytes(range(32)),
            }.get(encoding) or text.encode(encoding)
    (clone / DEV / "notes.bin").write_bytes(data)
    commit_all(clone, "alice", "Notes")
    rejected(clone, server, "alice", "this looks like")


def test_protecting_a_branch_that_exists_is_refused(clone: Path, server: Path) -> None:
    """Before: alice made an unprotected release branch with hand-written production;
    olga then protected release on main, adopting that history unjudged, and export
    shipped what nobody approved."""
    git(clone, "checkout", "-q", "-b", "release")
    (clone / PRD).mkdir(parents=True)
    (clone / PRD / "agent.yaml").write_text("name: support-bot\n# never approved\n")
    commit_all(clone, "alice", "Squat release")
    ok, err = push(clone, "alice", "HEAD:refs/heads/release")
    assert ok, err
    git(clone, "checkout", "-q", "main")
    set_policy(clone, "olga", "protected_branches: [main]", "protected_branches: [main, release]")
    rejected(clone, server, "olga", "the new policy protects release, which exists already")


@pytest.mark.parametrize("name", ["conin$.md", "CONOUT$.txt", "con .md", "nul .txt", "com\u00b9.md"])
def test_every_windows_device_name_is_refused(clone: Path, server: Path, name: str) -> None:
    root = with_entry(clone, git(clone, "rev-parse", "HEAD^{tree}"), f"{DEV}/{name}", "100644",
                      blob(clone, "x\n"))
    on_top(clone, "alice", root)
    rejected(clone, server, "alice", "is a Windows device name")


def test_a_policy_may_not_unprotect_another_existing_branch(clone: Path, server: Path) -> None:
    """The ratchet covered only the branch the policy was pushed to: dropping release from
    main's policy left release open to anyone (third pass)."""
    set_policy(clone, "olga", "protected_branches: [main]", "protected_branches: [main, release]")
    accepted(clone, server, "olga")
    ok, err = push(clone, "olga", "HEAD:refs/heads/release")
    assert ok, err
    set_policy(clone, "olga", "protected_branches: [main, release]", "protected_branches: [main]")
    rejected(clone, server, "olga", "the new policy stops protecting release, which exists")


def test_a_push_that_changes_the_policy_updates_no_other_ref(clone: Path, server: Path) -> None:
    """One push protected release on main and created release with unapproved production:
    each ref was judged by the policies before the push, when nothing protected release."""
    set_policy(clone, "olga", "protected_branches: [main]", "protected_branches: [main, release]")
    policy = git(clone, "rev-parse", "HEAD")
    (clone / PRD).mkdir(parents=True)
    (clone / PRD / "agent.yaml").write_text("name: support-bot\n# never approved\n")
    commit_all(clone, "olga", "Production, unapproved")
    import os
    import subprocess

    before = git(server, "for-each-ref")
    proc = subprocess.run(["git", "push", "origin", f"{policy}:refs/heads/main",
                           "HEAD:refs/heads/release"], cwd=clone, capture_output=True,
                          text=True, env={**os.environ, "REMOTE_USER": "olga"})
    assert proc.returncode != 0
    assert "push to release rejected" in proc.stderr and "may update no other ref" in proc.stderr
    assert git(server, "for-each-ref") == before


def test_a_push_whose_post_receive_never_ran_is_logged_late(clone: Path, server: Path) -> None:
    """A client that hangs up after sending its push: git updates the branch, dies writing
    the report, and never runs post-receive. The next push logs it, marked late."""
    import os
    import time

    from stageline.server.hooks import pre_receive

    (clone / "README.md").write_text("one\n")
    commit_all(clone, "alice", "One")
    old, new = tip(server), git(clone, "rev-parse", "HEAD")
    git(clone, "push", "-q", str(server), "HEAD:refs/heads/scratch")  # the objects, unchecked
    here = os.getcwd()
    os.chdir(server)
    try:
        stdin = f"{old} {new} refs/heads/main\n".encode()
        assert pre_receive(stdin, {**os.environ, "REMOTE_USER": "alice"}, record=True) == 0
    finally:
        os.chdir(here)
    git(server, "update-ref", "refs/heads/main", new, old)  # what receive-pack does next
    for record in (server / "stageline-judged").glob("*.json"):
        os.utime(record, (time.time() - 120, time.time() - 120))
    assert [r["new"] for r in _log(server)].count(new) == 0
    (clone / "README.md").write_text("two\n")
    commit_all(clone, "alice", "Two")
    accepted(clone, server, "alice")
    late = [r for r in _log(server) if r.get("late")]
    assert [(r["ref"], r["new"], r["pusher"]) for r in late] == [("refs/heads/main", new, "alice")]


def test_mark_ready_withdraw_is_the_commit_the_hook_allows(clone: Path, server: Path) -> None:
    """The hook told QA to run 'stageline mark-ready AGENT --withdraw', which did not
    exist (third pass)."""
    ready(clone, server)
    _mark(clone, server, "rita")
    assert sl(clone, "mark-ready", "support-bot", "--withdraw", actor="quinn").code == OK
    accepted(clone, server, "quinn")
    record = (clone / "approvals/support-bot.yaml").read_text()
    assert "quinn" not in record and "rita" in record
    assert sl(clone, "mark-ready", "support-bot", "--withdraw", actor="rita").code == OK
    accepted(clone, server, "rita")
    assert not (clone / "approvals/support-bot.yaml").exists()
    result = sl(clone, "mark-ready", "support-bot", "--withdraw", actor="rita")
    assert result.code == OK and "nothing to do" in result.out
    # The log names the withdrawal that deleted the record as one (site pass, finding 7).
    log = [json.loads(line) for line in
           sl(clone, "log", "--agent", "support-bot", "--format", "jsonl").out.splitlines()]
    assert [e["action"] for e in log[:3]] == ["withdraw", "mark-ready", "mark-ready"]
    assert log[0]["actor"] == "rita"


# -- the fourth pass (approval policy) and the fifth (the restructured hook) -----------------

def test_a_marker_cannot_rewrite_a_record_another_marked_last(clone: Path,
                                                               server: Path) -> None:
    """quinn, then rita marked; quinn rewrote the record's test summary and added a note
    under rita's mark (the hook let a marker keep the marks and change the rest)."""
    ready(clone, server)
    _mark(clone, server, "rita")
    path = clone / "approvals/support-bot.yaml"
    text = path.read_text()
    assert "tests:" in text
    path.write_text("".join(line if not line.startswith("tests:") else
                            "tests: {passed: 42, failed: 0}\nnote: rita re-ran all 42\n"
                            for line in text.splitlines(keepends=True)))
    commit_all(clone, "quinn", "Tidy the approval record")
    rejected(clone, server, "quinn", "the approval must add quinn's own mark")


def test_the_hook_ignores_the_pushers_python_variables(clone: Path, server: Path,
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A local push hands the pusher's environment to the hook: PYTHONPATH could load code
    into it (a sitecustomize that exits 0 accepts anything), and PYTHONTZPATH moved a
    freeze's clock (fourth pass). The shim runs Python with -E; the hook drops
    PYTHONTZPATH."""
    began = datetime.now(UTC) - timedelta(minutes=2)
    policy = clone / "stageline.yaml"
    policy.write_text(policy.read_text() + (
        f"windows:\n  freeze: {{kind: deny, cron: \"{began.minute} {began.hour} * * *\", "
        "duration: 1h, timezone: UTC}\npromotion:\n  production: {windows: [freeze]}\n"))
    commit_all(clone, "olga", "Freeze production")
    accepted(clone, server, "olga")
    ready(clone, server)
    copy_dir(clone, STG, PRD)
    commit_all(clone, "olga", "Ship in the freeze")
    zones = tmp_path / "zones"
    zones.mkdir()
    source = next((Path(d) / "Pacific/Kiritimati" for d in zoneinfo.TZPATH
                   if (Path(d) / "Pacific/Kiritimati").is_file()), None)
    if source is None:
        pytest.skip("no system time zone database to copy a zone from")
    shutil.copy(source, zones / "UTC")  # UTC+14: the freeze would seem over
    monkeypatch.setenv("PYTHONTZPATH", str(zones))
    rejected(clone, server, "olga", "production is frozen by freeze")
    code = tmp_path / "code"
    code.mkdir()
    (code / "sitecustomize.py").write_text("import os\nos._exit(0)\n")
    monkeypatch.setenv("PYTHONPATH", str(code))
    rejected(clone, server, "olga", "production is frozen by freeze")


def test_a_name_a_tag_takes_cannot_be_protected(clone: Path, server: Path) -> None:
    """alice pushed refs/tags/release (hand-made production) while 'release' was nobody's;
    olga then protected 'release' and created the branch, and 'git checkout release' in
    every fresh clone gave alice's tag (fifth pass)."""
    git(clone, "checkout", "-q", "-b", "evil")
    shutil.copytree(clone / DEV, clone / PRD)
    (clone / PRD / "prompts/system.md").write_text("unapproved\n")
    commit_all(clone, "alice", "Hand-made production")
    assert push(clone, "alice", "evil:refs/tags/release")[0]
    git(clone, "checkout", "-q", "main")
    policy = clone / "stageline.yaml"
    policy.write_text(policy.read_text().replace("protected_branches: [main]",
                                                 "protected_branches: [main, release]"))
    commit_all(clone, "olga", "Protect release")
    rejected(clone, server, "olga", "the new policy protects release, which exists already")
