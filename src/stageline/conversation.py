"""Conversation tests: scripted conversations played against an agent's main flow.

A conversation test is a YAML file in the agent's ``tests/`` directory. The
simulator below plays it against the flow without a network or a model, so the
same files give the same result on every machine, every time; QA's
``mark-ready`` gate and ``stageline test`` rely on that.

The format of test files and the simulator's semantics are specified in
docs/conversation-tests.md; this module is their one implementation.
"""

from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from stageline import yamlsafe
from stageline.layout import AGENT_FILE, inside_agent

TESTS_DIR = "tests"
MAX_STEPS = 100
INTENT_THRESHOLD = Fraction(1, 2)
EXPECT_KEYS = ("node", "say_contains", "say_matches", "variables", "tool", "transfer", "end")
NODE_TYPES = ("say", "collect", "tool", "transfer", "end")

_TOKEN_RE = re.compile(r"\w+")
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Characters XML 1.0 cannot carry at all, even escaped; a test file may contain them
# through YAML escapes ("\x07"), and the report must still parse.
_XML_ILLEGAL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class TestResult:
    # Named by the public API; pytest would otherwise try to collect it as a test class.
    __test__ = False

    name: str
    file: str
    passed: bool
    failures: tuple[str, ...]
    transcript: tuple[str, ...]


# ---------------------------------------------------------------------------
# The agent


@dataclass(frozen=True)
class Intent:
    name: str
    examples: tuple[frozenset[str], ...]


@dataclass(frozen=True)
class Agent:
    """What the simulator needs of an agent: its greeting, intents and main flow."""

    greeting: str | None
    intents: tuple[Intent, ...]
    flow_file: str
    start: str
    nodes: Mapping[str, Any]


def load_agent(files: Mapping[str, bytes]) -> Agent | str:
    """The agent of an agent directory's files, or why it cannot be run (one sentence)."""
    data = files.get(AGENT_FILE)
    if data is None:
        return f"{AGENT_FILE} is missing."
    try:
        doc = yamlsafe.load(data, AGENT_FILE)
    except yamlsafe.YamlError as exc:
        return str(exc)
    if not isinstance(doc, dict):
        return f"{AGENT_FILE} must be a mapping of keys such as name, flows and intents."
    greeting = doc.get("greeting")
    if greeting is not None and not isinstance(greeting, str):
        return f"{AGENT_FILE}: greeting must be text."
    intents = _intents(doc.get("intents"))
    if isinstance(intents, str):
        return intents
    flows = doc.get("flows")
    if not isinstance(flows, list) or not flows:
        return f"{AGENT_FILE} lists no flows; conversation tests run its first (main) flow."
    flow_file = inside_agent(flows[0])
    if flow_file is None:
        return f"{AGENT_FILE}: the main flow {flows[0]!r} is not a path inside the agent directory."
    flow_data = files.get(flow_file)
    if flow_data is None:
        return f"the main flow {flow_file} is missing."
    try:
        flow = yamlsafe.load(flow_data, flow_file)
    except yamlsafe.YamlError as exc:
        return str(exc)
    nodes = flow.get("nodes") if isinstance(flow, dict) else None
    if not isinstance(nodes, dict) or not nodes:
        return f"{flow_file} has no nodes."
    start = flow.get("start")
    if not isinstance(start, str) or start not in nodes:
        return f"{flow_file}: the start node {start!r} does not exist."
    return Agent(greeting, intents, flow_file, start, nodes)


def _intents(raw: Any) -> tuple[Intent, ...] | str:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        return f"{AGENT_FILE}: intents must map intent names to {{examples: [...]}}."
    found = []
    for name, spec in raw.items():
        examples = spec.get("examples") if isinstance(spec, dict) else None
        if not isinstance(name, str) or not isinstance(examples, list) or not all(
                isinstance(e, str) for e in examples):
            return f"{AGENT_FILE}: intent {name!r} must have examples, a list of texts."
        found.append(Intent(name, tuple(tokens(e) for e in examples)))
    return tuple(found)


def tokens(text: str) -> frozenset[str]:
    """The lowercase ``\\w+`` words of a text, as a set."""
    return frozenset(_TOKEN_RE.findall(text.lower()))


def intent_scores(utterance: str, intents: Sequence[Intent]) -> list[tuple[str, Fraction]]:
    """Every intent's score for ``utterance``, in the order the intents are declared."""
    said = tokens(utterance)
    scores = []
    for intent in intents:
        # An example without words cannot be matched; it scores 0 rather than dividing by 0.
        best = max((Fraction(len(said & ex), len(ex)) for ex in intent.examples if ex),
                   default=Fraction(0))
        scores.append((intent.name, best))
    return scores


