"""Adversarial review of the pre-receive hook: each test pushes through a real bare server
with the hook installed (fixtures from test_hook.py). A failing test is a hole."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from conftest import author_env, commit_all, git
from servers import (
    DEV,
    PRD,
    STG,
    accepted,
    copy_dir,
    push,
    rejected,
)

from stageline import approval


def _stage_by_hand(clone: Path, server: Path) -> None:
    copy_dir(clone, DEV, STG)
    commit_all(clone, "alice", "Promote to staging by hand")
    accepted(clone, server, "alice")


def _approve_by_hand(clone: Path, server: Path, qa: str = "quinn", agent: str = "support-bot",
                     marked_by: str | None = None) -> None:
    tree = git(clone, "rev-parse", f"HEAD:environments/staging/{agent}")
    (clone / "approvals").mkdir(exist_ok=True)
    (clone / f"approvals/{agent}.yaml").write_text(
        approval.text(agent, tree, (approval.Mark(marked_by or qa, "2026-01-01T00:00:00Z"),)))
    commit_all(clone, qa, "Mark ready by hand")


def _commit_tree(clone: Path, tree: str, member: str, message: str, *parents: str) -> str:
    args = ["commit-tree", tree]
    for p in parents:
        args += ["-p", p]
    return git(clone, *args, "-m", message, env=author_env(member))


def _fabricated_production(clone: Path, member: str = "alice") -> str:
    """A commit on HEAD (not checked out) that puts unapproved content into production."""
    (clone / PRD).mkdir(parents=True, exist_ok=True)
    (clone / PRD / "agent.yaml").write_text("name: support-bot\n# EVIL, never approved\n")
    git(clone, "add", "-A")
    tree = git(clone, "write-tree")
    git(clone, "reset", "-q", "--hard", "HEAD")
    return _commit_tree(clone, tree, member, "Fabricated production", "HEAD")


# -- 1. replace refs: the hook judges a different object than the branch holds -------------


def test_replace_ref_makes_the_hook_judge_a_decoy_commit(clone: Path, server: Path) -> None:
    """A developer pushes refs/replace/<evil> -> <decoy> (not a branch: unchecked), then pushes
    <evil> to main. Every git command the hook runs honours the replacement, so it judges the
    decoy (a README edit) while main points to the real commit, which fabricates production.
    Clones and deployments (which do not fetch refs/replace/) get the fabricated production."""
    evil = _fabricated_production(clone)
    (clone / "README.md").write_text("harmless\n")
    git(clone, "add", "-A")
    decoy = _commit_tree(clone, git(clone, "write-tree"), "alice", "Docs", "HEAD")
    git(clone, "reset", "-q", "--hard", "HEAD")
    rejected(clone, server, "alice", "replace refs are refused", f"{decoy}:refs/replace/{evil}")
    # Even with a replace ref planted on the server some other way, the hook reads the
    # objects themselves.
    git(clone, "push", "-q", str(server), f"{decoy}:refs/bench/decoy", env={"REMOTE_USER": "alice"})
    git(server, "update-ref", f"refs/replace/{evil}", decoy)
    git(clone, "reset", "-q", "--hard", evil)
    rejected(clone, server, "alice", "production must be an exact copy")


def test_replace_ref_on_the_policy_blob_grants_rights(clone: Path, server: Path) -> None:
    """The same with the policy: replacing the blob of stageline.yaml at main's tip would make
    the hook read a policy in which alice is org-admin; she then makes that real in a commit."""
    policy_blob = git(clone, "rev-parse", "HEAD:stageline.yaml")
    text = (clone / "stageline.yaml").read_text().replace(
        "roles: [developer]}\n  dan", "roles: [developer, org-admin]}\n  dan", 1)
    forged = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=clone, input=text,
                            capture_output=True, text=True, check=True).stdout.strip()
    rejected(clone, server, "alice", "replace refs are refused",
             f"{forged}:refs/replace/{policy_blob}")
    (clone / "stageline.yaml").write_text(text)
    commit_all(clone, "alice", "Make me org-admin")
    # plant the replacement on the server some other way: the hook still reads the real blob
    git(clone, "push", "-q", str(server), "HEAD:refs/bench/forged", env={"REMOTE_USER": "alice"})
    git(server, "update-ref", f"refs/replace/{policy_blob}", forged)
    rejected(clone, server, "alice", "may not change stageline.yaml")


# -- 2. creating a protected branch: commits already on unchecked branches are not judged ----


def _protect_release(clone: Path, server: Path) -> None:
    policy = clone / "stageline.yaml"
    policy.write_text(policy.read_text().replace("protected_branches: [main]",
                                                 "protected_branches: [main, release]"))
    commit_all(clone, "olga", "Protect release")
    accepted(clone, server, "olga")


def test_new_protected_branch_made_from_an_unchecked_branch(clone: Path, server: Path) -> None:
    """'new --not --branches' leaves out commits on every branch of the server, unprotected
    (never checked) ones included: push the fabrication to a scratch branch, then create the
    protected branch from it."""
    _protect_release(clone, server)
    git(clone, "reset", "-q", "--hard", _fabricated_production(clone))
    ok, err = push(clone, "alice", "HEAD:refs/heads/scratch")
    assert ok, err  # other branches are not checked...
    # ...so they must be when they enter a protected one (which only an org-admin creates)
    rejected(clone, server, "olga", "production must be an exact copy", "HEAD:refs/heads/release")


def test_case_variant_of_main_made_from_an_unchecked_branch(clone: Path, server: Path) -> None:
    """The same needs no policy change: refs/heads/MAIN is protected (case-insensitively) and
    does not exist yet."""
    git(clone, "reset", "-q", "--hard", _fabricated_production(clone))
    ok, err = push(clone, "alice", "HEAD:refs/heads/scratch")
    assert ok, err
    rejected(clone, server, "alice", "stageline: push to MAIN rejected", "HEAD:refs/heads/MAIN")


def test_case_variant_of_main_created_at_an_old_state(clone: Path, server: Path) -> None:
    """refs/heads/Main is the protected main under another spelling (on a case-insensitive ref
    store it IS main): creating it at an older commit is a rewind, accepted as a creation
    without any fast-forward check."""
    first = git(clone, "rev-parse", "HEAD")
    (clone / "README.md").write_text("x\n")
    commit_all(clone, "alice", "Docs")
    accepted(clone, server, "alice")
    rejected(clone, server, "alice", "stageline: push to Main rejected", f"{first}:refs/heads/Main")


# -- 3. policy spellings that silently protect nothing ---------------------------------------


def test_protected_branch_written_as_a_full_ref_name(clone: Path, server: Path) -> None:
    """An org-admin writes protected_branches: [refs/heads/main]. The policy is accepted as
    valid, but is_protected compares 'main' with 'refs/heads/main': main is no longer
    protected and any member (or non-member) pushes anything to it."""
    policy = clone / "stageline.yaml"
    policy.write_text(policy.read_text().replace("protected_branches: [main]",
                                                 "protected_branches: [refs/heads/main]"))
    commit_all(clone, "olga", "Spell the branch out")
    ok, err = push(clone, "olga")
    if not ok:  # refusing the spelling is a fix too
        assert "protected_branches" in err, err
        return
    git(clone, "reset", "-q", "--hard", _fabricated_production(clone))
    rejected(clone, server, "alice", "production must be an exact copy")


# -- 4. legitimate pushes that are refused ----------------------------------------------------


def _add_member(clone: Path, server: Path, line: str) -> None:
    policy = clone / "stageline.yaml"
    policy.write_text(policy.read_text() + line)
    commit_all(clone, "olga", "Add a member")
    accepted(clone, server, "olga")


def test_numeric_member_id_cannot_mark_ready(clone: Path, server: Path) -> None:
    """Member ids are login names ([A-Za-z0-9][A-Za-z0-9._-]*), so '1234' is valid (quoted as a
    key in stageline.yaml). The approval text stageline writes (approval.text, what
    mark-ready commits) has 'marked_by: 1234' unquoted: YAML reads an int and the hook
    rejects QA's legitimate approval as invalid ('has no marked_by'). Same for ids such as
    'yes', 'no', 'on', 'off', 'null', 'true'."""
    _add_member(clone, server,
                '  "1234": {name: Numeric QA, email: 1234@test.example, roles: [qa]}\n')
    _stage_by_hand(clone, server)
    _approve_by_hand(clone, server, qa="1234")
    accepted(clone, server, "1234")


def test_numeric_agent_name_cannot_be_approved(clone: Path, server: Path) -> None:
    """Agent '2024' matches ^[a-z0-9][a-z0-9-]{0,62}$, but 'agent: 2024' in the approval that
    approval.text writes is an int: the hook refuses QA's approval."""
    copy_dir(clone, DEV, "environments/development/2024")
    agent_yaml = clone / "environments/development/2024/agent.yaml"
    agent_yaml.write_text(agent_yaml.read_text().replace("name: support-bot", 'name: "2024"'))
    commit_all(clone, "alice", "New agent")
    copy_dir(clone, "environments/development/2024", "environments/staging/2024")
    commit_all(clone, "alice", "Promote 2024")
    accepted(clone, server, "alice")
    _approve_by_hand(clone, server, agent="2024")
    accepted(clone, server, "quinn")


