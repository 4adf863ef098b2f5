"""Versions of an environment and the organization's audit log, read from the branch.

A *version* of an environment is a state the branch had: a commit on its
first-parent chain where the agent's directory in that environment changed
(against the first parent). Promotions, approvals and rollbacks are linear
commits on the branch (the hook sees to it), so they all appear there; work
merged from a side branch appears as its merge commit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

from stageline import rules, trailers
from stageline.errors import UsageError
from stageline.git.process import nogc
from stageline.git.walk import CommitInfo
from stageline.inventory import actor_of
from stageline.layout import (
    AGENT_DEPTH,
    APPROVALS,
    ENV_ROOT,
    ENVIRONMENTS,
    POLICY_FILE,
    TREE_MODE,
    approval_path,
    check_env,
    env_dir,
)
from stageline.policy import Member
from stageline.workspace import Workspace


@dataclass(frozen=True)
class Version:
    commit: str
    tree: str | None
    action: str
    actor: str | None
    time: str
    override: str | None = None  # an org-admin's reason for pushing through a window

    def to_json(self) -> dict[str, Any]:
        return {"commit": self.commit, "tree": self.tree, "action": self.action,
                "actor": self.actor, "time": self.time, "override": self.override}


def iso_time(commit: CommitInfo) -> str:
    """The author date in ISO 8601; a date Python cannot hold (past the year 9999, which
    the pusher may write) as git's raw ``@seconds``, never an error that would break
    every later log, history or site (an attack pass)."""
    try:
        when = datetime.fromtimestamp(commit.author_time, _zone(commit.author_tz))
    except (ValueError, OverflowError, OSError):
        return f"@{commit.author_time}"
    return when.isoformat().replace("+00:00", "Z")


@cache
def _zone(tz: str) -> timezone:
    """The time zone of a commit's ``+hhmm``; one git cannot mean (a day or more) is UTC."""
    offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5]))
    return timezone(-offset if tz.startswith("-") else offset) if offset < timedelta(days=1) \
        else UTC


def history(ws: Workspace, agent: str, env: str, limit: int | None = None) -> list[Version]:
    """Every version of ``env`` for ``agent``, newest first."""
    check_env(env)
    path = env_dir(env, agent)
    args = ["--first-parent", ws.head]
    if limit is not None:
        if limit < 1:
            raise UsageError("--limit takes a positive number.")
        args.insert(0, f"--max-count={limit}")
    commits = ws.store.walk(args, [path], with_changes=False)
    trees = ws.store.trees_at([(c.oid, path) for c in commits])
    return [_version(ws, commit, env, tree) for commit, tree in zip(commits, trees, strict=True)]


@dataclass(frozen=True)
class Walked:
    """The branch's first-parent chain (newest first) and, for each of its commits, what
    ``histories`` needs: the agent directories its first-parent diff touched, each as
    ``[env, agent, tree or None, whether a directory changed]``, and the commit's fields."""

    chain: list[str]
    records: dict[str, dict[str, Any]]

    def last_changes(self) -> dict[tuple[str, str], str]:
        """For each ``(env, agent)`` directory, the newest commit that changed it: what
        ``inventory.collect`` finds with a walk of its own
        (``tests/test_inventory.py`` holds the two to each other)."""
        found: dict[tuple[str, str], str] = {}
        for oid in self.chain:
            for env, agent, _tree, directory in self.records[oid]["d"]:
                if directory:
                    found.setdefault((env, agent), oid)
        return found


def walk_directories(ws: Workspace) -> Walked:
    chain = ws.store.first_parent_chain(ws.head)
    return Walked(chain, _directory_changes(ws, chain))


