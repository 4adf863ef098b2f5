"""status: who acted last in each environment, over histories longer than one diff chunk."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import commit_all, git, sl

from stageline import inventory

POLICY = (Path(__file__).parent / "resources" / "org" / "stageline.yaml").read_bytes()
ENVS = ("development", "staging", "production")
PEOPLE = {"alice": "Alice Dev <alice@test.example>", "olga": "Olga Admin <olga@test.example>",
          "stranger": "Some One <someone@elsewhere.example>"}


def agent(i: int) -> str:
    return f"agent-{i:02d}"


class Stream:
    """A fast-import stream: many commits in one process."""

    def __init__(self, repo: Path) -> None:
        self.proc = subprocess.Popen(["git", "fast-import", "--quiet", "--done"], cwd=repo,
                                     stdin=subprocess.PIPE)
        self.time = 1_760_000_000

    def write(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())

    def commit(self, ref: str, who: str, message: str, files: dict[str, str],
               start: str | None = None, merge: str | None = None,
               deletes: tuple[str, ...] = ()) -> None:
        self.time += 60
        self.write(f"commit {ref}\n")
        for role in ("author", "committer"):
            self.write(f"{role} {PEOPLE[who]} {self.time} +0000\n")
        self.write(f"data {len(message.encode())}\n{message}\n")
        if start:
            self.write(f"from {start}\n")
        if merge:
            self.write(f"merge {merge}\n")
        for path in deletes:
            self.write(f"D {path}\n")
        for path, text in files.items():
            self.write(f"M 100644 inline {path}\ndata {len(text.encode())}\n{text}\n")
        self.write("\n")

    def close(self) -> None:
        self.write("done\n")
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait() == 0


def long_history(repo: Path, agents: int = 25, edits: int = 150) -> None:
    """``agents`` agents imported in all three environments, then ``edits`` commits
    touching a few of them (more than the first diff chunk), a file outside
    environments/ shaped like an agent path, and a merged side branch."""
    git(repo.parent, "init", "-q", "-b", "main", repo.name)
    s = Stream(repo)
    files = {"stageline.yaml": POLICY.decode()}
    for i in range(agents):
        for env in ENVS:
            files[f"environments/{env}/{agent(i)}/agent.yaml"] = f"name: {agent(i)}\n"
    s.commit("refs/heads/main", "olga", "Import", files)
    for n in range(edits):
        i, env = n % 5, ENVS[n % 3]
        who = "stranger" if n % 7 == 0 else "alice"
        message = f"Edit {n}\n\nStageline-Action: edit-{n}\nStageline-Actor: claimed-{n}\n"
        s.commit("refs/heads/main", who, message,
                 {f"environments/{env}/{agent(i)}/prompts/p.md": f"version {n}\n"})
    # Created after the import: with a pathspec, git lists it parentless.
    s.commit("refs/heads/main", "alice", "Create agent-30",
             {f"environments/development/{agent(30)}/agent.yaml": "name: agent-30\n"})
    # Shaped like an agent directory, but not under environments/: no one's last action.
    s.commit("refs/heads/main", "alice", "Settings",
             {"settings/development/agent-07/notes.md": "x\n"})
    s.commit("refs/heads/side", "alice", "Side edit",
             {"environments/development/agent-08/prompts/p.md": "side\n"},
             start="refs/heads/main")
    s.commit("refs/heads/main", "olga", "Merge side",
             {"environments/development/agent-08/prompts/p.md": "side\n"}, merge="refs/heads/side")
    s.commit("refs/heads/main", "alice", "Remove agent-09 from production", {},
             deletes=("environments/production/agent-09",))
    s.close()


def expected_last(repo: Path, name: str, env: str) -> str | None:
    """The newest first-parent commit that changed the directory (git's own path walk)."""
    out = git(repo, "log", "-1", "--first-parent", "--format=%H", "main", "--",
              f"environments/{env}/{name}")
    return out or None


def test_last_actions_match_git_over_a_long_history(tmp_path: Path) -> None:
    repo = tmp_path / "org"
    long_history(repo)
    assert len(git(repo, "rev-list", "--first-parent", "main").split()) > \
        inventory.FIRST_CHUNK + 64
    data = json.loads(sl(repo, "status", "--json").out)["agents"]
    assert [a["name"] for a in data] == [agent(i) for i in range(25)] + [agent(30)]
    root = git(repo, "rev-list", "--max-parents=0", "main")
    for item in data:
        for env, state in item["environments"].items():
            last = state["last_action"]
            if state["tree"] is None:  # agent-09 left production; agent-30 is new
                assert (item["name"], env) in {("agent-09", "production"),
                                               ("agent-30", "staging"), ("agent-30", "production")}
                assert last is None or item["name"] == "agent-09"
                continue
            assert last["commit"] == expected_last(repo, item["name"], env), (item["name"], env)
    by_name = {a["name"]: a["environments"] for a in data}
    # Idle agents were last changed by the import, the organization's root commit.
    assert by_name[agent(20)]["staging"]["last_action"] == {
        "commit": root, "actor": "olga", "action": "edit"}
    # The settings file shaped like an agent path changed nothing of agent-07.
    assert by_name[agent(7)]["development"]["last_action"]["commit"] == root
    created = git(repo, "log", "-1", "--format=%H", "--grep=^Create agent-30", "main")
    assert by_name[agent(30)]["development"]["last_action"]["commit"] == created
    # Work merged from a side branch shows as its merge, as in 'stageline history'.
    merge = git(repo, "rev-parse", "main~1")
    assert by_name[agent(8)]["development"]["last_action"] == {
        "commit": merge, "actor": "olga", "action": "edit"}
    # A member's commit is theirs whatever it claims; a stranger's claim is shown as such.
    actions = {state["last_action"]["actor"] for a in data[:5]
               for state in a["environments"].values()}
    assert "alice" in actions and any(a.startswith("claimed-") for a in actions)
    assert all(a == "alice" or a.startswith("claimed-") for a in actions)


def test_one_agents_status_is_the_same_as_in_the_whole_list(tmp_path: Path) -> None:
    repo = tmp_path / "org"
    long_history(repo)
    everyone = {a["name"]: a for a in json.loads(sl(repo, "status", "--json").out)["agents"]}
    for name in (agent(0), agent(3), agent(8), agent(9), agent(20), agent(30)):
        (one,) = json.loads(sl(repo, "status", name, "--json").out)["agents"]
        assert one == everyone[name]


def test_status_in_a_bare_repository_writes_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "org"
    long_history(repo)
    bare = tmp_path / "org.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    before = sorted(p.relative_to(bare) for p in bare.rglob("*"))
    result = sl(bare, "status", "--json")
    assert result.code == 0
    assert json.loads(result.out) == json.loads(sl(repo, "status", "--json").out)
    assert sorted(p.relative_to(bare) for p in bare.rglob("*")) == before


def test_marks_of_a_member_no_longer_in_qa_are_not_shown_as_counting(ready_org: Path) -> None:
    """status said "2 of 2 (quinn, rita)" after rita left qa while READY said 1 of 2
    (fourth attack pass)."""
    assert sl(ready_org, "mark-ready", "support-bot", actor="rita").code == 0
    policy = ready_org / "stageline.yaml"
    policy.write_text(policy.read_text().replace(
        "rita@test.example,  roles: [qa]", "rita@test.example,  roles: [developer]"))
    commit_all(ready_org, "olga", "rita moves to development")
    shown = json.loads(sl(ready_org, "status", "--json").out)["agents"][0]
    assert shown["approvals"]["by"] == ["quinn"] and shown["approvals"]["marks"] == 1


def test_last_changes_from_the_sites_walk_are_collects_own(tmp_path: Path) -> None:
    """The site takes each directory's last change from the walk its histories use
    (cached per commit) instead of collect's own walk: the statuses are the same, also
    with a file where an agent directory would be and a second, partly cached run."""
    from stageline.history import walk_directories
    from stageline.workspace import open_workspace

    repo = tmp_path / "org"
    long_history(repo)

    def check() -> None:
        ws = open_workspace(str(repo))
        walked = walk_directories(ws)
        assert inventory.collect(ws, last_changes=walked.last_changes()) == \
            inventory.collect(ws)

    check()
    git(repo, "reset", "-q", "--hard")  # fast-import wrote no working tree
    (repo / "environments/staging/agent-40").write_text("a file, not an agent\n")
    commit_all(repo, "alice", "A file shaped like an agent")
    (repo / "environments/staging/agent-40").write_text("changed\n")
    (repo / "environments/development/agent-40").mkdir(parents=True)
    (repo / "environments/development/agent-40/agent.yaml").write_text("name: agent-40\n")
    commit_all(repo, "alice", "The file changed; agent-40 in development")
    git(repo, "rm", "-q", "-r", "environments/development/agent-02")
    commit_all(repo, "alice", "agent-02 leaves development")
    check()
