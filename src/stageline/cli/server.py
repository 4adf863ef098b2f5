"""The server's side and CI's: hook, verify, export, guard, site."""

from __future__ import annotations

import sys

import click

from stageline.cli.base import Globals, cli, emit_json


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
        ref, violations, policy = run_verify(store, old, new, ref, pusher, progress)
    require = policy.signing.require if policy else "none"
    if as_json:
        emit_json({"ref": ref, "range": range_, "pusher_checked": pusher is not None,
                   "signatures_required": require,
                   "violations": [{"commit": v.commit, "path": v.path, "rule": v.rule,
                                   "fix": v.fix} for v in violations]})
    else:
        if pusher is None:
            click.echo({"none": "stageline: checking commit authors only (no --pusher given).",
                        "actions": "stageline: no --pusher given; the authors of actions are "
                                   "proven by their signatures (signing.require: actions).",
                        "all": "stageline: no --pusher given; every author is proven by a "
                               "signature (signing.require: all)."}[require], err=True)
        if policy is not None and policy.windows:
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
@click.option("--allow-unpushed", is_flag=True,
              help="Export even when the branch is ahead of its upstream (states the server "
                   "has not accepted).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.pass_obj
def export_bundles(g: Globals, agents: tuple[str, ...], out: str, rev: str | None,
                   allow_unpushed: bool, quiet: bool, as_json: bool) -> None:
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
    if sys.stderr.isatty() and not quiet:
        def progress(done: int, total: int) -> None:
            if total >= _EXPORT_PROGRESS_FROM and (done == total or done % 10 == 0):
                end = "\r\x1b[K" if done == total else ""
                click.echo(f"\rstageline: exporting {done}/{total} agents{end}", nl=False,
                           err=True)
    with Store.open(g.repo) as store:
        result = export(store, Path(out), agents, rev, progress, allow_unpushed)
    if as_json:
        emit_json(result.to_json())
        return
    if quiet:
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
@click.option("--out", "out", metavar="DIR", type=click.Path(file_okay=False),
              help="Where the site goes (a new or empty directory, or a site written before).")
@click.option("--ref", "rev", metavar="REV",
              help="A commit of the protected branch (default: its tip).")
@click.option("--history", type=int, default=50, show_default=True, metavar="N",
              help="Versions per environment on each agent's page.")
@click.option("--serve", is_flag=True,
              help="Instead of --out: serve the site on 127.0.0.1, rebuilt when the branch "
                   "moves (a preview, not a production server).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="The port --serve listens on (0: any free one).")
@click.pass_obj
def site(g: Globals, out: str | None, rev: str | None, history: int, serve: bool,
         port: int) -> None:
    """Write a static site of the organization: the board of every agent's environments,
    a page per agent (timeline, diffs, history), the audit log. Open DIR/index.html, or
    publish DIR privately: it shows every prompt. Over a site written before, only the
    agent pages whose inputs changed are rendered again.

    \b
    Examples:
      stageline site --out public/
      stageline site --serve --port 8000
      stageline --repo /srv/git/acme.git site --out /var/www/acme --ref main
    """
    from pathlib import Path

    from stageline.errors import UsageError
    from stageline.git.objects import short_ref
    from stageline.git.store import Store
    from stageline.site import build
    from stageline.site import serve as serve_site

    if (out is None) == (not serve):
        raise UsageError("give --out DIR, or --serve (not both).")
    if serve:
        with Store.open(g.repo) as store:
            serve_site(store, rev, history, port, lambda line: click.echo(line, err=False))
        return
    assert out is not None
    with Store.open(g.repo) as store:
        built = build(store, Path(out), rev, history)
    click.echo(f"wrote the site of {short_ref(built.ref)} {built.commit[:12]} to {built.out}: "
               f"{built.pages} pages, {built.agents} agent(s); {built.rendered} agent page(s) "
               f"rendered, {built.agents - built.rendered} unchanged.")
