"""The ``stageline`` command: parse, call one function, print. No rules here."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click

from stageline import __version__
from stageline.errors import REPOSITORY, USAGE, StagelineError


@dataclass
class Globals:
    repo: str | None
    actor: str | None


def _emit_json(data: Any) -> None:
    from stageline.jsonout import dumps  # json.dumps(data, indent=2), faster

    click.echo(dumps(data))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--repo", metavar="PATH", help="The organization repository (default: here).")
@click.option("--as", "actor", metavar="MEMBER",
              help="Act as this member (default: $STAGELINE_ACTOR, else git's user.email).")
@click.version_option(__version__, "--version", prog_name="stageline")
@click.pass_context
def cli(ctx: click.Context, repo: str | None, actor: str | None) -> None:
    """Development → staging → production for AI agents, on Git."""
    ctx.obj = Globals(repo, actor)


def _workspace_and_actor(g: Globals) -> tuple[Any, Any]:
    from stageline.actions import open_workspace, resolve_actor

    ws = open_workspace(g.repo)
    return ws, resolve_actor(ws, g.actor)


def _report(outcome: Any) -> None:
    if outcome.commit:
        click.echo(f"{outcome.summary} ({outcome.commit[:12]})")
    else:
        click.echo(outcome.summary)


@cli.command()
@click.argument("path", default=".", type=click.Path(file_okay=False))
@click.option("--org", required=True, help="The organization's name.")
@click.option("--admin", required=True, metavar="ID", help="The first org-admin's login name.")
@click.option("--admin-email", required=True, metavar="EMAIL")
@click.option("--admin-name", metavar="NAME")
@click.option("--branch", default="main", show_default=True, help="The protected branch.")
def init(path: str, org: str, admin: str, admin_email: str, admin_name: str | None,
         branch: str) -> None:
    """Create a new organization repository."""
    from stageline.actions import init_organization

    _report(init_organization(path, org, admin, admin_email, admin_name, branch))


@cli.group()
def agent() -> None:
    """Create agents."""


@agent.command("new")
@click.argument("name")
@click.pass_obj
def agent_new(g: Globals, name: str) -> None:
    """Scaffold the smallest valid agent in development and commit it."""
    from stageline.actions import new_agent

    ws, actor = _workspace_and_actor(g)
    _report(new_agent(ws, actor, name))


@cli.command()
@click.argument("agent")
@click.option("--to", "target", required=True, type=click.Choice(["staging", "production"]))
@click.pass_obj
def promote(g: Globals, agent: str, target: str) -> None:
    """Copy development over staging, or QA-approved staging over production."""
    from stageline.actions import promote as run

    ws, actor = _workspace_and_actor(g)
    _report(run(ws, actor, agent, target))


@cli.command("mark-ready")
@click.argument("agent")
@click.pass_obj
def mark_ready(g: Globals, agent: str) -> None:
    """Mark the agent's current staging tree Ready for Production (QA)."""
    from stageline.actions import mark_ready as run

    ws, actor = _workspace_and_actor(g)
    _report(run(ws, actor, agent))


def _short(tree: str | None) -> str:
    return tree[:7] if tree else "—"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _tests(status: Any) -> str:
    """The approval's conversation-test summary: QA sees when an agent has none."""
    if not status.ready or status.tests_passed is None:
        return "—"
    return f"{status.tests_passed}-passed" if status.tests_passed else "none"


