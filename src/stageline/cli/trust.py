"""Signed actions (§8): the policy's keys, git's signing set-up, and ``audit``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from stageline.cli.base import Globals, cli, emit_json

if TYPE_CHECKING:
    from stageline.policy import Policy


def _policy_at(g: Globals, rev: str | None) -> Policy:
    """The policy at ``rev`` (default: the branch's tip)."""
    from stageline.errors import UsageError
    from stageline.layout import POLICY_FILE
    from stageline.policy import PolicyError, parse_policy
    from stageline.workspace import open_workspace

    ws = open_workspace(g.repo)
    if rev is None:
        return ws.policy
    commit = ws.store.resolve(rev)
    if commit is None:
        raise UsageError(f"{rev!r} names no commit in this repository.")
    data = ws.store.blob_at(commit, POLICY_FILE)
    if data is None:
        raise PolicyError(f"there is no {POLICY_FILE} at {rev}.")
    return parse_policy(data, f"{POLICY_FILE} at {rev}")


@cli.group()
def keys() -> None:
    """The signing keys stageline.yaml lists, and whether git signs with yours."""


@keys.command("list")
@click.option("--at", "rev", metavar="REV", help="The policy at this commit (default: the tip).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def keys_list(g: Globals, rev: str | None, as_json: bool) -> None:
    """Every listed key: its holder, type, fingerprint, comment, and whether it is revoked."""
    from stageline.cli.base import print_table
    from stageline.keys import listing

    policy = _policy_at(g, rev)
    rows = listing(policy)
    if as_json:
        emit_json({"require": policy.signing.require, "keys": rows})
        return
    click.echo(f"signing.require: {policy.signing.require}")
    if not rows:
        click.echo("no keys listed; members add theirs under members.<id>.keys.")
        return
    print_table([("HOLDER", "TYPE", "FINGERPRINT", "REVOKED", "COMMENT")] +
                [(str(r["holder"]), str(r["type"]), str(r["fingerprint"]),
                  "revoked" if r["revoked"] else "-", str(r["comment"])) for r in rows])


@keys.command("allowed-signers")
@click.option("--at", "rev", metavar="REV", help="The policy at this commit (default: the tip).")
@click.pass_obj
def keys_allowed_signers(g: Globals, rev: str | None) -> None:
    """A file for git's gpg.ssh.allowedSignersFile, so that 'git log --show-signature' and
    'git verify-commit' know the policy's keys.

    \b
    EXAMPLES
      stageline keys allowed-signers > .git/allowed_signers
      git config gpg.ssh.allowedSignersFile .git/allowed_signers
      git log --show-signature -3
    """
    from stageline.keys import allowed_signers

    policy = _policy_at(g, rev)
    click.echo(allowed_signers(policy), nl=False)


@keys.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def keys_check(g: Globals, as_json: bool) -> None:
    """Is git set up to sign, and with a key the policy lists for you? Exit 4 if not."""
    from stageline.errors import Blocked
    from stageline.keys import configured, listed_problem
    from stageline.workspace import open_workspace, resolve_actor

    ws = open_workspace(g.repo)
    actor = resolve_actor(ws, g.actor)
    setup = configured(ws.store)
    problem = setup.problem or (listed_problem(ws.policy, actor, setup.key)
                                if setup.key else None)
    if as_json:
        emit_json({"member": actor.id, "require": ws.policy.signing.require,
                   "key": setup.key.fingerprint if setup.key else None, "from": setup.where,
                   "problem": problem})
    elif problem is None and setup.key is not None:
        click.echo(f"git signs {actor.id}'s commits with {setup.key.fingerprint} "
                   f"({setup.where}), a key stageline.yaml lists for {actor.id}; "
                   f"signing.require: {ws.policy.signing.require}.")
    if problem is not None:
        raise Blocked(f"{actor.id} cannot sign actions yet: {problem}.")


@cli.command()
@click.option("--from", "root", required=True, metavar="ROOT",
              help="The commit trusted as it is (the organization's first commit, or a "
                   "release you checked).")
@click.option("--ref", "rev", metavar="REF", help="The branch to audit (default: HEAD's).")
@click.option("--full", is_flag=True,
              help="Judge every commit again, not only those since the last clean audit "
                   "from ROOT.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def audit(g: Globals, root: str, rev: str | None, full: bool, as_json: bool) -> None:
    """Judge every commit from ROOT to the branch's tip by the policy at its first parent
    (keys, roles and every rule of the hook but the pusher and windows); exit 1 on any
    violation. A clean audit is recorded in the git directory: the next one from ROOT
    judges only what came since, and the branch must still pass through the tip it saw.

    \b
    EXAMPLES
      stageline audit --from $(git rev-list --max-parents=0 HEAD)
      stageline audit --from refs/tags/v1.0 --ref main --json
    """
    from stageline.errors import CheckFailed
    from stageline.git.objects import short_ref
    from stageline.git.store import Store
    from stageline.server.audit import audit as run_audit
    from stageline.server.audit import named

    with Store.open(g.repo) as store:
        start, ref, tip = named(store, root, rev)
        branch = short_ref(ref)
        count, violations = run_audit(store, start, tip, branch, full)
    if as_json:
        emit_json({"ref": branch, "from": start, "tip": tip, "commits": count,
                   "violations": [{"commit": v.commit, "path": v.path, "rule": v.rule,
                                   "fix": v.fix} for v in violations]})
    else:
        for v in violations:
            click.echo(v.line())
        if not violations:
            click.echo(f"{count} commits from {start[:12]} to {branch} ({tip[:12]}): every one "
                       "made by the rules of the policy before it.")
    if violations:
        raise CheckFailed(f"{len(violations)} violation(s) in {count} commits.")
