"""Generate an organization repository of N agents × F files, and pushes of C commits.

Everything goes through one ``git fast-import`` stream, so a large organization
takes seconds, not the hours that one commit per process would. Tree ids that
approvals must name are computed here the way git computes them.

    python bench/gen_org.py OUT.git --agents 1000 --files 8 [--commits 1000]

makes a bare repository whose ``main`` holds the organization with every agent
in all three environments, and (with --commits) a ``refs/bench/push`` C commits
ahead of it: development edits, promotions to staging, QA approvals and
production pushes, each authored by a member holding the role, as a real team's
push would be.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from stageline.approval import Mark
from stageline.approval import text as approval_text  # what stageline mark-ready writes

# One pusher (sam) brings a whole team's work in the benchmark push; approvals must be
# pushed by the member who marked them, so sam marks them, and separation of duties is
# off so that the same push may also carry the production pushes.
POLICY = b"""organization: bench
protected_branches: [main]
separation_of_duties: false
members:
  alice: {name: Alice Dev, email: alice@bench.test, roles: [developer]}
  quinn: {name: Quinn QA, email: quinn@bench.test, roles: [qa]}
  olga: {name: Olga Admin, email: olga@bench.test, roles: [org-admin]}
  sam: {name: Sam Release, email: sam@bench.test, roles: [developer, qa, org-admin]}