def histories(ws: Workspace, limit: int | None = None,
              walked: Walked | None = None) -> dict[tuple[str, str], list[Version]]:
    """``history`` of every agent in every environment at once, by ``(env, agent)``: one
    walk of the branch's first parents diffed under environments/ (with the directories
    git's diff names), instead of a walk per agent and environment. A commit is a version
    of a directory exactly when its first-parent diff touches it, as for ``history``'s
    path-limited walk (``tests/test_history.py`` holds the two to each other).

    What a commit changed against its first parent never changes: each commit's
    directories and fields are kept in a cache in the git directory (as the audit log's),
    so a later run diffs only the commits that came since (``walked``: that walk, done
    already). The actor is worked out at each run, as the policy may change."""
    if limit is not None and limit < 1:
        raise UsageError("--history takes a positive number.")
    walked = walked or walk_directories(ws)
    found: dict[tuple[str, str], list[tuple[str, dict[str, Any], str | None]]] = {}
    for oid in walked.chain:  # newest first
        record = walked.records[oid]
        for env, agent, tree, _directory in record["d"]:
            listed = found.setdefault((env, agent), [])
            if limit is None or len(listed) < limit:
                listed.append((oid, record, tree))
    members: dict[str, Member | None] = {}

    def version(oid: str, record: dict[str, Any], env: str, tree: str | None) -> Version:
        email = record["e"]
        if email not in members:
            members[email] = ws.policy.member_by_email(email)
        member, claimed = members[email], record["k"]
        action = _version_action(record["a"], record["m"], env)
        override = record["o"].strip() if action == "promote" else ""
        return Version(oid, tree, action, member.id if member else (
            claimed if claimed and "\n" not in claimed else None), record["t"],
            override or None)

    return {key: [version(oid, record, key[0], tree) for oid, record, tree in listed]
            for key, listed in found.items()}


HISTORY_CACHE = "stageline-history-cache.jsonl"


def _directory_changes(ws: Workspace, chain: list[str]) -> dict[str, dict[str, Any]]:
    """For each commit of the chain, the agent directories its first-parent diff touched
    (``[env, agent, tree or None]``) and the fields a version needs: from the cache, the
    commits it lacks diffed (in chunks) and added to it."""
    path = ws.store.git_dir / HISTORY_CACHE
    cached = _read_cache(path, _is_directory_record)
    keys = _chain_keys(chain)
    known = {oid: cached[key] for oid, key in keys.items() if key in cached}
    missing = [(oid, tuple(chain[i + 1:i + 2])) for i, oid in enumerate(chain)
               if oid not in known]
    for start in range(0, len(missing), CACHE_CHUNK):
        order = missing[start:start + CACHE_CHUNK]
        # Cut at the agent directories: a change deeper down shows as its directory's entry.
        commits = ws.store.walk_listed(order, [ENV_ROOT], trees=True, depth=AGENT_DEPTH)
        fresh = {c.oid: _directory_record(c) for c in commits}
        known.update(fresh)
        _append_cache(path, {keys[oid]: record for oid, record in fresh.items()})
    return known


def _chain_keys(chain: Sequence[str]) -> dict[str, str]:
    """The cache key of each commit of a first-parent chain: the commit and the parent it
    is diffed against (a shallow clone's boundary, diffed as a root commit, is diffed
    again once its parent has been fetched)."""
    return {oid: f"{oid} {''.join(chain[i + 1:i + 2])}" for i, oid in enumerate(chain)}


def _directory_record(commit: CommitInfo) -> dict[str, Any]:
    trees: dict[tuple[str, str], tuple[str | None, bool]] = {}
    for ch in commit.changes:
        parts = ch.path.split("/")
        if len(parts) == AGENT_DEPTH + 1 and parts[0] == ENV_ROOT and parts[1] in ENVIRONMENTS:
            # A directory that became a file shows as a deleted tree beside an added file.
            tree, directory = trees.get((parts[1], parts[2]), (None, False))
            trees[(parts[1], parts[2])] = (
                tree or (ch.new_oid if ch.new_mode == TREE_MODE else None),
                directory or TREE_MODE in (ch.old_mode, ch.new_mode))
    return {"t": iso_time(commit), "e": commit.author_email, "m": len(commit.parents) > 1,
            "k": commit.trailers.get(rules.ACTOR_TRAILER),
            "a": commit.trailers.get(rules.ACTION_TRAILER, ""),
            "o": commit.trailers.get(trailers.OVERRIDE, ""),
            "d": [[env, agent, tree, directory]
                  for (env, agent), (tree, directory) in sorted(trees.items())]}


def _is_directory_record(record: Any) -> bool:
    """A record as ``_directory_record`` writes it, every field of its type: a line
    edited by hand or by anyone else is no record (that commit is diffed again)."""
    return isinstance(record, dict) and set(record) == {"t", "e", "m", "k", "a", "o", "d"} \
        and all(isinstance(record[k], str) for k in "teao") \
        and isinstance(record["m"], bool) and isinstance(record["k"], (str, type(None))) \
        and isinstance(record["d"], list) and all(
            isinstance(d, list) and len(d) == 4 and d[0] in ENVIRONMENTS
            and isinstance(d[1], str)
            and isinstance(d[2], (str, type(None))) and isinstance(d[3], bool)
            for d in record["d"])


