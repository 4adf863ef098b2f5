"""The git adapter's own guarantees: batched reads that never deadlock, exact parsing."""

from __future__ import annotations

import gc
import os
import subprocess
from pathlib import Path

import pytest
from conftest import author_env, git
from hypothesis import given
from hypothesis import strategies as st

from stageline.errors import RepositoryError
from stageline.git import walk
from stageline.git.objects import Entry
from stageline.git.process import GitFailed, nogc
from stageline.git.store import Store


def test_many_lookups_in_one_batch_do_not_deadlock(org: Path) -> None:
    with Store.open(org) as store:
        head = store.resolve("HEAD")
        assert head is not None
        specs = [f"{head}:stageline.yaml"] * 5000 + [f"{head}:missing/{i}" for i in range(5000)]
        infos = store.objects_info(specs)
    assert len(infos) == 10000
    assert infos[0] is not None and infos[0][1] == "blob"
    assert infos[-1] is None


def test_replace_builds_only_the_changed_path(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "--bare", "r.git")
    with Store.open(tmp_path / "r.git") as store:
        blob = store.hash_blob(b"x\n")
        root = store.replace(None, {"a/b/c.txt": Entry("100644", blob),
                                    "a/d.txt": Entry("100644", blob)})
        listing = git(tmp_path / "r.git", "ls-tree", "-r", "--name-only", root).splitlines()
        assert listing == ["a/b/c.txt", "a/d.txt"]
        emptied = store.replace(root, {"a/b/c.txt": None})
        listing = git(tmp_path / "r.git", "ls-tree", "-r", "-t", "--name-only",
                      emptied).splitlines()
        assert listing == ["a", "a/d.txt"]  # the emptied directory is gone


@pytest.mark.parametrize(("message", "expected"), [
    ("Subject\n\nStageline-Action: fake in the body\n\nStageline-Action: mark-ready\n"
     "Stageline-Agent: a\nStageline-Agent: b\n",
     {"Stageline-Action": "mark-ready", "Stageline-Agent": "a\nb"}),
    ("Only a subject", {}),
    # a line of spaces ends a paragraph for git, and keys compare without case
    ("Docs\n   \nstageline-action: promote-to-production\nStageline-ACTOR: olga\n",
     {"Stageline-Action": "promote-to-production", "Stageline-Actor": "olga"}),
])
def test_trailers_are_the_ones_git_finds(org: Path, message: str,
                                         expected: dict[str, str]) -> None:
    (org / "README.md").write_text(message)
    git(org, "add", "-A")
    git(org, "commit", "-q", "--cleanup=verbatim", "-m", message, env=author_env("alice"))
    with Store.open(org) as store:
        (commit,) = store.walk(["-1", "HEAD"], with_changes=False)
    shown = git(org, "log", "-1", "--format=%(trailers:only,unfold)")
    assert commit.trailers == expected
    assert len([ln for ln in shown.split("\n") if ln]) == sum(
        v.count("\n") + 1 for v in expected.values())


def test_commit_messages_with_odd_bytes_are_read_exactly(org: Path) -> None:
    (org / "README.md").write_text("x\n")
    git(org, "add", "-A")
    git(org, "commit", "-q", "-m", "weird \x01 message\n\n:100644 100644 fake",
        env=author_env("alice"))
    with Store.open(org) as store:
        (commit,) = store.walk(["-1", "HEAD"])
    assert [c.path for c in commit.changes] == ["README.md"]
    assert "\x01" in commit.message


