"""The permission matrix of the contract (§4), every action × every role, from the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git, sl

from stageline.errors import OK, PERMISSION_DENIED

ROLES = {"developer": "alice", "qa": "quinn", "org-admin": "olga"}

# action → the roles that may do it
MATRIX = {
    "agent-new": {"developer", "org-admin"},
    "promote-staging": {"developer", "org-admin"},
    "mark-ready": {"qa"},
    "promote-production": {"org-admin"},
}


def _run(org: Path, action: str, member: str) -> int:
    if action == "agent-new":
        return sl(org, "agent", "new", "new-bot", actor=member).code
    if action == "promote-staging":
        return sl(org, "promote", "support-bot", "--to", "staging", actor=member).code
    if action == "mark-ready":
        return sl(org, "mark-ready", "support-bot", actor=member).code
    return sl(org, "promote", "support-bot", "--to", "production", actor=member).code


@pytest.fixture
def prepared(org: Path, request: pytest.FixtureRequest) -> Path:
    action = request.node.callspec.params["action"]
    if action in ("mark-ready", "promote-production"):
        assert sl(org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    if action == "promote-production":
        assert sl(org, "mark-ready", "support-bot", actor="rita").code == OK
    return org


@pytest.mark.parametrize("role", sorted(ROLES))
@pytest.mark.parametrize("action", sorted(MATRIX))
def test_matrix(prepared: Path, action: str, role: str) -> None:
    before = git(prepared, "rev-parse", "HEAD")
    code = _run(prepared, action, ROLES[role])
    after = git(prepared, "rev-parse", "HEAD")
    if role in MATRIX[action]:
        assert code == OK
        assert after != before
        assert git(prepared, "log", "-1", "--format=%ae") == f"{ROLES[role]}@test.example"
    else:
        assert code == PERMISSION_DENIED
        assert after == before


def test_list_shows_each_role_its_own_view(ready_org: Path) -> None:
    assert sl(ready_org, "agent", "new", "dev-only", actor="alice").code == OK
    import json

    def names(member: str) -> dict[str, list[str]]:
        result = sl(ready_org, "list", "--json", actor=member)
        assert result.code == OK
        return {a["name"]: sorted(a["environments"]) for a in json.loads(result.out)["agents"]}

    assert names("alice") == {"dev-only": ["development"], "support-bot": ["development"]}
    assert names("quinn") == {"support-bot": ["staging"]}
    assert names("olga") == {"dev-only": ["development"],
                             "support-bot": ["development", "staging"]}
    qa = json.loads(sl(ready_org, "list", "--json", actor="quinn").out)["agents"][0]
    assert qa["ready_for_production"] is True


def test_list_needs_an_actor(org: Path) -> None:
    result = sl(org, "list")
    assert result.code == PERMISSION_DENIED
    assert "--as" in result.err


def test_actor_from_environment_and_git_email(org: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGELINE_ACTOR", "quinn")
    assert sl(org, "promote", "support-bot", "--to", "staging").code == PERMISSION_DENIED
    monkeypatch.delenv("STAGELINE_ACTOR")
    git(org, "config", "user.email", "Alice@Test.Example")
    assert sl(org, "promote", "support-bot", "--to", "staging").code == OK
    assert git(org, "log", "-1", "--format=%an <%ae>") == "Alice Dev <alice@test.example>"
    # --as wins over both
    monkeypatch.setenv("STAGELINE_ACTOR", "alice")
    result = sl(org, "mark-ready", "support-bot", actor="quinn")
    assert result.code == OK


def test_non_member_is_refused(org: Path) -> None:
    result = sl(org, "promote", "support-bot", "--to", "staging", actor="mallory")
    assert result.code == PERMISSION_DENIED
    assert "mallory is not a member" in result.err
    git(org, "config", "user.email", "mallory@evil.example")
    result = sl(org, "promote", "support-bot", "--to", "staging")
    assert result.code == PERMISSION_DENIED
    assert "mallory@evil.example" in result.err


def test_separation_of_duties(staged_org: Path) -> None:
    assert sl(staged_org, "mark-ready", "support-bot", actor="sam").code == OK
    result = sl(staged_org, "promote", "support-bot", "--to", "production", actor="sam")
    assert result.code == PERMISSION_DENIED
    assert "an org-admin who did not mark it" in result.err
    assert sl(staged_org, "promote", "support-bot", "--to", "production", actor="omar").code == OK


# -- the edit rows of §4, enforced by the server ------------------------------------------

EDITS = {
    # path → the roles that may change it
    "environments/development/support-bot/prompts/system.md": {"developer", "org-admin"},
    "stageline.yaml": {"org-admin"},
    "settings/production.yaml": {"org-admin"},
    ".github/workflows/ci.yml": {"org-admin"},
    ".gitlab-ci.yml": {"org-admin"},
    "README.md": {"developer", "org-admin"},
    "environments/staging/support-bot/prompts/system.md": set(),
    "environments/production/support-bot/prompts/system.md": set(),
}


@pytest.fixture(scope="module")
def hooked_server(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import make_org

    server = make_org(tmp_path_factory.mktemp("srv") / "server.git", bare=True)
    assert sl(None, "hook", "install", str(server)).code == OK
    return server


@pytest.mark.parametrize("role", sorted(ROLES))
@pytest.mark.parametrize("path", sorted(EDITS))
def test_edit_matrix_on_the_server(hooked_server: Path, tmp_path: Path, path: str,
                                   role: str) -> None:
    from conftest import author_env

    member = ROLES[role]
    work = tmp_path / "w"
    git(tmp_path, "clone", "-q", str(hooked_server), str(work))
    target = work / path
    target.parent.mkdir(parents=True, exist_ok=True)
    text = target.read_text() if target.exists() else ""
    target.write_text(text + "# a change\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", f"Change {path}", env=author_env(member))
    before = git(hooked_server, "rev-parse", "main")
    pushed = git(work, "push", "-q", "origin", "HEAD:refs/heads/main",
                 env={"REMOTE_USER": member}, check=False)
    after = git(hooked_server, "rev-parse", "main")
    if role in EDITS[path]:
        assert after == git(work, "rev-parse", "HEAD"), pushed
        git(hooked_server, "update-ref", "refs/heads/main", before)  # the next case starts clean
    else:
        assert after == before
