"""The entry point: what `stageline --version`, `--help` and the hook import before answering."""

from __future__ import annotations

import subprocess
import sys

from conftest import sl

# Runs the installed command's entry point and reports, after it exits, which of the
# heavy modules were loaded.
PROBE = """
import atexit, sys
heavy = ("click", "yaml", "jsonschema", "jinja2", "cryptography", "stageline.cli",
         "stageline.actions")
atexit.register(lambda: print("loaded:", *[m for m in heavy if m in sys.modules],
                              file=sys.stderr))
sys.argv = ["stageline", *sys.argv[1:]]
from stageline.__main__ import main
main()
"""


def entry(*args: str, stdin: bytes = b"") -> tuple[int, str, list[str]]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], input=stdin,
                          capture_output=True)
    err = proc.stderr.decode()
    loaded = next(ln for ln in err.splitlines() if ln.startswith("loaded:")).split()[1:]
    return proc.returncode, proc.stdout.decode(), loaded


def test_version_answers_as_click_would_without_importing_it() -> None:
    code, out, loaded = entry("--version")
    assert code == 0
    assert loaded == []
    # The same text click's version option prints (reached here through --repo).
    assert out == sl(".", "--version").out == "stageline, version 0.1.0\n"


def test_help_is_clicks_and_loads_neither_yaml_nor_jsonschema() -> None:
    code, out, loaded = entry("--help")
    assert code == 0
    assert out == sl(None, "--help").out
    assert "Commands:" in out and "promote" in out
    assert "click" in loaded
    assert "yaml" not in loaded and "jsonschema" not in loaded and "jinja2" not in loaded
    assert "cryptography" not in loaded


def test_other_arguments_with_version_still_go_through_click() -> None:
    code, out, loaded = entry("--version", "status")
    assert "click" in loaded
    assert out == "stageline, version 0.1.0\n" and code == 0


def test_hook_path_skips_the_cli() -> None:
    code, _out, loaded = entry("hook", "pre-receive", "--bogus")
    assert code == 2  # an unexpected argument, said by the hook's own parser
    assert "click" not in loaded and "stageline.cli" not in loaded and "jinja2" not in loaded
    assert "cryptography" not in loaded  # imported only when a signature is checked


def test_unknown_command_is_a_usage_error_from_the_cli() -> None:
    code, _out, loaded = entry("no-such-command")
    assert code == 2
    assert "stageline.cli" in loaded
