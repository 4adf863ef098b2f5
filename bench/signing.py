"""Time signed actions: a push in which some commits are signed actions, each signature
check alone, and ``stageline audit`` over a long signed history.

    python bench/signing.py [--agents 1000] [--commits 1000] [--signed 100]
                            [--audit 10000] [--runs 5]

The organization comes from bench/gen_org.py with a policy listing an Ed25519 key for
each member and ``signing.require: actions``. The push is ``--signed`` action commits
(edit → promote → mark → release cycles; their edits are development edits) padded with
development edits to ``--commits``; every action is signed as ``ssh-keygen -Y sign``
signs (an SSHSIG over the commit, namespace git, sha512), made here in-process and
written as loose objects so that thousands of commits take seconds. The hook then runs
as a server runs it (a new interpreter, the pusher in REMOTE_USER) and in-process;
``of_commit`` (split, parse, verify) is timed per signed commit; ``audit`` runs over a
history of ``--audit`` commits of which three in four are signed actions.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gen_org import POLICY, _modify, agent_files, agent_name, compile_package, generate, push_ops  # noqa: E402
from hook import _git, time_hook, time_in_process  # noqa: E402

MEMBERS = ("alice", "quinn", "olga", "sam")


def _s(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


class Keys:
    """An Ed25519 key per member, and SSH signatures made as ssh-keygen makes them."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self.private = {m: Ed25519PrivateKey.generate() for m in MEMBERS}
        self.blob = {m: _s(b"ssh-ed25519") + _s(k.public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw)) for m, k in self.private.items()}
        self.by_email = {f"{m}@bench.test".encode(): m for m in MEMBERS}

    def policy(self) -> bytes:
        lines = POLICY.decode().rstrip("\n").split("\n")
        out = []
        for line in lines:
            member = line.strip().split(":")[0]
            if member in self.blob:
                key = base64.b64encode(self.blob[member]).decode()
                line = line.rstrip("}") + f", keys: ['ssh-ed25519 {key}']}}"
            out.append(line)
        return ("\n".join(out) + "\nsigning: {require: actions}\n").encode()

    def sign(self, member: str, payload: bytes) -> bytes:
        digest = hashlib.sha512(payload).digest()
        signed = b"SSHSIG" + _s(b"git") + _s(b"") + _s(b"sha512") + _s(digest)
        raw = self.private[member].sign(signed)
        blob = (b"SSHSIG" + struct.pack(">I", 1) + _s(self.blob[member]) + _s(b"git") +
                _s(b"") + _s(b"sha512") + _s(_s(b"ssh-ed25519") + _s(raw)))
        text = base64.b64encode(blob).decode()
        return ("-----BEGIN SSH SIGNATURE-----\n" +
                "".join(text[i:i + 70] + "\n" for i in range(0, len(text), 70)) +
                "-----END SSH SIGNATURE-----").encode()


def resign(repo: Path, keys: Keys, ref: str, base: str) -> tuple[str, list[str]]:
    """``ref``'s commits after ``base`` written again on top of it, each action signed by
    its author: the new tip and the signed commits."""
    listed = _git(repo, "rev-list", "--reverse", ref, "--not", base).split()
    raw = _git(repo, "cat-file", "--batch", stdin=b"\n".join(listed) + b"\n")
    parent, signed, pos = base.encode(), [], 0
    objects = repo / "objects"
    for _ in listed:
        header_end = raw.index(b"\n", pos)
        size = int(raw[pos:header_end].split()[2])
        body = raw[header_end + 1:header_end + 1 + size]
        pos = header_end + 1 + size + 1
        head, _, message = body.partition(b"\n\n")
        lines = [ln for ln in head.split(b"\n") if not ln.startswith(b"parent ")]
        lines.insert(1, b"parent " + parent)
        payload = b"\n".join(lines) + b"\n\n" + message
        if b"\nStageline-Action: " in message:
            email = lines[2].split(b"<")[1].split(b">")[0]
            armored = keys.sign(keys.by_email[email], payload)
            lines.insert(4, b"gpgsig " + armored.replace(b"\n", b"\n "))
            body = b"\n".join(lines) + b"\n\n" + message
        else:
            body = payload
        data = b"commit %d\0" % len(body) + body
        oid = hashlib.sha1(data).hexdigest()
        path = objects / oid[:2] / oid[2:]
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(zlib.compress(data, 1))
        if b"gpgsig " in body:
            signed.append(oid)
        parent = oid.encode()
    _git(repo, "update-ref", "refs/bench/signed", parent.decode())
    return parent.decode(), signed


