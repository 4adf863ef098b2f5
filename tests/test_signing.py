"""Signed actions (§8) with real keys (ssh-keygen), real git signing (gpg.format=ssh) and
real pushes through the installed hook."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest
from conftest import RESOURCES, author_env, git, sl, tree_files
from servers import DEV, PRD, STG, accepted, copy_dir, rejected, tip, write_approval

from stageline.actions import import_organization
from stageline.errors import BLOCKED, CHECK_FAILED, OK, REPOSITORY
from stageline.git.store import Store

MEMBERS = ("alice", "quinn", "rita", "olga", "omar")


@pytest.fixture(scope="session")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Ed25519 key for each member, spares, an ECDSA and an RSA key, and a forge's."""
    found = tmp_path_factory.mktemp("keys")
    for name in (*MEMBERS, "olga2", "spare", "webflow"):
        keygen(found / name, "ed25519")
    keygen(found / "quinn-ecdsa", "ecdsa")
    keygen(found / "rita-rsa", "rsa")
    return found


def keygen(path: Path, kind: str) -> None:
    extra = ["-b", "3072"] if kind == "rsa" else []
    subprocess.run(["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-C", path.name,
                    "-f", str(path)], check=True)


def pub(keydir: Path, name: str) -> str:
    return (keydir / f"{name}.pub").read_text().strip()


def fingerprint(keydir: Path, name: str) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(keydir / f"{name}.pub")],
                         capture_output=True, text=True, check=True).stdout
    return out.split()[1]


def policy_text(keydir: Path, keys: dict[str, Iterable[str]], require: str = "actions",
                revoked: Iterable[str] = (), extra_members: str = "") -> str:
    """The test organization's policy with ``keys`` per member and ``signing``."""
    lines = ["organization: testorg", "protected_branches: [main]", "members:"]
    roles = {"alice": "developer", "dan": "developer", "quinn": "qa", "rita": "qa",
             "olga": "org-admin", "omar": "org-admin"}
    for member, role in roles.items():
        lines.append(f"  {member}:")
        lines.append(f"    name: {member.capitalize()}")
        lines.append(f"    email: {member}@test.example")
        lines.append(f"    roles: [{role}]")
        listed = [pub(keydir, k) for k in keys.get(member, ())]
        if listed:
            lines.append("    keys:")
            lines += [f"      - {line}" for line in listed]
    lines.append(extra_members.rstrip("\n")) if extra_members else None
    lines.append("signing:")
    lines.append(f"  require: {require}")
    lines.append(f"  revoked: [{', '.join(revoked)}]")
    return "\n".join(lines) + "\n"


def own_keys() -> dict[str, list[str]]:
    return {m: [m] for m in MEMBERS}


def signed_server(tmp_path: Path, keydir: Path, require: str = "actions",
                  keys: dict[str, list[str]] | None = None) -> tuple[Path, Path]:
    """A hooked bare server whose first policy requires signatures, and a clone set up to
    sign with git's own SSH signing."""
    files = tree_files(RESOURCES / "org")
    files["stageline.yaml"] = policy_text(keydir, keys or own_keys(), require).encode()
    server = tmp_path / "server.git"
    with Store.init(str(server), "main", bare=True) as store:
        import_organization(store, "refs/heads/main", files)
    assert sl(None, "hook", "install", str(server)).code == OK
    clone = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(server), str(clone))
    git(clone, "config", "gpg.format", "ssh")
    return server, clone


def signer(clone: Path, keydir: Path, key: str) -> None:
    git(clone, "config", "user.signingkey", str(keydir / key))


def act(clone: Path, keydir: Path, member: str, *args: str, key: str | None = None) -> None:
    signer(clone, keydir, key or member)
    result = sl(clone, *args, actor=member)
    assert result.code == OK, result


def signed_commit(clone: Path, keydir: Path, author: str, key: str | None, message: str,
                  env: dict[str, str] | None = None) -> str:
    """A hand-made commit of the work tree by ``author``, signed with ``key`` (None: not)."""
    git(clone, "add", "-A")
    if key:
        signer(clone, keydir, key)
    git(clone, "commit", "-q", *(["-S"] if key else ["--no-gpg-sign"]), "-m", message,
        env={**author_env(author), **(env or {})})
    return git(clone, "rev-parse", "HEAD")


def list_also(clone: Path, keydir: Path, member: str, key: str) -> None:
    """``key`` listed under ``member`` too, in the clone's policy (not committed)."""
    policy = (clone / "stageline.yaml").read_text()
    mine = f"      - {pub(keydir, member)}"
    assert mine in policy
    (clone / "stageline.yaml").write_text(policy.replace(mine, f"{mine}\n      - "
                                                                f"{pub(keydir, key)}"))


def revoke(clone: Path, keydir: Path, member: str, message: str) -> None:
    """olga's signed commit listing ``member``'s key in ``signing.revoked``."""
    policy = (clone / "stageline.yaml").read_text()
    assert "revoked: []" in policy
    (clone / "stageline.yaml").write_text(policy.replace(
        "revoked: []", f"revoked: [{fingerprint(keydir, member)}]"))
    signed_commit(clone, keydir, "olga", "olga", message)


def forged_release(clone: Path) -> None:
    copy_dir(clone, STG, PRD)


@pytest.fixture
def signed(tmp_path: Path, keydir: Path) -> tuple[Path, Path]:
    return signed_server(tmp_path, keydir)


# -- the line, made by the CLI with each member's key --------------------------------------

def test_the_whole_line_signed_by_the_cli_is_accepted(signed: tuple[Path, Path],
                                                      keydir: Path) -> None:
    server, clone = signed
    act(clone, keydir, "alice", "promote", "support-bot", "--to", "staging")
    accepted(clone, server, "alice")
    act(clone, keydir, "quinn", "mark-ready", "support-bot")
    accepted(clone, server, "quinn")
    act(clone, keydir, "olga", "promote", "support-bot", "--to", "production")
    accepted(clone, server, "olga")
    # with the policy's keys as allowed signers, git agrees each is good and whose it is
    allowed = clone / ".git" / "allowed"
    allowed.write_text(sl(clone, "keys", "allowed-signers").out)
    git(clone, "config", "gpg.ssh.allowedSignersFile", str(allowed))
    shown = git(clone, "log", "-3", "--format=%G? %GS").split("\n")
    assert shown == ["G olga@test.example", "G quinn@test.example", "G alice@test.example"]