def test_a_walk_cut_at_a_depth_keeps_exactly_the_shallower_entries(tmp_path: Path) -> None:
    """Git's output is cut before it is parsed; names with colons, newlines and spaces
    (a colon could start a record) leave the cut where the depth puts it."""
    repo = tmp_path / "repo"
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    names = ["plain", ":100644 100644 a b M", "new\nline", "sp ace", ":x"]
    for name in names:
        (repo / name).write_text("1\n")
        deep = repo / "a" / name / "b" / name
        deep.mkdir(parents=True)
        (deep / name).write_text("1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first", env=author_env("alice"))
    for name in names[::2]:
        (repo / name).write_text("2\n")
        (repo / "a" / name / "b" / name / name).write_text("2\n")
    (repo / "a" / ":x" / "b" / ":x" / ":x").unlink()  # a directory gone
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "second", env=author_env("alice"))
    with Store.open(repo) as store:
        order = store.rev_list(["HEAD"])
        full = store.first_parent_changes(order, trees=True)
        assert max(c.path.count("/") for c in full[order[0][0]]) == 4
        for depth in range(5):
            cut = store.first_parent_changes(order, trees=True, depth=depth)
            assert cut == {oid: kept for oid, found in full.items()
                           if (kept := [c for c in found if c.path.count("/") <= depth])}


def _history(repo: Path, names: list[str], commits: int) -> None:
    """``commits`` commits on main, each changing one of ``names`` (one fast-import)."""
    stream = [b"reset refs/heads/main\n"]
    for i in range(commits):
        quoted = f"d/{names[i % len(names)]}/f".replace("\\", "\\\\").replace("\n", "\\n")
        path = f'"{quoted}"'.encode()  # fast-import's C-style quoting
        stream += [b"commit refs/heads/main\n",
                   b"committer A <a@example.com> %d +0000\n" % (1700000000 + i),
                   b"data 2\nc\n", b"M 100644 inline " + path + b"\n", b"data %d\n%d\n" %
                   (len(str(i)) + 1, i)]
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, input=b"".join(stream),
                   check=True)


def test_a_walk_split_between_two_processes_is_the_walk_read_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long history is diffed by two diff-tree processes side by side; names that look
    like a commit id or a record change nothing."""
    repo = tmp_path / "repo"
    git(tmp_path, "init", "-q", "--bare", str(repo))
    names = ["plain", "#stageline-00", "new\nline", "0" * 40, ":x"]
    _history(repo, names, 60)
    with Store.open(repo) as store:
        order = store.rev_list(["main"])
        whole = store.first_parent_changes(order, trees=True)
        assert len(whole) == 60
        monkeypatch.setattr(walk, "PARALLEL_DIFF", 2)  # two processes, as with many
        assert store.first_parent_changes(order, trees=True) == whole


def test_a_walk_that_git_cannot_finish_fails(tmp_path: Path) -> None:
    """A tree missing half way through a walk: the walk fails with git's own message."""
    repo = tmp_path / "repo"
    git(tmp_path, "init", "-q", "--bare", str(repo))
    _history(repo, ["a", "b"], 20)
    old = git(repo, "rev-parse", "main~15^{tree}")
    for pack in (repo / "objects" / "pack").glob("*.pack"):  # every object loose
        moved = tmp_path / pack.name
        pack.rename(moved)
        pack.with_suffix(".idx").unlink()
        with moved.open("rb") as objects:
            subprocess.run(["git", "unpack-objects", "-q"], cwd=repo, stdin=objects,
                           check=True)
    (repo / "objects" / old[:2] / old[2:]).unlink()
    with Store.open(repo) as store:
        order = store.rev_list(["main"])
        with pytest.raises(GitFailed, match="git diff-tree failed"):
            store.first_parent_changes(order)


def test_diff_output_with_anything_but_a_commit_where_one_belongs_is_refused() -> None:
    """Any token out of place would take the next commit's records if read as a commit:
    the walk fails instead."""
    oid = "a" * 40
    record = f":100644 100644 {'b' * 40} {'c' * 40} M\0environments/staging/x/f\0"
    assert walk.parse_diff_tree(f"{oid}\0{record}".encode())[oid][0].status == "M"
    for stray in ("#stageline-00\n" + oid, "stageline", oid[:39]):
        with pytest.raises(RepositoryError, match="unexpected format"):
            walk.parse_diff_tree(f"{stray}\0{record}".encode())