"""
PEOPLE = {
    "alice": b"Alice Dev <alice@bench.test>",
    "quinn": b"Quinn QA <quinn@bench.test>",
    "olga": b"Olga Admin <olga@bench.test>",
    "sam": b"Sam Release <sam@bench.test>",
}
ENVS = ("development", "staging", "production")


def compile_package() -> None:
    """Write the package's bytecode, as installing it from a wheel does. An editable
    install run with PYTHONDONTWRITEBYTECODE set would compile every module again at
    every start (about 70 ms), which no installed stageline does."""
    import compileall

    import stageline

    if not compileall.compile_dir(Path(stageline.__file__).parent, quiet=1):
        raise SystemExit("could not compile the stageline package")


def agent_name(i: int) -> str:
    return f"agent-{i:05d}"


def agent_files(i: int, files: int, version: int) -> dict[str, bytes]:
    name = agent_name(i)
    result = {
        "agent.yaml": (f"name: {name}\ndescription: Benchmark agent {i}\n"
                       "model: {provider: openai, name: gpt-4o-mini}\n"
                       "system_prompt: prompts/system.md\n").encode(),
        "prompts/system.md": f"You are {name}, version {version}.\n".encode(),
    }
    for j in range(max(0, files - 2)):
        result[f"knowledge/doc-{j:02d}.md"] = f"Document {j} of {name}.\n".encode() * 8
    return result


def _oid(kind: str, data: bytes) -> bytes:
    return hashlib.sha1(f"{kind} {len(data)}\0".encode() + data).digest()


def tree_id(files: dict[str, bytes]) -> str:
    """The id git gives a tree holding these files (all mode 100644)."""
    return _tree(files).hex()


def _tree(files: dict[str, bytes]) -> bytes:
    direct: dict[str, bytes] = {}
    nested: dict[str, dict[str, bytes]] = {}
    for path, data in files.items():
        head, sep, rest = path.partition("/")
        if sep:
            nested.setdefault(head, {})[rest] = data
        else:
            direct[head] = data
    entries = [(name, b"100644", _oid("blob", data)) for name, data in direct.items()]
    entries += [(name, b"40000", _tree(sub)) for name, sub in nested.items()]
    entries.sort(key=lambda e: e[0] + ("/" if e[1] == b"40000" else ""))
    body = b"".join(mode + b" " + name.encode() + b"\0" + oid for name, mode, oid in entries)
    return _oid("tree", body)


class Stream:
    """A fast-import stream written straight into the process."""

    def __init__(self, repo: Path) -> None:
        self.proc = subprocess.Popen(["git", "fast-import", "--quiet", "--done"], cwd=repo,
                                     stdin=subprocess.PIPE)
        assert self.proc.stdin is not None
        self.out = self.proc.stdin
        self.time = 1_760_000_000
        self.mark = 0

    def data(self, payload: bytes) -> None:
        self.out.write(b"data %d\n" % len(payload) + payload + b"\n")

    def commit(self, ref: str, who: str, message: str, ops: list[bytes],
               parent: int | None) -> int:
        self.mark += 1
        self.time += 60
        self.out.write(f"commit {ref}\nmark :{self.mark}\n".encode())
        for role in (b"author", b"committer"):
            self.out.write(role + b" " + PEOPLE[who] + b" %d +0000\n" % self.time)
        self.data(message.encode())
        if parent is not None:
            self.out.write(f"from :{parent}\n".encode())
        for op in ops:
            self.out.write(op)
        self.out.write(b"\n")
        return self.mark

    def close(self) -> None:
        self.out.write(b"done\n")
        self.out.close()
        if self.proc.wait() != 0:
            raise SystemExit("git fast-import failed")


def _modify(path: str, data: bytes) -> bytes:
    return f"M 100644 inline {path}\n".encode() + b"data %d\n" % len(data) + data + b"\n"


def _trailers(action: str, agent: str, actor: str) -> str:
    return (f"\n\nStageline-Action: {action}\nStageline-Agent: {agent}\n"
            f"Stageline-Actor: {actor}\n")


def push_ops(agents: int, files: int, commits: int) -> Iterator[tuple[str, str, list[bytes]]]:
    """(author, message, fast-import ops) for a push: edit → promote → approve → release,
    cycling over the agents."""
    step = 0
    version: dict[int, int] = {}
    while step < commits:
        i = (step // 4) % agents
        name = agent_name(i)
        version[i] = version.get(i, 0) + (1 if step % 4 == 0 else 0)
        base = f"environments/%s/{name}"
        kind = step % 4
        if kind == 0:
            content = agent_files(i, files, version[i])["prompts/system.md"]
            yield "alice", f"Edit {name}", [_modify(base % "development" + "/prompts/system.md",
                                                    content)]
        elif kind == 1:
            yield "alice", f"Promote {name} to staging" + _trailers("promote-to-staging", name,
                                                                    "alice"), [
                f"D {base % 'staging'}\n".encode(),
                f"C {base % 'development'} {base % 'staging'}\n".encode(),
                f"D approvals/{name}.yaml\n".encode()]
        elif kind == 2:
            tree = tree_id(agent_files(i, files, version[i]))
            text = approval_text(name, tree, (Mark("sam", "2026-11-28T00:00:00Z"),)).encode()
            yield "sam", f"Mark {name} ready" + _trailers("mark-ready", name, "sam"), [
                _modify(f"approvals/{name}.yaml", text)]
        else:
            yield "olga", f"Push {name} to production" + _trailers("promote-to-production",
                                                                   name, "olga"), [
                f"D {base % 'production'}\n".encode(),
                f"C {base % 'staging'} {base % 'production'}\n".encode()]
        step += 1


def generate(repo: Path, agents: int, files: int, commits: int = 0,
             policy: bytes = POLICY,
             steps: Iterator[tuple[str, str, list[bytes]]] | None = None) -> None:
    """The organization on ``main`` and, with ``commits``, ``refs/bench/push`` (the steps
    of ``push_ops`` unless ``steps`` are given)."""
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(repo)], check=True)
    stream = Stream(repo)
    ops = [_modify("stageline.yaml", policy)]
    for i in range(agents):
        for env in ENVS:
            for path, data in agent_files(i, files, 0).items():
                ops.append(_modify(f"environments/{env}/{agent_name(i)}/{path}", data))
    base = stream.commit("refs/heads/main", "olga", "Import the bench organization"
                         "\n\nStageline-Action: init\nStageline-Actor: olga\n", ops, None)
    parent = base
    for who, message, commit_ops in steps or push_ops(agents, files, commits):
        parent = stream.commit("refs/bench/push", who, message, commit_ops, parent)
    stream.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--commits", type=int, default=0)
    args = parser.parse_args(argv)
    if args.out.exists():
        print(f"{args.out} exists; choose a new path.", file=sys.stderr)
        return 2
    generate(args.out, args.agents, args.files, args.commits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
