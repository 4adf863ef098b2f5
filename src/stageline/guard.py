"""``stageline guard``: the staged change, judged by the server's rules before it is committed.

A developer's pre-commit hook. The index's tree is written as objects (no commit,
no ref) and judged as a commit on HEAD authored by the identity git will record
and pushed by the local actor, by the policy the server will judge it by: the
hook's own ``Enforcer.judge`` and ``rules.judge_commit``, so the answer is the
server's. It is advice, not enforcement: the server's hook has the last word.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from stageline import rules, trailers
from stageline.errors import RepositoryError
from stageline.git.store import Store
from stageline.git.walk import CommitInfo
from stageline.layout import POLICY_FILE, env_dir
from stageline.policy import Member, Policy, PolicyError
from stageline.rules import Violation
from stageline.server.judge import Enforcer
from stageline.workspace import Workspace, resolve_actor


@dataclass(frozen=True)
class Verdict:
    """What the server would say of the staged change."""

    actor: str  # the member judged as the pusher
    policy_from: str  # where the policy was read: a remote-tracking branch, or HEAD
    violations: list[Violation] = field(default_factory=list)
    # Allowed only as a rollback: the trailers its message must end with.
    rollback_trailers: str | None = None


def check_staged(repo: str | None, explicit_actor: str | None) -> Verdict:
    """Judge "HEAD → the index" as the server would judge it as a pushed commit."""
    with Store.open(repo) as store:
        if store.work_tree is None:
            raise RepositoryError(f"{store.git_dir} is a bare repository; stageline guard checks "
                                  "what is staged in a clone.")
        head = store.resolve("HEAD")
        if head is None:
            raise RepositoryError("HEAD has no commits yet, so there is no policy to judge by; "
                                  "clone the organization or create it with 'stageline init'.")
        enforcer = Enforcer(store)
        source, policy = server_policy(store, enforcer, head)
        ws = Workspace(store, "HEAD", head, policy)
        actor = resolve_actor(ws, explicit_actor)
        tree = store.index_tree()
        changes = store.diff_trees(head, tree, trees=True)
        if not changes:
            return Verdict(actor.id, source)
        # git commit hands its hooks the author it will record (--author, GIT_AUTHOR_EMAIL,
        # author.email, user.email); run by hand, the actor is the author.
        author_email = os.environ.get("GIT_AUTHOR_EMAIL") or actor.email
        other = store.merging()
        staged = CommitInfo(tree, tree, (head, other) if other else (head,), "", author_email, 0,
                            "+0000", "", tuple(changes))
        violations = enforcer.judge([staged], policy, actor, head)
        author = policy.member_by_email(author_email)
        if violations and author is not None:
            found = _as_rollback(ws, enforcer, staged, actor, author)
            if found is not None:
                return Verdict(actor.id, source, [], found)
        # The commit does not exist yet: a violation names the path, not a commit id.
        return Verdict(actor.id, source, [replace(v, commit=None) for v in violations])


def server_policy(store: Store, enforcer: Enforcer, head: str) -> tuple[str, Policy]:
    """The policy the server will judge the change by, and where it was read.

    The server judges a push by the policy at the old tip of the protected branch:
    here, its remote-tracking branch as last fetched (the upstream's remote, else
    ``origin``; the branch the current one tracks first, when it is protected).
    Without one (no remote, never fetched), the policy at HEAD.
    """
    local = enforcer.policies.at(head)
    upstream = store.upstream()
    parts = upstream.split("/", 3) if upstream else []
    remote = parts[2] if len(parts) == 4 and parts[1] == "remotes" else "origin"
    names = local.policy.protected_branches if local.policy is not None else ()
    candidates = [f"refs/remotes/{remote}/{name}" for name in names]
    if upstream and (upstream in candidates or not candidates):
        candidates.insert(0, upstream)
    for ref, info in zip(candidates, store.objects_info(candidates), strict=True):
        if info is None or info[1] != "commit":
            continue
        found = enforcer.policies.at(info[0])
        where = ref.removeprefix("refs/remotes/")
        if found.problem is not None:
            raise PolicyError(f"the server's {POLICY_FILE} (at {where}) is invalid "
                              f"({found.problem}); an org-admin repairs it there.")
        if found.policy is not None:
            return where, found.policy
    if local.policy is not None:
        return "HEAD", local.policy
    if local.problem is None:
        raise PolicyError(f"there is no {POLICY_FILE} at HEAD; this is not a stageline "
                          "repository.")
    raise PolicyError(f"{local.problem}.")


def _as_rollback(ws: Workspace, enforcer: Enforcer, staged: CommitInfo, actor: Member,
                 author: Member) -> str | None:
    """A change of production that only a ``Stageline-Restores`` trailer can make valid.

    Trailers live in the message, which does not exist yet: when the staged
    production tree of one agent is an earlier production state of the branch, the
    change is judged as the rollback to it, and allowed on condition of the trailers.
    """
    from stageline.history import history

    agents = sorted(rules.touched(staged.changes).get("production", ()))
    if len(agents) != 1:
        return None
    agent = agents[0]
    tree = ws.store.tree_at(staged.oid, env_dir("production", agent))
    earlier = next((v.commit for v in history(ws, agent, "production")
                    if tree is not None and v.tree == tree), None)
    if earlier is None:
        return None
    lines = trailers.block(rules.ROLLBACK, agent, author.id, {trailers.RESTORES: earlier})
    rollback = replace(staged, message=f"Roll back {agent}\n\n{lines}\n",
                       trailer_lines=lines)
    if enforcer.judge([rollback], ws.policy, actor, ws.head):
        return None
    return lines


def report(verdict: Verdict) -> list[str]:
    """The server's rejection lines, for the staged change."""
    from stageline.server.hooks import report as lines

    return lines(verdict.violations)


__all__ = ["Verdict", "check_staged", "report", "server_policy"]
