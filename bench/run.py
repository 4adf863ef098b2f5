"""Time every stageline operation against a plain-git baseline, in one run.

    python bench/run.py [--sizes 100,1000,10000] [--files 40] [--runs 5]
                        [--push-commits 1000] [--commits 10000] [--history-agents 10000]
                        [--write-docs [--docs PATH]]

For each organization size N (bench/gen_org.py: N agents × F files in each of the
three environments, and a push of --push-commits commits ahead of ``main``):

* ``stageline promote agent-00000 --to staging`` in the bare repository, against
  a shell script doing the same tree replacement with git plumbing, and against
  the naive copy-and-commit in a clone; in a clone, against a path-limited
  ``git checkout`` of the replaced paths. Every run starts from the same state:
  ``main`` one development edit of agent-00000 ahead (the push's first commit,
  as bench/promote.py has it), reset before each run.
* ``stageline hook pre-receive`` on the whole push and on its first commit,
  against bench/hook.py's batched git calls.
* ``stageline status --json`` over all agents at the push's tip.
* ``stageline history agent-00000`` and ``stageline log --format jsonl`` (first
  run without the audit cache, then cached) on --commits commits, in an
  organization of min(N, --history-agents) agents.

and once: ``stageline --version`` against a bare interpreter start.

Each figure is the median of --runs runs after one warm-up, each run a new
process; peak memory is the child's ``ru_maxrss`` from ``wait4`` (the largest
resident set of the process or of any git process it waited for). Prints a
Markdown table; --write-docs also puts it in docs/performance.md between the
``bench:run`` markers, with the machine and the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from gen_org import agent_name, compile_package, generate  # noqa: E402
from history import CACHE  # noqa: E402
from hook import time_baseline as hook_baseline  # noqa: E402
from hook import time_in_process as hook_in_process  # noqa: E402
from promote import _git as git  # noqa: E402
from promote import time_in_process as promote_in_process  # noqa: E402

DOCS = BENCH.parent / "docs" / "performance.md"
START_MARK = "<!-- bench:run:start -->"
END_MARK = "<!-- bench:run:end -->"
AGENT = agent_name(0)
BRANCH = "refs/heads/main"

# The same tree replacement as 'stageline promote AGENT --to staging', with git
# plumbing only: new trees on the path root → environments → staging, the agent's
# approval dropped if there is one, one commit, a compare-and-swap ref update.
PLUMBING = r"""set -euo pipefail
agent=$1
branch=refs/heads/main
# stdin: an ls-tree listing; entry $1 becomes "$2" (mode type oid), or goes if "$2" is empty.
swap() {
  awk -F'\t' -v name="$1" -v entry="$2" '
    $2 == name { seen = 1; if (entry != "") print entry "\t" name; next }
    { print }
    END { if (!seen && entry != "") print entry "\t" name }'
}
old=$(git rev-parse --verify -q "$branch^{commit}")
dev=$(git rev-parse --verify -q "$old:environments/development/$agent")
staging=$(git ls-tree "$old:environments/staging" | swap "$agent" "040000 tree $dev" | git mktree)
envs=$(git ls-tree "$old:environments" | swap staging "040000 tree $staging" | git mktree)
approvals=keep
if git cat-file -e "$old:approvals/$agent.yaml" 2>/dev/null; then
  rest=$(git ls-tree "$old:approvals" | swap "$agent.yaml" "")
  approvals=
  if [ -n "$rest" ]; then
    approvals="040000 tree $(printf '%s\n' "$rest" | git mktree)"
  fi
fi
if [ "$approvals" = keep ]; then
  root=$(git ls-tree "$old" | swap environments "040000 tree $envs" | git mktree)
else
  root=$(git ls-tree "$old" | swap environments "040000 tree $envs" |
         swap approvals "$approvals" | git mktree)
