"""The pre-commit framework: this project's ``.pre-commit-hooks.yaml`` used as a real
pre-commit user would, with real ``git commit``s.

pre-commit clones the project at a commit and pip-installs it into an environment of
its own (from PyPI: tens of seconds), so that is done once per session under a
temporary ``PRE_COMMIT_HOME``. The project is copied into a fresh Git repository: the
suite may run from a copy without ``.git``, and pre-commit needs a commit to point at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import author_env, git, make_org

from stageline.layout import env_dir

PROJECT = Path(__file__).resolve().parents[1]
DEV = env_dir("development", "support-bot")
STG = env_dir("staging", "support-bot")
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build",
                                    "dist", ".*_cache")


@dataclass(frozen=True)
class PreCommit:
    executable: str
    config: str  # the .pre-commit-config.yaml an organization repository holds
    env: Mapping[str, str]

    def run(self, repo: Path, *args: str, env: Mapping[str, str] | None = None) \
            -> subprocess.CompletedProcess[str]:
        full = {**os.environ, **self.env, **(env or {})}
        return subprocess.run(list(args), cwd=repo, capture_output=True, text=True, env=full)


def _checked(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{proc.args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="session")
def pre_commit(tmp_path_factory: pytest.TempPathFactory) -> PreCommit:
    """The project as a Git repository, and pre-commit's environment for its hook, built."""
    executable = Path(sys.executable).parent / "pre-commit"
    assert executable.exists(), "pre-commit is missing: install the project's test extra"
    root = tmp_path_factory.mktemp("pre-commit")
    gitconfig = root / "gitconfig"
    gitconfig.write_text("[init]\n\tdefaultBranch = main\n[user]\n\tname = Builder\n"
                         "\temail = builder@test.example\n")
    env = {"PRE_COMMIT_HOME": str(root / "home"), "GIT_CONFIG_GLOBAL": str(gitconfig),
           "GIT_CONFIG_NOSYSTEM": "1"}
    project = root / "stageline"
    shutil.copytree(PROJECT, project, ignore=NOT_COPIED)
    tool = PreCommit(str(executable), "", env)
    for args in (("init", "-q"), ("add", "-A"), ("commit", "-q", "-m", "stageline")):
        _checked(tool.run(project, "git", *args))
    rev = _checked(tool.run(project, "git", "rev-parse", "HEAD")).strip()
    config = (f"repos:\n- repo: {project}\n  rev: {rev}\n  hooks:\n"
              "  - id: stageline-guard\n")
    tool = PreCommit(str(executable), config, env)
    org = make_org(root / "org")
    (org / ".pre-commit-config.yaml").write_text(config)
    _checked(tool.run(org, str(executable), "install-hooks"))
    return tool


@pytest.fixture
def org(tmp_path: Path, pre_commit: PreCommit) -> Path:
    """An organization repository whose committed config runs stageline-guard, installed."""
    repo = make_org(tmp_path / "org")
    (repo / ".pre-commit-config.yaml").write_text(pre_commit.config)
    git(repo, "add", ".pre-commit-config.yaml")
    git(repo, "commit", "-q", "-m", "Check commits with stageline", env=author_env("olga"))
    assert "pre-commit installed" in _checked(pre_commit.run(repo, pre_commit.executable,
                                                             "install"))
    return repo


def commit(pre_commit: PreCommit, repo: Path, member: str, *args: str) \
        -> subprocess.CompletedProcess[str]:
    git(repo, "config", "user.email", f"{member}@test.example")
    git(repo, "config", "user.name", member.capitalize())
    return pre_commit.run(repo, "git", "commit", *args)


def test_an_allowed_commit_goes_in(org: Path, pre_commit: PreCommit) -> None:
    before = git(org, "rev-parse", "HEAD")
    (org / DEV / "prompts/system.md").write_text("A better prompt.\n")
    git(org, "add", "-A")
    result = commit(pre_commit, org, "alice", "-m", "Improve the prompt")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stageline guard" in result.stderr and "Passed" in result.stderr
    assert git(org, "rev-parse", "HEAD~1") == before
    assert git(org, "log", "-1", "--format=%ae") == "alice@test.example"


def test_staging_edited_by_hand_is_stopped(org: Path, pre_commit: PreCommit) -> None:
    before = git(org, "rev-parse", "HEAD")
    shutil.copytree(org / DEV, org / STG)
    (org / STG / "prompts/system.md").write_text("Edited in staging.\n")
    git(org, "add", "-A")
    result = commit(pre_commit, org, "alice", "-m", "Fix staging directly")
    assert result.returncode != 0
    said = result.stdout + result.stderr
    assert "Failed" in said and "stageline-guard" in said
    assert f"{STG}: staging must be an exact copy of development in the same commit; " \
           "run 'stageline promote support-bot --to staging'." in said
    assert git(org, "rev-parse", "HEAD") == before
    assert STG + "/prompts/system.md" in git(org, "diff", "--cached", "--name-only")


def test_qa_editing_development_is_stopped(org: Path, pre_commit: PreCommit) -> None:
    """``commit -a`` commits through a temporary index, which the guard reads."""
    before = git(org, "rev-parse", "HEAD")
    (org / DEV / "prompts/system.md").write_text("QA rewrote the prompt.\n")
    result = commit(pre_commit, org, "quinn", "-a", "-m", "Tweak the prompt")
    assert result.returncode != 0
    assert "the author quinn (qa) may not edit development" in result.stdout + result.stderr
    assert git(org, "rev-parse", "HEAD") == before
    assert git(org, "diff", "--name-only") == DEV + "/prompts/system.md"
