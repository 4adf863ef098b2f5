"""The commands that read: status, list, history, diff, log, validate, test, schema."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from stageline.cli.base import (
    ENV_OPTION,
    Globals,
    cli,
    complete_agents,
    emit_json,
    paint,
    print_table,
    short,
    yes,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from stageline.inventory import AgentStatus
    from stageline.workspace import Workspace


def _marks(status: AgentStatus) -> str:
    """QA's marks of the current staging tree against the policy's: "1 of 2 (quinn)"."""
    named = f" ({', '.join(status.markers)})" if status.markers else ""
    return f"{len(status.markers)} of {status.required}{named}"


def _tests(status: AgentStatus) -> str:
    """The approval's conversation-test summary: QA sees when an agent has none."""
    if not status.ready or status.tests_passed is None:
        return "—"
    return f"{status.tests_passed}-passed" if status.tests_passed else "none"


_FETCH_OPTION = click.option("--fetch", is_flag=True,
                             help="Fetch the branch's upstream first, so that the line above "
                                  "the table is current.")


def _open_and_fetch(g: Globals, fetch: bool) -> Workspace:
    from stageline import remote
    from stageline.workspace import open_workspace

    ws = open_workspace(g.repo)
    if fetch:
        remote.fetch(ws)
    return ws


@cli.command()
@click.argument("agent", required=False, shell_complete=complete_agents)
@click.option("-o", "--output", "output", type=click.Choice(["table", "wide"]), default="table",
              show_default=True,
              help="wide: every column (equality, tests, who acted last, what blocks "
                   "production), wider than 80 columns.")
@_FETCH_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(g: Globals, agent: str | None, output: str, fetch: bool, as_json: bool) -> None:
    """Where the branch stands against its upstream, then each agent's tree in every
    environment and its QA status; what blocks production is listed below the table.

    \b
    Examples:
      stageline status --fetch
      stageline status support-bot -o wide
      stageline status --json
    """
    from stageline import remote
    from stageline.inventory import collect

    ws = _open_and_fetch(g, fetch)
    if agent is not None:
        ws.require_agent(agent)
    statuses = collect(ws, agent)
    standing = remote.standing(ws)
    if as_json:
        emit_json({"branch": standing.to_json(), "agents": [s.to_json() for s in statuses]})
        return
    click.echo(standing.line())
    if output == "wide":
        _wide_status(statuses)
        return
    rows = [("AGENT", "DEV", "STAGING", "PROD", "READY", "MARKS")]
    rows += [(s.name, short(s.trees["development"]), short(s.trees["staging"]),
              short(s.trees["production"]), yes(s.ready),
              f"{len(s.markers)} of {s.required}") for s in statuses]
    print_table(rows, lambda col, cell: {"yes": "green", "no": "yellow"}.get(cell)
                if col == 4 else None)
    for s in statuses:
        if s.blocked_by:
            click.echo(f"{s.name} cannot go to production now: {'; '.join(s.blocked_by)}.")


def _wide_status(statuses: Sequence[AgentStatus]) -> None:
    header = ("AGENT", "DEVELOPMENT", "STAGING", "PRODUCTION", "STG=DEV", "PROD=STG", "READY",
              "MARKS", "TESTS", "LAST (DEV/STG/PROD)", "BLOCKED")
    rows = [header]
    for s in statuses:
        last = "/".join((s.last[e].actor or "?") if s.last[e] else "—"  # type: ignore[union-attr]
                        for e in ("development", "staging", "production"))
        rows.append((s.name, short(s.trees["development"]), short(s.trees["staging"]),
                     short(s.trees["production"]), yes(s.staging_equals_development),
                     yes(s.production_equals_staging), yes(s.ready),
                     _marks(s), _tests(s), last,
                     "; ".join(s.blocked_by) or "—"))
    # Green where the line is in step, yellow where something waits to move along it.
    print_table(rows, lambda col, cell: {"yes": "green", "no": "yellow"}.get(cell)
                if 4 <= col <= 6 else None)


