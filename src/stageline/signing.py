"""Signed actions (§8): which commits must be signed, and whether a signature proves
that the commit's author made it.

``Checked`` is what a commit's signature is whatever the policy: the key that made a
good signature over the commit, or why there is none (gathered by
``server/signatures.py``). ``judge`` then asks the policy the hook judges by (at the old
tip: a push cannot add a key and use it) whether that key is listed under the member
who is the commit's author and not revoked. git itself never ties the signer to the
author: a commit in olga's name signed with alice's key is "Good" to ``git
verify-commit``; here it is refused. A commit's date never decides anything: a key is
valid while the policy lists it, and a revoked key's signatures never verify, whenever
they claim to be made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stageline.layout import ENV_ROOT, TREE_MODE
from stageline.policy import Policy
from stageline.rules import ChangedPath, Kind, Violation, classify
from stageline.sshkeys import PublicKey

_SIGNED_DIRS = (f"{ENV_ROOT}/staging/", f"{ENV_ROOT}/production/", "approvals/", "settings/")
SET_UP = "set git's gpg.format=ssh and user.signingkey to a key listed for you " \
         "('stageline keys check' says what is missing), then re-run the action"


@dataclass(frozen=True)
class Checked:
    key: PublicKey | None  # the key whose signature over the commit is good
    problem: str | None = None  # why there is none ("it is unsigned", "its signature …")


def required(changes: Sequence[ChangedPath], require: str) -> bool:
    """Whether a commit with ``changes`` must be signed under ``signing.require``."""
    if require == "all":
        return True
    if require != "actions":
        return False
    for change in changes:
        if change.new_mode == TREE_MODE or change.old_mode == TREE_MODE:
            if f"{change.path}/".startswith(_SIGNED_DIRS):
                return True
            continue
        area = classify(change.path)
        if area.kind in (Kind.APPROVAL, Kind.POLICY, Kind.SETTINGS, Kind.CI, Kind.INVALID) or \
                (area.kind == Kind.ENV and area.env != "development"):
            return True
    return False


def judge(oid: str, author_email: str, committer_email: str, checked: Checked | None,
          policy: Policy) -> list[Violation]:
    """The signing rule over one commit that must be signed (``checked`` None: it was not
    read, which is a problem too: fail closed)."""
    author = policy.member_by_email(author_email)
    if author is None:
        return []  # judge_commit says the author is no member
    whose = f"one of {author.id}'s keys listed in stageline.yaml"

    def bad(why: str, fix: str = SET_UP) -> list[Violation]:
        return [Violation(oid, None, f"this commit must be signed by {whose}; {why}", fix)]

    if checked is None or checked.key is None:
        return bad(checked.problem if checked and checked.problem else "it is unsigned")
    key = checked.key
    if key.fingerprint in policy.signing.revoked:
        return bad(f"it is signed with the revoked key {key.fingerprint}",
                   "sign with a key that is not revoked, and list it for you")
    owner = policy.key_owner(key.blob)
    if owner is None:
        return bad(f"it is signed with {key.fingerprint}, which stageline.yaml lists for no "
                   "one", f"an org-admin lists the key under {author.id} in an earlier push, "
                   "or sign with a key listed for you")
    if owner != author.id:
        return bad(f"it is signed with {owner}'s key {key.fingerprint}",
                   f"the author signs their own commit: {author.id} re-runs the action")
    if committer_email.strip().lower() != author.email.lower():
        return bad(f"its committer ({committer_email}) is not its author",
                   "commit as yourself: the committer's email is the author's")
    return []
