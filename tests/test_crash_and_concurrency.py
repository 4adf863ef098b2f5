"""Crashes at every step of every action, and writers racing each other.

Every action (promote to staging, mark-ready, promote to production, rollback) is
killed with SIGKILL at each of its crash points (``STAGELINE_CRASH_AT``), in a clone
and in a bare repository: the repository stays consistent, the branch is at the old or
the new commit, the next command finishes what was interrupted, and running the action
again completes it. Then processes racing on one repository, and twenty pushes racing
through the pre-receive hook over real HTTP.

The states each action starts from are made once per module and copied per case.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import author_env, commit_all, git, make_org, sl
from httpgit import serve, with_credentials

from stageline.errors import BLOCKED, OK
from stageline.git.worktree import JOURNAL_NAME
from stageline.trailers import read as read_trailers

AGENT = "support-bot"
DEV = f"environments/development/{AGENT}"
STG = f"environments/staging/{AGENT}"
PROD = f"environments/production/{AGENT}"
APPROVAL = f"approvals/{AGENT}.yaml"
STEPS = ("before-journal", "before-ref-update", "after-ref-update", "after-worktree",
         "after-sync")
AFTER_REF = ("after-ref-update", "after-worktree", "after-sync")
CLONE_ONLY = ("after-worktree", "after-sync")  # a bare repository has no work tree to sync
KINDS = ("clone", "bare")


@dataclass(frozen=True)
class Action:
    argv: tuple[str, ...]  # "{v1}" stands for the commit of the first production push
    actor: str
    trailer: str  # the Stageline-Action of the commit it makes


ACTIONS = {
    "promote-staging": Action(("promote", AGENT, "--to", "staging"), "alice",
                              "promote-to-staging"),
    "mark-ready": Action(("mark-ready", AGENT), "quinn", "mark-ready"),
    "promote-production": Action(("promote", AGENT, "--to", "production"), "olga",
                                 "promote-to-production"),
    # With --to: "roll back to the previous version" run twice would roll forward again.
    "rollback": Action(("rollback", AGENT, "--to", "{v1}"), "olga", "rollback"),
}


@dataclass
class Templates:
    dirs: dict[tuple[str, str], Path]  # (action, kind) -> a repository where it has work
    v1: str  # the commit that first pushed support-bot to production
    v1_tree: str  # production's tree at v1


def _isolate(mp: pytest.MonkeyPatch, home: Path) -> None:
    """What conftest's autouse fixture does, for module-scoped setup that runs before it."""
    mp.setenv("HOME", str(home))
    mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
    mp.setenv("GIT_CONFIG_GLOBAL", str(home / "gitconfig"))
    (home / "gitconfig").write_text("[init]\n\tdefaultBranch = main\n")
    mp.delenv("STAGELINE_CRASH_AT", raising=False)
    mp.delenv("STAGELINE_ACTOR", raising=False)


def _ok(repo: Path, *args: str, actor: str) -> None:
    result = sl(repo, *args, actor=actor)
    assert result.code == OK, result.err


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Templates]:
    """support-bot walked through the workflow in a clone, a snapshot before each action:

    - promote-staging: v1 staged, approved and in production, then a development edit (v2),
      so the promotion both copies a tree and deletes the approval;
    - mark-ready: v2 in staging;  promote-production: v2 approved by quinn;
    - rollback: v2 in production, rolled back to v1 by commit.
    The bare templates are bare clones of the same snapshots.
    """
    root = tmp_path_factory.mktemp("templates")
    with pytest.MonkeyPatch.context() as mp:
        _isolate(mp, tmp_path_factory.mktemp("home"))
        work = make_org(root / "work")
        _ok(work, "promote", AGENT, "--to", "staging", actor="alice")
        _ok(work, "mark-ready", AGENT, actor="quinn")
        _ok(work, "promote", AGENT, "--to", "production", actor="olga")
        v1 = git(work, "rev-parse", "HEAD")
        v1_tree = git(work, "rev-parse", f"HEAD:{PROD}")
        (work / DEV / "prompts/system.md").write_text("You are support-bot, version two.\n")
        commit_all(work, "alice", "support-bot v2")
        dirs: dict[tuple[str, str], Path] = {}

        def snapshot(action: str) -> None:
            clone = root / f"{action}-clone"
            shutil.copytree(work, clone, symlinks=True)
            dirs[(action, "clone")] = clone
            bare = root / f"{action}-bare.git"
            git(root, "clone", "-q", "--bare", "--no-local", str(work), str(bare))
            dirs[(action, "bare")] = bare

        snapshot("promote-staging")
        _ok(work, "promote", AGENT, "--to", "staging", actor="alice")
        snapshot("mark-ready")
        _ok(work, "mark-ready", AGENT, actor="quinn")
        snapshot("promote-production")
        _ok(work, "promote", AGENT, "--to", "production", actor="olga")
        snapshot("rollback")
        assert git(work, "status", "--porcelain") == ""
        yield Templates(dirs, v1, v1_tree)


