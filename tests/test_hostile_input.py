"""Hostile input: whatever bytes reach a parser, the answer is a value or one sentence.

Part 1 is property-based (hypothesis): the YAML loader, the policy, approval records,
the hook's stdin, the validator and the path rules, fed arbitrary and structurally
generated input. Part 2 drives the CLI on real repositories with the classic hostile
files (a YAML bomb, deep nesting, 50 MB files, non-UTF-8 bytes, very long paths,
look-alike names, CRLF, SHA-256 object ids): each is a clear one-line error with the
documented exit code and nothing written, or it simply works.

A known bug is a strict xfail until it is fixed; a crash a property once found stays as an
``@example`` of that property.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import RESOURCES, Result, commit_all, git, make_org, sl, tree_files
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stageline import yamlsafe
from stageline.actions import import_organization
from stageline.approval import Approval, Mark
from stageline.approval import parse as parse_approval
from stageline.approval import text as approval_text
from stageline.errors import BLOCKED, CHECK_FAILED, OK, REPOSITORY, USAGE, UsageError
from stageline.git.store import Store
from stageline.layout import ENVIRONMENTS, is_agent_name
from stageline.policy import MEMBER_ID_RE, ROLES, Policy, PolicyError, is_branch_name, parse_policy
from stageline.rules import classify
from stageline.server.hooks import pre_receive
from stageline.server.judge import parse_updates
from stageline.validation import MAX_SCAN_BYTES, Finding, validate

DEV = "environments/development/support-bot"
STG = "environments/staging/support-bot"
PRD = "environments/production/support-bot"

# The suite's profile (conftest.py), and generated documents that may be large.
PROPERTY = settings(suppress_health_check=[*settings().suppress_health_check,
                                           HealthCheck.data_too_large])
SLOW_PROPERTY = PROPERTY


def one_line(text: str) -> bool:
    """One sentence on one line (``splitlines`` also splits on \\x85, \\u2028, ...)."""
    return len(text.strip().splitlines()) == 1


# -- strategies ----------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
# Keys YAML reads as other values than text when unquoted (on, null, 1).
KEYS = st.one_of(TEXT, TEXT, st.booleans(), st.none(), st.integers())
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT)


def documents(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(SCALARS, lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)), max_leaves=25)


DOCUMENTS = documents(TEXT)
# Edits that make a dumped document hostile.
TOKENS = ["\n", " ", "  ", "\t", ":", ": ", "- ", "? ", "[", "]", "{", "}", ",", "'", '"', "#",
          "&a ", "*a", "&b ", "*b", "<<: ", "<<: *a\n", "---\n", "...\n", "%YAML 1.1\n",
          "%TAG !e! tag:e.test,2000:\n", "|\n", ">-\n", "!!str ", "!!binary ", "!!omap ",
          "!!pairs ", "!!seq ", "!!null ", "!!python/object:os.system ", "!e!x ", "!local ",
          "!!bool ", "!!int ", "!!float ", "!!timestamp ", "!!set ", "!!map ", "on", "null",
          "0x" + "f" * 3600, "9" * 4301,
          "\\", "\x00", "\ufeff", "\u2028", "\x85", "\r\n", "\r", "~", "yes", "0x", "1e9999",
          "2001-12-14", "2001-13-45", ".inf", "\U0001f600", "'''", '"\\x"', '"\\ud800"']


@st.composite
def yamlish(draw: st.DrawFn, docs: st.SearchStrategy[Any] = DOCUMENTS) -> bytes:
    """A dumped document (block or flow style), then a few random edits."""
    doc = draw(docs)
    text = yaml.safe_dump(doc, default_flow_style=draw(st.sampled_from([None, True, False])),
                          allow_unicode=draw(st.booleans()), sort_keys=False)
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["insert", "delete", "duplicate", "indent"]))
        pos = draw(st.integers(0, len(text)))
        if op == "insert":
            text = text[:pos] + draw(st.sampled_from(TOKENS)) + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 8)):]
        else:
            lines = text.splitlines(keepends=True) or [""]
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i] if op == "duplicate" else "  " + lines[i])
            text = "".join(lines)
    return text.encode("utf-8")


def check_loaded(data: bytes) -> Any:
    try:
        return yamlsafe.load(data, "f.yaml")
    except yamlsafe.YamlError as exc:
        assert one_line(str(exc)), str(exc)
        assert str(exc).startswith("f.yaml "), str(exc)
        return exc


# -- yamlsafe.load -------------------------------------------------------------------


@PROPERTY
@given(st.binary(max_size=2000))
def test_yaml_load_of_arbitrary_bytes_is_a_value_or_a_yaml_error(data: bytes) -> None:
    check_loaded(data)


@PROPERTY
@given(st.text(max_size=500))
def test_yaml_load_of_arbitrary_text_is_a_value_or_a_yaml_error(text: str) -> None:
    check_loaded(text.encode("utf-8", "surrogatepass"))


@PROPERTY
@given(yamlish())
@example(b"a: &a [*a]\n")
@example(b"? [a]\n: b\n")
@example(b"{a: 1, a: 2}\n")
@example(b"<<: {[a]: 1}\n")
@example(b"x: !!python/name:os.system\n")
def test_yaml_load_of_mutated_documents_is_a_value_or_a_yaml_error(data: bytes) -> None:
    check_loaded(data)


@PROPERTY
@given(st.one_of(yamlish(documents(KEYS)), st.binary(max_size=500)))
@example(b"on: 1\nx: {2: a, null: b, 2001-01-01: c}\n<<: {k: v}\n")
def test_yaml_load_with_lines_is_load_and_places_every_key(data: bytes) -> None:
    """``load_with_lines`` (validate) and ``load`` (everything else) agree on every input,
    and every key path of the document, whatever its keys, has a line."""
    plain = check_loaded(data)
    try:
        value, lines = yamlsafe.load_with_lines(data, "f.yaml")
    except yamlsafe.YamlError as exc:
        assert isinstance(plain, yamlsafe.YamlError) and str(exc) == str(plain)
        return
    assert not isinstance(plain, yamlsafe.YamlError) and repr(value) == repr(plain)
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, (*where, k)) for k, v in item.items())
            assert all((*where, k) in lines for k in item), where
        elif isinstance(item, list):
            stack.extend((v, (*where, i)) for i, v in enumerate(item))


@PROPERTY
@given(st.lists(st.lists(st.sampled_from(["\n", "\r", "\r\n", "\x85", "\u2028", "\u2029"]),
                         min_size=1, max_size=3).map("".join), min_size=1, max_size=30),
       st.lists(st.integers(0, 40), max_size=10))
@example(["\r", "\n"], [])
def test_line_numbers_count_lines_as_yaml_does(breaks: list[str], extra: list[int]) -> None:
    """The secret scanner's and settings check's lines are the YAML parser's lines."""
    text = "".join(f"k{i:03d}: {i}{brk}" for i, brk in enumerate(breaks))
    _value, lines = yamlsafe.load_with_lines(text.encode(), "f.yaml")
    keys = [f"k{i:03d}" for i in range(len(breaks))]
    offsets = sorted({text.index(k) for k in keys} | {min(e, len(text)) for e in extra})
    numbered = dict(zip(offsets, yamlsafe.line_numbers(text, offsets), strict=True))
    assert [numbered[text.index(k)] for k in keys] == [lines[(k,)] for k in keys]
    assert all(numbered[o] == 1 + len(re.findall("\r\n|[\r\n\x85\u2028\u2029]", text[:o]))
               - (text[o - 1:o + 1] == "\r\n") for o in offsets)


