"""Time one promotion to staging in organizations of different sizes.

    python bench/promote.py [--sizes 10,1000,10000] [--files 8] [--runs 5]
                            [--vs-checkout] [--repos DIR]

For each size, bench/gen_org.py makes an organization (every agent in all three
environments) plus one development edit of the first agent; then
``stageline promote agent-00000 --to staging`` runs in the bare repository and in
a clone, a new interpreter each time, the branch reset before each run. Prints a
Markdown table of medians.

With ``--vs-checkout``, each run in the clone is followed, on the same repository
and the same state, by what plain git does for the same paths: ``git checkout NEW
-- <promoted paths>`` (path-limited; it reads and writes the whole index as any
index update does). The table then adds the clone's extra cost over the bare
repository (the index and work-tree update: the lock, the check for uncommitted
changes, the sync) and its ratio to the checkout; the ratio of medians of
interleaved runs holds up on a busy machine where absolute times do not.
``--repos DIR`` keeps the generated repositories there and reuses them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gen_org import compile_package, generate  # noqa: E402

AGENT = "agent-00000"
PATHS = (f"environments/staging/{AGENT}", f"approvals/{AGENT}.yaml")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.strip()


def _reset(repo: Path, start: str) -> None:
    _git(repo, "update-ref", "refs/heads/main", start)
    if (repo / ".git").exists():
        _git(repo, "reset", "-q", "--hard", start)


def _promote(repo: Path) -> tuple[float, str]:
    begin = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "stageline", "--repo", str(repo), "--as",
                           "alice", "promote", AGENT, "--to", "staging"],
                          capture_output=True, text=True)
    took = time.perf_counter() - begin
    if proc.returncode != 0 or "promoted" not in proc.stdout:
        raise SystemExit(f"promotion failed: {proc.stderr}")
    return took, _git(repo, "rev-parse", "refs/heads/main")


def time_in_process(repo: Path) -> float:
    """One promotion called in this process (``stageline.cli.run``, imports already
    paid by an earlier call): the promotion's own work, without interpreter start."""
    import contextlib
    import io

    from stageline.cli import run

    out = io.StringIO()
    begin = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = run(["--repo", str(repo), "--as", "alice", "promote", AGENT, "--to", "staging"])
    took = time.perf_counter() - begin
    if code != 0 or "promoted" not in out.getvalue():
        raise SystemExit(f"promotion failed (exit {code}): {out.getvalue()}")
    return took


def _checkout(repo: Path, start: str, new: str) -> float:
    """``git checkout NEW -- <paths>`` from the state a promotion starts from."""
    _reset(repo, start)
    _git(repo, "update-ref", "refs/heads/main", new)  # HEAD at NEW, index and files at start
    paths = [p for p in PATHS if _git(repo, "ls-tree", "--name-only", new, "--", p)
             or _git(repo, "ls-files", "--", p)]
    begin = time.perf_counter()
    subprocess.run(["git", "checkout", new, "--", *paths], cwd=repo, check=True,
                   capture_output=True)
    return time.perf_counter() - begin


@dataclass
class Row:
    size: int
    bare: float
    clone: float
    checkout: float | None = None


def measure(bare: Path, clone: Path, start: str, runs: int, vs_checkout: bool) -> Row:
    bare_t, clone_t, checkout_t = [], [], []
    for _ in range(runs):
        _reset(bare, start)
        bare_t.append(_promote(bare)[0])
        _reset(clone, start)
        took, new = _promote(clone)
        clone_t.append(took)
        if vs_checkout:
            checkout_t.append(_checkout(clone, start, new))
    _reset(clone, start)
    return Row(0, statistics.median(bare_t), statistics.median(clone_t),
               statistics.median(checkout_t) if checkout_t else None)


def prepare(where: Path, size: int, files: int) -> tuple[Path, Path, str]:
    bare = where / f"org-{size}-{files}.git"
    clone = where / f"clone-{size}-{files}"
    if not bare.exists():
        generate(bare, size, files, commits=1)
    start = _git(bare, "rev-parse", "refs/bench/push")
    _git(bare, "update-ref", "refs/heads/main", start)
    if not clone.exists():
        subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True)
    for repo in (bare, clone):
        _git(repo, "config", "user.email", "alice@bench.test")
    return bare, clone, start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,1000,10000")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--vs-checkout", action="store_true",
                        help="also time a path-limited git checkout of the same paths")
    parser.add_argument("--repos", help="keep the generated repositories here and reuse them")
    args = parser.parse_args(argv)
    compile_package()
    rows = []
    with tempfile.TemporaryDirectory(prefix="stageline-bench-") as tmp:
        where = Path(args.repos) if args.repos else Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        for size in (int(s) for s in args.sizes.split(",")):
            bare, clone, start = prepare(where, size, args.files)
            row = measure(bare, clone, start, args.runs, args.vs_checkout)
            row.size = size
            rows.append(row)
    print(f"{args.files} files per agent in each of 3 environments; {os.cpu_count()} cores; "
          f"median of {args.runs} runs, interpreter start included\n")
    if not args.vs_checkout:
        print("| agents | files in the repository | promote (bare) | promote (clone) |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r.size:,} | {r.size * args.files * 3:,} | {r.bare * 1000:.0f} ms "
                  f"| {r.clone * 1000:.0f} ms |")
        return 0
    print("| agents | files in the repository | promote (bare) | promote (clone) "
          "| clone − bare | git checkout NEW -- paths | (clone − bare) / checkout |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        assert r.checkout is not None
        extra = r.clone - r.bare
        print(f"| {r.size:,} | {r.size * args.files * 3:,} | {r.bare * 1000:.0f} ms "
              f"| {r.clone * 1000:.0f} ms | {extra * 1000:.0f} ms | {r.checkout * 1000:.0f} ms "
              f"| {extra / r.checkout:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
