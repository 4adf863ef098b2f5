"""The ``stageline`` command: parse, call one function, print. No rules here."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from stageline import __version__
from stageline.errors import REPOSITORY, USAGE, StagelineError

if TYPE_CHECKING:  # the commands import what they use when they run: the CLI starts fast
    from stageline.actions import Outcome
    from stageline.inventory import AgentStatus
    from stageline.policy import Member
    from stageline.workspace import Workspace


@dataclass
class Globals:
    repo: str | None
    actor: str | None


def _emit_json(data: Any) -> None:
    """Indented for a person at a terminal; one compact line for a program reading a
    pipe (the standard library's C encoder writes only that, several times faster)."""
    import json

    if sys.stdout.isatty():
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(json.dumps(data, separators=(",", ":")))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--repo", metavar="PATH", help="The organization repository (default: here).")
@click.option("--as", "actor", metavar="MEMBER",
              help="Act as this member (default: $STAGELINE_ACTOR, else the CI variables of "
                   "the policy's ci.actor_env, else git's user.email).")
@click.version_option(__version__, "--version", prog_name="stageline")
@click.pass_context
def cli(ctx: click.Context, repo: str | None, actor: str | None) -> None:
    """Development → staging → production for AI agents, on Git."""
    ctx.obj = Globals(repo, actor)


def _workspace_and_actor(g: Globals) -> tuple[Workspace, Member]:
    from stageline.workspace import open_workspace, resolve_actor

    ws = open_workspace(g.repo)
    return ws, resolve_actor(ws, g.actor)


def _colour(err: bool = False) -> bool:
    """Colour only on a terminal, and never under NO_COLOR (https://no-color.org) or
    TERM=dumb."""
    from stageline.progress import is_terminal

    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return is_terminal(sys.stderr if err else sys.stdout)


def _paint(text: str, err: bool = False, **style: Any) -> str:
    return click.style(text, **style) if text and _colour(err) else text


def _report(outcome: Outcome, as_json: bool = False) -> None:
    """An action's outcome: the commit made, nothing to do, or (dry run) the commit it
    would make."""
    if as_json:
        _emit_json(outcome.to_json())
        return
    p = outcome.preview
    if p is not None:
        click.echo(_paint(f"dry run: {outcome.summary.removesuffix('.')}; nothing was written.",
                          fg="yellow"))
        click.echo(f"parent  {p.parent}\ntree    {p.tree}\n"
                   f"author  {p.author.name} <{p.author.email}>\n")
        for line in p.message.rstrip("\n").split("\n"):
            click.echo(f"    {line}".rstrip())
        click.echo("")
        for c in p.changes:
            click.echo(f"{c.status}  {c.path}")
    elif outcome.commit:
        click.echo(f"{outcome.summary} ({outcome.commit[:12]})")
    else:
        click.echo(f"dry run: {outcome.summary}" if outcome.dry_run else outcome.summary)


_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
_DRY_RUN = click.option("--dry-run", is_flag=True,
                        help="Print the commit it would make, and write nothing.")


def _complete_agents(ctx: click.Context, _param: click.Parameter,
                     incomplete: str) -> list[str]:
    """Shell completion of agent names: those at the tip of the branch (none on error)."""
    try:
        from stageline.inventory import collect
        from stageline.workspace import open_workspace

        ws = open_workspace(ctx.find_root().params.get("repo"))
        return [s.name for s in collect(ws, with_last=False) if s.name.startswith(incomplete)]
    except Exception:  # noqa: BLE001 - completion must never print an error
        return []


@cli.command()
@click.argument("path", default=".", type=click.Path(file_okay=False))
@click.option("--org", required=True, help="The organization's name.")
@click.option("--admin", required=True, metavar="ID", help="The first org-admin's login name.")
@click.option("--admin-email", required=True, metavar="EMAIL")
@click.option("--admin-name", metavar="NAME")
@click.option("--branch", default="main", show_default=True, help="The protected branch.")
@_JSON
def init(path: str, org: str, admin: str, admin_email: str, admin_name: str | None,
         branch: str, as_json: bool) -> None:
    """Create a new organization repository."""
    from stageline.actions import init_organization

    _report(init_organization(path, org, admin, admin_email, admin_name, branch), as_json)


@cli.group()
def agent() -> None:
    """Create agents."""


@agent.command("new")
@click.argument("name")
@_DRY_RUN
@_JSON
@click.pass_obj
def agent_new(g: Globals, name: str, dry_run: bool, as_json: bool) -> None:
    """Scaffold the smallest valid agent in development and commit it."""
    from stageline.actions import plan_new_agent, run_plan

    ws, actor = _workspace_and_actor(g)
    _report(run_plan(ws, plan_new_agent(ws, actor, name), dry_run), as_json)


@cli.command()
@click.argument("agent", shell_complete=_complete_agents)
@click.option("--to", "target", required=True, type=click.Choice(["staging", "production"]),
              help="staging (from development) or production (from approved staging).")
@click.option("--override", metavar="REASON",
              help="Push through a release or freeze window (org-admins; the reason is "
                   "recorded in the commit and shown by log).")
@_DRY_RUN
@_JSON
@click.pass_obj
def promote(g: Globals, agent: str, target: str, override: str | None, dry_run: bool,
            as_json: bool) -> None:
    """Copy development over staging, or QA-approved staging over production."""
    from stageline.actions import plan_promote, run_plan

    ws, actor = _workspace_and_actor(g)
    if dry_run and target == "production" and actor.has("org-admin"):
        # every reason at once, where the command itself stops at the first
        from stageline.errors import Blocked
        from stageline.inventory import collect

        found = collect(ws, agent, with_last=False)
        blocked = found[0].blocked_by if found else ()
        if blocked and not override:
            raise Blocked(f"{agent} cannot go to production now: {'; '.join(blocked)}.")
    _report(run_plan(ws, plan_promote(ws, actor, agent, target, override), dry_run), as_json)


@cli.command("mark-ready")
@click.argument("agent", shell_complete=_complete_agents)
@click.option("--withdraw", is_flag=True,
              help="Take back your own mark of the current staging tree.")
@_DRY_RUN
@_JSON
@click.pass_obj
def mark_ready(g: Globals, agent: str, withdraw: bool, dry_run: bool, as_json: bool) -> None:
    """Mark the agent's current staging tree Ready for Production (QA), or withdraw your
    mark."""
    from stageline.actions import plan_mark_ready, plan_withdraw, run_plan

    ws, actor = _workspace_and_actor(g)
    plan = plan_withdraw(ws, actor, agent) if withdraw else plan_mark_ready(ws, actor, agent)
    _report(run_plan(ws, plan, dry_run), as_json)


def _short(tree: str | None) -> str:
    return tree[:7] if tree else "—"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _marks(status: AgentStatus) -> str:
    """QA's marks of the current staging tree against the policy's: "1 of 2 (quinn)"."""
    named = f" ({', '.join(status.markers)})" if status.markers else ""
    return f"{len(status.markers)} of {status.required}{named}"


def _tests(status: AgentStatus) -> str:
    """The approval's conversation-test summary: QA sees when an agent has none."""
    if not status.ready or status.tests_passed is None:
        return "—"
    return f"{status.tests_passed}-passed" if status.tests_passed else "none"


@cli.command()
@click.argument("agent", required=False, shell_complete=_complete_agents)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(g: Globals, agent: str | None, as_json: bool) -> None:
    """Each agent's tree in every environment, QA status, and who acted last."""
    from stageline.inventory import collect
    from stageline.layout import check_agent_name
    from stageline.workspace import open_workspace

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
              "MARKS", "TESTS", "LAST (DEV/STG/PROD)", "BLOCKED")
    rows = [header]
    for s in statuses:
        last = "/".join((s.last[e].actor or "?") if s.last[e] else "—"  # type: ignore[union-attr]
                        for e in ("development", "staging", "production"))
        rows.append((s.name, _short(s.trees["development"]), _short(s.trees["staging"]),
                     _short(s.trees["production"]), _yes(s.staging_equals_development),
                     _yes(s.production_equals_staging), _yes(s.ready),
                     _marks(s), _tests(s), last,
                     "; ".join(s.blocked_by) or "—"))
    # Green where the line is in step, yellow where something waits to move along it.
    _print_table(rows, lambda col, cell: {"yes": "green", "no": "yellow"}.get(cell)
                 if 4 <= col <= 6 else None)