@PROPERTY
@given(DOCUMENTS, st.sampled_from([None, True, False]))
def test_yaml_load_reads_back_what_safe_dump_wrote(doc: Any, flow: bool | None) -> None:
    # allow_unicode=False: with it, PyYAML's emitter writes a bare \x85 (NEL) that reads
    # back as a line break, a PyYAML round-trip bug that is not stageline's.
    text = yaml.safe_dump(doc, default_flow_style=flow)
    assert yamlsafe.load(text.encode(), "f.yaml") == doc


def _laughs(width: int, depth: int) -> tuple[bytes, int]:
    """A billion-laughs document and how many values expanding its aliases gives."""
    lines, nodes, total = [], 0, 1
    for i in range(depth):
        item = b"lol" if i == 0 else b"*l%d" % (i - 1)
        lines.append(b"l%d: &l%d [%s]\n" % (i, i, b", ".join([item] * width)))
        nodes = 1 + width * (1 if i == 0 else nodes)
        total += nodes
    return b"".join(lines), total


@PROPERTY
@given(st.integers(1, 12), st.integers(1, 9))
def test_alias_expansion_is_refused_exactly_beyond_the_bound(width: int, depth: int) -> None:
    data, total = _laughs(width, depth)
    result = check_loaded(data)
    if total > yamlsafe.MAX_NODES:
        assert isinstance(result, yamlsafe.YamlError) and "expands to more than" in str(result)
    else:
        assert isinstance(result, dict)


@PROPERTY
@given(st.integers(1, 3000), st.booleans())
def test_nesting_is_refused_exactly_beyond_the_bound(depth: int, mapping: bool) -> None:
    if mapping:  # the leaf value sits at ``depth``
        data, deepest = b"{a: " * depth + b"1" + b"}" * depth, depth
    else:  # the innermost (empty) list sits at ``depth - 1``
        data, deepest = b"[" * depth + b"]" * depth, depth - 1
    result = check_loaded(data)
    assert isinstance(result, yamlsafe.YamlError) == (deepest > yamlsafe.MAX_DEPTH)


# PyYAML's safe constructors raise KeyError/IndexError/AttributeError/TypeError on these
# standard tags; yamlsafe turns them into a YamlError like any other bad input.
@pytest.mark.parametrize("data", [
    b"!!bool maybe\n",                      # KeyError: 'maybe' (bool_values lookup)
    b"a: !!bool\n",                         # KeyError: ''
    b"!!timestamp yesterday\n",             # AttributeError: None.groupdict()
    b"!!int ''\n",                          # IndexError: value[0] on ''
    b"!!float ''\n",                        # IndexError
    b"a: !!set [1]\n",                      # TypeError in _StrictLoader.construct_mapping
    b"!!map [1]\n",                         # TypeError: cannot unpack a ScalarNode
    b"? !!set {a: 1}\n: 1\n",               # TypeError: seen.add(set) (``in`` did not raise)
], ids=["bool-maybe", "bool-empty", "timestamp", "int-empty", "float-empty", "set-of-seq",
        "map-of-seq", "set-as-key"])
def test_yaml_load_standard_tags_give_a_yaml_error(data: bytes) -> None:
    with pytest.raises(yamlsafe.YamlError):
        yamlsafe.load(data, "f.yaml")


# -- parse_policy ----------------------------------------------------------------------

MEMBER_IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,15}", fullmatch=True)
EMAILS = st.builds("{}@{}.{}".format, st.from_regex(r"[A-Za-z0-9._%+'-]{1,12}", fullmatch=True),
                   st.from_regex(r"[A-Za-z0-9-]{1,10}", fullmatch=True),
                   st.from_regex(r"[a-z]{2,5}", fullmatch=True))
NAMES = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="<>\n"),
                min_size=1, max_size=20).filter(str.strip)
BRANCHES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,10}(/[A-Za-z0-9][A-Za-z0-9_-]{0,10})?",
                         fullmatch=True).filter(lambda b: not b.startswith("refs/"))
ENV_VARS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda v: not v.upper().startswith("GIT_"))


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    """A valid policy document."""
    members = draw(st.lists(st.tuples(MEMBER_IDS, NAMES, EMAILS,
                                      st.lists(st.sampled_from(ROLES), min_size=1, max_size=4)),
                            min_size=1, max_size=6,
                            unique_by=(lambda m: m[0], lambda m: m[2].lower())))
    doc: dict[str, Any] = {
        "organization": draw(NAMES),
        "members": {mid: {"name": name, "email": email, "roles": roles}
                    for mid, name, email, roles in members},
    }
    if draw(st.booleans()):
        doc["protected_branches"] = [draw(st.sampled_from(["", "refs/heads/", " "])) + b
                                     for b in draw(st.lists(BRANCHES, min_size=1, max_size=3))]
    if draw(st.booleans()):
        doc["separation_of_duties"] = draw(st.booleans())
    if draw(st.booleans()):
        doc["identity"] = {"env": draw(st.lists(ENV_VARS, min_size=1, max_size=3))}
    return doc


def _dump(doc: Any) -> bytes:
    # Not allow_unicode: PyYAML then writes \x85 bare, which reads back as a line break.
    return yaml.safe_dump(doc, sort_keys=False).encode()


def _refused_policy(data: bytes) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(data)
    assert info.value.code == REPOSITORY
    assert one_line(info.value.message), info.value.message
    return info.value


@PROPERTY
@given(st.one_of(st.binary(max_size=1500), yamlish()))
def test_parse_policy_of_arbitrary_bytes_is_a_policy_or_exit_5(data: bytes) -> None:
    try:
        assert isinstance(parse_policy(data), Policy)
    except PolicyError as exc:
        assert exc.code == REPOSITORY and one_line(exc.message), exc.message


@PROPERTY
@given(policies())
def test_a_valid_generated_policy_round_trips(doc: dict[str, Any]) -> None:
    policy = parse_policy(_dump(doc))
    assert policy.organization == doc["organization"].strip()
    assert set(policy.members) == set(doc["members"])
    for mid, spec in doc["members"].items():
        member = policy.members[mid]
        assert member.roles == frozenset(spec["roles"])
        assert member.email == spec["email"]
        assert member.name == spec["name"].strip()
        assert policy.member_by_email(spec["email"].upper()) is member
    wanted = [b.strip().removeprefix("refs/heads/") for b in doc.get("protected_branches",
                                                                     ["main"])]
    assert policy.protected_branches == tuple(wanted)
    assert all(policy.is_protected(f"refs/heads/{b.upper()}") for b in wanted)
    assert policy.separation_of_duties is doc.get("separation_of_duties", True)
    if "identity" in doc:
        assert policy.identity_env == tuple(doc["identity"]["env"])


