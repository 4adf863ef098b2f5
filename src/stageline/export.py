"""Deployment bundles: the committed production agents as one JSON file each.

``stageline export --out DIR [AGENT...]`` writes ``DIR/<agent>.json`` for every
agent in production (or the named ones) at the tip of the protected branch, or
at an earlier commit of it (``--ref``). It only reads objects: it works the same
in a bare server repository and in a clone, never looks at a working tree and
needs no actor.

A bundle is canonical JSON (sorted keys, no spaces, UTF-8, one trailing
newline), so the same commit always gives the same bytes::

    {"agent": "support-bot", "commit": "<id>", "environment": "production",
     "executable": ["bin/run.sh"],
     "files": {"agent.yaml": "name: support-bot\\n...", "logo.png": {"base64": "..."}},
     "format": "stageline.bundle/1",
     "settings": {"BILLING_API_TOKEN": "vault://billing/api-token"},
     "sha256": "<hex>", "tree": "<production tree id>"}

``sha256`` is the SHA-256 of the canonical JSON (without the trailing newline)
of the bundle without its ``sha256`` key. ``settings`` are the values of
``settings/production.yaml`` that the agent's files reference as
``${settings.NAME}``; secret references such as ``vault://...`` are values like
any other, so they stay references: stageline never sees a secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stageline.errors import Blocked, CheckFailed, RepositoryError, UsageError
from stageline.git.objects import short_ref
from stageline.git.store import Store
from stageline.git.worktree import crash_point
from stageline.layout import (
    ENV_ROOT,
    EXECUTABLE_MODE,
    POLICY_FILE,
    REGULAR_MODES,
    check_agent_name,
    file_text,
    is_agent_name,
    mode_name,
)
from stageline.policy import PolicyError, parse_policy
from stageline.settings import parse_settings, references, settings_path
from stageline.workspace import Workspace, on_branch

FORMAT = "stageline.bundle/1"
FORMAT_FAMILY = "stageline.bundle/"
ENVIRONMENT = "production"
TEMP_SUFFIX = ".stageline-tmp"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Bundle:
    """One agent's bundle: its canonical bytes and what a summary shows of them."""

    agent: str
    tree: str
    sha256: str
    data: bytes


@dataclass(frozen=True)
class Exported:
    agent: str
    tree: str
    sha256: str
    path: Path
    written: bool  # False: the same bytes were already there

    def to_json(self) -> dict[str, Any]:
        return {"agent": self.agent, "tree": self.tree, "sha256": self.sha256,
                "path": str(self.path), "written": self.written}


@dataclass(frozen=True)
class Export:
    """What an export did."""

    ref: str  # the protected branch whose history holds the commit
    commit: str
    out: Path
    agents: tuple[Exported, ...]
    removed: tuple[Path, ...]  # stale bundles of agents no longer exported

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "commit": self.commit, "environment": ENVIRONMENT,
                "format": FORMAT, "out": str(self.out),
                "agents": [a.to_json() for a in self.agents],
                "removed": [str(p) for p in self.removed]}