def test_nogc_runs_without_the_collector_and_restores_it() -> None:
    seen = []
    run = nogc(lambda: seen.append(gc.isenabled()))
    run()
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        run()  # a caller that turned it off keeps it off
        assert not gc.isenabled()
    finally:
        gc.enable()


def _git_tree(repo: Path, flat: dict[str, Entry]) -> str:
    """The tree git itself writes for a flat listing (a temporary index, write-tree)."""
    env = {"GIT_INDEX_FILE": str(repo / "test-index"), "GIT_DIR": str(repo)}
    listing = "".join(f"{e.mode} {e.oid}\t{p}\n" for p, e in flat.items())
    subprocess.run(["git", "update-index", "--add", "--index-info"], input=listing.encode(),
                   env={**os.environ, **env}, check=True)
    tree = subprocess.run(["git", "write-tree"], env={**os.environ, **env}, check=True,
                          capture_output=True).stdout.decode().strip()
    os.unlink(env["GIT_INDEX_FILE"])
    return tree


_NAMES = st.sampled_from(["a", "a.b", "a-b", "a0", "ab", "b", "a b", "é", "z", "a.", "_x"])


@given(start=st.dictionaries(_NAMES, st.booleans(), max_size=8),
       changes=st.dictionaries(st.tuples(_NAMES, st.sampled_from(["", "a", "a.b", "b"])),
                               st.one_of(st.none(), st.booleans()), max_size=6))
def test_replace_gives_the_tree_git_builds(tmp_path_factory: pytest.TempPathFactory,
                                           start: dict[str, bool],
                                           changes: dict[tuple[str, str], bool | None]) -> None:
    """replace() splices tree bytes; git's own mktree of the expected entries must agree,
    whatever the mix of files and directories, names that sort differently as
    directories ("a" against "a.b", "a-b"), deletions, and type changes."""
    repo = tmp_path_factory.mktemp("splice")
    with Store.init(str(repo), "main", bare=True) as store:
        blob, other = store.hash_blob(b"one\n"), store.hash_blob(b"two\n")
        sub = store.replace(None, {"inner": Entry("100644", blob)})
        files = {name: Entry("040000", sub) if is_dir else Entry("100644", blob)
                 for name, is_dir in start.items()}
        # the expected tree, as a flat listing: path -> entry
        flat = {}
        for name, entry in files.items():
            if entry.is_tree:
                flat[f"{name}/inner"] = Entry("100644", blob)
            else:
                flat[name] = entry
        root = store.replace(None, dict(flat)) if flat else None
        edits: dict[str, Entry | None] = {}
        for (name, leaf), value in changes.items():
            path = f"{name}/{leaf}" if leaf else name
            if any(p != path and (p.startswith(path + "/") or path.startswith(p + "/"))
                   for p in edits):
                continue  # one change per path, none inside another
            edits[path] = None if value is None else Entry("100644", other if value else blob)
        for path, entry in edits.items():
            for p in [p for p in flat if p == path or p.startswith(path + "/")
                      or path.startswith(p + "/")]:
                del flat[p]
            if entry is not None:
                flat[path] = entry
        got = store.replace(root, edits) if (root or edits) else None
        expected = _git_tree(repo, flat) if flat else None
        if got is None or expected is None:
            assert not flat and (got is None or got == store.replace(None, {}))
        else:
            assert got == expected


def test_git_keeps_its_memory_only_when_asked(org: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stageline.git.process import environment

    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv("STAGELINE_GIT_MALLOC", raising=False)
    assert "GLIBC_TUNABLES" not in environment()
    monkeypatch.setenv("STAGELINE_GIT_MALLOC", "keep")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    tunables = environment()["GLIBC_TUNABLES"]
    assert tunables.startswith("glibc.malloc.mmap_threshold=")
    assert tunables.endswith(":glibc.malloc.arena_max=2")  # the caller's come last and win
    with Store.open(org) as store:
        assert store.resolve("HEAD")  # git runs with them
