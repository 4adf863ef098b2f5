"""The CI recipes of ``ci/`` run as written.

Each job's ``run:``/``script:`` steps run in order with ``bash -e -o pipefail`` (GitHub) or
``sh -e`` (GitLab), against a clone of a bare server that has the hook installed. The CI
system's parts are stood in for: ``actions/checkout`` (and GitLab's runner checkout) by a
clone of the server at the event's ref, ``actions/setup-python`` and the pinned ``pip
install`` by this interpreter (``stageline`` on ``PATH`` is this environment's), ``gh`` by a
script that records its arguments, ``actions/upload-artifact`` by noting its path.
``${{ ... }}`` expressions are replaced from a table of test values as GitHub does, textually,
before the shell sees the script; an expression not in the table fails the test, so a recipe
that gains one has to be looked at here. GitLab's ``$CI_...`` variables come from the same
kind of table, as environment variables."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import author_env, commit_all, git, make_org, sl
from servers import DEV, PRD, STG, copy_dir

from stageline.errors import OK

CI = Path(__file__).resolve().parents[1] / "ci"
GITHUB = CI / "github-actions"
GITLAB = CI / "gitlab-ci.yml"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
PIP_INSTALL = re.compile(r'^python -m pip install --quiet '
                         r'"stageline @ git\+https://[^"@]+\.git@([0-9a-f]{40})"')
CI_PREFIXES = ("GITHUB_", "GITLAB_", "CI_", "RUNNER_", "GL_")
BOT = "ci-bot"

CI_POLICY = f"""
ci:
  actor_env: [GITHUB_TRIGGERING_ACTOR, GITHUB_ACTOR, GITLAB_USER_LOGIN]
service_accounts:
  {BOT}:
    acts_for_members: true
"""

HOSTILE = ['support-bot"; touch "$HOME/pwned"; echo "',
           "$(touch $HOME/pwned)"]


@dataclass
class Job:
    ok: bool
    output: str
    outcomes: dict[str, str] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    workspace: Path = Path()


@dataclass
class World:
    """A hooked bare server whose policy lets ci-bot push for members, and a member's clone."""

    tmp: Path
    server: Path
    clone: Path
    bin: Path

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(CI_PREFIXES)}
        env["PATH"] = os.pathsep.join([str(self.bin), str(Path(sys.executable).parent),
                                       env.get("PATH", "")])
        env["GH_LOG"] = str(self.tmp / "gh.log")
        # The server authenticates the CI job's pushes as the service account.
        env["GL_USERNAME"] = BOT
        return env

    def push(self, member: str, refspec: str = "HEAD:refs/heads/main") -> None:
        proc = subprocess.run(["git", "push", "-q", "origin", refspec], cwd=self.clone,
                              capture_output=True, text=True,
                              env={**os.environ, "GL_USERNAME": member})
        assert proc.returncode == 0, proc.stderr

    def tip(self, ref: str = "refs/heads/main") -> str:
        return git(self.server, "rev-parse", ref)

    def workspace(self, name: str) -> Path:
        path = self.tmp / "jobs" / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def checkout(self, where: Path, ref: str) -> None:
        """What actions/checkout (or GitLab's runner) leaves: a branch for a branch ref,
        else the fetched commit, detached."""
        git(self.tmp, "clone", "-q", "--no-checkout", str(self.server), str(where))
        branch = ref.removeprefix("refs/heads/")
        if re.fullmatch(r"[0-9a-f]{40}", ref):
            git(where, "checkout", "-q", "--detach", ref)
        elif not ref.startswith("refs/") or ref.startswith("refs/heads/"):
            git(where, "checkout", "-q", "-B", branch, f"refs/remotes/origin/{branch}")
        else:
            git(where, "fetch", "-q", "origin", ref)
            git(where, "checkout", "-q", "--detach", "FETCH_HEAD")


