"""The conversation-test simulator: node types, transitions, the intent rule, expectations,
bad test files and agents, the reports, and the sample organization's own tests."""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from stageline.conversation import TestResult, junit_xml, render_failure, run_tests

SAMPLE_ENVS = Path(__file__).parent.parent / "sample-repo" / "environments"

AGENT = """\
name: case-agent
description: a small agent for the simulator's tests
model: {provider: openai, name: gpt-4o-mini}
system_prompt: prompts/system.md
greeting: "Hello from the test agent."
flows: [flows/main.yaml]
variables:
  account: {type: string}
  topic: {type: string}
intents:
  billing:
    examples: ["question about my bill", "my invoice is wrong"]
  cancel:
    examples: ["cancel my plan", "I want to leave"]
  human:
    examples: ["talk to a person"]
integrations: [{name: lookup_account, type: http, method: GET, url: https://x.invalid/a}]
"""

# identify --regex--> lookup (tool) --> ask (collect) --intent/keyword/default--> ...
FLOW = """\
start: hello
nodes:
  hello: {type: say, text: "Hi {name}, your code is {code}.", next: identify}
  identify:
    type: collect
    variable: account
    prompt: "Your account number?"
    transitions:
      - {regex: "ACME-[0-9]{6}", to: lookup}
      - {keyword: "talk to someone", to: handoff}
      - {default: true, to: identify_again}
  identify_again:
    type: collect
    variable: account
    prompt: "Sorry, once more?"
    transitions:
      - {regex: "ACME-[0-9]{6}", to: lookup}
  lookup: {type: tool, tool: lookup_account, next: ask}
  ask:
    type: collect
    variable: topic
    prompt: "Account {account}: what is it about?"
    transitions:
      - {keyword: "refund", to: handoff}
      - {intent: billing, to: billing_info}
      - {intent: cancel, to: bye}
      - {intent: human, to: handoff}
      - {default: true, to: ask}
  billing_info: {type: say, text: "Your bill is explained in the portal.", next: done}
  done: {type: end, text: "Goodbye!"}
  bye: {type: end}
  handoff: {type: transfer, target: humans, text: "Connecting you to {account}'s team."}
"""


def files(tests: dict[str, str], agent: str | None = AGENT, flow: str | None = FLOW,
          extra: dict[str, str] | None = None) -> dict[str, bytes]:
    """An agent directory as run_tests sees it: paths relative to the agent directory."""
    out: dict[str, bytes] = {}
    if agent is not None:
        out["agent.yaml"] = agent.encode()
    if flow is not None:
        out["flows/main.yaml"] = flow.encode()
    for name, text in {**tests, **(extra or {})}.items():
        out[name if "/" in name else f"tests/{name}"] = textwrap.dedent(text).encode()
    return out


def run_one(test: str, agent: str | None = AGENT, flow: str | None = FLOW) -> TestResult:
    (result,) = run_tests(files({"t.yaml": test}, agent, flow))
    return result


def flow_of(nodes: str, start: str = "a") -> str:
    return f"start: {start}\nnodes:\n" + textwrap.indent(textwrap.dedent(nodes), "  ")


# --- nodes ------------------------------------------------------------------------------


def test_start_says_greeting_then_runs_to_the_first_collect() -> None:
    r = run_one("""
        turns:
          - expect_start: {node: identify, say_contains: "HELLO FROM", end: false}
          - user: "ACME-123456"
    """)
    assert r.passed, r.failures
    assert r.transcript[:4] == ("bot: Hello from the test agent.",
                                "bot: Hi {name}, your code is {code}.",
                                "bot: Your account number?", "  → node identify")


def test_expect_start_may_also_be_a_top_level_key() -> None:
    r = run_one("""
        expect_start: {node: ask}
        turns: [{user: "ACME-123456"}]
    """)
    assert not r.passed
    assert r.failures == ("start: expected node ask, got identify.",)


