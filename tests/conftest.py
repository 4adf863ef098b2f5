"""Fixtures: real git repositories in tmp_path, a bare repository as the server."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import invariants
import pytest
from hypothesis import HealthCheck, settings

from stageline.actions import import_organization
from stageline.cli import run
from stageline.errors import OK
from stageline.git.store import Store

if TYPE_CHECKING:
    from servers import Released

RESOURCES = Path(__file__).parent / "resources"

# One profile for every property test (HYPOTHESIS_PROFILE=thorough for a long hunt): no
# deadlines (tests run git), no example database in the tree, fixtures shared across
# examples on purpose.
settings.register_profile("default", max_examples=100, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow])
settings.register_profile("thorough", settings.get_profile("default"), max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _isolated_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) \
        -> None:
    """No user or system git configuration leaks into a test; dates are fixed."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / "gitconfig"))
    # Reflogs everywhere, bare servers too: the invariants read every tip a branch had.
    (home / "gitconfig").write_text("[init]\n\tdefaultBranch = main\n[protocol \"file\"]\n"
                                    "\tallow = always\n[core]\n\tlogAllRefUpdates = always\n")
    for var in ("STAGELINE_ACTOR", "STAGELINE_CRASH_AT", "GL_USERNAME", "GL_ID", "REMOTE_USER",
                "GITEA_PUSHER_NAME", "GITHUB_USER_LOGIN", "BB_USER_NAME", "GL_USER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("STAGELINE_LOCK_WAIT", "0.2")


@pytest.fixture(autouse=True)
def _invariants(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """When a test ends, every hooked server it made must hold the states of
    ``invariants.py``: whatever the hook accepted, no rule was broken."""
    yield
    if request.node.get_closest_marker("no_invariants"):
        return
    problems = [p for srv in invariants.hooked_servers(tmp_path)
                for p in invariants.check_server(srv)]
    assert not problems, "the hook accepted a state the rules forbid:\n" + "\n".join(problems)


@dataclass
class Result:
    code: int
    out: str
    err: str


def sl(repo: Path | str | None, *args: str, actor: str | None = None) -> Result:
    """Run the stageline CLI in-process, as a user would type it."""
    argv = [*(["--repo", str(repo)] if repo is not None else []),
            *(["--as", actor] if actor else []), *args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(argv)
    return Result(code, out.getvalue(), err.getvalue())


def git(repo: Path | str, *args: str, env: dict[str, str] | None = None,
        check: bool = True) -> str:
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip("\n")


def author_env(member: str) -> dict[str, str]:
    name = member.capitalize()
    email = f"{member}@test.example"
    return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}


def commit_all(repo: Path, member: str, message: str) -> str:
    """A plain commit of every change in the work tree, authored by ``member``."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message, env=author_env(member))
    return git(repo, "rev-parse", "HEAD")


def tree_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def make_org(path: Path, resource: str = "org", bare: bool = False) -> Path:
    """A repository holding ``tests/resources/<resource>`` as its first commit."""
    with Store.init(str(path), "main", bare=bare) as store:
        import_organization(store, "refs/heads/main", tree_files(RESOURCES / resource))
    return path


@pytest.fixture
def org(tmp_path: Path) -> Path:
    """A clone-like repository (with a work tree) of the test organization."""
    return make_org(tmp_path / "org")


@pytest.fixture
def bare_org(tmp_path: Path) -> Path:
    return make_org(tmp_path / "org.git", bare=True)


@pytest.fixture
def staged_org(org: Path) -> Path:
    """The test organization with support-bot promoted to staging."""
    assert sl(org, "promote", "support-bot", "--to", "staging", actor="alice").code == 0
    return org


@pytest.fixture
def ready_org(staged_org: Path) -> Path:
    """support-bot in staging and marked Ready for Production by quinn."""
    assert sl(staged_org, "mark-ready", "support-bot", actor="quinn").code == 0
    return staged_org


@pytest.fixture
def server(tmp_path: Path) -> Path:
    """A bare repository of the test organization, the hook installed."""
    srv = make_org(tmp_path / "server.git", bare=True)
    assert sl(None, "hook", "install", str(srv)).code == OK
    return srv


@pytest.fixture
def clone(server: Path, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(server), str(work))
    return work


@pytest.fixture
def released(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Released:
    """A hooked server and clone after three production releases (``servers.Released``)."""
    from servers import released as copy_of_released

    return copy_of_released(tmp_path, tmp_path_factory)


@contextlib.contextmanager
def chdir(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


__all__ = ["Result", "author_env", "chdir", "commit_all", "git", "make_org", "sl"]
