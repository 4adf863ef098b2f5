"""A commit's signature and the bytes it signs, split as git splits them.

git signs a commit object without its signature headers and keeps the signature in a
``gpgsig`` header (``gpgsig-sha256`` in a SHA-256 repository), continued on lines that
start with a space. ``split`` is ``parse_buffer_signed_by_header`` of git's commit.c,
line for line: the header of the repository's hash names the signature; every
``gpgsig…`` header (this hash's or another's) is left out of the payload; the message
is kept whole. ``tests/test_signing.py`` holds it to what git hands ``ssh-keygen`` when
it verifies a commit (``gpg.ssh.program`` set to a recorder). Nothing here verifies.
"""

from __future__ import annotations

from typing import NamedTuple

HEADERS = {40: b"gpgsig", 64: b"gpgsig-sha256"}  # by the length of an object id in hex


class Signed(NamedTuple):
    payload: bytes  # the commit as it was signed
    signature: bytes | None  # the signature header's value, None when there is none
    headers: int  # how many of this hash's signature headers the commit has


def split(data: bytes, hexlen: int) -> Signed:
    """The payload and signature of a commit (``fsck.commit_problem`` bounds its header:
    only the header is read line by line, the message is taken whole)."""
    header = HEADERS[hexlen]
    payload: list[bytes] = []
    signature: list[bytes] = []
    in_signature = other_signature = False
    headers = 0
    pos, end = 0, len(data)
    if b"gpgsig" not in data[:data.find(b"\n\n") + 1 or end]:
        return Signed(data, None, 0)  # nothing to take out: the commit as it is
    while pos < end:
        newline = data.find(b"\n", pos)
        nxt = end if newline < 0 else newline + 1
        line = data[pos:nxt]
        sig: bytes | None = None
        if in_signature and line[:1] == b" ":
            sig = line[1:]
        elif line.startswith(header + b" "):
            sig = line[len(header) + 1:]
            other_signature = False
            headers += 1
        elif line.startswith(b"gpgsig"):
            other_signature = True
        elif other_signature and line[:1] != b" ":
            other_signature = False
        if sig is not None:
            signature.append(sig)
            in_signature = True
        else:
            if line[:1] == b"\n":
                nxt = end  # the message, whole
                line = data[pos:nxt]
            if not other_signature:
                payload.append(line)
            in_signature = False
        pos = nxt
    return Signed(b"".join(payload), b"".join(signature) if headers else None, headers)
