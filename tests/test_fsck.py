"""stageline reads git's structures as git does: differential tests against git's own view.

For each structure stageline looks at itself, hostile objects are generated (hash-object
--literally, update-ref with odd names, hand-made trees) and stageline's view is compared
with git's: ``fsck.py``'s verdict on trees and commits with ``git fsck``'s (every message
made an error), the parents, tree and author it takes from a commit with ``rev-list
--parents`` and ``log --format``, ref listings with ``rev-parse``, and a walk's changes
with ``diff-tree --name-only``. A disagreement is a hole: the hook would judge something
other than what git's tools read.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from objects import blob, hash_object, tree_bytes

from stageline.git import fsck
from stageline.git.store import Store

FSCK_ERRORS = ("badFilemode", "zeroPaddedFilemode", "nullSha1", "hasDot", "hasDotdot",
               "hasDotgit", "emptyName", "fullPathname", "duplicateEntries", "treeNotSorted",
               "badTree", "missingNameBeforeEmail", "badName", "missingEmail",
               "missingSpaceBeforeEmail", "badEmail", "missingSpaceBeforeDate",
               "zeroPaddedDate", "badDateOverflow", "badDate", "badTimezone", "missingTree",
               "badTreeSha1", "badParentSha1", "missingAuthor", "multipleAuthors",
               "missingCommitter", "nulInHeader", "unterminatedHeader", "badObjectSha1")
SETTINGS = settings()  # the suite's profile (conftest.py)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A repository holding the objects generated trees and commits point at."""
    repo = tmp_path_factory.mktemp("base") / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    file = blob(repo, "hello\n")
    tree = hash_object(repo, "tree", tree_bytes([("100644", "a", file)]))
    commit = subprocess.run(["git", "commit-tree", tree, "-m", "base"], cwd=repo, check=True,
                            capture_output=True, text=True,
                            env={**os.environ, "GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@x",
                                 "GIT_COMMITTER_NAME": "A", "GIT_COMMITTER_EMAIL": "a@x"}
                            ).stdout.strip()
    return {"repo": str(repo), "blob": file, "tree": tree, "commit": commit}


def git_fsck(base: dict[str, str], kind: str, data: bytes) -> tuple[str, bool, bytes]:
    """Write one object into a scratch repository that borrows the base's objects: its id,
    whether ``git fsck --strict``, every message an error, finds it well-formed, and (a
    tree) how ``ls-tree -z`` lists it."""
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(["git", "init", "-q", "--bare", scratch], check=True)
        Path(scratch, "objects/info/alternates").write_text(f"{base['repo']}/.git/objects\n")
        oid = hash_object(Path(scratch), kind, data)
        config = [arg for msg in FSCK_ERRORS for arg in ("-c", f"fsck.{msg}=error")]
        proc = subprocess.run(["git", *config, "fsck", "--strict", "--no-dangling", "--no-full",
                               "--no-progress"], cwd=scratch, capture_output=True)
        listed = subprocess.run(["git", "ls-tree", "-z", oid], cwd=scratch,
                                capture_output=True).stdout if kind == "tree" else b""
        return oid, proc.returncode == 0, listed


# -- trees ----------------------------------------------------------------------------------

NAMES = st.one_of(
    st.sampled_from(["a", "b", "a-b", "a.b", "a0", "ab", "agent.yaml", "support-bot", ".",
                     "..", "", ".git", ".GIT", ".git.", "git~1", "a/b", "environments",
                     "tab\tname", "new\nline", "caf\u00e9", "e\u0301", "z\u2028z"]),
    st.text(st.characters(codec="utf-8", exclude_characters="\0/"), min_size=1, max_size=4))
MODES = st.sampled_from(["100644", "100755", "120000", "160000", "40000", "040000", "100664",
                         "644", "100600", "0100644", "1"])


@st.composite
def trees(draw: st.DrawFn) -> list[tuple[str, str, str]]:
    items = draw(st.lists(st.tuples(MODES, NAMES, st.sampled_from(["blob", "tree", "null",
                                                                   "commit"])),
                          max_size=6))
    order = draw(st.sampled_from(["sorted", "as drawn", "reversed"]))
    entries = [(mode, name, kind) for mode, name, kind in items]
    if order == "sorted":
        entries.sort(key=lambda e: e[1].encode() + (b"/" if e[0].lstrip("0") == "40000"
                                                    else b""))
    elif order == "reversed":
        entries.reverse()
    return entries