fi
new=$(git commit-tree "$root" -p "$old" -m "Promote $agent to staging")
git update-ref "$branch" "$new" "$old"
"""

NAIVE = (f"rm -rf environments/staging/{AGENT} && "
         f"cp -r environments/development/{AGENT} environments/staging/ && "
         f"git add -A environments/staging/{AGENT} && "
         f"git commit -q -m 'Promote {AGENT} to staging'")


@dataclass
class Sample:
    seconds: float            # median of the timed runs
    peak_kb: int | None       # peak resident set in KB; None: not measured
    peak_exact: bool = True   # False: an upper bound (see run_child)


@dataclass
class Row:
    operation: str
    agents: int | None
    stageline: Sample
    baseline: str
    base: Sample


class Failed(Exception):
    """A benchmarked command failed or did not do what its baseline does."""


def _gnu_time() -> str | None:
    """/usr/bin/time if it is GNU time (``-f %M -o FILE``), else None."""
    path = "/usr/bin/time"
    if not os.access(path, os.X_OK):
        return None
    with tempfile.NamedTemporaryFile() as mem:
        proc = subprocess.run([path, "-f", "%M", "-o", mem.name, "true"], capture_output=True)
        try:
            int(Path(mem.name).read_text().split()[-1])
        except (ValueError, IndexError, OSError):
            return None
    return path if proc.returncode == 0 else None


TIME = _gnu_time()


def run_child(argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None,
              stdin: bytes | None = None, memory: bool = False
              ) -> tuple[float, int, int, bytes, bytes]:
    """Run one process: (wall seconds, peak resident set in KB, exit code, stdout, stderr).

    A child's ``ru_maxrss`` starts from the resident set of the process that forked
    it (this interpreter), so with ``memory`` and GNU time present the command runs
    under ``/usr/bin/time -f %M``, which reports its own child's figure (and adds
    its own start, about a millisecond, to the time). Otherwise the figure comes
    from ``os.wait4`` on the child, which is exact only when it exceeds this
    process's own peak (see ``measure``). Output goes to files rather than pipes,
    so the child is reaped with ``wait4`` directly.
    """
    wrapped = TIME is not None and memory
    with tempfile.TemporaryFile() as inp, tempfile.TemporaryFile() as out, \
            tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile() as mem:
        if stdin is not None:
            inp.write(stdin)
            inp.seek(0)
        command = [TIME, "-f", "%M", "-o", mem.name, *argv] if wrapped and TIME else list(argv)
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err,
                                stdin=inp if stdin is not None else subprocess.DEVNULL)
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        peak = usage.ru_maxrss
        if wrapped:
            # GNU time writes "Command exited with non-zero status N" before the figure.
            peak = int(Path(mem.name).read_text().split()[-1])
        out.seek(0)
        err.seek(0)
        return elapsed, peak, proc.returncode, out.read(), err.read()


def measure(argv: Sequence[str], cwd: Path, runs: int, *, setup: Callable[[], None] | None = None,
            ok: Callable[[bytes], bool] = lambda out: True, env: dict[str, str] | None = None,
            stdin: bytes | None = None) -> Sample:
    """One warm-up, then ``runs`` timed runs, each a new process after ``setup``.

    With GNU time the peak memory comes from the warm-up, run under it, so that the
    timed runs carry no wrapper. Without it, the peak is the largest ``wait4``
    figure over the timed runs, and when that does not exceed this process's own
    peak it may be this process's and is only an upper bound.
    """
    samples, peaks = [], []
    for i in range(runs + 1):
        if setup is not None:
            setup()
        seconds, peak, code, out, err = run_child(argv, cwd, env, stdin, memory=i == 0)
        if code != 0 or not ok(out):
            raise Failed(f"{shlex.join(argv)} (in {cwd}) failed with exit code {code}:\n"
                         f"{err.decode(errors='replace')}{out.decode(errors='replace')[-2000:]}")
        if i:
            samples.append(seconds)
        if (i == 0) == (TIME is not None):
            peaks.append(peak)
    if TIME is not None:
        return Sample(statistics.median(samples), peaks[0])
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return Sample(statistics.median(samples), max(peaks), max(peaks) > own)


def stageline_command() -> list[str]:
    """The installed ``stageline`` command beside this interpreter, as users run it."""
    script = Path(sys.executable).parent / "stageline"
    return [str(script)] if script.exists() else [sys.executable, "-m", "stageline"]


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the organizations ----------------------------------------------------------------


def make_org(path: Path, agents: int, files: int, commits: int) -> tuple[str, list[str]]:
    """Generate an organization; (main's initial commit, the push's commits, oldest first)."""
    begin = time.perf_counter()
    generate(path, agents, files, commits)
    for key, value in (("user.name", "Alice Dev"), ("user.email", "alice@bench.test"),
                       ("gc.auto", "0")):
        git(path, "config", key, value)
    base = git(path, "rev-parse", BRANCH)
    chain = git(path, "rev-list", "--reverse", "refs/bench/push", "--not", base).split()
    progress(f"  generated {agents:,} agents × {files} files, {commits:,} commits "
             f"in {time.perf_counter() - begin:.1f} s")
    return base, chain


def tree_of(repo: Path, rev: str = BRANCH) -> str:
    return git(repo, "rev-parse", f"{rev}^{{tree}}")


# -- the benchmarks -------------------------------------------------------------------


def bench_promote(tmp: Path, bare: Path, start: str, n: int, runs: int) -> list[Row]:
    """Promotion in the bare repository and in a clone, every run from ``start``."""
    sl = stageline_command()
    promote = [*sl, "--as", "alice", "promote", AGENT, "--to", "staging"]
    promoted: Callable[[bytes], bool] = lambda out: b"promoted" in out  # noqa: E731
    script = tmp / "plumbing.sh"
    script.write_text(PLUMBING)

    def reset_bare() -> None:
        git(bare, "update-ref", BRANCH, start)

    git(bare, "update-ref", BRANCH, start)
    clone = tmp / f"clone-{n}"
    begin = time.perf_counter()
    subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True)
    for key, value in (("user.name", "Alice Dev"), ("user.email", "alice@bench.test"),
                       ("gc.auto", "0")):
        git(clone, "config", key, value)
    progress(f"  cloned in {time.perf_counter() - begin:.1f} s")

    def reset_clone() -> None:
        git(clone, "update-ref", BRANCH, start)
        git(clone, "reset", "-q", "--hard", start)

    progress("  promote: stageline (bare)")
    sl_bare = measure(promote, bare, runs, setup=reset_bare, ok=promoted)
    expected = tree_of(bare)
    progress("  promote: plumbing script (bare)")
    plumbing = measure(["bash", str(script), AGENT], bare, runs, setup=reset_bare)
    if tree_of(bare) != expected:
        raise Failed("the plumbing script made another tree than stageline")
    progress("  promote: stageline in-process, alternating with the plumbing script")
    reset_bare()
    promote_in_process(bare)  # imports
    mine, theirs = [], []
    for _ in range(runs):
        reset_bare()
        mine.append(promote_in_process(bare))
        reset_bare()
        seconds, _peak, code, _out, err = run_child(["bash", str(script), AGENT], bare)
        if code != 0:
            raise Failed(f"the plumbing script failed: {err.decode(errors='replace')}")
        theirs.append(seconds)
    progress("  promote: naive copy and commit (clone)")
    naive = measure(["bash", "-c", NAIVE], clone, runs, setup=reset_clone)
    if tree_of(clone) != expected:
        raise Failed("the naive copy and commit made another tree than stageline")
    progress("  promote: stageline (clone)")
    sl_clone = measure(promote, clone, runs, setup=reset_clone, ok=promoted)
    new = git(clone, "rev-parse", BRANCH)
    if tree_of(clone, new) != expected or git(clone, "status", "--porcelain"):
        raise Failed("stageline's promotion in the clone left another state")
    progress("  promote: git checkout of the replaced paths (clone)")
    checkout = measure(["git", "checkout", new, "--", f"environments/staging/{AGENT}"], clone,
                       runs, setup=reset_clone)
    if git(clone, "write-tree") != expected:
        raise Failed("the path-limited checkout made another tree than stageline")
    reset_clone()
    shutil.rmtree(clone)
    what = f"`promote {AGENT} --to staging`"
    return [
        Row(f"{what}, bare repository", n, sl_bare, "plumbing script", plumbing),
        Row(f"{what}, bare repository, in-process", n, Sample(statistics.median(mine), None),
            "plumbing script", Sample(statistics.median(theirs), None)),
        Row(f"{what}, bare repository", n, sl_bare, "naive, in a clone", naive),
        Row(f"{what}, clone", n, sl_clone, "naive, in a clone", naive),
        Row(f"{what}, clone", n, sl_clone, "path-limited checkout", checkout),
    ]


def bench_hook(bare: Path, base: str, chain: list[str], n: int, runs: int) -> list[Row]:
    """The pre-receive hook as a server runs it (the way bench/hook.py does)."""
    git(bare, "update-ref", BRANCH, base)
    env = dict(os.environ, REMOTE_USER="sam", GIT_DIR=".")
    hook = [sys.executable, "-P", "-m", "stageline", "hook", "pre-receive"]
    rows = []
    for label, new in ((f"{len(chain):,}-commit push", chain[-1]), ("1-commit push", chain[0])):
        progress(f"  hook: {label}")
        line = f"{base} {new} {BRANCH}\n".encode()
        ours = measure(hook, bare, runs, env=env, stdin=line)
        hook_baseline(bare, base, new, 1)  # warm-up
        theirs = Sample(hook_baseline(bare, base, new, runs), None)
        rows.append(Row(f"`hook pre-receive`, {label}", n, ours, "batched git calls", theirs))
        # The hook's own work beside the same git calls, both in this process, run
        # alternately so that the machine's load weighs on both alike.
        mine, git_only = [], []
        for _ in range(runs):
            mine.append(hook_in_process(bare, base, new, 1))
            git_only.append(hook_baseline(bare, base, new, 1))
        rows.append(Row(f"`hook pre-receive`, {label}, in-process", n,
                        Sample(statistics.median(mine), None), "batched git calls",
                        Sample(statistics.median(git_only), None)))
    return rows


def bench_status(bare: Path, tip: str, n: int, runs: int) -> list[Row]:
    git(bare, "update-ref", BRANCH, tip)
    (bare / CACHE).unlink(missing_ok=True)
    progress("  status --json")

    def all_agents(out: bytes) -> bool:
        return len(json.loads(out)["agents"]) == n

    ours = measure([*stageline_command(), "status", "--json"], bare, runs, ok=all_agents)
    theirs = measure(["git", "log", "-r", "--raw", "--no-renames", "--format=%H %ae%n%B",
                      BRANCH, "--", "environments"], bare, runs)
    return [Row("`status --json`, all agents", n, ours, "git log --raw", theirs)]


def bench_history(repo: Path, tip: str, agents: int, commits: int, runs: int) -> list[Row]:
    git(repo, "update-ref", BRANCH, tip)
    sl = stageline_command()
    cache = repo / CACHE

    def drop_cache() -> None:
        cache.unlink(missing_ok=True)

    progress(f"  history and log on {commits:,} commits, {agents:,} agents")
    history = measure([*sl, "history", AGENT], repo, runs)
    walk = measure(["git", "log", "--first-parent", "--format=%H %ae %at", BRANCH, "--",
                    f"environments/production/{AGENT}"], repo, runs)
    logged: Callable[[bytes], bool] = lambda out: out.count(b"\n") > 1  # noqa: E731
    cold = measure([*sl, "log", "--format", "jsonl"], repo, runs, setup=drop_cache, ok=logged)
    warm = measure([*sl, "log", "--format", "jsonl"], repo, runs, ok=logged)
    diffs = measure(["git", "log", "--first-parent", "-r", "--raw", "--no-renames",
                     "--format=%H %ae%n%B", BRANCH], repo, runs)
    drop_cache()
    on = f"{commits:,} commits"
    return [
        Row(f"`history {AGENT}`, {on}", agents, history, "git log -- path", walk),
        Row(f"`log --format jsonl`, {on}, first run", agents, cold, "git log --raw", diffs),
        Row(f"`log --format jsonl`, {on}, cached", agents, warm, "git log --raw", diffs),
    ]


def bench_startup(tmp: Path, runs: int) -> list[Row]:
    progress("start-up: --version")
    ours = measure([*stageline_command(), "--version"], tmp, runs)
    theirs = measure([sys.executable, "-c", "pass"], tmp, runs)
    return [Row("`--version`", None, ours, "python -c pass", theirs)]


# -- the report -----------------------------------------------------------------------


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:,.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def _mb(sample: Sample) -> str:
    if sample.peak_kb is None:
        return "—"
    return f"{sample.peak_kb / 1024:.0f}" if sample.peak_exact else f"≤ {sample.peak_kb / 1024:.0f}"


def _ratio(a: float, b: float) -> str:
    r = a / b
    return f"{r:.0f}×" if r >= 100 else f"{r:.2g}×"


def table(rows: list[Row]) -> str:
    lines = ["| operation | agents | stageline | baseline | baseline time | ratio "
             "| peak MB | baseline peak MB |",
             "|---|--:|--:|---|--:|--:|--:|--:|"]
    for r in rows:
        agents = "—" if r.agents is None else f"{r.agents:,}"
        lines.append(f"| {r.operation} | {agents} | {_ms(r.stageline.seconds)} | {r.baseline} "
                     f"| {_ms(r.base.seconds)} | {_ratio(r.stageline.seconds, r.base.seconds)} "
                     f"| {_mb(r.stageline)} | {_mb(r.base)} |")
    return "\n".join(lines) + "\n"


def machine() -> str:
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() \
        if shutil.which("nproc") else str(os.cpu_count())
    git_version = subprocess.run(["git", "--version"], capture_output=True,
                                 text=True).stdout.strip().removeprefix("git version ")
    return (f"{cores} cores (`nproc`), {platform.machine()} (`uname -m`), "
            f"Python {platform.python_version()}, git {git_version}")


def load() -> str:
    """The one-minute load average, or a dash where the system does not tell."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "—"