def best_intent(utterance: str, intents: Sequence[Intent]) -> tuple[str, Fraction] | None:
    """The highest-scoring intent; on a tie the one declared first. None without intents."""
    best: tuple[str, Fraction] | None = None
    for name, score in intent_scores(utterance, intents):
        # Strictly greater: an equal score later in the list never displaces the earlier one.
        if best is None or score > best[1]:
            best = (name, score)
    return best


# ---------------------------------------------------------------------------
# The test script


@dataclass(frozen=True)
class Expect:
    node: str | None = None
    say_contains: str | None = None
    say_matches: re.Pattern[str] | None = None
    variables: tuple[tuple[str, str | None], ...] = ()
    tool: str | None = None
    transfer: str | None = None
    end: bool | None = None


@dataclass(frozen=True)
class Turn:
    user: str
    expect: Expect


@dataclass(frozen=True)
class Script:
    name: str
    variables: tuple[tuple[str, str], ...]
    start: Expect | None
    turns: tuple[Turn, ...]


def _user_key(key: object) -> bool:
    # x- keys are the project-wide convention for a team's own annotations.
    return isinstance(key, str) and key.startswith("x-")


def _as_text(value: Any) -> str | None:
    """Text or an integer as text; None for anything YAML could have turned into something
    else (``yes`` into a boolean, ``1.50`` into 1.5)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def parse_script(data: bytes, source: str) -> tuple[Script | None, str, list[str]]:
    """The script of a test file, its name, and what is wrong with it (the script is None
    when anything is)."""
    default_name = posixpath.basename(source)
    try:
        doc = yamlsafe.load(data, source)
    except yamlsafe.YamlError as exc:
        return None, default_name, [str(exc)]
    if not isinstance(doc, dict):
        return None, default_name, [f"{source} must be a mapping with name and turns."]
    problems: list[str] = []
    name = doc.get("name")
    if name is None:
        name = default_name
    elif not isinstance(name, str) or not name.strip():
        problems.append("name must be text.")
        name = default_name
    for key in doc:
        if key not in ("name", "variables", "expect_start", "turns") and not _user_key(key):
            problems.append(f"unknown key {key!r} (use name, variables, expect_start and "
                            "turns).")
    variables: list[tuple[str, str]] = []
    raw_vars = doc.get("variables")
    if raw_vars is not None and not isinstance(raw_vars, dict):
        problems.append("variables must map variable names to values.")
    for var, value in (raw_vars or {}).items() if isinstance(raw_vars, dict) else ():
        text = _as_text(value)
        if not isinstance(var, str) or text is None:
            problems.append(f"variables.{var}: the value must be text; quote it.")
        else:
            variables.append((var, text))
    start: Expect | None = None
    if "expect_start" in doc:
        start = _expect(doc["expect_start"], "expect_start", problems)
    turns: list[Turn] = []
    raw_turns = doc.get("turns")
    if "turns" not in doc:
        problems.append("turns is missing: a test needs at least one turn.")
    elif not isinstance(raw_turns, list) or not raw_turns:
        problems.append("turns must be a non-empty list of {user, expect} entries.")
    else:
        for i, entry in enumerate(raw_turns):
            where = f"turns[{i}]"
            if isinstance(entry, dict) and "expect_start" in entry:
                if i != 0:
                    problems.append(f"{where}: expect_start must be the first entry of turns.")
                if "expect_start" in doc:
                    problems.append(f"{where}: expect_start is also given at the top level; "
                                    "give it once.")
                for key in entry:
                    if key != "expect_start" and not _user_key(key):
                        problems.append(f"{where}: unknown key {key!r} next to expect_start.")
                start = _expect(entry["expect_start"], f"{where}.expect_start", problems)
                continue
            if not isinstance(entry, dict):
                problems.append(f"{where} must be a mapping with user and expect.")
                continue
            for key in entry:
                if key not in ("user", "expect") and not _user_key(key):
                    problems.append(f"{where}: unknown key {key!r} (use user and expect).")
            user = _as_text(entry.get("user"))
            if user is None:
                problems.append(f"{where}.user is missing or not text; quote it "
                                "(yes, no, on and off are booleans in YAML).")
            expect = _expect(entry.get("expect"), f"{where}.expect", problems)
            turns.append(Turn(user or "", expect))
        if not turns:
            problems.append("turns has no user turn.")
    if problems:
        return None, name, problems
    return Script(name, tuple(variables), start, tuple(turns)), name, []


def _expect(raw: Any, where: str, problems: list[str]) -> Expect:
    if raw is None:
        return Expect()
    if not isinstance(raw, dict):
        problems.append(f"{where} must be a mapping of expectations.")
        return Expect()
    for key in raw:
        if key not in EXPECT_KEYS and not _user_key(key):
            problems.append(f"{where}: unknown key {key!r} (use {', '.join(EXPECT_KEYS)}).")
    texts: dict[str, str | None] = {}
    for key in ("node", "say_contains", "say_matches", "tool", "transfer"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(f"{where}.{key} must be text.")
            value = None
        texts[key] = value
    pattern: re.Pattern[str] | None = None
    if texts["say_matches"] is not None:
        try:
            pattern = re.compile(texts["say_matches"])
        except re.error as exc:
            problems.append(f"{where}.say_matches {texts['say_matches']!r} is not a valid "
                            f"regular expression ({exc}).")
    end = raw.get("end")
    if end is not None and not isinstance(end, bool):
        problems.append(f"{where}.end must be true or false.")
        end = None
    variables: list[tuple[str, str | None]] = []
    raw_vars = raw.get("variables")
    if raw_vars is not None and not isinstance(raw_vars, dict):
        problems.append(f"{where}.variables must map variable names to values.")
    elif raw_vars:
        for var, value in raw_vars.items():
            text = _as_text(value)
            if not isinstance(var, str) or (value is not None and text is None):
                problems.append(f"{where}.variables.{var}: the value must be text (quote it) "
                                "or null for 'not set'.")
            else:
                variables.append((var, text))
    return Expect(texts["node"], texts["say_contains"], pattern, tuple(variables),
                  texts["tool"], texts["transfer"], end)


# ---------------------------------------------------------------------------
# The simulator


class Stop(Exception):
    """The conversation cannot go on; the message is the failure."""


@dataclass(frozen=True)
class Outcome:
    """What one turn (or the start) did."""

    said: tuple[str, ...]
    tools: tuple[str, ...]
    transfers: tuple[str, ...]


def _quote(text: str, limit: int = 60) -> str:
    short = text if len(text) <= limit else text[: limit - 1] + "…"
    return repr(short)


def fill(text: str, variables: Mapping[str, str]) -> str:
    """``text`` with ``{name}`` replaced by the variable's value; unknown names stay."""
    return _PLACEHOLDER_RE.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