CORRUPTIONS = {
    "not-a-mapping": lambda d: [d],
    "no-organization": lambda d: {k: v for k, v in d.items() if k != "organization"},
    "blank-organization": lambda d: {**d, "organization": "  "},
    "list-organization": lambda d: {**d, "organization": [d["organization"]]},
    "no-branches": lambda d: {**d, "protected_branches": []},
    "pattern-branch": lambda d: {**d, "protected_branches": ["release/*"]},
    "tag-branch": lambda d: {**d, "protected_branches": ["refs/tags/v1"]},
    "lock-branch": lambda d: {**d, "protected_branches": ["main.lock"]},
    "no-members": lambda d: {**d, "members": {}},
    "bad-member-id": lambda d: {**d, "members": {**d["members"], "../x": {
        "email": "dotdot@evil.test", "roles": ["qa"]}}},
    "bad-email": lambda d: _first_member(d, email="not-an-email"),
    "shared-email": lambda d: {**d, "members": {**d["members"], "twin-" + "z" * 20: {
        **next(iter(d["members"].values())),
        "email": next(iter(d["members"].values()))["email"].upper()}}},
    "unknown-role": lambda d: _first_member(d, roles=["developer", "root"]),
    "no-roles": lambda d: _first_member(d, roles=[]),
    "roles-not-a-list": lambda d: _first_member(d, roles="qa"),
    "angle-name": lambda d: _first_member(d, name="Eve <eve@evil.test>"),
    "member-not-a-mapping": lambda d: _first_member(d, replace="developer"),
    "separation-not-bool": lambda d: {**d, "separation_of_duties": "maybe"},
    "identity-git-var": lambda d: {**d, "identity": {"env": ["GIT_PUSH_OPTION_0"]}},
    "identity-empty": lambda d: {**d, "identity": {"env": []}},
}


def _first_member(doc: dict[str, Any], replace: Any = None, **fields: Any) -> dict[str, Any]:
    members = dict(doc["members"])
    first = next(iter(members))
    members[first] = replace if replace is not None else {**members[first], **fields}
    return {**doc, "members": members}


@PROPERTY
@given(policies(), st.sampled_from(sorted(CORRUPTIONS)))
def test_a_corrupted_generated_policy_is_one_sentence_and_exit_5(doc: dict[str, Any],
                                                                 how: str) -> None:
    _refused_policy(_dump(CORRUPTIONS[how](doc)))


@pytest.mark.parametrize("data", [
    b"organization: acme\nmembers:\n  ? 0x" + b"f" * 4000 + b"\n  : {email: a@x.test, roles: [qa]}\n",
    b"organization: acme\nmembers: {a: {email: a@x.test, roles: [0x" + b"f" * 4000 + b"]}}\n",
], ids=["member-id", "role"])
def test_parse_policy_huge_integer_is_exit_5(data: bytes) -> None:
    _refused_policy(data)


@pytest.mark.parametrize("branch", ["refs/heads/", "ma\tin", "ma\nin", "-main", "HEAD",
                                    "a//b", "/main", ".main", "release/.x", "main.", "x@{1}",
                                    "a\\b", "ma\x7fin", "a.lock/b"],
                         ids=["empty", "tab", "newline", "dash", "head", "double-slash",
                              "leading-slash", "leading-dot", "component-dot", "trailing-dot",
                              "at-brace", "backslash", "del", "lock-component"])
def test_parse_policy_refuses_impossible_branch_names(branch: str) -> None:
    error = _refused_policy(_dump({"organization": "acme", "protected_branches": [branch],
                                   "members": {"a": {"email": "a@x.test", "roles": ["qa"]}}}))
    assert "is not a branch name" in error.message


BRANCH_TOKENS = ["a", "b", "/", ".", "..", "-", "@", "{", "}", "@{", "~", "^", ":", "?", "*",
                 "[", "]", "\\", " ", "\t", "\x7f", "\x01", "lock", ".lock", "HEAD", "refs/",
                 "\u00e9", "\u2028"]


@PROPERTY
@given(st.one_of(st.lists(st.sampled_from(BRANCH_TOKENS), max_size=8).map("".join),
                 st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                                blacklist_characters="\x00"), max_size=12)))
@example("@")
@example("a/@")
@example("x/.lock")
@example("refs/heads/x")
def test_is_branch_name_agrees_with_git_check_ref_format(tmp_path: Path, name: str) -> None:
    """The policy's branch rule is git's own (``git check-ref-format --branch``), except
    that names starting with refs/ name another kind of ref for stageline."""
    git_says = subprocess.run(["git", "check-ref-format", "--branch", name], cwd=tmp_path,
                              capture_output=True).returncode == 0
    assert is_branch_name(name) == (git_says and not name.startswith("refs/")), name


def test_a_branch_name_that_is_not_utf8_text_is_refused() -> None:
    # libyaml refuses a lone surrogate before the policy sees it; PyYAML's pure-Python
    # loader does not, and no ref name git reports could equal one.
    assert not is_branch_name("ma\ud800in")


# -- parse_approval ----------------------------------------------------------------------

APPROVAL_KEYS = ("agent", "staging_tree", "marked_by", "marked_at", "tests")
AGENT_NAMES = st.from_regex(r"[a-z0-9][a-z0-9-]{0,62}", fullmatch=True)
TREE_IDS = st.from_regex(r"[0-9a-f]{40}|[0-9a-f]{64}", fullmatch=True)
# Each field: what mark-ready writes, or anything a document can hold.
APPROVAL_FIELDS = {
    "agent": st.one_of(AGENT_NAMES, DOCUMENTS),
    "staging_tree": st.one_of(TREE_IDS, DOCUMENTS),
    "marked_by": st.one_of(MEMBER_IDS, DOCUMENTS),
    "marked_at": st.one_of(TEXT, st.datetimes(), st.dates(), DOCUMENTS),
    "tests": st.one_of(st.fixed_dictionaries({}, optional={
        "passed": st.one_of(st.integers(), DOCUMENTS), "failed": st.integers()}), DOCUMENTS),
}


def _check_approval(result: Approval | str) -> None:
    if isinstance(result, str):
        assert one_line(result), result
    else:
        assert isinstance(result, Approval)
        assert is_agent_name(result.agent)
        assert re.fullmatch(r"[0-9a-f]+", result.staging_tree)
        assert MEMBER_ID_RE.fullmatch(result.marked_by)
        assert isinstance(result.marked_at, str)
        assert result.tests_passed is None or (type(result.tests_passed) is int
                                               and result.tests_passed >= 0)


def _approvable(doc: dict[str, Any]) -> bool:
    """Whether ``doc`` has the shape of an approval (see ``parse_approval``)."""
    tests = {} if doc.get("tests") is None else doc["tests"]
    passed = tests.get("passed") if isinstance(tests, dict) else None
    return (isinstance(doc.get("agent"), str) and is_agent_name(doc["agent"])
            and isinstance(doc.get("staging_tree"), str)
            and bool(re.fullmatch(r"[0-9a-f]+", doc["staging_tree"]))
            and isinstance(doc.get("marked_by"), str)
            and bool(MEMBER_ID_RE.fullmatch(doc["marked_by"]))
            and isinstance(doc.get("marked_at", ""), (str, date))
            and isinstance(tests, dict)
            and (passed is None or (type(passed) is int and passed >= 0)))


@PROPERTY
@given(st.one_of(st.binary(max_size=1000), yamlish()))
def test_parse_approval_of_arbitrary_bytes_is_an_approval_or_a_sentence(data: bytes) -> None:
    _check_approval(parse_approval(data, "approvals/x.yaml"))


@PROPERTY
@given(st.fixed_dictionaries({}, optional=APPROVAL_FIELDS))
def test_parse_approval_accepts_exactly_the_records_of_the_right_shape(
        doc: dict[str, Any]) -> None:
    result = parse_approval(_dump(doc), "approvals/x.yaml")
    _check_approval(result)
    assert isinstance(result, Approval) == _approvable(doc), result
    if isinstance(result, Approval):
        assert (result.agent, result.staging_tree, result.marked_by) == (
            doc["agent"], doc["staging_tree"], doc["marked_by"])
        marked_at = doc.get("marked_at", "")
        assert result.marked_at == (marked_at if isinstance(marked_at, str)
                                    else marked_at.isoformat())


