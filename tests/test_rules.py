"""``rules.judge_commit``, table-driven: facts in, violations out, in milliseconds. Each
rule family also has a real push through the hook (test_hook.py, test_attacks.py); here
are the cases in full, without git."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import RESOURCES

from stageline import rules
from stageline.approval import Approval, Mark
from stageline.git.walk import Change
from stageline.policy import Policy, parse_policy

POLICY = parse_policy((RESOURCES / "org/stageline.yaml").read_bytes())
TWO = Policy(**{**POLICY.__dict__, "approvals_required": 2})
A, B, C = "a" * 40, "b" * 40, "c" * 40
EMPTY = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
DEV, STG, PRD = ("environments/development/bot", "environments/staging/bot",
                 "environments/production/bot")


def file(path: str, new_mode: str = "100644", old_mode: str = "100644",
         new: str = B) -> Change:
    status = "A" if old_mode == "000000" else "D" if new_mode == "000000" else "M"
    return Change(path, old_mode, new_mode, A, new, status)


def directory(path: str, new: str = B, old_mode: str = "040000",
              new_mode: str = "040000") -> Change:
    return file(path, new_mode, old_mode, new)


def record(*markers: str, tree: str = B) -> Approval:
    return Approval("bot", tree, tuple(Mark(m, "2026-12-01T00:00:00Z") for m in markers))


def facts(changes: list[Change], author: str = "alice", parents: int = 1,
          trees: dict[tuple[str, str], str | None] | None = None,
          approvals: dict[str, Approval | str | None] | None = None,
          **extra: Any) -> rules.CommitFacts:
    return rules.CommitFacts(C, parents, f"{author}@test.example", extra.pop("trailers", {}),
                             tuple(changes), rules.touched(changes), trees or {},
                             approvals or {}, empty_tree=EMPTY, branch="refs/heads/main",
                             **extra)


# (case, facts, pusher, policy, what the first violation says; None: allowed)
CASES: list[tuple[str, rules.CommitFacts, str | None, Policy, str | None]] = [
    ("a developer edits development",
     facts([directory(DEV), file(f"{DEV}/agent.yaml")]), "alice", POLICY, None),
    ("QA edits development",
     facts([file(f"{DEV}/agent.yaml")], "quinn"), "quinn", POLICY, "may not edit development"),
    ("a developer pushes a QA member's edit",
     facts([file(f"{DEV}/agent.yaml")], "quinn"), "alice", POLICY, "the author quinn"),
    ("staging copied from development",
     facts([file(f"{STG}/agent.yaml")], trees={("development", "bot"): B,
                                                ("staging", "bot"): B}), "alice", POLICY, None),
    ("staging edited by hand",
     facts([file(f"{STG}/agent.yaml")], trees={("development", "bot"): A,
                                                ("staging", "bot"): B}), "alice", POLICY,
     "staging must be an exact copy of development"),
    ("a promotion to staging that keeps the approval",
     facts([file(f"{STG}/agent.yaml")], trees={("development", "bot"): B, ("staging", "bot"): B},
           approvals={"bot": record("quinn")}), "alice", POLICY, "must delete the agent's approval"),
    ("production shipped with an approval",
     facts([file(f"{PRD}/agent.yaml")], "olga", trees={("staging", "bot"): B,
                                                        ("production", "bot"): B},
           approvals={"bot": record("quinn")}), "olga", POLICY, None),
    ("production shipped by its marker",
     facts([file(f"{PRD}/agent.yaml")], "sam", trees={("staging", "bot"): B,
                                                       ("production", "bot"): B},
           approvals={"bot": record("sam")}), "sam", POLICY, "separation of duties"),
    ("production shipped by an earlier marker",
     facts([file(f"{PRD}/agent.yaml")], "sam", trees={("staging", "bot"): B,
                                                       ("production", "bot"): B},
           approvals={"bot": record("sam", "rita")}), "sam", POLICY, "separation of duties"),
    ("production with one mark of two",
     facts([file(f"{PRD}/agent.yaml")], "olga", trees={("staging", "bot"): B,
                                                        ("production", "bot"): B},
           approvals={"bot": record("quinn")}), "olga", TWO, "approvals 1 of 2 (quinn)"),
    ("production with two marks of two",
     facts([file(f"{PRD}/agent.yaml")], "olga", trees={("staging", "bot"): B,
                                                        ("production", "bot"): B},
           approvals={"bot": record("quinn", "rita")}), "olga", TWO, None),
    ("a mark by someone who is no member",
     facts([file(f"{PRD}/agent.yaml")], "olga", trees={("staging", "bot"): B,
                                                        ("production", "bot"): B},
           approvals={"bot": record("ghost")}), "olga", POLICY, "ghost does not hold qa now"),
    ("production by a developer",
     facts([file(f"{PRD}/agent.yaml")], trees={("staging", "bot"): B, ("production", "bot"): B},
           approvals={"bot": record("quinn")}), "alice", POLICY, "may not push to production"),
    ("a first mark",
     facts([file("approvals/bot.yaml", old_mode="000000")], "quinn",
           trees={("staging", "bot"): B}, approvals={"bot": record("quinn")}),
     "quinn", POLICY, None),
    ("a second mark",
     facts([file("approvals/bot.yaml")], "rita", trees={("staging", "bot"): B},
           approvals={"bot": record("quinn", "rita")},
           previous_approvals={"bot": record("quinn")}), "rita", POLICY, None),
    ("a mark that drops another",
     facts([file("approvals/bot.yaml")], "rita", trees={("staging", "bot"): B},
           approvals={"bot": record("rita")}, previous_approvals={"bot": record("quinn")}),
     "rita", POLICY, "must add rita's own mark"),
    ("a mark for another staging tree",
     facts([file("approvals/bot.yaml", old_mode="000000")], "quinn",
           trees={("staging", "bot"): A}, approvals={"bot": record("quinn")}), "quinn", POLICY,
     "not for the staging tree of the same commit"),
    ("a mark pushed by someone else",
     facts([file("approvals/bot.yaml", old_mode="000000")], "quinn",
           trees={("staging", "bot"): B}, approvals={"bot": record("quinn")}), "rita", POLICY,
     "is pushed by rita"),
    ("a withdrawn mark",
     facts([file("approvals/bot.yaml", new_mode="000000")], "quinn",
           approvals={"bot": None}, previous_approvals={"bot": record("quinn")}),
     "quinn", POLICY, None),
    ("a mark withdrawn by another",
     facts([file("approvals/bot.yaml", new_mode="000000")], "rita",
           approvals={"bot": None}, previous_approvals={"bot": record("quinn")}),
     "rita", POLICY, "withdrawn by the QA member whose mark it alone holds"),
    ("a merge that changes staging",
     facts([file(f"{STG}/agent.yaml")], parents=2, trees={("development", "bot"): B,
                                                           ("staging", "bot"): B}),
     "alice", POLICY, "a merge commit may not change staging"),
    ("an empty directory in production",
     facts([directory(PRD, new=EMPTY, old_mode="000000")], "olga"), "olga", POLICY,
     "an empty directory"),
    ("a symlink in development",
     facts([file(f"{DEV}/link", new_mode="120000", old_mode="000000")]), "alice", POLICY,
     "a symlink"),
    ("a misplaced file", facts([file("environments/development/x")]), "alice", POLICY,
     "only agent directories"),
    ("CI by a developer", facts([file(".github/workflows/ci.yml")]), "alice", POLICY,
     "only org-admins may"),
    ("a policy that unprotects its branch",
     facts([file("stageline.yaml")], "olga",
           policy_blob=b"organization: x\nprotected_branches: [other]\n"
                       b"members: {olga: {email: olga@test.example, roles: [org-admin]}}\n"),
     "olga", POLICY, "stops protecting main"),
    ("a secret", facts([file(f"{DEV}/agent.yaml")], secrets=((f"{DEV}/agent.yaml",
                                                               "a private key"),)),
     "alice", POLICY, "this looks like a private key"),
    ("a trailer that lies about the actor",
     facts([file(f"{DEV}/agent.yaml")], trailers={"Stageline-Actor": "olga"}), "alice", POLICY,
     "Stageline-Actor claims 'olga'"),
    ("a malformed object", facts([file(f"{DEV}/agent.yaml")], malformed=((None, "bad"),)),
     "alice", POLICY, "bad"),
    ("an author who is no member", facts([file("README.md")], "mallory"), "alice", POLICY,
     "is not a member"),
]


@pytest.mark.parametrize(("case", "given", "pusher", "policy", "says"), CASES,
                         ids=[c[0] for c in CASES])
def test_judge_commit(case: str, given: rules.CommitFacts, pusher: str | None, policy: Policy,
                      says: str | None) -> None:
    violations = rules.judge_commit(given, policy, policy.member(pusher) if pusher else None)
    if says is None:
        assert violations == [], violations
    else:
        assert violations and says in violations[0].line(), violations


def test_many_paths_breaking_one_rule_are_one_violation() -> None:
    changes = [file(f"{PRD}/f{i}.md") for i in range(5)]
    violations = rules.judge_commit(facts(changes, trees={("staging", "bot"): B,
                                                          ("production", "bot"): B},
                                          approvals={"bot": record("quinn")}),
                                    POLICY, POLICY.member("alice"))
    assert len(violations) == 1  # one line, not one per file
    assert all("(and 4 more paths)" in v.rule for v in violations)
