"""The states every protected branch of a hooked test server must be in, read with git alone.

An oracle independent of stageline's code: it asks git (``rev-list``, ``diff-tree -t``,
``cat-file``, git's own trailer parser) and PyYAML, never stageline. ``conftest.py`` runs
it when each test ends, on every bare repository under the test's ``tmp_path`` that has
stageline's hook installed, so each test that pushes is also an attack check: whatever a
test pushed and the hook accepted must leave these states.

* No accepted push rewrote a protected branch: every tip the branch's reflog recorded
  lies on the current tip's first-parent chain.
* Every commit that entered the branch after it was created (the history it was created
  with is adopted as it is), judged against its first parent:
  * under ``environments/`` nothing but ``<environment>/<agent>/`` directories of regular
    files, no empty directory; ``approvals/`` holds ``<agent>.yaml`` files only;
  * a merge changes no staging, production or approval;
  * a staging directory that changed equals development's in the same commit;
  * a production directory that changed equals staging's with an approval of that tree in
    the same commit, or the production tree of the ``Stageline-Restores`` commit, an
    earlier commit of the branch; or it is removed along with staging (retired).
  * under a policy requiring signatures, a commit that must be signed is one that git
    and ssh-keygen verify as signed by its author's key (``git log --format=%G?%GS``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

MARKER = b"# stageline-managed-hook"
ENVIRONMENTS = ("development", "staging", "production")
AGENT = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
REGULAR = ("100644", "100755")


def _git(repo: Path, *args: str, input: bytes | None = None) -> bytes:
    proc = subprocess.run(["git", "--no-replace-objects", *args], cwd=repo, input=input,
                          capture_output=True)
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed in {repo}: {proc.stderr!r}")
    return proc.stdout


def hooked_servers(root: Path) -> list[Path]:
    """Bare repositories under ``root`` with stageline's pre-receive hook installed."""
    found = []
    for top, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("objects", "refs", "logs", ".git")]
        if "HEAD" not in files or not os.path.isdir(os.path.join(top, "objects")):
            continue
        hooks = [Path(top, "hooks/pre-receive"), Path(top, "hooks/pre-receive.d/stageline"),
                 Path(top, "custom_hooks/pre-receive.d/stageline")]
        if any(h.is_file() and MARKER in h.read_bytes()[:200] for h in hooks):
            found.append(Path(top))
    return found


def _policy(repo: Path, commit: str) -> dict[str, Any] | None:
    proc = subprocess.run(["git", "--no-replace-objects", "cat-file", "blob",
                           f"{commit}:stageline.yaml"], cwd=repo, capture_output=True)
    if proc.returncode != 0:
        return None
    try:
        doc = yaml.safe_load(proc.stdout)
    except yaml.YAMLError:
        return None
    return doc if isinstance(doc, dict) else None


def protected_branches(repo: Path) -> dict[str, str]:
    """Branches that the policy at the tip of a branch protecting itself protects."""
    out = _git(repo, "for-each-ref", "--format=%(objectname)%00%(refname)%00", "refs/heads/")
    tokens = out.split(b"\0")
    tips = {tokens[i + 1].decode("utf-8", "surrogateescape"): tokens[i].strip().decode()
            for i in range(0, len(tokens) - 1, 2)}
    names: set[str] = set()
    for ref, tip in tips.items():
        doc = _policy(repo, tip)
        listed = doc.get("protected_branches", ["main"]) if doc else []
        listed = {str(b).removeprefix("refs/heads/").casefold() for b in listed or []}
        if ref.removeprefix("refs/heads/").casefold() in listed:
            names |= listed
    return {ref: tip for ref, tip in tips.items()
            if ref.removeprefix("refs/heads/").casefold() in names}


def check_server(repo: Path) -> list[str]:
    problems = []
    for ref, tip in protected_branches(repo).items():
        problems += [f"{repo.name} {ref}: {p}" for p in check_branch(repo, ref, tip)]
    return problems