@PROPERTY
@given(st.from_regex(r"[a-z0-9][a-z0-9-]{0,62}", fullmatch=True),
       st.from_regex(r"[0-9a-f]{40}|[0-9a-f]{64}", fullmatch=True),
       st.lists(MEMBER_IDS, min_size=1, max_size=4, unique=True),
       st.text(alphabet=st.characters(max_codepoint=0xFFFF, blacklist_categories=("Cs", "Cc")),
               max_size=30),
       st.integers(0, 10**6))
@example("2024", "a" * 40, ["null"], "2024-01-01T00:00:00Z", 0)
@example("yes", "0" * 64, ["1e3", "null"], "~", 1)
def test_an_approval_written_by_stageline_reads_back(agent: str, tree: str, markers: list[str],
                                                     marked_at: str, passed: int) -> None:
    marks = tuple(Mark(m, marked_at) for m in markers)
    result = parse_approval(approval_text(agent, tree, marks, passed).encode(),
                            "approvals/x.yaml")
    assert result == Approval(agent, tree, marks, passed)


def test_a_record_without_approvals_is_the_one_mark_of_marked_by() -> None:
    record = parse_approval(b"agent: a\nstaging_tree: b\nmarked_by: quinn\n"
                            b"marked_at: 2026-11-28T14:00:00Z\n", "approvals/a.yaml")
    assert isinstance(record, Approval)
    assert record.markers == ("quinn",) and record.marked_at.startswith("2026-11-28")


@pytest.mark.parametrize(("listed", "says"), [
    ("[{by: quinn, at: x}, {by: quinn, at: y}]", "listed twice"),
    ("[{by: rita, at: x}]", "must be the last of its approvals"),
    ("[{by: quinn}]", "must be a list"),
    ("[{by: quinn, at: x, extra: 1}]", "must be a list"),
    ("[]", "must be a list"),
])
def test_a_record_with_odd_approvals_is_a_sentence(listed: str, says: str) -> None:
    data = (f"agent: a\nstaging_tree: b\nmarked_by: quinn\nmarked_at: x\n"
            f"approvals: {listed}\n").encode()
    result = parse_approval(data, "approvals/a.yaml")
    assert isinstance(result, str) and says in result, result


def test_parse_approval_huge_integer_is_a_sentence() -> None:
    data = b"agent: a\nstaging_tree: b\nmarked_by: c\nmarked_at: 0x" + b"f" * 4000 + b"\n"
    _check_approval(parse_approval(data, "approvals/x.yaml"))


# -- the hook's stdin -------------------------------------------------------------------


@PROPERTY
@given(st.text(max_size=600))
@example("0" * 40 + " " + "a" * 40 + " refs/heads/main\n\n   \n")
@example("0" * 40 + " " + "a" * 64 + " refs/heads/x\r\n")
@example("0" * 39 + " " + "a" * 40 + " refs/heads/main")
@example("\u2028\x85\x1c")
@example("0" * 40 + " " + "a" * 40 + " refs/heads/a\u2028b\n" + "0" * 40 + " " + "b" * 40
         + " refs/heads/c\x85d\n")
@example("0" * 40 + " " + "a" * 40 + " refs/heads/main\u00a0\n")
def test_parse_updates_of_arbitrary_text_is_a_list_or_a_usage_error(text: str) -> None:
    try:
        updates = parse_updates(text)
    except UsageError as exc:
        assert exc.code == USAGE and one_line(exc.message), exc.message
        assert text.strip()
        return
    # git ends each line with \n; a ref name may hold NEL, U+2028 or NBSP
    lines = [line.strip(" \t\r") for line in text.split("\n") if line.strip()]
    assert [u.ref for u in updates] == [line.rsplit(" ", 1)[1] for line in lines]
    for update in updates:
        assert update.ref and not re.search(r"[\x00-\x20\x7f]", update.ref)
        for oid in (update.old, update.new):
            assert oid is None or (re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", oid)
                                   and oid.strip("0"))


@pytest.fixture
def hook_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A bare server repository as the hook's working directory, and its main tip."""
    server = make_org(tmp_path / "server.git", bare=True)
    monkeypatch.chdir(server)
    return server, git(server, "rev-parse", "refs/heads/main")


IDENTITIES = st.dictionaries(st.sampled_from(["REMOTE_USER", "GL_USERNAME", "GL_ID", "X"]),
                             st.sampled_from(["olga", "alice", "quinn", "nobody", "", " olga "]),
                             max_size=3)


@PROPERTY
@given(st.binary(max_size=800), IDENTITIES)
@example(b"", {})
@example(b" \n\t\r\n", {"REMOTE_USER": "olga"})
@example(b"\xff\xfe\x00", {})
def test_pre_receive_of_arbitrary_bytes_rejects_unless_empty(
        hook_repo: tuple[Path, str], data: bytes, env: dict[str, str]) -> None:
    text = data.decode("utf-8", "surrogateescape")
    status = pre_receive(data, env)
    assert status in (0, 1)
    try:
        parse_updates(text)
    except UsageError:
        assert status == 1
    else:
        if not text.strip():
            assert status == 0


@st.composite
def update_lines(draw: st.DrawFn, tip: str) -> tuple[bytes, bool]:
    """Well-formed ref-update lines naming real, missing and null objects; and whether one
    of them changes main or pushes a replace ref (which must be rejected)."""
    oid = st.one_of(st.sampled_from([tip, "0" * 40, "0" * 64]),
                    st.from_regex(r"[0-9a-f]{40}|[0-9a-f]{64}", fullmatch=True))
    ref = st.one_of(st.sampled_from(["refs/heads/main", "refs/heads/Main", "refs/heads/feature",
                                     "refs/tags/main", "refs/tags/v1", "refs/replace/" + tip,
                                     "refs/notes/commits", "HEAD", "main", "refs/heads/a/../b"]),
                    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"),
                                                   blacklist_characters=" "),
                            min_size=1, max_size=30).map(lambda s: "refs/heads/" + s))
    lines = draw(st.lists(st.tuples(oid, oid, ref), min_size=1, max_size=4))
    must_reject = any((r == "refs/heads/main" and old != new) or r.startswith("refs/replace/")
                      for old, new, r in lines)
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    return "".join(f"{o} {n} {r}{eol}" for o, n, r in lines).encode(), must_reject


@SLOW_PROPERTY
@given(st.data(), IDENTITIES)
def test_pre_receive_of_ref_updates_is_a_verdict_and_never_writes(
        hook_repo: tuple[Path, str], data: st.DataObject, env: dict[str, str]) -> None:
    server, tip = hook_repo
    stdin, must_reject = data.draw(update_lines(tip))
    before = git(server, "for-each-ref")
    status = pre_receive(stdin, env)
    assert status in (0, 1)
    if must_reject:
        assert status == 1
    assert git(server, "for-each-ref") == before


# -- validation.validate -----------------------------------------------------------------

