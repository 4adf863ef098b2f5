"""What every command shares: the global options, the workspace and actor, JSON and
tables, colour, and an action's outcome. No rules here."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from stageline import __version__
from stageline.git.objects import short_ref

if TYPE_CHECKING:  # the commands import what they use when they run: the CLI starts fast
    from stageline.actions import Outcome, Plan
    from stageline.policy import Member
    from stageline.remote import Pushed
    from stageline.workspace import Workspace


@dataclass
class Globals:
    repo: str | None
    actor: str | None


def emit_json(data: Any) -> None:
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
    if forced_colour() and not os.environ.get("NO_COLOR"):
        ctx.color = True  # click.echo keeps the colour codes on a pipe


def workspace_and_actor(g: Globals) -> tuple[Workspace, Member]:
    from stageline.workspace import open_workspace, resolve_actor

    ws = open_workspace(g.repo)
    return ws, resolve_actor(ws, g.actor)


def use_colour(err: bool = False) -> bool:
    """Colour only on a terminal, and never under NO_COLOR (https://no-color.org) or
    TERM=dumb."""
    from stageline.progress import is_terminal

    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    if forced_colour():
        return True
    return is_terminal(sys.stderr if err else sys.stdout)


def forced_colour() -> bool:
    """FORCE_COLOR or CLICOLOR_FORCE set (and not "0"): colour into a pipe too, as CI logs
    that render it ask (https://force-color.org, https://bixense.com/clicolors)."""
    return any(os.environ.get(name, "0") not in ("", "0")
               for name in ("FORCE_COLOR", "CLICOLOR_FORCE"))


def paint(text: str, err: bool = False, **style: Any) -> str:
    return click.style(text, **style) if text and use_colour(err) else text


def report_outcome(outcome: Outcome, as_json: bool = False,
                   pushed: Pushed | None = None, branch: str = "") -> None:
    """An action's outcome: the commit made and whether it was pushed, nothing to do, or
    (dry run) the commit it would make."""
    if as_json:
        emit_json({**outcome.to_json(), "pushed": pushed.accepted if pushed else False,
                   "push": pushed.to_json() if pushed else None})
        return
    p = outcome.preview
    if p is not None:
        click.echo(paint(f"dry run: {outcome.summary.removesuffix('.')}; nothing was written.",
                         fg="yellow"))
        click.echo(f"parent  {p.parent}\ntree    {p.tree}\n"
                   f"author  {p.author.name} <{p.author.email}>")
        if p.signed_with:
            click.echo(f"signed  by git with {p.signed_with}")
        click.echo("")
        for line in p.message.rstrip("\n").split("\n"):
            click.echo(f"    {line}".rstrip())
        click.echo("")
        for c in p.changes:
            click.echo(f"{c.status}  {c.path}")
        return
    if outcome.commit:
        click.echo(f"{outcome.summary.removesuffix('.')} ({outcome.commit[:12]}).")
    else:
        click.echo(f"dry run: {outcome.summary}" if outcome.dry_run else outcome.summary)
    then = f"; then {outcome.next}." if outcome.next else "."
    if pushed is not None:
        if pushed.accepted:
            click.echo(paint(pushed.sentence, fg="green"))
            if outcome.next:
                click.echo(f"next: {outcome.next}.")
    elif outcome.commit and branch:
        click.echo(f"committed on {branch}, here only: the server judges it when you run "
                   f"'git push' (or add --push){then}")
    elif outcome.next:
        click.echo(f"next: {outcome.next}.")


def run_action(ws: Workspace, plan: Plan, dry_run: bool, as_json: bool, push: bool,
               yes: bool = False) -> None:
    """Make (or preview) the planned commit, push it with ``push``, and say so. A push
    the server rejects is exit 1; the commit stays on the branch."""
    from stageline import remote
    from stageline.actions import run_plan
    from stageline.errors import CheckFailed, UsageError
    from stageline.server.install import installed_in

    if ws.store.work_tree is None and not dry_run and not yes and \
            installed_in(ws.store.git_dir):
        raise UsageError(f"{ws.store.git_dir} is a server repository with stageline's hook: "
                         "an action here moves the branch directly, past the hook and the "
                         "push log; act in a clone and push, or pass --yes.")

    tracking = remote.upstream(ws) if push and not dry_run else None
    outcome = run_plan(ws, plan, dry_run)
    pushed = remote.push(ws, tracking) if tracking is not None else None
    report_outcome(outcome, as_json, pushed, short_ref(ws.ref))
    if outcome.commit and not as_json and not ws.policy.is_protected(ws.ref):
        click.echo(f"note: {short_ref(ws.ref)} is not a protected branch; the server judges "
                   f"this commit when it reaches {ws.policy.protected_branches[0]}.")
    if pushed is not None and not pushed.accepted:
        raise CheckFailed(f"{pushed.sentence.rstrip('.')}; the commit stays on your branch, "
                          "unpushed.")


JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
DRY_RUN_OPTION = click.option("--dry-run", is_flag=True,
                              help="Print the commit it would make, and write nothing.")
YES_OPTION = click.option("--yes", is_flag=True,
                          help="Act even in a server repository with stageline's hook (past "
                               "the hook and the push log).")
PUSH_OPTION = click.option("--push", is_flag=True,
                           help="Then push the branch to its upstream and report the server's "
                                "verdict (exit 1 when it rejects the push).")


def complete_agents(ctx: click.Context, _param: click.Parameter,
                    incomplete: str) -> list[str]:
    """Shell completion of agent names: those at the tip of the branch (none on error)."""
    try:
        from stageline.inventory import collect
        from stageline.workspace import open_workspace

        ws = open_workspace(ctx.find_root().params.get("repo"))
        return [s.name for s in collect(ws, with_last=False) if s.name.startswith(incomplete)]
    except Exception:  # noqa: BLE001 - completion must never print an error
        return []


def short(tree: str | None) -> str:
    return tree[:7] if tree else "—"


def yes(value: bool) -> str:
    return "yes" if value else "no"


def print_table(rows: Sequence[Sequence[str]],
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
            cells.append(paint(padded, bold=True) if not n else
                         paint(padded, fg=fg) if fg else padded)
        click.echo("  ".join(cells).rstrip())


ENV_OPTION = click.option("--env", "env", default="development", show_default=True,
                          type=click.Choice(["development", "staging", "production"]))
