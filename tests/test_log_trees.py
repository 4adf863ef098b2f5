"""The audit log's trees: read from the diff, carried along the chain, or looked up, they
are always what the agent's directory held at the event's commit."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import commit_all, git, sl

from stageline import rules
from stageline.errors import OK
from stageline.history import AUDITED, _events
from stageline.layout import AGENT_DEPTH
from stageline.workspace import open_workspace

DEV = "environments/development/support-bot"
WHERE = {"promote-to-staging": "staging", "mark-ready": "staging",
         "promote-to-production": "production", "rollback": "production",
         "create-agent": "development"}


def release(repo: Path, text: str) -> None:
    (repo / DEV / "prompts/system.md").write_text(text)
    commit_all(repo, "alice", f"Prompt {text.strip()}")
    assert sl(repo, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    assert sl(repo, "mark-ready", "support-bot", actor="quinn").code == OK
    assert sl(repo, "promote", "support-bot", "--to", "production", actor="olga").code == OK


def tree_at(repo: Path, commit: str, path: str) -> str | None:
    kind = git(repo, "cat-file", "-t", f"{commit}:{path}", check=False)
    return git(repo, "rev-parse", f"{commit}:{path}") if kind == "tree" else None


def check_trees(repo: Path, *args: str) -> list[dict[str, str]]:
    result = sl(repo, "log", "--json", *args)
    assert result.code == OK, result.err
    events = json.loads(result.out)["events"]
    for e in events:
        if e["action"] in WHERE:
            path = f"environments/{WHERE[e['action']]}/{e['agent']}"
            assert e["tree"] == tree_at(repo, e["commit"], path), e
        else:
            assert e["tree"] is None
    return events  # type: ignore[no-any-return]


def test_event_trees_on_first_and_later_runs(org: Path) -> None:
    release(org, "v1\n")
    assert sl(org, "agent", "new", "helper-bot", actor="alice").code == OK
    assert sl(org, "promote", "helper-bot", "--to", "staging", actor="alice").code == OK
    (org / "README.md").write_text("unrelated\n")
    commit_all(org, "dan", "Docs between promotion and approval")
    assert sl(org, "mark-ready", "helper-bot", actor="quinn").code == OK
    release(org, "v2\n")
    assert sl(org, "rollback", "support-bot", actor="olga").code == OK
    first = check_trees(org)
    assert [e["action"] for e in first].count("mark-ready") == 3
    assert "create-agent" in {e["action"] for e in first}

    # A cache with holes (lines lost): the commits to diff are no run of the chain.
    cache = org / ".git/stageline-audit-cache.jsonl"
    lines = cache.read_text().splitlines(keepends=True)
    cache.write_text("".join(lines[::2]))
    # A helper-bot approval whose staging tree was last set before the cached part.
    (org / "README.md").write_text("more\n")
    commit_all(org, "dan", "Docs")
    policy = org / "stageline.yaml"
    policy.write_text(policy.read_text() + "# reviewed\n")
    commit_all(org, "olga", "Review policy")
    release(org, "v3\n")
    second = check_trees(org)
    assert second[-len(first):] == first
    assert second[0]["action"] == "promote-to-production"
    assert "policy-change" in {e["action"] for e in second}
    assert check_trees(org) == second  # cached in full now

    # The log of one agent goes its own way (a path-limited walk): the same events.
    helper = check_trees(org, "--agent", "helper-bot")
    assert helper == [e for e in second if e["agent"] == "helper-bot"]
    assert [e["action"] for e in helper] == ["mark-ready", "promote-to-staging",
                                             "create-agent"]


def test_an_agent_directory_replaced_by_a_file_has_no_tree(org: Path) -> None:
    assert sl(org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    staging = org / "environments/staging/support-bot"
    for path in sorted(staging.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    staging.rmdir()
    staging.write_text("not a directory\n")
    commit_all(org, "dan", "A file where the agent was")
    events = check_trees(org)
    assert events[0]["action"] == "promote-to-staging" and events[0]["tree"] is None
    assert events[1]["action"] == "promote-to-staging" and events[1]["tree"] is not None


def test_events_from_agent_directories_match_events_from_every_file(org: Path) -> None:
    """The log walks only as deep as the agent directories; every file would give the
    same events, odd trees included (a directory where an approval file belongs, a file
    where an environment's agent directory belongs)."""
    release(org, "v1\n")
    assert sl(org, "agent", "new", "helper-bot", actor="alice").code == OK
    (org / "approvals/helper-bot.yaml").mkdir(parents=True)
    (org / "approvals/helper-bot.yaml/note.txt").write_text("not an approval\n")
    (org / "environments/staging/stray").write_text("a file, not an agent\n")
    (org / "environments/staging/support-bot/prompts/deeper").mkdir()
    (org / "environments/staging/support-bot/prompts/deeper/x.md").write_text("x\n")
    odd = commit_all(org, "dan", "Odd trees")
    release(org, "v2\n")
    ws = open_workspace(str(org))
    chain = ws.store.rev_list(["--first-parent", ws.head])
    paths = [*AUDITED, "environments/development"]
    every_file = ws.store.walk_listed(chain, paths, prune=True, trees=True)
    cut = ws.store.walk_listed(chain, paths, prune=True, trees=True, depth=AGENT_DEPTH)
    assert sum(map(len, (c.changes for c in cut))) < sum(map(len, (c.changes for c in
                                                                    every_file)))
    events = _events(ws, cut, every_change=True)
    assert events == _events(ws, every_file, every_change=True)
    assert [(e.action, e.agent) for e in events if e.commit == odd] == [
        ("promote-to-staging", "support-bot")]
    assert len(events) == 9  # init, two releases of three, create-agent, the odd trees


def test_a_directory_entry_names_only_an_agent_directory() -> None:
    def change(path: str, old: str = "040000", new: str = "040000") -> rules.PathChange:
        return rules.PathChange(path, old, new)

    assert rules.touched([change("environments"), change("environments/staging"),
                          change("environments/staging/bot/prompts"),
                          change("approvals"), change("approvals/bot.yaml"),
                          change("environments/Staging/bot"),
                          change("environments/staging/Bad_Name"),
                          change("environments/staging/stray", "000000", "100644")]) == {}
    assert rules.touched([change("environments/staging/bot", new="000000"),
                          change("environments/production/bot", old="000000"),
                          change("approvals/bot.yaml", "000000", "100644")]) == {
        "staging": {"bot"}, "production": {"bot"}, "approval": {"bot"}}
    # Status names any changed environment directory, checked or not.
    assert rules.agent_directory(change("environments/staging/Bad_Name")) == (
        "staging", "Bad_Name")
    assert rules.agent_directory(change("environments/staging/bot/prompts")) is None
    assert rules.agent_directory(change("environments/staging/bot", "100644", "100644")) is None