def canonical(value: Any) -> bytes:
    """The one JSON encoding of a bundle: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def bundle_digest(bundle: Mapping[str, Any]) -> str:
    """The ``sha256`` a bundle carries: of its canonical JSON without that key."""
    return hashlib.sha256(canonical({k: v for k, v in bundle.items() if k != "sha256"}))\
        .hexdigest()


def export(store: Store, out: Path, agents: Sequence[str] = (), rev: str | None = None,
           progress: Progress | None = None, allow_unpushed: bool = False) -> Export:
    """Write the bundles of the production agents (all, or ``agents``) into ``out``.

    Everything is read and checked before the first byte is written: a refusal
    leaves ``out`` as it was. A clone's branch ahead of the branch it tracks holds
    states the server has not accepted: refused unless ``allow_unpushed``.
    """
    wanted = sorted({check_agent_name(a) for a in agents})
    ref, commit = source(store, rev)
    tracking = store.tracking(ref) if rev is None and not allow_unpushed else None
    if tracking is not None and tracking.ahead:
        raise Blocked(f"{short_ref(ref)} is {tracking.ahead} commit(s) ahead of "
                      f"{tracking.upstream.removeprefix('refs/remotes/')}: the bundles would "
                      "hold states the server has not accepted; push first, or pass "
                      "--allow-unpushed.")
    bundles = build(store, commit, wanted)
    existing = _existing_bundles(out, {b.agent: b.data for b in bundles})
    return _write(out, ref, commit, bundles, existing, progress)


def source(store: Store, rev: str | None) -> tuple[str, str]:
    """``(protected branch ref, commit)``: the branch's tip, or ``rev`` when it is a
    commit of the branch's first-parent history (the states the server accepted)."""
    head = store.resolve("HEAD")
    if head is None:
        raise RepositoryError("HEAD names no commit, so the policy naming the protected "
                              "branch cannot be read; point HEAD at that branch (in a bare "
                              "repository: git symbolic-ref HEAD refs/heads/main).")
    data = store.blob_at(head, POLICY_FILE)
    if data is None:
        raise PolicyError(f"there is no {POLICY_FILE} at HEAD; this is not a stageline "
                          "repository.")
    policy = parse_policy(data)
    branch = policy.protected_branches[0]
    ref = _branch_ref(store, branch)
    if ref is None:
        raise RepositoryError(f"the protected branch {branch} is not in this repository; fetch "
                              f"it, or create it with 'git branch {branch} origin/{branch}'.")
    tip = store.resolve(ref)
    assert tip is not None
    if rev is None:
        return ref, tip
    commit = store.resolve(rev)
    if commit is None:
        raise UsageError(f"{rev!r} names no commit in this repository.")
    if not on_branch(Workspace(store, ref, tip, policy), commit):
        raise Blocked(f"{rev} is not a commit of {short_ref(ref)}'s history, so its "
                      "production never went through the server's checks; export a commit "
                      f"from 'git log --first-parent {short_ref(ref)}'.")
    return ref, commit


def _branch_ref(store: Store, branch: str) -> str | None:
    """The local branch (names match case-insensitively, as the hook's do), else the one
    remote-tracking branch of that name (a CI checkout often has no local branch)."""
    refs = store.refs("refs/heads/", "refs/remotes/")
    exact = f"refs/heads/{branch}"
    if exact in refs:
        return exact
    local = [r for r in refs if r.startswith("refs/heads/") and r.lower() == exact.lower()]
    if len(local) == 1:
        return local[0]
    remote = [r for r in refs if r.startswith("refs/remotes/")
              and r.split("/", 3)[-1] == branch]
    return remote[0] if len(remote) == 1 else None


def build(store: Store, commit: str, wanted: Sequence[str] = ()) -> list[Bundle]:
    """The bundles of the production agents at ``commit`` (all, or ``wanted``).

    Two git processes whatever the number of agents: one listing of the
    production tree and one batch read of every file in it.
    """
    prod = store.tree_at(commit, f"{ENV_ROOT}/{ENVIRONMENT}")
    trees = {name: e.oid for name, e in (store.read_tree(prod) if prod else {}).items()
             if e.is_tree}
    missing = [a for a in wanted if a not in trees]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise Blocked(f"{missing[0]}{more} is not in production at {commit[:12]}; promote it "
                      "to production first, or leave it out.")
    names = list(wanted) or sorted(trees)
    for name in names:
        if not is_agent_name(name):
            raise CheckFailed(f"{ENV_ROOT}/{ENVIRONMENT}/{name} is not a valid agent name, so "
                              "it cannot be exported; rename it in development and promote it.")
    listing: dict[str, list[tuple[str, str, str]]] = {name: [] for name in names}
    for mode, oid, path in (store.files(prod) if prod and names else []):
        name, _, rest = path.partition("/")
        if name in listing and rest:
            listing[name].append((mode, oid, rest))
    for name, files in listing.items():
        for mode, _oid, path in files:
            _check_entry(name, mode, path)
    oids = sorted({oid for files in listing.values() for _m, oid, _p in files})
    blobs: dict[str, bytes] = {}
    for oid, obj in zip(oids, store.read_objects(oids), strict=True):
        if obj is None or obj[0] != "blob":
            raise RepositoryError(f"object {oid} of production cannot be read; the repository "
                                  "is incomplete (run 'git fsck').")
        blobs[oid] = obj[1]
    settings = _production_settings(store, commit)
    return [_bundle(name, commit, trees[name], files, blobs, settings)
            for name, files in listing.items()]