@pytest.fixture(autouse=True)
def _no_ci_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite may itself run in CI: its variables must reach no job or command."""
    for var in list(os.environ):
        if var.startswith(CI_PREFIXES):
            monkeypatch.delenv(var)


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server with the hook and the CI policy, and a clone: made once, copied per test."""
    base = tmp_path_factory.mktemp("world")
    with pytest.MonkeyPatch.context() as mp:
        for var in list(os.environ):
            if var.startswith(CI_PREFIXES):
                mp.delenv(var)
        server = make_org(base / "server.git", bare=True)
        assert sl(None, "hook", "install", str(server)).code == OK
        clone = base / "work"
        git(base, "clone", "-q", str(server), str(clone))
        policy = clone / "stageline.yaml"
        policy.write_text(policy.read_text() + CI_POLICY)
        commit_all(clone, "olga", "Policy: acting from CI")
        World(base, server, clone, base / "bin").push("olga")
    return base


@pytest.fixture
def world(tmp_path: Path, hooked: Path) -> World:
    server, clone = tmp_path / "server.git", tmp_path / "work"
    shutil.copytree(hooked / "server.git", server, symlinks=True)
    shutil.copytree(hooked / "work", clone, symlinks=True)
    git(clone, "remote", "set-url", "origin", str(server))
    fake = tmp_path / "bin"
    fake.mkdir()
    gh = fake / "gh"
    # records its arguments; asked for a collaborator's permission, answers $GH_PERMISSION
    gh.write_text('#!/bin/sh\nprintf "%s\\n" "$*" >> "$GH_LOG"\n'
                  'case "$2" in */permission) echo "${GH_PERMISSION:-none}";; esac\n')
    gh.chmod(0o755)
    return World(tmp_path, server, clone, fake)


def load(path: Path) -> dict[Any, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    return doc


def substitute(value: Any, table: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        def one(match: re.Match[str]) -> str:
            expr = match.group(1)
            assert expr in table, f"no test value for the expression ${{{{ {expr} }}}}"
            return table[expr]
        return EXPRESSION.sub(one, value)
    if isinstance(value, dict):
        return {k: substitute(v, table) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, table) for v in value]
    return value


def pinned_install(script: str) -> bool:
    """The recipes' install line: stageline from a full commit id of its repository (a
    version on a public index could be anyone's: the name is unclaimed there). The test
    runs its own checkout in its place."""
    return PIP_INSTALL.match(script.strip()) is not None


def test_every_third_party_piece_is_pinned_by_commit() -> None:
    """Actions by full commit id with their version beside, stageline by a commit."""
    for path in [*sorted(GITHUB.glob("*.yml")), GITLAB]:
        text = path.read_text(encoding="utf-8")
        for uses in re.findall(r"^\s*(?:- )?uses:\s*(\S+)(.*)$", text, re.M):
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses[0]), (path, uses)
            assert re.fullmatch(r"\s+# v\d+\.\d+\.\d+", uses[1]), (path, uses)
        installs = re.findall(r"pip install[^\n]*", text)
        assert installs and all(PIP_INSTALL.search("python -m " + i.split("python -m ")[-1])
                                for i in installs), (path, installs)


