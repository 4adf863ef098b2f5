"""Acting from CI: the CLI's actor from CI variables (``ci.actor_env``), and service accounts
that push commits authored by members (``service_accounts``), through a real bare server with
the hook installed (fixtures from test_hook.py) and through ``verify --pusher``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import commit_all, git, make_org, sl
from servers import (
    PRD,
    STG,
    accepted,
    copy_dir,
    push,
    rejected,
    tip,
)

from stageline.errors import CHECK_FAILED, OK, PERMISSION_DENIED, REPOSITORY
from stageline.policy import PolicyError, parse_policy

CI_POLICY = """
ci:
  actor_env: [GITHUB_ACTOR, GITLAB_USER_LOGIN]
service_accounts:
  ci-bot:
    acts_for_members: true
  deploy-bot: {}
"""
CI_VARS = ("GITHUB_ACTOR", "GITLAB_USER_LOGIN", "GITHUB_TRIGGERING_ACTOR")


@pytest.fixture(autouse=True)
def _no_ci_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite may itself run in CI: its own variables must not pick the actor."""
    for var in CI_VARS:
        monkeypatch.delenv(var, raising=False)


def add_to_policy(clone: Path, text: str) -> None:
    """olga adds ``text`` to stageline.yaml in a commit (not pushed)."""
    policy = clone / "stageline.yaml"
    policy.write_text(policy.read_text() + text)
    commit_all(clone, "olga", "Policy: acting from CI")


@pytest.fixture
def ci_server(clone: Path, server: Path) -> Path:
    """The server's policy lists the CI variables and the service accounts."""
    add_to_policy(clone, CI_POLICY)
    accepted(clone, server, "olga")
    return server


def as_ci_job(monkeypatch: pytest.MonkeyPatch, member: str, *args: str, repo: Path) -> None:
    """``stageline ARGS`` in a CI job that ``member`` triggered: no --as, no user.email."""
    monkeypatch.setenv("GITHUB_ACTOR", member)
    result = sl(repo, *args)
    monkeypatch.delenv("GITHUB_ACTOR")
    assert result.code == OK, result.err
    assert git(repo, "log", "-1", "--format=%ae") == f"{member}@test.example"


def bot_pushes(clone: Path, server: Path, bot: str = "ci-bot") -> None:
    ok, err = push(clone, bot, var="GL_USERNAME")
    assert ok, err
    assert tip(server) == git(clone, "rev-parse", "HEAD")


def bot_rejected(clone: Path, server: Path, says: str, bot: str = "ci-bot") -> str:
    return rejected(clone, server, bot, says, var="GL_USERNAME")


def push_log(server: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in
            (server / "stageline-pushes.jsonl").read_text().splitlines()]


# -- the hook --------------------------------------------------------------------------