def test_verify_without_a_pusher_says_authorship_is_proven(signed: tuple[Path, Path],
                                                           keydir: Path) -> None:
    server, clone = signed
    old = git(clone, "rev-parse", "HEAD")
    act(clone, keydir, "alice", "promote", "support-bot", "--to", "staging")
    result = sl(clone, "verify", "--range", f"{old}..HEAD")
    assert result.code == OK, result
    assert "proven by their signatures" in result.err
    assert "checking commit authors only" not in result.err


def test_ecdsa_and_rsa_keys_sign_and_verify(tmp_path: Path, keydir: Path) -> None:
    keys = {**own_keys(), "quinn": ["quinn-ecdsa"], "rita": ["rita-rsa"]}
    server, clone = signed_server(tmp_path, keydir, keys=keys)
    act(clone, keydir, "alice", "promote", "support-bot", "--to", "staging")
    accepted(clone, server, "alice")
    act(clone, keydir, "quinn", "mark-ready", "support-bot", key="quinn-ecdsa")
    accepted(clone, server, "quinn")
    act(clone, keydir, "quinn", "mark-ready", "support-bot", "--withdraw", key="quinn-ecdsa")
    accepted(clone, server, "quinn")
    act(clone, keydir, "rita", "mark-ready", "support-bot", key="rita-rsa")
    accepted(clone, server, "rita")


# -- what the hook and verify refuse --------------------------------------------------------

def test_an_unsigned_action_is_refused_with_the_fix(signed: tuple[Path, Path],
                                                    keydir: Path) -> None:
    server, clone = signed
    copy_dir(clone, DEV, STG)
    signed_commit(clone, keydir, "alice", None, "Promote by hand")
    err = rejected(clone, server, "alice", "must be signed by one of alice's keys listed in "
                                           "stageline.yaml; it is unsigned")
    assert "gpg.format=ssh and user.signingkey" in err


def test_a_forged_production_push_in_olgas_name_is_refused_by_hook_and_verify(
        signed: tuple[Path, Path], keydir: Path) -> None:
    """alice writes production in olga's name and signs with her own key: git calls such
    a signature good; stageline ties the key to the author."""
    server, clone = signed
    act(clone, keydir, "alice", "promote", "support-bot", "--to", "staging")
    accepted(clone, server, "alice")
    act(clone, keydir, "quinn", "mark-ready", "support-bot")
    accepted(clone, server, "quinn")
    old = git(clone, "rev-parse", "HEAD")
    forged_release(clone)
    signed_commit(clone, keydir, "olga", "alice", "Promote support-bot to production")
    rejected(clone, server, "olga", "it is signed with alice's key")
    result = sl(clone, "verify", "--range", f"{old}..HEAD")
    assert result.code == CHECK_FAILED and "it is signed with alice's key" in result.out
    # unsigned, it is refused too, by verify with no pusher
    git(clone, "commit", "-q", "--amend", "--no-edit", "--no-gpg-sign", env=author_env("olga"))
    result = sl(clone, "verify", "--range", f"{old}..HEAD")
    assert result.code == CHECK_FAILED and "it is unsigned" in result.out


def test_a_key_the_policy_does_not_list_is_refused(signed: tuple[Path, Path],
                                                   keydir: Path) -> None:
    server, clone = signed
    copy_dir(clone, DEV, STG)
    signed_commit(clone, keydir, "alice", "spare", "Promote")
    rejected(clone, server, "alice", "which stageline.yaml lists for no one")


def test_a_key_added_and_used_in_one_push_counts_from_the_next(signed: tuple[Path, Path],
                                                               keydir: Path) -> None:
    server, clone = signed
    list_also(clone, keydir, "alice", "spare")
    signed_commit(clone, keydir, "olga", "olga", "List alice's second key")
    copy_dir(clone, DEV, STG)
    signed_commit(clone, keydir, "alice", "spare", "Promote with the new key")
    rejected(clone, server, "olga", "lists for no one")
    git(clone, "reset", "-q", "--hard", "HEAD~1")
    accepted(clone, server, "olga")
    copy_dir(clone, DEV, STG)
    signed_commit(clone, keydir, "alice", "spare", "Promote with the new key")
    accepted(clone, server, "alice")


def test_a_revoked_key_never_verifies(signed: tuple[Path, Path], keydir: Path) -> None:
    server, clone = signed
    revoke(clone, keydir, "alice", "Revoke alice's key")
    accepted(clone, server, "olga")
    copy_dir(clone, DEV, STG)
    signed_commit(clone, keydir, "alice", "alice", "Promote")
    rejected(clone, server, "alice", f"revoked key {fingerprint(keydir, 'alice')}")


def test_a_backdated_commit_with_a_removed_key_is_refused(tmp_path: Path,
                                                          keydir: Path) -> None:
    """Retiring a key is removing it: the commit's date (the signer's to choose) counts
    for nothing, unlike valid-before in git's allowed signers."""
    keys = {**own_keys(), "olga": ["olga", "olga2"]}
    server, clone = signed_server(tmp_path, keydir, keys=keys)
    policy = (clone / "stageline.yaml").read_text()
    (clone / "stageline.yaml").write_text(policy.replace(f"      - {pub(keydir, 'olga')}\n", ""))
    signed_commit(clone, keydir, "olga", "olga2", "Retire olga's old laptop key")
    accepted(clone, server, "olga")
    (clone / "settings").mkdir(exist_ok=True)
    (clone / "settings/production.yaml").write_text("model: big\n")
    old_date = {"GIT_AUTHOR_DATE": "2020-01-01T00:00:00Z",
                "GIT_COMMITTER_DATE": "2020-01-01T00:00:00Z"}
    signed_commit(clone, keydir, "olga", "olga", "Settings, dated long ago", env=old_date)
    rejected(clone, server, "olga", "lists for no one")