def test_zizmor_finds_nothing_in_the_github_recipes() -> None:
    """zizmor (the GitHub Actions auditor) over the recipes, offline; the findings it
    would report are answered in the files (the verify job's pull_request_target and the
    fast-forward job's issue_comment run no code of the pull request; the promotion and
    fast-forward jobs push with their checkout's credentials)."""
    zizmor = shutil.which("zizmor", path=str(Path(sys.executable).parent)) or \
        shutil.which("zizmor")
    if zizmor is None:
        pytest.skip("zizmor is not installed (pip install zizmor)")
    proc = subprocess.run([zizmor, "--offline", *map(str, sorted(GITHUB.glob("*.yml")))],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout + proc.stderr


def run_github(w: World, workflow: str, job_id: str, table: dict[str, str],
               env: Mapping[str, str] | None = None) -> Job:
    doc = load(GITHUB / workflow)
    job = doc["jobs"][job_id]
    space = w.workspace(job_id)
    base = {**w.base_env(), **(env or {})}
    base.update(substitute(doc.get("env", {}), table))
    base.update(substitute(job.get("env", {}), table))
    result = Job(True, "", workspace=space)
    for raw in job["steps"]:
        values = {**table, **{f"steps.{k}.outcome": v for k, v in result.outcomes.items()}}
        step = substitute(raw, values)
        condition = step.get("if")
        assert condition in (None, "always()"), f"unhandled if: {condition}"
        if not result.ok and condition is None:
            continue
        uses = step.get("uses")
        ok = True
        if uses:
            name = uses.split("@")[0]
            params = step.get("with", {})
            if name == "actions/checkout":
                ref = params.get("ref") or table["github.ref"]
                w.checkout(space / params.get("path", "."), ref)
            elif name in ("actions/upload-artifact", "actions/upload-pages-artifact"):
                result.artifacts.append(params["path"])
            else:
                assert name == "actions/setup-python", f"unhandled action {uses}"
        elif not pinned_install(step["run"]):
            cwd = space / step.get("working-directory", ".")
            proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", step["run"]],
                                  cwd=cwd, env={**base, **{k: str(v) for k, v in
                                                          step.get("env", {}).items()}},
                                  capture_output=True, text=True)
            ok = proc.returncode == 0
            result.output += proc.stdout + proc.stderr
        if "id" in step:
            result.outcomes[step["id"]] = "success" if ok else "failure"
        result.ok = result.ok and ok
    return result


GITHUB_COMMON = {
    "github.repository": "acme/org",
    "github.server_url": "https://github.test",
    "github.run_id": "4242",
    "github.token": "ghs_test",
}


def open_pull_request(w: World, number: int) -> str:
    """The clone's HEAD as a pull request into main, and GitHub's merge ref for it (a merge
    commit whose first parent is main's tip, authored here by a member). Returns the head."""
    head = git(w.clone, "rev-parse", "HEAD")
    w.push("alice", f"HEAD:refs/heads/pr-{number}")
    scratch = w.tmp / f"merge-{number}"
    git(w.tmp, "clone", "-q", str(w.server), str(scratch))
    git(scratch, "merge", "-q", "--no-ff", f"origin/pr-{number}", "-m", f"Merge {head}",
        env=author_env("alice"))
    # GitHub writes the pull request's refs itself: no hook runs for them.
    git(w.server, "fetch", "-q", str(scratch), f"+{head}:refs/pull/{number}/head",
        f"+HEAD:refs/pull/{number}/merge")
    return head


def verify_pr(w: World, number: int, head: str) -> Job:
    table = {**GITHUB_COMMON, "github.event.pull_request.number": str(number),
             "github.event.pull_request.base.ref": "main",
             "github.event.pull_request.head.sha": head}
    return run_github(w, "stageline-verify.yml", "verify", table,
                      {"GITHUB_EVENT_NAME": "pull_request_target"})


def statuses(w: World) -> list[str]:
    log = w.tmp / "gh.log"
    return log.read_text().splitlines() if log.exists() else []


# -- GitHub: verify --------------------------------------------------------------------------


def test_github_verify_passes_a_good_pull_request(world: World) -> None:
    git(world.clone, "checkout", "-q", "-b", "feature")
    (world.clone / DEV / "prompts/system.md").write_text("better\n")
    commit_all(world.clone, "alice", "Better prompt")
    head = open_pull_request(world, 1)
    job = verify_pr(world, 1, head)
    assert job.ok, job.output
    assert job.outcomes == {"verify": "success"}
    [status] = statuses(world)
    assert f"repos/acme/org/statuses/{head}" in status
    assert "state=success" in status and "context=stageline/verify" in status


