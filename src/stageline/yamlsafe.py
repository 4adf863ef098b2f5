"""The one YAML loader: safe, strict about duplicate keys, and bounded.

Every YAML file stageline reads (the policy, approvals, agent configuration)
goes through ``load``. It refuses what a hostile or careless file could use to
mislead or exhaust a reader: duplicate keys (the last one silently winning),
oversized files, deep nesting, alias expansion ("billion laughs") and integers too
long for Python to write as text.

It also owns how values and places from a YAML file appear in messages: ``show`` and
``key_path`` put any value or key on one bounded line, and ``line_numbers`` counts
lines as the YAML parser does.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import yaml

MAX_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 200_000
# Python refuses to turn longer integers into text (``repr`` raises ValueError), so no
# message could name them; the interpreter's own limit when it is set lower.
MAX_INT_DIGITS = min(4300, getattr(sys, "get_int_max_str_digits", lambda: 0)() or 4300)
_INT_BOUND = 10**MAX_INT_DIGITS
# The line breaks of YAML 1.1 (PyYAML and libyaml alike): \r\n, \r, \n, NEL, LS, PS.
_BREAKS = ("\r", "\n", "\x85", "\u2028", "\u2029")
_SHOW_LIMIT = 80

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlError(ValueError):
    """A YAML document that cannot be used; the message is one sentence."""


class _StrictLoader(_Base):  # type: ignore[misc]
    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # ``<<: *anchor``: merged keys may be overridden, as YAML allows
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value", key_node.start_mark
                ) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {show(key)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: Any) -> Any:
        try:
            value = super().construct_yaml_int(node)
        except ValueError:
            # Decimal digits beyond Python's limit; any other ValueError is reported as is.
            if not re.fullmatch(r"[-+]?[0-9_]+", str(node.value)):
                raise
            value = _INT_BOUND
        if abs(value) >= _INT_BOUND:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer has more than {MAX_INT_DIGITS} digits", node.start_mark
            )
        return value


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


Lines = dict[tuple[Any, ...], int]


def load(data: bytes, source: str) -> Any:
    """Parse one YAML document; raise ``YamlError`` naming ``source`` on any problem."""
    return _parse(data, source, with_lines=False)[0]


def load_with_lines(data: bytes, source: str) -> tuple[Any, Lines]:
    """``load``, plus the 1-based line of every value by its path of keys and indices
    (``("model", "temperature")``), for messages such as ``agent.yaml:3``."""
    return _parse(data, source, with_lines=True)


def _parse(data: bytes, source: str, with_lines: bool) -> tuple[Any, Lines]:
    if len(data) > MAX_BYTES:
        raise YamlError(f"{source} is larger than {MAX_BYTES // (1024 * 1024)} MB.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise YamlError(f"{source} is not UTF-8 text.") from None
    lines: Lines = {}
    try:
        loader = _StrictLoader(text)
        try:
            node = loader.get_single_node()
            value = loader.construct_document(node) if node is not None else None
            if with_lines and node is not None:
                _collect_lines(loader, node, lines)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise YamlError(f"{source} is not valid YAML{where}: {exc.problem or exc.context}.") from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError, KeyError, IndexError,
            AttributeError) as exc:
        # PyYAML's constructors raise plain Python errors on some standard tags
        # (``!!bool maybe``, ``!!int ''``, ``!!set [1]``): bad input all the same.
        raise YamlError(f"{source} is not valid YAML: {type(exc).__name__}.") from None
    _check_size(value, source)
    return value, lines


def _collect_lines(loader: Any, root: Any, lines: Lines) -> None:
    # Iterative, bounded like _check_size: aliases can make the graph huge.
    stack: list[tuple[Any, tuple[Any, ...]]] = [(root, ())]
    budget = MAX_NODES
    while stack and budget > 0:
        node, where = stack.pop()
        budget -= 1
        lines.setdefault(where, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                # The key as loaded (``on`` is True, ``1`` is 1), so that paths of the
                # document's own keys find their line.
                key = loader.construct_object(key_node) if isinstance(
                    key_node, yaml.ScalarNode) else None
                stack.append((value_node, (*where, key)))
                lines.setdefault((*where, key), key_node.start_mark.line + 1)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*where, i)) for i, item in enumerate(node.value))


def _check_size(value: Any, source: str) -> None:
    # Aliases are loaded as shared references; walking them as a consumer would
    # shows what expanding them costs, and stops early when that is too much.
    budget = [MAX_NODES]
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise YamlError(f"{source} nests deeper than {MAX_DEPTH} levels.")
        budget[0] -= 1
        if budget[0] < 0:
            raise YamlError(f"{source} expands to more than {MAX_NODES} values (aliases?).")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def line_numbers(text: str, offsets: Iterable[int]) -> Iterator[int]:
    """The 1-based line of each of ``offsets`` (ascending) in ``text``, counting line
    breaks as the YAML parser does (``\\r\\n``, ``\\r``, ``\\n``, NEL, LS and PS), so that
    a file's findings agree on its lines whatever its line endings. One pass over the
    text, however many offsets."""
    line, done = 1, 0
    for offset in offsets:
        # Never end a stretch between the two characters of \r\n: the pair is one break.
        end = offset - 1 if text.startswith("\r\n", offset - 1) and offset > done else offset
        if end > done:
            line += sum(text.count(brk, done, end) for brk in _BREAKS)
            line -= text.count("\r\n", done, end)
            done = end
        yield line


def printable(text: str) -> str:
    """``text`` with every character that is not printable (line breaks, tabs, other
    control and format characters) escaped as Python writes it (``\\n``, ``\\x85``,
    ``\\u2028``): what a file or key name brings into a message can never break it into
    lines or forge another one."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def visible(text: str) -> str:
    """``text`` for a page or a diff: every character a reader would not see, or would see
    moved (bidi controls, zero-width and tag characters, other format and control
    characters, spaces other than the space) shown as ``⟨U+202E⟩``; line feeds and tabs
    kept. A prompt can hold an instruction a model reads and a reviewer does not (an
    attack pass hid one in tag characters and reversed a number with U+202E)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\t\n" else f"⟨U+{ord(c):04X}⟩" for c in text)


def show(value: Any) -> str:
    """A value from a YAML file for a message: text and collections as Python writes
    them (text quoted, line breaks escaped), other values plainly (``True``, ``2``,
    ``2024-01-01``); on one line of at most 80 characters, and never failing."""
    try:
        text = repr(value) if isinstance(value, (str, bytes, list, dict)) else str(value)
    except ValueError:  # an integer too long to write (the loader refuses them)
        text = f"<a {type(value).__name__} too long to show>"
    return _clip(printable(text))


def key_path(where: Iterable[Any]) -> str:
    """A path of keys and indices as messages write it (``model.temperature``,
    ``flows.0``): text keys as they are, other keys as ``show`` writes them, each with
    its line breaks escaped and at most 80 characters."""
    return ".".join(_clip(printable(key)) if isinstance(key, str) else show(key)
                    for key in where)


def _clip(text: str) -> str:
    return text if len(text) <= _SHOW_LIMIT else text[:_SHOW_LIMIT - 3] + "..."