def test_feature_branch_with_a_broken_policy_draft_is_refused(clone: Path, server: Path) -> None:
    """Pushes to unprotected branches are not checked (§7), but a feature branch whose
    stageline.yaml does not parse (a draft, a merge conflict) is refused with 'the pushed
    stageline.yaml protects feature', which is false: _unprotected_check treats an invalid
    policy as one that protects the branch."""
    git(clone, "checkout", "-q", "-b", "feature")
    policy = clone / "stageline.yaml"
    policy.write_text(policy.read_text() + "<<<<<<< draft\n")
    commit_all(clone, "olga", "WIP policy")
    ok, err = push(clone, "olga", "HEAD:refs/heads/feature")
    assert ok, err


# -- 5. separation of duties rests on the (forgeable) author --------------------------------


def test_separation_of_duties_defeated_by_a_forged_approval_author(clone: Path,
                                                                   server: Path) -> None:
    """sam holds qa and org-admin. He commits the approval with quinn as author and
    marked_by (author emails are free text), pushes it himself (he is QA), then ships the tree
    to production himself: the hook only compares marked_by (quinn) with the production
    commit's author and pusher (sam). The only authenticated identity, the approval's pusher,
    is never compared. Fix: an approval's marked_by must also be its pusher."""
    _stage_by_hand(clone, server)
    _approve_by_hand(clone, server, qa="quinn")  # authored as quinn, marked_by quinn
    ok, err = push(clone, "sam")  # ...but pushed by sam
    if not ok:
        assert "sam" in err, err
        return
    copy_dir(clone, STG, PRD)
    commit_all(clone, "sam", "Ship what I approved under quinn's name")
    rejected(clone, server, "sam", "separation of duties")