def test_say_fills_known_placeholders_and_leaves_unknown_ones() -> None:
    r = run_one("""
        variables: {name: Dana, code: 42}
        turns:
          - expect_start: {say_contains: "Hi Dana, your code is 42."}
          - user: "ACME-123456"
            expect: {say_contains: "Account ACME-123456: what is it about?"}
    """)
    assert r.passed, r.failures
    r = run_one("""
        turns:
          - expect_start: {say_contains: "Hi {name}, your code is {code}."}
          - user: "ACME-123456"
    """)
    assert r.passed, r.failures


def test_tool_node_records_the_call_in_its_turn_only() -> None:
    r = run_one("""
        turns:
          - user: "ACME-123456"
            expect: {tool: lookup_account, node: ask}
          - user: "my invoice is wrong"
            expect: {tool: lookup_account}
    """)
    assert not r.passed
    assert r.failures == ("turn 2 ('my invoice is wrong'): expected tool lookup_account to run, "
                          "got no tool.",)
    assert "  → tool lookup_account" in r.transcript


def test_transfer_says_text_records_target_and_ends() -> None:
    r = run_one("""
        turns:
          - user: "ACME-123456"
          - user: "I want a REFUND"
            expect: {transfer: humans, node: handoff, end: true,
                     say_contains: "Connecting you to ACME-123456's team."}
    """)
    assert r.passed, r.failures
    assert r.transcript[-2:] == ("  → transfer humans", "  → node handoff (conversation ended)")


def test_transfer_and_end_without_text_say_nothing() -> None:
    flow = flow_of("""
        a:
          type: collect
          variable: v
          prompt: "?"
          transitions: [{keyword: x, to: t}, {default: true, to: e}]
        t: {type: transfer, target: elsewhere}
        e: {type: end}
    """)
    agent = AGENT.replace("greeting: \"Hello from the test agent.\"\n", "")
    r = run_one("""
        turns:
          - user: "x"
            expect: {transfer: elsewhere, end: true, say_matches: "."}
    """, agent, flow)
    assert r.failures == ("turn 1 ('x'): expected the bot to say something matching '.'; "
                          "it said nothing.",)
    r = run_one("""
        turns:
          - user: "y"
            expect: {node: e, end: true, transfer: elsewhere}
    """, agent, flow)
    assert r.failures == ("turn 1 ('y'): expected a transfer to elsewhere, got no transfer.",)


def test_end_node_ends_the_conversation() -> None:
    r = run_one("""
        turns:
          - user: "ACME-123456"
          - user: "Question about my bill"
            expect: {node: done, end: true, say_contains: "goodbye"}
    """)
    assert r.passed, r.failures
    assert r.transcript[-1] == "  → node done (conversation ended)"


def test_a_turn_after_the_end_is_a_failure_and_stops_the_test() -> None:
    r = run_one("""
        turns:
          - user: "ACME-123456"
          - user: "cancel my plan"
            expect: {node: bye, end: true}
          - user: "hello?"
          - user: "anyone?"
    """)
    assert not r.passed
    assert r.failures == ("turn 3 ('hello?'): the conversation already ended at node bye; "
                          "nothing hears 'hello?'.",)
    assert "user: anyone?" not in r.transcript


def test_a_loop_fails_naming_the_cycle() -> None:
    flow = flow_of("""
        a: {type: say, text: "one", next: b}
        b: {type: say, text: "two", next: a}
    """)
    r = run_one("turns: [{user: hi}]", flow=flow)
    assert not r.passed
    (failure,) = r.failures
    assert failure.startswith("start: the flow loops: more than 100 nodes in one turn")
    assert "a → b → a" in failure
    assert sum(1 for line in r.transcript if line == "bot: one") == 50


def test_a_long_straight_path_under_the_limit_is_not_a_loop() -> None:
    nodes = "".join(f"n{i}: {{type: say, text: 's{i}', next: n{i + 1}}}\n" for i in range(99))
    flow = flow_of(nodes + "n99: {type: end, text: last}\n", start="n0")
    r = run_one("turns: [{expect_start: {end: true, say_contains: last}}, {user: x}]", flow=flow)
    assert r.failures == ("turn 1 ('x'): the conversation already ended at node n99; nothing "
                          "hears 'x'.",)


