"""The ``stageline`` command: parse, call one function, print. No rules here.

``base`` holds what the commands share; ``workflow`` the commands that commit,
``views`` those that read, ``server`` the server's and CI's, ``trust`` signing keys and
``audit``. Importing them registers
their commands on ``cli``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import click

from stageline.cli import server, trust, views, workflow  # noqa: F401 - they register commands
from stageline.cli.base import cli, paint
from stageline.errors import REPOSITORY, USAGE, StagelineError

__all__ = ["cli", "main", "run"]


@cli.command()
@click.option("--keep", is_flag=True, help="Keep the demo's directory and print where it is.")
def demo(keep: bool) -> None:
    """Play the whole workflow on a copy of the bundled sample organization."""
    from stageline.demo import run_demo

    run_demo(keep=keep, echo=click.echo, run=run)


# click 8.2 and later raise this for a group called without a command; earlier releases
# print the help themselves.
_HELP_ASKED: type[click.UsageError] = getattr(click.exceptions, "NoArgsIsHelpError",
                                              type("_Never", (click.UsageError,), {}))
_GLOBAL_OPTIONS = ("--repo", "--as")


def _globals_first(argv: list[str]) -> list[str]:
    """``--repo`` and ``--as`` are the group's options; a user may also write them after
    the command (``stageline status --as olga``): they are moved in front of it. Nothing
    after ``--`` is touched."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        item = argv[i]
        if item == "--":
            rest += argv[i:]
            break
        if item.partition("=")[0] in _GLOBAL_OPTIONS and "=" in item:
            front.append(item)
        elif item in _GLOBAL_OPTIONS and i + 1 < len(argv):
            front += argv[i:i + 2]
            i += 1
        else:
            rest.append(item)
        i += 1
    return front + rest


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(argv))


def run(argv: list[str] | None = None, echo_err: Callable[[str], None] | None = None) -> int:
    """Run the CLI and return its exit code; every failure is one sentence on stderr."""
    err = echo_err or (lambda text: click.echo(
        paint("stageline:", err=True, fg="red", bold=True) + text.removeprefix("stageline:"),
        err=True))
    args = _globals_first(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args=args, prog_name="stageline", standalone_mode=False)
        if isinstance(result, int):  # ctx.exit(code): click returns it instead of raising
            return result
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except _HELP_ASKED as exc:  # a bare 'stageline' or 'stageline agent': help, not an error
        click.echo(exc.ctx.get_help() if exc.ctx else cli.get_help(click.Context(cli)))
        return 0
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
