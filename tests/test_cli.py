"""The command line as a tool: --version, --json shapes, --dry-run, colour, progress,
shell completion and the generated reference."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from conftest import commit_all, git, sl, tree_files

from stageline.actions import import_organization
from stageline.cli import cli
from stageline.docgen import JSON_SHAPES, WIDTH, context, render, takes_json, walk
from stageline.errors import BLOCKED, CHECK_FAILED, OK, PERMISSION_DENIED
from stageline.git.store import Store
from stageline.progress import Progress

ROOT = Path(__file__).resolve().parent.parent
DEV = "environments/development/support-bot"
STG = "environments/staging/support-bot"
PRD = "environments/production/support-bot"


def stageline(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
              tty: tuple[str, ...] = ()) -> tuple[int, str, str]:
    """Run ``python -m stageline`` as a separate process; the streams named in ``tty``
    ("stdout", "stderr") are a real pseudo-terminal, the others pipes."""
    full = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    full.update({"TERM": "xterm"}, **(env or {}))
    master, slave = os.openpty() if tty else (-1, -1)
    proc = subprocess.Popen([sys.executable, "-m", "stageline", *args], cwd=cwd, env=full,
                            stdin=subprocess.DEVNULL,
                            stdout=slave if "stdout" in tty else subprocess.PIPE,
                            stderr=slave if "stderr" in tty else subprocess.PIPE)
    on_tty = b""
    if tty:
        os.close(slave)
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every end of the terminal is closed, the process is done
                break
            if not data:
                break
            on_tty += data
        os.close(master)
    out, err = proc.communicate()
    text = on_tty.decode().replace("\r\n", "\n")
    return (proc.returncode, text if "stdout" in tty else out.decode(),
            text if "stderr" in tty else err.decode())


# -- --version, completion ------------------------------------------------------------


def test_version_needs_no_repository(tmp_path: Path) -> None:
    from importlib.metadata import version

    code, out, _err = stageline("--version", cwd=tmp_path)
    assert code == OK
    assert out.strip() == f"stageline, version {version('stageline')}"


@pytest.mark.parametrize(("shell", "marker"), [
    ("bash", "complete -o nosort -F _stageline_completion stageline"),
    ("zsh", "#compdef stageline"),
    ("fish", "complete --no-files --command stageline"),
])
def test_completion_scripts(shell: str, marker: str, tmp_path: Path) -> None:
    code, out, err = stageline(env={"_STAGELINE_COMPLETE": f"{shell}_source"}, cwd=tmp_path)
    assert code == OK, err
    assert marker in out
    assert "_STAGELINE_COMPLETE" in out


def test_completion_script_is_valid_bash(tmp_path: Path) -> None:
    code, out, _err = stageline(env={"_STAGELINE_COMPLETE": "bash_source"}, cwd=tmp_path)
    assert code == OK
    script = tmp_path / "complete.bash"
    script.write_text(out)
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def _complete(words: str, cwd: Path) -> list[str]:
    env = {"_STAGELINE_COMPLETE": "bash_complete", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split(" ")) - 1)}
    code, out, err = stageline(env=env, cwd=cwd)
    assert code == OK, err
    return [line.split(",", 1)[1] for line in out.splitlines() if line]


def test_completion_of_commands_options_and_agent_names(ready_org: Path) -> None:
    assert _complete("stageline pro", ready_org) == ["promote"]
    assert "--dry-run" in _complete("stageline promote support-bot --", ready_org)
    assert _complete("stageline promote sup", ready_org) == ["support-bot"]
    assert _complete(f"stageline --repo {ready_org} history s", ready_org.parent) == \
        ["support-bot"]
    # outside a repository there is nothing to offer, and no error
    assert _complete("stageline promote sup", ready_org.parent) == []


# -- --json ---------------------------------------------------------------------------


def test_every_command_with_json_has_a_documented_shape() -> None:
    with_json = {" ".join(p) for p in walk(cli) if p and takes_json(context(cli, p).command)}
    assert with_json == set(JSON_SHAPES)
    for name, shape in JSON_SHAPES.items():
        json.loads(shape), name  # noqa: B018 - each documented shape is valid JSON


def _same_keys(doc: Any, real: Any, where: str) -> None:
    """Every object of the documented shape has exactly the keys of the real output."""
    if isinstance(doc, dict) and isinstance(real, dict):
        assert set(real) == set(doc), f"{where}: {sorted(real)} != {sorted(doc)}"
        for key in doc:
            _same_keys(doc[key], real[key], f"{where}.{key}")
    elif isinstance(doc, list) and isinstance(real, list) and doc and real:
        _same_keys(doc[0], real[0], f"{where}[0]")


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """The bundled sample organization, with a little of everything to report."""
    repo = tmp_path / "acme"
    with Store.init(str(repo), "main") as store:
        import_organization(store, "refs/heads/main", tree_files(ROOT / "sample-repo"))
    return repo


def test_json_output_has_the_documented_shape(sample: Path) -> None:
    agent = "appointment-scheduler"
    outputs: dict[str, Any] = {}

    def run(name: str, *args: str, actor: str | None = None, code: int = OK) -> None:
        result = sl(sample, *args, "--json", actor=actor)
        assert result.code == code, result.err
        outputs[name] = json.loads(result.out)

    run("promote", "promote", agent, "--to", "staging", actor="alice")
    run("mark-ready", "mark-ready", agent, actor="quinn")
    sl(sample, "mark-ready", agent, actor="rita")  # the sample asks for two marks
    sl(sample, "promote", agent, "--to", "production", actor="olga")
    (sample / "environments/development" / agent / "agent.yaml").write_text(
        (sample / "environments/development" / agent / "agent.yaml").read_text()
        .replace("gpt-4o-mini", "gpt-4o"))
    commit_all(sample, "alice", "Bigger model")
    sl(sample, "promote", agent, "--to", "staging", actor="alice")
    sl(sample, "mark-ready", agent, actor="quinn")
    sl(sample, "mark-ready", agent, actor="rita")
    sl(sample, "promote", agent, "--to", "production", actor="olga")
    run("rollback", "rollback", agent, actor="olga")
    run("agent new", "agent", "new", "fresh-bot", actor="alice")
    (sample / "environments/development/fresh-bot/agent.yaml").write_text("name: fresh-bot\n")
    commit_all(sample, "alice", "Break fresh-bot")
    run("validate", "validate", "fresh-bot", code=CHECK_FAILED)
    run("test", "test", agent, "--env", "staging")
    run("status", "status")
    run("list", "list", actor="quinn")
    run("history", "history", agent)
    run("diff", "diff", agent, "production", "staging")
    run("log", "log")
    run("export", "export", "--out", str(sample.parent / "bundles"))
    (sample / STG.replace("support-bot", agent) / "notes.md").write_text("by hand\n")
    commit_all(sample, "alice", "Edit staging by hand")
    run("verify", "verify", "--range", "HEAD~1..HEAD", "--pusher", "alice", code=CHECK_FAILED)
    root = git(sample, "rev-list", "--max-parents=0", "HEAD")
    run("audit", "audit", "--from", root, code=CHECK_FAILED)
    run("keys list", "keys", "list")
    run("keys check", "keys", "check", actor="alice", code=BLOCKED)
    result = sl(None, "init", str(sample.parent / "new-org"), "--org", "new", "--admin", "olga",
                "--admin-email", "olga@new.test", "--json")
    assert result.code == OK, result.err
    outputs["init"] = json.loads(result.out)

    assert set(outputs) == set(JSON_SHAPES)
    for name, real in outputs.items():
        _same_keys(json.loads(JSON_SHAPES[name]), real, name)
    # the lists the comparison walked into are not empty
    assert outputs["validate"]["agents"][0]["findings"]
    assert outputs["test"]["tests"] and outputs["verify"]["violations"]
    assert outputs["diff"]["files"][0]["keys"]
    assert outputs["export"]["agents"]
    assert outputs["audit"]["violations"][0]["commit"] == git(sample, "rev-parse", "HEAD")
    assert outputs["promote"]["commit"] == git(sample, "rev-list", "--reverse",
                                               "HEAD").split()[1]
    assert outputs["init"]["commit"] == git(sample.parent / "new-org", "rev-parse", "HEAD")


def test_action_json_when_nothing_to_do(staged_org: Path) -> None:
    result = sl(staged_org, "promote", "support-bot", "--to", "staging", "--json", actor="alice")
    assert result.code == OK
    data = json.loads(result.out)
    assert data["commit"] is None and data["would_commit"] is None
    assert data["summary"].endswith("nothing to do.")


def test_a_refused_action_prints_nothing_on_stdout(org: Path) -> None:
    result = sl(org, "mark-ready", "support-bot", "--json", actor="quinn")
    assert result.code == BLOCKED
    assert result.out == ""
    assert result.err.startswith("stageline: support-bot is not in staging")


# -- --dry-run --------------------------------------------------------------------------


def snapshot(repo: Path) -> dict[str, Any]:
    """Everything a dry run must leave alone: refs and reflogs, the index, the working
    tree, and the pending-update journal."""
    git_dir = Path(git(repo, "rev-parse", "--absolute-git-dir"))
    logs = git_dir / "logs"
    return {
        "refs": git(repo, "for-each-ref", "--format=%(refname) %(objectname)"),
        "head": (git_dir / "HEAD").read_text(),
        "reflogs": {p.relative_to(logs).as_posix(): p.read_bytes()
                    for p in logs.rglob("*") if p.is_file()},
        "index": hashlib.sha256((git_dir / "index").read_bytes()).hexdigest(),
        # --no-optional-locks: looking must not refresh the index it compares
        "status": git(repo, "--no-optional-locks", "status", "--porcelain",
                      "--untracked-files=all"),
        "files": {p.relative_to(repo).as_posix(): p.read_bytes()
                  for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts},
        "journal": (git_dir / "stageline-pending.json").exists(),
    }


def _dry_then_real(repo: Path, actor: str, *args: str) -> None:
    """The dry run writes nothing, and shows exactly the commit the real run makes."""
    before = snapshot(repo)
    head = git(repo, "rev-parse", "HEAD")
    dry = sl(repo, *args, "--dry-run", "--json", actor=actor)
    assert dry.code == OK, dry.err
    assert snapshot(repo) == before
    shown = json.loads(dry.out)
    assert shown["dry_run"] is True and shown["commit"] is None
    plan = shown["would_commit"]
    human = sl(repo, *args, "--dry-run", actor=actor)
    assert human.code == OK and snapshot(repo) == before
    assert human.out.startswith("dry run: would commit")
    assert f"parent  {head}" in human.out
    if args[0] != "mark-ready":  # an approval records the second it is made
        assert f"tree    {plan['tree']}" in human.out
    assert "    Stageline-Actor: " + actor in human.out

    real = sl(repo, *args, "--json", actor=actor)
    assert real.code == OK, real.err
    made = json.loads(real.out)["commit"]
    assert made == git(repo, "rev-parse", "HEAD")
    assert plan["parent"] == git(repo, "rev-parse", f"{made}~1") == head
    raw = subprocess.run(["git", "cat-file", "commit", made], cwd=repo, capture_output=True,
                         text=True, check=True).stdout
    assert plan["message"] == raw.split("\n\n", 1)[1]
    author = git(repo, "log", "-1", "--format=%an <%ae>", made)
    assert f"{plan['author']['name']} <{plan['author']['email']}>" == author
    assert f"author  {author}" in human.out
    status = {"A": "added", "M": "modified", "D": "deleted"}
    changed = [{"path": line.split("\t")[1], "status": status[line[0]]} for line in
               git(repo, "diff-tree", "-r", "--name-status", "--no-commit-id", made)
               .splitlines()]
    assert plan["changes"] == changed
    if args[0] != "mark-ready":  # an approval records the time it is made
        assert plan["tree"] == git(repo, "rev-parse", f"{made}^{{tree}}")


def test_dry_run_writes_nothing_and_shows_the_real_commit(org: Path) -> None:
    _dry_then_real(org, "alice", "agent", "new", "fresh-bot")
    _dry_then_real(org, "alice", "promote", "support-bot", "--to", "staging")
    _dry_then_real(org, "quinn", "mark-ready", "support-bot")
    _dry_then_real(org, "olga", "promote", "support-bot", "--to", "production")
    first = git(org, "rev-parse", "HEAD")
    (org / DEV / "prompts/system.md").write_text("v2\n")
    commit_all(org, "alice", "v2")
    assert sl(org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    assert sl(org, "mark-ready", "support-bot", actor="quinn").code == OK
    assert sl(org, "promote", "support-bot", "--to", "production", actor="olga").code == OK
    _dry_then_real(org, "olga", "rollback", "support-bot", "--to", first)


def test_dry_run_in_a_bare_repository(bare_org: Path) -> None:
    refs = git(bare_org, "for-each-ref")
    result = sl(bare_org, "promote", "support-bot", "--to", "staging", "--dry-run",
                actor="alice")
    assert result.code == OK, result.err
    assert f"A  {STG}/agent.yaml" in result.out
    assert git(bare_org, "for-each-ref") == refs


def test_dry_run_refuses_as_the_real_command_does(staged_org: Path) -> None:
    before = snapshot(staged_org)
    denied = sl(staged_org, "mark-ready", "support-bot", "--dry-run", actor="alice")
    assert denied.code == PERMISSION_DENIED
    blocked = sl(staged_org, "promote", "support-bot", "--to", "production", "--dry-run",
                 actor="olga")
    assert blocked.code == BLOCKED
    assert "has not been marked Ready for Production" in blocked.err
    assert snapshot(staged_org) == before
    # uncommitted work in a path it would replace
    (staged_org / DEV / "prompts/system.md").write_text("v2\n")
    commit_all(staged_org, "alice", "v2")
    (staged_org / STG / "scratch.txt").write_text("mine\n")
    before = snapshot(staged_org)
    dirty = sl(staged_org, "promote", "support-bot", "--to", "staging", "--dry-run",
               actor="alice")
    assert dirty.code == BLOCKED
    assert dirty.err == f"stageline: uncommitted changes in {STG}/scratch.txt would be " \
                        "replaced; commit, stash or remove them first.\n"
    assert snapshot(staged_org) == before
    assert sl(staged_org, "promote", "support-bot", "--to", "staging",
              actor="alice").err == dirty.err


def test_dry_run_does_not_refresh_the_index(staged_org: Path) -> None:
    """Checking for uncommitted changes must not rewrite the index, as a plain
    'git status' does when it finds a file touched but unchanged."""
    (staged_org / DEV / "prompts/system.md").write_text("v2\n")
    commit_all(staged_org, "alice", "v2")
    touched = staged_org / STG / "prompts/system.md"
    later = touched.stat().st_mtime + 3600
    os.utime(touched, (later, later))
    before = snapshot(staged_org)
    result = sl(staged_org, "promote", "support-bot", "--to", "staging", "--dry-run",
                actor="alice")
    assert result.code == OK, result.err
    assert snapshot(staged_org) == before


def test_dry_run_nothing_to_do(staged_org: Path) -> None:
    result = sl(staged_org, "promote", "support-bot", "--to", "staging", "--dry-run",
                actor="alice")
    assert result.code == OK
    assert result.out == "dry run: staging already equals development for support-bot; " \
                         "nothing to do.\n"


# -- colour -----------------------------------------------------------------------------

ESC = "\x1b["


def test_status_is_coloured_on_a_terminal_only(ready_org: Path) -> None:
    code, out, _ = stageline("--repo", str(ready_org), "status", "-o", "wide", tty=("stdout",))
    assert code == OK
    assert f"{ESC}1mAGENT" in out  # bold header
    assert f"{ESC}32myes" in out  # in step: green
    assert f"{ESC}33mno" in out  # waiting: yellow
    code, plain, _ = stageline("--repo", str(ready_org), "status", "-o", "wide")
    assert code == OK and ESC not in plain
    # same text, colour aside
    assert click.unstyle(out) == plain
    code, out, _ = stageline("--repo", str(ready_org), "status", "-o", "wide", tty=("stdout",),
                             env={"NO_COLOR": "1"})
    assert code == OK and ESC not in out and out == plain
    code, out, _ = stageline("--repo", str(ready_org), "status", "-o", "wide", tty=("stdout",),
                             env={"TERM": "dumb"})
    assert ESC not in out


def test_diff_is_coloured_on_a_terminal_only(staged_org: Path) -> None:
    (staged_org / DEV / "prompts/system.md").write_text("You answer questions.\n")
    commit_all(staged_org, "alice", "Shorter prompt")
    args = ("--repo", str(staged_org), "diff", "support-bot")
    code, out, _ = stageline(*args, tty=("stdout",))
    assert code == OK
    assert f"{ESC}32m+You answer questions." in out
    assert f"{ESC}31m-You answer billing questions politely." in out
    assert f"{ESC}36m@@" in out
    assert ESC not in stageline(*args)[1]
    assert ESC not in stageline(*args, tty=("stdout",), env={"NO_COLOR": "1"})[1]


def test_errors_are_coloured_on_a_terminal_only(org: Path) -> None:
    args = ("--repo", str(org), "--as", "quinn", "promote", "support-bot", "--to", "staging")
    code, _, err = stageline(*args, tty=("stderr",))
    assert code == PERMISSION_DENIED
    assert err.startswith(f"{ESC}31m{ESC}1mstageline:{ESC}0m quinn (qa) may not promote")
    code, _, err = stageline(*args, tty=("stderr",), env={"NO_COLOR": "1"})
    assert err.startswith("stageline: quinn (qa) may not promote")
    code, _, err = stageline(*args)
    assert err.startswith("stageline: quinn (qa) may not promote")
    # stdout on a terminal does not colour what goes to a piped stderr
    code, _, err = stageline(*args, tty=("stdout",))
    assert ESC not in err


# -- progress ---------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_and_erases_itself() -> None:
    screen = Terminal()
    with Progress(screen) as progress:
        assert list(progress.track(["a", "b", "c"], "exporting agents")) == ["a", "b", "c"]
    text = screen.getvalue()
    assert "\rexporting agents: 0/3" in text
    assert "exporting agents: 3/3" in text  # the last count is always shown
    assert text.endswith("\r" + " " * len("exporting agents: 3/3") + "\r")


def test_progress_is_silent_off_a_terminal() -> None:
    pipe = io.StringIO()
    with Progress(pipe) as progress:
        progress.phase("reading commits")
        for _ in progress.track(range(1000), "checking commits"):
            pass
    assert pipe.getvalue() == ""


def test_verify_shows_progress_on_a_terminal_only(staged_org: Path) -> None:
    base = git(staged_org, "rev-list", "--max-parents=0", "HEAD")
    args = ("--repo", str(staged_org), "verify", "--range", f"{base}..HEAD", "--pusher",
            "alice")
    code, out, err = stageline(*args, tty=("stderr",))
    assert code == OK, err
    assert "checking commits: 1/1" in err
    assert err.endswith("\r")  # the line is erased at the end
    assert "no violations" in out
    code, out, err = stageline(*args)
    assert code == OK and err == ""
    assert "no violations" in out


# -- the generated reference ------------------------------------------------------------


def test_cli_reference_is_current() -> None:
    committed = (ROOT / "docs/cli.md").read_text(encoding="utf-8")
    assert committed == render(), (
        "docs/cli.md is out of date with the commands; regenerate it with "
        "'python -m stageline.docgen --output docs/cli.md'")


def test_cli_reference_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    narrow = render()
    monkeypatch.setenv("COLUMNS", "200")
    assert render() == narrow
    longest = max(len(line) for block in narrow.split("```text")[1:]
                  for line in block.split("```")[0].splitlines())
    assert longest <= WIDTH


def test_cli_reference_covers_every_command() -> None:
    text = render()
    for path in walk(cli):
        name = " ".join(("stageline", *path))
        assert f"## {name}\n" in text
        assert f"Usage: {name} " in text


def test_json_is_indented_on_a_terminal_and_one_line_in_a_pipe(ready_org: Path) -> None:
    code, piped, _ = stageline("--repo", str(ready_org), "status", "--json")
    assert code == OK
    data = json.loads(piped)
    assert piped == json.dumps(data, separators=(",", ":")) + "\n"
    code, shown, _ = stageline("--repo", str(ready_org), "status", "--json", tty=("stdout",))
    assert code == OK
    assert shown == json.dumps(data, indent=2) + "\n"
    assert data["agents"]
