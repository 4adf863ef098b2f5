"""Starting git: one function for a one-shot run, one class for a long-lived process
(and ``ssh-keygen``, the program git signs with).

Every git process stageline starts is made here, with the same command line and the
same environment, so that a later change reaches all of them:

* ``--no-replace-objects``: objects are read as they are; a replace ref
  (``refs/replace/...``) would otherwise let a push show the checks a decoy.
* ``--literal-pathspecs``: a path is a path, never a glob.
* the inherited environment, ``GIT_OBJECT_DIRECTORY`` and
  ``GIT_ALTERNATE_OBJECT_DIRECTORIES`` included: inside a pre-receive hook that is how
  the quarantined objects of the push are seen.

A missing git, a git older than ``MIN_VERSION`` and a failing git each become one
sentence (``RepositoryError``), with git's own message where it gave one.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import cache, wraps
from typing import IO, ParamSpec, TypeVar

from stageline.errors import RepositoryError

GIT = ("git", "--no-replace-objects", "--literal-pathspecs")
MIN_VERSION = (2, 30)
BATCH_COMMAND = (2, 36)  # cat-file --batch-command: one process for object names and contents
EMPTY_TREE = {40: "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
              64: "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321"}


class GitFailed(RepositoryError):
    """A git command failed; carries its stderr."""

    def __init__(self, args: Sequence[str], stderr: str) -> None:
        first = next((ln for ln in stderr.split("\n") if ln.strip()), "no message")
        super().__init__(f"git {args[0] if args else ''} failed: {first.strip()}")
        self.stderr = stderr


# Opt-in (STAGELINE_GIT_MALLOC=keep): glibc's malloc, left to itself, gives back to the
# system the memory of every large tree git frees and faults it in again for the next.
# Diffing 1,000 commits of an organization of 10,000 agents (directories of 10,000
# entries) took 395 ms alone and 303 ms with these tunables; at 1,000 agents 44 ms either
# way (docs/performance.md). Tunables the caller set come after ours, so they win.
_KEEP_MEMORY = "glibc.malloc.mmap_threshold=1048576:glibc.malloc.trim_threshold=16777216"


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every git process: the inherited one, and ``extra``. Output is
    read in large pieces, so git need not flush after each record (``GIT_FLUSH=0``):
    through a pipe that wakes this process once per commit of a long walk."""
    env = {**os.environ, "GIT_FLUSH": "0", **(extra or {})}
    if env.get("STAGELINE_GIT_MALLOC") == "keep":
        env["GLIBC_TUNABLES"] = ":".join(filter(None, (_KEEP_MEMORY,
                                                       env.get("GLIBC_TUNABLES"))))
    return env


def spawn(args: Sequence[str], cwd: str, env: Mapping[str, str] | None = None,
          stdin: int | None = subprocess.PIPE, stderr: int | None = subprocess.PIPE
          ) -> subprocess.Popen[bytes]:
    """Start ``git <args>``: the one place a git process is made."""
    try:
        return subprocess.Popen([*GIT, *args], cwd=cwd, stdin=stdin, stdout=subprocess.PIPE,
                                stderr=stderr, env=environment(env))
    except FileNotFoundError:
        if not os.path.isdir(cwd):
            raise RepositoryError(f"{cwd} is not a directory; pass --repo with a Git "
                                  "repository.") from None
        raise RepositoryError("git is not installed (or not on PATH); stageline needs git "
                              f"{'.'.join(map(str, MIN_VERSION))} or later.") from None


def run(args: Sequence[str], cwd: str, input: bytes | None = None,
        env: Mapping[str, str] | None = None, check: bool = True,
        timeout: float | None = None) -> bytes:
    """Run ``git <args>`` to the end; its output. A failure (with ``check``) raises
    ``GitFailed`` with git's first line of error; so does running out of ``timeout``."""
    proc = spawn(args, cwd, env, stdin=subprocess.PIPE if input is not None else
                 subprocess.DEVNULL)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise GitFailed(args, f"no answer within {timeout} seconds") from None
    if check and proc.returncode != 0:
        raise GitFailed(args, err.decode("utf-8", "replace"))
    return out


def ssh_keygen(args: Sequence[str], input: bytes | None = None,
               timeout: float = 30) -> tuple[int, bytes, bytes]:
    """Run ``ssh-keygen <args>``, the program git signs and verifies SSH signatures
    with: its exit status, output and errors (127 when it is not installed)."""
    try:
        proc = subprocess.run(["ssh-keygen", *args], input=input, capture_output=True,
                              timeout=timeout, env={**os.environ, "LC_ALL": "C"},
                              stdin=None if input is not None else subprocess.DEVNULL)
    except FileNotFoundError:
        return 127, b"", b"ssh-keygen is not installed"
    except subprocess.TimeoutExpired:
        return 124, b"", b"ssh-keygen did not answer"
    return proc.returncode, proc.stdout, proc.stderr