def test_a_broken_flow_fails_instead_of_raising() -> None:
    for nodes, message in [
        ("a: {type: say, text: hi, next: ghost}\n", "node 'ghost' is not a node"),
        ("a: {type: say, text: hi}\n", "node a has no next"),
        ("a: {type: dance}\n", "node a has type 'dance'"),
        ("a: {type: collect, variable: v, prompt: p, transitions: [{to: a}]}\n",
         "transition 1 has no intent, keyword, regex or default"),
        ("a: {type: collect, variable: v, prompt: p, transitions: [{default: true}]}\n",
         "transition 1 has no 'to'"),
        ("a: {type: collect, variable: v, prompt: p}\n", "waits but has no transitions"),
    ]:
        r = run_one("turns: [{user: hi}]", flow=flow_of(nodes))
        assert not r.passed
        assert any(message in f for f in r.failures), (nodes, r.failures)


def test_a_node_name_with_a_line_break_gives_a_one_line_failure() -> None:
    flow = 'start: "a\\n"\nnodes:\n  "a\\n": {type: dance}\n'
    r = run_one("turns: [{user: hi}]", flow=flow)
    assert not r.passed and r.failures
    assert all("\n" not in f for f in r.failures), r.failures
    assert "node a\\n has type 'dance'" in r.failures[0]


# --- transitions ------------------------------------------------------------------------


def test_regex_sets_the_variable_to_the_matched_text() -> None:
    r = run_one("""
        turns:
          - user: "  it is ACME-123456 I think  "
            expect: {node: ask, variables: {account: "ACME-123456"}}
    """)
    assert r.passed, r.failures
    assert "  → regex 'ACME-[0-9]{6}' matched 'ACME-123456' → lookup" in r.transcript


def test_other_transitions_set_the_variable_to_the_whole_stripped_utterance() -> None:
    r = run_one("""
        turns:
          - user: "  no idea, sorry  "
            expect: {node: identify_again, variables: {account: "no idea, sorry"}}
          - user: "ACME-000001"
          - user: "  my invoice is wrong!  "
            expect: {variables: {topic: "my invoice is wrong!", account: "ACME-000001"}}
    """)
    assert r.passed, r.failures


def test_regex_is_case_sensitive_and_no_match_without_default_fails() -> None:
    r = run_one("""
        turns:
          - user: "hmm"
            expect: {node: identify_again}
          - user: "acme-123456"
          - user: "never reached"
    """)
    assert not r.passed
    (failure,) = r.failures
    assert failure.startswith("turn 2 ('acme-123456'): no transition for 'acme-123456' at node "
                              "identify_again")
    assert "user: never reached" not in r.transcript


def test_a_transition_regex_that_does_not_compile_fails_naming_it() -> None:
    flow = FLOW.replace('{regex: "ACME-[0-9]{6}", to: lookup}', '{regex: "ACME-[0-9", to: lookup}')
    r = run_one("turns: [{user: ACME-123456}]", flow=flow)
    assert not r.passed
    (failure,) = r.failures
    assert "'ACME-[0-9'" in failure and "not a valid regular expression" in failure


def test_keyword_is_a_whole_word_or_phrase_ignoring_case() -> None:
    for said, node in [("I want a REFUND now", "handoff"), ("refunded?", "ask"),
                       ("prerefund", "ask"), ("refund.", "handoff")]:
        r = run_one(f"""
            turns:
              - user: "ACME-123456"
              - user: "{said}"
                expect: {{node: {node}}}
        """)
        assert r.passed, (said, r.failures)
    for said, node in [("Can I Talk   To\tSomeone please", "handoff"),
                       ("talk to someones", "identify_again"), ("someone talk to", "identify_again")]:
        r = run_one(f"""
            turns:
              - user: "{said}"
                expect: {{node: {node}}}
        """)
        assert r.passed, (said, r.failures)


def test_the_first_matching_transition_wins() -> None:
    # "refund" (a keyword, listed first) beats the billing intent, which also matches.
    r = run_one("""
        turns:
          - user: "ACME-123456"
          - user: "refund my invoice is wrong"
            expect: {node: handoff}
    """)
    assert r.passed, r.failures
    assert "  → keyword 'refund' → handoff" in r.transcript


