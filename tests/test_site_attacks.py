"""The second attack pass on ``stageline site`` (incremental builds, the history cache,
board.js): each finding, built as the attacker did, through the real command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import commit_all, git, sl
from servers import accepted, ready
from test_site import build, site_files

from stageline.errors import BLOCKED, OK

DEV = "environments/development/support-bot"


def site_cli(repo: Path, out: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``stageline site`` in a process of its own, bounded: a hang fails, not blocks."""
    return subprocess.run([sys.executable, "-m", "stageline", "--repo", str(repo), "site",
                           "--out", str(out)], capture_output=True, text=True,
                          timeout=timeout)


def test_a_committed_output_directory_is_never_built_over(clone: Path, server: Path,
                                                          tmp_path: Path) -> None:
    """A developer committed public/ with a manifest and a forged agent page whose key
    and hash they computed: CI's `site --out public` in the checkout kept the page."""
    build(clone, clone / "public")
    page = clone / "public/agents/support-bot/index.html"
    forged = page.read_text().replace("</body>", "<script>document.title='x'</script></body>")
    page.write_text(forged)
    commit_all(clone, "alice", "A status page")
    result = sl(clone, "site", "--out", str(clone / "public"))
    assert result.code == BLOCKED and "holds files the repository tracks" in result.err
    assert page.read_text() == forged  # nothing written over it either
    build(clone, tmp_path / "public")  # an untracked directory: built
    assert "<script>document" not in (tmp_path / "public/agents/support-bot/index.html") \
        .read_text()


def test_a_previous_site_that_is_not_regular_files_is_not_read(clone: Path,
                                                              tmp_path: Path) -> None:
    """A marker that is a link (to /dev/zero: read until memory ran out) or a FIFO, a page
    that is a FIFO (the build hung) or a 100 MB sparse file (read whole)."""
    out = tmp_path / "public"
    build(clone, out)
    full = site_files(out)
    page = out / "agents/support-bot/index.html"
    page.unlink()
    os.mkfifo(page)
    assert site_cli(clone, out).returncode == OK
    assert site_files(out) == full
    with open(page, "r+b") as fh:
        fh.truncate(100 * 1024 * 1024)
    assert site_cli(clone, out).returncode == OK
    assert site_files(out) == full
    marker = out / ".stageline-site"
    marker.unlink()
    os.mkfifo(marker)
    result = site_cli(clone, out)
    assert result.returncode == BLOCKED and "not a stageline site" in result.stderr
    marker.unlink()
    marker.symlink_to("/dev/zero")
    result = site_cli(clone, out)
    assert result.returncode == BLOCKED and "not a stageline site" in result.stderr


def test_the_history_cache_holds_through_unshallowing_and_hand_edits(
        clone: Path, server: Path, tmp_path: Path) -> None:
    """A shallow clone's boundary commit was cached as a root (every agent "changed"
    there) and reused after `git fetch --unshallow`; a cache line with fields of the wrong
    type made every later build fail."""
    for text in ("one", "two", "three"):
        (clone / DEV / "prompts/system.md").write_text(f"{text}\n")
        commit_all(clone, "alice", f"Prompt {text}")
    accepted(clone, server, "alice")
    ready(clone, server)
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "2", f"file://{server}", str(shallow))
    build(shallow, tmp_path / "before")
    git(shallow, "fetch", "-q", "--unshallow")
    build(shallow, tmp_path / "after")
    build(clone, tmp_path / "reference")
    assert site_files(tmp_path / "after") == site_files(tmp_path / "reference")
    cache = shallow / ".git/stageline-history-cache.jsonl"
    lines = cache.read_text().splitlines()
    bad = []
    for line in lines:
        record = json.loads(line)
        record["e"]["o"], record["e"]["d"] = 5, [["staging", ["x"], None, "no"]]
        bad.append(json.dumps(record))
    cache.write_text("\n".join(bad) + "\n")
    log_cache = shallow / ".git/stageline-audit-cache.jsonl"
    log_cache.write_text("".join(json.dumps({**json.loads(line), "e": [
        {"time": 5, "action": ["x"], "agent": None, "tree": None, "email": 1,
         "claimed": None}]}) + "\n" for line in log_cache.read_text().splitlines()))
    build(shallow, tmp_path / "again")
    assert site_files(tmp_path / "again") == site_files(tmp_path / "reference")