@cli.command()
@click.argument("agent", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(g: Globals, agent: str | None, as_json: bool) -> None:
    """Each agent's tree in every environment, QA status, and who acted last."""
    from stageline.actions import open_workspace
    from stageline.inventory import collect
    from stageline.layout import check_agent_name

    if agent is not None:
        check_agent_name(agent)
    ws = open_workspace(g.repo)
    statuses = collect(ws, agent)
    if agent is not None and not statuses:
        from stageline.errors import Blocked

        raise Blocked(f"{agent} is in no environment; create it with 'stageline agent new'.")
    if as_json:
        _emit_json({"agents": [s.to_json() for s in statuses]})
        return
    header = ("AGENT", "DEVELOPMENT", "STAGING", "PRODUCTION", "STG=DEV", "PROD=STG", "READY",
              "TESTS", "LAST (DEV/STG/PROD)")
    rows = [header]
    for s in statuses:
        last = "/".join((s.last[e].actor or "?") if s.last[e] else "—"  # type: ignore[union-attr]
                        for e in ("development", "staging", "production"))
        rows.append((s.name, _short(s.trees["development"]), _short(s.trees["staging"]),
                     _short(s.trees["production"]), _yes(s.staging_equals_development),
                     _yes(s.production_equals_staging), _yes(s.ready), _tests(s), last))
    _print_table(rows)


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    if len(rows) == 1:
        click.echo("no agents yet; create one with 'stageline agent new NAME'.")
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_agents(g: Globals, as_json: bool) -> None:
    """The agents your role sees (QA: those in staging, with their QA status)."""
    from stageline.inventory import collect, visible_agents

    ws, actor = _workspace_and_actor(g)
    agents = visible_agents(collect(ws, with_last=False), actor)
    if as_json:
        _emit_json({"agents": agents})
        return
    rows = [("AGENT", "ENVIRONMENTS", "READY")]
    for item in agents:
        ready = item.get("ready_for_production")
        rows.append((item["name"], ", ".join(item["environments"]),
                     "—" if ready is None else _yes(ready)))
    _print_table(rows)


@cli.command()
@click.argument("agent")
@click.option("--to", "rev", metavar="REV",
              help="An earlier commit of the branch (default: the previous production version).")
@click.pass_obj
def rollback(g: Globals, agent: str, rev: str | None) -> None:
    """Restore production to an earlier production state (org-admin)."""
    from stageline.actions import rollback as run

    ws, actor = _workspace_and_actor(g)
    _report(run(ws, actor, agent, rev))


@cli.command()
@click.argument("agent")
@click.option("--env", "env", default="production", show_default=True,
              type=click.Choice(["development", "staging", "production"]))
@click.option("--limit", type=int, metavar="N", help="Show the N newest versions only.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def history(g: Globals, agent: str, env: str, limit: int | None, as_json: bool) -> None:
    """The versions of an agent's environment, newest first."""
    from stageline.actions import open_workspace
    from stageline.history import history as versions_of
    from stageline.layout import check_agent_name

    check_agent_name(agent)
    versions = versions_of(open_workspace(g.repo), agent, env, limit)
    if as_json:
        _emit_json({"agent": agent, "environment": env,
                    "versions": [v.to_json() for v in versions]})
        return
    rows = [("COMMIT", "TREE", "ACTION", "ACTOR", "TIME")]
    rows += [(v.commit[:12], _short(v.tree), v.action, v.actor or "?", v.time)
             for v in versions]
    if len(rows) == 1:
        click.echo(f"{agent} has never been in {env}.")
        return
    _print_table(rows)


@cli.command()
@click.argument("agent")
@click.argument("old", metavar="[FROM]", required=False)
@click.argument("new", metavar="[TO]", required=False)
@click.option("--stat", is_flag=True, help="Only the changed files and their line counts.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when there are differences.")
@click.pass_context
def diff(ctx: click.Context, agent: str, old: str | None, new: str | None, stat: bool,
         as_json: bool, exit_code: bool) -> None:
    """What differs between two environments, or ENV@REV states (default: staging →
    development, what a promotion would bring)."""
    from stageline.actions import open_workspace
    from stageline.diffing import compare, render
    from stageline.layout import check_agent_name

    check_agent_name(agent)
    comparison = compare(open_workspace(ctx.obj.repo), agent, old, new)
    if as_json:
        _emit_json(comparison.to_json())
    else:
        for line in render(comparison, stat):
            click.echo(line)
    if exit_code and not comparison.identical:
        ctx.exit(1)


@cli.command()
@click.option("--agent", metavar="AGENT", help="Only this agent's events.")
@click.option("--actor", metavar="MEMBER", help="Only this member's actions.")
@click.option("--action", metavar="ACTION", help="Only this action (promote-to-staging, ...).")
@click.option("--since", metavar="DATE", help="Only events at or after DATE (ISO 8601).")
@click.option("--push-log", type=click.Path(dir_okay=False), metavar="FILE",
              help="The server's stageline-pushes.jsonl (default: the repository's own, if any).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table",
              help="jsonl: one JSON object per line, for log systems.")
@click.pass_obj
def log(g: Globals, agent: str | None, actor: str | None, action: str | None,
        since: str | None, push_log: str | None, as_json: bool, fmt: str) -> None:
    """The organization's audit log: promotions, approvals, production pushes, rollbacks
    and policy changes, newest first."""
    import json
    from pathlib import Path

    from stageline.actions import open_workspace
    from stageline.history import audit_log, parse_since
    from stageline.layout import PUSH_LOG, check_agent_name

    if agent is not None:
        check_agent_name(agent)
    ws = open_workspace(g.repo)
    log_file = Path(push_log) if push_log else ws.store.git_dir / PUSH_LOG
    events = audit_log(ws, agent, actor, action, parse_since(since) if since else None,
                       log_file if push_log or log_file.exists() else None)
    if as_json:
        _emit_json({"events": [e.to_json() for e in events]})
    elif fmt == "jsonl":
        encode = json.JSONEncoder(sort_keys=True).encode
        if events:  # one write: thousands of lines
            click.echo("\n".join(encode(e.to_json()) for e in events))
    else:
        rows = [("TIME", "ACTION", "AGENT", "ACTOR", "PUSHER", "TREE", "COMMIT")]
        rows += [(e.time, e.action, e.agent or "—", e.actor or "?", e.pusher or "—",
                  _short(e.tree), e.commit[:12]) for e in events]
        if len(rows) == 1:
            click.echo("no events.")
            return
        _print_table(rows)


_ENV = click.option("--env", "env", default="development", show_default=True,
                    type=click.Choice(["development", "staging", "production"]))


@cli.command()
@click.argument("agent", required=False)
@_ENV
@click.option("--worktree", is_flag=True, help="Check the files on disk, not the last commit.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def validate(g: Globals, agent: str | None, env: str, worktree: bool, as_json: bool) -> None:
    """Check agents: schema, references, secrets, settings; exit 1 on errors."""
    from stageline.actions import agent_sources, findings, open_workspace
    from stageline.errors import CheckFailed

    ws = open_workspace(g.repo)
    results = [(name, findings(ws, name, source, env, worktree))
               for name, source in agent_sources(ws, env, agent, worktree)]
    errors = sum(1 for _n, fs in results for f in fs if f.severity == "error")
    warnings = sum(1 for _n, fs in results for f in fs if f.severity == "warning")
    if as_json:
        _emit_json({"environment": env, "agents": [
            {"name": name, "valid": not any(f.severity == "error" for f in fs),
             "findings": [f.to_json(name) for f in fs]} for name, fs in results]})
    else:
        for name, fs in results:
            for f in fs:
                click.echo(f.text(name))
        click.echo(f"{len(results)} agent(s) in {env}: {errors} error(s), "
                   f"{warnings} warning(s).")
    if errors:
        raise CheckFailed(f"{errors} error(s) in {env}; fix them before promoting.")


@cli.command("test")
@click.argument("agent")
@_ENV
@click.option("--worktree", is_flag=True, help="Test the files on disk, not the last commit.")
@click.option("--junit", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write JUnit XML for CI.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def test_agent(g: Globals, agent: str, env: str, worktree: bool, junit: str | None,
               as_json: bool) -> None:
    """Run the agent's conversation tests (tests/*.yaml) against its flows; exit 1 on
    failure."""
    from stageline.actions import agent_sources, conversation_tests, open_workspace
    from stageline.conversation import junit_xml, render_failure
    from stageline.errors import CheckFailed

    ws = open_workspace(g.repo)
    ((name, source),) = agent_sources(ws, env, agent, worktree)
    results = conversation_tests(source)
    failed = [r for r in results if not r.passed]
    if junit:
        with open(junit, "w", encoding="utf-8") as fh:
            fh.write(junit_xml(name, results))
    if as_json:
        _emit_json({"agent": name, "environment": env, "passed": len(results) - len(failed),
                    "failed": len(failed), "tests": [
                        {"name": r.name, "file": r.file, "passed": r.passed,
                         "failures": list(r.failures), "transcript": list(r.transcript)}
                        for r in results]})
    else:
        for r in results:
            click.echo(f"{'PASS' if r.passed else 'FAIL'}  {r.file}  {r.name}")
        for r in failed:
            click.echo("")
            for line in render_failure(r):
                click.echo(line)
        if not results:
            click.echo(f"{name} has no conversation tests in {env} (tests/*.yaml).")
        else:
            click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise CheckFailed(f"{len(failed)} conversation test(s) of {name} failed in {env}.")


@cli.command()
@click.argument("kind", type=click.Choice(["agent", "flow"]), default="agent")
def schema(kind: str) -> None:
    """Print the JSON Schema of agent.yaml (or of flow files)."""
    from stageline.validation import schema_text

    click.echo(schema_text(kind).rstrip("\n"))


@cli.group()
def hook() -> None:
    """The server side: the pre-receive hook, the push log, installing them."""


@hook.command("pre-receive")
@click.option("--chain", metavar="PATH", help="A hook to run first with the same input.")
@click.pass_context
def hook_pre_receive(ctx: click.Context, chain: str | None) -> None:
    """Judge a push (stdin: '<old> <new> <ref>' lines); exit 1 rejects it."""
    from stageline.hook import main as hook_main

    ctx.exit(hook_main("pre-receive", ["--chain", chain] if chain else []))


@hook.command("post-receive")
@click.option("--chain", metavar="PATH", help="A hook to run first with the same input.")
@click.pass_context
def hook_post_receive(ctx: click.Context, chain: str | None) -> None:
    """Record accepted updates of protected branches in stageline-pushes.jsonl."""
    from stageline.hook import main as hook_main

    ctx.exit(hook_main("post-receive", ["--chain", chain] if chain else []))


_LAYOUT = click.option("--layout", type=click.Choice(["plain", "gitlab", "gitea"]),
                       default="plain", show_default=True,
                       help="Where the server looks for hooks.")


@hook.command("install")
@click.argument("server_repo", type=click.Path(file_okay=False))
@_LAYOUT
def hook_install(server_repo: str, layout: str) -> None:
    """Install the pre-receive and post-receive shims into a (bare) server repository."""
    from stageline.install import install

    click.echo(install(server_repo, layout))


@hook.command("uninstall")
@click.argument("server_repo", type=click.Path(file_okay=False))
@_LAYOUT
def hook_uninstall(server_repo: str, layout: str) -> None:
    """Remove stageline's shims (only its own files; a chained hook is put back)."""
    from stageline.install import uninstall

    click.echo(uninstall(server_repo, layout))


@cli.command()
@click.option("--range", "range_", required=True, metavar="OLD..NEW",
              help="The commits to check, as an update from OLD to NEW.")
@click.option("--ref", metavar="REF", help="The branch updated (default: the first protected).")
@click.option("--pusher", metavar="ID", help="Also check this member as the pusher.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def verify(g: Globals, range_: str, ref: str | None, pusher: str | None, as_json: bool) -> None:
    """The server's rules over a range of commits, for CI checks; exit 1 on violations."""
    from stageline.errors import CheckFailed, UsageError
    from stageline.gitstore import Store
    from stageline.hook import verify as run_verify

    old, sep, new = range_.partition("..")
    if not sep or not old or not new or new.startswith("."):
        raise UsageError("--range takes OLD..NEW, two commits.")
    with Store.open(g.repo) as store:
        ref, violations = run_verify(store, old, new, ref, pusher)
    if as_json:
        _emit_json({"ref": ref, "range": range_, "pusher_checked": pusher is not None,
                    "violations": [{"commit": v.commit, "path": v.path, "rule": v.rule,
                                    "fix": v.fix} for v in violations]})
    else:
        if pusher is None:
            click.echo("stageline: checking commit authors only (no --pusher given).", err=True)
        for v in violations:
            click.echo(v.line())
        if not violations:
            click.echo(f"{range_}: no violations as an update of {ref}.")
    if violations:
        raise CheckFailed(f"{len(violations)} violation(s) in {range_}.")


@cli.command()
@click.option("--keep", is_flag=True, help="Keep the demo's directory and print where it is.")
def demo(keep: bool) -> None:
    """Play the whole workflow on a copy of the bundled sample organization."""
    from stageline.demo import run_demo

    run_demo(keep=keep, echo=click.echo)


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(argv))


def run(argv: list[str] | None = None, echo_err: Callable[[str], None] | None = None) -> int:
    """Run the CLI and return its exit code; every failure is one sentence on stderr."""
    err = echo_err or (lambda text: click.echo(text, err=True))
    try:
        result = cli.main(args=argv, prog_name="stageline", standalone_mode=False)
        if isinstance(result, int):  # ctx.exit(code): click returns it instead of raising
            return result
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        err("stageline: aborted.")
        return 130
    except click.ClickException as exc:
        where = exc.ctx.command_path if isinstance(exc, click.UsageError) and exc.ctx else None
        hint = f" (see '{where} --help')" if where else ""
        err(f"stageline: {exc.format_message().rstrip('.')}{hint}.")
        return USAGE if isinstance(exc, click.UsageError) else int(exc.exit_code)
    except StagelineError as exc:
        err(f"stageline: {exc.message}")
        return exc.code
    except KeyboardInterrupt:
        err("stageline: interrupted.")
        return 130
    except Exception as exc:  # noqa: BLE001 - no traceback reaches a user
        if os.environ.get("STAGELINE_DEBUG"):
            raise
        err(f"stageline: unexpected error ({type(exc).__name__}: {exc}); "
            "set STAGELINE_DEBUG=1 to see where, and report it.")
        return REPOSITORY
    return 0