def _print_table(rows: Sequence[Sequence[str]],
                 colour: Callable[[int, str], str | None] | None = None) -> None:
    if len(rows) == 1:
        click.echo("no agents yet; create one with 'stageline agent new NAME'.")
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        cells = []
        for i, (cell, w) in enumerate(zip(row, widths, strict=True)):
            padded = cell.ljust(w) if i < len(row) - 1 else cell
            fg = colour(i, cell) if colour and n else None
            cells.append(_paint(padded, bold=True) if not n else
                         _paint(padded, fg=fg) if fg else padded)
        click.echo("  ".join(cells).rstrip())


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
    rows = [("AGENT", "ENVIRONMENTS", "READY", "MARKS")]
    for item in agents:
        ready = item.get("ready_for_production")
        marks = item.get("approvals")
        rows.append((item["name"], ", ".join(item["environments"]),
                     "—" if ready is None else _yes(ready),
                     "—" if marks is None else f"{marks['marks']} of {marks['required']}"
                     + (f" ({', '.join(marks['by'])})" if marks["by"] else "")))
    _print_table(rows)


@cli.command()
@click.argument("agent", shell_complete=_complete_agents)
@click.option("--to", "rev", metavar="REV",
              help="An earlier commit of the branch (default: the previous production version).")
@_DRY_RUN
@_JSON
@click.pass_obj
def rollback(g: Globals, agent: str, rev: str | None, dry_run: bool, as_json: bool) -> None:
    """Restore production to an earlier production state (org-admin)."""
    from stageline.actions import plan_rollback, run_plan

    ws, actor = _workspace_and_actor(g)
    _report(run_plan(ws, plan_rollback(ws, actor, agent, rev), dry_run), as_json)