@cli.command("list")
@_FETCH_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_agents(g: Globals, fetch: bool, as_json: bool) -> None:
    """The agents your role sees (QA: those in staging, with their QA status)."""
    from stageline import remote
    from stageline.inventory import collect, visible_agents
    from stageline.workspace import resolve_actor

    ws = _open_and_fetch(g, fetch)
    actor = resolve_actor(ws, g.actor)
    agents = visible_agents(collect(ws, with_last=False), actor)
    if as_json:
        emit_json({"agents": agents})
        return
    click.echo(remote.standing(ws).line())
    rows = [("AGENT", "ENVIRONMENTS", "READY", "MARKS")]
    for item in agents:
        ready = item.get("ready_for_production")
        marks = item.get("approvals")
        rows.append((item["name"], ", ".join(item["environments"]),
                     "—" if ready is None else yes(ready),
                     "—" if marks is None else f"{marks['marks']} of {marks['required']}"
                     + (f" ({', '.join(marks['by'])})" if marks["by"] else "")))
    print_table(rows)


@cli.command()
@click.argument("agent", shell_complete=complete_agents)
@click.option("--env", "env", default="production", show_default=True,
              type=click.Choice(["development", "staging", "production"]))
@click.option("--limit", type=int, metavar="N", help="Show the N newest versions only.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def history(g: Globals, agent: str, env: str, limit: int | None, as_json: bool) -> None:
    """The versions of an agent's environment, newest first."""
    from stageline.history import history as versions_of
    from stageline.layout import check_agent_name
    from stageline.workspace import open_workspace

    check_agent_name(agent)
    ws = open_workspace(g.repo)
    versions = versions_of(ws, agent, env, limit)
    if not versions:
        ws.require_agent(agent)  # a retired agent keeps its history
    if as_json:
        emit_json({"agent": agent, "environment": env,
                   "versions": [v.to_json() for v in versions]})
        return
    rows = [("COMMIT", "TREE", "ACTION", "ACTOR", "TIME")]
    rows += [(v.commit[:12], short(v.tree), v.action + (" (override)" if v.override else ""),
              v.actor or "?", v.time) for v in versions]
    if len(rows) == 1:
        click.echo(f"{agent} has never been in {env}.")
        return
    print_table(rows)


@cli.command()
@click.argument("agent", shell_complete=complete_agents)
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
    from stageline.diffing import compare, render
    from stageline.layout import check_agent_name
    from stageline.workspace import open_workspace

    check_agent_name(agent)
    ws = open_workspace(ctx.obj.repo)
    if not any(side and "@" in side for side in (old, new)):
        ws.require_agent(agent)  # ENV@REV may name a state of a retired agent
    comparison = compare(ws, agent, old, new)
    if as_json:
        emit_json(comparison.to_json())
    else:
        for n, line in enumerate(render(comparison, stat)):
            click.echo(paint(line, bold=True) if not n else _diff_colour(line))
    if exit_code and not comparison.identical:
        ctx.exit(1)


def _diff_colour(line: str) -> str:
    """Added lines and keys green, removed red, changed yellow, hunk headers cyan."""
    from stageline.diffing import line_kind

    kind = line_kind(line)
    if kind == "file":
        return paint(line, bold=True)
    style = {"hunk": "cyan", "added": "green", "removed": "red", "changed": "yellow"}
    return paint(line, fg=style[kind]) if kind in style else line


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

    from stageline.history import audit_log, parse_since
    from stageline.layout import PUSH_LOG, check_agent_name
    from stageline.workspace import open_workspace

    if agent is not None:
        check_agent_name(agent)
    ws = open_workspace(g.repo)
    log_file = Path(push_log) if push_log else ws.store.git_dir / PUSH_LOG
    events = audit_log(ws, agent, actor, action, parse_since(since) if since else None,
                       log_file if push_log or log_file.exists() else None)
    if as_json:
        emit_json({"events": [e.to_json() for e in events]})
    elif fmt == "jsonl":
        encode = json.JSONEncoder(sort_keys=True).encode
        if events:  # one write: thousands of lines
            click.echo("\n".join(encode(e.to_json()) for e in events))
    else:
        rows = [("TIME", "ACTION", "AGENT", "ACTOR", "PUSHER", "TREE", "COMMIT")]
        rows += [(e.time, e.action + (" (override)" if e.details.get("override") else ""),
                  e.agent or "—", e.actor or "?", e.pusher or "—", short(e.tree),
                  e.commit[:12]) for e in events]
        if len(rows) == 1:
            click.echo("no events.")
            return
        print_table(rows)
        for e in events:
            if e.details.get("override"):
                click.echo(f"{e.commit[:12]} overrode a window: {e.details['override']}")


@cli.command()
@click.argument("agent", required=False, shell_complete=complete_agents)
@ENV_OPTION
@click.option("--worktree", is_flag=True, help="Check the files on disk, not the last commit.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def validate(g: Globals, agent: str | None, env: str, worktree: bool, as_json: bool) -> None:
    """Check agents: schema, references, secrets, settings; exit 1 on errors."""
    from stageline.actions import agent_sources, findings
    from stageline.errors import CheckFailed
    from stageline.workspace import open_workspace

    ws = open_workspace(g.repo)
    if agent is not None and not worktree:
        ws.require_agent(agent)
    _note_uncommitted(ws, env, agent, worktree)
    results = [(name, findings(ws, name, source, env, worktree))
               for name, source in agent_sources(ws, env, agent, worktree)]
    errors = sum(1 for _n, fs in results for f in fs if f.severity == "error")
    warnings = sum(1 for _n, fs in results for f in fs if f.severity == "warning")
    if as_json:
        emit_json({"environment": env, "agents": [
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


def _note_uncommitted(ws: Workspace, env: str, agent: str | None, worktree: bool) -> None:
    """validate and test read the last commit: say so when the files on disk differ."""
    from stageline.actions import uncommitted

    dirty = [] if worktree else uncommitted(ws, env, agent)
    if dirty:
        click.echo(f"stageline: {dirty[0]}{' and more' if len(dirty) > 1 else ''} has "
                   "uncommitted changes; this judged the committed state (--worktree judges "
                   "the files on disk).", err=True)


@cli.command("test")
@click.argument("agent", shell_complete=complete_agents)
@ENV_OPTION
@click.option("--worktree", is_flag=True, help="Test the files on disk, not the last commit.")
@click.option("--junit", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write JUnit XML for CI.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def test_agent(g: Globals, agent: str, env: str, worktree: bool, junit: str | None,
               as_json: bool) -> None:
    """Run the agent's conversation tests (tests/*.yaml) against its flows; exit 1 on
    failure."""
    from stageline.actions import agent_sources, conversation_tests
    from stageline.conversation import junit_xml, render_failure
    from stageline.errors import CheckFailed
    from stageline.workspace import open_workspace

    ws = open_workspace(g.repo)
    if not worktree:
        ws.require_agent(agent)
    _note_uncommitted(ws, env, agent, worktree)
    ((name, source),) = agent_sources(ws, env, agent, worktree)
    results = conversation_tests(source)
    failed = [r for r in results if not r.passed]
    if junit:
        with open(junit, "w", encoding="utf-8") as fh:
            fh.write(junit_xml(name, results))
    if as_json:
        emit_json({"agent": name, "environment": env, "passed": len(results) - len(failed),
                   "failed": len(failed), "tests": [
                       {"name": r.name, "file": r.file, "passed": r.passed,
                        "failures": list(r.failures), "transcript": list(r.transcript)}
                       for r in results]})
    else:
        for r in results:
            verdict = paint("PASS", fg="green") if r.passed else paint("FAIL", fg="red")
            click.echo(f"{verdict}  {r.file}  {r.name}")
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