def _version(ws: Workspace, commit: CommitInfo, env: str, tree: str | None) -> Version:
    action = _version_action(commit.trailers.get(rules.ACTION_TRAILER, ""),
                             len(commit.parents) > 1, env)
    override = commit.trailers.get(trailers.OVERRIDE, "").strip() if action == "promote" else ""
    return Version(commit.oid, tree, action, actor_of(commit, ws.policy), iso_time(commit),
                   override or None)


def _version_action(claimed: str, merge: bool, env: str) -> str:
    if env == "production" and claimed == rules.ROLLBACK:
        return "rollback"
    if env in ("staging", "production"):
        return "promote"
    if claimed == rules.CREATE_AGENT:
        return "create"
    return "merge" if merge else "edit"


# -- the audit log ------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    commit: str
    time: str
    action: str
    agent: str | None
    actor: str | None
    tree: str | None
    pusher: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = {"commit": self.commit, "time": self.time, "action": self.action,
                "agent": self.agent, "actor": self.actor, "tree": self.tree,
                "pusher": self.pusher}
        data.update(self.details)
        return data


AUDITED = (f"{ENV_ROOT}/staging", f"{ENV_ROOT}/production", APPROVALS, POLICY_FILE)
ACTIONS = ("init", "create-agent", "promote-to-staging", "mark-ready", "withdraw",
           "promote-to-production", "rollback", "policy-change")


def parse_since(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since takes a date such as 2026-11-28 or 2026-11-28T14:00:00Z, "
                         f"not {text!r}.") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@nogc
def audit_log(ws: Workspace, agent: str | None = None, actor: str | None = None,
              action: str | None = None, since: datetime | None = None,
              push_log: Path | None = None) -> list[Event]:
    """The organization's actions on the branch, newest first, with who pushed them."""
    if action is not None and action not in ACTIONS:
        raise UsageError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}.")
    if agent:
        paths = [env_dir(e, agent) for e in ("development", "staging", "production")]
        paths += [f"{APPROVALS}/{agent}.yaml", POLICY_FILE]
    else:
        paths = [*AUDITED, ENV_ROOT + "/development"]
    if agent:
        args = ["--first-parent", ws.head]
        if since is not None:
            args.insert(0, f"--since={int(since.timestamp())}")
        # git's path-limited walk lists the commits that changed the agent's paths
        # against their first parent (the events of other agents are not wanted).
        events = _events(ws, ws.store.walk(args, paths, trees=True, depth=AGENT_DEPTH),
                         every_change=True)
    else:
        events = _organization_events(ws, paths)
    pushers = _pushers(ws, push_log) if push_log else {}
    result = []
    for event in events:
        if agent and event.agent != agent:
            continue
        if actor and event.actor != actor:
            continue
        if action and event.action != action:
            continue
        if since and datetime.fromisoformat(event.time.replace("Z", "+00:00")) < since:
            continue
        pusher = pushers.get(event.commit)
        result.append(event if pusher is None else replace(event, pusher=pusher))
    return result


CACHE_NAME = "stageline-audit-cache.jsonl"
CACHE_CHUNK = 20000  # commits diffed, then cached, at a time