def test_a_tampered_commit_with_the_old_signature_does_not_verify(
        signed: tuple[Path, Path], keydir: Path) -> None:
    server, clone = signed
    act(clone, keydir, "alice", "promote", "support-bot", "--to", "staging")
    raw = git(clone, "cat-file", "commit", "HEAD") + "\n"
    assert "gpgsig -----BEGIN SSH SIGNATURE-----" in raw
    tampered = raw.replace("Promote support-bot to staging", "Promote support-bot to stagin")
    oid = subprocess.run(["git", "hash-object", "-t", "commit", "-w", "--stdin"], cwd=clone,
                         input=tampered, capture_output=True, text=True,
                         check=True).stdout.strip()
    git(clone, "reset", "-q", "--hard", oid)
    rejected(clone, server, "alice", "the signature does not verify")


def test_a_committer_other_than_the_author_is_refused(signed: tuple[Path, Path],
                                                      keydir: Path) -> None:
    server, clone = signed
    copy_dir(clone, DEV, STG)
    signed_commit(clone, keydir, "alice", "alice", "Promote",
                  env={"GIT_COMMITTER_EMAIL": "ci@test.example"})
    rejected(clone, server, "alice", "its committer (ci@test.example) is not its author")


def test_under_require_all_a_development_edit_and_a_forge_merge_must_be_signed(
        tmp_path: Path, keydir: Path) -> None:
    server, clone = signed_server(tmp_path, keydir, require="all")
    (clone / DEV / "prompts/system.md").write_text("An unsigned edit.\n")
    signed_commit(clone, keydir, "alice", None, "Edit the prompt")
    rejected(clone, server, "alice", "must be signed by one of alice's keys")
    signer(clone, keydir, "alice")
    git(clone, "commit", "-q", "--amend", "--no-edit", "-S", env=author_env("alice"))
    base = git(clone, "rev-parse", "HEAD~1")
    side = git(clone, "rev-parse", "HEAD")
    # a web merge: the member as author, the forge as committer, signed by the forge's key
    git(clone, "reset", "-q", "--hard", base)
    signer(clone, keydir, "webflow")
    git(clone, "merge", "-q", "--no-ff", "-S", "-m", "Merge pull request #1", side,
        env={**author_env("alice"), "GIT_COMMITTER_NAME": "GitHub",
             "GIT_COMMITTER_EMAIL": "noreply@github.com"})
    rejected(clone, server, "alice", "lists for no one")
    assert tip(server) == base


@pytest.mark.parametrize("case", ["truncated", "magic", "namespace", "huge", "pgp", "twice",
                                  "padbits", "long-header", "utf-7"])
def test_a_malformed_signature_is_a_clean_rejection(signed: tuple[Path, Path], keydir: Path,
                                                    case: str) -> None:
    server, clone = signed
    act(clone, keydir, "alice", "promote", "support-bot", "--to", "staging")
    raw = git(clone, "cat-file", "commit", "HEAD") + "\n"
    header, _, message = raw.partition("\n\n")
    lines = header.split("\n")
    start = next(i for i, ln in enumerate(lines) if ln.startswith("gpgsig "))
    sig = lines[start:]
    body = [ln[1:] for ln in sig[1:-1]]
    if case == "truncated":
        sig = sig[:2] + sig[-1:]
    elif case == "magic":
        import base64
        blob = bytearray(base64.b64decode("".join(body)))
        blob[:6] = b"SSHSIX"
        text = base64.b64encode(bytes(blob)).decode()
        sig = [sig[0]] + [" " + text[i:i + 70] for i in range(0, len(text), 70)] + [sig[-1]]
    elif case == "namespace":
        payload = "\n".join(lines[:start]) + "\n\n" + message
        (clone / "payload").write_text(payload)
        subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-n", "file", "-f",
                        str(keydir / "alice"), str(clone / "payload")], check=True)
        armored = (clone / "payload.sig").read_text().strip().split("\n")
        (clone / "payload").unlink()
        (clone / "payload.sig").unlink()
        sig = ["gpgsig " + armored[0]] + [" " + ln for ln in armored[1:]]
    elif case == "huge":
        sig = [sig[0]] + [" " + "A" * 76] * 600 + [sig[-1]]
    elif case == "pgp":
        sig = ["gpgsig -----BEGIN PGP SIGNATURE-----", " ", " iQEz", " -----END PGP SIGNATURE-----"]
    elif case == "twice":
        sig = sig + sig
    elif case == "padbits":  # the signature's bytes unchanged; its base64 not OpenSSH's
        text = "".join(body)
        stem = text.rstrip("=")
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        text = stem[:-1] + alphabet[alphabet.index(stem[-1]) ^ 1] + text[len(stem):]
        sig = [sig[0]] + [" " + text[i:i + 70] for i in range(0, len(text), 70)] + [sig[-1]]
    elif case == "long-header":  # 16 MiB of header lines in 16 KiB of pack (site pass 2)
        sig = sig + ["x"] * (8 * 2 ** 20)
    elif case == "utf-7":  # "+AAo-" is a line feed once git re-encodes the commit
        sig = sig + ["encoding UTF-7",
                     "x-note +AAo-author Olga <olga@test.example> 1700000000 +0000"]
    forged = "\n".join(lines[:start] + sig) + "\n\n" + message
    oid = subprocess.run(["git", "hash-object", "-t", "commit", "-w", "--stdin"], cwd=clone,
                         input=forged, capture_output=True, text=True, check=True).stdout.strip()
    git(clone, "reset", "-q", "--hard", oid)
    says = {"truncated": "does not hold", "magic": "does not start with SSHSIG",
            "namespace": "namespace 'git'", "huge": "too long",
            "pgp": "it is not an SSH signature", "twice": "more than one signature",
            "padbits": "not base64 as OpenSSH writes it", "long-header": "over 64 KiB",
            "utf-7": "its encoding UTF-7 is one git re-encodes"}[case]
    rejected(clone, server, "alice", says)


