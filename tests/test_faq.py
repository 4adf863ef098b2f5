"""The procedures docs/faq.md gives, run as written: plain git in clones, stageline
where the FAQ says so, and every push through the installed hook."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import author_env, commit_all, git, make_org, sl
from servers import (
    DEV,
    PRD,
    STG,
    accepted,
    push,
    ready,
    rejected,
)

from stageline.errors import CHECK_FAILED, OK

APPROVAL = "approvals/support-bot.yaml"


def as_member(repo: Path, member: str) -> None:
    """The clone of one member: git's identity is theirs (the FAQ's commands use it)."""
    env = author_env(member)
    git(repo, "config", "user.name", env["GIT_AUTHOR_NAME"])
    git(repo, "config", "user.email", env["GIT_AUTHOR_EMAIL"])


def in_production(clone: Path, server: Path) -> None:
    ready(clone, server)
    assert sl(clone, "promote", "support-bot", "--to", "production", actor="olga").code == OK
    accepted(clone, server, "olga")


def agents(repo: Path) -> dict[str, list[str]]:
    status = json.loads(sl(repo, "status", "--json").out)
    return {a["name"]: [e for e, v in a["environments"].items() if v["tree"]]
            for a in status["agents"]}


# -- retiring an agent ----------------------------------------------------------------


def test_retire_in_one_commit_by_an_org_admin(clone: Path, server: Path) -> None:
    in_production(clone, server)
    as_member(clone, "olga")
    git(clone, "rm", "-r", "-q", "--ignore-unmatch", DEV, STG, PRD, APPROVAL)
    git(clone, "commit", "-q", "-m", "Retire support-bot")
    accepted(clone, server, "olga")
    assert agents(clone) == {}
    assert not git(server, "ls-tree", "-r", "--name-only", "main", "environments", APPROVAL)


def test_retire_step_by_step_each_role_its_own_part(clone: Path, server: Path) -> None:
    in_production(clone, server)
    # a developer: development and staging (and the approval) in one commit
    as_member(clone, "alice")
    git(clone, "rm", "-r", "-q", "--ignore-unmatch", DEV, STG, APPROVAL)
    git(clone, "commit", "-q", "-m", "Retire support-bot from development and staging")
    accepted(clone, server, "alice")
    assert agents(clone) == {"support-bot": ["production"]}
    # an org-admin: production, now that staging is gone
    as_member(clone, "olga")
    git(clone, "rm", "-r", "-q", PRD)
    git(clone, "commit", "-q", "-m", "Retire support-bot from production")
    accepted(clone, server, "olga")
    assert agents(clone) == {}


def test_stop_development_only(clone: Path, server: Path) -> None:
    in_production(clone, server)
    as_member(clone, "alice")
    git(clone, "rm", "-r", "-q", DEV)
    git(clone, "commit", "-q", "-m", "Stop work on support-bot")
    accepted(clone, server, "alice")
    assert agents(clone) == {"support-bot": ["staging", "production"]}


def test_what_the_hook_refuses_when_retiring(clone: Path, server: Path) -> None:
    in_production(clone, server)
    base = git(clone, "rev-parse", "HEAD")
    # production alone, while staging still holds the agent
    as_member(clone, "olga")
    git(clone, "rm", "-r", "-q", PRD)
    git(clone, "commit", "-q", "-m", "Retire from production")
    rejected(clone, server, "olga", "production must be an exact copy of staging")
    git(clone, "reset", "-q", "--hard", base)
    # staging while development still holds it
    as_member(clone, "alice")
    git(clone, "rm", "-r", "-q", STG, APPROVAL)
    git(clone, "commit", "-q", "-m", "Retire from staging")
    rejected(clone, server, "alice", "staging must be an exact copy of development")
    git(clone, "reset", "-q", "--hard", base)
    # staging without its approval
    git(clone, "rm", "-r", "-q", DEV, STG)
    git(clone, "commit", "-q", "-m", "Retire, approval kept")
    rejected(clone, server, "alice", "must delete the agent's approval")
    git(clone, "reset", "-q", "--hard", base)
    # a developer may not touch production
    git(clone, "rm", "-r", "-q", "--ignore-unmatch", DEV, STG, PRD, APPROVAL)
    git(clone, "commit", "-q", "-m", "Retire everything")
    rejected(clone, server, "alice", "may not push to production")
    git(clone, "reset", "-q", "--hard", base)
    # QA may not remove anything but their own mark
    as_member(clone, "rita")
    git(clone, "rm", "-q", APPROVAL)
    git(clone, "commit", "-q", "-m", "Withdraw quinn's approval")
    rejected(clone, server, "rita", "an approval may be deleted only by a promotion to staging")


def test_take_an_agent_out_of_production_only(clone: Path, server: Path) -> None:
    before = git(clone, "rev-parse", "HEAD")  # production never held support-bot here
    in_production(clone, server)
    as_member(clone, "olga")
    # stageline rollback refuses a commit without the agent in production
    refused = sl(clone, "rollback", "support-bot", "--to", before, actor="olga")
    assert refused.code != OK and "was not in production" in refused.err
    git(clone, "rm", "-r", "-q", PRD)
    git(clone, "commit", "-q", "-m", "Take support-bot out of production",
        "--trailer", "Stageline-Action: rollback", "--trailer", "Stageline-Agent: support-bot",
        "--trailer", "Stageline-Actor: olga", "--trailer", f"Stageline-Restores: {before}")
    accepted(clone, server, "olga")
    assert agents(clone) == {"support-bot": ["development", "staging"]}
    # and back through the normal path later: staging is still approved, and the tree
    # production was taken back from is shipped again only on purpose
    again = sl(clone, "promote", "support-bot", "--to", "production", actor="omar")
    assert again.code != OK and "--force-reship" in again.err
    assert sl(clone, "promote", "support-bot", "--to", "production", "--force-reship",
              actor="omar").code == OK
    accepted(clone, server, "omar")


# -- conflicts ------------------------------------------------------------------------


def second_clone(server: Path, tmp_path: Path, member: str) -> Path:
    other = tmp_path / member
    git(tmp_path, "clone", "-q", str(server), str(other))
    as_member(other, member)
    return other


def test_two_developers_rebase_onto_the_server_branch(clone: Path, server: Path,
                                                      tmp_path: Path) -> None:
    dan = second_clone(server, tmp_path, "dan")
    as_member(clone, "alice")
    (clone / DEV / "knowledge/refunds.md").write_text("Refunds within 30 days.\n")
    git(clone, "commit", "-q", "-am", "Refund window")
    accepted(clone, server, "alice")
    (dan / DEV / "prompts/system.md").write_text("You answer billing questions briefly.\n")
    git(dan, "commit", "-q", "-am", "Briefer")
    ok, err = push(dan, "dan")
    assert not ok and "fetch first" in err  # git itself: the server moved on
    git(dan, "pull", "-q", "--rebase")
    accepted(dan, server, "dan")
    assert git(server, "show", f"main:{DEV}/knowledge/refunds.md") == "Refunds within 30 days."


def test_a_stale_promotion_is_refused_and_redone(clone: Path, server: Path,
                                                 tmp_path: Path) -> None:
    dan = second_clone(server, tmp_path, "dan")
    as_member(clone, "alice")
    assert sl(clone, "promote", "support-bot", "--to", "staging").code == OK
    # meanwhile dan changes development and pushes first
    (dan / DEV / "prompts/system.md").write_text("v2\n")
    git(dan, "commit", "-q", "-am", "v2")
    accepted(dan, server, "dan")
    ok, err = push(clone, "alice")
    assert not ok and "fetch first" in err
    git(clone, "pull", "-q", "--rebase")
    # the rebased promotion copies the old development: verify says so before a push
    check = sl(clone, "verify", "--range", "@{u}..HEAD", "--pusher", "alice")
    assert check.code == CHECK_FAILED
    assert "staging must be an exact copy of development" in check.out
    rejected(clone, server, "alice", "staging must be an exact copy of development")
    # drop it and promote again on the current branch
    git(clone, "reset", "-q", "--keep", "HEAD~1")
    assert sl(clone, "promote", "support-bot", "--to", "staging").code == OK
    assert sl(clone, "verify", "--range", "@{u}..HEAD", "--pusher", "alice").code == OK
    accepted(clone, server, "alice")
    assert git(server, "show", f"main:{STG}/prompts/system.md") == "v2"


def test_the_same_promotion_twice_is_dropped_by_the_rebase(clone: Path, server: Path,
                                                           tmp_path: Path) -> None:
    dan = second_clone(server, tmp_path, "dan")
    as_member(clone, "alice")
    assert sl(clone, "promote", "support-bot", "--to", "staging").code == OK
    assert sl(dan, "promote", "support-bot", "--to", "staging").code == OK
    accepted(clone, server, "alice")
    git(dan, "pull", "-q", "--rebase")
    assert git(dan, "rev-parse", "HEAD") == git(server, "rev-parse", "main")


# -- moving from a UI-only platform -----------------------------------------------------


def test_import_existing_agents_in_the_first_push(tmp_path: Path) -> None:
    # the server: an empty bare repository with the hook
    srv = tmp_path / "acme.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(srv))
    assert sl(None, "hook", "install", str(srv)).code == OK
    # the organization, then the platform's agents as they are in each environment
    assert sl(None, "init", str(tmp_path / "acme"), "--org", "acme", "--admin", "olga",
              "--admin-email", "olga@test.example").code == OK
    repo = tmp_path / "acme"
    policy = repo / "stageline.yaml"
    policy.write_text(policy.read_text() +
                      "  alice: {name: Alice Dev, email: alice@test.example, "
                      "roles: [developer]}\n")
    as_member(repo, "olga")
    git(repo, "commit", "-q", "-am", "Add alice")
    exported = make_org(tmp_path / "exported")  # stands for the platform's export
    for env, prompt in (("development", "v3\n"), ("staging", "v3\n"), ("production", "v2\n")):
        target = repo / "environments" / env / "support-bot"
        target.mkdir(parents=True)
        for f in (exported / DEV).rglob("*"):
            if f.is_file():
                (target / f.relative_to(exported / DEV)).parent.mkdir(parents=True,
                                                                       exist_ok=True)
                (target / f.relative_to(exported / DEV)).write_bytes(f.read_bytes())
        (target / "prompts/system.md").write_text(prompt)
    for env in ("development", "staging", "production"):
        assert sl(repo, "validate", "--worktree", "--env", env).code == OK
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Import agents from the platform")
    git(repo, "remote", "add", "origin", str(srv))
    ok, err = push(repo, "alice", "HEAD:refs/heads/main")
    assert not ok and "must name the pusher (alice) org-admin" in err
    ok, err = push(repo, "olga", "HEAD:refs/heads/main")
    assert ok, err
    git(repo, "branch", "-q", "--set-upstream-to=origin/main")
    assert agents(repo) == {"support-bot": ["development", "staging", "production"]}
    # from now on the rules hold: production moves only through the workflow, and the
    # imported staging has no approval yet
    (repo / PRD / "prompts/system.md").write_text("v3\n")
    commit_all(repo, "olga", "Sync production by hand")
    ok, err = push(repo, "olga", "HEAD:refs/heads/main")
    assert not ok and "support-bot has not been marked Ready for Production" in err
