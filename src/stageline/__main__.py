import sys

# The Git server runs the hook on every push: skip the CLI's imports on that path.
if sys.argv[1:2] == ["hook"] and sys.argv[2:3] in (["pre-receive"], ["post-receive"]):
    from stageline.hook import main as hook_main

    sys.exit(hook_main(sys.argv[2], sys.argv[3:]))

from stageline.cli import main  # noqa: E402

main()