# -- 6. case variants of the reserved top-level names ---------------------------------------


def test_case_variant_of_environments_lands_in_production_on_case_insensitive_checkouts(
        clone: Path, server: Path) -> None:
    """'Environments/production/support-bot/...' is classified 'other', so a developer may
    add it. On a case-insensitive file system (macOS, Windows: CI runners, laptops) a checkout
    writes it into environments/production/support-bot/: an unapproved file in production.
    The same goes for 'Approvals/' and 'Stageline.yaml'."""
    evil = clone / "Environments/production/support-bot/knowledge"
    evil.mkdir(parents=True)
    (evil / "extra.md").write_text("unapproved knowledge\n")
    commit_all(clone, "alice", "Looks like docs")
    rejected(clone, server, "alice", "stageline: push to main rejected")


# -- 7. malformed (unsorted) trees: git's path lookup and diff-tree disagree -----------------


def _tree_bytes(entries: list[tuple[str, str, str]]) -> bytes:
    return b"".join(f"{mode} {name}".encode() + b"\0" + bytes.fromhex(oid)
                    for mode, name, oid in entries)


def _rejected_both_ways(clone: Path, server: Path, member: str) -> None:
    """hook install turns on receive.fsckObjects, which refuses the tree; without it, the
    hook's own guard refuses the commit."""
    rejected(clone, server, member, "not properly sorted")
    git(server, "config", "receive.fsckObjects", "false")
    rejected(clone, server, member, "the commit's tree is malformed")


