"""Versions, diff, rollback and the audit log, on real repositories with branchy histories."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from conftest import author_env, commit_all, git, sl
from servers import Released

from stageline.errors import BLOCKED, CHECK_FAILED, OK, PERMISSION_DENIED, USAGE

DEV = "environments/development/support-bot"
STG = "environments/staging/support-bot"
PRD = "environments/production/support-bot"


def release(repo: Path, text: str) -> str:
    """Edit the prompt in development and take it all the way to production."""
    (repo / DEV / "prompts/system.md").write_text(text)
    commit_all(repo, "alice", f"Prompt {text.strip()}")
    assert sl(repo, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    assert sl(repo, "mark-ready", "support-bot", actor="quinn").code == OK
    assert sl(repo, "promote", "support-bot", "--to", "production", actor="olga").code == OK
    return git(repo, "rev-parse", "HEAD")


def versions(repo: Path, *args: str) -> list[dict[str, str]]:
    result = sl(repo, "history", "support-bot", *args, "--json")
    assert result.code == OK, result.err
    return json.loads(result.out)["versions"]  # type: ignore[no-any-return]


def test_history_of_production(org: Path) -> None:
    v1 = release(org, "v1\n")
    v2 = release(org, "v2\n")
    found = versions(org)
    assert [v["commit"] for v in found] == [v2, v1]
    assert [v["action"] for v in found] == ["promote", "promote"]
    assert [v["actor"] for v in found] == ["olga", "olga"]
    assert found[0]["tree"] == git(org, "rev-parse", f"{v2}:{PRD}")
    assert found[0]["time"].endswith("Z") or "+" in found[0]["time"]
    assert [v["commit"] for v in versions(org, "--limit", "1")] == [v2]
    staging = versions(org, "--env", "staging")
    assert len(staging) == 2 and staging[0]["actor"] == "alice"
    human = sl(org, "history", "support-bot")
    assert human.out.splitlines()[1].startswith(v2[:12])
    assert sl(org, "history", "support-bot", "--limit", "0").code == USAGE
    assert sl(org, "history", "Bad/Name").code == USAGE


def _branchy_history(repo: Path, rounds: int) -> None:
    """Feature branches with development edits merged into main, releases in between."""
    for i in range(rounds):
        git(repo, "checkout", "-q", "-b", f"feature-{i}")
        (repo / DEV / f"knowledge/note-{i}.md").write_text(f"note {i}\n")
        commit_all(repo, "dan", f"Note {i}")
        git(repo, "checkout", "-q", "main")
        (repo / "README.md").write_text(f"round {i}\n")
        commit_all(repo, "alice", f"Docs {i}")
        git(repo, "merge", "-q", "--no-ff", f"feature-{i}", "-m", f"Merge feature {i}",
            env=author_env("alice"))
        if i % 3 == 0:
            release(repo, f"release {i}\n")


def test_history_matches_the_branch_in_a_branchy_history(org: Path) -> None:
    _branchy_history(org, 9)
    for env, path in (("development", DEV), ("staging", STG), ("production", PRD)):
        expected = []
        for line in git(org, "rev-list", "--first-parent", "--parents", "HEAD").splitlines():
            oid, *parents = line.split()
            mine = git(org, "rev-parse", "-q", "--verify", f"{oid}:{path}", check=False)
            theirs = git(org, "rev-parse", "-q", "--verify", f"{parents[0]}:{path}",
                         check=False) if parents else ""
            if mine != theirs:
                expected.append(oid)
        assert [v["commit"] for v in versions(org, "--env", env)] == expected, env
    dev = versions(org, "--env", "development")
    assert {"merge", "edit"} <= {v["action"] for v in dev}


def test_all_histories_at_once_are_each_agents_history(org: Path) -> None:
    """``histories`` (one walk, for the site) against ``history`` (a walk per agent and
    environment), on a branchy history with a second agent and one taken out of
    production, with and without a limit."""
    from stageline.history import Version, histories, history
    from stageline.workspace import open_workspace

    def git_dir(repo: Path) -> Path:
        return repo / git(repo, "rev-parse", "--git-dir").strip()

    _branchy_history(org, 7)
    assert sl(org, "agent", "new", "other-bot", actor="alice").code == OK
    git(org, "rm", "-r", "-q", PRD)
    commit_all(org, "olga", "Take support-bot out of production")
    cache = git_dir(org) / "stageline-history-cache.jsonl"

    def check() -> dict[tuple[str, str], list[Version]]:
        ws = open_workspace(str(org))
        for limit in (None, 2):
            every = histories(ws, limit)
            for agent in ("support-bot", "other-bot"):
                for env in ("development", "staging", "production"):
                    assert every.get((env, agent), []) == history(ws, agent, env, limit), \
                        (agent, env, limit)
        return every

    first = check()  # the cache written
    assert first[("production", "support-bot")][0].tree is None  # taken out: a version
    assert cache.exists() and check() == first  # from the cache alone
    release(org, "v8\n")  # the cache lacks the commits since
    check()
    with cache.open("a") as fh:  # a line cut short by a crash is diffed again
        fh.write('{"c": "0123')
    check()


def test_diff_between_environments(staged_org: Path) -> None:
    agent = staged_org / DEV / "agent.yaml"
    agent.write_text(agent.read_text().replace("model: {provider: openai, name: gpt-4o-mini}",
                                               "model: {provider: openai, name: gpt-4o}")
                     + "greeting: Hello\n")
    (staged_org / DEV / "prompts/system.md").write_text("You answer billing questions.\n")
    (staged_org / DEV / "knowledge/refunds.md").unlink()
    (staged_org / DEV / "knowledge/pricing.md").write_text("Pro costs 20.\n")
    commit_all(staged_org, "alice", "Rework")
    result = sl(staged_org, "diff", "support-bot")
    assert result.code == OK
    out = result.out
    assert out.startswith("support-bot: staging (")
    assert '~ model.name: "gpt-4o-mini" → "gpt-4o"' in out
    assert '+ greeting: "Hello"' in out
    assert "added     knowledge/pricing.md" in out
    assert "removed   knowledge/refunds.md" in out
    assert "-You answer billing questions politely." in out
    assert "+You answer billing questions." in out
    stat = sl(staged_org, "diff", "support-bot", "--stat").out
    assert "prompts/system.md" in stat and "+1 -1" in stat
    data = json.loads(sl(staged_org, "diff", "support-bot", "--json").out)
    assert data["identical"] is False
    assert {f["path"]: f["status"] for f in data["files"]} == {
        "agent.yaml": "modified", "knowledge/pricing.md": "added",
        "knowledge/refunds.md": "removed", "prompts/system.md": "modified"}
    assert sl(staged_org, "diff", "support-bot", "--exit-code").code == 1
    assert sl(staged_org, "diff", "support-bot", "staging", "staging", "--exit-code").code == OK
    assert "identical" in sl(staged_org, "diff", "support-bot", "staging", "staging").out


def test_diff_against_an_earlier_revision(org: Path) -> None:
    v1 = release(org, "v1\n")
    release(org, "v2\n")
    result = sl(org, "diff", "support-bot", f"production@{v1}", "production")
    assert result.code == OK
    assert "-v1" in result.out and "+v2" in result.out
    assert sl(org, "diff", "support-bot", "production@nope").code == USAGE
    assert sl(org, "diff", "support-bot", "qa").code == USAGE
    assert sl(org, "diff", "ghost-bot").code == BLOCKED  # in no environment: one sentence


def test_rollback_to_the_previous_version(org: Path) -> None:
    v1 = release(org, "v1\n")
    release(org, "v2\n")
    result = sl(org, "rollback", "support-bot", actor="olga")
    assert result.code == OK, result.err
    assert git(org, "rev-parse", f"HEAD:{PRD}") == git(org, "rev-parse", f"{v1}:{PRD}")
    assert (org / PRD / "prompts/system.md").read_text() == "v1\n"
    trailers = git(org, "log", "-1", "--format=%(trailers:only,unfold)").splitlines()
    assert trailers == ["Stageline-Action: rollback", "Stageline-Agent: support-bot",
                        "Stageline-Actor: olga", f"Stageline-Restores: {v1}"]
    assert versions(org)[0]["action"] == "rollback"
    changed = git(org, "diff-tree", "--no-commit-id", "-r", "--name-only", "HEAD").splitlines()
    assert all(p.startswith(PRD + "/") for p in changed)
    # nothing to do the second time at the same target
    head = git(org, "rev-parse", "HEAD")
    assert sl(org, "rollback", "support-bot", "--to", v1, actor="olga").code == OK
    assert git(org, "rev-parse", "HEAD") == head


def test_rollback_refusals(org: Path) -> None:
    first = release(org, "v1\n")
    assert sl(org, "rollback", "support-bot", actor="olga").code == BLOCKED  # no earlier one
    v2 = release(org, "v2\n")
    assert sl(org, "rollback", "support-bot", actor="alice").code == PERMISSION_DENIED
    assert sl(org, "rollback", "support-bot", "--to", "HEAD~20", actor="olga").code == USAGE
    before = git(org, "rev-parse", f"{first}~4")  # before the first release
    result = sl(org, "rollback", "support-bot", "--to", before, actor="olga")
    assert result.code == BLOCKED
    assert "was not in production" in result.err
    git(org, "checkout", "-q", "-b", "side")
    (org / "x.md").write_text("x\n")
    commit_all(org, "olga", "side")
    side = git(org, "rev-parse", "HEAD")
    git(org, "checkout", "-q", "main")
    assert sl(org, "rollback", "support-bot", "--to", side, actor="olga").code == USAGE
    assert git(org, "rev-parse", "HEAD") == v2


def test_audit_log(org: Path) -> None:
    v1 = release(org, "v1\n")
    release(org, "v2\n")
    assert sl(org, "rollback", "support-bot", actor="olga").code == OK
    policy = org / "stageline.yaml"
    policy.write_text(policy.read_text() + "# reviewed\n")
    commit_all(org, "olga", "Review policy")
    (org / "README.md").write_text("not audited\n")
    commit_all(org, "dan", "Docs")
    data = json.loads(sl(org, "log", "--json").out)["events"]
    assert [e["action"] for e in data] == [
        "policy-change", "rollback",
        "promote-to-production", "mark-ready", "promote-to-staging",
        "promote-to-production", "mark-ready", "promote-to-staging", "init"]
    assert data[1]["restores"] == v1
    assert {e["actor"] for e in data} == {"olga", "quinn", "alice"}
    only = json.loads(sl(org, "log", "--json", "--actor", "quinn").out)["events"]
    assert [e["action"] for e in only] == ["mark-ready", "mark-ready"]
    assert all(e["agent"] == "support-bot" for e in only)
    ready = json.loads(sl(org, "log", "--json", "--agent", "support-bot", "--action",
                          "mark-ready").out)["events"]
    assert len(ready) == 2 and ready[0]["tree"] == git(org, "rev-parse", f"{ready[0]['commit']}:{STG}")
    lines = sl(org, "log", "--format", "jsonl").out.splitlines()
    assert len(lines) == len(data) and json.loads(lines[0])["action"] == "policy-change"
    assert json.loads(sl(org, "log", "--json", "--since", "2999-01-01").out)["events"] == []
    assert sl(org, "log", "--since", "yesterday-ish").code == USAGE
    assert sl(org, "log", "--action", "deploy").code == USAGE


def test_a_time_zone_git_cannot_mean_reads_as_utc(org: Path) -> None:
    """git records whatever ``+hhmm`` a commit was made with; a day or more is no zone."""
    policy = org / "stageline.yaml"
    policy.write_text(policy.read_text() + "# reviewed\n")
    git(org, "add", "-A")
    tree = git(org, "write-tree")
    head = git(org, "rev-parse", "HEAD")
    body = (f"tree {tree}\nparent {head}\nauthor Olga <olga@example.com> 1760600060 +9999\n"
            f"committer Olga <olga@example.com> 1760600060 -0730\n\nReview policy\n")
    odd = subprocess.run(["git", "hash-object", "-t", "commit", "-w", "--literally", "--stdin"],
                         cwd=org, input=body, capture_output=True, text=True,
                         check=True).stdout.strip()
    git(org, "reset", "-q", "--hard", odd)
    result = sl(org, "log", "--json")
    assert result.code == OK, result.err
    latest = json.loads(result.out)["events"][0]
    assert latest["commit"] == odd and latest["action"] == "policy-change"
    assert latest["time"] == "2025-10-16T07:34:20Z"


def test_audit_log_names_the_pusher_from_the_server(tmp_path: Path) -> None:
    from conftest import make_org

    server = make_org(tmp_path / "server.git", bare=True)
    assert sl(None, "hook", "install", str(server)).code == OK
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(server), str(work))
    for member, args in [("alice", ("promote", "support-bot", "--to", "staging")),
                         ("quinn", ("mark-ready", "support-bot")),
                         ("olga", ("promote", "support-bot", "--to", "production"))]:
        assert sl(work, *args, actor=member).code == OK
        git(work, "push", "-q", "origin", "main", env={"REMOTE_USER": member})
    events = json.loads(sl(server, "log", "--json").out)["events"]
    assert [(e["action"], e["pusher"]) for e in events] == [
        ("promote-to-production", "olga"), ("mark-ready", "quinn"),
        ("promote-to-staging", "alice"), ("init", None)]
    copy = tmp_path / "pushes.jsonl"
    shutil.copy(server / "stageline-pushes.jsonl", copy)
    events = json.loads(sl(work, "log", "--json", "--push-log", str(copy)).out)["events"]
    assert events[0]["pusher"] == "olga"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert sl(work, "log", "--push-log", str(bad)).code == USAGE


def test_rollback_is_accepted_by_the_hook_and_verify(released: Released) -> None:
    work, server, (_v1, v2, _v3) = released.clone, released.server, released.versions
    before = git(work, "rev-parse", "HEAD")
    assert sl(work, "rollback", "support-bot", actor="olga").code == OK
    assert sl(work, "verify", "--range", f"{before}..HEAD", "--pusher", "omar").code == OK
    result = sl(work, "verify", "--range", f"{before}..HEAD", "--pusher", "alice")
    assert result.code == CHECK_FAILED
    assert "may not roll production back" in result.out
    git(work, "push", "-q", "origin", "HEAD:refs/heads/main", env={"REMOTE_USER": "omar"})
    assert git(server, "rev-parse", "main") == git(work, "rev-parse", "HEAD")
    assert git(server, "rev-parse", f"main:{PRD}/prompts/system.md") == \
        git(server, "rev-parse", f"{v2}:{PRD}/prompts/system.md")


def test_audit_log_cache_gives_the_same_log(org: Path) -> None:
    release(org, "v1\n")
    first = sl(org, "log", "--format", "jsonl").out
    cache = org / ".git/stageline-audit-cache.jsonl"
    assert cache.exists()
    assert sl(org, "log", "--format", "jsonl").out == first
    release(org, "v2\n")  # only the new commits are diffed; the log is still complete
    second = sl(org, "log", "--format", "jsonl").out.splitlines()
    assert second[3:] == first.splitlines()
    cache.write_text(cache.read_text() + '{"c": "cut short by a cra')
    assert sl(org, "log", "--format", "jsonl").out.splitlines() == second
    # the actor follows the current policy, not the cached one
    policy = org / "stageline.yaml"
    policy.write_text(policy.read_text().replace("quinn:", "quinn-renamed:"))
    commit_all(org, "olga", "Rename quinn")
    actors = {json.loads(line)["actor"] for line in sl(org, "log", "--format", "jsonl")
              .out.splitlines() if json.loads(line)["action"] == "mark-ready"}
    assert actors == {"quinn-renamed"}


def test_diff_shows_a_mode_change_and_the_lines_of_yaml(staged_org: Path) -> None:
    """A file made executable, and a YAML key whose dotted spelling hides a nested one,
    are changes diff shows (an attack pass: "identical", and a raise from 100 to 100000
    hidden behind a literal key "refund.max")."""
    (staged_org / DEV / "prompts/system.md").chmod(0o755)
    agent = staged_org / DEV / "agent.yaml"
    agent.write_text(agent.read_text() + "x-limits:\n  refund: {max: 100000}\n"
                                         "  \"refund.max\": 100\n")
    commit_all(staged_org, "alice", "Executable prompt, new limits")
    shown = sl(staged_org, "diff", "support-bot")
    assert "modified  prompts/system.md (mode 100644 → 100755)" in shown.out
    assert "+  refund: {max: 100000}" in shown.out
    data = json.loads(sl(staged_org, "diff", "support-bot", "--json").out)
    assert {f["path"]: f["mode"] for f in data["files"]}["prompts/system.md"] == \
        "100644 → 100755"


def test_a_diff_difflib_would_take_minutes_over_is_gits(staged_org: Path) -> None:
    """Two cycles of short lines (101 and 102 values) made difflib's matcher quadratic
    and worse (an attack pass hung `site` with 140 KB); beyond a size git diffs."""
    big = staged_org / STG / "knowledge/big.md"
    big.parent.mkdir(exist_ok=True)
    big.write_text("".join(f"{i % 101}\n" for i in range(48000)))
    commit_all(staged_org, "olga", "A large file in staging (by hand, no hook here)")
    (staged_org / DEV / "knowledge").mkdir(exist_ok=True)
    (staged_org / DEV / "knowledge/big.md").write_text(
        "".join(f"{(i * 7) % 102}\n" for i in range(48000)))
    commit_all(staged_org, "alice", "Another large file")
    shown = sl(staged_org, "diff", "support-bot")
    assert shown.code == OK
    assert "--- a/knowledge/big.md (staging)" in shown.out and "\n@@ -" in shown.out
    stat = json.loads(sl(staged_org, "diff", "support-bot", "--json").out)
    big_change = next(f for f in stat["files"] if f["path"] == "knowledge/big.md")
    assert big_change["added"] > 0 and big_change["removed"] > 0
