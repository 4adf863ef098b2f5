"""Kill promotions at random moments and check that nothing is ever left broken.

    python bench/crash_stress.py [--trials 200] [--bare | --clone | --both] [--files 20]
                                 [--seed N] [--keep]

One organization repository per mode (a bare repository, or a clone with a work
tree), reused for every trial. Its agent's development toggles between two states,
so that every trial has a promotion to staging to do. The typical duration of
``stageline promote helper --to staging`` is measured first (median of a few runs
left alone); then each trial starts a promotion in a new process group and sends
SIGKILL to the whole group (stageline and the git processes it started) after
``random.uniform(0, typical)`` seconds, and checks:

- ``git fsck --strict`` is clean;
- the branch is at the commit it was at, or at the promotion (one commit on top of
  it, whose staging equals its development);
- ``stageline status`` exits 0, or exits 4 naming a lock file, which is then removed
  (as its message says to) before it is run again;
- in a clone, the work tree is clean and the pending-update record is gone.

Git lock files that the kill left and that ``status`` has no reason to name (a
branch's or ``HEAD``'s ``.lock``, say) must make the next promotion stop with exit 4
naming them, the branch unmoved; they are then removed, as an operator would. (The
index lock a killed stageline process held is not one of them: the next stageline
command takes it over.) Prints a summary per
mode; exits 1 on any failure. A stress script, not a test: it is not run by CI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from stageline.actions import scaffold

AGENT = "helper"
DEV = f"environments/development/{AGENT}"
STG = f"environments/staging/{AGENT}"
JOURNAL = "stageline-pending.json"
POLICY = """organization: stress
protected_branches: [main]
members:
  alice: {name: Alice Dev, email: alice@stress.test, roles: [developer]}
"""
ALICE = {"GIT_AUTHOR_NAME": "Alice Dev", "GIT_AUTHOR_EMAIL": "alice@stress.test",
         "GIT_COMMITTER_NAME": "Alice Dev", "GIT_COMMITTER_EMAIL": "alice@stress.test"}
PROMOTE = ("--as", "alice", "promote", AGENT, "--to", "staging")
LOCK_NAMED = re.compile(r"lock file is in the way \((.+?\.lock)\)")


@dataclass
class Summary:
    mode: str
    typical: float = 0.0
    trials: int = 0
    killed_before: int = 0  # killed before the branch moved
    killed_after: int = 0  # killed after the branch moved, before the process ended
    half_synced: int = 0  # of those, in a clone: killed while the files were being written
    finished: int = 0  # ended on its own before the kill came
    named_locks: int = 0  # lock files a stageline command named, removed before a retry
    stray_locks: list[str] = field(default_factory=list)  # other lock files left by a kill
    named_by_next: int = 0  # of those, named by the next promotion, which then stopped
    failures: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        strays = sorted({Path(p).name for p in self.stray_locks})
        return [
            f"mode: {self.mode}",
            f"  typical promotion: {self.typical * 1000:.0f} ms (delays drawn from "
            f"uniform(0, {self.typical * 1000:.0f} ms))",
            f"  trials: {self.trials}",
            f"  killed before the ref moved: {self.killed_before}",
            f"  killed after the ref moved: {self.killed_after}"
            + (f" ({self.half_synced} while writing the files)" if self.mode == "clone" else ""),
            f"  finished before the kill: {self.finished}",
            f"  lock files named by stageline and removed: {self.named_locks}",
            f"  other lock files left by the kill: {len(self.stray_locks)}"
            + (f" ({', '.join(strays)}; {self.named_by_next} named by the next promotion)"
               if strays else ""),
            f"  failures: {len(self.failures)}",
            *(f"    - {f}" for f in self.failures[:10]),
        ]


class Repo:
    def __init__(self, path: Path, bare: bool, env: dict[str, str]) -> None:
        self.path = path
        self.bare = bare
        self.env = env
        self.git_dir = path if bare else path / ".git"

    def git(self, *args: str, input: str | None = None, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["git", *args], cwd=self.path, capture_output=True, text=True,
                              input=input, env={**self.env, **(env or {})})
        if check and proc.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def out(self, *args: str) -> str:
        return self.git(*args).stdout.strip()

    def rev(self, spec: str) -> str | None:
        proc = self.git("rev-parse", "-q", "--verify", spec, check=False)
        return proc.stdout.strip() or None

    def stageline(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "stageline", "--repo", str(self.path), *args],
                              capture_output=True, text=True, env=self.env)

    # -- giving every trial something to promote --------------------------------------

    def toggle_development(self, state: int, files: int) -> None:
        """One commit setting the agent's development to state 0 or 1 (every file differs)."""
        contents = agent_files(state, files)
        if not self.bare:
            for rel, data in contents.items():
                target = self.path / DEV / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            self.git("add", "-A", "--", DEV)
            self.git("commit", "-q", "-m", f"Development state {state}", env=ALICE)
            return
        index = {**self.env, "GIT_INDEX_FILE": str(self.path / "stress-index")}
        old = self.out("rev-parse", "refs/heads/main")
        self.git("read-tree", old, env=index)
        for rel, data in contents.items():
            blob = self.git("hash-object", "-w", "--stdin", input=data.decode()).stdout.strip()
            self.git("update-index", "--add", "--cacheinfo", f"100644,{blob},{DEV}/{rel}",
                     env=index)
        tree = self.git("write-tree", env=index).stdout.strip()
        commit = self.git("commit-tree", tree, "-p", old, "-m", f"Development state {state}",
                          env=ALICE).stdout.strip()
        self.git("update-ref", "refs/heads/main", commit, old)