def test_the_same_key_under_two_members_is_an_invalid_policy_the_hook_refuses(
        signed: tuple[Path, Path], keydir: Path) -> None:
    server, clone = signed
    list_also(clone, keydir, "rita", "quinn")
    signed_commit(clone, keydir, "olga", "olga", "Give rita quinn's key")
    rejected(clone, server, "olga", "is listed under both quinn and rita")
    assert sl(clone, "status").code == REPOSITORY


# -- the CLI: it signs, or writes nothing --------------------------------------------------

def test_an_action_git_cannot_sign_for_the_actor_writes_nothing(signed: tuple[Path, Path],
                                                                keydir: Path) -> None:
    server, clone = signed
    head = git(clone, "rev-parse", "HEAD")
    git(clone, "config", "--unset", "gpg.format")
    result = sl(clone, "promote", "support-bot", "--to", "staging", actor="alice")
    assert result.code == BLOCKED and "git config gpg.format ssh" in result.err
    git(clone, "config", "gpg.format", "ssh")
    signer(clone, keydir, "quinn")
    result = sl(clone, "promote", "support-bot", "--to", "staging", actor="alice")
    assert result.code == BLOCKED and "is quinn's, not alice's" in result.err
    signer(clone, keydir, "spare")
    result = sl(clone, "promote", "support-bot", "--to", "staging", actor="alice")
    assert result.code == BLOCKED and "is not listed for alice" in result.err
    assert pub(keydir, "spare").rsplit(" ", 1)[0] in result.err  # the line to add
    (keydir / "gone").unlink(missing_ok=True)
    git(clone, "config", "user.signingkey", str(keydir / "gone"))
    result = sl(clone, "promote", "support-bot", "--to", "staging", actor="alice")
    assert result.code == BLOCKED and "there is no public key there" in result.err
    assert git(clone, "rev-parse", "HEAD") == head
    assert git(clone, "status", "--porcelain") == ""


def test_dry_run_names_the_key_and_keys_check_says_what_is_set_up(
        signed: tuple[Path, Path], keydir: Path) -> None:
    server, clone = signed
    signer(clone, keydir, "alice")
    result = sl(clone, "promote", "support-bot", "--to", "staging", "--dry-run", actor="alice")
    assert result.code == OK and f"signed  by git with {fingerprint(keydir, 'alice')}" in \
        result.out
    result = sl(clone, "promote", "support-bot", "--to", "staging", "--dry-run", "--json",
                actor="alice")
    assert json.loads(result.out)["would_commit"]["signed_with"] == fingerprint(keydir, "alice")
    result = sl(clone, "keys", "check", actor="alice")
    assert result.code == OK and fingerprint(keydir, "alice") in result.out
    result = sl(clone, "keys", "check", actor="quinn")
    assert result.code == BLOCKED and "is alice's, not quinn's" in result.err
    listed = json.loads(sl(clone, "keys", "list", "--json").out)
    assert listed["require"] == "actions"
    assert {(k["holder"], k["fingerprint"]) for k in listed["keys"]} == \
        {(m, fingerprint(keydir, m)) for m in MEMBERS}


def test_a_signing_failure_in_git_writes_nothing(signed: tuple[Path, Path],
                                                 keydir: Path, tmp_path: Path) -> None:
    """The public half is listed and present, the private half is not: git fails to sign."""
    server, clone = signed
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "alice.pub").write_text(pub(keydir, "alice") + "\n")
    env_agent = os.environ.pop("SSH_AUTH_SOCK", None)
    try:
        git(clone, "config", "user.signingkey", str(lonely / "alice.pub"))
        head = git(clone, "rev-parse", "HEAD")
        result = sl(clone, "promote", "support-bot", "--to", "staging", actor="alice")
    finally:
        if env_agent is not None:
            os.environ["SSH_AUTH_SOCK"] = env_agent
    assert result.code == BLOCKED and "git could not sign the commit" in result.err
    assert git(clone, "rev-parse", "HEAD") == head
    assert git(clone, "status", "--porcelain") == ""


def test_with_require_none_nothing_is_signed(tmp_path: Path, keydir: Path) -> None:
    server, clone = signed_server(tmp_path, keydir, require="none")
    git(clone, "config", "commit.gpgSign", "true")
    result = sl(clone, "promote", "support-bot", "--to", "staging", actor="alice")
    assert result.code == OK
    assert "gpgsig" not in git(clone, "cat-file", "commit", "HEAD")
    accepted(clone, server, "alice")


# -- git's own reading of a signed commit -------------------------------------------------

RECORDER = """#!/bin/sh
# records what git hands ssh-keygen when it verifies a commit, then lets ssh-keygen answer
n=$(ls "$RECORD" | wc -l)
for a in "$@"; do case "$prev" in -s) cp "$a" "$RECORD/$n.sig";; esac; prev="$a"; done
cat > "$RECORD/$n.payload"
exec ssh-keygen "$@" < "$RECORD/$n.payload"
"""


def git_payloads(clone: Path, oid: str, tmp_path: Path) -> set[tuple[bytes, bytes]]:
    """(payload, signature) pairs git handed its SSH program verifying ``oid``."""
    record = tmp_path / f"record-{oid[:8]}"
    record.mkdir()
    program = tmp_path / "recorder.sh"
    program.write_text(RECORDER)
    program.chmod(0o755)
    subprocess.run(["git", "-c", f"gpg.ssh.program={program}", "-c",
                    f"gpg.ssh.allowedSignersFile={tmp_path / 'allowed'}", "verify-commit", oid],
                   cwd=clone, capture_output=True, env={**os.environ, "RECORD": str(record)})
    # find-principals reads no payload: only the calls that verify one
    return {(payload, p.read_bytes()) for p in record.glob("*.sig")
            if (payload := (record / f"{p.stem}.payload").read_bytes())}


