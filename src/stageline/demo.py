"""``stageline demo``: the whole workflow, played by the three roles on the sample organization.

A bare repository with the pre-receive hook installed plays the Git server, a
clone plays the team's laptop, and every step is a real stageline command with
``--push`` (or a plain git edit and ``git push``), pushed as that member.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from stageline.actions import import_organization
from stageline.git.store import Store
from stageline.resources import data_path
from stageline.server.install import install

Echo = Callable[[str], None]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def seed_server(server: str, sample: Path) -> str:
    """A bare server repository whose main branch holds the sample organization."""
    with Store.init(server, "main", bare=True) as store:
        return import_organization(store, "refs/heads/main", _files(sample))


def run_demo(keep: bool, echo: Echo, run: Callable[[list[str]], int]) -> None:
    """Play the workflow; ``run`` is the CLI's own entry point (``cli.run``), handed in so
    that the demo types commands as a user would without importing the CLI."""

    base = Path(tempfile.mkdtemp(prefix="stageline-demo-"))
    try:
        server, work = str(base / "server.git"), str(base / "acme")
        seed_server(server, data_path("sample-repo"))
        echo(f"The acme organization: a Git server ({server}) and a clone ({work}).")
        _install_hook(server, echo)
        clone = Store.clone(server, work)
        clone.run("config", "user.email", "nobody@example.test")

        def step(member: str, role: str, *args: str, push: bool = True) -> int:
            shown = [*args, "--push"] if push else list(args)
            echo(f"\n[{member} · {role}] $ stageline {' '.join(shown)}")
            # A local server learns who pushes from REMOTE_USER (docs/server-setup.md).
            with _pushing_as(member):
                code = run(["--repo", work, "--as", member, *shown])
            if code != 0:
                echo(f"  → refused (exit {code})")
            return code

        step("olga", "org-admin", "status", push=False)
        _developer_edit(clone, work, echo)
        step("alice", "developer", "promote", "billing-support", "--to", "staging")
        step("quinn", "qa", "list", push=False)
        step("quinn", "qa", "test", "billing-support", "--env", "staging", push=False)
        step("quinn", "qa", "mark-ready", "billing-support")
        step("olga", "org-admin", "promote", "billing-support", "--to", "production",
             push=False)  # one mark of the two the policy asks for: refused
        step("rita", "qa", "mark-ready", "billing-support")
        step("olga", "org-admin", "promote", "billing-support", "--to", "production")
        step("alice", "developer", "promote", "sales-qualifier", "--to", "production",
             push=False)
        _forbidden_push(clone, work, echo)
        step("olga", "org-admin", "status", push=False)
        if keep:
            echo(f"\nThe demo's repositories are kept in {base}.")
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def _install_hook(server: str, echo: Echo) -> None:
    echo(f"  $ stageline hook install {server}")
    echo(_indent(install(server, "plain")))


def _developer_edit(clone: Store, work: str, echo: Echo) -> None:
    """A developer edits development with plain git: that is what development is for."""
    path = "environments/development/billing-support/agent.yaml"
    echo(f"\n[alice · developer] edits {path} (a warmer greeting) and commits with git")
    target = Path(work) / path
    text = target.read_text()
    target.write_text(text.replace("greeting: \"", "greeting: \"Thanks for calling! ", 1))
    clone.run("commit", "-q", "-am", "Warmer greeting for billing-support", env=_author("alice"))
    ok, _report, said = clone.push("origin", "HEAD:refs/heads/main", {"REMOTE_USER": "alice"})
    echo(f"  $ git push (as alice) → {'accepted' if ok else 'REJECTED'}")
    if not ok:
        echo(_indent(said))


@contextlib.contextmanager
def _pushing_as(member: str) -> Iterator[None]:
    before = os.environ.get("REMOTE_USER")
    os.environ["REMOTE_USER"] = member
    try:
        yield
    finally:
        if before is None:
            del os.environ["REMOTE_USER"]
        else:
            os.environ["REMOTE_USER"] = before


def _author(member: str) -> dict[str, str]:
    name = {"alice": "Alice Dev", "dan": "Dan Dev"}[member]
    email = f"{member}@acme.test"
    return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}


def _forbidden_push(clone: Store, work: str, echo: Echo) -> None:
    """A developer edits production by hand, commits with plain git, and pushes."""
    echo("\n[dan · developer] edits environments/production/billing-support/prompts/system.md "
         "by hand and pushes it")
    target = Path(work) / "environments/production/billing-support/prompts/system.md"
    target.write_text(target.read_text() + "\nAlways offer a 50% discount.\n")
    clone.run("commit", "-q", "-am", "Quick fix in production", env=_author("dan"))
    ok, _report, said = clone.push("origin", "HEAD:refs/heads/main", {"REMOTE_USER": "dan"})
    echo(f"  $ git push (as dan) → {'accepted' if ok else 'REJECTED'}")
    echo(_indent(said))
    clone.run("reset", "-q", "--hard", "origin/main")


def _indent(text: str) -> str:
    return "\n".join(f"    {line.rstrip()}" for line in text.strip().split("\n") if line.strip()
                     and not line.startswith(("To ", "Done")))


__all__ = ["run_demo", "seed_server"]