def test_github_verify_judges_only_the_head_it_reports_on(world: World) -> None:
    """GitHub refreshes refs/pull/N/merge in the background: a stale one holds an older
    head than the event's, and success must not be posted on a head never judged (hook
    pass 5, a lead from reading the recipe)."""
    git(world.clone, "checkout", "-q", "-b", "stale")
    (world.clone / DEV / "prompts/system.md").write_text("first\n")
    commit_all(world.clone, "alice", "First")
    open_pull_request(world, 5)
    (world.clone / DEV / "prompts/system.md").write_text("second\n")
    newer = commit_all(world.clone, "alice", "Second")
    job = verify_pr(world, 5, newer)
    assert not job.ok and "not the pull request's head" in job.output
    assert all("state=success" not in s for s in statuses(world))


def test_github_verify_fails_a_hand_edit_of_staging(world: World) -> None:
    git(world.clone, "checkout", "-q", "-b", "sneaky")
    copy_dir(world.clone, DEV, STG)
    (world.clone / STG / "prompts/system.md").write_text("edited in staging\n")
    commit_all(world.clone, "alice", "Fix staging")
    head = open_pull_request(world, 2)
    job = verify_pr(world, 2, head)
    assert not job.ok
    assert job.outcomes == {"verify": "failure"}
    assert "staging must be an exact copy of development" in job.output
    [status] = statuses(world)
    assert f"statuses/{head}" in status and "state=failure" in status


def test_github_verify_judges_the_merge_when_the_branch_is_behind(world: World) -> None:
    git(world.clone, "checkout", "-q", "-b", "behind")
    copy_dir(world.clone, DEV, STG)
    commit_all(world.clone, "alice", "Promote by hand")  # a fine promotion, alone...
    git(world.clone, "checkout", "-q", "main")
    (world.clone / "README.md").write_text("main moved on\n")
    commit_all(world.clone, "dan", "Docs")
    world.push("dan")
    git(world.clone, "checkout", "-q", "behind")
    head = open_pull_request(world, 3)
    job = verify_pr(world, 3, head)
    # ...but merged into a newer main it would be a merge that changes staging.
    assert not job.ok
    assert "a merge commit may not change staging" in job.output


def test_github_verify_runs_nothing_from_the_pull_request(world: World) -> None:
    """The pull request ships a ``stageline`` command and Python modules that would write a
    marker when run or imported; the job judges it without running any of them."""
    marker = world.tmp / "ran-pr-code"
    trap = f"open({str(marker)!r}, 'w').write('ran')\n"
    git(world.clone, "checkout", "-q", "-b", "trojan")
    for name in ("yaml.py", "click.py", "stageline.py", "sitecustomize.py"):
        (world.clone / name).write_text(f"{trap}")
    (world.clone / "stageline").write_text(f"#!{sys.executable}\n{trap}")
    (world.clone / "stageline").chmod(0o755)
    (world.clone / DEV / "prompts/system.md").write_text("innocent\n")
    commit_all(world.clone, "alice", "Innocent")
    head = open_pull_request(world, 4)
    job = verify_pr(world, 4, head)
    assert job.outcomes == {"verify": "success"}, job.output
    assert not marker.exists()


# -- GitHub: promote -------------------------------------------------------------------------


def dispatch(w: World, agent: str, target: str, actor: str,
             triggering: str | None = None) -> Job:
    table = {**GITHUB_COMMON, "inputs.agent": agent, "inputs.target": target,
             "github.ref": "refs/heads/main", "secrets.STAGELINE_PUSH_TOKEN": "ghs_push"}
    env = {"GITHUB_ACTOR": actor, "GITHUB_TRIGGERING_ACTOR": triggering or actor,
           "GITHUB_EVENT_NAME": "workflow_dispatch", "GITHUB_REF": "refs/heads/main"}
    return run_github(w, "stageline-promote.yml", "promote", table, env)


def last_commit(server: Path) -> tuple[str, str]:
    out = git(server, "log", "-1", "--format=%ae%x00%B", "refs/heads/main")
    email, message = out.split("\0", 1)
    return email, message