def test_default_matches_anything() -> None:
    r = run_one("""
        turns:
          - user: "ACME-123456"
          - user: "zzz"
            expect: {node: ask, say_contains: "what is it about"}
    """)
    assert r.passed, r.failures
    assert "  → default → ask" in r.transcript


# --- the intent rule --------------------------------------------------------------------


def intent_case(examples: dict[str, list[str]], said: str) -> str:
    """The node a single collect with one intent transition per intent (in declaration
    order) reaches for ``said``; ``fallback`` when no intent matched."""
    intents = "".join(f"  {name}: {{examples: {exs!r}}}\n" for name, exs in examples.items())
    agent = AGENT.split("intents:")[0] + "intents:\n" + intents
    routes = "".join(f"{{intent: {name}, to: at_{name}}}, " for name in examples)
    ends = "".join(f"  at_{name}: {{type: end}}\n" for name in examples)
    flow = ("start: a\nnodes:\n  a: {type: collect, variable: topic, prompt: '?', transitions: ["
            + routes + "{default: true, to: fallback}]}\n  fallback: {type: end}\n" + ends)
    r = run_one(f"turns: [{{user: {said!r}}}]", agent=agent, flow=flow)
    assert r.failures == (), r.failures
    return r.transcript[-1].split()[2]


def test_intent_score_is_the_share_of_an_examples_words() -> None:
    intents = {"billing": ["question about my bill", "my invoice is wrong"]}
    assert intent_case(intents, "My invoice is WRONG!!") == "at_billing"      # 4/4
    assert intent_case(intents, "a question about cats") == "at_billing"      # 2/4 = 0.5
    assert intent_case(intents, "the invoice, please") == "fallback"          # 1/4 < 0.5
    assert intent_case(intents, "my bill") == "at_billing"                    # 2/4, best example


def test_intent_tie_goes_to_the_intent_declared_first() -> None:
    both = {"first": ["close my account"], "second": ["close my account now"]}
    # "close my account now": first scores 3/3, second 4/4: a tie at 1.0, so only "first"
    # can match, although the second intent's transition is also tried.
    assert intent_case(both, "close my account now") == "at_first"
    swapped = {"second": ["close my account now"], "first": ["close my account"]}
    assert intent_case(swapped, "close my account now") == "at_second"


def test_an_intent_that_is_not_the_best_does_not_match() -> None:
    intents = {"weak": ["order status please"], "strong": ["where is my order"]}
    # weak: 2/3 (>= 0.5) but strong: 4/4 is the best intent.
    assert intent_case(intents, "where is my order status") == "at_strong"


def test_below_threshold_best_intent_matches_nothing() -> None:
    intents = {"a": ["one two three"], "b": ["four five six seven"]}
    assert intent_case(intents, "one and four") == "fallback"   # a: 1/3, b: 1/4


# --- expectations -----------------------------------------------------------------------


def test_every_expectation_mismatch_says_expected_and_got() -> None:
    r = run_one("""
        variables: {topic: preset}
        turns:
          - user: "ACME-123456"
            expect:
              node: identify
              say_contains: "nope"
              say_matches: "^Account [0-9]+"
              variables: {account: "ACME-999999", topic: null, missing: "x"}
              tool: other_tool
              transfer: humans
              end: true
          - user: "talk to a person"
            expect: {end: false}
    """)
    assert not r.passed
    t1 = "turn 1 ('ACME-123456'): "
    assert r.failures == (
        t1 + "expected node identify, got ask.",
        t1 + "expected the bot to say something containing 'nope'; it said 'Account "
             "ACME-123456: what is it about?'.",
        t1 + "expected the bot to say something matching '^Account [0-9]+'; it said 'Account "
             "ACME-123456: what is it about?'.",
        t1 + "expected variable account = 'ACME-999999', got 'ACME-123456'.",
        t1 + "expected variable topic to be unset, got 'preset'.",
        t1 + "expected variable missing = 'x', got nothing (unset).",
        t1 + "expected tool other_tool to run, got lookup_account.",
        t1 + "expected a transfer to humans, got no transfer.",
        t1 + "expected the conversation to end, but it waits at node ask.",
        "turn 2 ('talk to a person'): expected the conversation to go on, but it ended at node "
        "handoff.",
    )
    # Mismatches do not stop the test: the second turn ran.
    assert "user: talk to a person" in r.transcript
    assert "  ✗ expected node identify, got ask." in r.transcript