@pytest.mark.parametrize("odd", ["plain", "other-hash-header", "gpgsig-in-message",
                                 "header-after-signature"])
def test_the_signed_payload_is_what_git_verifies(signed: tuple[Path, Path], keydir: Path,
                                                 tmp_path: Path, odd: str) -> None:
    """``git/signature.split`` against git's own split: the bytes git hands ssh-keygen
    (a recorder as gpg.ssh.program), for commits shaped as git writes them and not."""
    from stageline.git.signature import split

    server, clone = signed
    (tmp_path / "allowed").write_text(sl(clone, "keys", "allowed-signers").out)
    act(clone, keydir, "alice", "promote", "support-bot", "--to", "staging")
    raw = subprocess.run(["git", "cat-file", "commit", "HEAD"], cwd=clone, capture_output=True,
                         check=True).stdout
    header, _, message = raw.partition(b"\n\n")
    if odd == "other-hash-header":
        header += b"\ngpgsig-sha256 -----BEGIN SSH SIGNATURE-----\n U1NIU0lH\n -----END SSH " \
                  b"SIGNATURE-----"
    elif odd == "gpgsig-in-message":
        message += b"\ngpgsig not a header\n"
    elif odd == "header-after-signature":
        header += b"\nencoding UTF-8"
    data = header + b"\n\n" + message
    oid = subprocess.run(["git", "hash-object", "-t", "commit", "-w", "--stdin"], cwd=clone,
                         input=data, capture_output=True, check=True).stdout.decode().strip()
    ours = split(data, 40)
    assert ours.signature is not None and ours.headers == 1
    assert git_payloads(clone, oid, tmp_path) == {(ours.payload, ours.signature)}
    verdict = subprocess.run(["git", "-c", f"gpg.ssh.allowedSignersFile={tmp_path / 'allowed'}",
                              "verify-commit", oid], cwd=clone, capture_output=True)
    assert (verdict.returncode == 0) == (odd in ("plain", "other-hash-header"))


def test_the_ssh_keygen_fallback_judges_as_the_fast_path(signed: tuple[Path, Path],
                                                         keydir: Path) -> None:
    """Security keys' signatures go to ``ssh-keygen -Y check-novalidate``: run on an
    Ed25519 signature, it agrees with the in-process check on a good and a changed commit."""
    from stageline import sshkeys
    from stageline.git.signature import split
    from stageline.server.signatures import _ssh_keygen_check

    server, clone = signed
    act(clone, keydir, "alice", "promote", "support-bot", "--to", "staging")
    raw = subprocess.run(["git", "cat-file", "commit", "HEAD"], cwd=clone, capture_output=True,
                         check=True).stdout
    signed_parts = split(raw, 40)
    assert signed_parts.signature is not None
    signature = sshkeys.parse_armored(signed_parts.signature)
    assert sshkeys.verify(signature, signed_parts.payload) is None
    _ssh_keygen_check(signature, signed_parts.payload)
    changed = signed_parts.payload.replace(b"staging", b"stagin")
    with pytest.raises(sshkeys.SignatureError):
        sshkeys.verify(signature, changed)
    with pytest.raises(sshkeys.SignatureError):
        _ssh_keygen_check(signature, changed)


# -- audit --------------------------------------------------------------------------------

def test_audit_judges_each_commit_by_the_policy_before_it(tmp_path: Path, keydir: Path) -> None:
    """A history on a host without hooks: nina joins (her commits count), leaves (a later
    commit in her name does not), and an unsigned production push in olga's name."""
    server, clone = signed_server(tmp_path, keydir)
    root = git(clone, "rev-parse", "HEAD")
    policy = (clone / "stageline.yaml").read_text()
    nina = (f"  nina:\n    name: Nina\n    email: nina@test.example\n    roles: [qa]\n"
            f"    keys:\n      - {pub(keydir, 'spare')}\n")
    (clone / "stageline.yaml").write_text(policy.replace("signing:", nina + "signing:"))
    signed_commit(clone, keydir, "olga", "olga", "Nina joins QA")
    act(clone, keydir, "alice", "promote", "support-bot", "--to", "staging")
    act(clone, keydir, "nina", "mark-ready", "support-bot", key="spare")
    act(clone, keydir, "olga", "promote", "support-bot", "--to", "production")
    (clone / "stageline.yaml").write_text(policy)
    signed_commit(clone, keydir, "olga", "olga", "Nina leaves")
    clean = sl(clone, "audit", "--from", root)
    assert clean.code == OK, clean
    assert "5 commits" in clean.out
    # nina, gone, marks again; olga's name on an unsigned production push
    (clone / DEV / "prompts/system.md").write_text("Second version.\n")
    signed_commit(clone, keydir, "alice", None, "Second version")
    act(clone, keydir, "alice", "promote", "support-bot", "--to", "staging")
    git(clone, "config", "user.signingkey", str(keydir / "spare"))
    write_approval(clone, "nina")
    forged_release(clone)
    signed_commit(clone, keydir, "olga", None, "Promote support-bot to production")
    result = sl(clone, "audit", "--from", root, "--json")
    assert result.code == CHECK_FAILED
    found = json.loads(result.out)
    assert found["commits"] == int(git(clone, "rev-list", "--count", f"{root}..HEAD"))
    rules = [v["rule"] for v in found["violations"]]
    assert any("nina does not hold qa now" in r for r in rules)
    assert any("must be signed by one of olga's keys" in r and "unsigned" in r for r in rules)
    # the same history from a root after the forgery's parent has nothing before it to judge
    later = sl(clone, "audit", "--from", git(clone, "rev-parse", "HEAD~1"))
    assert later.code == CHECK_FAILED and "1 commits" not in later.out


# -- hostile bytes ------------------------------------------------------------------------

