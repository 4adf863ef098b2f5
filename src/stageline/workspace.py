"""A repository opened for stageline: its branch, the branch's tip, its policy, and who
acts. Every command that reads or writes the organization starts here."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from stageline import approval
from stageline.approval import Approval
from stageline.errors import Blocked, PermissionDenied, RepositoryError
from stageline.git.store import Store
from stageline.layout import (
    ENV_ROOT,
    ENVIRONMENTS,
    POLICY_FILE,
    approval_path,
    check_agent_name,
    env_dir,
)
from stageline.policy import Member, Policy, PolicyError, first_set, parse_policy


@dataclass
class Workspace:
    """A repository opened for stageline: its branch, the branch's tip and policy."""

    store: Store
    ref: str
    head: str
    policy: Policy

    def tree(self, env: str, agent: str) -> str | None:
        return self.store.tree_at(self.head, env_dir(env, agent))

    def approval(self, agent: str) -> Approval | str | None:
        data = self.store.blob_at(self.head, approval_path(agent))
        return None if data is None else approval.parse(data, approval_path(agent))

    def agent_names(self) -> set[str]:
        """Every agent in any environment at the tip (one ``ls-tree``)."""
        found = self.store.subdirectories(self.head, [f"{ENV_ROOT}/{e}" for e in ENVIRONMENTS])
        return {name for listing in found.values() for name in listing}

    def require_agent(self, agent: str) -> None:
        """The one sentence, and exit 4, for an agent in no environment, whatever the
        command: with the nearest name when one is close."""
        check_agent_name(agent)
        names = self.agent_names()
        if agent not in names:
            raise Blocked(f"there is no agent {agent} in any environment"
                          f"{did_you_mean(agent, names)}; 'stageline status' lists them, "
                          "'stageline agent new' creates one.")


def did_you_mean(name: str, names: Iterable[str]) -> str:
    """" (did you mean support-bot?)" for the nearest of ``names``, or nothing."""
    import difflib

    close = difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""



def open_branch(repo: str | None) -> tuple[Store, str, str | None]:
    """A repository, an interrupted action of it finished, and the branch HEAD points at
    with its tip (None while the branch is unborn)."""
    store = Store.open(repo)
    store.finish_pending()
    ref = store.head_ref()
    if ref is None:
        raise Blocked("HEAD is detached; check out the branch to act on, then run it again.")
    return store, ref, store.resolve(ref)


def open_workspace(repo: str | None) -> Workspace:
    store, ref, head = open_branch(repo)
    if head is None:
        raise RepositoryError(f"the branch {ref.removeprefix('refs/heads/')} has no commits; "
                              "create the organization with 'stageline init'.")
    data = store.blob_at(head, POLICY_FILE)
    if data is None:
        raise PolicyError(f"there is no {POLICY_FILE} at the tip of "
                          f"{ref.removeprefix('refs/heads/')}; this is not a stageline repository "
                          "yet ('stageline init --adopt' adds one).")
    return Workspace(store, ref, head, parse_policy(data))


def resolve_actor(ws: Workspace, explicit: str | None) -> Member:
    """``--as``, else ``$STAGELINE_ACTOR``, else the first set variable of the policy's
    ``ci.actor_env`` (off unless listed), else the member with git's ``user.email``."""
    wanted = explicit or os.environ.get("STAGELINE_ACTOR")
    if wanted:
        member = ws.policy.member(wanted)
        if member is None:
            raise PermissionDenied(f"{wanted} is not a member of {ws.policy.organization}"
                                   f"{did_you_mean(wanted, ws.policy.members)}; ask an "
                                   f"org-admin to add them to {POLICY_FILE}.")
        return member
    from_ci = first_set(ws.policy.ci_actor_env, os.environ)
    if from_ci is not None:
        variable, login = from_ci
        member = ws.policy.member(login)
        if member is None:
            raise PermissionDenied(f"{variable} names {login}, who is not a member of "
                                   f"{ws.policy.organization}; add them to {POLICY_FILE} "
                                   "or pass --as MEMBER.")
        return member
    email = ws.store.config("user.email")
    member = ws.policy.member_by_email(email) if email else None
    if member is None:
        who = f"git's user.email {email}" if email else "no --as, STAGELINE_ACTOR or user.email"
        raise PermissionDenied(f"cannot tell who is acting ({who} names no member); "
                               "pass --as MEMBER.")
    return member


def on_branch(ws: Workspace, rev: str) -> bool:
    return rev in set(ws.store.first_parent_chain(ws.head))
