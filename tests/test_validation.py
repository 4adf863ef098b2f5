"""``stageline validate``: a corpus of broken agents, each with the findings it must give.

Every directory of ``tests/resources/bad-agents/`` is a complete agent directory plus an
``expect.yaml``::

    exit: 1                       # the exit code of `stageline validate <dir>`
    findings:                     # each must be reported (file, line, severity, message part)
      - {file: agent.yaml, line: 6, severity: error, contains: "greater than the maximum of 2"}
    dir: NAME                     # optional: the agent's directory (default: case-agent)
    settings: {NAME: value}       # optional: settings/development.yaml of the repository
    generate: {path: P, bytes: N} # optional: pad file P to N bytes before committing
    xfail: "reason"               # optional: a known validator bug (strict xfail)

A finding without a line is expected as ``<dir>/<file>: <severity>: ...``, one without
a file as ``<dir>: <severity>: ...``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import RESOURCES, Result, commit_all, git, sl

CASES = RESOURCES / "bad-agents"
SAMPLE = Path(__file__).parent.parent / "sample-repo"
DEFAULT_DIR = "case-agent"


def _load_expect(case: Path) -> dict[str, Any]:
    expect = yaml.safe_load((case / "expect.yaml").read_text("utf-8"))
    assert isinstance(expect, dict), case
    return expect


def _params() -> list[Any]:
    params = []
    for case in sorted(p for p in CASES.iterdir() if p.is_dir()):
        reason = _load_expect(case).get("xfail")
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


def _install(repo: Path, case: Path, expect: dict[str, Any], env: str = "development") -> str:
    """Copy a case into ``environments/<env>/<dir>/`` of ``repo``; return the directory name."""
    name = expect.get("dir", DEFAULT_DIR)
    dest = repo / "environments" / env / name
    shutil.copytree(case, dest, ignore=shutil.ignore_patterns("expect.yaml"))
    generate = expect.get("generate")
    if generate:
        target = dest / generate["path"]
        head = target.read_bytes() if target.exists() else b""
        pad = generate["bytes"] - len(head)
        assert pad > 0, "generate: the file is already larger"
        line = b"# padding" + b"." * 70 + b"\n"
        body = line * (pad // len(line))
        rest = pad - len(body)
        if rest:
            body += b"#" * (rest - 1) + b"\n"
        target.write_bytes(head + body)
        assert target.stat().st_size == generate["bytes"]
    if expect.get("settings"):
        settings = repo / "settings" / f"{env}.yaml"
        settings.parent.mkdir(exist_ok=True)
        settings.write_text(yaml.safe_dump(expect["settings"], sort_keys=False), "utf-8")
    return name


def _prefix(name: str, finding: dict[str, Any]) -> str:
    where = name if finding.get("file") is None else f"{name}/{finding['file']}"
    if finding.get("line") is not None:
        where += f":{finding['line']}"
    return f"{where}: {finding['severity']}: "


def _assert_clean_stderr(result: Result) -> None:
    assert "Traceback" not in result.err, result.err
    assert "unexpected error" not in result.err, result.err
    if result.code != 0:
        assert len(result.err.splitlines()) == 1, result.err
    else:
        assert result.err == "", result.err


@pytest.mark.parametrize("case", _params())
def test_bad_agent(org: Path, case: Path) -> None:
    expect = _load_expect(case)
    assert expect["exit"] in (0, 1)
    name = _install(org, case, expect)
    commit_all(org, "alice", f"Add {case.name}")

    result = sl(org, "validate", name)
    report = f"stdout:\n{result.out}\nstderr:\n{result.err}"
    assert result.code == expect["exit"], report
    _assert_clean_stderr(result)
    lines = result.out.splitlines()
    for finding in expect["findings"]:
        prefix = _prefix(name, finding)
        assert any(line.startswith(prefix) and finding["contains"] in line[len(prefix):]
                   for line in lines), f"expected {prefix}...{finding['contains']}...\n{report}"
    errors = sum(1 for line in lines if ": error: " in line)
    assert lines[-1] == (f"1 agent(s) in development: {errors} error(s), "
                         f"{sum(1 for line in lines if ': warning: ' in line)} warning(s).")
    assert (errors == 0) == (expect["exit"] == 0), report

    as_json = sl(org, "validate", name, "--json")
    assert as_json.code == expect["exit"], as_json.err
    _assert_clean_stderr(as_json)
    doc = json.loads(as_json.out)
    assert doc["environment"] == "development"
    [agent] = doc["agents"]
    assert agent["name"] == name
    assert agent["valid"] is (expect["exit"] == 0)
    got = agent["findings"]
    assert len(got) == len(lines) - 1  # the same findings as the text, without the summary
    for finding in expect["findings"]:
        assert any((f["file"], f["line"], f["severity"]) ==
                   (finding.get("file"), finding.get("line"), finding["severity"])
                   and finding["contains"] in f["message"] for f in got), (finding, got)


def test_corpus_covers_enough_cases() -> None:
    cases = [p for p in CASES.iterdir() if p.is_dir()]
    assert len(cases) >= 32
    for case in cases:
        expect = _load_expect(case)
        assert set(expect) <= {"exit", "findings", "dir", "settings", "generate", "xfail"}, case
        assert (case / "agent.yaml").is_file() or any(
            f.get("file") is None for f in expect["findings"]), case
        if expect["exit"] == 0:
            assert all(f["severity"] == "warning" for f in expect["findings"]), case
        else:
            assert any(f["severity"] == "error" for f in expect["findings"]), case


# ---- direct tests ----------------------------------------------------------------------------


def _copy_sample(repo: Path) -> list[tuple[str, str]]:
    """The sample organization's agents and settings, committed into ``repo``."""
    agents = []
    for env_dir in sorted((SAMPLE / "environments").iterdir()):
        for agent in sorted(p for p in env_dir.iterdir() if p.is_dir()):
            shutil.copytree(agent, repo / "environments" / env_dir.name / agent.name,
                            dirs_exist_ok=False)
            agents.append((env_dir.name, agent.name))
    shutil.copytree(SAMPLE / "settings", repo / "settings")
    commit_all(repo, "alice", "Add the sample agents")
    return agents