def test_github_promotion_job_promotes_as_the_member_and_the_bot_pushes(world: World) -> None:
    # A re-run by alice of a run olga started acts as alice (GITHUB_TRIGGERING_ACTOR).
    job = dispatch(world, "support-bot", "staging", actor="olga", triggering="alice")
    assert job.ok, job.output
    email, message = last_commit(world.server)
    assert email == "alice@test.example"
    assert "Stageline-Actor: alice" in message
    assert git(world.server, "rev-parse", f"main:{STG}") == \
        git(world.server, "rev-parse", f"main:{DEV}")
    assert dispatch(world, "support-bot", "ready", actor="quinn").ok
    job = dispatch(world, "support-bot", "production", actor="olga")
    assert job.ok, job.output
    assert git(world.server, "rev-parse", f"main:{PRD}") == \
        git(world.server, "rev-parse", f"main:{STG}")
    log = (world.server / "stageline-pushes.jsonl").read_text()
    assert log.count(f'"pusher": "{BOT}"') == 3


def test_github_promotion_job_refuses_a_member_without_the_role(world: World) -> None:
    before = world.tip()
    job = dispatch(world, "support-bot", "production", actor="alice")
    assert not job.ok
    assert "alice" in job.output
    assert world.tip() == before


@pytest.mark.parametrize("agent", HOSTILE)
def test_github_promotion_inputs_never_become_shell_text(world: World, agent: str) -> None:
    before = world.tip()
    job = dispatch(world, agent, "staging", actor="alice")
    assert not job.ok
    assert not (Path(os.environ["HOME"]) / "pwned").exists()
    assert world.tip() == before


def test_no_expression_is_ever_text_of_a_script() -> None:
    """Expressions reach run: steps only through env: (GitHub's script-injection advice)."""
    for path in sorted(GITHUB.glob("*.yml")):
        for job in load(path)["jobs"].values():
            for step in job["steps"]:
                assert "${{" not in step.get("run", ""), (path.name, step.get("name"))


# -- GitHub: deploy --------------------------------------------------------------------------


def in_production(w: World) -> str:
    for actor, args in (("alice", ("promote", "support-bot", "--to", "staging")),
                        ("quinn", ("mark-ready", "support-bot")),
                        ("olga", ("promote", "support-bot", "--to", "production"))):
        assert sl(w.clone, *args, actor=actor).code == OK
        w.push(actor)
    return w.tip()


def expected_bundles(w: World, sha: str) -> dict[str, bytes]:
    out = w.tmp / "expected"
    assert sl(w.server, "export", "--out", str(out), "--ref", sha).code == OK
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.json"))}


def test_github_deploy_job_exports_the_pushed_commit(world: World) -> None:
    on = load(GITHUB / "stageline-deploy.yml")[True]  # YAML 1.1 reads "on" as true
    assert on["push"] == {"branches": ["main"], "paths": ["environments/production/**"]}
    sha = in_production(world)
    table = {**GITHUB_COMMON, "github.ref": "refs/heads/main", "github.sha": sha}
    job = run_github(world, "stageline-deploy.yml", "export", table,
                     {"GITHUB_SHA": sha, "GITHUB_REF": "refs/heads/main"})
    assert job.ok, job.output
    assert job.artifacts == ["bundles/"]
    bundles = {p.name: p.read_bytes() for p in sorted((job.workspace / "bundles").glob("*"))}
    assert bundles == expected_bundles(world, sha)
    assert list(bundles) == ["support-bot.json"]


