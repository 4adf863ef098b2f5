"""Every shell block the docs mark as runnable (``<!-- runnable ... -->`` on the line
before its fence) runs as written, in an empty directory, with this stageline on PATH:
the README's tour first. A block that stops working fails here, not in a new team's
first hour."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARK = re.compile(r"^<!-- runnable[^\n]*-->\n```(?:sh|bash)\n(.*?)^```", re.M | re.S)


def runnable_blocks() -> list[tuple[str, str]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        for n, match in enumerate(MARK.finditer(text), 1):
            found.append((f"{doc.relative_to(ROOT)}#{n}", match.group(1)))
    return found


BLOCKS = runnable_blocks()


def test_the_readme_tour_is_among_them() -> None:
    assert any(name.startswith("README.md") for name, _ in BLOCKS)


@pytest.mark.parametrize(("name", "script"), BLOCKS, ids=[name for name, _ in BLOCKS])
def test_a_runnable_block_runs_as_written(name: str, script: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("REMOTE_USER", "STAGELINE_ACTOR", "GIT_DIR", "GIT_WORK_TREE")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=tmp_path,
                          env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr


EXAMPLE = re.compile(r"^<!-- example: (\S+)[^\n]*-->\n```yaml\n(.*?)^```", re.M | re.S)


def test_the_agent_configuration_examples_make_a_valid_agent_that_passes_its_test(
        tmp_path: Path) -> None:
    """docs/agent-config.md's complete agent, its flow, its settings and its conversation
    test, written into a scratch organization: valid in every environment's terms, and
    the test passes (both failed once: an undeclared intent, nodes the flow lacked)."""
    from conftest import commit_all, make_org, sl

    files = dict(EXAMPLE.findall((ROOT / "docs/agent-config.md").read_text(encoding="utf-8")))
    assert {"agent.yaml", "flows/main.yaml", "tests/invoice-question.yaml",
            "settings/production.yaml"} <= set(files)
    org = make_org(tmp_path / "org")
    name = re.search(r"^name: (\S+)", files["agent.yaml"], re.M).group(1)  # type: ignore[union-attr]
    agent = org / "environments/development" / name
    for path, text in files.items():
        target = org / path if path.startswith("settings/") else agent / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (agent / "prompts").mkdir()
    (agent / "prompts/system.md").write_text("You answer billing questions.\n")
    (agent / "knowledge").mkdir()
    (agent / "knowledge/pricing.md").write_text("Plans: basic, pro.\n")
    settings = (org / "settings/production.yaml").read_text()
    (org / "settings/development.yaml").write_text(settings)
    commit_all(org, "olga", "The documented agent")
    checked = sl(org, "validate", name)
    assert checked.code == 0, checked.out + checked.err
    assert "0 error(s), 0 warning(s)" in checked.out
    tested = sl(org, "test", name)
    assert tested.code == 0, tested.out + tested.err
    assert "1 passed, 0 failed" in tested.out