def _check_entry(agent: str, mode: str, path: str) -> None:
    where = f"{ENV_ROOT}/{ENVIRONMENT}/{agent}/{path}"
    if mode not in REGULAR_MODES:
        kind = mode_name(mode)
        raise CheckFailed(f"{where} is {kind}; a bundle holds regular files only, so remove it "
                          "in development and promote the agent again.")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise CheckFailed(f"{where.encode('utf-8', 'surrogateescape')!r} is not a UTF-8 file "
                          "name; rename it in development and promote the agent again.") from None


def _production_settings(store: Store, commit: str) -> dict[str, Any]:
    values, problem = parse_settings(store.blob_at(commit, settings_path(ENVIRONMENT)),
                                     ENVIRONMENT)
    if problem:
        raise RepositoryError(f"{problem} Ask an org-admin to fix it.")
    return values


def _setting(settings: Mapping[str, Any], name: str) -> Any:
    """A referenced setting's value, when JSON can hold it."""
    value = settings[name]
    if isinstance(value, float) and not math.isfinite(value):
        raise RepositoryError(f"{settings_path(ENVIRONMENT)}: {name} is not a finite number, "
                              "which JSON cannot hold. Ask an org-admin to fix it.")
    return value


def _bundle(agent: str, commit: str, tree: str, files: Iterable[tuple[str, str, str]],
            blobs: Mapping[str, bytes], settings: Mapping[str, Any]) -> Bundle:
    content: dict[str, Any] = {}
    executable: list[str] = []
    used: dict[str, Any] = {}
    for mode, oid, path in files:
        data = blobs[oid]
        text = file_text(data)
        content[path] = text if text is not None else {
            "base64": base64.b64encode(data).decode("ascii")}
        if mode == EXECUTABLE_MODE:
            executable.append(path)
        for name, line in references(text or ""):
            if name not in settings:
                raise CheckFailed(f"{ENV_ROOT}/{ENVIRONMENT}/{agent}/{path}:{line} refers to "
                                  f"${{settings.{name}}}, which {settings_path(ENVIRONMENT)} "
                                  "does not define; ask an org-admin to define it.")
            used[name] = _setting(settings, name)
    bundle: dict[str, Any] = {
        "format": FORMAT,
        "agent": agent,
        "environment": ENVIRONMENT,
        "commit": commit,
        "tree": tree,
        "files": content,
        "executable": sorted(executable),
        "settings": used,
    }
    digest = bundle_digest(bundle)
    bundle["sha256"] = digest
    return Bundle(agent, tree, digest, canonical(bundle) + b"\n")


def is_bundle(name: str, data: bytes) -> bool:
    """Whether a file ``name`` holding ``data`` is a bundle stageline wrote: named
    ``<agent>.json``, a JSON object of a bundle format for that agent."""
    agent = name.removesuffix(".json")
    if agent == name or not is_agent_name(agent):
        return False
    try:
        doc = json.loads(data)
    except ValueError:
        return False
    return (isinstance(doc, dict) and isinstance(doc.get("format"), str)
            and doc["format"].startswith(FORMAT_FAMILY) and doc.get("agent") == agent)


