"""The demo plays the whole workflow on the bundled sample organization."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from conftest import sl

from stageline.errors import OK
from stageline.resources import data_path


def test_demo_plays_the_three_roles_and_ends_with_a_rejected_push() -> None:
    result = sl(None, "demo")
    assert result.code == OK, result.err
    out = result.out
    assert out.count("→ accepted") == 1  # alice's plain git push
    assert out.count("pushed to origin main: the server accepted it.") == 4
    assert "approvals 1 of 2 (quinn)" in result.err and "→ refused (exit 4)" in out
    assert "promoted billing-support to staging" in out
    assert "marked billing-support Ready for Production" in out
    assert "promoted billing-support to production" in out
    assert "→ refused (exit 3)" in out
    assert "git push (as dan) → REJECTED" in out
    assert "production must be an exact copy of staging" in out
    final = out.rsplit("$ stageline status", 1)[1]
    row = next(line for line in final.splitlines() if line.startswith("billing-support"))
    assert row.split()[1] == row.split()[2] == row.split()[3]  # dev = staging = production
    assert row.split()[4:] == ["yes", "2", "of", "2"]
    where = re.search(r"server \((.+?)/server\.git\)", out)
    assert where and not Path(where.group(1)).exists()


def test_demo_keep_leaves_the_repositories() -> None:
    result = sl(None, "demo", "--keep")
    assert result.code == OK
    kept = Path(re.search(r"kept in (\S+)\.$", result.out, re.M).group(1))  # type: ignore[union-attr]
    try:
        assert (kept / "server.git/hooks/pre-receive").exists()
        assert (kept / "acme/stageline.yaml").exists()
    finally:
        shutil.rmtree(kept)


def test_sample_organization_is_valid() -> None:
    sample = data_path("sample-repo")
    assert (sample / "stageline.yaml").exists()
    from stageline.policy import parse_policy

    policy = parse_policy((sample / "stageline.yaml").read_bytes())
    assert {r for m in policy.members.values() for r in m.roles} == {"developer", "qa",
                                                                       "org-admin"}
    agents = {p.name for p in (sample / "environments/development").iterdir()}
    assert len(agents) >= 3
    assert not (sample / "approvals").exists()