def keyword_matches(keyword: str, utterance: str) -> bool:
    """Whole words (or a phrase of them), ignoring case."""
    words = keyword.split()
    if not words:
        return False
    pattern = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)"
    return re.search(pattern, utterance, re.IGNORECASE) is not None


class Conversation:
    """One conversation with the agent: where the flow rests, the variables, the log."""

    def __init__(self, agent: Agent, variables: Mapping[str, str]) -> None:
        self.agent = agent
        self.variables: dict[str, str] = dict(variables)
        self.node = agent.start
        self.ended = False
        self.transcript: list[str] = []
        self._said: list[str] = []
        self._tools: list[str] = []
        self._transfers: list[str] = []

    def begin(self) -> Outcome:
        self._reset()
        if self.agent.greeting is not None:
            self._say(self.agent.greeting)
        self._run(self.agent.start)
        return self._outcome()

    def reply(self, text: str) -> Outcome:
        self._reset()
        utterance = text.strip()
        self.transcript.append(f"user: {utterance}")
        if self.ended:
            raise Stop(f"the conversation already ended at node {self.node}; nothing hears "
                       f"{_quote(utterance)}.")
        node = self._node(self.node)
        target, how, value = self._choose(self.node, node, utterance)
        self.transcript.append(f"  → {how} → {target}")
        variable = node.get("variable")
        if isinstance(variable, str):
            self.variables[variable] = value
            self.transcript.append(f"  → set {variable} = {_quote(value)}")
        self._run(target)
        return self._outcome()

    def _reset(self) -> None:
        self._said, self._tools, self._transfers = [], [], []

    def _outcome(self) -> Outcome:
        return Outcome(tuple(self._said), tuple(self._tools), tuple(self._transfers))

    def _say(self, text: str) -> None:
        said = fill(text, self.variables)
        self._said.append(said)
        self.transcript.append(f"bot: {said}")

    def _node(self, name: str) -> dict[str, Any]:
        node = self.agent.nodes.get(name)
        if not isinstance(node, dict):
            raise Stop(f"the flow is broken: node {name!r} is not a node of "
                       f"{self.agent.flow_file}.")
        return node

    def _field(self, name: str, node: Mapping[str, Any], key: str) -> str:
        value = node.get(key)
        if not isinstance(value, str):
            raise Stop(f"the flow is broken: node {name} has no {key} (text).")
        return value

    def _run(self, name: str) -> None:
        path: list[str] = []
        while True:
            if len(path) >= MAX_STEPS:
                recent = " → ".join(path[-6:])
                raise Stop(f"the flow loops: more than {MAX_STEPS} nodes in one turn "
                           f"(… {recent} → {name}).")
            path.append(name)
            self.node = name
            node = self._node(name)
            kind = node.get("type")
            text = node.get("text")
            if kind == "say":
                self._say(self._field(name, node, "text"))
                name = self._field(name, node, "next")
            elif kind == "tool":
                tool = self._field(name, node, "tool")
                self._tools.append(tool)
                self.transcript.append(f"  → tool {tool}")
                name = self._field(name, node, "next")
            elif kind == "collect":
                self._say(self._field(name, node, "prompt"))
                self.transcript.append(f"  → node {name}")
                return
            elif kind in ("transfer", "end"):
                if isinstance(text, str):
                    self._say(text)
                if kind == "transfer":
                    target = self._field(name, node, "target")
                    self._transfers.append(target)
                    self.transcript.append(f"  → transfer {target}")
                self.ended = True
                self.transcript.append(f"  → node {name} (conversation ended)")
                return
            else:
                raise Stop(f"the flow is broken: node {name} has type {kind!r} (use "
                           f"{', '.join(NODE_TYPES)}).")

    def _choose(self, name: str, node: Mapping[str, Any], utterance: str) \
            -> tuple[str, str, str]:
        """The winning transition's target, how it matched, and the variable's new value."""
        transitions = node.get("transitions")
        if node.get("type") != "collect" or not isinstance(transitions, list):
            raise Stop(f"the flow is broken: node {name} waits but has no transitions.")
        best = best_intent(utterance, self.agent.intents)
        for i, tr in enumerate(transitions):
            target = tr.get("to") if isinstance(tr, dict) else None
            if not isinstance(tr, dict) or not isinstance(target, str):
                raise Stop(f"the flow is broken: node {name}, transition {i + 1} has no 'to'.")
            if "regex" in tr:
                pattern = tr["regex"]
                try:
                    found = re.search(str(pattern), utterance)
                except re.error as exc:
                    raise Stop(f"node {name}: the transition regex {pattern!r} is not a valid "
                               f"regular expression ({exc}).") from None
                if found:
                    return target, f"regex {pattern!r} matched {_quote(found.group(0))}", \
                        found.group(0)
            elif "keyword" in tr:
                if keyword_matches(str(tr["keyword"]), utterance):
                    return target, f"keyword {tr['keyword']!r}", utterance
            elif "intent" in tr:
                if best is not None and best[0] == tr["intent"] and best[1] >= INTENT_THRESHOLD:
                    return target, f"intent {best[0]} (score {float(best[1]):.2f})", utterance
            elif tr.get("default") is True:
                return target, "default", utterance
            else:
                raise Stop(f"the flow is broken: node {name}, transition {i + 1} has no intent, "
                           "keyword, regex or default.")
        guess = (f"best intent {best[0]}, score {float(best[1]):.2f}" if best is not None
                 else "the agent has no intents")
        raise Stop(f"no transition for {_quote(utterance)} at node {name} ({guess}) and no "
                   "default.")


