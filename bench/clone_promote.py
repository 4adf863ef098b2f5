"""Time a promotion in a clone beside the bare repository, the naive copy and the floor.

    python bench/clone_promote.py [--agents 2000] [--files 20] [--runs 9]
                                  [--repos DIR] [--old SRC] [--trace]

bench/gen_org.py makes an organization (every agent in all three environments) and one
development edit of agent-00000; a bare copy and a clone of it are reset to that state
before every run (``update-ref``, and in the clone ``git reset --hard``). Each round
runs every command once, one after the other, so that the machine's load weighs on all
alike (as bench/ab.py does); each command runs once to warm up first. The commands:

* **bare**: ``stageline promote agent-00000 --to staging`` in the bare repository;
* **clone**: the same in the clone (with ``--old SRC``, also **clone, old**: the same
  run with ``PYTHONPATH=SRC``, e.g. ``git archive COMMIT src | tar -x -C /tmp/old``
  and ``--old /tmp/old/src``);
* **naive**: ``rm -r`` staging's copy, ``cp -r`` development's, ``git add -A``,
  ``git commit``, in the clone;
* **floor, index**: ``git update-index -z --index-info`` of the entries the promotion
  changes: one read and one write of the whole index, nothing else;
* **floor, files**: ``git checkout-index -a -f`` of the changed files from an index that
  holds only them: writing the files, without the large index;
* **checkout**: ``git checkout NEW -- <replaced paths>``: git's own path-limited update,
  the index read and written once and the files, in one process.

The floor is the sum of the two floor commands: what any tool that keeps a clone's index
and files in step must spend. Prints medians (and the fastest run) in milliseconds, and
the clone's cost over the bare repository against the floor. ``--trace`` adds, for one
run of each stageline command in the clone, every git process it started and its time
(``GIT_TRACE2_EVENT``). ``--repos DIR`` keeps the generated repositories and reuses them.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gen_org import agent_name, compile_package, generate  # noqa: E402

AGENT = agent_name(0)
BRANCH = "refs/heads/main"
PATHS = (f"environments/staging/{AGENT}", f"approvals/{AGENT}.yaml")
NAIVE = (f"rm -r environments/staging/{AGENT} && "
         f"cp -r environments/development/{AGENT} environments/staging/ && "
         f"git add -A environments/staging/{AGENT} && "
         f"git commit -q -m 'Promote {AGENT} to staging'")


def git(repo: Path, *args: str, input: bytes | None = None,
        env: dict[str, str] | None = None) -> bytes:
    return subprocess.run(["git", *args], cwd=repo, input=input, capture_output=True,
                          check=True, env={**os.environ, **(env or {})}).stdout


def rev(repo: Path, spec: str) -> str:
    return git(repo, "rev-parse", spec).decode().strip()


@dataclass
class Command:
    name: str
    argv: list[str]
    cwd: Path
    setup: Callable[[], None]
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes | None = None
    check: Callable[[], None] | None = None
    times: list[float] = field(default_factory=list)

    def run(self, extra_env: dict[str, str] | None = None) -> float:
        self.setup()
        env = {**os.environ, **self.env, **(extra_env or {})}
        begin = time.perf_counter()
        proc = subprocess.run(self.argv, cwd=self.cwd, input=self.stdin, capture_output=True,
                              env=env)
        took = time.perf_counter() - begin
        if proc.returncode != 0:
            raise SystemExit(f"{self.name}: {shlex.join(self.argv)} failed:\n"
                             f"{proc.stderr.decode(errors='replace')}")
        if self.check is not None:
            self.check()
        return took

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def prepare(where: Path, agents: int, files: int) -> tuple[Path, Path, str]:
    """The bare organization and its clone, both at the development edit."""
    bare = where / f"org-{agents}x{files}.git"
    clone = where / f"clone-{agents}x{files}"
    if not bare.exists():
        generate(bare, agents, files, commits=1)
    start = rev(bare, "refs/bench/push")
    git(bare, "update-ref", BRANCH, start)
    if not clone.exists():
        subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True)
    for repo in (bare, clone):
        for key, value in (("user.name", "Alice Dev"), ("user.email", "alice@bench.test"),
                           ("gc.auto", "0")):
            git(repo, "config", key, value)
    git(clone, "reset", "-q", "--hard", start)
    # A clone's checkout leaves the entries of files written in its last moments
    # "racily clean" (re-read by every later command); a clone in use has none.
    time.sleep(1.1)
    git(clone, "update-index", "-q", "--refresh")
    return bare, clone, start


def changed_entries(repo: Path, start: str, new: str) -> list[tuple[str, str, str]]:
    """(mode, oid, path) of what the promotion changed; mode "0" for a deletion."""
    out = git(repo, "diff-tree", "-r", "-z", "--no-renames", start, new).split(b"\0")
    entries = []
    for meta, path in zip(out[:-1:2], out[1::2], strict=True):
        _old_mode, mode, _old_oid, oid, status = meta.decode().lstrip(":").split(" ")
        deleted = status == "D"
        entries.append(("0" if deleted else mode, "0" * len(oid) if deleted else oid,
                        path.decode("utf-8", "surrogateescape")))
    return entries


def trace(command: Command, tmp: Path) -> list[tuple[float, str]]:
    """(seconds, command line) of every git process one run of ``command`` started."""
    log = tmp / f"trace-{command.name.replace(' ', '-').replace(',', '')}.json"
    log.unlink(missing_ok=True)
    command.run({"GIT_TRACE2_EVENT": str(log)})
    starts: dict[str, str] = {}
    found = []
    for line in log.read_text().split("\n"):
        if not line:
            continue
        event = json.loads(line)
        if event["event"] == "start":
            starts[event["sid"]] = shlex.join(event["argv"][3:])[:110]
        elif event["event"] == "exit" and event["sid"] in starts:
            found.append((event["t_abs"], starts[event["sid"]]))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--repos", help="keep the generated repositories here and reuse them")
    parser.add_argument("--old", help="also run the stageline package found in this directory")
    parser.add_argument("--trace", action="store_true",
                        help="list the git processes of one promotion in the clone")
    args = parser.parse_args(argv)
    compile_package()
    if args.old and not compileall.compile_dir(args.old, quiet=1):
        raise SystemExit(f"could not compile {args.old}")
    with tempfile.TemporaryDirectory(prefix="stageline-bench-") as tmp_name:
        tmp = Path(tmp_name)
        where = Path(args.repos) if args.repos else tmp
        where.mkdir(parents=True, exist_ok=True)
        bare, clone, start = prepare(where, args.agents, args.files)
        load = os.getloadavg()[0]
        commands = bench(bare, clone, start, tmp, args)
        load_end = os.getloadavg()[0]
        traces = ([(c.name, trace(c, tmp)) for c in commands if c.name.startswith("clone")]
                  if args.trace else [])
        git(clone, "reset", "-q", "--hard", start)
        index_mb = (clone / ".git" / "index").stat().st_size / 1e6
    print(f"{args.agents:,} agents × {args.files} files × 3 environments "
          f"({args.agents * args.files * 3:,} files, index {index_mb:.1f} MB); "
          f"{os.cpu_count()} cores; load average {load:.1f} at the start, {load_end:.1f} "
          f"at the end; median of {args.runs} alternating runs\n")
    by_name = {c.name: c for c in commands}
    for c in commands:
        print(f"{c.median * 1000:8.1f} ms  (fastest {min(c.times) * 1000:6.1f})  {c.name}")
    floor = by_name["floor, index"].median + by_name["floor, files"].median
    bare_t = by_name["bare"].median
    print(f"\n{floor * 1000:8.1f} ms  floor (index + files)")
    for name in ("clone", "clone, old"):
        if name in by_name:
            extra = by_name[name].median - bare_t
            print(f"{extra * 1000:8.1f} ms  {name} − bare: {extra / floor:.2f}× the floor")
    for name, processes in traces:
        print(f"\ngit processes of one run ({name}): {sum(t for t, _ in processes) * 1000:.0f} "
              "ms in all")
        for seconds, line in processes:
            print(f"{seconds * 1000:8.1f} ms  {line}")
    return 0


def bench(bare: Path, clone: Path, start: str, tmp: Path,
          args: argparse.Namespace) -> list[Command]:
    promote = [sys.executable, "-m", "stageline", "--as", "alice", "promote", AGENT,
               "--to", "staging"]

    def reset_bare() -> None:
        git(bare, "update-ref", BRANCH, start)

    def reset_clone() -> None:
        git(clone, "update-ref", BRANCH, start)
        git(clone, "reset", "-q", "--hard", start)

    reset_bare()
    first = Command("bare", promote, bare, reset_bare)
    first.run()
    new = rev(bare, BRANCH)
    git(clone, "fetch", "-q", str(bare), BRANCH)  # the commit, for the baselines to check out
    expected = rev(bare, f"{new}^{{tree}}")
    entries = changed_entries(bare, start, new)
    index_info = "".join(f"{m} {o}\t{p}\0" for m, o, p in entries).encode("utf-8",
                                                                          "surrogateescape")
    small_index = tmp / "changed-only.index"
    small_index.unlink(missing_ok=True)
    written = [(m, o, p) for m, o, p in entries if m != "0"]
    git(clone, "update-index", "-z", "--index-info",
        input="".join(f"{m} {o}\t{p}\0" for m, o, p in written).encode(),
        env={"GIT_INDEX_FILE": str(small_index)})

    def clone_done() -> None:
        if (rev(clone, f"{BRANCH}^{{tree}}") != expected
                or git(clone, "status", "--porcelain", "-z", "--untracked-files=all")):
            raise SystemExit("the promotion in the clone left another state")

    def naive_done() -> None:
        if rev(clone, f"{BRANCH}^{{tree}}") != expected:
            raise SystemExit("the naive copy and commit made another tree")

    def reset_to_new() -> None:
        reset_clone()
        # HEAD at the promotion, the index and files at the edit: as stageline's sync finds it
        git(clone, "update-ref", BRANCH, new)

    replaced = [p for p in PATHS if git(clone, "ls-tree", "--name-only", new, "--", p)
                or git(clone, "ls-tree", "--name-only", start, "--", p)]
    commands = [
        first,
        Command("clone", promote, clone, reset_clone, check=clone_done),
    ]
    if args.old:
        commands.append(Command("clone, old", promote, clone, reset_clone,
                                env={"PYTHONPATH": args.old}, check=clone_done))
    commands += [
        Command("naive", ["bash", "-c", NAIVE], clone, reset_clone, check=naive_done),
        Command("floor, index", ["git", "update-index", "-z", "--index-info"], clone,
                reset_to_new, stdin=index_info),
        Command("floor, files", ["git", "checkout-index", "-a", "-f"], clone, reset_to_new,
                env={"GIT_INDEX_FILE": str(small_index)}),
        Command("checkout", ["git", "checkout", new, "--", *replaced], clone, reset_to_new),
    ]
    for command in commands:
        command.run()  # warm-up
    for _ in range(args.runs):
        for command in commands:
            command.times.append(command.run())
    reset_bare()
    return commands


if __name__ == "__main__":
    sys.exit(main())
