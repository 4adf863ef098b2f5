"""The members' keys as the policy lists them, and git's own signing set-up.

``signing_key`` reads what ``git commit -S`` would sign with (``gpg.format=ssh`` and
``user.signingkey``: a key file, a ``.pub`` file whose private half is in ssh-agent, or
a literal ``key::ssh-ed25519 …``), so that an action knows, before it writes anything,
whether its commit would be signed with a key the policy lists for the actor. The
commit itself is signed by git (``commit-tree -S``), never by stageline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from stageline import sshkeys
from stageline.errors import Blocked
from stageline.git.process import ssh_keygen
from stageline.git.store import Store
from stageline.policy import Member, Policy
from stageline.sshkeys import PublicKey


@dataclass(frozen=True)
class SetUp:
    key: PublicKey | None
    problem: str | None = None  # what to configure, one sentence without a full stop
    where: str = ""  # where git takes the key from (user.signingkey's value)


def configured(store: Store) -> SetUp:
    """The key git would sign a commit with, or what is missing for it to sign."""
    fmt = (store.config("gpg.format") or "openpgp").strip()
    if fmt != "ssh":
        return SetUp(None, f"git signs with {fmt}, not an SSH key: run 'git config "
                           "gpg.format ssh'")
    value = (store.config("user.signingkey") or "").strip()
    if not value:
        return SetUp(None, "git has no signing key: run 'git config user.signingkey "
                           "~/.ssh/id_ed25519.pub' with the key the policy lists for you")
    if value.startswith(("key::", "ssh-", "ecdsa-", "sk-")):
        try:
            return SetUp(sshkeys.parse_key(value.removeprefix("key::")), None, "user.signingkey")
        except sshkeys.SignatureError as exc:
            return SetUp(None, f"user.signingkey is not a key git can sign with: {exc}")
    path = Path(os.path.expanduser(value))
    if not path.is_absolute() and store.work_tree is not None:
        path = Path(store.work_tree) / path
    pub = path if path.name.endswith(".pub") else path.with_name(path.name + ".pub")
    text = None
    if pub.is_file():
        text = pub.read_text(encoding="utf-8", errors="replace")
    elif path.is_file():  # a private key without its .pub: its public half
        code, out, _err = ssh_keygen(["-y", "-P", "", "-f", str(path)])
        text = out.decode("ascii", "replace") if code == 0 else None
    if text is None:
        return SetUp(None, f"user.signingkey names {value}, and there is no public key there "
                           "(nor beside it as .pub)")
    try:
        return SetUp(sshkeys.parse_key(text.strip()), None, str(pub if pub.is_file() else path))
    except sshkeys.SignatureError as exc:
        return SetUp(None, f"{value} is not an OpenSSH key git can sign with: {exc}")


def signing_key(store: Store, policy: Policy, actor: Member) -> PublicKey | None:
    """The key the actor's commit will be signed with; None when the policy requires no
    signature. Blocked (exit 4, nothing written) when git cannot sign with a key listed
    for the actor."""
    if policy.signing.require == "none":
        return None
    setup = configured(store)
    required = f"stageline.yaml requires signed actions (signing.require: " \
               f"{policy.signing.require})"
    if setup.key is None:
        raise Blocked(f"{required}, and {setup.problem}.")
    problem = listed_problem(policy, actor, setup.key)
    if problem:
        raise Blocked(f"{required}, and {problem}.")
    return setup.key


def listed_problem(policy: Policy, actor: Member, key: PublicKey) -> str | None:
    """Why ``key`` does not sign for ``actor`` under ``policy``, or None."""
    owner = policy.key_owner(key.blob)
    if key.fingerprint in policy.signing.revoked:
        return f"git's signing key {key.fingerprint} is revoked; set user.signingkey to " \
               "another key listed for you"
    if owner is None:
        return f"git's signing key {key.fingerprint} is not listed for {actor.id}; an " \
               f"org-admin adds it under members.{actor.id}.keys first (its line: " \
               f"'{key.line()}')"
    if owner != actor.id:
        return f"git's signing key {key.fingerprint} is {owner}'s, not {actor.id}'s; set " \
               "user.signingkey to your own key"
    return None


def allowed_signers(policy: Policy) -> str:
    """A file for ``gpg.ssh.allowedSignersFile``: each listed, unrevoked key under its
    holder's email (members) or id (service accounts), with no validity dates (a commit's
    date is its signer's to choose: it never decides whether a key counts)."""
    lines = [f"# {policy.organization}: the keys stageline.yaml lists "
             "('stageline keys allowed-signers')"]
    lines += [f'{principal} namespaces="git" {key.line()}'
              for _holder, _kind, principal, keys in _holders(policy) for key in keys
              if key.fingerprint not in policy.signing.revoked]
    return "\n".join(lines) + "\n"


def _holders(policy: Policy) -> list[tuple[str, str, str, tuple[PublicKey, ...]]]:
    """Who holds keys: (id, kind, the principal git names them by, their keys)."""
    return [(m.id, "member", m.email, m.keys) for m in policy.members.values()] + \
        [(a.id, "service account", a.id, a.keys) for a in policy.service_accounts.values()]


def listing(policy: Policy) -> list[dict[str, object]]:
    """``keys list``: every listed key with its holder, type, fingerprint and comment."""
    return [{"holder": holder, "kind": kind, "type": key.type, "fingerprint": key.fingerprint,
             "comment": key.comment, "revoked": key.fingerprint in policy.signing.revoked}
            for holder, kind, _principal, keys in _holders(policy) for key in keys]
