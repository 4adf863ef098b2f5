"""Promotion, approval and the commits they make, on real repositories."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import commit_all, git, make_org, sl

from stageline.errors import BLOCKED, CHECK_FAILED, OK, USAGE

DEV = "environments/development/support-bot"
STG = "environments/staging/support-bot"
PRD = "environments/production/support-bot"


def tree(repo: Path, rev: str, path: str) -> str:
    return git(repo, "rev-parse", f"{rev}:{path}")


def test_promote_to_staging_is_one_commit_with_trailers(org: Path) -> None:
    before = git(org, "rev-parse", "HEAD")
    result = sl(org, "promote", "support-bot", "--to", "staging", actor="alice")
    assert result.code == OK, result.err
    assert git(org, "rev-parse", "HEAD~1") == before
    assert tree(org, "HEAD", STG) == tree(org, "HEAD", DEV)
    assert git(org, "log", "-1", "--format=%an|%ae|%cn|%ce") == \
        "Alice Dev|alice@test.example|Alice Dev|alice@test.example"
    trailers = git(org, "log", "-1", "--format=%(trailers:only,unfold)")
    assert trailers.splitlines() == ["Stageline-Action: promote-to-staging",
                                     "Stageline-Agent: support-bot", "Stageline-Actor: alice"]
    changed = git(org, "diff-tree", "--no-commit-id", "-r", "--name-only", "HEAD").splitlines()
    assert all(p.startswith(STG + "/") for p in changed)
    # the work tree and index follow, with nothing left uncommitted
    assert (org / STG / "prompts/system.md").read_text() == "You answer billing questions politely.\n"
    assert git(org, "status", "--porcelain") == ""


def test_full_replacement_removes_files_deleted_in_development(staged_org: Path) -> None:
    (staged_org / DEV / "knowledge/refunds.md").unlink()
    (staged_org / DEV / "knowledge/new.md").write_text("new\n")
    commit_all(staged_org, "alice", "Rework knowledge")
    assert sl(staged_org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    files = git(staged_org, "ls-tree", "-r", "--name-only", "HEAD", STG).splitlines()
    assert f"{STG}/knowledge/refunds.md" not in files
    assert f"{STG}/knowledge/new.md" in files
    assert not (staged_org / STG / "knowledge/refunds.md").exists()
    assert (staged_org / STG / "knowledge/new.md").read_text() == "new\n"
    assert git(staged_org, "status", "--porcelain") == ""


def test_nothing_to_do_is_exit_0_without_commit(staged_org: Path) -> None:
    before = git(staged_org, "rev-parse", "HEAD")
    result = sl(staged_org, "promote", "support-bot", "--to", "staging", actor="alice")
    assert result.code == OK
    assert "nothing to do" in result.out
    assert git(staged_org, "rev-parse", "HEAD") == before
    assert sl(staged_org, "mark-ready", "support-bot", actor="quinn").code == OK
    marked = git(staged_org, "rev-parse", "HEAD")
    assert sl(staged_org, "mark-ready", "support-bot", actor="quinn").code == OK
    assert git(staged_org, "rev-parse", "HEAD") == marked
    assert sl(staged_org, "promote", "support-bot", "--to", "production", actor="olga").code == OK
    pushed = git(staged_org, "rev-parse", "HEAD")
    assert sl(staged_org, "promote", "support-bot", "--to", "production", actor="olga").code == OK
    assert git(staged_org, "rev-parse", "HEAD") == pushed


@pytest.mark.parametrize("kind", ["modified", "staged", "untracked", "deleted"])
def test_uncommitted_changes_in_the_way_are_refused_and_kept(staged_org: Path, kind: str) -> None:
    (staged_org / DEV / "prompts/system.md").write_text("v2\n")
    commit_all(staged_org, "alice", "v2")
    target = staged_org / STG / "prompts/system.md"
    if kind == "untracked":
        target = staged_org / STG / "scratch.txt"
    if kind == "deleted":
        target.unlink()
    else:
        target.write_text("my local edit\n")
    if kind == "staged":
        git(staged_org, "add", str(target))
    before = git(staged_org, "rev-parse", "HEAD")
    result = sl(staged_org, "promote", "support-bot", "--to", "staging", actor="alice")
    assert result.code == BLOCKED
    assert "uncommitted changes" in result.err
    assert git(staged_org, "rev-parse", "HEAD") == before
    if kind == "deleted":
        assert not target.exists()
    else:
        assert target.read_text() == "my local edit\n"


def test_other_uncommitted_work_is_untouched(staged_org: Path) -> None:
    (staged_org / DEV / "prompts/system.md").write_text("v2\n")
    commit_all(staged_org, "alice", "v2")
    (staged_org / "README.md").write_text("work in progress\n")
    (staged_org / "notes.txt").write_text("untracked\n")
    assert sl(staged_org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    assert (staged_org / STG / "prompts/system.md").read_text() == "v2\n"
    assert (staged_org / "README.md").read_text() == "work in progress\n"
    assert (staged_org / "notes.txt").read_text() == "untracked\n"
    status = git(staged_org, "status", "--porcelain").splitlines()
    assert sorted(status) == [" M README.md", "?? notes.txt"]


def test_reads_the_committed_state_not_the_work_tree(org: Path) -> None:
    """Uncommitted changes in the agent's development are not copied, nor left behind
    without a word: promote refuses until they are committed or put aside."""
    (org / DEV / "prompts/system.md").write_text("uncommitted\n")
    refused = sl(org, "promote", "support-bot", "--to", "staging", actor="alice")
    assert refused.code == BLOCKED and "uncommitted changes" in refused.err
    git(org, "stash", "-q")
    assert sl(org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    assert git(org, "show", f"HEAD:{STG}/prompts/system.md") == \
        "You answer billing questions politely."


def test_production_needs_the_current_approval(ready_org: Path) -> None:
    approval = git(ready_org, "show", "HEAD:approvals/support-bot.yaml")
    assert f'staging_tree: "{tree(ready_org, "HEAD", STG)}"' in approval
    assert 'marked_by: "quinn"' in approval
    assert "tests: {passed: 0, failed: 0}" in approval
    # a new promotion to staging makes the approval stale: it is deleted with it
    (ready_org / DEV / "prompts/system.md").write_text("v2\n")
    commit_all(ready_org, "alice", "v2")
    assert sl(ready_org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    assert git(ready_org, "ls-tree", "HEAD", "approvals/") == ""
    result = sl(ready_org, "promote", "support-bot", "--to", "production", actor="olga")
    assert result.code == BLOCKED
    assert "mark-ready support-bot" in result.err
    assert sl(ready_org, "mark-ready", "support-bot", actor="quinn").code == OK
    assert sl(ready_org, "promote", "support-bot", "--to", "production", actor="olga").code == OK
    assert tree(ready_org, "HEAD", PRD) == tree(ready_org, "HEAD", STG)
    assert (ready_org / PRD / "prompts/system.md").read_text() == "v2\n"


def test_stale_approval_written_by_hand_does_not_count(ready_org: Path) -> None:
    # staging changed under the approval (by hand, which the hook would refuse)
    (ready_org / STG / "prompts/system.md").write_text("tampered\n")
    commit_all(ready_org, "olga", "tamper")
    result = sl(ready_org, "promote", "support-bot", "--to", "production", actor="olga")
    assert result.code == BLOCKED
    assert "older staging tree" in result.err


def test_missing_agent_is_blocked(org: Path) -> None:
    for args, actor, says in [
        (("promote", "ghost", "--to", "staging"), "alice", "no agent ghost in any environment"),
        (("promote", "support-bot", "--to", "production"), "olga", "not in staging"),
        (("mark-ready", "support-bot"), "quinn", "not in staging"),
    ]:
        result = sl(org, *args, actor=actor)
        assert result.code == BLOCKED, args
        assert says in result.err


def test_invalid_agent_is_not_promoted(org: Path) -> None:
    (org / DEV / "agent.yaml").write_text("name: other\ndescription: x\n"
                                          "model: {provider: openai, name: m}\n"
                                          "system_prompt: ../../escape.md\n")
    commit_all(org, "alice", "broken")
    before = git(org, "rev-parse", "HEAD")
    result = sl(org, "promote", "support-bot", "--to", "staging", actor="alice")
    assert result.code == CHECK_FAILED
    assert "name is 'other'" in result.err
    assert git(org, "rev-parse", "HEAD") == before


def test_symlink_in_agent_is_refused(org: Path) -> None:
    (org / DEV / "link.md").symlink_to("/etc/passwd")
    commit_all(org, "alice", "symlink")
    result = sl(org, "promote", "support-bot", "--to", "staging", actor="alice")
    assert result.code == CHECK_FAILED
    assert "symlink" in result.err


@pytest.mark.parametrize("name", ["../x", "Agent", "", "a/b", "-rf", "a" * 64, "bot\n"])
def test_bad_agent_names_are_usage_errors(org: Path, name: str) -> None:
    for args, actor in [(("promote", name, "--to", "staging"), "alice"),
                        (("mark-ready", name), "quinn"),
                        (("agent", "new", name), "alice"),
                        (("status", name), None)]:
        result = sl(org, *args, actor=actor)
        assert result.code == USAGE, (args, result.err)
        assert "Traceback" not in result.err
        assert len(result.err.strip().splitlines()) == 1


def test_usage_errors_exit_2(org: Path) -> None:
    assert sl(org, "promote", "support-bot", "--to", "qa", actor="alice").code == USAGE
    assert sl(org, "promote", "support-bot", actor="alice").code == USAGE
    assert sl(org, "no-such-command").code == USAGE


def test_promotion_in_a_bare_repository(bare_org: Path) -> None:
    assert sl(bare_org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    assert sl(bare_org, "mark-ready", "support-bot", actor="quinn").code == OK
    assert sl(bare_org, "promote", "support-bot", "--to", "production", actor="olga").code == OK
    assert tree(bare_org, "main", PRD) == tree(bare_org, "main", DEV)
    assert git(bare_org, "rev-list", "--count", "main") == "4"
    git(bare_org, "fsck", "--strict")


def test_agent_new_scaffolds_a_valid_agent(org: Path) -> None:
    assert sl(org, "agent", "new", "sales-bot", actor="alice").code == OK
    agent = org / "environments/development/sales-bot"
    assert (agent / "agent.yaml").read_text().startswith("name: sales-bot\n")
    assert (agent / "prompts/system.md").exists()
    assert sl(org, "promote", "sales-bot", "--to", "staging", actor="alice").code == OK
    result = sl(org, "agent", "new", "sales-bot", actor="alice")
    assert result.code == BLOCKED
    assert "already exists" in result.err


def test_init_creates_an_organization(tmp_path: Path) -> None:
    target = tmp_path / "neworg"
    result = sl(None, "init", str(target), "--org", "acme", "--admin", "olga",
                "--admin-email", "olga@acme.test", "--admin-name", "Olga: Admin #1")
    assert result.code == OK, result.err
    assert sorted(p.name for p in target.iterdir()) == [".git", "README.md", "stageline.yaml"]
    assert git(target, "status", "--porcelain") == ""
    assert git(target, "log", "--format=%an <%ae>") == "Olga: Admin #1 <olga@acme.test>"
    assert sl(target, "agent", "new", "first-bot", actor="olga").code == OK
    again = sl(None, "init", str(target), "--org", "acme", "--admin", "olga",
               "--admin-email", "olga@acme.test")
    assert again.code == BLOCKED
    bad = sl(None, "init", str(tmp_path / "other"), "--org", "acme", "--admin", "olga",
             "--admin-email", "not-an-email")
    assert bad.code == USAGE
    assert not (tmp_path / "other").exists()


def test_status_json_shape(ready_org: Path) -> None:
    result = sl(ready_org, "status", "--json")
    assert result.code == OK
    data = json.loads(result.out)
    (agent,) = data["agents"]
    assert agent["name"] == "support-bot"
    envs = agent["environments"]
    assert envs["development"]["tree"] == tree(ready_org, "HEAD", DEV)
    assert envs["staging"]["tree"] == tree(ready_org, "HEAD", STG)
    assert envs["production"]["tree"] is None
    assert agent["ready_for_production"] is True
    assert agent["staging_equals_development"] is True
    assert envs["staging"]["last_action"]["actor"] == "alice"
    assert envs["staging"]["last_action"]["action"] == "promote-to-staging"


def test_status_table(ready_org: Path) -> None:
    """80 columns by default: trees, READY and the count of marks; what blocks production
    under the table."""
    result = sl(ready_org, "status")
    assert result.code == OK
    where, header, row = result.out.splitlines()
    assert where == "main, tracking no server branch (commits stay here until pushed)"
    assert header.split() == ["AGENT", "DEV", "STAGING", "PROD", "READY", "MARKS"]
    cells = row.split()
    assert cells[0] == "support-bot"
    assert cells[1] == tree(ready_org, "HEAD", DEV)[:7]
    assert cells[3] == "—"
    assert cells[4:] == ["yes", "1", "of", "1"]


def test_status_fits_80_columns_and_says_what_blocks(staged_org: Path) -> None:
    result = sl(staged_org, "status")
    assert result.code == OK
    lines = result.out.splitlines()
    assert lines[-1] == ("support-bot cannot go to production now: support-bot has not been "
                         "marked Ready for Production.")
    assert max(len(line) for line in lines[:-1]) <= 80


def test_status_wide_has_every_column(ready_org: Path) -> None:
    result = sl(ready_org, "status", "-o", "wide")
    assert result.code == OK
    header, row = result.out.splitlines()[1:]
    assert header.split()[:7] == ["AGENT", "DEVELOPMENT", "STAGING", "PRODUCTION", "STG=DEV",
                                  "PROD=STG", "READY"]
    cells = row.split()
    assert cells[0] == "support-bot"
    assert cells[1] == tree(ready_org, "HEAD", DEV)[:7]
    assert cells[3] == "—"
    assert cells[4:7] == ["yes", "no", "yes"]
    assert cells[7:11] == ["1", "of", "1", "(quinn)"]
    assert cells[11] == "none"  # marked ready without conversation tests
    assert cells[12] == "olga/alice/—"


def test_status_of_unknown_agent_is_blocked(org: Path) -> None:
    assert sl(org, "status", "ghost").code == BLOCKED


def test_detached_head_is_refused(org: Path) -> None:
    git(org, "checkout", "-q", "--detach")
    result = sl(org, "promote", "support-bot", "--to", "staging", actor="alice")
    assert result.code == BLOCKED
    assert "detached" in result.err


def _git_work(repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[list[str]]:
    """The git processes a promotion starts, as git itself records them (GIT_TRACE2_EVENT:
    each git process writes its own start event, with its argv)."""
    from stageline.actions import promote
    from stageline.workspace import open_workspace

    trace = tmp_path / f"trace-{repo.name}.json"
    ws = open_workspace(str(repo))
    monkeypatch.setenv("GIT_TRACE2_EVENT", str(trace))
    try:
        assert promote(ws, ws.policy.members["alice"], "support-bot", "staging").commit
    finally:
        monkeypatch.delenv("GIT_TRACE2_EVENT")
        ws.store.close()
    events = [json.loads(line) for line in trace.read_text().split("\n") if line]
    return [e["argv"] for e in events if e.get("event") == "start"]


def test_promotion_cost_does_not_grow_with_other_agents(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Promotion reads only the trees on its path: with 40 more agents in the organization
    git is asked the same things (the same processes, the same arguments but for tree
    ids), and no argument names another agent."""
    small = make_org(tmp_path / "small")
    large = make_org(tmp_path / "large")
    for i in range(40):
        shutil.copytree(large / DEV, large / f"environments/development/other-{i:02}")
    commit_all(large, "alice", "Forty more agents")
    seen_small = _git_work(small, monkeypatch, tmp_path)
    seen_large = _git_work(large, monkeypatch, tmp_path)

    def shape(argv: list[str]) -> list[str]:
        return [re.sub(r"[0-9a-f]{40}", "<id>", a) for a in argv]

    assert [shape(a) for a in seen_large] == [shape(a) for a in seen_small]
    assert not any("other-" in arg for argv in seen_large for arg in argv)
    assert seen_small  # git's own record was read


