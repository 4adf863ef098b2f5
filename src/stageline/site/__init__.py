"""``stageline site``: the Environments page as a static site, built from the repository.

Read-only, like ``export``: the organization at a commit of the protected branch becomes
``index.html`` (the board), ``qa.html`` and ``ship.html`` (the board for QA and for
org-admins), ``agents/<agent>/index.html``, ``log.html``, ``data/status.json`` (exactly
``status --json``) and ``data/log.jsonl`` (exactly ``log --format jsonl``).

Every string on a page comes from the repository, which the threat model treats as
written by an attacker: the templates are Jinja2 with autoescape on and undefined names
an error, nothing is marked safe, no page has a script but the site's own
``static/board.js`` (by ``src``, nothing inline), and each carries a strict
Content-Security-Policy. Jinja2 is imported here only, so no other command pays for it.
The same commit gives the same bytes; the site is built in a temporary directory and
then put in place of the old one. Agent pages whose inputs did not change are taken over
from the previous site rather than rendered again (``manifest``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stageline.errors import Blocked, StagelineError, UsageError
from stageline.git.objects import short_ref
from stageline.git.store import Store
from stageline.layout import ENV_ROOT, ENVIRONMENTS, POLICY_FILE, PUSH_LOG, env_dir, is_agent_name
from stageline.policy import parse_policy
from stageline.site import manifest
from stageline.site.manifest import MARKER
from stageline.workspace import Workspace
from stageline.yamlsafe import visible

CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
       "base-uri 'none'; form-action 'none'")
HISTORY = 50  # versions per environment on an agent page


@dataclass(frozen=True)
class Site:
    out: Path
    ref: str
    commit: str
    agents: int
    pages: int
    rendered: int  # agent pages rendered; the others were the previous site's, unchanged


def open_at(store: Store, rev: str | None) -> Workspace:
    """The organization at ``rev``, a commit of the protected branch (default its tip)."""
    from stageline.export import source

    ref, commit = source(store, rev)
    data = store.blob_at(commit, POLICY_FILE)
    if data is None:
        raise Blocked(f"there is no {POLICY_FILE} at {commit[:12]}; nothing to show.")
    return Workspace(store, ref, commit, parse_policy(data))


def build(store: Store, out: Path, rev: str | None = None, history: int = HISTORY) -> Site:
    """Write the site of the organization at ``rev`` into ``out`` (replacing a site
    written there before; a directory holding anything else is refused)."""
    if history < 1:
        raise UsageError("--history takes a positive number.")
    out = Path(os.path.abspath(out))  # "x/.." is x: renamed as x, never as "x/.."
    _check_out(store, out)
    ws = open_at(store, rev)
    pages, rendered = _pages(ws, history, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    temp.chmod(0o755)  # mkdtemp's 0700 would hide the site from a web server's user
    try:
        for path, data in pages.items():
            target = temp / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        _swap(temp, out)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    agents = sum(1 for p in pages if p.startswith("agents/"))
    return Site(out, ws.ref, ws.head, agents, sum(1 for p in pages if p.endswith(".html")),
                rendered)


def _check_out(store: Store, out: Path) -> None:
    """``out`` may be replaced whole by a site: a new or empty directory, or one holding a
    site stageline wrote (its marker a regular file), that no one committed."""
    here = Path.cwd().resolve()
    if out.is_symlink():
        raise Blocked(f"{out} is a symbolic link; give the directory itself (the site "
                      "replaces the directory at that path).")
    if out.resolve() in (here, *here.parents):
        raise Blocked(f"{out} is this directory or one above it; the site replaces its "
                      "directory whole: give a directory below, such as public/.")
    if not out.exists():
        return
    marker = out / MARKER
    if not out.is_dir() or (any(out.iterdir()) and not (
            not marker.is_symlink() and marker.is_file())):
        raise Blocked(f"{out} holds files that are not a stageline site; choose an empty or "
                      "new directory.")
    if store.work_tree is not None and out.resolve().is_relative_to(
            Path(store.work_tree).resolve()) and store.tracked(out.resolve()):
        # Pages taken over from a committed "site" would be anyone's who may push.
        raise Blocked(f"{out} holds files the repository tracks; the site is built from the "
                      "repository, never over it: build it into an untracked directory or "
                      "outside the work tree.")


def serve(store: Store, rev: str | None, history: int, port: int,
          say: Callable[[str], None], poll: float = 1.0) -> None:
    """Build the site into a temporary directory and serve it on 127.0.0.1 with the
    standard library, rebuilding when the branch moves: a preview for a laptop, not a
    production server. Runs until interrupted."""
    import functools
    import http.server
    import threading

    class Handler(http.server.SimpleHTTPRequestHandler):
        def end_headers(self) -> None:  # the pages' policy as a header too
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Cache-Control", "no-store")
            super().end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's
            pass

    with tempfile.TemporaryDirectory(prefix="stageline-site-") as tmp:
        out = Path(tmp) / "site"
        built = build(store, out, rev, history)
        windowed = bool(open_at(store, rev).policy.windows)
        handler = functools.partial(Handler, directory=str(out))
        with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
            say(f"serving the site of {short_ref(built.ref)} {built.commit[:12]} at "
                f"http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)")
            stop = threading.Event()

            def rebuild() -> None:
                shown = built.commit
                last = time.monotonic()
                while not stop.wait(poll):
                    tip = store.resolve(built.ref) if rev is None else shown
                    # what release windows block changes with the clock: once a minute
                    stale = windowed and time.monotonic() - last >= 60
                    if tip and (tip != shown or stale):
                        last = time.monotonic()
                        try:
                            shown = build(store, out, rev, history).commit
                            say(f"rebuilt the site at {shown[:12]}")
                        except StagelineError as exc:  # the last good site stays served
                            shown = tip
                            say(f"could not rebuild at {tip[:12]}: {exc.message}")

            watcher = threading.Thread(target=rebuild, daemon=True)
            watcher.start()
            try:
                server.serve_forever()
            finally:
                stop.set()


def _swap(temp: Path, out: Path) -> None:
    """``temp`` becomes ``out``. Where the system can exchange two paths in one step
    (Linux's ``renameat2``), a reader sees the old site or the new one, never neither;
    elsewhere the old site is moved aside first, and for that moment there is none."""
    if not out.exists():
        os.replace(temp, out)
        return
    if _exchange(temp, out):
        shutil.rmtree(temp, ignore_errors=True)  # now the old site
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.replace(out, old)  # onto the empty directory mkdtemp made: a name no one else has
    os.replace(temp, out)
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (``renameat2(RENAME_EXCHANGE)``); False where the
    system cannot."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2  # the C library's
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    done: int = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return done == 0


def _pages(ws: Workspace, history: int, out: Path) -> tuple[dict[str, bytes], int]:
    """Every file of the site, by path: rendered in memory (an agent page whose key is
    the previous site's taken from ``out``), then written at once; and how many agent
    pages were rendered."""
    import jinja2

    from stageline import remote
    from stageline.diffing import compare, line_kind, render
    from stageline.history import audit_log, histories, walk_directories
    from stageline.inventory import collect
    from stageline.site.timeline import timeline

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("stageline.site", "templates"),
        autoescape=True,  # explicit: Jinja2's default is off
        undefined=jinja2.StrictUndefined,
        # every value from the repository with what a reader would not see made visible
        finalize=lambda value: visible(value) if isinstance(value, str) else value,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # One walk of the branch (cached per commit) for every agent's history and status.
    walked = walk_directories(ws)
    statuses = collect(ws, last_changes=walked.last_changes(), now=_now())
    subjects = _subjects(ws, [last.commit for s in statuses for e in ENVIRONMENTS
                              if (last := s.last[e]) is not None])
    push_log = ws.store.git_dir / PUSH_LOG  # as 'log' reads it: the server's, if here
    events = audit_log(ws, push_log=push_log if push_log.exists() else None)
    # An agent page names neither the commit nor the build time (the board does): it is
    # then the same bytes while its agent does not change, and need not be rewritten.
    common = {"organization": ws.policy.organization, "branch": short_ref(ws.ref),
              "csp": CSP}
    tip = {"commit": ws.head, "generated": _generated()}
    rows = [_row(s, subjects) for s in statuses]
    every = histories(ws, history, walked)
    position = {oid: i for i, oid in enumerate(walked.chain)}
    pages: dict[str, bytes] = {}

    def page(path: str, template: str, **values: Any) -> None:
        root = "../" * path.count("/")
        text = env.get_template(template).render(root=root, **common, **values)
        pages[path] = text.encode("utf-8")

    views = [("index.html", "All agents", rows, "all"),
             ("qa.html", "For QA: in staging, not yet ready",
              [r for r in rows if r["trees"]["staging"] and not r["ready"]
               and r["trees"]["staging"] != r["trees"]["production"]], "qa"),
             ("ship.html", "For org-admins: ready to ship",
              [r for r in rows if r["ready"] and not r["production_equals_staging"]], "ship")]
    # Which views each row is in, for static/board.js to filter the board in place.
    member = {name: {id(r) for r in shown} for _path, _title, shown, name in views}
    board = {id(r): {**r, "views": [v for v in ("qa", "ship") if id(r) in member[v]]}
             for r in rows}
    for path, title, shown, _name in views:
        page(path, "board.html", title=title, rows=[board[id(r)] for r in shown],
             views=views, current=path, **tip)
    previous = manifest.read(out) if out.is_dir() else {}
    keys: dict[str, str] = {}
    stale = []  # agent pages to render: (status, path, values)
    for s, row in zip(statuses, rows, strict=True):
        if not row["link"]:
            continue  # a name no agent may have (".." from a hand-made tree): no page
        path = f"agents/{s.name}/index.html"
        versions = {e: [v.to_json() for v in every.get((e, s.name), [])] for e in ENVIRONMENTS}
        values: dict[str, Any] = {"row": row, "versions": versions, "history": history,
                                  "commit": None, "generated": None}
        # Left out of the key as they follow from what is in it: the diffs (from the
        # trees in the row) and the timeline (from the versions: commits keep their
        # order on the first-parent chain whatever its tip).
        keys[path] = manifest.key({**common, **values})
        kept = manifest.previous_page(out, path, previous.get(path), keys[path])
        if kept is None:
            stale.append((s, path, values))
        else:
            pages[path] = kept
    # Every agent's files in one listing for a full build; for a few, each tree its own.
    listings = _listings(ws, statuses) if len(stale) * 2 > len(statuses) else None
    for s, path, values in stale:
        diffs = []
        # What each promotion would bring: the target's version against the source's.
        for source, target in (("development", "staging"), ("staging", "production")):
            if s.trees[source] is None and s.trees[target] is None:
                continue
            lines = render(compare(ws, s.name, target, source, listings))
            diffs.append({"title": f"What promoting {source} to {target} would change",
                          "lines": [{"kind": line_kind(ln), "text": ln} for ln in lines]})
        page(path, "agent.html", diffs=diffs,
             timeline=timeline(values["versions"], position), **values)
    entries = {path: (key, manifest.digest(pages[path])) for path, key in keys.items()}
    page("log.html", "log.html", events=[e.to_json() for e in events], **tip)
    status = {"branch": remote.standing(ws).to_json(),
              "agents": [s.to_json() for s in statuses]}
    pages["data/status.json"] = (json.dumps(status, separators=(",", ":")) + "\n").encode()
    encode = json.JSONEncoder(sort_keys=True).encode
    pages["data/log.jsonl"] = "".join(encode(e.to_json()) + "\n" for e in events).encode()
    from importlib.resources import files

    for name in ("site.css", "board.js"):
        pages[f"static/{name}"] = files("stageline.site").joinpath(f"static/{name}").read_bytes()
    pages[MARKER] = manifest.text(entries)
    return pages, len(stale)


def _listings(ws: Workspace, statuses: Sequence[Any]) -> dict[str, dict[str, tuple[str, str]]]:
    """Every agent directory's files at the tip (path → (mode, id)), by the directory's
    tree id: one ``ls-tree -r`` for the organization instead of one per directory."""
    by_dir: dict[str, dict[str, tuple[str, str]]] = {}
    for item in ws.store.ls_tree(ws.head, f"{ENV_ROOT}/"):
        parts = item.path.split("/", 3)
        if len(parts) == 4:
            by_dir.setdefault("/".join(parts[:3]), {})[parts[3]] = (item.mode, item.oid)
    return {tree: by_dir.get(env_dir(env, s.name), {}) for s in statuses
            for env, tree in s.trees.items() if tree is not None}


def _source_date() -> int | None:
    """SOURCE_DATE_EPOCH, the build's time when set, so that the same commit gives the
    same bytes (https://reproducible-builds.org/specs/source-date-epoch/)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(epoch) if epoch.isdigit() else None


def _now() -> datetime | None:
    """The time release windows are judged at: SOURCE_DATE_EPOCH when set, else (None)
    this machine's clock."""
    epoch = _source_date()
    if epoch is None:
        return None
    try:
        return datetime.fromtimestamp(epoch, UTC)
    except (OverflowError, ValueError, OSError):
        raise UsageError(f"SOURCE_DATE_EPOCH={epoch} is not a time this machine can "
                         "hold.") from None


def _generated() -> str | None:
    """When the site was built: only from SOURCE_DATE_EPOCH."""
    epoch = _source_date()
    return None if epoch is None else f"{_when(epoch)} UTC"


def _when(seconds: int) -> str:
    """A commit's time as the board shows it; one Python cannot hold as ``@seconds``."""
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M")
    except (ValueError, OverflowError, OSError):
        return f"@{seconds}"


def _subjects(ws: Workspace, oids: Sequence[str]) -> dict[str, str]:
    commits = ws.store.read_commits(sorted(set(oids)))
    return {c.oid: c.message.partition("\n")[0] for c in commits}


def _row(s: Any, subjects: dict[str, str]) -> dict[str, Any]:
    """One agent of the board: each environment's version, and what waits."""
    cells = {}
    for e in ENVIRONMENTS:
        last = s.last[e]
        cells[e] = None if s.trees[e] is None else {
            "tree": s.trees[e][:7],
            "when": _when(last.time) if last else None,
            "by": last.actor if last else None,
            "subject": subjects.get(last.commit, "") if last else "",
        }
    drift = []
    if s.trees["development"] is None and s.trees["staging"] is not None:
        drift.append(("gone from development, still in staging",
                      f"stageline promote {s.name} --to staging"))
    if s.trees["staging"] is None and s.trees["production"] is not None:
        drift.append(("gone from staging, still in production",
                      "an org-admin takes it out of production (docs/faq.md)"))
    if s.trees["development"] and s.trees["development"] != s.trees["staging"]:
        drift.append(("development differs from staging",
                      f"stageline promote {s.name} --to staging"))
    if s.trees["staging"] and s.ready and s.trees["staging"] != s.trees["production"]:
        drift.append(("staging is ready and differs from production",
                      f"stageline promote {s.name} --to production"))
    if s.trees["staging"] and not s.ready and s.trees["staging"] != s.trees["production"]:
        drift.append(("QA tests staging and marks it", f"stageline mark-ready {s.name}"))
    return {"name": s.name, "link": is_agent_name(s.name), "cells": cells, "trees": s.trees,
            "ready": s.ready,
            "markers": list(s.markers), "required": s.required,
            "staging_equals_development": s.staging_equals_development,
            "production_equals_staging": s.production_equals_staging,
            "blocked_by": list(s.blocked_by), "drift": drift}


__all__ = ["Site", "build", "open_at"]
