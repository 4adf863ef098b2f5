"""Each commit's signature, checked once whatever policy then judges it (``signing``).

The commit objects are read in one ``cat-file`` batch, split as git splits them
(``git/signature.py``), and each ``SSHSIG`` is checked in-process (``sshkeys``);
a security key's signature goes to ``ssh-keygen -Y check-novalidate``, one process
per such signature. Never ``git log --format=%G?``: it starts ``ssh-keygen`` twice
for every commit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from stageline import signing, sshkeys
from stageline.git.fsck import commit_problem
from stageline.git.process import ssh_keygen
from stageline.git.signature import split
from stageline.git.store import Store
from stageline.git.walk import CommitInfo
from stageline.policy import Policy
from stageline.signing import Checked


def needing(commits: Sequence[CommitInfo], policies: Sequence[Policy]) -> list[CommitInfo]:
    """The commits that one of ``policies`` requires to be signed."""
    levels = {p.signing.require for p in policies}
    require = "all" if "all" in levels else "actions" if "actions" in levels else "none"
    return [c for c in commits if signing.required(c.changes, require)]


def check(store: Store, commits: Sequence[CommitInfo],
          bodies: Mapping[str, bytes] | None = None) -> dict[str, Checked]:
    """What each commit's signature is: the key of a good signature, or why there is none
    (the commit objects from ``bodies`` when they were read already)."""
    known = bodies or {}
    unread = [c.oid for c in commits if c.oid not in known]
    read = {oid: obj[2] for oid, obj in zip(unread, store.objects(unread), strict=True)
            if obj is not None and obj[1] == "commit"}
    return of_bodies([(c.oid, known.get(c.oid, read.get(c.oid))) for c in commits],
                     store.hexlen)


def of_bodies(bodies: Sequence[tuple[str, bytes | None]], hexlen: int) -> dict[str, Checked]:
    """``of_commit`` of each ``(oid, commit object)``; None: the object cannot be read."""
    return {oid: Checked(None, "it cannot be read") if data is None else of_commit(data, hexlen)
            for oid, data in bodies}


def of_commit(data: bytes, hexlen: int) -> Checked:
    if (why := commit_problem(data)) is not None:  # its header bounded, read one way
        return Checked(None, f"the commit is malformed ({why})")
    signed = split(data, hexlen)
    if signed.signature is None:
        return Checked(None, "it is unsigned")
    if signed.headers > 1:
        return Checked(None, "it has more than one signature header")
    try:
        signature = sshkeys.parse_armored(signed.signature)
        if sshkeys.verify(signature, signed.payload) is not None:
            _ssh_keygen_check(signature, signed.payload)
    except sshkeys.SignatureError as exc:
        return Checked(None, f"its signature does not hold ({exc})")
    return Checked(signature.key)


def _ssh_keygen_check(signature: sshkeys.Signature, payload: bytes) -> None:
    """A key type checked by ``ssh-keygen`` (a security key's); SignatureError unless good."""
    import tempfile  # a security key's signature only

    with tempfile.TemporaryDirectory(prefix="stageline-sig-") as tmp:
        path = os.path.join(tmp, "commit.sig")
        with open(path, "wb") as out:
            out.write(signature.armored)
        code, _out, _err = ssh_keygen(["-Y", "check-novalidate", "-n", "git", "-s", path],
                                      input=payload)
    if code != 0:
        raise sshkeys.SignatureError("ssh-keygen says it does not verify")
