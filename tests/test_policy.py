"""stageline.yaml: every invalid policy is one sentence and exit 5."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import commit_all, sl

from stageline.errors import REPOSITORY
from stageline.policy import PolicyError, parse_policy

K = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDmFBfaI7jS7qItsS+XXa6xb5tw+bl4WvPxro1BU0quq"

VALID = b"""organization: acme
protected_branches: [main, Release]
members:
  alice: {name: Alice, email: alice@acme.test, roles: [developer]}
  olga: {name: Olga, email: Olga@Acme.test, roles: [org-admin, qa]}
"""


def test_valid_policy_is_parsed() -> None:
    policy = parse_policy(VALID)
    assert policy.organization == "acme"
    assert policy.members["olga"].roles == {"org-admin", "qa"}
    assert policy.member_by_email("olga@acme.TEST") is policy.members["olga"]
    assert policy.member_by_email(" alice@ACME.test\n") is policy.members["alice"]
    assert policy.member_by_email("mallory@acme.test") is None
    assert policy.is_protected("refs/heads/release")
    assert not policy.is_protected("refs/heads/feature")
    assert not policy.is_protected("refs/tags/main")
    assert policy.separation_of_duties is True


@pytest.mark.parametrize(("text", "says"), [
    (b"organization: [unclosed", "not valid YAML"),
    (b"- a list\n", "must be a mapping"),
    (b"organization: ''\nmembers: {a: {email: a@x.test, roles: [qa]}}\n", "organization"),
    (b"members: {a: {email: a@x.test, roles: [qa]}}\n", "organization"),
    (b"organization: acme\nmembers: {}\n", "at least one member"),
    (b"organization: acme\nmembers: {a: {name: A, roles: [qa]}}\n", "no valid email"),
    (b"organization: acme\nmembers: {a: {email: not-an-email, roles: [qa]}}\n", "no valid email"),
    (b"organization: acme\nmembers: {a: {email: a@x.test, roles: [root]}}\n", "unknown role"),
    (b"organization: acme\nmembers: {a: {email: a@x.test, roles: []}}\n", "list of roles"),
    (b"organization: acme\nmembers:\n  a: {email: a@x.test, roles: [qa]}\n"
     b"  b: {email: A@X.test, roles: [qa]}\n", "share the email"),
    (b"organization: acme\norganization: evil\nmembers: {a: {email: a@x.test, roles: [qa]}}\n",
     "duplicate key"),
    (b"organization: acme\nmembers: {../x: {email: a@x.test, roles: [qa]}}\n", "member id"),
    (b"organization: acme\nprotected_branches: []\nmembers: {a: {email: a@x.test, roles: [qa]}}\n",
     "protected_branches"),
    (b"organization: acme\nseparation_of_duties: maybe\n"
     b"members: {a: {email: a@x.test, roles: [qa]}}\n", "separation_of_duties"),
    (b"\xff\xfe", "not UTF-8"),
    (b"organization: acme\nprotected_branches: ['release/*']\n"
     b"members: {a: {email: a@x.test, roles: [qa]}}\n", "is not a branch name"),
    (b"organization: acme\nidentity: {env: [GIT_PUSH_OPTION_0]}\n"
     b"members: {a: {email: a@x.test, roles: [qa]}}\n", "the pushing client can set it"),
    # git http-backend hands request headers to hooks as HTTP_*: X-Forwarded-User: olga
    (b"organization: acme\nidentity: {env: [HTTP_X_FORWARDED_USER, REMOTE_USER]}\n"
     b"members: {a: {email: a@x.test, roles: [qa]}}\n", "may not name HTTP_X_FORWARDED_USER"),
    (b"organization: acme\nidentity: {env: [SSH_ORIGINAL_COMMAND]}\n"
     b"members: {a: {email: a@x.test, roles: [qa]}}\n", "the pushing client can set it"),
    (b"organization: acme\nseparation_of_dutie: false\n"
     b"members: {a: {email: a@x.test, roles: [qa]}}\n", "unknown key 'separation_of_dutie'"),
    (b"organization: acme\nsigning: {require: always}\n"
     b"members: {a: {email: a@x.test, roles: [qa]}}\n", "signing.require is 'always'"),
    (b"organization: acme\nsigning: {require: all, revoked: [abc]}\n"
     b"members: {a: {email: a@x.test, roles: [qa]}}\n", "must list key fingerprints"),
    (b"organization: acme\nsigning: {require: all, revoke: []}\n"
     b"members: {a: {email: a@x.test, roles: [qa]}}\n", "unknown key 'revoke'"),
    (b"organization: acme\nwindows: {freeze: {kind: deny}}\n"
     b"members: {a: {email: a@x.test, roles: [qa]}}\n",
     "must have exactly kind, cron, duration and timezone"),
    (b"organization: acme\npromotion: {production: {windows: [freeze]}}\n"
     b"members: {a: {email: a@x.test, roles: [qa]}}\n", "which windows does not define"),
    (b"organization: acme\nmembers: {a: {email: a@x.test, roles: [qa], keys: [ssh-ed25519 A]}}\n",
     "key 1 is not an OpenSSH public key: the key's data is not base64"),
    (b"organization: acme\nmembers: {a: {email: a@x.test, roles: [qa], keys: [ssh-dss AAAA]}}\n",
     "'ssh-dss' is not a key type stageline reads"),
    (b"organization: acme\nmembers: {a: {email: a@x.test, roles: [qa], keys: ['ssh-rsa %s']}}\n"
     % K.split()[1].encode(), "the key's data is of another type"),
    (b"organization: acme\nmembers: {a: {email: a@x.test, roles: [qa], keys: ['%s a']},\n"
     b"  b: {email: b@x.test, roles: [qa], keys: ['%s b']}}\n" % (K.encode(), K.encode()),
     "is listed under both a and b"),
    (b"organization: acme\nmembers: {a: {email: a@x.test, roles: [qa], keys: ['%s a', '%s']}}\n"
     % (K.encode(), K.encode()), "is listed twice"),
    (b"organization: acme\nmembers: {a: {email: a@x.test, roles: [qa]}}\n"
     b"service_accounts: {ci: {keys: ['%s'], acts_for_members: true}}\n"
     b"signing: {require: actions}\n" % (K[:-2] + "=").encode(),
     "key 1 is not an OpenSSH public key"),
    # a pattern as an email: git's allowed-signers file would read it as one (hook pass, 04)
    (b"organization: acme\nmembers: {a: {email: '*@x.test', roles: [qa]}}\n",
     "has no valid email"),
    # an Ed25519 "key" of small order: any signature verifies for it (parse pass, 04)
    (b"organization: acme\nmembers: {a: {email: a@x.test, roles: [qa], keys: ['ssh-ed25519 "
     b"AAAAC3NzaC1lZDI1NTE5AAAAIAEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA']}}\n",
     "a point of small order"),
    (b"organization: acme\nmembers: {a: {email: a@x.test, roles: [qa], role: [x]}}\n",
     "unknown key 'role'"),
    (b"organization: acme\npromotion: {production: {approvals: {required: 0}}}\n"
     b"members: {a: {email: a@x.test, roles: [qa]}}\n", "N from 1 to 100"),
    (b"organization: acme\npromotion: {production: {approval: {required: 2}}}\n"
     b"members: {a: {email: a@x.test, roles: [qa]}}\n", "unknown key 'approval'"),
])
def test_invalid_policy_is_one_sentence(text: bytes, says: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    assert says in info.value.message
    assert info.value.code == REPOSITORY
    assert "\n" not in info.value.message


def test_approvals_required_is_read() -> None:
    policy = parse_policy(b"organization: acme\npromotion:\n  production:\n"
                          b"    approvals: {required: 2}\n  staging: {windows: []}\n"
                          b"members: {a: {email: a@x.test, roles: [qa]},"
                          b" b: {email: b@x.test, roles: [qa]}}\n")
    assert policy.approvals_required == 2
    assert parse_policy(VALID).approvals_required == 1


def test_full_ref_names_mean_the_branch() -> None:
    policy = parse_policy(VALID.replace(b"[main, Release]", b"[refs/heads/main]"))
    assert policy.protected_branches == ("main",)
    assert policy.is_protected("refs/heads/main")


def test_yaml_bomb_is_refused() -> None:
    bomb = b"organization: acme\na: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n".encode()
        for i in range(8))
    with pytest.raises(PolicyError, match="expands to more than"):
        parse_policy(bomb)


def test_broken_policy_in_repository_exits_5(org: Path) -> None:
    (org / "stageline.yaml").write_text("organization: acme\nmembers: {a: {roles: [qa]}}\n")
    commit_all(org, "olga", "Break the policy")
    result = sl(org, "status")
    assert result.code == REPOSITORY
    assert "member a has no valid email" in result.err
    assert "Traceback" not in result.err


def test_missing_policy_exits_5(tmp_path: Path) -> None:
    from conftest import git

    git(tmp_path, "init", "-q")
    (tmp_path / "x").write_text("x")
    commit_all(tmp_path, "olga", "Not an organization")
    result = sl(tmp_path, "status")
    assert result.code == REPOSITORY
    assert "no stageline.yaml" in result.err


def test_not_a_repository_exits_5(tmp_path: Path) -> None:
    result = sl(tmp_path / "nowhere", "status")
    assert result.code == REPOSITORY
    assert "not a directory" in result.err
    result = sl(tmp_path, "status")
    assert result.code == REPOSITORY
    assert "not a Git repository" in result.err