def test_say_expectations_only_see_the_current_turn() -> None:
    r = run_one("""
        turns:
          - user: "ACME-123456"
            expect: {say_contains: "what is it about"}
          - user: "my invoice is wrong"
            expect: {say_contains: "account number"}
    """)
    assert len(r.failures) == 1 and "containing 'account number'" in r.failures[0]


def test_integer_values_compare_as_text() -> None:
    flow = flow_of("""
        a: {type: collect, variable: n, prompt: "How many?", transitions: [{regex: "^[0-9]+$", to: b}]}
        b: {type: end, text: "{n} it is"}
    """)
    r = run_one("""
        turns:
          - user: 40
            expect: {variables: {n: 40}, say_contains: "40 it is"}
    """, flow=flow)
    assert r.passed, r.failures


# --- bad test files ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "part"), [
    ("turns: [unclosed", "is not valid YAML"),
    (b"\xff\xfe", "is not UTF-8"),
    ("- a list", "must be a mapping"),
    ("", "must be a mapping"),
    ("name: no turns here", "turns is missing"),
    ("turns: []", "non-empty list"),
    ("turns: [{expect_start: {node: identify}}]", "has no user turn"),
    ("turns: [{user: hi, expect: {nodes: identify}}]", "unknown key 'nodes'"),
    ("turns: [{user: hi, expected: {node: identify}}]", "unknown key 'expected'"),
    ("tests: [{user: hi}]\nturns: [{user: hi}]", "unknown key 'tests'"),
    ("turns: [{user: yes}]", "quote it"),
    ("turns: [{expect: {node: identify}}]", "user is missing"),
    ("turns: [{user: hi, expect: {say_matches: '(['}}]", "say_matches '([' is not a valid"),
    ("turns: [{user: hi, expect: {end: maybe}}]", "end must be true or false"),
    ("turns: [{user: hi, expect: {variables: {v: yes}}}]", "quote it"),
    ("turns: [{user: hi, expect: [node, identify]}]", "must be a mapping of expectations"),
    ("turns: [{user: hi}, {expect_start: {}}]", "must be the first entry"),
    ("expect_start: {}\nturns: [{expect_start: {}}, {user: hi}]", "give it once"),
    ("variables: [a, b]\nturns: [{user: hi}]", "variables must map"),
    ("variables: {a: 1.5}\nturns: [{user: hi}]", "variables.a"),
    ("name: [x]\nturns: [{user: hi}]", "name must be text"),
    ("turns: [{user: hi, expect: {node: 3}}]", "expect.node must be text"),
])
def test_a_bad_test_file_is_a_failed_result_naming_the_problem(text: str | bytes,
                                                                 part: str) -> None:
    data = text if isinstance(text, bytes) else text.encode()
    (r,) = run_tests({**files({}), "tests/bad.yaml": data})
    assert not r.passed
    assert r.file == "tests/bad.yaml"
    assert any(part in f for f in r.failures), r.failures
    assert r.transcript == ()


def test_x_keys_are_left_alone() -> None:
    r = run_one("""
        x-owner: quinn
        turns:
          - user: "ACME-123456"
            x-note: "the happy path"
            expect: {node: ask, x-why: "account found"}
    """)
    assert r.passed, r.failures


def test_test_name_defaults_to_the_file_name() -> None:
    (r,) = run_tests(files({"plain.yaml": "turns: [{user: ACME-123456}]"}))
    assert (r.name, r.file, r.passed) == ("plain.yaml", "tests/plain.yaml", True)


