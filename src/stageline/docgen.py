"""The CLI reference, ``docs/cli.md``, generated from the click commands.

    python -m stageline.docgen --output docs/cli.md

Every command of the ``stageline`` group (sub-groups included) is rendered in
sorted order with its ``--help`` text at a fixed width, so the file depends on
the code alone, not on the terminal that ran it; a test regenerates it and
compares. The ``--json`` shapes below are the documented, stable output of the
data commands (keys may be added, never renamed); a test checks every command
with ``--json`` has one, and that the real output has these keys.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

# Wide enough for the option tables, narrow enough for a diff: fixed, whatever the terminal.
WIDTH = 88

_OUTCOME = """{
  "action": "promote-to-staging",
  "agent": "support-bot",
  "commit": "<id of the new commit, or null: nothing to do, or --dry-run>",
  "summary": "promoted support-bot to staging.",
  "dry_run": false,
  "would_commit": null,
  "pushed": "<true only when --push pushed it and the server accepted it>",
  "push": {"accepted": true, "server": "<the server's verdict in one sentence>"}
}"""

_DRY_RUN = """{
  "action": "promote-to-staging",
  "agent": "support-bot",
  "commit": null,
  "summary": "would commit 'Promote support-bot to staging' on main.",
  "dry_run": true,
  "would_commit": {
    "ref": "refs/heads/main",
    "parent": "<the branch's tip>",
    "tree": "<the new commit's tree>",
    "author": {"name": "Alice Dev", "email": "alice@acme.test"},
    "message": "Promote support-bot to staging\\n\\nStageline-Action: promote-to-staging\\n...",
    "signed_with": "<SHA256:… of the key git would sign with, or null: no signature required>",
    "changes": [{"path": "environments/staging/support-bot/agent.yaml",
                 "status": "added|modified|deleted"}]
  }
}"""

JSON_SHAPES: dict[str, str] = {
    "status": """{
  "branch": {"name": "main", "upstream": "origin/main|null", "ahead": 0, "behind": 0},
  "agents": [{
    "name": "support-bot",
    "environments": {
      "development": {"tree": "<id>|null",
                      "last_action": {"commit": "<id>", "actor": "alice",
                                      "action": "create-agent"}},
      "staging": {"tree": "<id>|null", "last_action": null},
      "production": {"tree": "<id>|null", "last_action": null}
    },
    "staging_equals_development": true,
    "production_equals_staging": false,
    "ready_for_production": false,
    "marked_by": "<member id>|null",
    "approvals": {"marks": 1, "required": 2, "by": ["quinn"]},
    "blocked_by": ["approvals 1 of 2 (quinn)"],
    "tests": {"passed": 3, "failed": 0}
  }]
}""",
    "list": """{
  "agents": [{
    "name": "support-bot",
    "environments": {"staging": {"tree": "<id>"}},
    "ready_for_production": true,
    "approvals": {"marks": 2, "required": 2, "by": ["quinn", "rita"]}
  }]
}""",
    "history": """{
  "agent": "support-bot",
  "environment": "production",
  "versions": [{"commit": "<id>", "tree": "<id>|null", "action": "promote|rollback|edit|...",
                "actor": "<member id>|null", "time": "<ISO 8601>",
                "override": "<an org-admin's reason for pushing through a window>|null"}]
}""",
    "diff": """{
  "agent": "support-bot",
  "from": {"label": "staging", "commit": "<id>", "tree": "<id>|null"},
  "to": {"label": "development", "commit": "<id>", "tree": "<id>|null"},
  "identical": false,
  "files": [{"path": "agent.yaml", "status": "added|removed|modified", "added": 1,
             "removed": 1, "binary": false, "mode": "<old> → <new>, when it changed|null",
             "keys": [{"key": "model.name", "kind": "added|removed|changed",
                       "old": "gpt-4o-mini", "new": "gpt-4o"}]}]
}""",
    "log": """{
  "events": [{"commit": "<id>", "time": "<ISO 8601>", "action": "promote-to-staging",
              "agent": "support-bot|null", "actor": "<member id>|null", "tree": "<id>|null",
              "pusher": "<login>|null"}]
}""",
    "validate": """{
  "environment": "development",
  "agents": [{"name": "support-bot", "valid": false,
              "findings": [{"agent": "support-bot", "severity": "error|warning",
                            "file": "agent.yaml", "line": 3,
                            "message": "..."}]}]
}""",
    "test": """{
  "agent": "support-bot",
  "environment": "development",
  "passed": 3,
  "failed": 1,
  "tests": [{"name": "refund request", "file": "tests/refund.yaml", "passed": false,
             "failures": ["..."], "transcript": ["user: ...", "bot: ..."]}]
}""",
    "verify": """{
  "ref": "refs/heads/main",
  "range": "OLD..NEW",
  "pusher_checked": true,
  "signatures_required": "none|actions|all",
  "violations": [{"commit": "<id>|null", "path": "<path>|null", "rule": "...",
                  "fix": "..."}]
}""",
    "keys list": """{
  "require": "none|actions|all",
  "keys": [{"holder": "olga", "kind": "member|service account", "type": "ssh-ed25519",
            "fingerprint": "SHA256:...", "comment": "olga-laptop", "revoked": false}]
}""",
    "keys check": """{
  "member": "olga",
  "require": "none|actions|all",
  "key": "<SHA256:... of the key git signs with>|null",
  "from": "<where git takes it from: user.signingkey's file>",
  "problem": "<what to configure>|null"
}""",
    "audit": """{
  "ref": "main",
  "from": "<the trusted root commit>",
  "tip": "<the branch's tip>",
  "commits": 120,
  "violations": [{"commit": "<id>", "path": "<path>|null", "rule": "...", "fix": "..."}]
}""",
    "export": """{
  "ref": "refs/heads/main",
  "commit": "<id>",
  "environment": "production",
  "format": "stageline.bundle/1",
  "out": "<DIR>",
  "agents": [{"agent": "support-bot", "tree": "<id>", "sha256": "<hex>",
              "path": "<DIR>/support-bot.json", "written": true}],
  "removed": ["<DIR>/retired-bot.json"]
}""",
    "promote": _OUTCOME,
    "mark-ready": _OUTCOME,
    "rollback": _OUTCOME,
    "agent new": _OUTCOME,
    "init": _OUTCOME,
}

_INTRO = """\
# Command reference