def command_line(argv: Sequence[str]) -> str:
    script = Path(argv[0]).resolve()
    try:
        shown = str(script.relative_to(BENCH.parent))
    except ValueError:
        shown = argv[0]
    return shlex.join(["python", shown, *argv[1:]])


def section(rows: list[Row], args: argparse.Namespace, argv: Sequence[str],
            total: float, loads: tuple[str, str]) -> str:
    push = f"{args.push_commits:,}"
    runs = f"{args.runs} run" + ("s" if args.runs != 1 else "")
    memory = ("`/usr/bin/time -f %M` around each command's warm-up run" if TIME else
              "`ru_maxrss` from `wait4` over the timed runs; a figure marked ≤ did not exceed "
              "the benchmark's own resident set, which a child's figure starts from, and is "
              "an upper bound")
    took = f"{total / 60:.1f} minutes" if total >= 60 else f"{total:.0f} seconds"
    return f"""
## Every operation against a plain-git baseline

`{command_line(argv)}` measured every figure below in one run of
{took}, on {machine()}. The one-minute load average was {loads[0]} at the start and
{loads[1]} at the end (the benchmark itself keeps about one core busy): figures taken on
a busier machine are higher.

Organizations: `bench/gen_org.py` makes N agents × {args.files} files in each of the three
environments and a push of {push} commits ahead of `main` (development edits, promotions,
approvals, releases). Each figure is the median of {runs} after one warm-up, each
run a new process (interpreter start included). Promotions start from `main` one
development edit of {AGENT} ahead, reset before every run of every approach. Status runs
at the push's tip; history and log on a branch of {args.commits:,} commits in an
organization of min(N, {args.history_agents:,}) agents (the agents column says which).
**ratio** is stageline's time divided by the baseline's (below 1: stageline is faster).
**peak MB** is the largest resident set of the process or of any git process it started:
{memory}. The commands run as the installed `stageline`, its bytecode compiled first as
installing a wheel does; the hook as a server runs it, `python -P -m stageline hook
pre-receive` in the bare repository with the update on stdin.

{table(rows)}
Baselines:

* **plumbing script**: the same tree replacement in a shell script, in the same bare
  repository: `git ls-tree` / `git mktree` on the path root → environments → staging,
  the agent's approval dropped if there is one, `git commit-tree`, and `git update-ref`
  with the old value. The resulting tree is checked to be stageline's. The *in-process*
  promotion row calls `stageline.cli.run` in the benchmark's own process (imports paid
  by a warm-up call), alternating with the script run by run: what promoting costs
  without the interpreter's start and imports, beside what plain git needs.
* **naive, in a clone**: `rm -rf environments/staging/{AGENT} && cp -r
  environments/development/{AGENT} environments/staging/ && git add -A
  environments/staging/{AGENT} && git commit`, in a clone of the organization.
* **path-limited checkout**: `git checkout <promotion commit> --
  environments/staging/{AGENT}` in the clone: the index and working-tree update alone.
* **batched git calls**: `bench/hook.py`'s `rev-list | diff-tree --stdin` and one
  `cat-file --batch-check` over the `commit:path` lookups, run from the benchmark's own
  process (hence no peak memory). The *in-process* rows call the hook's
  `pre_receive` in that same process, alternating with the baseline: no interpreter
  start and no imports on either side, so the ratio is what judging adds to git's work.
* **git log --raw**: for status, `git log -r --raw -- environments` over the branch; for
  the log, `git log --first-parent -r --raw` over the branch: the diffs alone.
* **git log -- path**: `git log --first-parent -- environments/production/{AGENT}`, git's
  path-limited walk alone.
* **python -c pass**: the interpreter's own start.
"""