VDOCS = documents(KEYS)
MODES = st.sampled_from(["100644"] * 6 + ["100755", "120000", "160000", "040000", "100664"])
PATHS = st.one_of(
    st.sampled_from(["flows/main.yaml", "flows/other.yml", "flows/x.md", "prompts/system.md",
                     "knowledge/faq.md", "tests/t.yaml", "../escape.yaml", "/abs.yaml",
                     "a\\b.yaml", "\u0455.md", "x" * 200 + ".md", "dir/", ".", "./agent.yaml",
                     "notes.yml", "settings.yaml"]),
    st.text(alphabet="ab/._-\u0455 \n\r\u2028", min_size=1, max_size=20),
)
SECRETS = st.sampled_from([
    "sk-live-" + "a" * 24, "AKIA" + "A" * 16, "ghp_" + "a" * 36, "xoxb-1234567890-abc",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijk",
    "-----BEGIN RSA PRIVATE KEY-----", "Bearer abcdefghijklmnopqrstuvwxyz",
    "${settings.API_URL}", "${settings.missing}", "password: hunter2", "apiKey: 12345",
    "token: {secret: API_TOKEN}", "client_secret: vault://x/y",
])
NODE_IDS = st.sampled_from(["start", "ask", "bye", "missing", "1bad"])
NODES = st.fixed_dictionaries({"type": st.sampled_from(["say", "collect", "tool", "transfer",
                                                        "end", "bogus"])}, optional={
    "text": TEXT, "next": st.one_of(NODE_IDS, VDOCS), "variable": st.one_of(TEXT, VDOCS),
    "prompt": TEXT, "tool": st.one_of(TEXT, VDOCS), "target": TEXT,
    "transitions": st.one_of(VDOCS, st.lists(st.fixed_dictionaries({}, optional={
        "to": st.one_of(NODE_IDS, VDOCS), "intent": st.one_of(TEXT, VDOCS),
        "regex": st.sampled_from(["(", "[a-", "ACME-[0-9]{6}", "(?P<x>", "*", "a{99999999999}",
                                  "(" * 5000 + ")" * 5000]),
        "keyword": TEXT, "default": st.booleans()}), max_size=3)),
})
FLOWS = st.fixed_dictionaries({}, optional={
    "start": st.one_of(NODE_IDS, VDOCS),
    "nodes": st.one_of(st.dictionaries(NODE_IDS, NODES, max_size=4), VDOCS),
    "description": TEXT,
})
AGENT_FIELDS: dict[str, Any] = {
    "name": st.one_of(st.just("support-bot"), st.just("Support-Bot"), TEXT, VDOCS),
    "description": st.one_of(TEXT, VDOCS),
    "model": st.one_of(st.fixed_dictionaries({"provider": TEXT, "name": TEXT}, optional={
        "temperature": SCALARS, "max_tokens": SCALARS, "top_p": SCALARS}), VDOCS),
    "system_prompt": st.one_of(PATHS, VDOCS),
    "flows": st.one_of(st.lists(PATHS, max_size=3), VDOCS),
    "knowledge_base": st.one_of(st.fixed_dictionaries({"sources": st.lists(
        st.fixed_dictionaries({"path": st.one_of(PATHS, VDOCS)}), max_size=3)}), VDOCS),
    "integrations": st.one_of(st.lists(st.fixed_dictionaries({}, optional={
        "name": st.one_of(TEXT, VDOCS), "type": st.just("http"), "url": TEXT,
        "auth": st.one_of(VDOCS, st.fixed_dictionaries({"type": st.just("bearer"),
                                                            "token": st.one_of(SECRETS,
                                                                               VDOCS)}))}),
        max_size=2), VDOCS),
    "intents": st.one_of(st.dictionaries(KEYS, st.fixed_dictionaries({"examples": st.lists(TEXT)}),
                                         max_size=2), VDOCS),
    "variables": st.one_of(st.dictionaries(KEYS, st.fixed_dictionaries({"type": TEXT}),
                                           max_size=2), VDOCS),
    "greeting": st.one_of(TEXT, SECRETS, VDOCS),
    "x-extension": VDOCS,
    "api_key": st.one_of(SECRETS, VDOCS),
    "unknown key": VDOCS,
}
BASE_AGENT = {"name": "support-bot", "description": "Answers billing questions",
              "model": {"provider": "openai", "name": "gpt-4o-mini"},
              "system_prompt": "prompts/system.md", "flows": ["flows/main.yaml"]}
CONTENTS = st.one_of(st.binary(max_size=300), yamlish(VDOCS), FLOWS.map(_dump),
                     st.lists(st.one_of(SECRETS, TEXT), max_size=4).map(
                         lambda parts: "\n".join(parts).encode()))


@st.composite
def agent_dirs(draw: st.DrawFn) -> tuple[dict[str, str], dict[str, bytes]]:
    files: dict[str, bytes] = {}
    modes: dict[str, str] = {}
    kind = draw(st.sampled_from(["structured", "structured", "bytes", "mutated", "missing"]))
    if kind == "structured":
        doc = dict(BASE_AGENT)
        for key in draw(st.lists(st.sampled_from(sorted(AGENT_FIELDS)), max_size=4)):
            if draw(st.booleans()):
                doc.pop(key, None)
            else:
                doc[key] = draw(AGENT_FIELDS[key])
        files["agent.yaml"] = _dump(doc)
    elif kind == "bytes":
        files["agent.yaml"] = draw(st.binary(max_size=400))
    elif kind == "mutated":
        files["agent.yaml"] = draw(yamlish(VDOCS))
    if "agent.yaml" in files:
        modes["agent.yaml"] = draw(st.sampled_from(["100644"] * 8 + ["100755", "120000"]))
    files["prompts/system.md"] = b"You answer billing questions.\n"
    modes["prompts/system.md"] = "100644"
    files["flows/main.yaml"] = draw(st.one_of(FLOWS.map(_dump), CONTENTS))
    modes["flows/main.yaml"] = draw(MODES)
    for path in draw(st.lists(PATHS, max_size=5)):
        files[path] = draw(CONTENTS)
        modes[path] = draw(MODES)
    return modes, files


GOOD_AGENT = (b"name: support-bot\ndescription: Answers billing questions\n"
              b"model: {provider: openai, name: gpt-4o-mini}\nsystem_prompt: prompts/system.md\n")




def _agent_dir(agent: bytes, files: dict[str, bytes] | None = None) -> tuple[dict[str, str],
                                                                            dict[str, bytes]]:
    """An example for the property below: agent.yaml, a system prompt and ``files``."""
    contents = {"agent.yaml": agent, "prompts/system.md": b"hi\n", **(files or {})}
    return dict.fromkeys(contents, "100644"), contents


# Regular expressions that make re.compile raise OverflowError and RecursionError.
_REGEX_FLOW = (b"start: a\nnodes:\n  a: {type: collect, variable: v, prompt: p, transitions: ["
               b"{regex: 'a{99999999999}', to: a}, {regex: '" + b"(" * 5000 + b")" * 5000
               + b"', to: a}, {default: true, to: a}]}\n")


SETTINGS = st.one_of(st.none(), st.dictionaries(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
    st.one_of(st.booleans(), st.integers(), TEXT), max_size=4))


@PROPERTY
@given(agent_dirs(), SETTINGS, st.sampled_from(ENVIRONMENTS),
       st.sampled_from(["support-bot", "other-bot", "Support-Bot"]))
@example(_agent_dir(GOOD_AGENT + b"flows: [flows/main.yaml]\nvariables: {v: {type: string}}\n",
                   {"flows/main.yaml": _REGEX_FLOW}), None, "development", "support-bot")
@example(_agent_dir(GOOD_AGENT + b"on: [chat]\n2: two\n~: none\nknowledge_base: {yes: 1}\n"
                    b"intents: {2024-01-01: {examples: [a]}}\n"), None, "staging", "support-bot")
@example(_agent_dir(GOOD_AGENT.replace(b"\n", b"\r") + b'"a\\u2028b\\x85c": {"d\\re": 1}\r',
                    {"notes\n.md": b"sk-live-" + b"a" * 24}), {}, "production", "support-bot")