def test_only_tests_directly_in_tests_run_sorted_by_path() -> None:
    ok = "turns: [{user: ACME-123456}]"
    results = run_tests(files({"b.yaml": ok, "a.yml": ok},
                              extra={"tests/sub/c.yaml": ok, "tests/notes.md": "x",
                                     "other/d.yaml": ok, "flows/e.yaml": ok}))
    assert [r.file for r in results] == ["tests/a.yml", "tests/b.yaml"]


def test_no_tests_gives_no_results_even_for_a_broken_agent() -> None:
    assert run_tests(files({})) == []
    assert run_tests({"agent.yaml": b": : :"}) == []


# --- bad agents -------------------------------------------------------------------------


@pytest.mark.parametrize(("agent", "flow", "extra", "part"), [
    (None, FLOW, {}, "agent.yaml is missing"),
    ("name: [unclosed", FLOW, {}, "agent.yaml is not valid YAML"),
    ("- just a list", FLOW, {}, "agent.yaml must be a mapping"),
    (AGENT.replace("flows: [flows/main.yaml]\n", ""), FLOW, {}, "lists no flows"),
    (AGENT.replace("flows: [flows/main.yaml]", "flows: []"), FLOW, {}, "lists no flows"),
    (AGENT, None, {}, "the main flow flows/main.yaml is missing"),
    (AGENT.replace("flows: [flows/main.yaml]", "flows: [../other/main.yaml]"), FLOW, {},
     "not a path inside the agent directory"),
    (AGENT, "start: [", {}, "flows/main.yaml is not valid YAML"),
    (AGENT, "start: nowhere\nnodes: {a: {type: end}}", {}, "start node 'nowhere' does not exist"),
    (AGENT, "start: a\nnodes: []", {}, "has no nodes"),
    (AGENT.replace("intents:", "intents: 3\nx-old-intents:"), FLOW, {}, "intents must map"),
    (AGENT.replace('examples: ["talk to a person"]', "examples: talk"), FLOW, {},
     "intent 'human' must have examples"),
    (AGENT.replace('greeting: "Hello from the test agent."', "greeting: [hi]"), FLOW, {},
     "greeting must be text"),
])
def test_an_agent_that_cannot_run_fails_every_test(agent: str | None, flow: str | None,
                                                   extra: dict[str, str], part: str) -> None:
    ok = "name: happy\nturns: [{user: ACME-123456}]"
    results = run_tests(files({"a.yaml": ok, "b.yaml": ok}, agent, flow, extra))
    assert [r.passed for r in results] == [False, False]
    for r in results:
        assert any(part in f for f in r.failures), r.failures
    assert results[0].name == "happy"


def test_only_the_first_flow_is_run() -> None:
    agent = AGENT.replace("flows: [flows/main.yaml]", "flows: [flows/main.yaml, flows/other.yaml]")
    other = "start: z\nnodes: {z: {type: end, text: other flow}}"
    data = files({"t.yaml": "turns: [{expect_start: {node: identify}}, {user: ACME-123456}]"},
                 agent, FLOW, {"flows/other.yaml": other})
    (r,) = run_tests(data)
    assert r.passed, r.failures
    agent = agent.replace("flows: [flows/main.yaml, flows/other.yaml]",
                          "flows: [./flows/other.yaml, flows/main.yaml]")
    (r,) = run_tests({**data, "agent.yaml": agent.encode()})
    assert r.failures[0] == "start: expected node identify, got z."


@pytest.mark.parametrize("garbage", [
    "nodes: {a: 1, b: [x], c: {type: say, text: [1], next: {x: 1}}}\nstart: c",
    "start: a\nnodes: {a: {type: collect, variable: [v], prompt: 3, transitions: [1]}}",
    "start: a\nnodes: {a: {type: collect, variable: v, prompt: p, transitions: "
    "[{keyword: 5, to: a}, {intent: [x], to: a}, {regex: 7, to: a}]}}",
    "start: a\nnodes: {a: {type: transfer, target: [t]}}",
    "start: a\nnodes: {a: {type: tool, tool: {x: 1}, next: a}}",
])
def test_garbage_flows_never_raise(garbage: str) -> None:
    (r,) = run_tests(files({"t.yaml": "turns: [{user: '5'}, {user: '6'}]"}, flow=garbage))
    assert isinstance(r, TestResult)
    assert not r.passed