def test_the_whole_workflow_pushed_by_a_service_account(
        clone: Path, ci_server: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    as_ci_job(monkeypatch, "alice", "promote", "support-bot", "--to", "staging", repo=clone)
    bot_pushes(clone, ci_server)
    # The approval is pushed by ci-bot, not by quinn: its author is what it is checked against.
    as_ci_job(monkeypatch, "quinn", "mark-ready", "support-bot", repo=clone)
    bot_pushes(clone, ci_server)
    as_ci_job(monkeypatch, "olga", "promote", "support-bot", "--to", "production", repo=clone)
    bot_pushes(clone, ci_server)
    assert git(ci_server, "rev-parse", f"main:{PRD}") == git(ci_server, "rev-parse", f"main:{STG}")

    records = push_log(ci_server)
    assert [r["pusher"] for r in records] == ["olga", "ci-bot", "ci-bot", "ci-bot"]
    # The audit log names both: the member who acted and the account that pushed.
    log = sl(clone, "log", "--push-log", str(ci_server / "stageline-pushes.jsonl"), "--json")
    assert log.code == OK, log.err
    events = [(e["action"], e["actor"], e["pusher"]) for e in json.loads(log.out)["events"]]
    assert events[:4] == [("promote-to-production", "olga", "ci-bot"),
                          ("mark-ready", "quinn", "ci-bot"),
                          ("promote-to-staging", "alice", "ci-bot"),
                          ("policy-change", "olga", "olga")]
    table = sl(clone, "log", "--push-log", str(ci_server / "stageline-pushes.jsonl"))
    row = next(line for line in table.out.splitlines() if "promote-to-production" in line)
    assert row.split()[3:5] == ["olga", "ci-bot"]


def test_an_author_without_the_role_is_rejected(clone: Path, ci_server: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    as_ci_job(monkeypatch, "alice", "promote", "support-bot", "--to", "staging", repo=clone)
    as_ci_job(monkeypatch, "quinn", "mark-ready", "support-bot", repo=clone)
    bot_pushes(clone, ci_server)
    # A developer's production push, made by hand, as a CI job would push it.
    copy_dir(clone, STG, PRD)
    commit_all(clone, "alice", "Ship it")
    err = bot_rejected(clone, ci_server, "the author alice (developer) may not push to production")
    assert "GL-HOOK-ERR: " in err
    assert "the pusher" not in err  # a service account has no roles to check


def test_an_approval_must_still_be_marked_by_its_author(clone: Path, ci_server: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    as_ci_job(monkeypatch, "alice", "promote", "support-bot", "--to", "staging", repo=clone)
    bot_pushes(clone, ci_server)
    tree = git(clone, "rev-parse", f"HEAD:{STG}")
    (clone / "approvals").mkdir()
    (clone / "approvals/support-bot.yaml").write_text(
        f"agent: support-bot\nstaging_tree: {tree}\nmarked_by: quinn\nmarked_at: now\n")
    commit_all(clone, "rita", "Approve in a colleague's name")
    bot_rejected(clone, ci_server, "the approval must add rita's own mark")


def test_separation_of_duties_holds_on_the_author(clone: Path, ci_server: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    as_ci_job(monkeypatch, "alice", "promote", "support-bot", "--to", "staging", repo=clone)
    as_ci_job(monkeypatch, "sam", "mark-ready", "support-bot", repo=clone)
    bot_pushes(clone, ci_server)
    # The CLI refuses sam's own production push; a hand-made one reaches the hook.
    monkeypatch.setenv("GITHUB_ACTOR", "sam")
    assert sl(clone, "promote", "support-bot", "--to", "production").code == PERMISSION_DENIED
    copy_dir(clone, STG, PRD)
    commit_all(clone, "sam", "Ship what I approved")
    bot_rejected(clone, ci_server, "sam marked this staging tree ready and may not also push it")


def test_a_service_account_that_does_not_act_for_members_is_rejected(
        clone: Path, ci_server: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    as_ci_job(monkeypatch, "alice", "promote", "support-bot", "--to", "staging", repo=clone)
    bot_rejected(clone, ci_server, "the pusher deploy-bot is a service account of testorg that "
                                   "may not push for members", bot="deploy-bot")
    bot_rejected(clone, ci_server, "the pusher other-bot is not a member of testorg",
                 bot="other-bot")
    bot_pushes(clone, ci_server)


def test_a_push_cannot_bring_its_own_service_account(clone: Path, server: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    add_to_policy(clone, CI_POLICY)  # olga's commit, in the same push
    as_ci_job(monkeypatch, "alice", "promote", "support-bot", "--to", "staging", repo=clone)
    bot_rejected(clone, server, "the pusher ci-bot is not a member of testorg")
    # Once the policy is on the server, the same commits may come from the account.
    git(clone, "push", "-q", "origin", "HEAD~1:refs/heads/main", env={"REMOTE_USER": "olga"})
    bot_pushes(clone, server)


def test_a_service_account_cannot_bootstrap(tmp_path: Path) -> None:
    srv = tmp_path / "empty.git"
    git(tmp_path, "init", "-q", "--bare", str(srv))
    assert sl(None, "hook", "install", str(srv)).code == OK
    work = make_org(tmp_path / "new-org")
    policy = work / "stageline.yaml"
    policy.write_text(policy.read_text() + CI_POLICY)
    commit_all(work, "olga", "Acting from CI")
    git(work, "remote", "add", "origin", str(srv))
    ok, err = push(work, "ci-bot", var="GL_USERNAME")
    assert not ok
    assert "the first policy must name the pusher (ci-bot) org-admin" in err
    assert git(srv, "for-each-ref") == ""


def test_a_policy_naming_a_member_as_service_account_is_refused(clone: Path,
                                                                server: Path) -> None:
    add_to_policy(clone, "service_accounts: {alice: {acts_for_members: true}}\n")
    rejected(clone, server, "olga", "alice is both a member (alice) and a service account")


# -- verify --pusher ---------------------------------------------------------------------


def test_verify_with_a_service_account_as_pusher(clone: Path, ci_server: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    base = git(clone, "rev-parse", "HEAD")
    as_ci_job(monkeypatch, "alice", "promote", "support-bot", "--to", "staging", repo=clone)
    as_ci_job(monkeypatch, "quinn", "mark-ready", "support-bot", repo=clone)
    good = sl(clone, "verify", "--range", f"{base}..HEAD", "--pusher", "ci-bot", "--json")
    assert good.code == OK, good.out
    assert json.loads(good.out)["pusher_checked"] is True
    # The same range pushed by a member would break the approval rule.
    assert sl(clone, "verify", "--range", f"{base}..HEAD", "--pusher", "alice").code == \
        CHECK_FAILED

    off = sl(clone, "verify", "--range", f"{base}..HEAD", "--pusher", "deploy-bot")
    assert off.code == CHECK_FAILED
    assert "may not push for members" in off.out

    copy_dir(clone, STG, PRD)
    commit_all(clone, "alice", "Ship it")
    bad = sl(clone, "verify", "--range", f"{base}..HEAD", "--pusher", "ci-bot")
    assert bad.code == CHECK_FAILED
    assert "the author alice (developer) may not push to production" in bad.out


def test_verify_takes_service_accounts_from_the_old_policy(clone: Path, server: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    base = git(clone, "rev-parse", "HEAD")
    add_to_policy(clone, CI_POLICY)
    with_policy = git(clone, "rev-parse", "HEAD")
    as_ci_job(monkeypatch, "alice", "promote", "support-bot", "--to", "staging", repo=clone)
    result = sl(clone, "verify", "--range", f"{base}..HEAD", "--pusher", "ci-bot")
    assert result.code == CHECK_FAILED
    assert "the pusher ci-bot is not a member of testorg" in result.out
    assert sl(clone, "verify", "--range", f"{with_policy}..HEAD", "--pusher", "ci-bot").code == OK


# -- the CLI's actor -----------------------------------------------------------------------


def test_ci_variables_are_ignored_unless_the_policy_lists_them(
        org: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTOR", "alice")
    result = sl(org, "promote", "support-bot", "--to", "staging")
    assert result.code == PERMISSION_DENIED
    assert "cannot tell who is acting" in result.err
    assert git(org, "ls-tree", "HEAD", STG) == ""


def test_the_order_of_actor_sources(org: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add_to_policy(org, CI_POLICY)

    def actor_of_a_commit(*args: str) -> str:
        git(org, "reset", "-q", "--hard", start)
        result = sl(org, *args, "promote", "support-bot", "--to", "staging")
        assert result.code == OK, result.err
        return git(org, "log", "-1", "--format=%ae").split("@")[0]

    start = git(org, "rev-parse", "HEAD")
    git(org, "config", "user.email", "dan@test.example")
    assert actor_of_a_commit() == "dan"  # nothing else set: git's user.email
    monkeypatch.setenv("GITLAB_USER_LOGIN", "olga")
    assert actor_of_a_commit() == "olga"  # the CI variable beats user.email
    monkeypatch.setenv("GITHUB_ACTOR", "alice")
    assert actor_of_a_commit() == "alice"  # the policy's order: GITHUB_ACTOR first
    monkeypatch.setenv("STAGELINE_ACTOR", "omar")
    assert actor_of_a_commit() == "omar"
    assert actor_of_a_commit("--as", "sam") == "sam"


@pytest.mark.parametrize("login", ["mallory", "ci-bot", "dependabot[bot]"])
def test_a_ci_variable_naming_no_member_is_refused(org: Path, monkeypatch: pytest.MonkeyPatch,
                                                   login: str) -> None:
    add_to_policy(org, CI_POLICY)
    before = git(org, "rev-parse", "HEAD")
    git(org, "config", "user.email", "alice@test.example")  # not used: the variable is set
    monkeypatch.setenv("GITLAB_USER_LOGIN", login)
    result = sl(org, "promote", "support-bot", "--to", "staging")
    assert result.code == PERMISSION_DENIED
    assert result.err.strip() == (f"stageline: GITLAB_USER_LOGIN names {login}, who is not a "
                                  "member of testorg; add them to stageline.yaml or pass "
                                  "--as MEMBER.")
    assert git(org, "rev-parse", "HEAD") == before


# -- the policy ------------------------------------------------------------------------------

MEMBERS = b"members: {alice: {email: a@x.test, roles: [developer]}}\n"


def test_ci_keys_are_parsed() -> None:
    policy = parse_policy(b"organization: acme\n" + MEMBERS + CI_POLICY.encode()
                          + b"  release-app[bot]: {acts_for_members: true}\n")
    assert policy.ci_actor_env == ("GITHUB_ACTOR", "GITLAB_USER_LOGIN")
    assert policy.pushes_for_members("ci-bot")
    assert policy.pushes_for_members("release-app[bot]")
    assert not policy.pushes_for_members("deploy-bot")
    assert not policy.pushes_for_members("alice")
    plain = parse_policy(b"organization: acme\n" + MEMBERS)
    assert plain.ci_actor_env == ()
    assert plain.service_accounts == {}


@pytest.mark.parametrize(("text", "says"), [
    (b"ci: [GITHUB_ACTOR]\n", "ci must be a mapping"),
    (b"ci: {actor_env: [GITHUB_ACTOR], pusher_env: [X]}\n", "ci has unknown key 'pusher_env'"),
    (b"ci: {actor_env: []}\n", "ci.actor_env must be a non-empty list of variable names"),
    (b"ci: {actor_env: GITHUB_ACTOR}\n", "ci.actor_env must be a non-empty list"),
    (b"ci: {actor_env: [GITHUB-ACTOR]}\n", "ci.actor_env must be a non-empty list"),
    (b"ci: {actor_env: [GITHUB_ACTOR, git_author_name]}\n",
     "ci.actor_env may not name git_author_name"),
    (b"service_accounts: [ci-bot]\n", "service_accounts must map account ids"),
    (b"service_accounts: {ci-bot: true}\n", "service account ci-bot must be a mapping"),
    (b"service_accounts: {ci-bot: {acts_for_members: yes please}}\n",
     "acts_for_members must be true or false"),
    (b"service_accounts: {ci-bot: {acts_for_members: true, roles: [org-admin]}}\n",
     "service account ci-bot has unknown key 'roles'"),
    (b"service_accounts: {'../bot': {}}\n", "is not a valid service account id"),
    (b"service_accounts: {Alice: {acts_for_members: true}}\n",
     "Alice is both a member (alice) and a service account"),
])
def test_invalid_ci_keys_are_one_sentence(text: bytes, says: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(b"organization: acme\n" + MEMBERS + text)
    assert says in info.value.message
    assert "\n" not in info.value.message


def test_an_invalid_service_account_is_exit_5(org: Path) -> None:
    add_to_policy(org, "service_accounts: {olga: {acts_for_members: true}}\n")
    result = sl(org, "status")
    assert result.code == REPOSITORY
    assert "olga is both a member (olga) and a service account" in result.err


def test_the_push_log_names_the_pusher_the_hook_judged(clone: Path, server: Path) -> None:
    """A push that changes identity.env is recorded under the old one, as it was judged."""
    policy = clone / "stageline.yaml"
    policy.write_text(policy.read_text() + "identity: {env: [REMOTE_USER]}\n")
    commit_all(clone, "olga", "Pin the identity variable")
    git(clone, "push", "-q", "origin", "HEAD:refs/heads/main",
        env={"GL_USERNAME": "olga", "REMOTE_USER": "omar"})
    assert push_log(server)[-1]["pusher"] == "olga"