def agent_files(state: int, files: int) -> dict[str, bytes]:
    contents = dict(scaffold(AGENT))
    contents["prompts/system.md"] += f"State {state}.\n".encode()
    for n in range(files):
        contents[f"knowledge/note-{n:03d}.md"] = f"Note {n}, state {state}.\n".encode()
    return contents


def make_repo(root: Path, bare: bool, files: int, env: dict[str, str]) -> Repo:
    work = Repo(root / "work", bare=False, env=env)
    work.path.mkdir()
    work.git("init", "-q", "-b", "main")
    (work.path / "stageline.yaml").write_text(POLICY)
    work.git("add", "stageline.yaml")
    work.toggle_development(0, files)
    if not bare:
        return work
    bare_path = root / "org.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work.path), str(bare_path)],
                   check=True, env=env)
    return Repo(bare_path, bare=True, env=env)


def needs_work(repo: Repo) -> bool:
    return repo.rev(f"main:{STG}") != repo.rev(f"main:{DEV}")


def prepare(repo: Repo, files: int, state: list[int]) -> None:
    if not needs_work(repo):
        state[0] ^= 1
        repo.toggle_development(state[0], files)


# -- one trial ------------------------------------------------------------------------------------


def fsck_problems(repo: Repo) -> list[str]:
    proc = repo.git("fsck", "--strict", "--no-progress", check=False)
    bad = [ln for ln in (proc.stdout + proc.stderr).splitlines()
           if not ln.startswith(("dangling ", "Checking ", "notice: "))]
    if proc.returncode != 0 and not bad:
        bad = [f"exit {proc.returncode}"]
    return bad


def recover(repo: Repo, summary: Summary) -> str | None:
    """``stageline status`` until it exits 0, removing the lock files it names; the
    failure, if any."""
    for _attempt in range(5):
        proc = repo.stageline("status")
        if proc.returncode == 0:
            return None
        match = LOCK_NAMED.search(proc.stderr)
        if proc.returncode != 4 or not match:
            return f"status exited {proc.returncode}: {proc.stderr.strip()}"
        Path(match.group(1)).unlink(missing_ok=True)
        summary.named_locks += 1
    return "status still refuses after removing the lock files it named"


def classify(repo: Repo) -> dict[str, int]:
    """How many files under the pending record's paths hold the old content, the new, both
    (unchanged), none (missing where both commits have it) or something else."""
    record = json.loads((repo.git_dir / JOURNAL).read_text())
    blobs = {}
    for side in ("old", "new"):
        listing = repo.out("ls-tree", "-r", "--format=%(objectname) %(path)", record[side],
                           "--", *record["paths"])
        blobs[side] = dict(reversed(line.split(" ", 1)) for line in listing.splitlines())
    counts = {"old": 0, "new": 0, "both": 0, "missing": 0, "neither": 0}
    for path in sorted(set(blobs["old"]) | set(blobs["new"])):
        file = repo.path / path
        oid = repo.out("hash-object", "--", path) if file.is_file() else None
        at = [side for side in ("old", "new") if blobs[side].get(path) == oid]
        counts["both" if len(at) == 2 else at[0] if at else
               "neither" if oid else "missing"] += 1
    return counts


def half_written(counts: dict[str, int]) -> bool:
    """Whether a killed sync had written some of the files and not others."""
    return bool(counts["missing"] or counts["neither"] or (counts["old"] and counts["new"]))


def settled(repo: Repo, when: str) -> list[str]:
    """In a clone: no pending record, and a clean work tree."""
    if repo.bare:
        return []
    problems = []
    if (repo.git_dir / JOURNAL).exists():
        problems.append(f"the pending-update record is still there {when}")
    dirty = repo.out("status", "--porcelain", "--untracked-files=all")
    if dirty:
        problems.append(f"the work tree is not clean {when}: "
                        + " | ".join(dirty.splitlines()[:5]))
    return problems


def stray_locks(repo: Repo) -> list[Path]:
    objects = repo.git_dir / "objects"
    return [p for p in repo.git_dir.rglob("*.lock") if objects not in p.parents]