@cli.command()
@click.argument("agent", shell_complete=_complete_agents)
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
    versions = versions_of(open_workspace(g.repo), agent, env, limit)
    if as_json:
        _emit_json({"agent": agent, "environment": env,
                    "versions": [v.to_json() for v in versions]})
        return
    rows = [("COMMIT", "TREE", "ACTION", "ACTOR", "TIME")]
    rows += [(v.commit[:12], _short(v.tree), v.action + (" (override)" if v.override else ""),
              v.actor or "?", v.time) for v in versions]
    if len(rows) == 1:
        click.echo(f"{agent} has never been in {env}.")
        return
    _print_table(rows)


@cli.command()
@click.argument("agent", shell_complete=_complete_agents)
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
    comparison = compare(open_workspace(ctx.obj.repo), agent, old, new)
    if as_json:
        _emit_json(comparison.to_json())
    else:
        for n, line in enumerate(render(comparison, stat)):
            click.echo(_paint(line, bold=True) if not n else _diff_colour(line))
    if exit_code and not comparison.identical:
        ctx.exit(1)


def _diff_colour(line: str) -> str:
    """Added lines and keys green, removed red, changed yellow, hunk headers cyan (the
    shapes ``diffing.render`` prints)."""
    if line.startswith(("+++ ", "--- ")):
        return _paint(line, bold=True)
    if line.startswith("@@"):
        return _paint(line, fg="cyan")
    for prefixes, fg in ((("+", "      + ", "  added "), "green"),
                         (("-", "      - ", "  removed "), "red"),
                         (("      ~ ", "  modified "), "yellow")):
        if line.startswith(prefixes):
            return _paint(line, fg=fg)
    return line


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
        _emit_json({"events": [e.to_json() for e in events]})
    elif fmt == "jsonl":
        encode = json.JSONEncoder(sort_keys=True).encode
        if events:  # one write: thousands of lines
            click.echo("\n".join(encode(e.to_json()) for e in events))
    else:
        rows = [("TIME", "ACTION", "AGENT", "ACTOR", "PUSHER", "TREE", "COMMIT")]
        rows += [(e.time, e.action + (" (override)" if e.details.get("override") else ""),
                  e.agent or "—", e.actor or "?", e.pusher or "—", _short(e.tree),
                  e.commit[:12]) for e in events]
        if len(rows) == 1:
            click.echo("no events.")
            return
        _print_table(rows)
        for e in events:
            if e.details.get("override"):
                click.echo(f"{e.commit[:12]} overrode a window: {e.details['override']}")