@pytest.mark.parametrize("env", ["development", "staging", "production"])
def test_sample_agents_are_valid(org: Path, env: str) -> None:
    agents = _copy_sample(org)
    names = [a for e, a in agents if e == env]
    assert names
    for name in names:
        result = sl(org, "validate", name, "--env", env)
        assert result.code == 0, result.out + result.err
        assert ": error: " not in result.out
        assert result.out.splitlines()[-1].startswith(f"1 agent(s) in {env}: 0 error(s)")
    every = sl(org, "validate", "--env", env)
    assert every.code == 0, every.out + every.err
    count = len(names) + (env == "development")  # support-bot of the test organization
    assert every.out.splitlines()[-1].startswith(f"{count} agent(s) in {env}: 0 error(s)")


def test_worktree_sees_an_uncommitted_edit(org: Path) -> None:
    case = CASES / "warning-unreachable-node"
    _install(org, case, _load_expect(case))
    commit_all(org, "alice", "Add case-agent")
    agent_yaml = org / "environments/development/case-agent/agent.yaml"
    text = agent_yaml.read_text("utf-8")
    assert "  temperature: 0.3\n" in text
    agent_yaml.write_text(text.replace("  temperature: 0.3\n", "  temperature: 7\n"), "utf-8")
    line = text.splitlines().index("  temperature: 0.3") + 1

    committed = sl(org, "validate", "case-agent")
    assert committed.code == 0, committed.out + committed.err
    assert "temperature" not in committed.out

    on_disk = sl(org, "validate", "case-agent", "--worktree")
    assert on_disk.code == 1, on_disk.out + on_disk.err
    assert (f"case-agent/agent.yaml:{line}: error: model.temperature: 7 is greater than the "
            "maximum of 2") in on_disk.out.splitlines()
    assert len(on_disk.err.splitlines()) == 1
    assert git(org, "status", "--porcelain")  # nothing was committed or reset


def test_missing_agent_exits_4(org: Path) -> None:
    result = sl(org, "validate", "no-such-agent")
    assert result.code == 4
    assert result.out == ""
    assert "there is no agent no-such-agent in any environment" in result.err
    assert len(result.err.splitlines()) == 1


def test_env_staging_reads_staging(org: Path) -> None:
    good, bad = CASES / "warning-unreachable-node", CASES / "temperature-out-of-range"
    _install(org, good, _load_expect(good), env="development")
    _install(org, bad, _load_expect(bad), env="staging")
    commit_all(org, "alice", "case-agent in development and staging")
    [finding] = _load_expect(bad)["findings"]

    development = sl(org, "validate", "case-agent")
    assert development.code == 0, development.out + development.err
    assert "temperature" not in development.out

    staging = sl(org, "validate", "case-agent", "--env", "staging")
    assert staging.code == 1, staging.out + staging.err
    assert any(line.startswith(_prefix("case-agent", finding)) for line in staging.out.splitlines())
    assert staging.out.splitlines()[-1].startswith("1 agent(s) in staging: 1 error(s)")
    assert "staging" in staging.err

    support = sl(org, "validate", "support-bot", "--env", "staging")
    assert support.code == 4  # support-bot is only in development


def test_promote_of_a_broken_agent_is_refused(org: Path) -> None:
    case = CASES / "temperature-out-of-range"
    expect = _load_expect(case)
    _install(org, case, expect)
    head = commit_all(org, "alice", "Add a broken case-agent")
    [finding] = expect["findings"]

    result = sl(org, "promote", "case-agent", "--to", "staging", actor="alice")
    assert result.code == 1, result.out + result.err
    assert len(result.err.splitlines()) == 1
    assert f"case-agent/agent.yaml:{finding['line']}: error: " in result.err
    assert git(org, "rev-parse", "HEAD") == head
    assert git(org, "ls-tree", "-r", "--name-only", "HEAD", "environments/staging") == ""
    assert not (org / "environments/staging/case-agent").exists()
