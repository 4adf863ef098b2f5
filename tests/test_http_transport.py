"""The hook end to end over authenticated HTTP: a bare server behind ``git http-backend``
with Basic auth (tests/httpgit.py), clones and pushes by real git. The pusher is whoever
the HTTP server authenticated (REMOTE_USER), never what a commit claims."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import author_env, commit_all, git, make_org, sl
from httpgit import Request, backend_env, serve, with_credentials

from stageline.errors import OK

STG = "environments/staging/support-bot"
USERS = {"alice": "alice-pw", "quinn": "quinn pw:1", "olga": "olga-pw", "mallory": "mallory-pw"}
NO_PROMPT = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": ""}


@pytest.fixture
def server(tmp_path: Path) -> Path:
    srv = make_org(tmp_path / "srv" / "server.git", bare=True)
    assert sl(None, "hook", "install", str(srv)).code == OK
    return srv


@pytest.fixture
def requests() -> list[Request]:
    return []


@pytest.fixture
def base_url(server: Path, requests: list[Request]) -> Iterator[str]:
    with serve(server.parent, USERS, requests) as url:
        yield url


def url_as(base: str, user: str, password: str | None = None) -> str:
    return with_credentials(base, user, USERS[user] if password is None else password) \
        + "/server.git"


def http_git(cwd: Path, *args: str, env: dict[str, str] | None = None) \
        -> subprocess.CompletedProcess[str]:
    """git with no credential helper and no prompt: only the URL's credentials count."""
    full = {**os.environ, **NO_PROMPT, **(env or {})}
    return subprocess.run(["git", "-c", "credential.helper=", *args], cwd=cwd,
                          capture_output=True, text=True, env=full, check=False)


