"""Time the pre-receive hook on a 1,000-commit push and a one-commit push.

    python bench/hook.py [--agents 1000] [--commits 1000] [--runs 5]
    python bench/hook.py --repo ORG.git [--base REV] [--runs 5]

Generates an organization (bench/gen_org.py), then runs the hook exactly as a
Git server does, a new interpreter each time (``python -P -m stageline hook
pre-receive`` in the bare repository, the ref update on stdin, the pusher in
``REMOTE_USER``), and, beside it, the batched git calls alone that any checker
needs: ``rev-list | diff-tree --stdin -t`` plus one ``cat-file --batch-check`` over
the ``commit:path`` lookups and one ``cat-file --batch`` of the objects to check,
alternating with the hook called in this process (no interpreter start, no imports):
the ratio is what judging adds to git's work.
Prints a Markdown table of medians.
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


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True,
                          check=True).stdout


def time_hook(repo: Path, old: str, new: str, runs: int) -> float:
    env = dict(os.environ, REMOTE_USER="sam", GIT_DIR=".")
    line = f"{old} {new} refs/heads/main\n".encode()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-P", "-m", "stageline", "hook", "pre-receive"],
                              cwd=repo, input=line, capture_output=True, env=env)
        samples.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"the hook rejected the benchmark push:\n{proc.stderr.decode()}")
    return statistics.median(samples)


def time_in_process(repo: Path, old: str, new: str, runs: int) -> float:
    """The hook's own work, called in this process (no interpreter start, no imports):
    what it adds to the batched git calls below."""
    import contextlib
    import io

    from stageline.server.hooks import pre_receive

    env = dict(os.environ, REMOTE_USER="sam")
    line = f"{old} {new} refs/heads/main\n".encode()
    samples = []
    here = os.getcwd()
    os.chdir(repo)
    try:
        for i in range(runs + 1):  # the first run imports what judging needs
            err = io.StringIO()
            start = time.perf_counter()
            with contextlib.redirect_stderr(err):
                code = pre_receive(line, env)
            if i:
                samples.append(time.perf_counter() - start)
            if code != 0:
                raise SystemExit(f"the hook rejected the benchmark push:\n{err.getvalue()}")
    finally:
        os.chdir(here)
    return statistics.median(samples)


def time_baseline(repo: Path, old: str, new: str, runs: int) -> float:
    """The git work any checker of these rules needs: the commits and their first-parent
    diffs with the directories' own entries (-t: a directory's state is its tree id),
    the agent trees looked up by path, every new tree and the commits read (to check them
    well-formed, as git fsck would), and every changed file under environments/ and
    settings/ read (to scan for secrets)."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        listing = _git(repo, "rev-list", "--parents", new, "--not", old)
        feed = b"".join(b" ".join(line.split()[:2]) + b"\n" for line in listing.split(b"\n")
                        if line)
        raw = _git(repo, "diff-tree", "--stdin", "-r", "-t", "--root", "-z", "--no-renames",
                   stdin=feed)
        lookups, objects = [], [line.split()[0] for line in listing.split(b"\n") if line]
        tokens = raw.split(b"\0")
        commit = b""
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if tok.startswith(b":"):
                _old_mode, new_mode, _old, new_oid, _status = tok[1:].split(b" ")
                path = tokens[i + 1]
                parts = path.split(b"/")
                if new_mode == b"040000" or path.startswith((b"environments/", b"settings/")) \
                        and new_mode.startswith(b"100"):
                    objects.append(new_oid)
                if len(parts) > 3:
                    for env in (b"development", b"staging", b"production"):
                        lookups.append(commit + b":environments/" + env + b"/" + parts[2])
                i += 2
            else:
                commit = tok
                i += 1
        _git(repo, "cat-file", "--batch-check", stdin=b"\n".join(lookups) + b"\n")
        _git(repo, "cat-file", "--batch", stdin=b"\n".join(dict.fromkeys(objects)) + b"\n")
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def alternating(repo: Path, old: str, new: str, runs: int) -> tuple[float, float]:
    """The hook in-process and the batched git calls, one run of each in turn (the
    machine's load weighs on both alike): their medians."""
    mine, theirs = [], []
    for _ in range(runs):
        mine.append(time_in_process(repo, old, new, 1))
        theirs.append(time_baseline(repo, old, new, 1))
    return statistics.median(mine), statistics.median(theirs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--repo", type=Path,
                        help="an organization bench/gen_org.py made (with --commits), reused")
    parser.add_argument("--base", default="refs/heads/main",
                        help="with --repo: where the push starts (default: main)")
    args = parser.parse_args(argv)
    compile_package()
    with tempfile.TemporaryDirectory(prefix="stageline-bench-") as tmp:
        repo, made = args.repo, 0.0
        if repo is None:
            repo = Path(tmp) / "org.git"
            start = time.perf_counter()
            generate(repo, args.agents, args.files, args.commits)
            made = time.perf_counter() - start
        repo = repo.resolve()
        old = _git(repo, "rev-parse", args.base).decode().strip()
        new = _git(repo, "rev-parse", "refs/bench/push").decode().strip()
        chain = _git(repo, "rev-list", "--reverse", new, "--not", old).split()
        first = chain[0].decode()
        rows = [(f"{len(chain)}-commit push", time_hook(repo, old, new, args.runs),
                 *alternating(repo, old, new, args.runs)),
                ("1-commit push", time_hook(repo, old, first, args.runs),
                 *alternating(repo, old, first, args.runs))]
    where = f"{args.repo}" if args.repo else (
        f"{args.agents} agents × {args.files} files in 3 environments, generated in "
        f"{made:.1f} s")
    print(f"organization: {where}; {os.cpu_count()} cores; median of {args.runs} runs\n")
    print("| push | stageline hook (interpreter start included) | hook in-process "
          "| batched git calls alone | in-process ÷ git calls |")
    print("|---|---|---|---|---|")
    for name, hook, inside, base in rows:
        print(f"| {name} | {hook * 1000:.0f} ms | {inside * 1000:.0f} ms | {base * 1000:.0f} ms "
              f"| {inside / base:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
