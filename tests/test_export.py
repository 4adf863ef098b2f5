"""``stageline export``: deployment bundles of production, on real repositories.

Every bundle is checked the way a deployer would: its files are written out,
hashed back into a tree with plain git, and the tree id compared with the one
the bundle names; its ``sha256`` is recomputed from the documented recipe.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import commit_all, git, make_org, sl

from stageline.errors import BLOCKED, CHECK_FAILED, OK, REPOSITORY, USAGE

PROD = "environments/production"
SETTINGS = (b"API_URL: https://billing.acme.test/v1\n"
            b"API_TOKEN: vault://acme/production/billing-token\n"
            b"RETRIES: 3\n"
            b"UNUSED: not referenced\n")
AGENT_YAML = (b"name: billing-bot\n"
              b"description: Answers billing questions\n"
              b"model: {provider: openai, name: gpt-4o-mini}\n"
              b"system_prompt: prompts/system.md\n"
              b"integrations:\n"
              b"  - name: billing\n"
              b"    url: ${settings.API_URL}\n"
              b"    token: ${settings.API_TOKEN}\n"
              b"    retries: ${settings.RETRIES}\n"
              b"  - name: crm\n"
              b"    api_key: {secret: CRM_KEY}\n")
PNG = bytes(range(256)) + b"\x89PNG\r\n\x1a\n\0\0"


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def production_org(path: Path, agents: dict[str, dict[str, bytes]],
                   settings: bytes | None = SETTINGS) -> Path:
    """The test organization with these agents committed in production (no hook runs
    in a local repository, so the content can be anything a server once accepted)."""
    repo = make_org(path)
    for name, files in agents.items():
        write_files(repo / PROD / name, files)
    if settings is not None:
        write_files(repo, {"settings/production.yaml": settings})
    commit_all(repo, "olga", "Production agents")
    return repo


def billing_files() -> dict[str, bytes]:
    return {"agent.yaml": AGENT_YAML,
            "prompts/system.md": "Réponds poliment. ✓\r\nDeuxième ligne\n".encode(),
            "assets/logo.png": PNG,
            "assets/nul.txt": b"text with a NUL \0 byte\n",
            "assets/latin1.txt": "caf\xe9\n".encode("latin-1"),
            "empty.md": b""}


def simple_files(name: str) -> dict[str, bytes]:
    return {"agent.yaml": f"name: {name}\ndescription: {name}\n"
                          "model: {provider: openai, name: gpt-4o-mini}\n"
                          "system_prompt: prompts/system.md\n".encode(),
            "prompts/system.md": f"You are {name}.\n".encode()}


@pytest.fixture
def prod(tmp_path: Path) -> Path:
    return production_org(tmp_path / "org", {"billing-bot": billing_files(),
                                             "faq-bot": simple_files("faq-bot")})


def load(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_bytes().decode("utf-8"))
    assert isinstance(doc, dict)
    return doc


def bundle_files(bundle: dict[str, Any]) -> dict[str, bytes]:
    return {path: base64.b64decode(value["base64"]) if isinstance(value, dict)
            else value.encode("utf-8") for path, value in bundle["files"].items()}


def rebuild_tree(repo: Path, bundle: dict[str, Any], scratch: Path) -> str:
    """Deploy a bundle to disk, then hash it back into a tree with plain git."""
    root = scratch / bundle["agent"]
    write_files(root, bundle_files(bundle))
    paths = sorted(bundle["files"])
    oids = subprocess.run(["git", "hash-object", "-w", "--stdin-paths"], cwd=repo,
                          input="".join(f"{root / p}\n" for p in paths), capture_output=True,
                          text=True, check=True).stdout.split()
    executable = set(bundle["executable"])
    info = "".join(f"{'100755' if p in executable else '100644'} {oid}\t{p}\0"
                   for p, oid in zip(paths, oids, strict=True))
    env = dict(os.environ, GIT_INDEX_FILE=str(scratch / f"{bundle['agent']}.index"))
    subprocess.run(["git", "update-index", "-z", "--index-info"], cwd=repo, input=info,
                   text=True, env=env, check=True)
    return subprocess.run(["git", "write-tree"], cwd=repo, env=env, capture_output=True,
                          text=True, check=True).stdout.strip()


def recomputed_sha256(bundle: dict[str, Any]) -> str:
    """The documented recipe, written independently of stageline's code."""
    rest = {k: v for k, v in bundle.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode("utf-8")).hexdigest()


def json_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())
            if p.name.endswith(".json")}


