"""Time ``history`` and ``log`` on a branch of 10,000 commits (bench/site.py times ``site``).

    python bench/history.py [--agents 1000] [--commits 10000] [--runs 3]

bench/gen_org.py makes the organization and a history of C commits (development
edits, promotions, approvals, production pushes); each command then runs in a new
interpreter in the bare repository. The whole-organization log is timed on a first
run (no audit cache) and once its cache exists. Prints a Markdown table of medians.
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
from gen_org import compile_package, generate  # noqa: E402

CACHE = "stageline-audit-cache.jsonl"


def timed(repo: Path, args: list[str], runs: int, cold: bool = False) -> tuple[float, int]:
    samples, lines = [], 0
    for _ in range(runs):
        if cold:
            (repo / CACHE).unlink(missing_ok=True)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "stageline", "--repo", str(repo), *args],
                              capture_output=True, text=True)
        samples.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"stageline {' '.join(args)} failed: {proc.stderr}")
        lines = len(proc.stdout.splitlines())
    return statistics.median(samples), lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--commits", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    compile_package()
    with tempfile.TemporaryDirectory(prefix="stageline-bench-") as tmp:
        repo = Path(tmp) / "org.git"
        generate(repo, args.agents, args.files, args.commits)
        subprocess.run(["git", "update-ref", "refs/heads/main", "refs/bench/push"], cwd=repo,
                       check=True)
        rows = [(name, *timed(repo, cmd, args.runs, cold)) for name, cmd, cold in [
            ("history agent-00000 (production)", ["history", "agent-00000"], False),
            ("history agent-00000 --env development", ["history", "agent-00000", "--env",
                                                       "development"], False),
            ("log (whole organization, first run)", ["log", "--format", "jsonl"], True),
            ("log (whole organization, cached)", ["log", "--format", "jsonl"], False),
            ("log --agent agent-00000", ["log", "--agent", "agent-00000", "--format", "jsonl"],
             False),
        ]]
    print(f"{args.commits:,} commits, {args.agents:,} agents × {args.files} files; "
          f"{os.cpu_count()} cores; median of {args.runs} runs, interpreter start included\n")
    print("| command | time | lines of output |")
    print("|---|---|---|")
    for name, seconds, lines in rows:
        print(f"| `{name}` | {seconds * 1000:.0f} ms | {lines:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