def _organization_events(ws: Workspace, paths: list[str]) -> list[Event]:
    """The whole organization's events, from a cache of per-commit events kept in the
    repository's git directory.

    What a commit changed against its first parent never changes, so each commit is
    diffed once; later runs diff only the commits that came since. The actor is
    worked out again at each run from the author's email, as the policy may change.
    A cache that cannot be read or written is simply not used.
    """
    path = ws.store.git_dir / CACHE_NAME
    chain = ws.store.first_parent_chain(ws.head)
    keys = _chain_keys(chain)
    cached = _read_cache(path, _is_event_records)
    cache = {oid: cached[key] for oid, key in keys.items() if key in cached}
    # Each commit of the chain is diffed against the next one, its first parent.
    missing = [(oid, tuple(chain[i + 1:i + 2])) for i, oid in enumerate(chain)
               if oid not in cache]
    fresh: dict[str, list[Event]] = {}  # events of the commits diffed by this run
    for start in range(0, len(missing), CACHE_CHUNK):
        order = missing[start:start + CACHE_CHUNK]
        commits = ws.store.walk_listed(order, paths, prune=True, trees=True, depth=AGENT_DEPTH)
        # A run of the chain (every commit after the first is the one before's child):
        # the walk keeps every commit of it that changed the audited paths.
        every_change = all(order[k][1] == (order[k + 1][0],) for k in range(len(order) - 1))
        found: dict[str, list[dict[str, Any]]] = {oid: [] for oid, _parent in order}
        authors = {c.oid: c for c in commits}
        for event in _events(ws, commits, every_change):
            commit = authors[event.commit]
            # The commit is the line's; the actor is worked out at each run.
            record = {"time": event.time, "action": event.action, "agent": event.agent,
                      "tree": event.tree, "email": commit.author_email,
                      "claimed": commit.trailers.get(rules.ACTOR_TRAILER), **event.details}
            found[event.commit].append(record)
            fresh.setdefault(event.commit, []).append(event)
        cache.update(found)
        _append_cache(path, {keys[oid]: records for oid, records in found.items()})
    events = []
    members: dict[str, Member | None] = {}
    for oid in chain:
        if oid in fresh:
            events += fresh[oid]
            continue
        for record in cache[oid]:
            email = record.get("email") or ""
            if email not in members:
                members[email] = ws.policy.member_by_email(email)
            member = members[email]
            claimed = record.get("claimed")
            actor = member.id if member else (claimed if claimed and "\n" not in claimed
                                               else None)
            details = {k: v for k, v in record.items() if k in ("restores", "override")}
            events.append(Event(oid, record["time"], record["action"], record.get("agent"),
                                actor, record.get("tree"), None, details))
    return events