def test_bundle_rebuilds_the_exact_production_tree(prod: Path, tmp_path: Path) -> None:
    head = git(prod, "rev-parse", "main")
    result = sl(prod, "export", "--out", str(tmp_path / "out"))
    assert result.code == OK, result.err
    assert sorted(json_files(tmp_path / "out")) == ["billing-bot.json", "faq-bot.json"]
    for name in ("billing-bot", "faq-bot"):
        bundle = load(tmp_path / "out" / f"{name}.json")
        tree = git(prod, "rev-parse", f"main:{PROD}/{name}")
        assert bundle["agent"] == name
        assert bundle["environment"] == "production"
        assert bundle["format"] == "stageline.bundle/1"
        assert bundle["commit"] == head
        assert bundle["tree"] == tree
        assert rebuild_tree(prod, bundle, tmp_path / "deploy") == tree
        assert bundle["sha256"] == recomputed_sha256(bundle)
        # canonical form: sorted keys, no spaces, UTF-8, one trailing newline
        assert (tmp_path / "out" / f"{name}.json").read_bytes() == json.dumps(
            bundle, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8") + b"\n"
    assert "2 agent(s)" in result.out and head[:12] in result.out


def test_text_stays_text_and_binary_is_base64(prod: Path, tmp_path: Path) -> None:
    assert sl(prod, "export", "--out", str(tmp_path / "out")).code == OK
    raw = (tmp_path / "out" / "billing-bot.json").read_bytes()
    assert "Réponds poliment. ✓\\r\\nDeuxième".encode() in raw  # UTF-8, not \u escapes
    files = load(tmp_path / "out" / "billing-bot.json")["files"]
    assert list(files) == sorted(files)
    assert files["agent.yaml"] == AGENT_YAML.decode()
    assert files["empty.md"] == ""
    assert files["assets/logo.png"] == {"base64": base64.b64encode(PNG).decode()}
    for path in ("assets/nul.txt", "assets/latin1.txt"):  # a NUL byte, or not UTF-8
        assert set(files[path]) == {"base64"}
    assert bundle_files(load(tmp_path / "out" / "billing-bot.json")) == billing_files()


def test_production_settings_resolved_and_secret_references_kept(prod: Path,
                                                                 tmp_path: Path) -> None:
    assert sl(prod, "export", "--out", str(tmp_path / "out")).code == OK
    bundle = load(tmp_path / "out" / "billing-bot.json")
    assert bundle["settings"] == {"API_URL": "https://billing.acme.test/v1",
                                  "API_TOKEN": "vault://acme/production/billing-token",
                                  "RETRIES": 3}
    text = bundle["files"]["agent.yaml"]
    assert "token: ${settings.API_TOKEN}" in text and "api_key: {secret: CRM_KEY}" in text
    assert load(tmp_path / "out" / "faq-bot.json")["settings"] == {}


def test_undefined_setting_refuses_and_writes_nothing(tmp_path: Path) -> None:
    repo = production_org(tmp_path / "org", {"billing-bot": billing_files()},
                          settings=b"API_URL: https://billing.acme.test/v1\n")
    result = sl(repo, "export", "--out", str(tmp_path / "out"))
    assert result.code == CHECK_FAILED
    assert "billing-bot/agent.yaml:8 refers to ${settings.API_TOKEN}" in result.err
    assert not (tmp_path / "out").exists()


def test_unusable_settings_file_is_a_configuration_error(tmp_path: Path) -> None:
    repo = production_org(tmp_path / "org", {"faq-bot": simple_files("faq-bot")},
                          settings=b"- not\n- a mapping\n")
    result = sl(repo, "export", "--out", str(tmp_path / "out"))
    assert result.code == REPOSITORY
    assert "settings/production.yaml" in result.err
    assert not (tmp_path / "out").exists()


def test_a_setting_json_cannot_hold_is_refused_only_when_referenced(tmp_path: Path) -> None:
    repo = production_org(tmp_path / "org", {"billing-bot": billing_files()},
                          SETTINGS + b"RATIO: .nan\n")
    assert sl(repo, "export", "--out", str(tmp_path / "out")).code == OK
    (repo / PROD / "billing-bot/prompts/system.md").write_text("${settings.RATIO}\n")
    commit_all(repo, "olga", "Use RATIO")
    result = sl(repo, "export", "--out", str(tmp_path / "out"))
    assert result.code == REPOSITORY
    assert "RATIO is not a finite number" in result.err


def test_two_exports_and_clone_and_bare_server_give_the_same_bytes(prod: Path,
                                                                   tmp_path: Path) -> None:
    server = tmp_path / "server.git"
    git(tmp_path, "clone", "-q", "--bare", str(prod), str(server))
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(server), str(clone))
    git(clone, "switch", "-q", "-c", "feature")  # HEAD elsewhere: the protected branch counts
    outputs = []
    for i, repo in enumerate((prod, prod, server, clone)):
        out = tmp_path / f"out{i}"
        result = sl(repo, "export", "--out", str(out))
        assert result.code == OK, result.err
        outputs.append(json_files(out))
    assert len(outputs[0]) == 2
    assert all(o == outputs[0] for o in outputs[1:])


