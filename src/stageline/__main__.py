"""``python -m stageline`` and the installed ``stageline`` command.

This module decides what to import: the Git server runs the hook on every push,
and ``--version`` needs nothing but the version, so neither pays for the CLI's
imports (click alone costs more than the interpreter's own start). Everything
else goes to the click CLI in ``stageline.cli``.
"""

import sys

VERSION_TEXT = "stageline, version {}"  # click's version_option, as `stageline --version` prints it


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["hook"] and args[1:2] in (["pre-receive"], ["post-receive"]) \
            and not {"-h", "--help"} & set(args):
        # The shim runs Python with -E (no PYTHONPATH and the like from a pusher's
        # environment, which a local push passes on); zoneinfo reads PYTHONTZPATH itself,
        # and the windows' time zones are the server's.
        import os

        os.environ.pop("PYTHONTZPATH", None)
        from stageline.server.hooks import main as hook_main

        sys.exit(hook_main(args[1], args[2:]))
    if args == ["--version"]:
        from stageline import __version__

        print(VERSION_TEXT.format(__version__))
        sys.exit(0)
    from stageline.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