def test_github_site_job_builds_the_site_of_the_pushed_commit(world: World) -> None:
    doc = load(GITHUB / "stageline-site.yml")
    assert doc[True]["push"] == {"branches": ["main"]}
    assert doc["jobs"]["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}
    sha = in_production(world)
    table = {**GITHUB_COMMON, "github.ref": "refs/heads/main", "github.sha": sha}
    job = run_github(world, "stageline-site.yml", "build", table,
                     {"GITHUB_SHA": sha, "GITHUB_REF": "refs/heads/main"})
    assert job.ok, job.output
    assert job.artifacts == ["public/"]
    board = (job.workspace / "public/index.html").read_text()
    assert sha[:12] in board and "agents/support-bot/index.html" in board


# -- GitHub: fast-forward (signed pull requests) --------------------------------------------


def signing_world(w: World) -> Path:
    """olga lists everyone's key and requires signed actions; the clone signs as git does."""
    keys = w.tmp / "keys"
    keys.mkdir()
    policy = (w.clone / "stageline.yaml").read_text()
    for member in ("alice", "quinn", "olga"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", member, "-f",
                        str(keys / member)], check=True)
        line = (keys / f"{member}.pub").read_text().strip()
        policy = re.sub(rf"(  {member}: *\{{[^}}]*)\}}", rf"\1, keys: ['{line}']}}", policy)
    assert policy.count("keys: [") == 3
    (w.clone / "stageline.yaml").write_text(policy + "signing: {require: actions}\n")
    commit_all(w.clone, "olga", "Signed actions")
    w.push("olga")
    git(w.clone, "config", "gpg.format", "ssh")
    return keys


def fast_forward(w: World, comment: str, number: int, login: str = "alice",
                 permission: str = "write") -> Job:
    table = {**GITHUB_COMMON, "github.event_name": "issue_comment",
             "github.event.comment.body": comment,
             "github.event.comment.user.login || github.triggering_actor": login,
             "github.event.issue.pull_request.url": "https://github.test/pulls/1",
             "github.event.issue.number": str(number), "inputs.pull_request": "",
             "secrets.STAGELINE_PUSH_TOKEN": "ghs_push"}
    return run_github(w, "stageline-fast-forward.yml", "fast-forward", table,
                      {"GH_PERMISSION": permission})


