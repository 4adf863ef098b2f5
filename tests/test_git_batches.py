"""Store.objects / objects_info: the long-lived cat-file for small requests, a run of its
own for large ones, the same answers either way, and no deadlock on large contents."""

from __future__ import annotations

from pathlib import Path

from conftest import commit_all, git

from stageline.git.objects import FEW_BYTES, FEW_OBJECTS, PARALLEL_OBJECTS
from stageline.git.store import Store


def repo_with_files(tmp_path: Path) -> tuple[Path, str]:
    repo = tmp_path / "repo"
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    (repo / "big.bin").write_bytes(bytes(range(256)) * 1024)  # 256 KiB: more than a pipe
    (repo / "dir with space").mkdir()
    (repo / "dir with space" / "a.txt").write_text("a\n")
    long_dir = repo / ("d" * 200)
    long_dir.mkdir()
    (long_dir / "f.txt").write_text("long\n")
    return repo, commit_all(repo, "alice", "Files")


def test_small_and_large_requests_answer_alike(tmp_path: Path) -> None:
    repo, head = repo_with_files(tmp_path)
    specs = [f"{head}:big.bin", f"{head}:dir with space/a.txt", f"{head}:no such file",
             f"{head}:missing dir/with spaces x", f"{head}:{'d' * 200}/f.txt", "bad\nname",
             head]
    with Store.open(repo) as store:
        few = store.objects(specs)
        # Repeated past both limits: one cat-file run of its own, answered in one stream.
        many = store.objects(specs * (FEW_OBJECTS // len(specs) + 1))
        assert len(("\n".join(specs * 40)).encode()) > FEW_BYTES
        long_request = store.objects(specs * 40)
        # Past PARALLEL_OBJECTS, two cat-file runs answer a half each, joined in order.
        halves = store.objects(specs * (PARALLEL_OBJECTS // len(specs) + 1))
        infos = store.objects_info(specs)
        infos_many = store.objects_info(specs * 40)
    assert many[:len(specs)] == few and long_request[-len(specs):] == few
    assert len(halves) > PARALLEL_OBJECTS and halves == few * (len(halves) // len(specs))
    assert infos_many[:len(specs)] == infos
    big = few[0]
    assert big is not None and big[1] == "blob" and big[2] == bytes(range(256)) * 1024
    assert big[0] == git(repo, "rev-parse", f"{head}:big.bin")
    assert few[1] is not None and few[1][2] == b"a\n"
    # Missing names, even holding spaces, are None rather than a misread answer.
    assert few[2] is None and few[3] is None and few[5] is None
    assert infos[2] is None and infos[3] is None and infos[5] is None
    assert few[4] is not None and few[4][2] == b"long\n"
    assert few[6] is not None and few[6][1] == "commit"
    assert infos[0] == (big[0], "blob") and infos[6] == (head, "commit")