def test_validate_of_a_generated_agent_directory_is_a_list_of_findings(
        agent: tuple[dict[str, str], dict[str, bytes]], values: dict[str, Any] | None,
        env: str, name: str) -> None:
    modes, files = agent
    result = validate(name, modes, lambda path: files[path], values, env)
    assert isinstance(result, list)
    for finding in result:
        assert isinstance(finding, Finding)
        assert finding.severity in ("error", "warning")
        assert finding.file is None or finding.file in modes
        assert finding.line is None or finding.line >= 1
        assert one_line(finding.text(name)), finding.text(name)
    if modes.get("agent.yaml") not in ("100644", "100755"):
        assert any(f.severity == "error" for f in result)


@pytest.mark.parametrize(("extra", "says"), [
    (b"on: [chat, voice]\n", "key True is not text"),  # YAML 1.1: the key is True
    (b"1: one\n", "key 1 is not text"),
    (b"null: nothing\n", "key None is not text"),
    (b"x-mine: {on: 1}\nmodel2:\n  yes: 1\n", "key True is not text"),  # x- values are free
    # a 4,816-digit integer where a string belongs
    (b"greeting: 0x" + b"f" * 4000 + b"\n", "an integer has more than 4300 digits"),
], ids=["key-on", "key-int", "key-null", "nested-key-yes", "huge-int"])
def test_validate_non_string_keys_and_huge_integers_are_findings(extra: bytes, says: str) -> None:
    files = {"agent.yaml": GOOD_AGENT + extra, "prompts/system.md": b"hi\n"}
    result = validate("support-bot", dict.fromkeys(files, "100644"), files.__getitem__, {},
                      "development")
    assert [(f.severity, f.file, f.line) for f in result if says in f.message] == [
        ("error", "agent.yaml", 5 + extra.count(b"\n") - 1)], result


@pytest.mark.parametrize("files", [
    {"agent.yaml": GOOD_AGENT + b'"x\\nsupport-bot/agent.yaml:1: ok": 1\n'},
    {"agent.yaml": GOOD_AGENT + b'intents: {"a\\rb": {examples: []}}\n'},
    {"agent.yaml": GOOD_AGENT + b"flows: [flows/main.yaml]\n",
     "flows/main.yaml": b'start: n\nnodes: {n: {type: say, text: x, next: "a\\nb"},'
                        b' "a\\nb": {type: say, text: y, next: gone}}\n'},
    {"agent.yaml": GOOD_AGENT, "notes\n.md": b"sk-live-" + b"a" * 24 + b"\n"},
], ids=["unknown-key", "nested-key", "node-name", "file-name"])
def test_findings_are_one_line_whatever_the_keys_and_file_names(files: dict[str, bytes]) -> None:
    files = {"prompts/system.md": b"hi\n", **files}
    result = validate("support-bot", dict.fromkeys(files, "100644"), files.__getitem__, {},
                      "development")
    assert result and all(one_line(f.text("support-bot")) for f in result), result


# -- rules.classify ---------------------------------------------------------------------

RESERVED = ("environments", "approvals", "settings", "stageline.yaml")
KINDS = {"env", "approval", "policy", "settings", "ci", "other", "invalid"}


@PROPERTY
@given(st.one_of(st.text(max_size=200), st.lists(st.one_of(
    st.sampled_from([*RESERVED, *ENVIRONMENTS, "support-bot", "Support-Bot", "x.yaml", "", "..",
                     ".github", "approvals", "support-bot.yaml", ".gitlab-ci.yml"]),
    TEXT), min_size=1, max_size=6).map("/".join)))
def test_classify_of_any_path_is_an_area(path: str) -> None:
    area = classify(path)
    assert area.kind in KINDS
    if area.kind == "env":
        parts = path.split("/")
        assert parts[0] == "environments" and len(parts) >= 4
        assert area.env == parts[1] in ENVIRONMENTS and area.agent == parts[2]
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", area.agent)
    elif area.kind == "approval":
        assert path == f"approvals/{area.agent}.yaml"
    elif area.kind == "invalid":
        assert area.reason and one_line(area.reason)


@PROPERTY
@given(st.sampled_from(RESERVED), st.data(), st.sampled_from(["", "/x", "/development/a/b.md",
                                                             "/support-bot.yaml"]))
def test_a_reserved_name_differing_only_in_case_is_invalid(name: str, data: st.DataObject,
                                                          rest: str) -> None:
    flips = data.draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    variant = "".join(c.upper() if flip else c for c, flip in zip(name, flips, strict=True))
    if variant == name:
        variant = name[0].upper() + name[1:]
    assert variant.casefold() == name
    assert classify(variant + rest).kind == "invalid"


@pytest.mark.parametrize("path", ["\u017fettings/production.yaml",
                                  "environment\u017f/production/support-bot/agent.yaml",
                                  "approval\u017f/support-bot.yaml"], ids=["settings",
                                                                           "environments",
                                                                           "approvals"])
def test_a_reserved_name_differing_by_unicode_case_folding_is_invalid(path: str) -> None:
    first = path.split("/")[0]
    assert first.casefold() in RESERVED and first != first.casefold()
    assert classify(path).kind == "invalid"


# == Part 2: hostile files through the CLI on real repositories ============================


def state(repo: Path) -> tuple[str, str, str]:
    return (git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain"),
            git(repo, "for-each-ref"))


def refused(repo: Path, before: tuple[str, str, str], result: Result, code: int,
            says: str) -> None:
    """A clear one-line error with the exit code, and nothing written."""
    assert result.code == code, result
    assert result.err.startswith("stageline: ") and one_line(result.err), result.err
    assert says in result.err, result.err
    assert "unexpected error" not in result.err and "Traceback" not in result.err
    assert result.out == ""
    assert state(repo) == before
    assert not (repo / ".git/stageline-pending.json").exists()


def laughs_policy(org: Path) -> bytes:
    bomb, total = _laughs(10, 7)
    assert total > yamlsafe.MAX_NODES
    text = (org / "stageline.yaml").read_bytes()
    return text + b"x-bomb:\n" + b"".join(b"  " + line for line in bomb.splitlines(keepends=True))


POLICY_COMMANDS = [
    (("promote", "support-bot", "--to", "staging"), "alice"),
    (("agent", "new", "fresh-bot"), "alice"),
    (("mark-ready", "support-bot"), "quinn"),
    (("status",), None),
    (("validate",), None),
]


@pytest.mark.parametrize(("content", "says"), [
    (laughs_policy, "stageline.yaml expands to more than 200000 values"),
    (lambda org: (org / "stageline.yaml").read_bytes().replace(b"Alice Dev", b"Alice \xe9\xff"),
     "stageline.yaml is not UTF-8 text"),
    (lambda org: b"organization: testorg\nmembers:\n\tolga: {}\n",
     "stageline.yaml is not valid YAML (line 3)"),
    (lambda org: b"organization: testorg\nmembers: " + b"[" * 70 + b"]" * 70 + b"\n",
     "stageline.yaml nests deeper than 64 levels"),
], ids=["yaml-bomb", "not-utf8", "tab-indentation", "deep-nesting"])
def test_a_hostile_policy_is_exit_5_for_every_command(org: Path, content: Any, says: str) -> None:
    (org / "stageline.yaml").write_bytes(content(org))
    commit_all(org, "olga", "Hostile policy")
    before = state(org)
    for args, actor in POLICY_COMMANDS:
        refused(org, before, sl(org, *args, actor=actor), REPOSITORY, says)


