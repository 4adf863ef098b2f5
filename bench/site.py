"""Time ``stageline site``: a full build, and a rebuild after one promotion.

    python bench/site.py [--agents 1000] [--files 40] [--commits 10000] [--runs 5]
                         [--repo ORG.git]

bench/gen_org.py makes the organization with a history of C commits (or --repo reuses
one it made, kept between runs). On top of the history (``refs/bench/push``), one development edit of
agent-00007 (``refs/bench/edited``), then its promotion to staging
(``refs/bench/promoted``). The site of ``edited`` is built once; then, alternating run by
run (bench/ab.py's way, so that the machine's load weighs on both alike), each in a new
interpreter in the bare repository:

* full: ``site --ref refs/bench/promoted`` into a new directory;
* incremental: the same into a copy of the site of ``edited`` (the copy not timed): the
  rebuild after one promotion, one agent page rendered.

Both see the history cache filled (a site built once has filled it); --cold also times
the full build without it. Prints a Markdown table of medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gen_org import PEOPLE, compile_package, generate  # noqa: E402

AGENT = "agent-00007"
HISTORY_CACHE = "stageline-history-cache.jsonl"


def git(repo: Path, *args: str, env: dict[str, str] | None = None, text: str = "") -> str:
    return subprocess.run(["git", *args], cwd=repo, input=text, capture_output=True,
                          text=True, check=True, env={**os.environ, **(env or {})}
                          ).stdout.strip()


def replace_dir(repo: Path, commit: str, path: str, tree: str) -> str:
    """The root tree of ``commit`` with the directory ``path`` replaced by ``tree``."""
    head, _, name = path.rpartition("/")
    entries = git(repo, "ls-tree", f"{commit}:{head}" if head else commit).split("\n")
    kept = [e for e in entries if not e.endswith(f"\t{name}")]
    new = git(repo, "mktree", text="\n".join([*kept, f"040000 tree {tree}\t{name}"]) + "\n")
    return replace_dir(repo, commit, head, new) if head else new


def commit(repo: Path, parent: str, root: str, who: str, message: str, when: int) -> str:
    name, _, email = PEOPLE[who].decode().partition(" <")
    ident = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email.rstrip(">"),
             "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email.rstrip(">"),
             "GIT_AUTHOR_DATE": f"{when} +0000", "GIT_COMMITTER_DATE": f"{when} +0000"}
    return git(repo, "commit-tree", root, "-p", parent, "-m", message, env=ident)


def prepare(repo: Path) -> None:
    """``refs/bench/edited`` and ``refs/bench/promoted`` on top of the generated history
    (``refs/bench/push``); ``main`` moved to the promotion."""
    tip = git(repo, "rev-parse", "refs/bench/push")
    when = int(git(repo, "log", "-1", "--format=%at", tip)) + 60
    dev = f"environments/development/{AGENT}"
    prompt = git(repo, "hash-object", "-w", "--stdin", text=f"You are {AGENT}, edited.\n")
    prompts = git(repo, "mktree", text=f"100644 blob {prompt}\tsystem.md\n")
    tree = replace_dir(repo, tip, f"{dev}/prompts", prompts)
    edited = commit(repo, tip, tree, "alice", f"Edit {AGENT}", when)
    staged = git(repo, "rev-parse", f"{edited}:{dev}")
    tree = replace_dir(repo, edited, f"environments/staging/{AGENT}", staged)
    promoted = commit(repo, edited, tree, "alice", f"Promote {AGENT} to staging\n\n"
                      f"Stageline-Action: promote-to-staging\nStageline-Agent: {AGENT}\n"
                      "Stageline-Actor: alice\n", when + 60)
    git(repo, "update-ref", "refs/bench/edited", edited)
    git(repo, "update-ref", "refs/bench/promoted", promoted)
    git(repo, "update-ref", "refs/heads/main", promoted)


def site(repo: Path, out: Path, ref: str) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "stageline", "--repo", str(repo), "site",
                           "--out", str(out), "--ref", ref], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"stageline site failed: {proc.stderr}")
    return elapsed, proc.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--commits", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--repo", type=Path, help="an organization gen_org.py made (kept)")
    parser.add_argument("--cold", action="store_true",
                        help="also time the full build without the history cache")
    args = parser.parse_args(argv)
    compile_package()
    with tempfile.TemporaryDirectory(prefix="stageline-bench-") as name:
        tmp = Path(name)
        repo = args.repo or tmp / "org.git"
        if not repo.exists():
            generate(repo, args.agents, args.files, args.commits)
        prepare(repo)
        site(repo, tmp / "before", "refs/bench/edited")
        kinds = ["full", "incremental"] + (["full, no history cache"] if args.cold else [])
        samples: dict[str, list[float]] = {kind: [] for kind in kinds}
        said: dict[str, str] = {}
        for run in range(args.runs + 1):  # the first round warms up
            for kind in kinds:
                out = tmp / "out"
                shutil.rmtree(out, ignore_errors=True)
                if kind == "incremental":
                    shutil.copytree(tmp / "before", out, symlinks=True)
                if kind.endswith("no history cache"):
                    (repo / HISTORY_CACHE).unlink(missing_ok=True)
                elapsed, said[kind] = site(repo, out, "refs/bench/promoted")
                if run:
                    samples[kind].append(elapsed)
    print(f"{args.commits:,} commits, {args.agents:,} agents × {args.files} files; "
          f"{os.cpu_count()} cores; median of {args.runs} runs (alternating), interpreter "
          "start included\n")
    print("| site | time (fastest) | stageline says |")
    print("|---|--:|---|")
    for kind, times in samples.items():
        print(f"| {kind} | {statistics.median(times):.2f} s ({min(times):.2f} s) | "
              f"{said[kind].partition(': ')[2]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
