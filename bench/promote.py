"""Time one promotion to staging in organizations of different sizes.

    python bench/promote.py [--sizes 10,1000,10000] [--files 8] [--runs 5]

For each size, bench/gen_org.py makes an organization (every agent in all three
environments) plus one development edit of the first agent; then
``stageline promote agent-00000 --to staging`` runs in the bare repository and in
a clone, a new interpreter each time, the branch reset before each run. Prints a
Markdown table of medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gen_org import generate  # noqa: E402


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.strip()


def time_promote(repo: Path, start: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        _git(repo, "update-ref", "refs/heads/main", start)
        if (repo / ".git").exists():
            _git(repo, "reset", "-q", "--hard", start)
        begin = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "stageline", "--repo", str(repo), "--as",
                               "alice", "promote", "agent-00000", "--to", "staging"],
                              capture_output=True, text=True)
        samples.append(time.perf_counter() - begin)
        if proc.returncode != 0 or "promoted" not in proc.stdout:
            raise SystemExit(f"promotion failed: {proc.stderr}")
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,1000,10000")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="stageline-bench-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            bare = Path(tmp) / f"org-{size}.git"
            generate(bare, size, args.files, commits=1)
            start = _git(bare, "rev-parse", "refs/bench/push")
            _git(bare, "update-ref", "refs/heads/main", start)
            clone = Path(tmp) / f"clone-{size}"
            subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True)
            for repo in (bare, clone):
                _git(repo, "config", "user.email", "alice@bench.test")
            rows.append((size, time_promote(bare, start, args.runs),
                         time_promote(clone, start, args.runs)))
    print(f"{args.files} files per agent in each of 3 environments; {os.cpu_count()} cores; "
          f"median of {args.runs} runs, interpreter start included\n")
    print("| agents | files in the repository | promote (bare) | promote (clone) |")
    print("|---|---|---|---|")
    for size, bare_t, clone_t in rows:
        print(f"| {size:,} | {size * args.files * 3:,} | {bare_t * 1000:.0f} ms "
              f"| {clone_t * 1000:.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