def _hash(clone: Path, kind: str, data: bytes) -> str:
    return subprocess.run(["git", "hash-object", "--literally", "-t", kind, "-w", "--stdin"],
                          cwd=clone, input=data, capture_output=True, check=True
                          ).stdout.decode().strip()


def test_unsorted_root_tree_hides_production_from_the_lookups(clone: Path,
                                                              server: Path) -> None:
    """An org-admin alone puts unapproved content into production. The root tree lists a
    decoy 'f.md' before 'environments' (unsorted; git without receive.fsckObjects accepts
    it). git's '<commit>:<path>' lookup stops at the first name that sorts after the one it
    wants, so the hook sees no staging, no production and no approval ('retired': equal,
    nothing to approve), while diff-tree reports the production files and ls-tree, archive
    and checkout deliver them."""
    evil_agent = _hash(clone, "blob", b"name: support-bot\n# never approved\n")
    agent_tree = _hash(clone, "tree", _tree_bytes([("100644", "agent.yaml", evil_agent)]))
    production = _hash(clone, "tree", _tree_bytes([("40000", "support-bot", agent_tree)]))
    development = git(clone, "rev-parse", "HEAD:environments/development")
    environments = _hash(clone, "tree", _tree_bytes([("40000", "development", development),
                                                     ("40000", "production", production)]))
    root = _tree_bytes([
        ("100644", "README.md", git(clone, "rev-parse", "HEAD:README.md")),
        ("100644", "f.md", _hash(clone, "blob", b"decoy\n")),
        ("40000", "environments", environments),
        ("100644", "stageline.yaml", git(clone, "rev-parse", "HEAD:stageline.yaml")),
    ])
    commit = _commit_tree(clone, _hash(clone, "tree", root), "olga", "Notes", "HEAD")
    git(clone, "update-ref", "refs/heads/main", commit)
    _rejected_both_ways(clone, server, "olga")


def test_unsorted_root_tree_lets_a_developer_write_staging(clone: Path, server: Path) -> None:
    """The same trick at developer level: staging that differs from development. Both
    lookups fail, None == None, so 'staging must be an exact copy of development' holds."""
    fake = _hash(clone, "blob", b"name: support-bot\n# edited in staging\n")
    agent_tree = _hash(clone, "tree", _tree_bytes([("100644", "agent.yaml", fake)]))
    staging = _hash(clone, "tree", _tree_bytes([("40000", "support-bot", agent_tree)]))
    development = git(clone, "rev-parse", "HEAD:environments/development")
    environments = _hash(clone, "tree", _tree_bytes([("40000", "development", development),
                                                     ("40000", "staging", staging)]))
    root = _tree_bytes([
        ("100644", "README.md", git(clone, "rev-parse", "HEAD:README.md")),
        ("100644", "f.md", _hash(clone, "blob", b"decoy\n")),
        ("40000", "environments", environments),
        ("100644", "stageline.yaml", git(clone, "rev-parse", "HEAD:stageline.yaml")),
    ])
    commit = _commit_tree(clone, _hash(clone, "tree", root), "alice", "Notes", "HEAD")
    git(clone, "update-ref", "refs/heads/main", commit)
    _rejected_both_ways(clone, server, "alice")


# -- pinned: subtle cases that are handled correctly ------------------------------------------


def test_pin_hand_made_release_is_accepted(clone: Path, server: Path) -> None:
    """The whole line by hand (no CLI): promotion, approval, production push by another."""
    _stage_by_hand(clone, server)
    _approve_by_hand(clone, server)
    accepted(clone, server, "quinn")
    copy_dir(clone, STG, PRD)
    commit_all(clone, "olga", "Ship")
    accepted(clone, server, "olga")