def _read_cache(path: Path, valid: Callable[[Any], bool]) -> dict[str, Any]:
    """A per-commit cache's records (``{"c": commit, "e": record}`` lines) that ``valid``
    accepts; a line cut short by a crash is skipped: that commit is diffed again."""
    cache: dict[str, Any] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return cache
    for line in lines:
        try:
            record = json.loads(line)
            oid, value = record["c"], record["e"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(oid, str) and valid(value):
            cache[oid] = value
    return cache


def _is_event_records(events: Any) -> bool:
    """Records as ``_organization_events`` writes them, every field of its type."""
    def text(value: Any, blank: bool = True) -> bool:
        return isinstance(value, str) or (blank and value is None)

    return isinstance(events, list) and all(
        isinstance(e, dict) and {"time", "action", "agent", "tree", "email", "claimed"}
        <= set(e) <= {"time", "action", "agent", "tree", "email", "claimed", "restores",
                      "override"}
        and text(e["time"], False) and e["action"] in ACTIONS and text(e["agent"])
        and text(e["tree"]) and text(e["email"], False) and text(e["claimed"])
        and text(e.get("restores")) and text(e.get("override")) for e in events)


def _append_cache(path: Path, found: Mapping[str, Any]) -> None:
    encode = json.JSONEncoder(sort_keys=True).encode  # one encoder for every line
    data = "".join(encode({"c": oid, "e": events}) + "\n" for oid, events in found.items())
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(data)
    except OSError:
        pass  # a read-only repository: the log works, only not faster next time


def _events(ws: Workspace, commits: Sequence[CommitInfo], every_change: bool = False) \
        -> list[Event]:
    """The events of commits walked with trees to ``AGENT_DEPTH`` (newest first).
    Each event's tree is what its agent directory holds at the commit: from the
    walk's tree entries when the commit changed it, else, with ``every_change`` (the
    commits hold every commit of their stretch of the chain that changed the walked
    paths), from the last older commit that did; else looked up."""
    planned: list[tuple[CommitInfo, str, str | None, str | None]] = []
    for commit in commits:
        touched = rules.touched(commit.changes)
        claimed = commit.trailers.get(rules.ACTION_TRAILER, "")
        if not commit.parents:  # the organization's first commit, adopted as it is
            planned.append((commit, "init", None, None))
            continue
        for name in sorted(touched.get("staging", ())):
            planned.append((commit, "promote-to-staging", name, env_dir("staging", name)))
        for name in sorted(touched.get("production", ())):
            kind = "rollback" if claimed == rules.ROLLBACK else "promote-to-production"
            planned.append((commit, kind, name, env_dir("production", name)))
        deleted = {c.path for c in commit.changes if c.status == "D"}
        for name in sorted(touched.get("approval", set()) - touched.get("staging", set())):
            kind = "withdraw" if approval_path(name) in deleted else "mark-ready"
            planned.append((commit, kind, name, env_dir("staging", name)))
        if claimed == rules.CREATE_AGENT:
            for name in sorted(touched.get("development", ())):
                planned.append((commit, "create-agent", name, env_dir("development", name)))
        # A directory's entry (a walk with trees) is no policy file.
        if any(c.path == POLICY_FILE and TREE_MODE not in (c.old_mode, c.new_mode)
               for c in commit.changes):
            planned.append((commit, "policy-change", None, None))
    trees = _event_trees(ws, commits, planned, every_change)
    events = []
    for commit, kind, agent, where in planned:
        details: dict[str, Any] = {}
        restores = commit.trailers.get(rules.RESTORES_TRAILER)
        if kind == "rollback" and restores:
            details["restores"] = restores
        override = commit.trailers.get(trailers.OVERRIDE)
        if override and kind in ("promote-to-staging", "promote-to-production"):
            details["override"] = override
        events.append(Event(commit.oid, iso_time(commit), kind, agent,
                            actor_of(commit, ws.policy),
                            trees.get((commit.oid, where)) if where else None, None, details))
    return events


def _event_trees(ws: Workspace, commits: Sequence[CommitInfo],
                 planned: Sequence[tuple[CommitInfo, str, str | None, str | None]],
                 every_change: bool) -> dict[tuple[str, str], str | None]:
    wanted: dict[str, list[str]] = {}  # commit → the directories its events name
    for commit, _kind, _name, where in planned:
        if where:
            wanted.setdefault(commit.oid, []).append(where)
    paths = {p for found in wanted.values() for p in found}
    trees: dict[tuple[str, str], str | None] = {}
    latest: dict[str, str | None] = {}
    for commit in reversed(commits):  # oldest first
        for ch in commit.changes:
            # A directory that became a file shows as a deleted tree beside an added file.
            if ch.path in paths and TREE_MODE in (ch.old_mode, ch.new_mode):
                tree = ch.new_oid if ch.new_mode == TREE_MODE else None
                trees[(commit.oid, ch.path)] = tree
                if every_change:
                    latest[ch.path] = tree
        for where in wanted.get(commit.oid, ()):
            if (commit.oid, where) not in trees and where in latest:
                trees[(commit.oid, where)] = latest[where]
    lookups = [(oid, p) for oid, found in wanted.items() for p in found
               if (oid, p) not in trees]
    trees.update(zip(lookups, ws.store.trees_at(lookups), strict=True))
    return trees


def read_push_log(path: Path) -> list[dict[str, Any]]:
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read the push log {path}: {exc.strerror}.") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise UsageError(f"{path}:{number} is not a JSON line.") from None
        if isinstance(record, dict):
            records.append(record)
    return records


def _pushers(ws: Workspace, path: Path) -> dict[str, str]:
    """Which pusher brought each commit of the branch's first-parent chain.

    Protected branches only move forward along their first parents, so a push
    from ``old`` to ``new`` brought exactly the chain commits after ``old`` up to
    ``new``: one ``rev-list`` of the chain places every push.
    """
    chain = ws.store.first_parent_chain(ws.head)
    position = {oid: i for i, oid in enumerate(chain)}  # 0 is the newest
    ranges = []
    for record in read_push_log(path):
        if record.get("ref") != ws.ref or record.get("new") not in position:
            continue
        top = position[record["new"]]
        bottom = position.get(record.get("old") or "", len(chain))
        ranges.append((top, bottom, record.get("pusher")))
    result: dict[str, str] = {}
    for top, bottom, pusher in ranges:
        for i in range(top, bottom):
            if pusher and chain[i] not in result:
                result[chain[i]] = pusher
    return result


def previous_production(ws: Workspace, agent: str) -> Version | None:
    """The production version before the current one, if there was one."""
    current = ws.tree("production", agent)
    for version in history(ws, agent, "production")[1:]:
        if version.tree is not None and version.tree != current:
            return version
    return None
