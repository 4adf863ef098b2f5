"""The server's entry points: pre-receive, post-receive and ``verify``.

``pre_receive`` reads the push's ref updates, judges each (``judge.Enforcer``) and prints
one line per violation; ``post_receive`` appends what pre-receive judged as protected to
the push log; ``verify`` judges a range of commits in a CI clone as a push would be. A
hook installed before stageline's runs first, as git would run it. Any error rejects the
push (fail closed). Kept free of click, so that the hook starts quickly.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from stageline.errors import UsageError
from stageline.git.objects import short_ref
from stageline.git.store import Store
from stageline.layout import POLICY_FILE, PUSH_LOG
from stageline.policy import DEFAULT_IDENTITY_ENV, Policy, PolicyError, first_set
from stageline.rules import Violation
from stageline.server.judge import Enforcer, RefUpdate, parse_updates

if TYPE_CHECKING:
    from stageline.progress import Progress

MAX_LINES_SHOWN = 25


def _prefix(env: Mapping[str, str]) -> str:
    return "GL-HOOK-ERR: " if env.get("GL_ID") or env.get("GL_USERNAME") else ""


def report(violations: Sequence[Violation], lead: str = "", prefix: str = "") -> list[str]:
    """The lines a refusal prints: one per violation, the first ``MAX_LINES_SHOWN``
    (the hook's, with ``lead`` naming the push, and guard's alike)."""
    lines = [f"{prefix}stageline: {lead}{v.line()}" for v in violations[:MAX_LINES_SHOWN]]
    if len(violations) > MAX_LINES_SHOWN:
        lines.append(f"{prefix}stageline: ... and {len(violations) - MAX_LINES_SHOWN} more "
                     "violations.")
    return lines


def run_chained(chain: str | None, stdin: bytes) -> int:
    """Run a hook that was installed before ours, with the same input; its status counts.
    As git runs hooks: a script without a ``#!`` line (the kernel refuses it, ENOEXEC) is
    run by ``sh``."""
    if not chain or not os.path.isfile(chain) or not os.access(chain, os.X_OK):
        return 0
    try:
        return subprocess.run([chain], input=stdin).returncode
    except OSError as exc:
        if exc.errno != errno.ENOEXEC:
            raise
        return subprocess.run(["sh", chain], input=stdin).returncode


def pre_receive(stdin: bytes, env: Mapping[str, str], chain: str | None = None,
                record: bool = False) -> int:
    """The pre-receive hook: 0 accepts the push, 1 rejects it. Any error rejects it.

    With ``record`` (the installed shim passes it, beside stageline's post-receive), the
    updates it judged as protected are kept for post-receive to log (``JUDGED_DIR``)."""
    try:
        status = run_chained(chain, stdin)
        if status != 0:
            return status
        updates = parse_updates(stdin.decode("utf-8", "surrogateescape"))
        rejected = False
        with Store.open(".") as store:
            enforcer = Enforcer(store)
            verdicts = [(update, enforcer.check(update, env)) for update in updates]
            if enforcer.policy_changed and len(updates) > 1:
                # Every ref of a push is judged by the policies before it: the others would
                # escape the rules the new policy brings (a branch it protects, created in
                # the same push, would be judged as unprotected).
                changed = short_ref(enforcer.policy_changed[0])
                verdicts = [(u, v or [Violation(None, None, f"a push that changes "
                                                            f"stageline.yaml on {changed} may "
                                                            "update no other ref",
                                                "push the other refs on their own")])
                            for u, v in verdicts]
            for update, violations in verdicts:
                if violations:
                    rejected = True
                    for line in report(violations, f"push to {short_ref(update.ref)} rejected: ",
                                       _prefix(env)):
                        print(line, file=sys.stderr)
            if record and not rejected:
                _sweep(store, enforcer)
                _keep_judged(store, _push_key(stdin, env), enforcer.judged)
        return 1 if rejected else 0
    except Exception as exc:  # noqa: BLE001 - fail closed, one sentence, no traceback
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        print(f"{_prefix(env)}stageline: push rejected because the check itself failed "
              f"({message}); nothing was changed. Tell the server's administrator.",
              file=sys.stderr)
        return 1


def post_receive(stdin: bytes, env: Mapping[str, str], chain: str | None = None) -> int:
    """Record each accepted update of a protected branch in the server's push log: those
    pre-receive judged as protected (its record of this push), or, when it left none (a
    pre-receive without ``--record``), every update of a branch."""
    try:
        try:
            run_chained(chain, stdin)
        except OSError as exc:  # its failure is its own; the push is still logged
            print(f"stageline: the chained hook {chain} could not run ({exc.strerror}).",
                  file=sys.stderr)
        updates = parse_updates(stdin.decode("utf-8", "surrogateescape"))
        with Store.open(".") as store:
            judged = _take_judged(store, _push_key(stdin, env))
            if judged is None:
                enforcer = Enforcer(store)
                judged = []
                for update in updates:
                    if update.ref.startswith("refs/heads/"):
                        policy = enforcer.policies.at(update.old or update.new).policy
                        found = first_set(policy.identity_env if policy is not None
                                          else DEFAULT_IDENTITY_ENV, env)
                        judged.append({"ref": update.ref, "old": update.old, "new": update.new,
                                       "pusher": found[1] if found else None})
            if judged:
                _append_log(store, judged)
        return 0
    except Exception as exc:  # noqa: BLE001 - the push is done; say what was not recorded
        print(f"stageline: the push was accepted but not recorded in {PUSH_LOG} "
              f"({type(exc).__name__}: {exc}).", file=sys.stderr)
        return 0


JUDGED_DIR = "stageline-judged"  # in the server repository: pre-receive's records for post-receive
_LEFT_OVER = 60  # seconds after which a record no post-receive took is swept into the log


def _push_key(stdin: bytes, env: Mapping[str, str]) -> str:
    """One push's name, the same in its pre-receive and post-receive: its updates and the
    server's word for who pushes (so that two people pushing the same update apart)."""
    import hashlib

    who = "\0".join(env.get(name, "") for name in ("GL_ID", *DEFAULT_IDENTITY_ENV))
    return hashlib.sha256(stdin + b"\0" + who.encode("utf-8", "surrogateescape")).hexdigest()


def _keep_judged(store: Store, key: str, judged: list[dict[str, object]]) -> None:
    """Write pre-receive's record of this push (an error rejects the push: an accepted
    update of a protected branch that the log would miss is a hole in the audit)."""
    folder = store.git_dir / JUDGED_DIR
    folder.mkdir(exist_ok=True)
    tmp = folder / f"{key}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(judged), encoding="utf-8")
    os.replace(tmp, folder / f"{key}.json")


def _sweep(store: Store, enforcer: Enforcer) -> None:
    """Log the updates of records that no post-receive took: git runs post-receive only
    after it reports to the client, so a client that hangs up after sending its push
    leaves the branch updated and the log without it. A record older than a minute whose
    updates reached their branch (the branch is there or has moved on from it) is logged
    now, marked ``late``; one whose push never completed is dropped."""
    folder = store.git_dir / JUDGED_DIR
    if not folder.is_dir():
        return
    now = time.time()
    late = []
    for path in folder.glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            if now - path.stat().st_mtime < _LEFT_OVER:
                continue
            records = json.loads(path.read_text(encoding="utf-8"))
            path.unlink()
            for r in records if isinstance(records, list) else []:
                tip = enforcer.policies.branches().get(str(r.get("ref")))
                new = r.get("new")
                if tip and isinstance(new, str) and (tip == new or store.is_ancestor(new, tip)):
                    late.append({**r, "late": True})
    if late:
        _append_log(store, late)


def _append_log(store: Store, records: Sequence[Mapping[str, object]]) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data = "".join(json.dumps({"time": now, **r}, sort_keys=True) + "\n" for r in records)
    fd = os.open(store.git_dir / PUSH_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def _take_judged(store: Store, key: str) -> list[dict[str, object]] | None:
    path = store.git_dir / JUDGED_DIR / f"{key}.json"
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    path.unlink(missing_ok=True)
    if not isinstance(records, list):
        return None
    return records


def verify(store: Store, old: str, new: str, ref: str | None, pusher: str | None,
           progress: Progress | None = None) -> tuple[str, list[Violation], Policy | None]:
    """The server's rules over ``old..new``, judged as an update of ``ref`` (``verify``),
    and the policy at ``old`` they were judged by."""
    old_oid = store.resolve(old)
    new_oid = store.resolve(new)
    if old_oid is None or new_oid is None:
        missing = old if old_oid is None else new
        raise UsageError(f"{missing!r} names no commit in this repository.")
    enforcer = Enforcer(store, progress)
    policy = enforcer.policies.at(old_oid).policy
    if ref is None:
        if policy is None:
            raise PolicyError(f"there is no valid {POLICY_FILE} at {old}; cannot verify.")
        ref = f"refs/heads/{policy.protected_branches[0]}"
    elif not ref.startswith("refs/"):
        ref = f"refs/heads/{ref}"
    default, tip = _default_of_clone(store, policy)
    # the range is judged as a push whose old tip is OLD: when it updates the default
    # branch, OLD is that branch's tip, whatever the clone last fetched
    enforcer.policies.use_default(default, old_oid if default == ref else tip)
    violations = enforcer.check(RefUpdate(old_oid, new_oid, ref), None, pusher,
                                force_protected=True)
    return ref, violations, policy


def _default_of_clone(store: Store, policy: Policy | None) -> tuple[str | None, str | None]:
    """The server's default branch as a CI clone knows it, so that verify judges by the
    organization's policy as the hook does: ``origin/HEAD``, else the first branch the
    policy at OLD protects that the clone has (``origin/<name>``, else ``<name>``).
    Returned as the server names it (``refs/heads/<name>``), with its tip."""
    remote = store.run("symbolic-ref", "-q", "refs/remotes/origin/HEAD", check=False)
    names = [remote.decode("utf-8", "surrogateescape").strip()] if remote.strip() else []
    if policy is not None:
        names += [f"refs/remotes/origin/{b}" for b in policy.protected_branches]
        names += [f"refs/heads/{b}" for b in policy.protected_branches]
    for name in names:
        tip = store.resolve(name)
        if tip is not None:
            short = name.removeprefix("refs/remotes/origin/").removeprefix("refs/heads/")
            return f"refs/heads/{short}", tip
    return None, None


def main(kind: str, args: Sequence[str]) -> int:
    """``stageline hook pre-receive|post-receive [--chain PATH]``, as the shim runs it.

    Kept free of click so that the hook starts quickly.
    """
    chain = None
    rest = list(args)
    if rest[:1] == ["--chain"] and len(rest) >= 2:
        chain, rest = rest[1], rest[2:]
    record = "--record" in rest and kind == "pre-receive"
    if record:
        rest.remove("--record")
    if rest:
        print(f"stageline: unexpected arguments {' '.join(rest)!r} for hook {kind}.",
              file=sys.stderr)
        return 2
    stdin = sys.stdin.buffer.read()
    if kind == "pre-receive":
        return pre_receive(stdin, dict(os.environ), chain, record)
    return post_receive(stdin, dict(os.environ), chain)