def test_pin_retiring_an_agent_by_hand(clone: Path, server: Path) -> None:
    _stage_by_hand(clone, server)
    _approve_by_hand(clone, server)
    accepted(clone, server, "quinn")
    copy_dir(clone, STG, PRD)
    commit_all(clone, "olga", "Ship")
    accepted(clone, server, "olga")
    shutil.rmtree(clone / DEV)
    commit_all(clone, "alice", "Retire in development")
    shutil.rmtree(clone / STG)
    (clone / "approvals/support-bot.yaml").unlink()
    commit_all(clone, "alice", "Retire in staging")
    accepted(clone, server, "alice")
    shutil.rmtree(clone / PRD)
    commit_all(clone, "olga", "Retire in production")
    accepted(clone, server, "olga")


def test_pin_approval_with_extra_keys_is_accepted_with_the_mark_only(
        clone: Path, server: Path) -> None:
    """Notes written with one's mark are part of it; rewritten later, they would change
    what every mark on the record vouches for (a red-team finding: quinn rewrote a record
    rita had marked last). The contract allows adding a mark, starting a record, and
    withdrawing one's own mark: nothing else."""
    _stage_by_hand(clone, server)
    tree = git(clone, "rev-parse", "HEAD:environments/staging/support-bot")
    path = clone / "approvals/support-bot.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(approval.text("support-bot", tree, (
        approval.Mark("quinn", "2026-01-01T00:00:00Z"),)) + "notes: checked the refund flow\n")
    commit_all(clone, "quinn", "Mark ready with notes")
    accepted(clone, server, "quinn")
    path.write_text(path.read_text().replace("checked the refund flow", "all fine"))
    commit_all(clone, "quinn", "Rewrite the notes")
    rejected(clone, server, "quinn", "the approval must add quinn's own mark")


def test_pin_empty_commit_claiming_a_production_push(clone: Path, server: Path) -> None:
    git(clone, "commit", "-q", "--allow-empty", "-m",
        "Ship\n\nStageline-Action: promote-to-production\nStageline-Agent: support-bot\n"
        "Stageline-Actor: olga", env=author_env("olga"))
    rejected(clone, server, "olga", "the trailers claim promote-to-production")


def test_pin_duplicate_actor_trailer(clone: Path, server: Path) -> None:
    (clone / "README.md").write_text("x\n")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "Docs\n\nStageline-Actor: dan\nStageline-Actor: olga",
        env=author_env("dan"))
    rejected(clone, server, "dan", "Stageline-Actor claims")


def test_pin_lowercase_restores_trailer_is_no_rollback(clone: Path, server: Path) -> None:
    """git reads trailer keys without case, and so does the hook: 'stageline-restores' is a
    rollback claim, which a commit without 'Stageline-Action: rollback' may not make."""
    first = git(clone, "rev-parse", "HEAD")
    _stage_by_hand(clone, server)
    _approve_by_hand(clone, server)
    accepted(clone, server, "quinn")
    copy_dir(clone, STG, PRD)
    commit_all(clone, "olga", "Ship")
    accepted(clone, server, "olga")
    shutil.rmtree(clone / PRD)
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", f"Roll back\n\nstageline-restores: {first}",
        env=author_env("olga"))
    rejected(clone, server, "olga", "a rollback names what it restores (Stageline-Restores), "
                                    "and only a rollback")


def test_pin_rollback_to_a_second_parent_state(clone: Path, server: Path) -> None:
    """A commit merged in as a second parent is an ancestor of the branch but not one of its
    states: restoring from it is refused."""
    git(clone, "checkout", "-q", "-b", "side")
    (clone / "notes.md").write_text("side\n")
    commit_all(clone, "alice", "Side")
    side = git(clone, "rev-parse", "HEAD")
    git(clone, "checkout", "-q", "main")
    (clone / "README.md").write_text("main\n")
    commit_all(clone, "alice", "Main")
    git(clone, "merge", "-q", "--no-ff", "side", "-m", "Merge", env=author_env("alice"))
    accepted(clone, server, "alice")
    (clone / PRD).mkdir(parents=True)
    (clone / PRD / "agent.yaml").write_text("x\n")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "Roll back\n\nStageline-Action: rollback\n"
        f"Stageline-Agent: support-bot\nStageline-Restores: {side}", env=author_env("olga"))
    rejected(clone, server, "olga", "is not an earlier state of the branch")