def test_a_ci_checkout_without_the_local_branch_uses_the_remote_one(prod: Path,
                                                                    tmp_path: Path) -> None:
    ci = tmp_path / "ci"
    git(tmp_path, "clone", "-q", str(prod), str(ci))
    git(ci, "checkout", "-q", "--detach")
    git(ci, "branch", "-q", "-D", "main")
    head = git(ci, "rev-parse", "HEAD")
    for args in ((), ("--ref", head)):
        result = sl(ci, "export", "--out", str(tmp_path / "out"), "--json", *args)
        assert result.code == OK, result.err
        summary = json.loads(result.out)
        assert summary["ref"] == "refs/remotes/origin/main" and summary["commit"] == head


def test_no_actor_and_no_working_tree_needed(prod: Path, tmp_path: Path) -> None:
    # uncommitted edits in production and a broken working-tree policy change nothing
    (prod / PROD / "faq-bot/prompts/system.md").write_text("uncommitted\n")
    (prod / "stageline.yaml").write_text("not: [a policy\n")
    assert git(prod, "config", "--get", "user.email", check=False) == ""
    result = sl(prod, "export", "--out", str(tmp_path / "out"))
    assert result.code == OK, result.err
    assert load(tmp_path / "out" / "faq-bot.json")["files"]["prompts/system.md"] == \
        "You are faq-bot.\n"


