"""The git adapter's own guarantees: batched reads that never deadlock, exact parsing."""

from __future__ import annotations

from pathlib import Path

from conftest import author_env, git

from stageline.gitstore import Entry, Store, parse_trailers


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


def test_trailers_are_read_from_the_last_paragraph_only() -> None:
    message = ("Subject\n\nStageline-Action: fake in the body\n\nStageline-Action: mark-ready\n"
               "Stageline-Agent: a\nStageline-Agent: b\n")
    trailers = parse_trailers(message)
    assert trailers["Stageline-Action"] == "mark-ready"
    assert trailers["Stageline-Agent"] == "a\nb"
    assert parse_trailers("Only a subject") == {}


def test_commit_messages_with_odd_bytes_are_read_exactly(org: Path) -> None:
    (org / "README.md").write_text("x\n")
    git(org, "add", "-A")
    git(org, "commit", "-q", "-m", "weird \x01 message\n\n:100644 100644 fake",
        env=author_env("alice"))
    with Store.open(org) as store:
        (commit,) = store.walk(["-1", "HEAD"])
    assert [c.path for c in commit.changes] == ["README.md"]
    assert "\x01" in commit.message