# -- helpers -----------------------------------------------------------------------------------


def run_cli(repo: Path, *args: str, actor: str | None = None, crash_at: str | None = None) \
        -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("STAGELINE_CRASH_AT", None)
    if crash_at:
        env["STAGELINE_CRASH_AT"] = crash_at
    argv = [sys.executable, "-m", "stageline", "--repo", str(repo),
            *(["--as", actor] if actor else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env)


def fsck(repo: Path) -> None:
    proc = subprocess.run(["git", "fsck", "--strict", "--no-progress"], cwd=repo,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bad = [ln for ln in (proc.stdout + proc.stderr).splitlines()
           if not ln.startswith(("dangling ", "Checking ", "notice: "))]
    assert bad == [], bad


def tip(repo: Path) -> str:
    return git(repo, "rev-parse", "refs/heads/main")


def journal(repo: Path, kind: str) -> Path:
    return (repo / ".git" if kind == "clone" else repo) / JOURNAL_NAME


def index_lock(repo: Path) -> Path:
    return repo / ".git" / "index.lock"


def scratch_files(repo: Path) -> list[str]:
    return sorted(p.name for p in (repo / ".git").glob("stageline-index*"))


def argv_of(action: str, t: Templates) -> tuple[str, ...]:
    return tuple(a.replace("{v1}", t.v1) for a in ACTIONS[action].argv)


def rev(repo: Path, spec: str) -> str | None:
    out = git(repo, "rev-parse", "-q", "--verify", spec, check=False)
    return out or None


def assert_done(repo: Path, action: str, t: Templates) -> None:
    """The branch's tree is what the action is for."""
    if action == "promote-staging":
        assert rev(repo, f"main:{STG}") == rev(repo, f"main:{DEV}")
        assert rev(repo, f"main:{APPROVAL}") is None  # the old approval went with the old tree
    elif action == "mark-ready":
        text = git(repo, "show", f"main:{APPROVAL}")
        assert f'staging_tree: "{rev(repo, f"main:{STG}")}"' in text
        assert 'marked_by: "quinn"' in text
    elif action == "promote-production":
        assert rev(repo, f"main:{PROD}") == rev(repo, f"main:{STG}")
    else:
        assert rev(repo, f"main:{PROD}") == t.v1_tree


def prepared(t: Templates, action: str, kind: str, tmp_path: Path) -> Path:
    repo = tmp_path / ("repo" if kind == "clone" else "repo.git")
    shutil.copytree(t.dirs[(action, kind)], repo, symlinks=True)
    return repo


# -- a crash at every step ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("action", list(ACTIONS))
def test_crash_at_every_step(templates: Templates, action: str, step: str, kind: str,
                             tmp_path: Path) -> None:
    repo = prepared(templates, action, kind, tmp_path)
    spec = ACTIONS[action]
    argv = argv_of(action, templates)
    old = tip(repo)

    proc = run_cli(repo, *argv, actor=spec.actor, crash_at=step)
    if kind == "bare" and step in CLONE_ONLY:
        assert proc.returncode == OK, proc.stderr
    else:
        assert proc.returncode == -9, (proc.returncode, proc.stdout, proc.stderr)
    fsck(repo)
    now = tip(repo)
    if step in AFTER_REF:
        assert now != old
        assert git(repo, "rev-parse", f"{now}^") == old  # exactly one commit on top
        found = git(repo, "log", "-1", "--format=%(trailers:only,unfold)", now)
        assert read_trailers(found)["Stageline-Action"] == spec.trailer
    else:
        assert now == old
    # only a clone keeps a record, from the moment it is written until the work tree follows
    record = journal(repo, kind)
    assert record.exists() == (kind == "clone" and step != "before-journal")
    if kind == "clone" and step in ("after-ref-update", "after-worktree"):
        # the index has not caught up (plumbing: 'git status' would refresh the index)
        assert git(repo, "diff-index", "--cached", "--name-only", "HEAD") != ""
    # a clone's index lock, taken before the work began, stays with the killed process
    assert index_lock(repo).exists() == (kind == "clone")

    # the next command, whatever it is, finishes the interrupted update
    result = sl(repo, "status")
    assert result.code == OK, result.err
    assert not record.exists()
    assert not index_lock(repo).exists()  # a dead stageline process's lock is taken over
    assert tip(repo) == now
    if kind == "clone":
        assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
        assert scratch_files(repo) == []
    fsck(repo)

    # the same action again completes it, or finds nothing left to do
    again = sl(repo, *argv, actor=spec.actor)
    assert again.code == OK, again.err
    if step in AFTER_REF:
        assert "nothing to do" in again.out
        assert tip(repo) == now
    else:
        assert git(repo, "rev-parse", "main^") == old
    assert_done(repo, action, templates)
    if kind == "clone":
        assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
        assert git(repo, "rev-parse", "HEAD") == tip(repo)
    assert not record.exists()
    fsck(repo)


@pytest.mark.parametrize("step", AFTER_REF)
@pytest.mark.parametrize("action", list(ACTIONS))
def test_index_lock_left_by_a_crash_is_named_then_finished(templates: Templates, action: str,
                                                           step: str, tmp_path: Path) -> None:
    repo = prepared(templates, action, "clone", tmp_path)
    spec = ACTIONS[action]
    proc = run_cli(repo, *argv_of(action, templates), actor=spec.actor, crash_at=step)
    assert proc.returncode == -9
    new = tip(repo)
    lock = index_lock(repo)
    # the killed process's own lock would be taken over: this one is another git process's
    lock.unlink()
    lock.write_bytes(b"")

    refused = sl(repo, "status")
    assert refused.code == BLOCKED
    assert str(lock) in refused.err
    assert journal(repo, "clone").exists()  # nothing was given up
    assert tip(repo) == new

    lock.unlink()
    assert sl(repo, "status").code == OK
    assert not journal(repo, "clone").exists()
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert_done(repo, action, templates)
    fsck(repo)


def crashed_promotion(templates: Templates, tmp_path: Path) -> tuple[Path, str]:
    """A clone whose promotion to staging (v1 -> v2) was killed right after the ref moved."""
    repo = prepared(templates, "promote-staging", "clone", tmp_path)
    proc = run_cli(repo, *argv_of("promote-staging", templates), actor="alice",
                   crash_at="after-ref-update")
    assert proc.returncode == -9
    assert journal(repo, "clone").exists()
    return repo, tip(repo)


def test_a_touched_but_unchanged_file_does_not_block_finishing(templates: Templates,
                                                               tmp_path: Path) -> None:
    repo, new = crashed_promotion(templates, tmp_path)
    old_file = repo / STG / "agent.yaml"  # still v1's, unchanged by v2 as well
    stat = old_file.stat()
    os.utime(old_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))

    result = sl(repo, "status")
    assert result.code == OK, result.err
    assert not journal(repo, "clone").exists()
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert tip(repo) == new


def test_an_ignored_file_does_not_block_finishing(templates: Templates, tmp_path: Path) -> None:
    # an ignored file never blocks an action, so it must not block finishing one either
    repo = prepared(templates, "promote-staging", "clone", tmp_path)
    (repo / ".git" / "info" / "exclude").write_text("*.pyc\n")
    ignored = repo / STG / "cache.pyc"
    ignored.write_bytes(b"\0compiled")
    proc = run_cli(repo, *argv_of("promote-staging", templates), actor="alice",
                   crash_at="after-ref-update")
    assert proc.returncode == -9
    new = tip(repo)

    result = sl(repo, "status")
    assert result.code == OK, result.err
    assert not journal(repo, "clone").exists()
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert ignored.read_bytes() == b"\0compiled"
    assert tip(repo) == new
    assert_done(repo, "promote-staging", templates)


def half_synced(repo: Path, new: str) -> None:
    """What a 'git restore' killed half way leaves: one file written from the new commit,
    one unlinked and not yet written again, one created and not yet written; the index
    not yet replaced (and its scratch copy's lock still there)."""
    blob = subprocess.run(["git", "cat-file", "blob", f"{new}:{STG}/prompts/system.md"],
                          cwd=repo, capture_output=True, check=True).stdout
    (repo / STG / "prompts/system.md").write_bytes(blob)
    (repo / STG / "knowledge/refunds.md").unlink()
    (repo / STG / "agent.yaml").write_bytes(b"")
    (repo / ".git" / "stageline-index.lock").write_bytes(b"")


def test_a_sync_killed_half_way_is_finished(templates: Templates, tmp_path: Path) -> None:
    repo, new = crashed_promotion(templates, tmp_path)
    half_synced(repo, new)

    result = sl(repo, "status")
    assert result.code == OK, result.err
    assert not journal(repo, "clone").exists()
    assert not index_lock(repo).exists()
    assert scratch_files(repo) == []
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert_done(repo, "promote-staging", templates)


@pytest.mark.parametrize("edit", ["modified", "untracked", "staged"])
def test_an_edit_after_a_sync_killed_half_way_is_kept(templates: Templates, tmp_path: Path,
                                                      edit: str) -> None:
    repo, new = crashed_promotion(templates, tmp_path)
    half_synced(repo, new)
    mine = repo / STG / ("scratch.md" if edit == "untracked" else "knowledge/refunds.md")
    mine.write_text("my edit\n")  # content neither commit has
    if edit == "staged":
        index_lock(repo).unlink()  # the killed process's lock, which stops 'git add'
        git(repo, "add", "--", str(mine))
        mine.unlink()  # the index holds the edit, the work tree nothing (as the sync leaves it)

    refused = sl(repo, "status")
    assert refused.code == BLOCKED
    assert "changed since" in refused.err
    assert str(mine.relative_to(repo)) in refused.err
    assert journal(repo, "clone").exists()  # nothing was given up
    assert not index_lock(repo).exists()  # and git works, to put the edit aside
    if edit == "staged":
        assert git(repo, "show", f":{STG}/knowledge/refunds.md") == "my edit"
    else:
        assert mine.read_text() == "my edit\n"
    assert tip(repo) == new

    # what the message says to do finishes the update
    advice = re.search(r"move (?:it|them) out of the way, then run '(git restore [^']+)'",
                       refused.err)
    assert advice, refused.err
    mine.unlink(missing_ok=True)
    git(repo, *shlex.split(advice.group(1))[1:])
    assert sl(repo, "status").code == OK
    assert not journal(repo, "clone").exists()
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert_done(repo, "promote-staging", templates)


def test_a_busy_index_stops_an_action_before_anything_changes(templates: Templates,
                                                              tmp_path: Path) -> None:
    repo = prepared(templates, "promote-staging", "clone", tmp_path)
    old = tip(repo)
    lock = index_lock(repo)
    lock.write_bytes(b"")  # a git command at work, or one killed

    refused = sl(repo, "promote", AGENT, "--to", "staging", actor="alice")
    assert refused.code == BLOCKED
    assert str(lock) in refused.err
    assert tip(repo) == old  # the branch did not move
    assert not journal(repo, "clone").exists()
    assert lock.read_bytes() == b""  # another process's lock is never removed
    lock.unlink()
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""

    assert sl(repo, "promote", AGENT, "--to", "staging", actor="alice").code == OK
    assert_done(repo, "promote-staging", templates)
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""


def test_the_lock_of_a_running_stageline_process_is_waited_for(templates: Templates,
                                                               tmp_path: Path) -> None:
    repo = prepared(templates, "promote-staging", "clone", tmp_path)
    old = tip(repo)
    lock = index_lock(repo)
    # as a stageline process that is still running (this one) writes it
    lock.write_bytes(f"stageline pid={os.getpid()} host={socket.gethostname()}\n".encode())
    refused = run_cli(repo, "promote", AGENT, "--to", "staging", actor="alice")
    assert refused.returncode == BLOCKED
    assert str(lock) in refused.stderr
    assert lock.exists()
    assert tip(repo) == old


def test_a_kill_while_taking_the_index_lock_leaves_no_lock(templates: Templates,
                                                          tmp_path: Path) -> None:
    repo = prepared(templates, "promote-staging", "clone", tmp_path)
    old = tip(repo)
    proc = run_cli(repo, *argv_of("promote-staging", templates), actor="alice",
                   crash_at="before-index-lock")
    assert proc.returncode == -9
    # the lock is made whole before it appears: never an empty one that looks like git's
    assert not index_lock(repo).exists()
    assert tip(repo) == old
    (left,) = (repo / ".git").glob("stageline-lock-*")
    live = repo / ".git" / f"stageline-lock-{os.getpid()}"  # a process taking the lock now
    live.write_bytes(f"stageline pid={os.getpid()} host={socket.gethostname()}\n".encode())

    assert sl(repo, "status").code == OK
    assert not left.exists()  # the dead process's mark is cleared away
    assert live.exists()  # a live one is not
    live.unlink()
    assert sl(repo, "promote", AGENT, "--to", "staging", actor="alice").code == OK
    assert_done(repo, "promote-staging", templates)
    assert list((repo / ".git").glob("stageline-lock-*")) == []


def test_the_lock_of_a_dead_stageline_process_is_taken_over(templates: Templates,
                                                            tmp_path: Path) -> None:
    repo = prepared(templates, "promote-staging", "clone", tmp_path)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    lock = index_lock(repo)
    lock.write_bytes(f"stageline pid={gone.stdout.strip()} host={socket.gethostname()}\n"
                     .encode())
    assert sl(repo, "promote", AGENT, "--to", "staging", actor="alice").code == OK
    assert not lock.exists()
    assert_done(repo, "promote-staging", templates)
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""


# -- processes racing on one repository ------------------------------------------------------------


def start(repo: Path, *args: str, actor: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop("STAGELINE_CRASH_AT", None)
    return subprocess.Popen([sys.executable, "-m", "stageline", "--repo", str(repo), "--as",
                             actor, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def race(repo: Path, jobs: list[tuple[str, ...]], actor: str) -> list[tuple[int, str, str]]:
    """Start every job at once, then wait for all: (exit code, stdout, stderr) each."""
    procs = [start(repo, *job, actor=actor) for job in jobs]
    results = []
    for proc in procs:
        out, err = proc.communicate()
        results.append((proc.returncode, out, err))
    return results


def lost_the_race(code: int, err: str) -> bool:
    return code == BLOCKED and "moved" in err


def staged_equals_dev(repo: Path, agent: str) -> bool:
    dev = rev(repo, f"main:environments/development/{agent}")
    return dev is not None and rev(repo, f"main:environments/staging/{agent}") == dev


def test_concurrent_promotions_of_different_agents_lose_no_update(bare_org: Path) -> None:
    agents = [f"racer-{n}" for n in range(4)]
    for agent in agents:
        _ok(bare_org, "agent", "new", agent, actor="alice")
    results = race(bare_org, [("promote", a, "--to", "staging") for a in agents], "alice")

    for (code, _out, err), agent in zip(results, agents, strict=True):
        assert code == OK or lost_the_race(code, err), (agent, code, err)
        if code == OK:
            assert staged_equals_dev(bare_org, agent), agent  # no winner was overwritten
    winners = [a for (code, _o, _e), a in zip(results, agents, strict=True) if code == OK]
    assert winners  # someone always wins
    # every win is one commit on the branch, none lost
    promotions = git(bare_org, "log", "--format=%(trailers:key=Stageline-Agent,valueonly)",
                     "--grep=Stageline-Action: promote-to-staging", "main").split()
    assert sorted(promotions) == sorted(winners)

    for (code, _out, _err), agent in zip(results, agents, strict=True):
        if code != OK:
            _ok(bare_org, "promote", agent, "--to", "staging", actor="alice")
    assert all(staged_equals_dev(bare_org, a) for a in agents)
    fsck(bare_org)


def test_concurrent_promotions_of_one_agent_make_one_commit(bare_org: Path) -> None:
    _ok(bare_org, "agent", "new", "solo", actor="alice")
    results = race(bare_org, [("promote", "solo", "--to", "staging")] * 3, "alice")

    assert all(code == OK or lost_the_race(code, err) for code, _out, err in results), results
    assert any(code == OK for code, _out, _err in results)
    assert staged_equals_dev(bare_org, "solo")
    commits = git(bare_org, "log", "--format=%H%x00%(trailers:only,unfold)%x01",
                  "main").split("\x01")
    promotions = [c for c in commits if c.strip() and
                  read_trailers(c.partition("\0")[2]).get("Stageline-Action")
                  == "promote-to-staging" and
                  read_trailers(c.partition("\0")[2]).get("Stageline-Agent") == "solo"]
    assert len(promotions) == 1
    fsck(bare_org)


# -- twenty pushes racing through the hook over HTTP ------------------------------------------------


PUSHERS = 20
NO_PROMPT = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": ""}
RACED = ("fetch first", "non-fast-forward", "failed to update ref", "cannot lock ref",
         "stale info")
DECLINED = "pre-receive hook declined"


@dataclass
class Pusher:
    n: int
    clone: Path
    forbidden: bool
    accepted: str | None = None  # the commit the server took
    declined: str = ""  # the hook's answer, when it rejected the push
    raced: int = 0
    failures: list[str] = field(default_factory=list)  # anything else
    seen: list[str] = field(default_factory=list)  # the server's main after each rejection


def http_git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **NO_PROMPT, **author_env("alice")}
    return subprocess.run(["git", "-c", "credential.helper=", *args], cwd=cwd,
                          capture_output=True, text=True, env=env, check=False)


def edit(p: Pusher) -> None:
    """A new file per pusher: a development edit, or a hand edit of staging (forbidden)."""
    where = STG if p.forbidden else DEV
    path = p.clone / where / "knowledge" / f"note-{p.n}.md"
    path.write_text(f"Note {p.n}.\n")
    commit_all(p.clone, "alice", f"{'Hand-edit staging' if p.forbidden else 'Edit'} {p.n}")


def push_until_judged(p: Pusher, server: Path, barrier: threading.Barrier) -> None:
    """Push HEAD to main; after a lost race, fetch, rebase and push again.

    Main only moves when a push is accepted, and each lost race means it moved after
    this pusher's last fetch, so a pusher loses at most as many races as there are
    other accepted pushes: PUSHERS + 1 attempts always end in a verdict.
    """
    barrier.wait()
    for _attempt in range(PUSHERS + 1):
        proc = http_git(p.clone, "push", "--porcelain", "origin", "HEAD:main")
        if proc.returncode == 0:
            p.accepted = git(p.clone, "rev-parse", "HEAD")
            return
        p.seen.append(tip(server))
        said = proc.stdout + proc.stderr
        if DECLINED in said:
            p.declined = said
            return
        if not any(word in said for word in RACED):
            p.failures.append(said)
            return
        p.raced += 1
        fetched = http_git(p.clone, "fetch", "-q", "origin")
        rebased = http_git(p.clone, "rebase", "-q", "origin/main")
        if fetched.returncode or rebased.returncode:
            p.failures.append(fetched.stderr + rebased.stderr)
            return
    p.failures.append("no verdict")


@pytest.mark.slow
def test_twenty_concurrent_pushes_through_the_hook_over_http(tmp_path: Path) -> None:
    server = make_org(tmp_path / "srv" / "server.git", bare=True)
    _ok(server, "promote", AGENT, "--to", "staging", actor="alice")
    assert sl(None, "hook", "install", str(server)).code == OK
    base = tip(server)
    with serve(server.parent, {"alice": "alice-pw"}) as url:
        remote = with_credentials(url, "alice", "alice-pw") + "/server.git"
        first = tmp_path / "c0"
        proc = http_git(tmp_path, "clone", "-q", remote, str(first))
        assert proc.returncode == 0, proc.stderr
        pushers = []
        for n in range(PUSHERS):
            clone = first if n == 0 else tmp_path / f"c{n}"
            if n:
                git(tmp_path, "clone", "-q", str(first), str(clone))
                git(clone, "remote", "set-url", "origin", remote)
            pushers.append(Pusher(n, clone, forbidden=n % 2 == 1))
        for p in pushers:  # each clone holds its own commit only
            edit(p)
        barrier = threading.Barrier(PUSHERS)
        threads = [threading.Thread(target=push_until_judged, args=(p, server, barrier))
                   for p in pushers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert [(p.n, p.failures) for p in pushers if p.failures] == []
    legit = [p for p in pushers if not p.forbidden]
    forbidden = [p for p in pushers if p.forbidden]
    # every forbidden push reached the hook and was declined; every legitimate one got in
    assert all(p.accepted is None and "staging must be an exact copy of development"
               in p.declined for p in forbidden), [(p.n, p.declined) for p in forbidden]
    assert all(p.accepted and not p.declined for p in legit)

    main = tip(server)
    accepted = {p.accepted for p in legit}
    # main is the accepted pushes one after the other, nothing else
    assert set(git(server, "rev-list", f"{base}..{main}").split()) == accepted
    assert main in accepted
    # a rejected push never moved main anywhere but to an accepted commit
    assert all(s == base or s in accepted for p in pushers for s in p.seen)
    assert git(server, "for-each-ref", "--format=%(refname)") == "refs/heads/main"
    # the server's own check agrees, and its log has one record per accepted push
    verdict = sl(server, "verify", "--range", f"{base}..main", "--pusher", "alice")
    assert verdict.code == OK, verdict.out + verdict.err
    log = [json.loads(line) for line in (server / "stageline-pushes.jsonl").read_text()
           .splitlines()]
    assert sorted(r["new"] for r in log) == sorted(accepted)
    assert all(r["pusher"] == "alice" for r in log)
    fsck(server)