def succeeds(args: Sequence[str], cwd: str) -> bool:
    """Run a git command whose exit status is the answer."""
    proc = spawn(args, cwd, stdin=subprocess.DEVNULL)
    proc.communicate()
    return proc.returncode == 0


@cache
def version() -> tuple[int, ...]:
    """git's version, once per process; a git older than ``MIN_VERSION`` is refused."""
    out = run(["version"], "/")
    match = re.search(rb"(\d+)\.(\d+)(?:\.(\d+))?", out)
    found = tuple(int(n) for n in match.groups(default="0")) if match else (0,)
    if found < MIN_VERSION:
        shown = out.decode("utf-8", "replace").strip()
        raise RepositoryError(f"stageline needs git {'.'.join(map(str, MIN_VERSION))} or "
                              f"later; this is {shown or 'an unknown git'}.")
    return found


class Git:
    """A repository git is run in: the base of ``Store``, whose parts (reading, writing,
    walking, the work tree) are its subclasses. It owns the long-lived processes."""

    def __init__(self, git_dir: str, work_tree: str | None, object_format: str) -> None:
        from pathlib import Path

        self.git_dir = Path(git_dir)
        self.work_tree = Path(work_tree) if work_tree else None
        self.hexlen = 64 if object_format == "sha256" else 40
        self.null_oid = "0" * self.hexlen
        self.empty_tree = EMPTY_TREE[self.hexlen]  # git knows it without the object
        self._cwd = work_tree or git_dir
        self._procs: dict[str, BatchProcess] = {}

    def run(self, *args: str, input: bytes | None = None,
            env: Mapping[str, str] | None = None, check: bool = True) -> bytes:
        return run(args, self._cwd, input, env, check)

    def succeeds(self, *args: str) -> bool:
        return succeeds(args, self._cwd)

    def process(self, *args: str) -> BatchProcess:
        """The long-lived ``git <args>`` of this repository, started on first use."""
        key = " ".join(args)
        if key not in self._procs:
            self._procs[key] = BatchProcess(args, self._cwd)
        return self._procs[key]

    def close(self) -> None:
        procs = list(self._procs.values())
        self._procs.clear()
        # All are told to stop before any is waited for: they exit side by side.
        for proc in procs:
            proc.end_input()
        for proc in procs:
            proc.close()


class BatchProcess:
    """A long-lived git process fed requests on stdin (``cat-file --batch-command``,
    ``mktree --batch``). Its stderr is kept, so that when it stops answering the error
    names git's reason."""

    def __init__(self, args: Sequence[str], cwd: str) -> None:
        self.args = list(args)
        self.proc = spawn(args, cwd)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout
        self._errors: list[bytes] = []
        self._reader = threading.Thread(target=self._read_errors, daemon=True)
        self._reader.start()

    def _read_errors(self) -> None:
        assert self.proc.stderr is not None
        with contextlib.suppress(OSError, ValueError):
            self._errors.append(self.proc.stderr.read())

    def _stopped(self) -> GitFailed:
        with contextlib.suppress(OSError):
            self.proc.wait(timeout=5)
        self._reader.join(timeout=1)
        said = b"".join(self._errors).decode("utf-8", "replace")
        return GitFailed(self.args, said or "it stopped answering")

    def write(self, data: bytes) -> None:
        try:
            self.stdin.write(data)
            self.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise self._stopped() from None

    def readline(self) -> bytes:
        line = self.stdout.readline()
        if not line:
            raise self._stopped()
        return line

    def read(self, size: int) -> bytes:
        data = self.stdout.read(size)
        if data is None or len(data) != size:
            raise self._stopped()
        return data

    def end_input(self) -> None:
        """Close git's standard input: it finishes and exits."""
        with contextlib.suppress(OSError, ValueError):
            self.stdin.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.end_input()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def in_parallel(jobs: Sequence[Callable[[], object]]) -> None:
    """Run each job in its own thread, the first in this one; the first exception is
    raised once all have ended. Threads gain only while git works in its own
    processes: at most one job may use a store's long-lived git processes."""
    errors: list[BaseException] = []

    def attempt(job: Callable[[], object]) -> None:
        try:
            job()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    workers = [threading.Thread(target=attempt, args=(job,)) for job in jobs[1:]]
    for worker in workers:
        worker.start()
    try:
        attempt(jobs[0])
    finally:
        for worker in workers:
            worker.join()
    if errors:
        raise errors[0]


P = ParamSpec("P")
R = TypeVar("R")


def nogc(function: Callable[P, R]) -> Callable[P, R]:
    """Runs ``function`` without the cycle collector. Reading a long history builds
    hundreds of thousands of small objects, none in a cycle, and the collector would
    scan every one of them again each time their number grows by a quarter: a fifth of
    a first ``log`` run on 10,000 commits, a twentieth of ``status`` of 10,000 agents."""
    @wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()
    return wrapper