def test_release_windows_are_judged_at_source_date_epoch(clone: Path, server: Path,
                                                         tmp_path: Path,
                                                         monkeypatch: object) -> None:
    """What a freeze blocks came from the build's clock: two builds a minute apart
    differed. With SOURCE_DATE_EPOCH the same commit and time give the same bytes."""
    policy = clone / "stageline.yaml"
    policy.write_text(policy.read_text() + "windows:\n  freeze: {kind: deny, cron: \"0 0 * * *\","
                      " duration: 1h, timezone: UTC}\npromotion:\n  production:\n"
                      "    windows: [freeze]\n")
    commit_all(clone, "olga", "A nightly freeze")
    accepted(clone, server, "olga")
    ready(clone, server)
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1796083500"}  # 2026-12-01 00:05 UTC: frozen
    for name in ("a", "b"):
        proc = subprocess.run([sys.executable, "-m", "stageline", "--repo", str(clone), "site",
                               "--out", str(tmp_path / name)], env=env, capture_output=True,
                              text=True)
        assert proc.returncode == OK, proc.stderr
    assert site_files(tmp_path / "a") == site_files(tmp_path / "b")
    assert "frozen by freeze" in (tmp_path / "a/index.html").read_text()


def test_git_configuration_does_not_change_a_large_diff(staged_org: Path,
                                                       tmp_path: Path) -> None:
    """git's diff of large files followed the repository's configuration
    (diff.interHunkContext, diff.algorithm): another machine, other bytes."""
    big = staged_org / DEV / "knowledge/big.md"
    big.parent.mkdir(exist_ok=True)
    big.write_text("".join(f"line {i}\n" for i in range(1500)))
    commit_all(staged_org, "alice", "Big")
    assert sl(staged_org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    big.write_text("".join(f"line {i}\n" if i % 50 else f"changed {i}\n"
                           for i in range(1500)))
    commit_all(staged_org, "alice", "Changed every fiftieth line")
    build(staged_org, tmp_path / "plain")
    git(staged_org, "config", "diff.interHunkContext", "100")
    git(staged_org, "config", "diff.algorithm", "patience")
    build(staged_org, tmp_path / "configured")
    assert site_files(tmp_path / "plain") == site_files(tmp_path / "configured")


def test_odd_output_paths_are_one_sentence(clone: Path, tmp_path: Path) -> None:
    """`--out .` and `--out x/..` failed with an unexpected error; a leftover directory of a
    killed build, named as this process would name it, made every build fail."""
    for out in (".", "public/.."):
        proc = subprocess.run([sys.executable, "-m", "stageline", "site", "--out", out],
                              cwd=clone, capture_output=True, text=True)
        assert proc.returncode == BLOCKED and "this directory or one above" in proc.stderr
        assert "Traceback" not in proc.stderr
    out = tmp_path / "public"
    build(clone, out)
    (out / "sub").mkdir()
    build(clone, out / "sub" / "..")  # the site itself, named another way
    assert not (out / "sub").exists()
    leftover = tmp_path / f".public.old-{os.getpid()}"
    leftover.mkdir()
    (leftover / "index.html").write_text("old\n")
    build(clone, out)
    assert (out / "index.html").read_text() != "old\n"


def test_serve_keeps_serving_after_a_build_it_refuses(clone: Path) -> None:
    """One commit the build refused (an invalid policy) ended the rebuilding for good."""
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "stageline", "site", "--serve", "--port",
                             "0"], cwd=clone, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split(" at ", 1)[1].split(" ", 1)[0]
        policy = clone / "stageline.yaml"
        good = policy.read_text()
        policy.write_text(good + "nonsense: true\n")
        commit_all(clone, "olga", "A broken policy")
        assert proc.stdout.readline().startswith("could not rebuild at ")
        policy.write_text(good)
        commit_all(clone, "olga", "The policy repaired")
        assert proc.stdout.readline().startswith("rebuilt the site at ")
        with urllib.request.urlopen(url + "index.html") as answer:
            assert git(clone, "rev-parse", "HEAD")[:12] in answer.read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_source_date_no_clock_can_hold_is_one_sentence(clone: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "stageline", "--repo", str(clone), "site",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          env={**os.environ, "SOURCE_DATE_EPOCH": "9" * 20})
    assert proc.returncode == 2 and "is not a time this machine can hold" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()