def _armor(blob: bytes) -> bytes:
    import base64
    text = base64.b64encode(blob).decode()
    return ("-----BEGIN SSH SIGNATURE-----\n" +
            "".join(text[i:i + 70] + "\n" for i in range(0, len(text), 70)) +
            "-----END SSH SIGNATURE-----\n").encode()


@pytest.fixture(scope="module")
def real_signature(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """An SSHSIG over a payload by each key type, concatenated, and its payload."""
    import base64
    where = tmp_path_factory.mktemp("sig")
    keygen(where / "k", "ecdsa")
    (where / "payload").write_bytes(b"tree 0\n\nmessage\n")
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-n", "git", "-f", str(where / "k"),
                    str(where / "payload")], check=True)
    armored = (where / "payload.sig").read_bytes()
    body = b"".join(armored.split(b"\n")[1:-2])
    return base64.b64decode(body), b"tree 0\n\nmessage\n"


@pytest.mark.parametrize("seed", range(3))
def test_every_mangled_signature_is_a_clean_rejection(real_signature: tuple[bytes, bytes],
                                                      seed: int) -> None:
    """Each byte of a real signature changed, each prefix cut, lengths set huge: only
    SignatureError, never another exception, and never a good verdict."""
    import random

    from stageline import sshkeys

    blob, payload = real_signature
    assert sshkeys.verify(sshkeys.parse_armored(_armor(blob)), payload) is None
    rng = random.Random(seed)
    variants = [blob[:cut] for cut in range(0, len(blob), 7)]
    for _ in range(400):
        mangled = bytearray(blob)
        for _flip in range(rng.randint(1, 3)):
            mangled[rng.randrange(len(mangled))] = rng.randrange(256)
        variants.append(bytes(mangled))
    for at in range(6, 40, 4):
        variants.append(blob[:at] + b"\xff\xff\xff\xf0" + blob[at + 4:])
    for variant in variants:
        if variant == blob:
            continue
        try:
            sshkeys.verify(sshkeys.parse_armored(_armor(variant)), payload)
        except sshkeys.SignatureError:
            continue
        # a change in bytes no check reads (the reserved field's content) may still verify
        assert sshkeys.parse_armored(_armor(variant)).key.blob == \
            sshkeys.parse_armored(_armor(blob)).key.blob


@pytest.mark.parametrize("line", [
    "", "ssh-ed25519", "ssh-ed25519 !!!!", "ssh-ed25519 " + "A" * 40000,
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDmFBfaI7jS7qItsS+XXa6xb5tw+bl4WvPxro1BU0q==",
    "ecdsa-sha2-nistp256 AAAAC3NzaC1lZDI1NTE5AAAAIDmFBfaI7jS7qItsS+XXa6xb5tw+bl4WvPxro1BU0quq",
    'command="x" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDmFBfaI7jS7qItsS+XXa6xb5tw+bl4WvPxro1BU0quq',
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDmFBfaI7jS7qItsS+XXa6xb5tw+bl4WvPxro1BU0quq\nx",
])
def test_a_malformed_key_line_is_a_clean_rejection(line: str) -> None:
    from stageline import sshkeys

    with pytest.raises(sshkeys.SignatureError):
        sshkeys.parse_key(line)


def test_a_key_revoked_later_proves_nothing_in_audit(signed: tuple[Path, Path],
                                                     keydir: Path) -> None:
    """quinn's key signed a mark, then was found compromised: from the root, audit flags
    the mark it signed before the revocation too."""
    server, clone = signed
    root = git(clone, "rev-parse", "HEAD")
    act(clone, keydir, "alice", "promote", "support-bot", "--to", "staging")
    act(clone, keydir, "quinn", "mark-ready", "support-bot")
    marked = git(clone, "rev-parse", "HEAD")
    assert sl(clone, "audit", "--from", root).code == OK
    revoke(clone, keydir, "quinn", "Revoke quinn's stolen key")
    result = sl(clone, "audit", "--from", root, "--json")
    assert result.code == CHECK_FAILED
    assert [v["commit"] for v in json.loads(result.out)["violations"]] == [marked]
    assert sl(clone, "audit", "--from", marked).code == OK


def test_sha256_repositories_sign_in_their_own_header(tmp_path: Path, keydir: Path) -> None:
    """A SHA-256 repository keeps the signature in gpgsig-sha256: read there, and the
    payload still matches what git verifies."""
    from stageline.git.signature import split

    files = tree_files(RESOURCES / "org")
    files["stageline.yaml"] = policy_text(keydir, own_keys()).encode()
    server = tmp_path / "s.git"
    git(tmp_path, "init", "-q", "--bare", "--object-format=sha256", "-b", "main", str(server))
    with Store.open(server) as store:
        import_organization(store, "refs/heads/main", files)
    assert sl(None, "hook", "install", str(server)).code == OK
    clone = tmp_path / "w"
    git(tmp_path, "clone", "-q", str(server), str(clone))
    git(clone, "config", "gpg.format", "ssh")
    act(clone, keydir, "alice", "promote", "support-bot", "--to", "staging")
    raw = subprocess.run(["git", "cat-file", "commit", "HEAD"], cwd=clone, capture_output=True,
                         check=True).stdout
    assert b"\ngpgsig-sha256 -----BEGIN SSH SIGNATURE-----" in raw
    (tmp_path / "allowed").write_text(sl(clone, "keys", "allowed-signers").out)
    ours = split(raw, 64)
    assert git_payloads(clone, git(clone, "rev-parse", "HEAD"), tmp_path) == \
        {(ours.payload, ours.signature)}
    accepted(clone, server, "alice")
    copy_dir(clone, DEV, STG)
    (clone / STG / "extra.md").write_text("by hand\n")
    copy_dir(clone, STG, DEV)
    signed_commit(clone, keydir, "alice", "quinn", "Edit and promote, signed by quinn")
    rejected(clone, server, "alice", "it is signed with quinn's key")