def check(expect: Expect, outcome: Outcome, convo: Conversation) -> list[str]:
    """Every way the turn's outcome differs from ``expect``: expected vs got."""
    problems = []
    said = "; ".join(_quote(s) for s in outcome.said) or "nothing"
    if expect.node is not None and expect.node != convo.node:
        problems.append(f"expected node {expect.node}, got {convo.node}.")
    if expect.say_contains is not None and not any(
            expect.say_contains.casefold() in s.casefold() for s in outcome.said):
        problems.append(f"expected the bot to say something containing "
                        f"{_quote(expect.say_contains)}; it said {said}.")
    if expect.say_matches is not None and not any(
            expect.say_matches.search(s) for s in outcome.said):
        problems.append(f"expected the bot to say something matching "
                        f"{expect.say_matches.pattern!r}; it said {said}.")
    for var, want in expect.variables:
        got = convo.variables.get(var)
        if want != got:
            problems.append(
                f"expected variable {var} "
                f"{'to be unset' if want is None else '= ' + _quote(want)}, got "
                f"{'nothing (unset)' if got is None else _quote(got)}.")
    if expect.tool is not None and expect.tool not in outcome.tools:
        ran = ", ".join(outcome.tools) or "no tool"
        problems.append(f"expected tool {expect.tool} to run, got {ran}.")
    if expect.transfer is not None and expect.transfer not in outcome.transfers:
        got = ", ".join(outcome.transfers) or "no transfer"
        problems.append(f"expected a transfer to {expect.transfer}, got {got}.")
    if expect.end is True and not convo.ended:
        problems.append(f"expected the conversation to end, but it waits at node {convo.node}.")
    if expect.end is False and convo.ended:
        problems.append(f"expected the conversation to go on, but it ended at node {convo.node}.")
    return problems