def _agent_yaml(org: Path, extra: bytes) -> None:
    (org / DEV / "agent.yaml").write_bytes(GOOD_AGENT + extra)
    commit_all(org, "alice", "Hostile agent.yaml")


@pytest.mark.parametrize(("extra", "says"), [
    (b"x-deep: " + b"[" * 100 + b"]" * 100 + b"\n", "nests deeper than 64 levels"),
    (b"x-deep:\n" + b"".join(b"  " * i + b"k:\n" for i in range(1, 100)) + b"  " * 100 + b"v\n",
     "nests deeper than 64 levels"),
    (b"x-deep: " + b"[" * 5000 + b"]" * 5000 + b"\n", "exceeded maximum nesting depth"),
    (b"x-bomb:\n" + b"".join(b"  " + line for line in _laughs(10, 7)[0].splitlines(True)),
     "expands to more than 200000 values"),
    (b"greeting: caf\xe9\n", "is not UTF-8 text"),
    (b"greeting: ok\ngreeting: twice\n", "duplicate key 'greeting'"),
], ids=["deep-flow", "deep-block", "deeper-than-libyaml", "bomb", "not-utf8", "duplicate-key"])
def test_a_hostile_agent_yaml_refuses_promotion_with_exit_1(org: Path, extra: bytes,
                                                            says: str) -> None:
    _agent_yaml(org, extra)
    before = state(org)
    refused(org, before, sl(org, "promote", "support-bot", "--to", "staging", actor="alice"),
            CHECK_FAILED, says)
    assert "support-bot/agent.yaml" in sl(org, "validate", "support-bot").out


@pytest.mark.parametrize("extra", [
    b"greeting: !!bool maybe\n",
    b"on: [chat]\n",
    b"greeting: 0x" + b"f" * 4000 + b"\n",
], ids=["bool-tag", "key-on", "huge-int"])
def test_an_unconstructible_agent_yaml_refuses_promotion_with_exit_1(org: Path,
                                                                     extra: bytes) -> None:
    _agent_yaml(org, extra)
    before = state(org)
    refused(org, before, sl(org, "promote", "support-bot", "--to", "staging", actor="alice"),
            CHECK_FAILED, "agent.yaml")


def test_a_line_break_in_a_key_still_gives_a_one_line_refusal(org: Path) -> None:
    _agent_yaml(org, b'"colour\\nstageline: promoted support-bot": blue\n')
    before = state(org)
    refused(org, before, sl(org, "promote", "support-bot", "--to", "staging", actor="alice"),
            CHECK_FAILED, "unknown key")


def test_an_unconstructible_policy_is_a_clear_exit_5(org: Path) -> None:
    policy = org / "stageline.yaml"
    policy.write_bytes(policy.read_bytes() + b"separation_of_duties: !!bool enabled\n")
    commit_all(org, "olga", "Tagged policy")
    before = state(org)
    refused(org, before, sl(org, "status"), REPOSITORY, "stageline.yaml")


def _text_file(path: Path, size: int, tail: bytes = b"") -> None:
    line = b"Refunds take five business days; invoices are sent monthly by email.\n"
    body = line * ((size - len(tail)) // len(line))
    body += b"#" * (size - len(tail) - len(body))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body + tail)
    assert path.stat().st_size == size