def _oid(base: dict[str, str], mode: str, kind: str) -> str:
    if kind == "null":
        return "0" * 40
    if mode.lstrip("0") == "160000":
        return base["commit"]
    return base["tree"] if mode.lstrip("0") == "40000" else base["blob"]


@SETTINGS
@given(trees())
@example([("40000", "environments", "tree"), ("40000", "environments", "tree")])
@example([("100644", "b", "blob"), ("100644", "a", "blob")])
@example([("100644", "a", "blob"), ("100644", "a-b", "blob"), ("40000", "a", "tree")])
@example([("100664", "agent.yaml", "blob")])
@example([("040000", "x", "tree")])
@example([("100644", "a", "null")])
def test_a_tree_is_well_formed_exactly_when_git_fsck_says_so(
        base: dict[str, str], entries: list[tuple[str, str, str]]) -> None:
    items = [(mode, name, _oid(base, mode, kind)) for mode, name, kind in entries]
    data = tree_bytes(items)
    _written, git_ok, listed = git_fsck(base, "tree", data)
    ours = fsck.tree_problem(data, 20)
    if ours is None:
        assert git_ok, f"stageline accepts a tree git fsck refuses: {items}"
        # and git lists exactly the entries checked, as they are written
        assert _ls_tree(listed) == [(mode.zfill(6), name, oid) for mode, name, oid in items]
    elif git_ok:
        # Stricter than fsck only where a checkout on another file system reads ".git".
        assert "a name git refuses" in ours, (ours, items)


def _ls_tree(listed: bytes) -> list[tuple[str, str, str]]:
    found = []
    for record in listed.split(b"\0"):
        if record:
            meta, _, name = record.partition(b"\t")
            mode, _kind, oid = meta.decode().split(" ")
            found.append((mode, name.decode(), oid))
    return found


def test_git_writes_only_what_the_check_accepts(base: dict[str, str]) -> None:
    """Trees written by git's own mktree (every mode, unusual names) pass."""
    listing = (f"100644 blob {base['blob']}\tfile\n100755 blob {base['blob']}\texec\n"
               f"120000 blob {base['blob']}\tlink\n160000 commit {base['commit']}\tsub\n"
               f"040000 tree {base['tree']}\tdir\n100644 blob {base['blob']}\tdir-x\n"
               f"100644 blob {base['blob']}\tcaf\u00e9 \u2028\n")
    oid = subprocess.run(["git", "mktree", "--missing"], cwd=base["repo"], input=listing.encode(),
                         capture_output=True, check=True).stdout.decode().strip()
    data = subprocess.run(["git", "cat-file", "tree", oid], cwd=base["repo"],
                          capture_output=True, check=True).stdout
    assert fsck.tree_problem(data, 20) is None


# -- commits --------------------------------------------------------------------------------

IDENTS = st.sampled_from([
    "Olga <olga@x> 1700000000 +0000", "Olga <olga@x> 0 +0000", " <olga@x> 1 +0100",
    "Olga <alice@x> <olga@x> 1 +0000", "Olga olga@x> 1 +0000", "Olga<olga@x> 1 +0000",
    "Olga <olga@x> 01 +0000", "Olga <olga@x> 1 0000", "Olga <olga@x> 1 +00",
    "Olga <olga@x>", "Olga <olga@x> 99999999999999999999 +0000", "<olga@x> 1 +0000",
    "O>lga <olga@x> 1 +0000", "Olga <ol<ga@x> 1 +0000"])


@st.composite
def commits(draw: st.DrawFn) -> bytes:
    tree = draw(st.sampled_from(["{tree}", "{commit}", "nothex", ""]))
    lines = [f"tree {tree}"] if draw(st.booleans()) or tree == "{tree}" else []
    lines += [f"parent {p}" for p in draw(st.lists(st.sampled_from(["{commit}", "{tree}",
                                                                     "0" * 40, "zz"]),
                                                    max_size=2))]
    lines += [f"author {draw(IDENTS)}"] * draw(st.integers(0, 2))
    lines += [f"committer {draw(IDENTS)}"] * draw(st.integers(0, 1))
    extra = draw(st.lists(st.sampled_from(["parent {commit}", "author Olga <olga@x> 1 +0000",
                                           "committer Olga <olga@x> 1 +0000", "encoding UTF-8",
                                           "gpgsig -----BEGIN-----\n xyz\n -----END-----",
                                           "tree {tree}", "x-custom value"]), max_size=2))
    return ("\n".join(lines + extra) + draw(st.sampled_from(["\n\nmessage\n", "\n", ""]))
            ).encode()