def _existing_bundles(out: Path, new: Mapping[str, bytes]) -> dict[str, tuple[Path, bool]]:
    """The bundles already in ``out``: agent → (path, whether it already holds ``new``'s
    bytes for that agent). Refuses when ``out`` holds any other ``.json`` file, which an
    export must neither overwrite nor leave beside its bundles."""
    if not out.exists():
        return {}
    if not out.is_dir():
        raise UsageError(f"{out} is not a directory; pass --out a directory.")
    found: dict[str, tuple[Path, bool]] = {}
    try:
        entries = sorted(out.iterdir())
    except OSError as exc:
        raise RepositoryError(f"cannot read {out}: {exc.strerror}.") from None
    for path in entries:
        if not path.name.lower().endswith(".json"):
            continue
        agent = path.name[:-5]
        data = None
        try:
            if path.is_file() and not path.is_symlink():  # never follow a link
                data = path.read_bytes()
        except OSError:
            pass
        same = data is not None and new.get(agent) == data  # our own bytes: no need to parse
        if data is None or not (same or is_bundle(path.name, data)):
            raise Blocked(f"{path} is not a stageline bundle, and {out} may hold nothing but "
                          "bundles; move it away or export to another directory.")
        found[agent] = (path, same)
    return found


def _write(out: Path, ref: str, commit: str, bundles: Sequence[Bundle],
           existing: Mapping[str, tuple[Path, bool]], progress: Progress | None) -> Export:
    """New bundles first, each replacing its file by a rename; then the stale ones go.

    Every bundle is written to a temporary file beside its target and made
    durable before any rename, so a crash leaves every file whole (old or new)
    and running the export again completes the set.
    """
    exported = []
    pending: list[tuple[Path, Path]] = []  # (temporary, target)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for leftover in out.glob(f".*.json.*{TEMP_SUFFIX}"):
            leftover.unlink(missing_ok=True)  # of an export that was killed
        mode = 0o666 & ~_umask()  # as open() would create it, not mkstemp's 0600
        for i, bundle in enumerate(bundles, 1):
            target = out / f"{bundle.agent}.json"
            same = existing.get(bundle.agent, (target, False))[1]
            if not same:
                fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX,
                                            dir=out)
                pending.append((Path(name), target))
                with os.fdopen(fd, "wb") as fh:
                    fh.write(bundle.data)
                os.chmod(name, mode)
            exported.append(Exported(bundle.agent, bundle.tree, bundle.sha256, target, not same))
            if progress is not None:
                progress(i, len(bundles))
        _fsync_all([temp for temp, _target in pending])
        crash_point("export-before-rename")
        pending.reverse()
        while pending:
            temp, target = pending[-1]
            os.replace(temp, target)
            pending.pop()
        kept = {b.agent for b in bundles}
        removed = tuple(path for agent, (path, _same) in sorted(existing.items())
                        if agent not in kept)
        for path in removed:
            path.unlink(missing_ok=True)
        _fsync_dir(out)
    except OSError as exc:
        raise RepositoryError(f"cannot write {exc.filename or out}: {exc.strerror}; every "
                              "bundle there is whole, run the export again once that is "
                              "fixed.") from None
    finally:
        for temp, _target in pending:
            temp.unlink(missing_ok=True)
    return Export(ref, commit, out, tuple(exported), removed)


def _fsync_all(paths: Sequence[Path]) -> None:
    """fsync many files at once: concurrent fsyncs share the file system's journal
    commits, where one after another would wait for one commit each."""
    if not paths:
        return
    from concurrent.futures import ThreadPoolExecutor

    def sync(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    with ThreadPoolExecutor(max_workers=min(16, len(paths))) as pool:
        for _ in pool.map(sync, paths):
            pass


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    """Make the renames durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["FORMAT", "Bundle", "Export", "Exported", "build", "bundle_digest", "canonical",
           "export", "is_bundle", "source"]