def test_a_50_mb_file_that_is_not_yaml_is_promoted_unscanned(org: Path) -> None:
    """Files above MAX_SCAN_BYTES (25 MB) are not scanned for secrets; by itself such a
    file is no error: the agent is promoted and its blob copied unchanged."""
    _text_file(org / DEV / "knowledge/archive.txt", 50 * 1024 * 1024)
    commit_all(org, "alice", "A large archive")
    assert sl(org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    assert git(org, "rev-parse", f"HEAD:{STG}/knowledge/archive.txt") == \
        git(org, "rev-parse", f"HEAD:{DEV}/knowledge/archive.txt")
    assert (org / STG / "knowledge/archive.txt").stat().st_size == 50 * 1024 * 1024
    assert git(org, "status", "--porcelain") == ""


def test_a_file_of_25_mb_is_still_scanned(org: Path) -> None:
    secret = b"key: sk-live-" + b"a" * 24 + b"\n"
    _text_file(org / DEV / "knowledge/archive.txt", MAX_SCAN_BYTES, tail=secret)
    commit_all(org, "alice", "A large archive with a key at its end")
    before = state(org)
    refused(org, before, sl(org, "promote", "support-bot", "--to", "staging", actor="alice"),
            CHECK_FAILED, "support-bot/knowledge/archive.txt:")


def test_a_50_mb_agent_yaml_is_a_clear_error(org: Path) -> None:
    _text_file(org / DEV / "agent.yaml", 50 * 1024 * 1024, tail=GOOD_AGENT)
    commit_all(org, "alice", "A huge agent.yaml")
    before = state(org)
    refused(org, before, sl(org, "promote", "support-bot", "--to", "staging", actor="alice"),
            CHECK_FAILED, "agent.yaml: error: is larger than 2 MB")


def test_very_long_paths_in_an_agent_are_promoted(org: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    long_name = "n" * 196 + ".txt"
    deep = "/".join(["d" * 99] * 40) + "/f.md"   # 4,004 characters below the agent
    assert len(long_name) == 200 and len(deep) >= 4000
    monkeypatch.chdir(org)  # relative paths: the absolute one is longer than PATH_MAX
    (Path(DEV) / long_name).write_text("long name\n")
    os.makedirs(os.path.dirname(f"{DEV}/{deep}"))
    Path(f"{DEV}/{deep}").write_text("deep\n")
    commit_all(org, "alice", "Long paths")
    assert sl(org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    listed = git(org, "ls-tree", "-r", "--name-only", "HEAD", STG).splitlines()
    assert f"{STG}/{long_name}" in listed and f"{STG}/{deep}" in listed
    assert Path(f"{STG}/{deep}").read_text() == "deep\n"
    assert git(org, "status", "--porcelain") == ""
    assert sl(org, "mark-ready", "support-bot", actor="quinn").code == OK
    assert sl(org, "promote", "support-bot", "--to", "production", actor="olga").code == OK
    assert git(org, "rev-parse", f"HEAD:{PRD}") == git(org, "rev-parse", f"HEAD:{DEV}")
    git(org, "fsck", "--strict")


LOOK_ALIKES = ["\u0455upport-bot", "\uff53\uff55\uff50\uff50\uff4f\uff52\uff54-\uff42\uff4f\uff54",
               "Support-Bot", "SUPPORT-BOT", "support\u2010bot", "support\u200b-bot",
               "support-bot\n", "support-bot "]


@pytest.mark.parametrize("name", LOOK_ALIKES, ids=["cyrillic-s", "full-width", "title-case",
                                                   "upper-case", "unicode-hyphen", "zero-width",
                                                   "newline", "trailing-space"])
def test_look_alike_agent_names_are_usage_errors(org: Path, name: str) -> None:
    before = state(org)
    for args, actor in [(("promote", name, "--to", "staging"), "alice"),
                        (("promote", name, "--to", "production"), "olga"),
                        (("agent", "new", name), "alice"),
                        (("mark-ready", name), "quinn"),
                        (("rollback", name), "olga"),
                        (("history", name), None),
                        (("status", name), None)]:
        refused(org, before, sl(org, *args, actor=actor), USAGE, "is not a valid agent name")
    assert sl(org, "status", "support-bot").code == OK


def _line_endings(data: bytes, style: str) -> bytes:
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    bom = b"\xef\xbb\xbf" if style == "bom-crlf" else b""
    return bom + (b"\r" if style == "cr" else b"\r\n").join(lines)


@pytest.mark.parametrize("style", ["crlf", "cr", "bom-crlf"])
def test_crlf_agent_yaml_and_policy_work(org: Path, style: str) -> None:
    for path, who in [("stageline.yaml", "olga"), (f"{DEV}/agent.yaml", "alice")]:
        data = _line_endings((org / path).read_bytes(), style)
        assert b"\r" in data
        (org / path).write_bytes(data)
        commit_all(org, who, f"{style} line endings")
        assert git(org, "cat-file", "-s", f"HEAD:{path}") == str(len(data))  # stored as is
    assert sl(org, "status").code == OK
    assert sl(org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    assert sl(org, "mark-ready", "support-bot", actor="quinn").code == OK
    assert sl(org, "promote", "support-bot", "--to", "production", actor="olga").code == OK
    assert git(org, "rev-parse", f"HEAD:{PRD}") == git(org, "rev-parse", f"HEAD:{DEV}")
    assert git(org, "status", "--porcelain") == ""


@pytest.mark.parametrize("style", ["crlf", "cr"])
def test_crlf_keeps_line_numbers_of_findings(org: Path, style: str) -> None:
    (org / DEV / "agent.yaml").write_bytes(_line_endings(GOOD_AGENT + b"colour: blue\n", style))
    commit_all(org, "alice", "An unknown key on line 5")
    result = sl(org, "validate", "support-bot")
    assert result.code == CHECK_FAILED
    assert "support-bot/agent.yaml:5: error: colour: unknown key 'colour'" in result.out


def test_cr_line_endings_keep_line_numbers_of_secret_and_settings_findings() -> None:
    agent = _line_endings(GOOD_AGENT + b'greeting: "key sk-live-' + b"a" * 24 + b'"\n'
                          b"x-ref: ${settings.NOPE}\n", "cr")
    files = {"agent.yaml": agent, "prompts/system.md": b"hi\n"}
    result = validate("support-bot", dict.fromkeys(files, "100644"), files.__getitem__, {},
                      "development")
    assert sorted((f.line, f.message[:20]) for f in result) == [
        (5, "this looks like an O"), (6, "${settings.NOPE} is ")]


def _sha256_org(path: Path, bare: bool = False) -> Path:
    git(path.parent, "init", "-q", "--object-format=sha256", "-b", "main",
        *(["--bare"] if bare else []), str(path))
    with Store.open(path) as store:
        assert store.hexlen == 64
        import_organization(store, "refs/heads/main", tree_files(RESOURCES / "org"))
    return path


def test_a_sha256_repository_runs_the_whole_workflow(tmp_path: Path) -> None:
    org = _sha256_org(tmp_path / "org")
    first = git(org, "rev-parse", "HEAD")
    assert len(first) == 64 and git(org, "status", "--porcelain") == ""
    assert sl(org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    assert sl(org, "mark-ready", "support-bot", actor="quinn").code == OK
    staging = git(org, "rev-parse", f"HEAD:{STG}")
    assert f'staging_tree: "{staging}"' in (org / "approvals/support-bot.yaml").read_text()
    assert sl(org, "promote", "support-bot", "--to", "production", actor="olga").code == OK
    v1 = git(org, "rev-parse", "HEAD")
    # a second version, then a rollback whose Stageline-Restores names a 64-digit id
    (org / DEV / "prompts/system.md").write_text("v2\n")
    commit_all(org, "alice", "v2")
    assert sl(org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    assert sl(org, "mark-ready", "support-bot", actor="rita").code == OK
    assert sl(org, "promote", "support-bot", "--to", "production", actor="omar").code == OK
    assert sl(org, "rollback", "support-bot", actor="olga").code == OK
    assert f"Stageline-Restores: {v1}" in git(org, "log", "-1", "--format=%B")
    assert git(org, "rev-parse", f"HEAD:{PRD}") == git(org, "rev-parse", f"{v1}:{PRD}")
    for args in (("status",), ("history", "support-bot"), ("log",), ("diff", "support-bot"),
                 ("verify", "--range", f"{first}..HEAD")):
        assert sl(org, *args).code == OK, args
    assert git(org, "status", "--porcelain") == ""
    git(org, "fsck", "--strict")


@pytest.mark.parametrize("name", ["a\u2028b", "a\x85b", "main\u00a0"],
                         ids=["line-separator", "next-line", "no-break-space"])
def test_a_branch_named_with_a_unicode_line_break_or_space_is_pushed(tmp_path: Path,
                                                                      name: str) -> None:
    """git allows any non-ASCII character in a ref name; the hook reads its stdin by
    lines that end at \\n, so it neither splits such a name nor trims it to another."""
    server = make_org(tmp_path / "server.git", bare=True)
    assert sl(None, "hook", "install", str(server)).code == OK
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(server), str(work))
    (work / PRD).mkdir(parents=True)
    (work / PRD / "notes.md").write_text("not through the workflow\n")
    commit_all(work, "alice", "A hand edit of production, on another branch")
    pushed = subprocess.run(["git", "push", "origin", f"HEAD:refs/heads/{name}"], cwd=work,
                            capture_output=True, text=True,
                            env={**os.environ, "REMOTE_USER": "alice"})
    assert pushed.returncode == 0, pushed.stderr
    assert git(server, "rev-parse", f"refs/heads/{name}") == git(work, "rev-parse", "HEAD")
    assert git(server, "rev-parse", "refs/heads/main") == git(work, "rev-parse", "HEAD~1")


def test_a_sha256_server_enforces_its_hook(tmp_path: Path) -> None:
    server = _sha256_org(tmp_path / "server.git", bare=True)
    assert sl(None, "hook", "install", str(server)).code == OK
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(server), str(work))
    assert git(work, "rev-parse", "--show-object-format") == "sha256"

    def push(member: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "push", "origin", "HEAD:refs/heads/main"], cwd=work,
                              capture_output=True, text=True,
                              env={**os.environ, "REMOTE_USER": member})

    assert sl(work, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    assert push("alice").returncode == 0
    shutil.copytree(work / STG, work / PRD)
    commit_all(work, "alice", "Straight to production")
    before = git(server, "for-each-ref")
    pushed = push("alice")
    assert pushed.returncode != 0 and "stageline: push to main rejected" in pushed.stderr
    assert "Traceback" not in pushed.stderr
    assert git(server, "for-each-ref") == before
    git(server, "fsck", "--strict")


def test_hand_made_look_alike_directories_are_reported_not_crashed_on(org: Path) -> None:
    for name in ("\u0455upport-bot", "Support-Bot"):
        shutil.copytree(org / DEV, org / "environments/development" / name)
    commit_all(org, "alice", "Look-alike directories")
    assert sl(org, "status").code == OK
    result = sl(org, "validate")
    assert result.code == CHECK_FAILED
    assert "Support-Bot/agent.yaml:1: error: name is 'support-bot' but the directory is " \
           "'Support-Bot'" in result.out
    assert sl(org, "promote", "support-bot", "--to", "staging", actor="alice").code == OK
    # the server refuses such directories outright
    assert sl(org, "verify", "--range", "HEAD~2..HEAD~1").code == CHECK_FAILED


def test_blocked_is_not_confused_with_hostile(org: Path) -> None:
    """Sanity check of the helpers: an ordinary refusal is also one line, nothing written."""
    before = state(org)
    refused(org, before, sl(org, "promote", "support-bot", "--to", "production", actor="olga"),
            BLOCKED, "support-bot is not in staging")