@SETTINGS
@given(commits())
@example(b"tree {tree}\nauthor Olga <olga@x> 1 +0000\ncommitter Olga <olga@x> 1 +0000\n"
         b"parent {commit}\n\nwipe\n")
@example(b"tree {tree}\nparent {commit}\nauthor Olga <olga@x> 1 +0000\n"
         b"committer Olga <olga@x> 1 +0000\nauthor Alice <alice@x> 1 +0000\n\ntwo\n")
@example(b"tree {tree}\nparent {commit}\nauthor  <olga@x> 1700000000 +0100\n"
         b"committer Olga <olga@x> 0 -0130\nencoding UTF-8\ngpgsig -----BEGIN-----\n xyz\n"
         b" -----END-----\n\nsigned\n")
def test_a_commit_is_well_formed_only_when_git_reads_it_one_way(base: dict[str, str],
                                                                 template: bytes) -> None:
    data = template.replace(b"{tree}", base["tree"].encode()).replace(
        b"{commit}", base["commit"].encode())
    oid, git_ok, _listed = git_fsck(base, "commit", data)
    ours = fsck.commit_problem(data)
    if ours is not None:
        return
    # The hook also reads the tree (it must be one: malformed()) and the parents (rev-list
    # fails on anything but commits, and the push is rejected).
    header = data.partition(b"\n\n")[0].decode().split("\n")
    named = [(line[5:], "tree") for line in header[:1]] + \
        [(line[7:], "commit") for line in header if line.startswith("parent ")]
    if any(_kind(base, oid) != kind for oid, kind in named):
        return
    assert git_ok, f"stageline accepts a commit git fsck refuses: {data!r}"
    # What stageline then reads of it (git's formatter) is what its header says, and what
    # every other git reader says.
    repo = base["repo"]
    subprocess.run(["git", "hash-object", "--literally", "-t", "commit", "-w", "--stdin"],
                   cwd=repo, input=data, check=True, capture_output=True)
    with Store.open(repo) as store:
        commit = store.read_commits([oid])[0]
    parents = tuple(line[7:] for line in header if line.startswith("parent "))
    assert commit.parents == parents
    listed = subprocess.run(["git", "rev-list", "--parents", "-n", "1", oid], cwd=repo,
                            capture_output=True, text=True, check=True).stdout.split()
    assert tuple(listed[1:]) == parents
    assert commit.tree == header[0][5:]
    author = next(line for line in header if line.startswith("author "))[7:]
    name, _, rest = author.partition(" <")
    assert (commit.author_name, commit.author_email) == (name, rest.partition(">")[0])
    shown = subprocess.run(["git", "show", "-s", "--format=%an%x00%ae", oid], cwd=repo,
                           capture_output=True, text=True, check=True).stdout.strip("\n")
    assert shown.split("\0") == [commit.author_name, commit.author_email]


def _kind(base: dict[str, str], oid: str) -> str:
    return subprocess.run(["git", "cat-file", "-t", oid], cwd=base["repo"],
                          capture_output=True, text=True).stdout.strip()


# -- refs and walks -------------------------------------------------------------------------

REF_NAMES = st.text(st.characters(codec="utf-8", exclude_characters="\0~^:?*[\\ \x7f",
                                  exclude_categories=["Cc"]), min_size=1, max_size=12)


@SETTINGS
@given(st.lists(REF_NAMES, min_size=1, max_size=4, unique=True))
@example(["z\u2028refs/heads/main", "a\u0085b", "x\u2029y", "nb\u00a0sp"])
def test_refs_are_listed_as_git_resolves_them(base: dict[str, str], names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(["git", "init", "-q", "--bare", scratch], check=True)
        Path(scratch, "objects/info/alternates").write_text(f"{base['repo']}/.git/objects\n")
        made = {}
        for name in names:
            ref = f"refs/heads/{name}"
            ok = subprocess.run(["git", "update-ref", ref, base["commit"]], cwd=scratch,
                                capture_output=True).returncode == 0
            if ok:
                made[ref] = subprocess.run(["git", "rev-parse", "--verify", ref], cwd=scratch,
                                           capture_output=True, text=True).stdout.strip()
        with Store.open(scratch) as store:
            assert store.refs("refs/heads/") == made


PATHS = st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\0/"),
                         min_size=1, max_size=6).filter(lambda s: s not in (".", "..", ".git")),
                 min_size=1, max_size=3).map("/".join)