_ENV = click.option("--env", "env", default="development", show_default=True,
                    type=click.Choice(["development", "staging", "production"]))


@cli.command()
@click.argument("agent", required=False, shell_complete=_complete_agents)
@_ENV
@click.option("--worktree", is_flag=True, help="Check the files on disk, not the last commit.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def validate(g: Globals, agent: str | None, env: str, worktree: bool, as_json: bool) -> None:
    """Check agents: schema, references, secrets, settings; exit 1 on errors."""
    from stageline.actions import agent_sources, findings
    from stageline.errors import CheckFailed
    from stageline.workspace import open_workspace

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
@click.argument("agent", shell_complete=_complete_agents)
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
    from stageline.actions import agent_sources, conversation_tests
    from stageline.conversation import junit_xml, render_failure
    from stageline.errors import CheckFailed
    from stageline.workspace import open_workspace

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
            verdict = _paint("PASS", fg="green") if r.passed else _paint("FAIL", fg="red")
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


@cli.group()
def hook() -> None:
    """The server side: the pre-receive hook, the push log, installing them."""


@hook.command("pre-receive")
@click.option("--chain", metavar="PATH", help="A hook to run first with the same input.")
@click.pass_context
def hook_pre_receive(ctx: click.Context, chain: str | None) -> None:
    """Judge a push (stdin: '<old> <new> <ref>' lines); exit 1 rejects it."""
    from stageline.server.hooks import main as hook_main

    ctx.exit(hook_main("pre-receive", ["--chain", chain] if chain else []))


@hook.command("post-receive")
@click.option("--chain", metavar="PATH", help="A hook to run first with the same input.")
@click.pass_context
def hook_post_receive(ctx: click.Context, chain: str | None) -> None:
    """Record accepted updates of protected branches in stageline-pushes.jsonl."""
    from stageline.server.hooks import main as hook_main

    ctx.exit(hook_main("post-receive", ["--chain", chain] if chain else []))


_LAYOUT = click.option("--layout", type=click.Choice(["plain", "gitlab", "gitea"]),
                       default="plain", show_default=True,
                       help="Where the server looks for hooks.")


@hook.command("install")
@click.argument("server_repo", type=click.Path(file_okay=False))
@_LAYOUT
def hook_install(server_repo: str, layout: str) -> None:
    """Install the pre-receive and post-receive shims into a (bare) server repository."""
    from stageline.server.install import install

    click.echo(install(server_repo, layout))


@hook.command("uninstall")
@click.argument("server_repo", type=click.Path(file_okay=False))
@_LAYOUT
def hook_uninstall(server_repo: str, layout: str) -> None:
    """Remove stageline's shims (only its own files; a chained hook is put back)."""
    from stageline.server.install import uninstall

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
    from datetime import UTC, datetime

    from stageline.errors import CheckFailed, UsageError
    from stageline.git.store import Store
    from stageline.server.hooks import verify as run_verify

    old, sep, new = range_.partition("..")
    if not sep or not old or not new or new.startswith("."):
        raise UsageError("--range takes OLD..NEW, two commits.")
    from stageline.progress import Progress

    with Store.open(g.repo) as store, Progress() as progress:
        ref, violations, windows = run_verify(store, old, new, ref, pusher, progress)
    if as_json:
        _emit_json({"ref": ref, "range": range_, "pusher_checked": pusher is not None,
                    "violations": [{"commit": v.commit, "path": v.path, "rule": v.rule,
                                    "fix": v.fix} for v in violations]})
    else:
        if pusher is None:
            click.echo("stageline: checking commit authors only (no --pusher given).", err=True)
        if windows:
            click.echo("stageline: release and freeze windows judged by this machine's clock "
                       f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC), not the server's.",
                       err=True)
        for v in violations:
            click.echo(v.line())
        if not violations:
            click.echo(f"{range_}: no violations as an update of {ref}.")
    if violations:
        raise CheckFailed(f"{len(violations)} violation(s) in {range_}.")