def trial(repo: Repo, delay: float, summary: Summary) -> list[str]:
    old = repo.out("rev-parse", "refs/heads/main")
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "stageline", "--repo", str(repo.path),
                                 *PROMOTE], stdout=subprocess.DEVNULL, stderr=err,
                                env=repo.env, start_new_session=True)
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # stageline and its git processes at once
        code = proc.wait()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace").strip()
    problems = []
    if code not in (0, -signal.SIGKILL):
        problems.append(f"the promotion exited {code}: {stderr}")
    problems += [f"fsck: {line}" for line in fsck_problems(repo)]

    new = repo.out("rev-parse", "refs/heads/main")
    moved = new != old
    if moved:
        parent = repo.rev(f"{new}^")
        message = repo.out("log", "-1", "--format=%B", new)
        if parent != old or "Stageline-Action: promote-to-staging" not in message:
            problems.append(f"main is at {new[:12]}, neither {old[:12]} nor a promotion on it")
        elif repo.rev(f"{new}:{STG}") != repo.rev(f"{new}:{DEV}"):
            problems.append(f"the promotion {new[:12]} does not copy development to staging")
    if code == 0:
        summary.finished += 1
        if not moved:
            problems.append("the promotion ended well but main did not move")
    elif moved:
        summary.killed_after += 1
        if not repo.bare and (repo.git_dir / JOURNAL).exists() and half_written(classify(repo)):
            summary.half_synced += 1
    else:
        summary.killed_before += 1

    failure = recover(repo, summary)
    if failure:
        problems.append(failure)
        if not repo.bare and (repo.git_dir / JOURNAL).exists():
            counts = classify(repo)
            problems.append("the files of the interrupted update: "
                            + ", ".join(f"{k} {n}" for k, n in counts.items() if n))
    if repo.out("rev-parse", "refs/heads/main") != new:
        problems.append("stageline status moved main")
    problems += settled(repo, "after status")

    strays = stray_locks(repo)
    if strays and needs_work(repo):
        # the next promotion must stop at the lock and name it, not work around it, and
        # before the branch moved (a clone takes the index lock first)
        before = repo.out("rev-parse", "refs/heads/main")
        again = repo.stageline(*PROMOTE)
        match = LOCK_NAMED.search(again.stderr)
        if again.returncode != 4 or not match or Path(match.group(1)) not in strays:
            problems.append(f"with {', '.join(map(str, strays))} left, the promotion exited "
                            f"{again.returncode}: {again.stderr.strip()}")
        else:
            summary.named_by_next += 1
        if repo.out("rev-parse", "refs/heads/main") != before:
            problems.append("the promotion stopped by a lock moved main")
    for lock in strays:
        summary.stray_locks.append(str(lock))
        lock.unlink(missing_ok=True)
    if strays:
        failure = recover(repo, summary)
        if failure:
            problems.append(failure + " (after the stray locks were removed)")
        problems += settled(repo, "after the stray locks were removed")
    if problems and not repo.bare:
        # put the clone back so that the following trials still mean something
        repo.git("reset", "-q", "--hard", "refs/heads/main", check=False)
        repo.git("clean", "-q", "-fd", check=False)
        (repo.git_dir / JOURNAL).unlink(missing_ok=True)
    return problems


def measure(repo: Repo, files: int, state: list[int], runs: int) -> float:
    samples = []
    for _ in range(runs):
        prepare(repo, files, state)
        begin = time.perf_counter()
        proc = repo.stageline(*PROMOTE)
        samples.append(time.perf_counter() - begin)
        if proc.returncode != 0:
            raise SystemExit(f"the promotion fails even when left alone: {proc.stderr}")
    return statistics.median(samples)


def stress(mode: str, trials: int, files: int, rng: random.Random, root: Path) -> Summary:
    home = root / "home"
    home.mkdir()
    (home / "gitconfig").write_text("")
    env = {**os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": str(home / "gitconfig"), "STAGELINE_LOCK_WAIT": "0.5"}
    for var in ("STAGELINE_CRASH_AT", "STAGELINE_ACTOR", "GIT_DIR", "GIT_WORK_TREE",
                "GIT_INDEX_FILE"):
        env.pop(var, None)
    repo = make_repo(root, mode == "bare", files, env)
    state = [0]
    summary = Summary(mode)
    summary.typical = measure(repo, files, state, runs=5)
    for n in range(trials):
        prepare(repo, files, state)
        problems = trial(repo, rng.uniform(0, summary.typical), summary)
        summary.trials += 1
        summary.failures += [f"trial {n + 1}: {p}" for p in problems]
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--bare", dest="modes", action="store_const", const=["bare"])
    which.add_argument("--clone", dest="modes", action="store_const", const=["clone"])
    which.add_argument("--both", dest="modes", action="store_const", const=["bare", "clone"])
    parser.add_argument("--files", type=int, default=20,
                        help="extra files in the agent, all changed by every promotion")
    parser.add_argument("--seed", type=int, help="for the random delays")
    parser.add_argument("--keep", action="store_true", help="keep the repositories")
    args = parser.parse_args(argv)
    modes = args.modes or ["bare", "clone"]
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    print(f"crash stress: {args.trials} trial(s) per mode, seed {seed}")
    failed = False
    tmp = tempfile.mkdtemp(prefix="stageline-crash-")
    try:
        for mode in modes:
            root = Path(tmp) / mode
            root.mkdir()
            summary = stress(mode, args.trials, args.files, rng, root)
            print("\n".join(summary.lines()), flush=True)
            failed = failed or bool(summary.failures)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            subprocess.run(["rm", "-rf", tmp], check=False)
    print("FAILED" if failed else "all trials consistent")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