<!-- Generated by `python -m stageline.docgen --output docs/cli.md` from the commands
themselves; edit their help texts, then run it again (a test fails while this file is
stale). -->

Every command, with the text of its `--help`. The workflow behind them is in
[concepts.md](concepts.md) and [workflow.md](workflow.md).

**Exit codes:** 0 done (or nothing to do), 1 a check failed, 2 usage error, 3 permission
denied, 4 blocked by workflow state, 5 repository or configuration error. Every failure
is one sentence on stderr.

**`--json`.** The commands whose output is data take `--json` and print one JSON document
on stdout, whose shape is shown under the command: keys may be added in later versions,
never renamed or removed. The document is indented on a terminal and one compact line
otherwise (a pipe, a file): for 10,000 agents' `status` that is half the bytes, written
by the standard library's C encoder. `log --format jsonl` prints one object per line
instead. `schema` prints JSON Schema and needs no flag; `demo`, `hook install` and
`hook uninstall` print messages for people. The commands that commit (`init`,
`agent new`, `promote`, `mark-ready`, `rollback`) print their outcome: `commit` is the
new commit, or null when there was nothing to do (`summary` says why). `validate`,
`test` and `verify` print their document also when their check fails (exit 1); a command
refused with exit 2 to 5 prints nothing on stdout, and the sentence on stderr says why.