def signed_pull_request(w: World, keys: Path, number: int, sign: bool = True) -> str:
    """alice's signed promotion to staging as pull request ``number`` (its head)."""
    git(w.clone, "checkout", "-q", "-B", f"pr-{number}", "origin/main")
    if sign:
        git(w.clone, "config", "user.signingkey", str(keys / "alice"))
        assert sl(w.clone, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    else:
        copy_dir(w.clone, DEV, STG)
        commit_all(w.clone, "alice", "Promote support-bot to staging")
    head = git(w.clone, "rev-parse", "HEAD")
    w.push("alice", f"HEAD:refs/heads/pr-{number}")
    git(w.server, "update-ref", f"refs/pull/{number}/head", head)  # GitHub's own ref
    return head


def test_github_fast_forward_lands_signed_commits_unchanged(world: World) -> None:
    keys = signing_world(world)
    head = signed_pull_request(world, keys, 7)
    assert "gpgsig" in git(world.clone, "cat-file", "commit", head)
    job = fast_forward(world, "/fast-forward\r\n", 7)
    assert job.ok, job.output
    assert world.tip() == head  # the same commit: its signature is the author's
    assert "main is now" in job.output


def test_github_fast_forward_refuses_unsigned_actions_and_strangers(world: World) -> None:
    keys = signing_world(world)
    before = world.tip()
    signed_pull_request(world, keys, 8, sign=False)
    job = fast_forward(world, "/fast-forward", 8)
    assert not job.ok and "must be signed by one of alice's keys" in job.output
    head = signed_pull_request(world, keys, 9)
    # an organization member or collaborator without write access (hook-attack pass 5, 3)
    job = fast_forward(world, "/fast-forward", 9, login="mallory", permission="read")
    assert not job.ok and "mallory may not merge into main (permission: read)" in job.output
    # write access, but no member of stageline.yaml: verify judges the asker as the pusher
    job = fast_forward(world, "/fast-forward", 9, login="mallory")
    assert not job.ok and "the pusher mallory is not a member" in job.output
    job = fast_forward(world, "looks good", 9)
    assert job.ok and "nothing to do" in job.output
    assert world.tip() == before != head


# -- GitLab ----------------------------------------------------------------------------------


def gitlab_job(name: str) -> dict[str, Any]:
    doc = load(GITLAB)
    job = doc[name]
    assert isinstance(job, dict)
    return job


def run_gitlab(w: World, name: str, variables: dict[str, str], ref: str) -> Job:
    """The runner's checkout of ``ref``, then before_script and script in one shell."""
    job = gitlab_job(name)
    lines = [*job.get("before_script", []), *job["script"]]
    script = "\n".join(line for line in lines if not pinned_install(line))
    own = {k: str(v) for k, v in job.get("variables", {}).items()}
    for used in re.findall(r"\$\{?(CI_[A-Z0-9_]+)", script):
        assert used in variables, f"no test value for ${used}"
    space = w.workspace(name)
    w.checkout(space / "src", ref)
    env = {**w.base_env(), **own, **variables}
    proc = subprocess.run(["sh", "-e", "-c", script], cwd=space / "src", env=env,
                          capture_output=True, text=True)
    return Job(proc.returncode == 0, proc.stdout + proc.stderr, workspace=space)


GITLAB_MR = {"CI_PIPELINE_SOURCE": "merge_request_event",
             "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
             "CI_MERGE_REQUEST_TARGET_BRANCH_SHA": "",
             "CI_MERGE_REQUEST_SOURCE_BRANCH_SHA": ""}


def merge_request(w: World, number: int, merged_results: bool) -> Job:
    """A merge request of the clone's HEAD, in a plain or a merged results pipeline."""
    head = open_pull_request(w, number)  # refs/pull/N/merge stands for GitLab's merge ref
    target = git(w.server, "rev-parse", f"refs/pull/{number}/merge^1")
    variables = {**GITLAB_MR, "CI_MERGE_REQUEST_DIFF_BASE_SHA":
                 git(w.server, "merge-base", target, head)}
    if merged_results:
        variables.update(CI_MERGE_REQUEST_TARGET_BRANCH_SHA=target,
                         CI_MERGE_REQUEST_SOURCE_BRANCH_SHA=head,
                         CI_COMMIT_SHA=git(w.server, "rev-parse", f"refs/pull/{number}/merge"))
        ref = f"refs/pull/{number}/merge"
    else:
        variables["CI_COMMIT_SHA"] = head
        ref = f"refs/pull/{number}/head"
    return run_gitlab(w, "stageline-verify", variables, ref)


@pytest.mark.parametrize("merged_results", [False, True])
def test_gitlab_verify_passes_a_good_merge_request(world: World, merged_results: bool) -> None:
    assert gitlab_job("stageline-verify")["rules"] == [
        {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    git(world.clone, "checkout", "-q", "-b", "feature")
    (world.clone / DEV / "prompts/system.md").write_text("better\n")
    commit_all(world.clone, "alice", "Better prompt")
    job = merge_request(world, 1, merged_results)
    assert job.ok, job.output


@pytest.mark.parametrize("merged_results", [False, True])
def test_gitlab_verify_fails_a_hand_edit_of_staging(world: World, merged_results: bool) -> None:
    git(world.clone, "checkout", "-q", "-b", "sneaky")
    copy_dir(world.clone, DEV, STG)
    (world.clone / STG / "prompts/system.md").write_text("edited in staging\n")
    commit_all(world.clone, "alice", "Fix staging")
    job = merge_request(world, 2, merged_results)
    assert not job.ok
    assert "staging must be an exact copy of development" in job.output


def test_gitlab_verify_judges_the_merge_result_when_the_branch_is_behind(world: World) -> None:
    git(world.clone, "checkout", "-q", "-b", "behind")
    copy_dir(world.clone, DEV, STG)
    commit_all(world.clone, "alice", "Promote by hand")
    git(world.clone, "checkout", "-q", "main")
    (world.clone / "README.md").write_text("main moved on\n")
    commit_all(world.clone, "dan", "Docs")
    world.push("dan")
    git(world.clone, "checkout", "-q", "behind")
    job = merge_request(world, 3, merged_results=True)
    assert not job.ok
    assert "a merge commit may not change staging" in job.output


def manual_promotion(w: World, agent: str, target: str, actor: str,
                     pipeline_sha: str | None = None) -> Job:
    rules = gitlab_job("stageline-promote")["rules"]
    assert [r.get("when") for r in rules] == ["manual"]
    url = "https://stageline:glpat-test@gitlab.test:443/acme/org.git"
    # The push URL the job builds leads to the test server.
    git(w.tmp, "config", "--global", f"url.{w.server}.insteadOf", url)
    variables = {"CI_PIPELINE_SOURCE": "push", "CI_DEFAULT_BRANCH": "main",
                 "CI_COMMIT_BRANCH": "main", "CI_COMMIT_SHA": pipeline_sha or w.tip(),
                 "CI_SERVER_PROTOCOL": "https", "CI_SERVER_HOST": "gitlab.test",
                 "CI_SERVER_PORT": "443", "CI_PROJECT_PATH": "acme/org",
                 "STAGELINE_PUSH_TOKEN": "glpat-test", "GITLAB_USER_LOGIN": actor,
                 "AGENT": agent, "TARGET": target}
    return run_gitlab(w, "stageline-promote", variables, variables["CI_COMMIT_SHA"])


def test_gitlab_manual_promotion_promotes_as_the_member_and_the_bot_pushes(
        world: World) -> None:
    stale = world.tip()
    (world.clone / "README.md").write_text("main moved on\n")
    commit_all(world.clone, "dan", "Docs")
    world.push("dan")
    # The pipeline's own commit is older than main now: the job acts on main's tip.
    job = manual_promotion(world, "support-bot", "staging", actor="alice", pipeline_sha=stale)
    assert job.ok, job.output
    email, message = last_commit(world.server)
    assert email == "alice@test.example"
    assert "Stageline-Actor: alice" in message
    assert git(world.server, "rev-parse", "main^") == git(world.clone, "rev-parse", "HEAD")
    assert f'"pusher": "{BOT}"' in (world.server / "stageline-pushes.jsonl").read_text()


@pytest.mark.parametrize("agent", HOSTILE)
def test_gitlab_manual_promotion_variables_never_become_shell_text(world: World,
                                                                   agent: str) -> None:
    before = world.tip()
    job = manual_promotion(world, agent, "staging", actor="alice")
    assert not job.ok
    assert not (Path(os.environ["HOME"]) / "pwned").exists()
    assert world.tip() == before


def test_gitlab_export_job_exports_the_pushed_commit(world: World) -> None:
    job = gitlab_job("stageline-export")
    assert job["rules"][0]["changes"] == ["environments/production/**/*"]
    assert job["artifacts"] == {"paths": ["bundles/"]}
    sha = in_production(world)
    variables = {"CI_PIPELINE_SOURCE": "push", "CI_DEFAULT_BRANCH": "main",
                 "CI_COMMIT_BRANCH": "main", "CI_COMMIT_SHA": sha}
    result = run_gitlab(world, "stageline-export", variables, sha)
    assert result.ok, result.output
    bundles = {p.name: p.read_bytes()
               for p in sorted((result.workspace / "src/bundles").glob("*"))}
    assert bundles == expected_bundles(world, sha)


def test_gitlab_pages_job_builds_the_site_of_the_pushed_commit(world: World) -> None:
    job = gitlab_job("pages")
    assert job["artifacts"] == {"paths": ["public/"]}
    sha = in_production(world)
    variables = {"CI_PIPELINE_SOURCE": "push", "CI_DEFAULT_BRANCH": "main",
                 "CI_COMMIT_BRANCH": "main", "CI_COMMIT_SHA": sha}
    result = run_gitlab(world, "pages", variables, sha)
    assert result.ok, result.output
    board = (result.workspace / "src/public/index.html").read_text()
    assert sha[:12] in board and "agents/support-bot/index.html" in board