def test_pin_octopus_merge_bringing_staging(clone: Path, server: Path) -> None:
    base = git(clone, "rev-parse", "HEAD")
    git(clone, "checkout", "-q", "-b", "s1")
    copy_dir(clone, DEV, STG)
    commit_all(clone, "alice", "Legit promotion on a side branch")
    git(clone, "checkout", "-q", "-b", "s2", base)
    (clone / "notes.md").write_text("n\n")
    commit_all(clone, "alice", "Notes")
    git(clone, "checkout", "-q", "main")
    (clone / "README.md").write_text("main\n")
    commit_all(clone, "alice", "Main")
    git(clone, "merge", "-q", "--no-ff", "s1", "s2", "-m", "Octopus", env=author_env("alice"))
    assert len(git(clone, "rev-list", "--parents", "-1", "HEAD").split()) == 4
    rejected(clone, server, "alice", "a merge commit may not change staging")


def test_pin_unrelated_root_commit_merged_in(clone: Path, server: Path) -> None:
    """A root commit in the middle of the push (second parent of an 'ours' merge) is judged
    against the empty tree."""
    (clone / PRD).mkdir(parents=True)
    (clone / PRD / "agent.yaml").write_text("evil\n")
    git(clone, "add", "-A")
    git(clone, "rm", "-q", "--cached", "-r", "README.md", "stageline.yaml",
        "environments/development")
    root = _commit_tree(clone, git(clone, "write-tree"), "olga", "Unrelated")
    git(clone, "reset", "-q", "--hard", "HEAD")
    git(clone, "merge", "-q", "-s", "ours", "--allow-unrelated-histories", root, "-m", "Merge",
        env=author_env("olga"))
    rejected(clone, server, "olga", "production must be an exact copy")


def test_pin_one_bad_ref_rejects_the_whole_push(clone: Path, server: Path) -> None:
    (clone / "README.md").write_text("fine\n")
    commit_all(clone, "alice", "Docs")
    good = git(clone, "rev-parse", "HEAD")
    git(clone, "reset", "-q", "--hard", _fabricated_production(clone))
    before = git(server, "for-each-ref")
    ok, err = push(clone, "alice", f"{good}:refs/heads/main", "HEAD:refs/heads/MAIN")
    assert not ok, err
    assert git(server, "for-each-ref") == before


def test_pin_author_email_case_is_ignored(clone: Path, server: Path) -> None:
    (clone / "README.md").write_text("x\n")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "Docs",
        env={**author_env("alice"), "GIT_AUTHOR_EMAIL": "ALICE@Test.Example"})
    accepted(clone, server, "alice")


def test_pin_blank_identity_is_no_identity(clone: Path, server: Path) -> None:
    (clone / "README.md").write_text("x\n")
    commit_all(clone, "alice", "Docs")
    rejected(clone, server, "   ", "did not say who is pushing")


def test_pin_tag_pointing_at_a_fabrication_leaves_main_alone(clone: Path, server: Path) -> None:
    """Tags are not judged (only branches); the fabricated commit does not reach main."""
    evil = _fabricated_production(clone)
    ok, err = push(clone, "alice", f"{evil}:refs/tags/v1")
    assert ok, err
    git(clone, "reset", "-q", "--hard", evil)
    rejected(clone, server, "alice", "production must be an exact copy")


# -- 8. refs that shadow a protected branch -----------------------------------------------------


def test_tag_named_like_the_protected_branch_shadows_it(clone: Path, server: Path) -> None:
    """Tags are not judged, but git resolves a short name through refs/tags/ BEFORE
    refs/heads/: after a developer pushes refs/tags/main (and refs/tags/origin/main), every
    'git rev-parse main' / 'git archive main' / 'stageline verify --range main..X' on the
    server, and every 'origin/main' or 'main' in clones that fetched tags, is the fabricated
    commit. A ref whose short name equals a protected branch should be refused."""
    evil = _fabricated_production(clone)
    before = git(server, "rev-parse", "refs/heads/main")
    ok, err = push(clone, "alice", f"{evil}:refs/tags/main")
    if ok:
        assert git(server, "rev-parse", "main") == evil  # 'main' now means the fabrication
        assert git(server, "rev-parse", "refs/heads/main") == before
    assert not ok, "a tag shadowing the protected branch 'main' was accepted"