<a id="outcome"></a>
The outcome of a command that commits, with `--json`:

```json
{_OUTCOME}
```

and with `--dry-run --json`:

```json
{_DRY_RUN}
```

**`--dry-run`** (`agent new`, `promote`, `mark-ready`, `rollback`) applies every check of
the real command (roles, workflow state, validation, conversation tests, uncommitted
changes in the way, with the same exit codes) and prints the commit it would make:
parent, tree, author, message with its trailers, and the files it changes. It moves no
ref and changes no index, working tree or `.git/stageline-pending.json`; the objects of
the would-be tree may be written to the object database, unreferenced (`git gc` prunes
them). The real command, run next on the same state, makes exactly this tree (except
`mark-ready`, whose approval records the time it is made).

**Colour** is used on a terminal only (status, diff, test results and errors), never
when `NO_COLOR` is set to a non-empty value or `TERM=dumb`; `FORCE_COLOR` or
`CLICOLOR_FORCE` (not `0`) colours a pipe too, for CI logs that show it. **Progress** (`verify` of a
long range) is drawn on stderr only when stderr is a terminal, and erased when done.

**Shell completion** comes from click: commands, options and agent names.

```sh
# bash (~/.bashrc)
eval "$(_STAGELINE_COMPLETE=bash_source stageline)"
# zsh (~/.zshrc)
eval "$(_STAGELINE_COMPLETE=zsh_source stageline)"
# fish (~/.config/fish/completions/stageline.fish)
_STAGELINE_COMPLETE=fish_source stageline | source
```

To avoid running stageline at every shell start, save the script once
(`_STAGELINE_COMPLETE=bash_source stageline > ~/.stageline-complete.bash`) and source
that file instead.
"""


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path under ``command``, sorted, groups before their commands."""
    yield path
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=path[-1] if path else "stageline")
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from walk(sub, (*path, name))


def context(root: click.Command, path: tuple[str, ...]) -> click.Context:
    """The context ``stageline PATH --help`` would have (its context settings included),
    at the fixed width; nothing is parsed or run."""
    fixed: dict[str, Any] = {"terminal_width": WIDTH, "max_content_width": WIDTH,
                             "resilient_parsing": True}
    ctx = root.make_context("stageline", [], **fixed)
    for name in path:
        group = ctx.command
        assert isinstance(group, click.Group)
        sub = group.get_command(ctx, name)
        assert sub is not None
        ctx = sub.make_context(name, [], parent=ctx, **fixed)
    return ctx


def takes_json(command: click.Command) -> bool:
    return any(isinstance(p, click.Option) and "--json" in p.opts for p in command.params)


def render(root: click.Command | None = None) -> str:
    if root is None:
        from stageline.cli import cli

        root = cli
    paths = list(walk(root))
    out = [_INTRO.replace("{_OUTCOME}", _OUTCOME).replace("{_DRY_RUN}", _DRY_RUN),
           "## Commands\n"]
    for path in paths[1:]:
        name = " ".join(path)
        out.append(f"- [`stageline {name}`](#{_anchor(name)})")
    out.append("")
    for path in paths:
        ctx = context(root, path)
        out.append(f"## {' '.join(('stageline', *path))}\n")
        out.append("```text\n" + ctx.get_help().rstrip() + "\n```\n")
        shape = JSON_SHAPES.get(" ".join(path))
        if shape is _OUTCOME:
            out.append("Output with `--json`: [the outcome of a command that commits]"
                       "(#outcome).\n")
        elif shape is not None:
            out.append("Output with `--json`:\n")
            out.append("```json\n" + shape + "\n```\n")
    return "\n".join(out).rstrip() + "\n"


def _anchor(name: str) -> str:
    return "stageline-" + name.replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stageline.docgen",
                                     description="Write the CLI reference (docs/cli.md).")
    parser.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    args = parser.parse_args(argv)
    text = render()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
