"""The commands that commit: init, agent new, promote, mark-ready, rollback."""

from __future__ import annotations

import click

from stageline.cli.base import (
    DRY_RUN_OPTION,
    JSON_OPTION,
    PUSH_OPTION,
    YES_OPTION,
    Globals,
    cli,
    complete_agents,
    report_outcome,
    run_action,
    workspace_and_actor,
)


@cli.command()
@click.argument("path", default=".", type=click.Path(file_okay=False))
@click.option("--org", required=True, help="The organization's name.")
@click.option("--admin", required=True, metavar="ID", help="The first org-admin's login name.")
@click.option("--admin-email", required=True, metavar="EMAIL")
@click.option("--admin-name", metavar="NAME")
@click.option("--branch", default="main", show_default=True, help="The protected branch.")
@click.option("--adopt", is_flag=True,
              help="Add stageline to the existing repository at PATH (one commit adding "
                   "stageline.yaml on its current branch) instead of creating one.")
@JSON_OPTION
def init(path: str, org: str, admin: str, admin_email: str, admin_name: str | None,
         branch: str, adopt: bool, as_json: bool) -> None:
    """Create a new organization repository (or, with --adopt, add stageline to one).

    \b
    Examples:
      stageline init acme --org acme --admin olga --admin-email olga@acme.test
      stageline init . --adopt --org acme --admin olga --admin-email olga@acme.test
    """
    from stageline.actions import init_organization

    report_outcome(init_organization(path, org, admin, admin_email, admin_name, branch, adopt),
                   as_json)


@cli.group()
def agent() -> None:
    """Create agents."""


@agent.command("new")
@click.argument("name")
@DRY_RUN_OPTION
@PUSH_OPTION
@YES_OPTION
@JSON_OPTION
@click.pass_obj
def agent_new(g: Globals, name: str, dry_run: bool, push: bool, yes: bool,
              as_json: bool) -> None:
    """Scaffold the smallest valid agent in development and commit it."""
    from stageline.actions import plan_new_agent

    ws, actor = workspace_and_actor(g)
    run_action(ws, plan_new_agent(ws, actor, name), dry_run, as_json, push, yes)


@cli.command()
@click.argument("agent", shell_complete=complete_agents)
@click.option("--to", "target", required=True, type=click.Choice(["staging", "production"]),
              help="staging (from development) or production (from approved staging).")
@click.option("--override", metavar="REASON",
              help="Push through a release or freeze window (org-admins; the reason is "
                   "recorded in the commit and shown by log).")
@click.option("--force-reship", is_flag=True,
              help="Push to production a staging tree that production was rolled back from.")
@DRY_RUN_OPTION
@PUSH_OPTION
@YES_OPTION
@JSON_OPTION
@click.pass_obj
def promote(g: Globals, agent: str, target: str, override: str | None, force_reship: bool,
            dry_run: bool, push: bool, yes: bool, as_json: bool) -> None:
    """Copy development over staging, or QA-approved staging over production.

    \b
    Examples:
      stageline --as alice promote support-bot --to staging --push
      stageline --as olga promote support-bot --to production --dry-run
      stageline --as olga promote support-bot --to production --override "incident 42"
    """
    from stageline.actions import plan_promote

    ws, actor = workspace_and_actor(g)
    ws.require_agent(agent)
    if dry_run and target == "production" and actor.has("org-admin"):
        # every reason at once, where the command itself stops at the first
        from stageline.errors import Blocked
        from stageline.inventory import RESHIP, collect

        found = collect(ws, agent)
        blocked = [b for b in (found[0].blocked_by if found else ())
                   if not (force_reship and b == RESHIP)]
        if blocked and not override:
            raise Blocked(f"{agent} cannot go to production now: {'; '.join(blocked)}.")
    run_action(ws, plan_promote(ws, actor, agent, target, override, force_reship), dry_run,
               as_json, push, yes)


@cli.command("mark-ready")
@click.argument("agent", shell_complete=complete_agents)
@click.option("--withdraw", is_flag=True,
              help="Take back your own mark of the current staging tree.")
@DRY_RUN_OPTION
@PUSH_OPTION
@YES_OPTION
@JSON_OPTION
@click.pass_obj
def mark_ready(g: Globals, agent: str, withdraw: bool, dry_run: bool, push: bool, yes: bool,
               as_json: bool) -> None:
    """Mark the agent's current staging tree Ready for Production (QA), or withdraw your
    mark.

    \b
    Examples:
      stageline --as quinn test support-bot --env staging
      stageline --as quinn mark-ready support-bot --push
      stageline --as quinn mark-ready support-bot --withdraw --push
    """
    from stageline.actions import plan_mark_ready, plan_withdraw

    ws, actor = workspace_and_actor(g)
    ws.require_agent(agent)
    plan = plan_withdraw(ws, actor, agent) if withdraw else plan_mark_ready(ws, actor, agent)
    run_action(ws, plan, dry_run, as_json, push, yes)


@cli.command()
@click.argument("agent", shell_complete=complete_agents)
@click.option("--to", "rev", metavar="REV",
              help="An earlier commit of the branch (default: the previous production version).")
@DRY_RUN_OPTION
@PUSH_OPTION
@YES_OPTION
@JSON_OPTION
@click.pass_obj
def rollback(g: Globals, agent: str, rev: str | None, dry_run: bool, push: bool, yes: bool,
             as_json: bool) -> None:
    """Restore production to an earlier production state (org-admin).

    \b
    Examples:
      stageline --as olga rollback support-bot --push
      stageline history support-bot
      stageline --as olga rollback support-bot --to 5a800120 --dry-run
    """
    from stageline.actions import plan_rollback

    ws, actor = workspace_and_actor(g)
    ws.require_agent(agent)
    run_action(ws, plan_rollback(ws, actor, agent, rev), dry_run, as_json, push, yes)