def run_script(agent: Agent, script: Script, file: str) -> TestResult:
    """Play one test's turns against the agent."""
    convo = Conversation(agent, dict(script.variables))
    failures: list[str] = []

    def fail(where: str, message: str) -> None:
        # Node names and values come from the agent's files: a line break in one must not
        # break a failure into lines.
        message = yamlsafe.printable(message)
        failures.append(f"{where}: {message}")
        # The transcript carries the failure where it happened, for render_failure.
        convo.transcript.append(f"  ✗ {message}")

    steps: list[tuple[str, str | None, Expect | None]] = [("start", None, script.start)]
    steps += [(f"turn {i} ({_quote(t.user.strip(), 40)})", t.user, t.expect)
              for i, t in enumerate(script.turns, 1)]
    for where, user, expect in steps:
        try:
            outcome = convo.begin() if user is None else convo.reply(user)
        except Stop as stop:
            fail(where, str(stop))
            break
        if expect is not None:
            for problem in check(expect, outcome, convo):
                fail(where, problem)
    return TestResult(script.name, file, not failures, tuple(failures), tuple(convo.transcript))


def conversation_test_paths(files: Mapping[str, bytes]) -> list[str]:
    """The paths of the agent's conversation tests: ``tests/*.yaml`` and ``tests/*.yml``."""
    return sorted(p for p in files if posixpath.dirname(p) == TESTS_DIR
                  and p.endswith((".yaml", ".yml")))


def run_tests(files: Mapping[str, bytes]) -> list[TestResult]:
    """Run every tests/*.yaml of an agent directory; ``files`` maps paths relative to the agent
    directory to contents. Files sorted by path. A test file that cannot be read or has a bad
    shape gives a failed TestResult with the reason (never an exception)."""
    paths = conversation_test_paths(files)
    if not paths:
        return []
    agent = load_agent(files)
    results = []
    for path in paths:
        script, name, problems = parse_script(files[path], path)
        if isinstance(agent, str):
            problems.append(agent)
        if script is None or isinstance(agent, str):
            results.append(TestResult(name, path, False, tuple(problems), ()))
        else:
            results.append(run_script(agent, script, path))
    return results


# ---------------------------------------------------------------------------
# Reports


def _xml_safe(text: str) -> str:
    return _XML_ILLEGAL_RE.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


def junit_xml(agent: str, results: Sequence[TestResult]) -> str:
    """JUnit XML (testsuite name=agent, one testcase per test, <failure message=...> with the
    failures and the transcript as text), built with xml.etree.ElementTree."""
    failed = sum(1 for r in results if not r.passed)
    suite = ET.Element("testsuite", {
        "name": _xml_safe(agent), "tests": str(len(results)), "failures": str(failed),
        "errors": "0", "skipped": "0"})
    for r in results:
        case = ET.SubElement(suite, "testcase", {
            "name": _xml_safe(r.name), "classname": _xml_safe(agent), "file": _xml_safe(r.file)})
        if not r.passed:
            failure = ET.SubElement(case, "failure", {
                "message": _xml_safe(" ".join(r.failures)), "type": "ConversationTestFailure"})
            body = [*r.failures, "", *r.transcript] if r.transcript else list(r.failures)
            failure.text = _xml_safe("\n".join(body))
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") \
        + "\n"


def render_failure(result: TestResult) -> list[str]:
    """A readable transcript of a failing conversation: what the user said, where the flow went,
    what was expected — for the terminal."""
    lines = [f"FAIL {result.file}: {result.name}"]
    if result.transcript:
        # The transcript holds a "✗" line at the point of each failure.
        lines += [f"  {line}" for line in result.transcript]
    else:
        lines += [f"  ✗ {failure}" for failure in result.failures]
    return lines


__all__ = ["TestResult", "junit_xml", "render_failure", "run_tests"]