@pytest.fixture
def clone(base_url: str, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    proc = http_git(tmp_path, "clone", "-q", url_as(base_url, "alice"), str(work))
    assert proc.returncode == 0, proc.stderr
    return work


def tip(server: Path) -> str:
    return git(server, "rev-parse", "refs/heads/main")


def push_log(server: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in
            (server / "stageline-pushes.jsonl").read_text().splitlines()]


def accepted(clone: Path, server: Path, target: str, *extra: str) -> str:
    proc = http_git(clone, *extra, "push", target, "HEAD:main")
    assert proc.returncode == 0, proc.stderr
    head = git(clone, "rev-parse", "HEAD")
    assert tip(server) == head
    return proc.stderr


def rejected(clone: Path, server: Path, target: str, says: str) -> str:
    before = git(server, "for-each-ref")
    proc = http_git(clone, "push", target, "HEAD:main")
    assert proc.returncode != 0, proc.stderr
    assert says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert git(server, "for-each-ref") == before
    return proc.stderr


def staged(clone: Path, server: Path) -> None:
    """alice promotes support-bot to staging and pushes it over HTTP."""
    assert sl(clone, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    accepted(clone, server, "origin")


# -- the workflow over HTTP ------------------------------------------------------------------


def test_promotion_pushed_over_http_is_accepted_and_logged(clone: Path, server: Path,
                                                           requests: list[Request]) -> None:
    before = tip(server)
    staged(clone, server)
    assert tip(server) != before
    assert git(server, "rev-parse", f"main:{STG}") == \
        git(server, "rev-parse", "main:environments/development/support-bot")
    log = push_log(server)
    assert [(r["pusher"], r["ref"], r["old"], r["new"]) for r in log] == \
        [("alice", "refs/heads/main", before, tip(server))]
    pushes = [r for r in requests if r.method == "POST" and r.path.endswith("/git-receive-pack")]
    assert pushes and all(r.user == "alice" and r.status == 200 for r in pushes)


def test_qa_hand_edit_of_staging_is_rejected(clone: Path, server: Path, base_url: str) -> None:
    staged(clone, server)
    (clone / STG / "prompts/system.md").write_text("edited in staging by QA\n")
    commit_all(clone, "quinn", "Fix staging directly")
    git(clone, "remote", "add", "quinn", url_as(base_url, "quinn"))
    err = rejected(clone, server, "quinn", "rejected")
    assert "pre-receive hook declined" in err
    assert "staging must be an exact copy of development" in err
    assert "the author quinn (qa) may not promote to staging" in err
    assert "the pusher" not in err  # quinn is author and pusher: judged once, as the author
    assert [r["pusher"] for r in push_log(server)] == ["alice"]


# -- the identity is the server's, not the commit's -------------------------------------------


def test_pusher_is_the_authenticated_user_not_the_author(clone: Path, server: Path,
                                                         base_url: str) -> None:
    (clone / "README.md").write_text("docs by olga, pushed by alice\n")
    commit_all(clone, "olga", "Docs")
    accepted(clone, server, url_as(base_url, "alice"))
    assert push_log(server)[-1]["pusher"] == "alice"
    assert git(server, "log", "-1", "--format=%ae", "main") == "olga@test.example"

    policy = clone / "stageline.yaml"
    policy.write_text(policy.read_text() + "# alice was here\n")
    commit_all(clone, "alice", "Touch the policy")
    err = rejected(clone, server, url_as(base_url, "olga"), "rejected")
    assert "the author alice (developer) may not change stageline.yaml" in err
    assert "pusher" not in err  # olga, the authenticated pusher, may
    assert [r["pusher"] for r in push_log(server)] == ["alice"]


def test_authenticated_user_who_is_not_a_member(clone: Path, server: Path, base_url: str) -> None:
    (clone / "README.md").write_text("x\n")
    commit_all(clone, "alice", "Docs")
    rejected(clone, server, url_as(base_url, "mallory"), "the pusher mallory is not a member")


def test_wrong_password_is_refused(clone: Path, server: Path, base_url: str,
                                   requests: list[Request]) -> None:
    (clone / "README.md").write_text("x\n")
    commit_all(clone, "alice", "Docs")
    before = git(server, "for-each-ref")
    requests.clear()
    proc = http_git(clone, "push", url_as(base_url, "alice", "wrong"), "HEAD:main")
    assert proc.returncode != 0
    assert "Authentication failed" in proc.stderr, proc.stderr
    assert git(server, "for-each-ref") == before
    assert requests and all(r.status == 401 and r.user is None for r in requests)
    assert not (server / "stageline-pushes.jsonl").exists()


def test_requests_without_valid_credentials_get_a_challenge(base_url: str, server: Path) -> None:
    url = base_url + "/server.git/info/refs?service=git-receive-pack"
    for auth in (None, "Basic " + "YWxpY2U6bm9wZQ==", "Basic !!!", "Bearer alice-pw"):
        req = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req)
        assert info.value.code == 401
        assert info.value.headers["WWW-Authenticate"] == 'Basic realm="git"'
        info.value.close()
    req = urllib.request.Request(url, headers={"Authorization": "Basic YWxpY2U6YWxpY2UtcHc="})
    with urllib.request.urlopen(req) as resp:  # alice:alice-pw
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/x-git-receive-pack-advertisement"
        assert tip(server).encode() in resp.read()


# -- the transport itself: chunked and gzip request bodies --------------------------------------


def test_large_push_is_sent_chunked(clone: Path, server: Path, requests: list[Request]) -> None:
    (clone / "assets").mkdir()
    (clone / "assets/noise.bin").write_bytes(os.urandom(300_000))  # does not compress
    commit_all(clone, "alice", "A large file")
    requests.clear()
    accepted(clone, server, "origin", "-c", "http.postBuffer=65536")
    chunked = [r for r in requests if r.chunked and r.path.endswith("/git-receive-pack")]
    assert chunked and all(r.status == 200 for r in chunked)
    assert max(r.body_length for r in chunked) > 300_000
    assert git(server, "rev-parse", "main:assets/noise.bin") == \
        git(clone, "rev-parse", "HEAD:assets/noise.bin")
    assert push_log(server)[-1]["pusher"] == "alice"


def test_fetch_negotiation_is_sent_gzipped(clone: Path, server: Path, tmp_path: Path,
                                           base_url: str, requests: list[Request]) -> None:
    other = tmp_path / "other"
    assert http_git(tmp_path, "clone", "-q", url_as(base_url, "alice"), str(other)).returncode == 0
    (other / "README.md").write_text("moved on\n")
    commit_all(other, "alice", "Docs")
    accepted(other, server, "origin")
    # many local commits the server lacks, all newer than what it has: the client offers
    # them first, and its list of haves outgrows the 1 KiB above which git gzips a request
    head = git(clone, "rev-parse", "HEAD")
    tree = git(clone, "rev-parse", "HEAD^{tree}")
    base_time = int(git(clone, "log", "-1", "--format=%ct", head))
    for n in range(80):
        date = f"@{base_time + 3600 + n} +0000"
        head = git(clone, "commit-tree", tree, "-p", head, "-m", f"local {n}",
                   env={**author_env("alice"), "GIT_AUTHOR_DATE": date,
                        "GIT_COMMITTER_DATE": date})
    git(clone, "update-ref", "refs/heads/main", head)
    requests.clear()
    proc = http_git(clone, "fetch", "origin")
    assert proc.returncode == 0, proc.stderr
    assert git(clone, "rev-parse", "refs/remotes/origin/main") == tip(server)
    gzipped = [r for r in requests if r.content_encoding == "gzip"]
    assert gzipped, [(r.method, r.path, r.status, r.content_encoding, r.body_length)
                     for r in requests]
    assert all(r.status == 200 and r.path.endswith("/git-upload-pack") for r in gzipped)


def test_backend_environment_drops_repository_and_cgi_variables() -> None:
    inherited = {"PATH": "/bin", "HOME": "/home/t", "GIT_CONFIG_GLOBAL": "/home/t/gitconfig",
                 "GIT_CONFIG_NOSYSTEM": "1", "GIT_DIR": "/elsewhere.git", "GIT_WORK_TREE": "/w",
                 "GIT_INDEX_FILE": "/i", "GIT_OBJECT_DIRECTORY": "/o", "GIT_COMMON_DIR": "/c",
                 "GIT_QUARANTINE_PATH": "/q", "GIT_CONFIG_PARAMETERS": "'a.b'='c'",
                 "GIT_NAMESPACE": "ns", "REMOTE_USER": "olga", "HTTP_GIT_PROTOCOL": "version=2"}
    assert backend_env(inherited) == {"PATH": "/bin", "HOME": "/home/t",
                                      "GIT_CONFIG_GLOBAL": "/home/t/gitconfig",
                                      "GIT_CONFIG_NOSYSTEM": "1"}
