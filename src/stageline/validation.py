"""Checking an agent directory before anyone promotes it.

One pass over the agent's files gives ``Finding``s with ``file:line``:

* regular files only (no symlinks, no submodules);
* ``agent.yaml`` and every flow file against the JSON Schemas shipped in the
  package (``stageline schema``), with the line of the offending key;
* the name equals the directory;
* references: the system prompt, flows and knowledge files exist inside the
  agent directory; a flow's start node and every ``next``/``to`` exist; the
  intents, variables and tools a flow names are declared; regular expressions
  compile. Unreachable nodes and collect nodes without a default route are
  warnings;
* credentials: anything that looks like a secret, in any file, is an error:
  secrets are references only (``{secret: NAME}`` or ``${settings.NAME}``);
* ``${settings.NAME}`` references must resolve in the environment's settings.

Errors block promotion (exit 1); warnings do not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from stageline import yamlsafe
from stageline.layout import AGENT_FILE, REGULAR_MODES, inside_agent, mode_name
from stageline.settings import REFERENCE_RE, references, settings_path
from stageline.yamlsafe import key_path, show

MAX_SCAN_BYTES = 25 * 1024 * 1024

SECRET_PATTERNS = [
    ("an OpenAI/Stripe-style secret key", re.compile(
        r"\bsk[-_](?:live[-_]|test[-_]|proj-)?[A-Za-z0-9_-]{16,}")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a GitHub token", re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}|\bgithub_pat_"
                                  r"[A-Za-z0-9_]{22,}")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a JSON Web Token", re.compile(
        r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("a private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    ("a GitLab token", re.compile(r"\bgl(?:pat|dt|rt|ptt)-[0-9A-Za-z_-]{20,}")),
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    ("a Stripe restricted key", re.compile(r"\brk_(?:live|test)_[A-Za-z0-9]{16,}")),
    ("a bearer token", re.compile(r"\bBearer\s+(?!\$\{)[A-Za-z0-9._~+/-]{16,}=*")),
]
# Key names that hold credentials, matched as whole words of the key (``db_password``,
# ``apiKey``, ``client-secret``), not as parts of other words (``passport``, ``max_tokens``).
SECRET_WORDS = frozenset({"password", "passwd", "passphrase", "pass", "pwd", "secret",
                          "token", "apikey", "credential", "credentials"})
SECRET_PAIRS = frozenset({("api", "key"), ("private", "key"), ("access", "key"),
                          ("secret", "key"), ("client", "secret")})
REFERENCE_VALUE_RE = re.compile(r"^(\$\{settings\.[A-Za-z_][A-Za-z0-9_]*\}|(vault|env)://\S+)$")


# A private key in DER (binary) form: a SEQUENCE holding INTEGER 0 then, for PKCS#8, the
# algorithm's SEQUENCE, or, for PKCS#1 RSA and SEC 1 EC keys, INTEGER 0 or 1 then more.
_DER_KEY = re.compile(rb"\x30(?:[\x20-\x7f]|\x81.|\x82..)\x02\x01[\x00\x01]"
                      rb"(?:\x30|\x02\x81|\x02\x82|\x04[\x20\x30\x42])", re.DOTALL)
_WIDE = ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
MAX_INFLATED = 64 * 1024 * 1024


def secrets_in(data: bytes, limit: int | None = None) -> Iterator[tuple[str, int | None]]:
    """What in a file looks like a secret: ``(label, line)``.

    Text is read as UTF-8, and a file holding NUL bytes also as UTF-16 and UTF-32 (either
    byte order, with or without a byte order mark); a gzip file is read inflated (up to
    64 MiB); a binary private key (DER) is found by its structure. With ``limit``
    (validation), files larger than it, and other binary files, are not scanned; without
    (the hook), every file is. No scanner finds a secret someone means to hide (encrypted,
    split, encoded): this is a net for mistakes."""
    if limit is not None and (len(data) > limit or b"\0" in data[:8192]) \
            and not data.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
        return
    if data[:2] == b"\x1f\x8b":
        inflated = _inflated(data)
        if inflated is not None:
            yield from secrets_in(inflated, limit)
    if _DER_KEY.match(data):
        yield "a private key (binary DER)", None
    texts = [data.decode("utf-8", "replace")]
    if b"\0" in data:
        texts += [data.decode(codec, "ignore").lstrip("\ufeff") for codec in _WIDE]
    seen: set[tuple[str, int | None]] = set()
    for text in texts:
        for label, pattern in SECRET_PATTERNS:
            starts = (match.start() for match in pattern.finditer(text))
            for line in yamlsafe.line_numbers(text, starts):
                if (label, line) not in seen:
                    seen.add((label, line))
                    yield label, line


def _inflated(data: bytes) -> bytes | None:
    import zlib

    try:
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        return inflater.decompress(data, MAX_INFLATED)
    except zlib.error:
        return None


@dataclass(frozen=True)
class Finding:
    severity: str  # error | warning
    file: str | None
    line: int | None
    message: str

    def text(self, agent: str) -> str:
        """One line, whatever the file name or message holds (line breaks are escaped):
        a finding can neither span lines nor forge another ``agent/file:line`` line."""
        where = f"{agent}/{self.file}" if self.file else agent
        if self.line:
            where += f":{self.line}"
        return yamlsafe.printable(f"{where}: {self.severity}: {self.message}")

    def to_json(self, agent: str) -> dict[str, Any]:
        return {"agent": agent, "severity": self.severity, "file": self.file,
                "line": self.line, "message": self.message}


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


@cache
def _validator(name: str) -> Any:
    # jsonschema is imported here, not at the top: the hook never needs it.
    from importlib.resources import files

    from jsonschema import Draft202012Validator

    schema = json.loads(files("stageline").joinpath("schemas", name).read_text("utf-8"))
    return Draft202012Validator(schema)


def schema_text(name: str = "agent") -> str:
    from importlib.resources import files

    return files("stageline").joinpath("schemas", f"{name}.schema.json").read_text("utf-8")


class _Checker:
    def __init__(self, agent: str, modes: Mapping[str, str], read: Callable[[str], bytes],
                 settings: Mapping[str, Any] | None, env: str) -> None:
        self.agent = agent
        self.modes = modes
        self.read = read
        self.settings = settings
        self.env = env
        self.findings: list[Finding] = []
        self.secret_lines: set[tuple[str, int | None]] = set()

    def error(self, file: str | None, line: int | None, message: str) -> None:
        self.findings.append(Finding("error", file, line, message))

    def secret(self, file: str, line: int | None, message: str) -> None:
        # One secret finding per line: a literal token is often caught by the schema, a
        # pattern and its key name at once.
        if (file, line) not in self.secret_lines:
            self.secret_lines.add((file, line))
            self.error(file, line, message)

    def warning(self, file: str | None, line: int | None, message: str) -> None:
        self.findings.append(Finding("warning", file, line, message))

    def has(self, ref: Any) -> str | None:
        """The normalised path of a reference when it names a regular file here."""
        path = inside_agent(ref)
        return path if path is not None and self.modes.get(path) in REGULAR_MODES else None

    def run(self) -> list[Finding]:
        for path, mode in sorted(self.modes.items()):
            if mode not in REGULAR_MODES:
                kind = mode_name(mode)
                self.error(path, None, f"this is {kind}; only regular files are allowed")
        if self.modes.get(AGENT_FILE) not in REGULAR_MODES:
            self.error(None, None, f"there is no {AGENT_FILE}")
            return self.findings
        agent = self.load(AGENT_FILE, "agent")
        if agent is not None:
            doc, lines = agent
            self.check_agent(doc, lines)
        self.scan_all()
        return sorted(self.findings, key=lambda f: (f.file or "", f.line or 0))

    def load(self, path: str, schema: str) -> tuple[Any, yamlsafe.Lines] | None:
        try:
            doc, lines = yamlsafe.load_with_lines(self.read(path), path)
        except yamlsafe.YamlError as exc:
            match = re.search(r"\(line (\d+)\)", str(exc))
            self.error(path, int(match.group(1)) if match else None,
                       str(exc).removeprefix(f"{path} ").rstrip("."))
            return None
        # YAML 1.1 reads unquoted on, yes, null, 1 or 2024-01-01 as other values than text;
        # as keys they are errors of their own, and the schema checks the document without
        # them (jsonschema's patterns cannot read them).
        odd = list(_odd_keys(doc, ()))
        for place in odd:
            parent = key_path(place[:-1])
            self.error(path, _line(lines, list(place)),
                       f"{parent + ': ' if parent else ''}key {show(place[-1])} is not text (YAML "
                       "reads unquoted on, off, yes, no, null, numbers and dates as values); "
                       "quote it")
        if odd:
            doc = _text_keys_only(doc, top=True)
        valid = not odd
        for err in sorted(_validator(f"{schema}.schema.json").iter_errors(doc),
                          key=lambda e: key_path(e.absolute_path)):
            valid = False
            where = list(err.absolute_path)
            if err.validator == "additionalProperties" and isinstance(err.instance, dict):
                for extra in _unknown_keys(err.instance, err.schema):
                    at = [*where, extra]
                    self.error(path, _line(lines, at),
                               f"{key_path(at)}: unknown key {show(extra)}")
                continue
            key = key_path(where) or "(document)"
            if where and str(where[-1]) in ("token", "password", "api_key"):
                self.secret_lines.add((path, _line(lines, where)))
            self.error(path, _line(lines, where), f"{key}: {_message(err)}")
        return (doc, lines) if valid or isinstance(doc, dict) else None

    def check_agent(self, doc: Any, lines: yamlsafe.Lines) -> None:
        if not isinstance(doc, dict):
            return
        if isinstance(doc.get("name"), str) and doc["name"] != self.agent:
            self.error(AGENT_FILE, lines.get(("name",)),
                       f"name is {show(doc['name'])} but the directory is {show(self.agent)}")
        refs: list[tuple[Any, tuple[Any, ...], str]] = [
            (doc.get("system_prompt"), ("system_prompt",), "system_prompt")]
        flows: list[Any] = doc["flows"] if isinstance(doc.get("flows"), list) else []
        refs += [(f, ("flows", i), "flow") for i, f in enumerate(flows)]
        kb = doc.get("knowledge_base")
        sources = kb.get("sources") if isinstance(kb, dict) else None
        for i, src in enumerate(sources if isinstance(sources, list) else []):
            if isinstance(src, dict):
                refs.append((src.get("path"), ("knowledge_base", "sources", i, "path"),
                             "knowledge source"))
        for ref, where, what in refs:
            if ref is None and what != "system_prompt":
                continue
            if self.has(ref) is None:
                outside = inside_agent(ref) is None
                self.error(AGENT_FILE, _line(lines, list(where)),
                           f"{what} {show(ref)} " + ("is not a path inside the agent directory"
                                                 if outside else "does not exist"))
        intents = set(doc.get("intents") or {}) if isinstance(doc.get("intents"), dict) else set()
        variables = set(doc.get("variables") or {}) if isinstance(doc.get("variables"),
                                                                  dict) else set()
        tools = {i["name"] for i in doc["integrations"] if isinstance(i, dict)
                 and isinstance(i.get("name"), str)} if isinstance(doc.get("integrations"),
                                                                 list) else set()
        for i, ref in enumerate(flows):
            path = self.has(ref)
            if path is not None and not path.endswith((".yaml", ".yml")):
                self.error(AGENT_FILE, _line(lines, ["flows", i]),
                           f"flow {show(ref)} must be a YAML file (.yaml or .yml)")
            elif path is not None:
                flow = self.load(path, "flow")
                if flow is not None:
                    self.check_flow(path, flow[0], flow[1], intents, variables, tools)

    def check_flow(self, path: str, flow: Any, lines: yamlsafe.Lines, intents: set[str],
                   variables: set[str], tools: set[Any]) -> None:
        nodes = flow.get("nodes") if isinstance(flow, dict) else None
        if not isinstance(nodes, dict):
            return
        start = flow.get("start")
        if not _among(start, nodes):
            self.error(path, lines.get(("start",)), f"the start node {show(start)} does not exist")
        edges: dict[str, list[str]] = {}
        for name, node in nodes.items():
            if not isinstance(node, dict):
                continue
            node_name = key_path((name,))
            targets: list[tuple[Any, tuple[Any, ...]]] = []
            if "next" in node:
                targets.append((node["next"], ("nodes", name, "next")))
            transitions: list[Any] = node["transitions"] if isinstance(
                node.get("transitions"), list) else []
            for i, tr in enumerate(transitions):
                if not isinstance(tr, dict):
                    continue
                targets.append((tr.get("to"), ("nodes", name, "transitions", i, "to")))
                at = _line(lines, ["nodes", name, "transitions", i])
                if "intent" in tr and not _among(tr["intent"], intents):
                    self.error(path, at, f"node {node_name}: intent {show(tr['intent'])} is not "
                                         "declared in agent.yaml")
                if isinstance(tr.get("regex"), str):  # other values: the schema's finding
                    try:
                        re.compile(tr["regex"])
                    except (re.error, OverflowError, RecursionError) as exc:
                        # OverflowError: a{99999999999}; RecursionError: deeply nested groups
                        reason = exc if isinstance(exc, re.error) else type(exc).__name__
                        self.error(path, at, f"node {node_name}: the regular expression "
                                             f"{show(tr['regex'])} does not compile ({reason})")
            if node.get("type") == "collect":
                if not _among(node.get("variable"), variables):
                    self.error(path, _line(lines, ["nodes", name, "variable"]),
                               f"node {node_name}: variable {show(node.get('variable'))} is not "
                               "declared in agent.yaml")
                if not any(isinstance(t, dict) and t.get("default") for t in transitions):
                    self.warning(path, _line(lines, ["nodes", name]),
                                 f"node {node_name} has no default transition: the conversation is "
                                 "stuck when nothing matches")
            if node.get("type") == "tool" and not _among(node.get("tool"), tools):
                self.error(path, _line(lines, ["nodes", name, "tool"]),
                           f"node {node_name}: tool {show(node.get('tool'))} is not an integration of "
                           "agent.yaml")
            for target, where in targets:
                if not _among(target, nodes):
                    self.error(path, _line(lines, list(where)),
                               f"node {node_name} goes to {show(target)}, which does not exist")
            edges[name] = [t for t, _w in targets if _among(t, nodes)]
        if _among(start, nodes):
            seen, todo = {start}, [start]
            while todo:
                for nxt in edges.get(todo.pop(), []):
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
            for name in nodes:
                if name not in seen:
                    self.warning(path, _line(lines, ["nodes", name]),
                                 f"node {key_path((name,))} cannot be reached from "
                                 f"{key_path((start,))}")

    def scan_all(self) -> None:
        for path, mode in sorted(self.modes.items()):
            if mode not in REGULAR_MODES:
                continue
            data = self.read(path)
            for label, line in secrets_in(data, MAX_SCAN_BYTES):
                self.secret(path, line,
                            f"this looks like {label}; keep secrets out of the repository "
                            "and refer to them ({secret: NAME} or ${settings.NAME})")
            if len(data) > MAX_SCAN_BYTES or b"\0" in data[:8192]:
                continue
            text = data.decode("utf-8", "replace")
            if path.endswith((".yaml", ".yml")):
                self.scan_keys(path, data)
            for name, line in references(text):
                if self.settings is None or name not in self.settings:
                    self.error(path, line, f"${{settings.{name}}} is not defined in "
                                           f"{settings_path(self.env)}")

    def scan_keys(self, path: str, data: bytes) -> None:
        try:
            doc, lines = yamlsafe.load_with_lines(data, path)
        except yamlsafe.YamlError:
            return  # reported where the file is used; a document file may not be YAML
        for where, key, value in _walk(doc, ()):
            literal = (isinstance(value, str) and value.strip()
                       and not REFERENCE_VALUE_RE.match(value.strip())) or (
                isinstance(value, (int, float)) and not isinstance(value, bool))
            if isinstance(key, str) and _secret_key(key) and literal:
                self.secret(path, _line(lines, list(where)),
                           f"{key_path(where)} holds a literal value; secrets "
                           "are references only ({secret: NAME} or ${settings.NAME})")


def _secret_key(key: str) -> bool:
    words = [w.lower() for w in re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", key)]
    if words and words[-1] in ("url", "uri", "endpoint", "type", "header", "name"):
        return False
    return any(w in SECRET_WORDS for w in words) or any(
        pair in SECRET_PAIRS for pair in zip(words, words[1:], strict=False))


def _walk(value: Any, where: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any, Any]]:
    if isinstance(value, dict):
        if set(value) == {"secret"} and isinstance(value["secret"], str) and \
                re.fullmatch(r"[A-Z][A-Z0-9_]*", value["secret"]):
            return  # {secret: NAME} is the reference form
        for key, item in value.items():
            yield (*where, key), key, item
            yield from _walk(item, (*where, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, (*where, i))


def _odd_keys(value: Any, where: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    """The path of every mapping key that is not text, except inside the values of
    top-level ``x-`` extension keys (free for any use)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                yield (*where, key)
            elif where or not key.startswith("x-"):
                yield from _odd_keys(item, (*where, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _odd_keys(item, (*where, i))


def _text_keys_only(value: Any, top: bool = False) -> Any:
    """A copy of a document without the keys ``_odd_keys`` names."""
    if isinstance(value, dict):
        return {k: v if top and k.startswith("x-") else _text_keys_only(v)
                for k, v in value.items() if isinstance(k, str)}
    if isinstance(value, list):
        return [_text_keys_only(v) for v in value]
    return value


def _among(value: Any, names: Any) -> bool:
    """Membership that a malformed value (a list where a name belongs) cannot crash."""
    return isinstance(value, str) and value in names


def _line(lines: yamlsafe.Lines, where: list[Any]) -> int | None:
    for end in range(len(where), -1, -1):
        line = lines.get(tuple(where[:end]))
        if line is not None:
            return line
    return None


def _unknown_keys(instance: dict[Any, Any], schema: dict[str, Any]) -> list[Any]:
    known = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    return [k for k in instance if k not in known
            and not (isinstance(k, str) and any(re.search(p, k) for p in patterns))]


def _message(err: Any) -> str:
    if err.validator == "oneOf" and err.absolute_path and \
            str(err.absolute_path[-1]) in ("token", "password", "api_key"):
        return "must be a secret reference ({secret: NAME} or ${settings.NAME}), not a value"
    text = str(err.message)
    return text if len(text) <= 160 else text[:157] + "..."


def validate(agent: str, modes: Mapping[str, str], read: Callable[[str], bytes],
             settings: Mapping[str, Any] | None, env: str) -> list[Finding]:
    """Every finding for one agent directory. ``modes`` maps each file's path (relative
    to the agent directory) to its git mode; ``read`` returns a file's content;
    ``settings`` are the environment's settings (None: no settings file)."""
    return _Checker(agent, modes, read, settings, env).run()


__all__ = ["Finding", "REFERENCE_RE", "errors", "schema_text", "validate"]