def test_runs_are_deterministic() -> None:
    data = files({"a.yaml": "turns: [{user: ACME-123456}, {user: 'my invoice is wrong'}]",
                  "b.yaml": "turns: [{user: x}, {user: y}]"})
    assert run_tests(data) == run_tests(dict(reversed(list(data.items()))))


# --- reports ----------------------------------------------------------------------------


def test_junit_xml_parses_back_with_the_right_counts() -> None:
    results = run_tests(files({
        "pass.yaml": "name: passes\nturns: [{user: ACME-123456, expect: {node: ask}}]",
        "fail.yaml": "name: fails\nturns: [{user: ACME-123456, expect: {node: done}}]",
        "bad.yaml": "turns: 3",
    }))
    root = ET.fromstring(junit_xml("case-agent", results).encode())
    assert root.tag == "testsuite"
    assert root.get("name") == "case-agent"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "2", "0")
    cases = root.findall("testcase")
    assert [c.get("name") for c in cases] == ["bad.yaml", "fails", "passes"]
    assert [c.get("file") for c in cases] == ["tests/bad.yaml", "tests/fail.yaml",
                                              "tests/pass.yaml"]
    assert cases[2].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == "turn 1 ('ACME-123456'): expected node done, got ask."
    assert failure.text is not None and "user: ACME-123456" in failure.text
    assert "  → tool lookup_account" in failure.text


def test_junit_xml_survives_characters_xml_cannot_carry() -> None:
    results = run_tests(files({"t.yaml": 'name: "bell \\x07"\nturns: [{user: "\\x01 hi"}]'}))
    root = ET.fromstring(junit_xml("case-agent", results))
    case = root.find("testcase")
    assert case is not None and case.get("name") == "bell \\x07"


def test_render_failure_shows_the_conversation_and_what_was_expected() -> None:
    r = run_one("""
        name: reaches billing
        turns:
          - user: "ACME-123456"
          - user: "cancel my plan"
            expect: {node: billing_info}
    """)
    lines = render_failure(r)
    assert lines[0] == "FAIL tests/t.yaml: reaches billing"
    assert "  user: cancel my plan" in lines
    assert "    → intent cancel (score 1.00) → bye" in lines
    assert lines[-1] == "    ✗ expected node billing_info, got bye."
    assert lines.index("  user: cancel my plan") < lines.index(lines[-1])


def test_render_failure_of_an_unreadable_file_lists_the_reasons() -> None:
    (r,) = run_tests(files({"t.yaml": "turns: [{user: hi, expect: {nod: x}}]"}))
    lines = render_failure(r)
    assert lines[0] == "FAIL tests/t.yaml: t.yaml"
    assert len(lines) == 2 and lines[1].startswith("  ✗ turns[0].expect: unknown key 'nod'")


# --- the sample organization ------------------------------------------------------------


def _agent_dirs() -> list[Path]:
    return sorted(p for p in SAMPLE_ENVS.glob("*/*") if (p / "agent.yaml").is_file())


def _read(agent_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(agent_dir).as_posix(): p.read_bytes()
            for p in sorted(agent_dir.rglob("*")) if p.is_file()}


def test_every_sample_agent_is_found() -> None:
    assert len(_agent_dirs()) == 6


@pytest.mark.parametrize("agent_dir", _agent_dirs(),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sample_agent_conversation_tests_pass(agent_dir: Path) -> None:
    results = run_tests(_read(agent_dir))
    assert len(results) >= 2
    failed = [line for r in results if not r.passed for line in render_failure(r)]
    assert not failed, "\n".join(failed)


def test_sample_copies_that_must_match_still_match() -> None:
    assert _read(SAMPLE_ENVS / "staging/billing-support") == \
        _read(SAMPLE_ENVS / "production/billing-support")
    assert _read(SAMPLE_ENVS / "development/sales-qualifier") == \
        _read(SAMPLE_ENVS / "staging/sales-qualifier")