def check_branch(repo: Path, ref: str, tip: str) -> list[str]:
    chain_out = _git(repo, "rev-list", "--first-parent", "--parents", tip).decode()
    chain = [line.split(" ") for line in chain_out.split("\n") if line]
    order = [c[0] for c in chain]
    position = {oid: i for i, oid in enumerate(order)}
    reflog = _git(repo, "log", "-g", "--format=%H", ref).decode().split() \
        if Path(repo, "logs", ref).exists() else []
    problems = [f"the tip {oid[:12]} recorded in the reflog is not on the first-parent chain "
                "(history rewritten)" for oid in reflog if oid not in position]
    if problems:
        return problems
    adopted = position[reflog[-1]] if reflog else len(order) - 1
    judged = [c for c in chain[:adopted] if len(c) > 1]
    if not judged:
        return []
    empty = _git(repo, "hash-object", "-t", "tree", "--stdin", input=b"").decode().strip()
    feed = "".join(f"{c[0]} {c[1]}\n" for c in judged).encode()
    raw = _git(repo, "diff-tree", "--stdin", "-r", "-t", "-z", "--no-renames", input=feed)
    changes = _parse_diff(raw)
    restores = _restores(repo, [c[0] for c in judged])
    specs: list[str] = []
    touched: dict[str, set[tuple[str, str]]] = {}
    for c in judged:
        oid = c[0]
        for _old_mode, new_mode, new_oid, status, path in changes.get(oid, []):
            problem = _structure(path, new_mode, new_oid, status, empty)
            if problem:
                problems.append(f"{oid[:12]} {path}: {problem}")
            parts = path.split("/")
            if parts[0] == "environments" and len(parts) >= 3 and parts[1] in ENVIRONMENTS:
                touched.setdefault(oid, set()).add((parts[1], parts[2]))
            elif parts[0] == "approvals" and len(parts) == 2:
                touched.setdefault(oid, set()).add(("approval", parts[1].removesuffix(".yaml")))
        for _env, agent in touched.get(oid, ()):
            specs += [f"{oid}:environments/{e}/{agent}" for e in ENVIRONMENTS]
            specs.append(f"{oid}:approvals/{agent}.yaml")
        for target in restores.get(oid, []):
            specs += [f"{target}:environments/production/{a}" for _e, a in touched.get(oid, ())]
    found = _lookup(repo, specs)
    for c in judged:
        oid = c[0]
        merge = len(c) > 2
        for env, agent in sorted(touched.get(oid, ())):
            if merge and env != "development":
                problems.append(f"{oid[:12]}: a merge changed {env} of {agent}")
                continue
            if env == "staging":
                dev = found.get(f"{oid}:environments/development/{agent}")
                stg = found.get(f"{oid}:environments/staging/{agent}")
                if stg != dev:
                    problems.append(f"{oid[:12]}: staging of {agent} differs from development")
            elif env == "production":
                problems += _production(oid, agent, found, restores.get(oid, []), position)
    return problems + _signatures(repo, judged, changes)


SIGNED = ("environments/staging/", "environments/production/", "approvals/", "settings/",
          ".github/", ".gitlab/", ".gitea/", ".forgejo/")
SIGNED_FILES = ("stageline.yaml", ".gitlab-ci.yml", ".gitlab-ci.yaml")


def _signatures(repo: Path, judged: list[list[str]],
                changes: dict[str, list[tuple[str, str, str, str, str]]]) -> list[str]:
    """Under a policy requiring signatures (at the commit's first parent), each commit
    that must be signed verifies with git and ssh-keygen against the policy's keys as
    allowed signers, signed by the key of the member whose email is the author's, with
    the committer's email the author's."""
    policies = _lookup(repo, [f"{c[1]}:stageline.yaml" for c in judged])
    if not any(b"signing" in data for data in policies.values() if isinstance(data, bytes)):
        return []
    problems = []
    for c in judged:
        data = policies.get(f"{c[1]}:stageline.yaml")
        doc = yaml.safe_load(data) if isinstance(data, bytes) else None
        signing = doc.get("signing") if isinstance(doc, dict) else None
        require = signing.get("require", "none") if isinstance(signing, dict) else "none"
        paths = [f"{path}/" if new_mode == "040000" else path
                 for _o, new_mode, _n, _s, path in changes.get(c[0], [])]
        if require == "none" or require == "actions" and not any(
                p.startswith(SIGNED) or p in SIGNED_FILES for p in paths):
            continue
        revoked = set(signing.get("revoked") or [])
        allowed = Path(repo, f"oracle-allowed-{c[0][:12]}")
        lines = []
        for member in (doc.get("members") or {}).values():
            for key in member.get("keys") or []:
                blob = base64.b64decode(key.split()[1])
                fp = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode() \
                    .rstrip("=")
                if fp not in revoked:
                    lines.append(f'{member["email"]} namespaces="git" {" ".join(key.split()[:2])}')
        allowed.write_text("\n".join(lines) + "\n")
        try:
            out = _git(repo, "-c", f"gpg.ssh.allowedSignersFile={allowed}", "log", "--no-walk",
                       "--format=%G?%x00%GS%x00%ae%x00%ce", c[0]).decode()
        finally:
            allowed.unlink()
        status, signer, author, committer = out.strip("\n").split("\0")
        if status != "G" or signer.lower() != author.lower() or \
                committer.lower() != author.lower():
            problems.append(f"{c[0][:12]}: accepted, but git reads its signature as {status} "
                            f"by {signer or 'no one'} (author {author}, committer {committer})")
    return problems