def test_agent_new_and_rollback_are_signed_too(signed: tuple[Path, Path], keydir: Path) -> None:
    server, clone = signed
    root = git(clone, "rev-parse", "HEAD")
    act(clone, keydir, "alice", "agent", "new", "fresh-bot")
    for version in ("one", "two"):
        (clone / DEV / "prompts/system.md").write_text(f"Version {version}.\n")
        signed_commit(clone, keydir, "alice", None, f"Version {version}")
        act(clone, keydir, "alice", "promote", "support-bot", "--to", "staging")
        act(clone, keydir, "quinn", "mark-ready", "support-bot")
        act(clone, keydir, "olga", "promote", "support-bot", "--to", "production")
    act(clone, keydir, "olga", "rollback", "support-bot")
    assert sl(clone, "audit", "--from", root).code == OK  # each push its member's: audit
    (tmp := clone / ".git" / "allowed").write_text(sl(clone, "keys", "allowed-signers").out)
    shown = git(clone, "-c", f"gpg.ssh.allowedSignersFile={tmp}", "log", "--format=%G? %GS %s",
                "--grep=Stageline-Action").split("\n")
    assert shown[0].startswith("G olga@test.example ") and "support-bot" in shown[0]
    assert any(line.startswith("G alice@test.example ") and "fresh-bot" in line
               for line in shown)
    assert all(line.startswith("G ") for line in shown[:-1])  # all but the import


def _without(policy: str, member: str) -> str:
    """The policy text with ``member``'s entry (and keys) taken out."""
    out, skip = [], False
    for line in policy.split("\n"):
        if line.startswith(f"  {member}:"):
            skip = True
            continue
        if skip and line.startswith("    "):
            continue
        skip = False
        out.append(line)
    return "\n".join(out)


def test_audit_judges_what_a_merge_brings_by_the_line_it_joins(signed: tuple[Path, Path],
                                                               keydir: Path) -> None:
    """omar's key is retired on main; a side branch started before signs with it, and
    olga merges it the ordinary way (hook-attack pass 5, finding 2)."""
    server, clone = signed
    root = git(clone, "rev-parse", "HEAD")
    policy = (clone / "stageline.yaml").read_text()
    (clone / "stageline.yaml").write_text(policy.replace(pub(keydir, "omar"),
                                                         pub(keydir, "spare")))
    signed_commit(clone, keydir, "olga", "olga", "omar's laptop key retired")
    main = git(clone, "rev-parse", "HEAD")
    git(clone, "checkout", "-q", "-b", "side", root)
    (clone / "settings").mkdir(exist_ok=True)
    (clone / "settings/production.yaml").write_text("model: big\n")
    signed_commit(clone, keydir, "omar", "omar", "Settings, with the retired key")
    git(clone, "checkout", "-q", "main")
    signer(clone, keydir, "olga")
    git(clone, "merge", "-q", "--no-ff", "-S", "-m", "Merge side", "side",
        env=author_env("olga"))
    result = sl(clone, "audit", "--from", root, "--json")
    assert result.code == CHECK_FAILED
    found = json.loads(result.out)["violations"]
    assert [v["commit"] for v in found] == [git(clone, "rev-parse", "side")]
    assert "lists for no one" in found[0]["rule"]
    assert sl(clone, "audit", "--from", main).code == CHECK_FAILED  # the same, from main


def test_audit_from_the_last_audited_tip_refuses_a_foxtrot_merge(signed: tuple[Path, Path],
                                                                 keydir: Path) -> None:
    """omar, removed on main, keeps working on a line from before and merges main into it
    as its second parent (hook-attack pass 5, finding 1): from the tip audited before,
    the branch no longer passes through it; from the root, omar's merge is judged by
    main's policy too, where he is no one."""
    server, clone = signed
    root = git(clone, "rev-parse", "HEAD")
    (clone / "stageline.yaml").write_text(_without((clone / "stageline.yaml").read_text(),
                                                   "omar"))
    signed_commit(clone, keydir, "olga", "olga", "omar left")
    audited = git(clone, "rev-parse", "HEAD")
    assert sl(clone, "audit", "--from", root).code == OK
    git(clone, "checkout", "-q", "-b", "foxtrot", root)
    (clone / "settings").mkdir(exist_ok=True)
    (clone / "settings/production.yaml").write_text("model: omar's\n")
    signed_commit(clone, keydir, "omar", "omar", "Settings while still listed")
    signer(clone, keydir, "omar")
    tip = git(clone, "commit-tree", "-S", "-p", "HEAD", "-p", audited, "-m", "Merge main",
              "HEAD^{tree}", env=author_env("omar"))
    git(clone, "checkout", "-q", "main")
    git(clone, "reset", "-q", "--hard", tip)
    result = sl(clone, "audit", "--from", audited)
    assert result.code == CHECK_FAILED and "does not pass through" in result.out
    # from the root: the clean audit recorded before reached `audited`, which the branch
    # no longer passes through
    result = sl(clone, "audit", "--from", root)
    assert result.code == CHECK_FAILED and "(the tip audited before)" in result.out
    # with no memory of it (a fresh clone), omar's merge is judged by main's policy too
    (clone / ".git" / "stageline-audited.json").unlink()
    result = sl(clone, "audit", "--from", root, "--json")
    assert result.code == CHECK_FAILED
    rules = [v["rule"] for v in json.loads(result.out)["violations"] if v["commit"] == tip]
    assert any("the author omar@test.example is not a member" in r for r in rules), rules