def test_named_agents_only_and_dir_holds_exactly_them(prod: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert sl(prod, "export", "--out", str(out)).code == OK
    result = sl(prod, "export", "--out", str(out), "faq-bot", "faq-bot", "--json")
    assert result.code == OK, result.err
    summary = json.loads(result.out)
    assert [a["agent"] for a in summary["agents"]] == ["faq-bot"]
    assert summary["agents"][0]["written"] is False  # same bytes: left as they were
    assert summary["removed"] == [str(out / "billing-bot.json")]
    assert list(json_files(out)) == ["faq-bot.json"]


def test_agent_not_in_production_is_refused_and_nothing_written(prod: Path,
                                                                tmp_path: Path) -> None:
    # support-bot exists, in development only
    result = sl(prod, "export", "--out", str(tmp_path / "out"), "faq-bot", "support-bot")
    assert result.code == BLOCKED
    assert result.err.count("\n") == 1
    assert "support-bot is not in production" in result.err
    assert not (tmp_path / "out").exists()
    out = tmp_path / "existing"
    assert sl(prod, "export", "--out", str(out), "faq-bot").code == OK
    before = json_files(out)
    assert sl(prod, "export", "--out", str(out), "nobody").code == BLOCKED
    assert json_files(out) == before and sorted(p.name for p in out.iterdir()) == ["faq-bot.json"]


def test_stale_bundles_go_when_the_agent_leaves_production(prod: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (tmp_path / "out").mkdir()
    (out / "README.txt").write_text("deployment notes\n")  # not .json: left alone
    assert sl(prod, "export", "--out", str(out)).code == OK
    git(prod, "rm", "-q", "-r", f"{PROD}/billing-bot")
    commit_all(prod, "olga", "Retire billing-bot")
    result = sl(prod, "export", "--out", str(out))
    assert result.code == OK, result.err
    assert "billing-bot.json  removed" in result.out
    assert list(json_files(out)) == ["faq-bot.json"]
    assert (out / "README.txt").read_text() == "deployment notes\n"


@pytest.mark.parametrize("foreign", ["unrelated", "wrong-agent", "symlink", "directory",
                                     "upper-case"])
def test_a_foreign_json_file_refuses_and_nothing_changes(prod: Path, tmp_path: Path,
                                                         foreign: str) -> None:
    out = tmp_path / "out"
    assert sl(prod, "export", "--out", str(out), "faq-bot").code == OK
    faq = (out / "faq-bot.json").read_bytes()
    if foreign == "unrelated":  # the user's file, under an agent's bundle name
        (out / "billing-bot.json").write_text('{"agent": "billing-bot"}\n')
    elif foreign == "wrong-agent":  # a bundle under another agent's name
        shutil.copy(out / "faq-bot.json", out / "billing-bot.json")
    elif foreign == "symlink":
        (out / "billing-bot.json").symlink_to(out / "faq-bot.json")
    elif foreign == "directory":
        (out / "billing-bot.json").mkdir()
    else:
        shutil.copy(out / "faq-bot.json", out / "FAQ-bot.JSON")
    names = sorted(p.name for p in out.iterdir())
    result = sl(prod, "export", "--out", str(out))
    assert result.code == BLOCKED
    assert "is not a stageline bundle" in result.err
    assert sorted(p.name for p in out.iterdir()) == names
    assert (out / "faq-bot.json").read_bytes() == faq
    if foreign == "unrelated":
        assert (out / "billing-bot.json").read_text() == '{"agent": "billing-bot"}\n'


def test_ref_exports_an_earlier_commit_of_the_branch(prod: Path, tmp_path: Path) -> None:
    old = git(prod, "rev-parse", "main")
    old_tree = git(prod, "rev-parse", f"main:{PROD}/faq-bot")
    (prod / PROD / "faq-bot/prompts/system.md").write_text("Version two.\n")
    commit_all(prod, "olga", "faq-bot v2")
    result = sl(prod, "export", "--out", str(tmp_path / "out"), "--ref", "main~1", "faq-bot")
    assert result.code == OK, result.err
    bundle = load(tmp_path / "out" / "faq-bot.json")
    assert (bundle["commit"], bundle["tree"]) == (old, old_tree)
    assert bundle["files"]["prompts/system.md"] == "You are faq-bot.\n"


def test_ref_off_the_branch_or_unknown_is_refused(prod: Path, tmp_path: Path) -> None:
    git(prod, "switch", "-q", "-c", "feature")
    (prod / PROD / "faq-bot/prompts/system.md").write_text("Never reviewed.\n")
    commit_all(prod, "dan", "Hand edit of production on a branch")
    result = sl(prod, "export", "--out", str(tmp_path / "out"), "--ref", "feature")
    assert result.code == BLOCKED
    assert "is not a commit of main's history" in result.err
    result = sl(prod, "export", "--out", str(tmp_path / "out"), "--ref", "no-such-rev")
    assert result.code == USAGE
    assert not (tmp_path / "out").exists()


def test_merged_side_commit_is_not_on_the_branch(prod: Path, tmp_path: Path) -> None:
    git(prod, "switch", "-q", "-c", "side")
    (prod / "notes.md").write_text("side\n")
    side = commit_all(prod, "dan", "Side work")
    git(prod, "switch", "-q", "main")
    (prod / "other.md").write_text("main\n")
    commit_all(prod, "olga", "Main work")
    git(prod, "merge", "-q", "--no-ff", "-m", "Merge side", "side",
        env={"GIT_AUTHOR_NAME": "Olga", "GIT_AUTHOR_EMAIL": "olga@test.example",
             "GIT_COMMITTER_NAME": "Olga", "GIT_COMMITTER_EMAIL": "olga@test.example"})
    result = sl(prod, "export", "--out", str(tmp_path / "out"), "--ref", side)
    assert result.code == BLOCKED


def test_symlink_in_production_is_refused(tmp_path: Path) -> None:
    repo = production_org(tmp_path / "org", {"faq-bot": simple_files("faq-bot")})
    os.symlink("/etc/passwd", repo / PROD / "faq-bot/prompts/link.md")
    commit_all(repo, "olga", "A symlink")
    result = sl(repo, "export", "--out", str(tmp_path / "out"))
    assert result.code == CHECK_FAILED
    assert "faq-bot/prompts/link.md is a symlink" in result.err
    assert not (tmp_path / "out").exists()


def test_executable_bit_is_kept(tmp_path: Path) -> None:
    repo = production_org(tmp_path / "org", {"faq-bot": {**simple_files("faq-bot"),
                                                         "bin/run.sh": b"#!/bin/sh\n"}})
    (repo / PROD / "faq-bot/bin/run.sh").chmod(0o755)
    commit_all(repo, "olga", "Executable")
    assert sl(repo, "export", "--out", str(tmp_path / "out")).code == OK
    bundle = load(tmp_path / "out" / "faq-bot.json")
    assert bundle["executable"] == ["bin/run.sh"]
    assert rebuild_tree(repo, bundle, tmp_path / "deploy") == \
        git(repo, "rev-parse", f"main:{PROD}/faq-bot")


def test_the_real_workflow_exports_what_was_promoted(ready_org: Path, tmp_path: Path) -> None:
    server = tmp_path / "server.git"
    assert sl(ready_org, "promote", "support-bot", "--to", "production", actor="olga").code == OK
    git(tmp_path, "clone", "-q", "--bare", str(ready_org), str(server))
    result = sl(server, "export", "--out", str(tmp_path / "out"), "--json")
    assert result.code == OK, result.err
    summary = json.loads(result.out)
    [item] = summary["agents"]
    bundle = load(Path(item["path"]))
    assert item["sha256"] == bundle["sha256"] == recomputed_sha256(bundle)
    assert item["tree"] == bundle["tree"] == git(server, "rev-parse",
                                                 "main:environments/staging/support-bot")
    assert rebuild_tree(server, bundle, tmp_path / "deploy") == bundle["tree"]


def test_empty_production_exports_nothing(org: Path, tmp_path: Path) -> None:
    result = sl(org, "export", "--out", str(tmp_path / "out"), "--json")
    assert result.code == OK, result.err
    assert json.loads(result.out)["agents"] == []
    assert list((tmp_path / "out").iterdir()) == []


def test_usage_and_repository_errors(prod: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert sl(prod, "export", "--out", str(tmp_path / "file")).code == USAGE
    result = sl(prod, "export", "--out", str(tmp_path / "out"), "Bad_Name")
    assert result.code == USAGE and "not a valid agent name" in result.err
    assert sl(prod, "export").code == USAGE  # --out is required
    assert sl(tmp_path, "export", "--out", str(tmp_path / "out")).code == REPOSITORY
    plain = tmp_path / "plain"
    git(tmp_path, "init", "-q", str(plain))
    (plain / "x").write_text("x")
    commit_all(plain, "olga", "Not an organization")
    result = sl(plain, "export", "--out", str(tmp_path / "out"))
    assert result.code == REPOSITORY and "stageline.yaml" in result.err
    dangling = tmp_path / "dangling.git"  # a server whose HEAD names a branch never pushed
    git(tmp_path, "init", "-q", "--bare", "-b", "master", str(dangling))
    git(prod, "push", "-q", str(dangling), "main")
    result = sl(dangling, "export", "--out", str(tmp_path / "out"))
    assert result.code == REPOSITORY and "git symbolic-ref HEAD" in result.err
    git(dangling, "symbolic-ref", "HEAD", "refs/heads/main")
    assert sl(dangling, "export", "--out", str(tmp_path / "fixed")).code == OK
    assert not (tmp_path / "out").exists()


def cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("STAGELINE_CRASH_AT", None)
    env.update(kwargs.pop("env", {}))
    return subprocess.run([sys.executable, "-m", "stageline", *args], stdout=subprocess.PIPE,
                          stderr=kwargs.pop("stderr", subprocess.PIPE), text=True, env=env,
                          **kwargs)


def test_killed_before_the_renames_leaves_the_old_bundles_whole(prod: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert sl(prod, "export", "--out", str(out)).code == OK
    before = json_files(out)
    (prod / PROD / "faq-bot/prompts/system.md").write_text("Version two.\n")
    commit_all(prod, "olga", "faq-bot v2")
    killed = cli("--repo", str(prod), "export", "--out", str(out),
                 env={"STAGELINE_CRASH_AT": "export-before-rename"})
    assert killed.returncode == -9
    assert json_files(out) == before  # temporary files are no .json files
    assert any(p.name.endswith(".stageline-tmp") for p in out.iterdir())
    result = sl(prod, "export", "--out", str(out))
    assert result.code == OK, result.err
    assert sorted(p.name for p in out.iterdir()) == ["billing-bot.json", "faq-bot.json"]
    assert load(out / "faq-bot.json")["files"]["prompts/system.md"] == "Version two.\n"


def test_progress_only_on_a_terminal(tmp_path: Path) -> None:
    agents = {f"bot-{i:02d}": simple_files(f"bot-{i:02d}") for i in range(25)}
    repo = production_org(tmp_path / "org", agents)
    quiet = sl(repo, "export", "--out", str(tmp_path / "quiet"))
    assert quiet.code == OK and quiet.err == ""
    master, slave = pty.openpty()
    try:
        proc = cli("--repo", str(repo), "export", "--out", str(tmp_path / "tty"), stderr=slave)
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError as exc:  # EIO: the terminal's other side is closed
                assert exc.errno == errno.EIO
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
    assert proc.returncode == 0
    assert b"exporting 10/25 agents" in shown and b"exporting 25/25 agents" in shown
    assert json_files(tmp_path / "tty") == json_files(tmp_path / "quiet")
