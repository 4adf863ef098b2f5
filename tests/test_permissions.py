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
    assert "another org-admin" in result.err
    assert sl(staged_org, "promote", "support-bot", "--to", "production", actor="omar").code == OK