def _production(oid: str, agent: str, found: dict[str, Any], restores: list[str],
                position: dict[str, int]) -> list[str]:
    prd = found.get(f"{oid}:environments/production/{agent}")
    stg = found.get(f"{oid}:environments/staging/{agent}")
    if restores:
        target = restores[0]
        earlier = target in position and position[target] > position[oid]
        if earlier and found.get(f"{target}:environments/production/{agent}") == prd:
            return []
        return [f"{oid[:12]}: production of {agent} is not the tree of the rollback target"]
    if prd is None and stg is None:
        return []
    if prd != stg:
        return [f"{oid[:12]}: production of {agent} differs from staging"]
    record = found.get(f"{oid}:approvals/{agent}.yaml")
    try:
        doc = yaml.safe_load(record) if isinstance(record, bytes) else None
    except yaml.YAMLError:
        doc = None
    if not isinstance(doc, dict) or doc.get("staging_tree") != prd or doc.get("agent") != agent:
        return [f"{oid[:12]}: production of {agent} holds a tree no approval names"]
    return []


def _structure(path: str, new_mode: str, new_oid: str, status: str, empty: str) -> str | None:
    if status == "D":
        return None
    parts = path.split("/")
    tree = new_mode == "040000"
    if parts[0] == "environments":
        if tree and new_oid == empty:
            return "an empty directory"
        if len(parts) == 1:
            return None if tree else "environments is not a directory"
        if parts[1] not in ENVIRONMENTS:
            return "not an environment"
        if len(parts) == 2:
            return None if tree else "an environment is not a directory"
        if not AGENT.fullmatch(parts[2]):
            return "not an agent name"
        if len(parts) == 3:
            return None if tree else "an agent is not a directory"
        return None if tree or new_mode in REGULAR else f"mode {new_mode} is not a regular file"
    if parts[0] == "approvals":
        if len(parts) == 1:
            return "approvals is empty" if tree and new_oid == empty else \
                None if tree else "approvals is not a directory"
        name = parts[1]
        if len(parts) != 2 or tree or new_mode not in REGULAR or not name.endswith(".yaml") \
                or not AGENT.fullmatch(name.removesuffix(".yaml")):
            return "approvals/ holds <agent>.yaml files only"
    return None


def _parse_diff(raw: bytes) -> dict[str, list[tuple[str, str, str, str, str]]]:
    tokens = raw.decode("utf-8", "surrogateescape").split("\0")
    result: dict[str, list[tuple[str, str, str, str, str]]] = {}
    current: list[tuple[str, str, str, str, str]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith(":"):
            old_mode, new_mode, _old, new_oid, status = token[1:].split(" ")
            current.append((old_mode, new_mode, new_oid, status, tokens[i + 1]))
            i += 2
            continue
        if token.strip():
            current = result.setdefault(token.strip(), [])
        i += 1
    return result


def _restores(repo: Path, oids: list[str]) -> dict[str, list[str]]:
    fmt = "%H%x00%(trailers:key=Stageline-Restores,valueonly,separator=%x20)%x00"
    out = _git(repo, "log", "--no-walk=unsorted", "--stdin", f"--format={fmt}",
               input="".join(f"{o}\n" for o in oids).encode()).decode("utf-8", "replace")
    tokens = out.split("\0")
    return {tokens[i].strip(): tokens[i + 1].split() for i in range(0, len(tokens) - 1, 2)
            if tokens[i + 1].strip()}


def _lookup(repo: Path, specs: list[str]) -> dict[str, Any]:
    """Each ``commit:path``: its tree id (a directory), its content (a file), or absent."""
    specs = sorted(set(specs))
    if not specs:
        return {}
    out = _git(repo, "cat-file", "--batch", input="".join(f"{s}\n" for s in specs).encode())
    found: dict[str, Any] = {}
    pos = 0
    for spec in specs:
        end = out.index(b"\n", pos)
        header = out[pos:end].split(b" ")
        pos = end + 1
        if len(header) != 3 or header[1] == b"missing":
            continue
        size = int(header[2])
        data = out[pos:pos + size]
        pos += size + 1
        found[spec] = header[0].decode() if header[1] == b"tree" else data
    return found