def write_docs(path: Path, text: str) -> None:
    doc = path.read_text(encoding="utf-8")
    starts, ends = doc.count(START_MARK), doc.count(END_MARK)
    if starts == ends == 0:
        before, after = doc.rstrip("\n") + "\n\n", "\n"
    elif starts == ends == 1 and doc.index(START_MARK) < doc.index(END_MARK):
        before = doc[:doc.index(START_MARK)]
        after = doc[doc.index(END_MARK) + len(END_MARK):]
    else:
        raise Failed(f"{path}: expected one {START_MARK} line before one {END_MARK} line")
    path.write_text(before + START_MARK + "\n" + text.lstrip("\n") + END_MARK + after,
                    encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000",
                        help="organization sizes in agents, comma-separated")
    parser.add_argument("--files", type=int, default=40, help="files per agent per environment")
    parser.add_argument("--runs", type=int, default=5, help="timed runs after one warm-up")
    parser.add_argument("--push-commits", type=int, default=1000,
                        help="commits in the push the hook checks")
    parser.add_argument("--commits", type=int, default=10000,
                        help="commits on the branch for history and log")
    parser.add_argument("--history-agents", type=int, default=10000,
                        help="at most this many agents in the history organization")
    parser.add_argument("--write-docs", action="store_true",
                        help="write the results into the documentation")
    parser.add_argument("--docs", type=Path, default=DOCS, help="the file --write-docs updates")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if (not sizes or min(sizes) < 1 or args.runs < 1 or args.push_commits < 1
            or args.commits < 1 or args.history_agents < 1 or args.files < 2):
        parser.error("sizes, runs, commits and history agents must be positive, files ≥ 2")
    if args.write_docs and not args.docs.is_file():
        parser.error(f"{args.docs} does not exist")
    begin = time.perf_counter()
    load_at_start = load()
    rows: list[Row] = []
    try:
        compile_package()
        with tempfile.TemporaryDirectory(prefix="stageline-bench-") as name:
            tmp = Path(name)
            measured_history: set[int] = set()
            for n in sizes:
                progress(f"N = {n:,} agents")
                bare = tmp / f"org-{n}.git"
                base, chain = make_org(bare, n, args.files, args.push_commits)
                rows += bench_promote(tmp, bare, chain[0], n, args.runs)
                rows += bench_hook(bare, base, chain, n, args.runs)
                rows += bench_status(bare, chain[-1], n, args.runs)
                agents = min(n, args.history_agents)
                if agents not in measured_history:
                    measured_history.add(agents)
                    repo = tmp / f"history-{agents}.git"
                    _base, history = make_org(repo, agents, args.files, args.commits)
                    rows += bench_history(repo, history[-1], agents, args.commits, args.runs)
                    shutil.rmtree(repo)
                shutil.rmtree(bare)
            rows += bench_startup(tmp, args.runs)
    except Failed as exc:
        print(f"bench/run.py: {exc}", file=sys.stderr)
        return 1
    order = {op: i for i, op in enumerate(dict.fromkeys((r.operation, r.baseline) for r in rows))}
    rows.sort(key=lambda r: (order[(r.operation, r.baseline)], r.agents or 0))
    total = time.perf_counter() - begin
    print(f"{machine()}; median of {args.runs} run{'s' if args.runs != 1 else ''} after one warm-up; "
          f"{total:.0f} s in all; load average {load_at_start} at the start, {load()} at the end\n")
    print(table(rows), end="")
    if args.write_docs:
        write_docs(args.docs, section(rows, args, sys.argv if argv is None else
                                      ["bench/run.py", *argv], total,
                                      (load_at_start, load())))
        print(f"\nwrote {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