def mixed_steps(agents: int, files: int, commits: int, actions: int) \
        -> Iterator[tuple[str, str, list[bytes]]]:
    """``actions`` signed actions in edit → promote → mark → release cycles, then
    development edits of other agents up to ``commits``."""
    cycles = -(-actions // 3)
    made = 0
    for step in push_ops(agents, files, cycles * 4):
        made += 1
        yield step
    i = cycles
    while made < commits:
        name = agent_name(i % agents)
        content = agent_files(i % agents, files, 1000 + made)["prompts/system.md"]
        yield "alice", f"Edit {name}", [_modify(f"environments/development/{name}/prompts/"
                                                "system.md", content)]
        made += 1
        i += 1


def per_signature(repo: Path, signed: list[str], runs: int) -> float:
    """Split, parse and verify one commit's signature, in-process (median per commit)."""
    from stageline.server.signatures import of_commit

    raw = _git(repo, "cat-file", "--batch", stdin="\n".join(signed).encode() + b"\n")
    bodies, pos = [], 0
    for _ in signed:
        end = raw.index(b"\n", pos)
        size = int(raw[pos:end].split()[2])
        bodies.append(raw[end + 1:end + 1 + size])
        pos = end + 1 + size + 1
    assert all(of_commit(b, 40).key is not None for b in bodies)  # also imports
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for body in bodies:
            of_commit(body, 40)
        samples.append((time.perf_counter() - start) / len(bodies))
    return statistics.median(samples)


def time_audit(repo: Path, base: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-P", "-m", "stageline", "--repo", str(repo),
                               "audit", "--full", "--from", base, "--ref",
                               "refs/bench/signed"],
                              capture_output=True)
        samples.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"audit found violations:\n{proc.stdout.decode()[:2000]}")
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--signed", type=int, default=100)
    parser.add_argument("--audit", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    compile_package()
    keys = Keys()
    rows = []
    with tempfile.TemporaryDirectory(prefix="stageline-bench-") as tmp:
        repo = Path(tmp) / "push.git"
        generate(repo, args.agents, args.files, args.commits, keys.policy(),
                 mixed_steps(args.agents, args.files, args.commits, args.signed))
        base = _git(repo, "rev-parse", "main").decode().strip()
        tip, signed = resign(repo, keys, "refs/bench/push", base)
        count = len(_git(repo, "rev-list", tip, "--not", base).split())
        rows.append((f"{count}-commit push, {len(signed)} signed actions (hook, interpreter "
                     "start included)", time_hook(repo, base, tip, args.runs)))
        rows.append(("the same, in-process", time_in_process(repo, base, tip, args.runs)))
        rows.append(("one signature: split, parse, verify (in-process)",
                     per_signature(repo, signed, args.runs)))
        if args.audit:
            history = Path(tmp) / "audit.git"
            generate(history, args.agents, args.files, args.audit, keys.policy())
            start = _git(history, "rev-parse", "main").decode().strip()
            _tip, many = resign(history, keys, "refs/bench/push", start)
            rows.append((f"audit of {args.audit} commits ({len(many)} signed), first run",
                         time_audit(history, start, max(1, args.runs // 2))))
    print(f"{args.agents} agents × {args.files} files; {os.cpu_count()} cores; median of "
          f"{args.runs} runs\n")
    print("| what | time |\n|---|---|")
    for name, seconds in rows:
        shown = f"{seconds * 1000:.2f} ms" if seconds < 0.01 else f"{seconds * 1000:.0f} ms"
        print(f"| {name} | {shown} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
