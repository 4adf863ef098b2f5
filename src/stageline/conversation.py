"""Conversation tests: scripted conversations run against an agent's main flow.

A deterministic simulator, with no network and no model, so that the same
configuration always gives the same result:

* **Start.** The ``greeting`` (if any) is said, then the flow runs from its
  ``start`` node. Only the first file of ``flows:`` (the main flow) is run.
* **Running.** ``say`` says its text and goes to ``next``; ``tool`` records the
  call and goes to ``next`` (no request is made); ``collect`` says its prompt and
  waits for the user; ``transfer`` says its text (if any), records the target and
  ends the conversation; ``end`` says its text and ends it. ``{variable}``
  placeholders are filled from the variables collected so far (unknown ones are
  left as they are). More than 100 nodes in one turn is a loop, and a failure.
* **A user turn** at a waiting ``collect`` node tries its ``transitions`` in
  order; the first that matches wins: ``keyword`` is a case-insensitive whole
  word or phrase in the utterance; ``regex`` is ``re.search`` on the utterance;
  ``intent`` matches when the utterance's best intent (below) is that intent;
  ``default: true`` always matches. The node's variable is set to the text the
  winning ``regex`` matched, or else to the whole utterance (stripped).
* **Intent rule.** Words are lowercase ``\\w+`` runs. The score of an intent is
  the best, over its examples, of the share of the example's words that the
  utterance contains. The best intent has the highest score, ties going to the
  intent declared first in ``agent.yaml``; it counts only with a score of at
  least 0.5.

A test file, ``tests/<name>.yaml`` in the agent directory::

    name: Invoice question reaches the lookup
    variables: {caller_name: Sam}          # optional starting values
    expect_start: {say_contains: "account number"}   # optional: before the first turn
    turns:
      - user: "ACME-123456"
        expect:                             # every key is optional
          node: ask_topic                   # where the flow waits (or ended) after the turn
          say_contains: "What would you like"   # some text said in this turn (any case)
          say_matches: "Thanks, \\\\w+"       # some text said in this turn matches
          variables: {account_id: ACME-123456}  # these variables hold these values
          tool: get_account                 # this tool ran in this turn
          transfer: billing-team            # the conversation was transferred there
          end: true                         # the conversation is over
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stageline import yamlsafe

MAX_STEPS = 100
EXPECT_KEYS = frozenset({"node", "say_contains", "say_matches", "variables", "tool",
                         "transfer", "end"})
_WORD = re.compile(r"\w+")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest class

    name: str
    file: str
    passed: bool
    failures: tuple[str, ...]
    transcript: tuple[str, ...]


class _Broken(Exception):
    """The test cannot go on; the message says why."""


@dataclass
class _Turn:
    said: list[str] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    transfer: str | None = None


class _Conversation:
    def __init__(self, agent: dict[str, Any], flow: dict[str, Any],
                 variables: dict[str, Any]) -> None:
        self.agent = agent
        self.nodes: dict[str, Any] = flow.get("nodes") or {}
        self.variables = dict(variables)
        self.node: str | None = flow.get("start")
        self.ended = False
        self.transcript: list[str] = []

    def say(self, turn: _Turn, text: Any) -> None:
        if isinstance(text, str) and text:
            filled = _PLACEHOLDER.sub(lambda m: str(self.variables.get(m.group(1), m.group(0))),
                                      text)
            turn.said.append(filled)
            self.transcript.append(f"bot: {filled}")

    def start(self) -> _Turn:
        turn = _Turn()
        self.say(turn, self.agent.get("greeting"))
        self.run(turn)
        return turn

    def run(self, turn: _Turn) -> None:
        for _ in range(MAX_STEPS):
            node = self.nodes.get(self.node) if isinstance(self.node, str) else None
            if not isinstance(node, dict):
                raise _Broken(f"the flow goes to {self.node!r}, which does not exist")
            self.transcript.append(f"  → node {self.node}")
            kind = node.get("type")
            if kind == "say":
                self.say(turn, node.get("text"))
                self.node = node.get("next")
            elif kind == "tool":
                turn.tools.append(str(node.get("tool")))
                self.transcript.append(f"  → tool {node.get('tool')}")
                self.node = node.get("next")
            elif kind == "collect":
                self.say(turn, node.get("prompt"))
                return
            elif kind == "transfer":
                self.say(turn, node.get("text"))
                turn.transfer = str(node.get("target"))
                self.transcript.append(f"  → transfer {node.get('target')}")
                self.ended = True
                return
            elif kind == "end":
                self.say(turn, node.get("text"))
                self.transcript.append("  → end")
                self.ended = True
                return
            else:
                raise _Broken(f"node {self.node} has unknown type {kind!r}")
        raise _Broken(f"the flow loops: more than {MAX_STEPS} nodes in one turn")

    def answer(self, utterance: str) -> _Turn:
        if self.ended:
            raise _Broken(f"the user says {utterance!r} after the conversation ended")
        self.transcript.append(f"user: {utterance}")
        node = self.nodes[self.node] if isinstance(self.node, str) else {}
        chosen, captured = self.route(node, utterance)
        variable = node.get("variable")
        if isinstance(variable, str):
            self.variables[variable] = captured if captured is not None else utterance.strip()
        self.node = chosen
        turn = _Turn()
        self.run(turn)
        return turn

    def route(self, node: dict[str, Any], utterance: str) -> tuple[str, str | None]:
        best = best_intent(self.agent, utterance)
        for tr in node.get("transitions") or []:
            if not isinstance(tr, dict):
                continue
            if "keyword" in tr:
                if re.search(rf"(?<!\w){re.escape(str(tr['keyword']))}(?!\w)", utterance,
                             re.IGNORECASE):
                    return str(tr.get("to")), None
            elif "regex" in tr:
                try:
                    match = re.search(str(tr["regex"]), utterance)
                except re.error as exc:
                    raise _Broken(f"the regular expression {tr['regex']!r} does not compile "
                                  f"({exc})") from None
                if match:
                    return str(tr.get("to")), match.group(0)
            elif "intent" in tr:
                if best == tr["intent"]:
                    return str(tr.get("to")), None
            elif tr.get("default") is True:
                return str(tr.get("to")), None
        raise _Broken(f"no transition of node {self.node} matches {utterance!r}")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def best_intent(agent: dict[str, Any], utterance: str) -> str | None:
    """The intent an utterance expresses under the documented rule, or None."""
    said = _words(utterance)
    best, best_score = None, 0.0
    intents = agent.get("intents")
    for name, spec in (intents.items() if isinstance(intents, dict) else []):
        examples = spec.get("examples") if isinstance(spec, dict) else None
        for example in examples if isinstance(examples, list) else []:
            words = _words(str(example))
            if words:
                score = len(said & words) / len(words)
                if score > best_score:
                    best, best_score = name, score
    return best if best_score >= 0.5 else None


def _check(expect: Any, turn: _Turn, conv: _Conversation, where: str) -> list[str]:
    if expect is None:
        return []
    if not isinstance(expect, dict):
        return [f"{where}: expect must be a mapping"]
    failures = []
    for key in expect:
        if key not in EXPECT_KEYS:
            failures.append(f"{where}: unknown expectation {key!r} (use one of "
                            f"{', '.join(sorted(EXPECT_KEYS))})")
    said = "\n".join(turn.said)
    if "node" in expect and expect["node"] != conv.node:
        failures.append(f"{where}: expected to be at node {expect['node']!r}, got {conv.node!r}")
    if "say_contains" in expect and str(expect["say_contains"]).lower() not in said.lower():
        failures.append(f"{where}: expected the bot to say something containing "
                        f"{expect['say_contains']!r}, it said {said!r}")
    if "say_matches" in expect:
        try:
            if not re.search(str(expect["say_matches"]), said):
                failures.append(f"{where}: expected the bot to say something matching "
                                f"{expect['say_matches']!r}, it said {said!r}")
        except re.error as exc:
            failures.append(f"{where}: say_matches does not compile ({exc})")
    for name, value in (expect.get("variables") or {}).items() \
            if isinstance(expect.get("variables"), dict) else []:
        if conv.variables.get(name) != value:
            failures.append(f"{where}: expected variable {name} = {value!r}, got "
                            f"{conv.variables.get(name)!r}")
    if "tool" in expect and expect["tool"] not in turn.tools:
        failures.append(f"{where}: expected tool {expect['tool']!r} to run, ran "
                        f"{turn.tools or 'none'}")
    if "transfer" in expect and expect["transfer"] != turn.transfer:
        failures.append(f"{where}: expected a transfer to {expect['transfer']!r}, got "
                        f"{turn.transfer!r}")
    if "end" in expect and bool(expect["end"]) != conv.ended:
        failures.append(f"{where}: expected the conversation "
                        f"{'to end' if expect['end'] else 'to go on'}")
    return failures


def _load(files: Mapping[str, bytes], path: str) -> Any:
    if path not in files:
        raise _Broken(f"{path} does not exist")
    try:
        return yamlsafe.load(files[path], path)
    except yamlsafe.YamlError as exc:
        raise _Broken(str(exc).rstrip(".")) from None


def _run_one(files: Mapping[str, bytes], path: str) -> TestResult:
    name = path
    conv: _Conversation | None = None
    try:
        test = _load(files, path)
        if not isinstance(test, dict) or not isinstance(test.get("turns"), list):
            raise _Broken(f"{path} must be a mapping with a list of turns")
        name = str(test.get("name") or path)
        agent = _load(files, "agent.yaml")
        flows = agent.get("flows") if isinstance(agent, dict) else None
        if not isinstance(flows, list) or not flows:
            raise _Broken("agent.yaml lists no flows to test")
        flow = _load(files, str(flows[0]))
        if not isinstance(flow, dict):
            raise _Broken(f"{flows[0]} is not a flow")
        start_vars = test.get("variables") or {}
        conv = _Conversation(agent, flow, start_vars if isinstance(start_vars, dict) else {})
        failures = _check(test.get("expect_start"), conv.start(), conv, "at the start")
        for i, turn_spec in enumerate(test["turns"], 1):
            if not isinstance(turn_spec, dict) or not isinstance(turn_spec.get("user"), str):
                raise _Broken(f"turn {i} needs a user: line")
            turn = conv.answer(turn_spec["user"])
            failures += _check(turn_spec.get("expect"), turn, conv, f"turn {i}")
        return TestResult(name, path, not failures, tuple(failures), tuple(conv.transcript))
    except _Broken as exc:
        transcript = tuple(conv.transcript) if conv else ()
        return TestResult(name, path, False, (str(exc),), transcript)


def run_tests(files: Mapping[str, bytes]) -> list[TestResult]:
    """Run every tests/*.yaml of an agent directory; ``files`` maps paths relative to the
    agent directory to contents. A test that cannot run is a failed result, never an
    exception."""
    paths = sorted(p for p in files if p.startswith("tests/") and p.count("/") == 1
                   and p.endswith((".yaml", ".yml")))
    return [_run_one(files, path) for path in paths]


def render_failure(result: TestResult) -> list[str]:
    """A failing conversation for the terminal: the transcript, then what was expected."""
    lines = [f"FAIL {result.file}: {result.name}"]
    lines += [f"    {line}" for line in result.transcript]
    lines += [f"  ✗ {failure}" for failure in result.failures]
    return lines


def junit_xml(agent: str, results: Sequence[TestResult]) -> str:
    suite = ET.Element("testsuite", name=agent, tests=str(len(results)),
                       failures=str(sum(1 for r in results if not r.passed)))
    for result in results:
        case = ET.SubElement(suite, "testcase", classname=f"{agent}.{result.file}",
                             name=result.name)
        if not result.passed:
            failure = ET.SubElement(case, "failure", message="; ".join(result.failures))
            failure.text = "\n".join(render_failure(result))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