def test_promotion_resolves_settings_in_the_target_environment(org: Path) -> None:
    (org / "settings").mkdir()
    (org / "settings/development.yaml").write_text("CRM_URL: https://crm.dev.test\n")
    commit_all(org, "olga", "Development settings")
    agent = org / DEV / "agent.yaml"
    agent.write_text(agent.read_text() + "integrations:\n  - {name: crm, type: http, "
                     "url: '${settings.CRM_URL}/leads'}\n")
    commit_all(org, "alice", "Use the CRM")
    assert sl(org, "validate", "support-bot").code == OK
    result = sl(org, "promote", "support-bot", "--to", "staging", actor="alice")
    assert result.code == CHECK_FAILED
    assert "support-bot/agent.yaml:6: error: ${settings.CRM_URL} is not defined in " \
           "settings/staging.yaml" in result.err
    (org / "settings/staging.yaml").write_text("CRM_URL: https://crm.staging.test\n")
    commit_all(org, "olga", "Staging settings")
    assert sl(org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK


def _conversation_test(repo: Path, expected_node: str) -> None:
    flow = repo / DEV / "flows/main.yaml"
    flow.parent.mkdir(exist_ok=True)
    flow.write_text("start: ask\nnodes:\n  ask:\n    type: collect\n    variable: topic\n"
                    "    prompt: What is it about?\n    transitions:\n"
                    "      - {keyword: refund, to: handoff}\n      - {default: true, to: bye}\n"
                    "  handoff: {type: transfer, target: billing, text: Connecting you.}\n"
                    "  bye: {type: end, text: Bye.}\n")
    agent = repo / DEV / "agent.yaml"
    agent.write_text(agent.read_text() + "variables: {topic: {type: string}}\n"
                     "flows: [flows/main.yaml]\n")
    (repo / DEV / "tests").mkdir(exist_ok=True)
    (repo / DEV / "tests/refund.yaml").write_text(
        "name: Refunds go to billing\nturns:\n  - user: I want a refund\n"
        f"    expect: {{node: {expected_node}, transfer: billing}}\n")
    commit_all(repo, "alice", "Flow and test")


def test_test_command_and_junit(org: Path, tmp_path: Path) -> None:
    _conversation_test(org, "handoff")
    report = tmp_path / "junit.xml"
    result = sl(org, "test", "support-bot", "--junit", str(report))
    assert result.code == OK, result.out
    assert "PASS  tests/refund.yaml  Refunds go to billing" in result.out
    import xml.etree.ElementTree as ET

    suite = ET.parse(report).getroot()
    assert suite.get("tests") == "1" and suite.get("failures") == "0"
    data = json.loads(sl(org, "test", "support-bot", "--json").out)
    assert data["passed"] == 1 and data["failed"] == 0


def test_mark_ready_is_gated_by_the_conversation_tests(org: Path) -> None:
    _conversation_test(org, "bye")  # wrong: a refund is transferred
    assert sl(org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    before = git(org, "rev-parse", "HEAD")
    result = sl(org, "mark-ready", "support-bot", actor="quinn")
    assert result.code == CHECK_FAILED
    assert "1 of 1 conversation tests of support-bot fail" in result.err
    assert git(org, "rev-parse", "HEAD") == before
    failing = sl(org, "test", "support-bot", "--env", "staging")
    assert failing.code == CHECK_FAILED
    assert "user: I want a refund" in failing.out
    assert "bye" in failing.out
    (org / DEV / "tests/refund.yaml").write_text(
        (org / DEV / "tests/refund.yaml").read_text().replace("node: bye", "node: handoff"))
    commit_all(org, "alice", "Fix the test")
    assert sl(org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    assert sl(org, "mark-ready", "support-bot", actor="quinn").code == OK
    assert "tests: {passed: 1, failed: 0}" in git(org, "show", "HEAD:approvals/support-bot.yaml")
    status = json.loads(sl(org, "status", "--json").out)["agents"][0]
    assert status["tests"] == {"passed": 1, "failed": 0}