@SETTINGS
@given(st.lists(PATHS, min_size=1, max_size=4, unique=True))
@example(["a\nb", ":100644 100644 x", "4b825dc642cb6eb9a060e54bf8d69288fbee4904"])
def test_a_walk_sees_the_paths_git_diffs(base: dict[str, str], paths: list[str]) -> None:
    repo = Path(base["repo"])
    env = {**os.environ, "GIT_INDEX_FILE": str(repo / ".git/scratch-index")}
    subprocess.run(["git", "read-tree", "--empty"], cwd=repo, env=env, check=True)
    listed = "".join(f"100644 {base['blob']} 0\t{p}\0" for p in sorted(set(paths))
                     if not any(q.startswith(p + "/") for q in paths))
    subprocess.run(["git", "update-index", "-z", "--index-info"], cwd=repo, env=env,
                   input=listed.encode(), check=True)
    tree = subprocess.run(["git", "write-tree"], cwd=repo, env=env, capture_output=True,
                          text=True, check=True).stdout.strip()
    commit = subprocess.run(["git", "commit-tree", tree, "-p", base["commit"], "-m", "x"],
                            cwd=repo, capture_output=True, text=True, check=True,
                            env={**os.environ, "GIT_AUTHOR_NAME": "A",
                                 "GIT_AUTHOR_EMAIL": "a@x", "GIT_COMMITTER_NAME": "A",
                                 "GIT_COMMITTER_EMAIL": "a@x"}).stdout.strip()
    git_view = subprocess.run(["git", "diff-tree", "-r", "-t", "--no-renames", "--name-only",
                               "-z", base["commit"], commit], cwd=repo, capture_output=True,
                              check=True).stdout.decode("utf-8", "surrogateescape")
    with Store.open(repo) as store:
        walked = store.walk_listed([(commit, (base["commit"],))], trees=True)
    assert sorted(c.path for c in walked[0].changes) == sorted(p for p in git_view.split("\0")
                                                               if p)


def test_a_signed_merge_with_an_encoding_is_well_formed(base: dict[str, str]) -> None:
    data = (f"tree {base['tree']}\nparent {base['commit']}\nparent {base['commit']}\n"
            "author A <a@x> 1700000000 +0100\ncommitter C <c@x> 1700000000 -0130\n"
            "encoding ISO-8859-1\ngpgsig -----BEGIN SSH SIGNATURE-----\n abc\n"
            " -----END SSH SIGNATURE-----\n\nMerge\n").encode()
    assert fsck.commit_problem(data) is None
    assert git_fsck(base, "commit", data)[1]


@SETTINGS
@given(st.lists(st.sampled_from(["a", "a-b", "a.b", "ab", "b", "z", "a0", "A"]), unique=True,
                max_size=6),
       st.lists(st.tuples(st.sampled_from(["a", "a-b", "a.b", "b", "c", "a0"]),
                          st.sampled_from(["100644", "40000", None])), max_size=4))
def test_a_tree_index_changed_is_the_tree_git_writes(base: dict[str, str], names: list[str],
                                                     changes: list[tuple[str, str | None]]
                                                     ) -> None:
    """fsck.TreeIndex builds the next version of a checked tree from the changes a diff
    reports; what it builds is byte for byte what git's mktree writes for the same
    entries (which is how the hook proves a new version canonical without checking every
    entry again)."""
    repo = Path(base["repo"])
    entries = {n: ("100644", base["blob"]) for n in names}
    tree = subprocess.run(["git", "mktree"], cwd=repo, capture_output=True, check=True,
                          input="".join(f"{m} {'tree' if m == '40000' else 'blob'} {o}\t{n}\n"
                                        for n, (m, o) in entries.items()).encode()
                          ).stdout.decode().strip()
    data = subprocess.run(["git", "cat-file", "tree", tree], cwd=repo, capture_output=True,
                          check=True).stdout
    index = fsck.TreeIndex.of(data, 20)
    assert index.data() == data
    for name, mode in changes:
        entries.pop(name, None)
        if mode is not None:
            entries[name] = (mode, base["tree"] if mode == "40000" else base["blob"])
    step = index.changed([(n.encode(), m.encode() if m else None,
                           bytes.fromhex(base["tree"] if m == "40000" else base["blob"]))
                          for n, m in changes])
    assert step is not None
    want = subprocess.run(["git", "mktree"], cwd=repo, capture_output=True, check=True,
                          input="".join(f"{'040000' if m == '40000' else m} "
                                        f"{'tree' if m == '40000' else 'blob'} {o}\t{n}\n"
                                        for n, (m, o) in entries.items()).encode()
                          ).stdout.decode().strip()
    written = subprocess.run(["git", "cat-file", "tree", want], cwd=repo, capture_output=True,
                             check=True).stdout
    assert step.data() == written