_EXPORT_PROGRESS_FROM = 20  # fewer agents export in a blink: no progress line


@cli.command("export")
@click.argument("agents", nargs=-1, metavar="[AGENT]...")
@click.option("--out", "out", required=True, metavar="DIR", type=click.Path(file_okay=False),
              help="Where the bundles go (created if missing; holds nothing but bundles).")
@click.option("--ref", "rev", metavar="REV",
              help="A commit of the protected branch (default: its tip).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.pass_obj
def export_bundles(g: Globals, agents: tuple[str, ...], out: str, rev: str | None,
                   as_json: bool) -> None:
    """Write DIR/<agent>.json deployment bundles of the production agents (all, or the
    named ones): their files, tree id and production settings."""
    from pathlib import Path

    from stageline.export import export
    from stageline.git.objects import short_ref
    from stageline.git.store import Store
    from stageline.layout import check_agent_name

    for name in agents:
        check_agent_name(name)
    progress = None
    if sys.stderr.isatty():
        def progress(done: int, total: int) -> None:
            if total >= _EXPORT_PROGRESS_FROM and (done == total or done % 10 == 0):
                end = "\r\x1b[K" if done == total else ""
                click.echo(f"\rstageline: exporting {done}/{total} agents{end}", nl=False,
                           err=True)
    with Store.open(g.repo) as store:
        result = export(store, Path(out), agents, rev, progress)
    if as_json:
        _emit_json(result.to_json())
        return
    for item in result.agents:
        click.echo(f"{item.path}  tree {item.tree[:12]}  sha256 {item.sha256[:16]}"
                   f"{'' if item.written else '  (unchanged)'}")
    for path in result.removed:
        click.echo(f"{path}  removed (no longer exported)")
    written = sum(1 for a in result.agents if a.written)
    click.echo(f"exported {len(result.agents)} agent(s) of production at "
               f"{short_ref(result.ref)} {result.commit[:12]} to {result.out}: {written} "
               f"written, {len(result.agents) - written} unchanged, {len(result.removed)} "
               "stale removed.")


@cli.command()
@click.pass_obj
def guard(g: Globals) -> None:
    """Judge the staged change by the server's rules before it is committed (a pre-commit
    hook); exit 1 when the server would reject it."""
    from stageline.errors import CheckFailed
    from stageline.guard import check_staged, report

    verdict = check_staged(g.repo, g.actor)
    for line in report(verdict):
        click.echo(line, err=True)
    if verdict.violations:
        raise CheckFailed(f"the server would reject this change ({len(verdict.violations)} "
                          f"violation(s), judged as {verdict.actor} by the policy at "
                          f"{verdict.policy_from}); change it, or use the command named.")
    if verdict.rollback_trailers:
        click.echo("stageline: allowed only as a rollback; end the commit message with:\n"
                   f"{verdict.rollback_trailers}")


@cli.command()
@click.option("--keep", is_flag=True, help="Keep the demo's directory and print where it is.")
def demo(keep: bool) -> None:
    """Play the whole workflow on a copy of the bundled sample organization."""
    from stageline.demo import run_demo

    run_demo(keep=keep, echo=click.echo, run=run)


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(argv))


def run(argv: list[str] | None = None, echo_err: Callable[[str], None] | None = None) -> int:
    """Run the CLI and return its exit code; every failure is one sentence on stderr."""
    err = echo_err or (lambda text: click.echo(
        _paint("stageline:", err=True, fg="red", bold=True) + text.removeprefix("stageline:"),
        err=True))
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