def test_a_clean_audit_is_recorded_and_the_next_judges_what_came_since(
        signed: tuple[Path, Path], keydir: Path) -> None:
    server, clone = signed
    root = git(clone, "rev-parse", "HEAD")
    act(clone, keydir, "alice", "promote", "support-bot", "--to", "staging")
    first = sl(clone, "audit", "--from", root, "--json")
    assert first.code == OK and json.loads(first.out)["commits"] == 1
    record = json.loads((clone / ".git" / "stageline-audited.json").read_text())
    assert record[f"{root} main"]["tip"] == git(clone, "rev-parse", "HEAD")
    act(clone, keydir, "quinn", "mark-ready", "support-bot")
    again = sl(clone, "audit", "--from", root, "--json")
    assert again.code == OK and json.loads(again.out)["commits"] == 2
    assert json.loads((clone / ".git" / "stageline-audited.json").read_text())[
        f"{root} main"]["tip"] == git(clone, "rev-parse", "HEAD")
    # another branch from the same root has a record of its own
    git(clone, "branch", "release", "HEAD~1")
    other = sl(clone, "audit", "--from", root, "--ref", "release", "--json")
    assert other.code == OK and json.loads(other.out)["commits"] == 1
    assert json.loads(sl(clone, "audit", "--from", root, "--full", "--json").out)["commits"] == 2
    # a record that is not one (hand-edited, cut short) is no record: a whole audit
    (clone / ".git" / "stageline-audited.json").write_text('{"x": [1')
    assert json.loads(sl(clone, "audit", "--from", root, "--json").out)["commits"] == 2


def test_audit_in_two_processes_finds_what_one_finds(signed: tuple[Path, Path], keydir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """From SPLIT commits two processes judge a half each: the same violations as one,
    and a second process that fails fails the audit (nothing it did not judge passes)."""
    import stageline.server.audit as audit_module
    from stageline.errors import RepositoryError

    server, clone = signed
    root = git(clone, "rev-parse", "HEAD")
    copy_dir(clone, DEV, STG)
    signed_commit(clone, keydir, "alice", None, "An unsigned promotion")  # the oldest half
    for text in ("one", "two", "three", "four", "five"):
        (clone / DEV / "prompts/system.md").write_text(f"{text}\n")
        signed_commit(clone, keydir, "alice", None, f"Prompt {text}")
    with Store.open(clone) as store:
        tip = store.resolve("HEAD")
        assert tip is not None
        alone = audit_module.judged(store, root, tip, "main")
        monkeypatch.setattr(audit_module, "SPLIT", 2)
        halves = audit_module.judged(store, root, tip, "main")
        assert halves == alone and len(alone[1]) == 1 and "unsigned" in alone[1][0].rule

        def no_second_store(*_args: object) -> Store:
            raise RepositoryError("no git for the second process")

        monkeypatch.setattr(audit_module.Store, "open", no_second_store)
        with pytest.raises(RepositoryError, match="audit's second process failed"):
            audit_module.judged(store, root, tip, "main")


def test_audit_reads_its_names_so_no_tag_stands_in(signed: tuple[Path, Path],
                                                   keydir: Path) -> None:
    """A tag named `main` on a clean commit was audited in place of the branch (git's
    lookup prefers tags), and a tag named like a short commit id in place of ROOT (audit
    pass 3, finding 1)."""
    server, clone = signed
    root = git(clone, "rev-parse", "HEAD")
    act(clone, keydir, "alice", "promote", "support-bot", "--to", "staging")
    git(clone, "tag", "main")  # a clean state, as anyone may push a tag
    copy_dir(clone, DEV, STG)
    (clone / STG / "extra.md").write_text("by hand\n")
    signed_commit(clone, keydir, "alice", None, "Staging by hand")
    result = sl(clone, "audit", "--from", root, "--ref", "main")
    assert result.code == CHECK_FAILED and "unsigned" in result.out
    git(clone, "tag", root[:12], "HEAD")
    result = sl(clone, "audit", "--from", root[:12])
    assert result.code == 2 and "full commit id or a full ref name" in result.err
    assert sl(clone, "audit", "--from", "refs/tags/main").code == CHECK_FAILED


def test_audit_remembers_the_tips_and_revocations_it_saw(signed: tuple[Path, Path],
                                                         keydir: Path) -> None:
    """Audited clean at T; quinn's key revoked, and the audit failed; the branch forced
    back to T and a mark signed with the stolen key added: the audit passed (audit pass 3,
    finding 2). Every audit is remembered now, not only a clean one."""
    server, clone = signed
    root = git(clone, "rev-parse", "HEAD")
    act(clone, keydir, "alice", "promote", "support-bot", "--to", "staging")
    clean = git(clone, "rev-parse", "HEAD")
    assert sl(clone, "audit", "--from", root).code == OK
    revoke(clone, keydir, "quinn", "quinn's key was stolen")
    assert sl(clone, "audit", "--from", root).code == OK  # nothing quinn signed yet
    git(clone, "reset", "-q", "--hard", clean)  # the revocation rewritten away
    act(clone, keydir, "quinn", "mark-ready", "support-bot")
    result = sl(clone, "audit", "--from", root)
    assert result.code == CHECK_FAILED and "(the tip audited before)" in result.out
    # with the line the clone saw restored, the stolen key's mark still counts for nothing
    record = clone / ".git" / "stageline-audited.json"
    data = json.loads(record.read_text())
    data[f"{root} main"]["tip"] = clean
    record.write_text(json.dumps(data))
    result = sl(clone, "audit", "--from", root, "--json")
    assert result.code == CHECK_FAILED
    assert any("revoked key" in v["rule"] for v in json.loads(result.out)["violations"])


def test_audit_roots_off_the_branch_are_refused(signed: tuple[Path, Path],
                                                keydir: Path) -> None:
    """A ROOT after the tip (on another branch) judged nothing and passed (audit pass 3,
    finding 3)."""
    server, clone = signed
    tip = git(clone, "rev-parse", "HEAD")
    git(clone, "checkout", "-q", "-b", "later")
    act(clone, keydir, "alice", "promote", "support-bot", "--to", "staging")
    later = git(clone, "rev-parse", "HEAD")
    result = sl(clone, "audit", "--from", later, "--ref", "main")
    assert result.code == 2 and "not an earlier commit of main" in result.err
    result = sl(clone, "audit", "--from", tip, "--ref", "main", "--json")
    assert result.code == OK and json.loads(result.out)["commits"] == 0
