"""The one YAML loader: safe, strict about duplicate keys, and bounded.

Every YAML file stageline reads (the policy, approvals, agent configuration)
goes through ``load``. It refuses what a hostile or careless file could use to
mislead or exhaust a reader: duplicate keys (the last one silently winning),
oversized files, deep nesting and alias expansion ("billion laughs").
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 200_000

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
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


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
    if with_lines and node is not None:
        _collect_lines(node, (), lines)
    return value, lines


def _collect_lines(root: Any, path: tuple[Any, ...], lines: Lines) -> None:
    # Iterative, bounded like _check_size: aliases can make the graph huge.
    stack = [(root, path)]
    budget = MAX_NODES
    while stack and budget > 0:
        node, where = stack.pop()
        budget -= 1
        lines.setdefault(where, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
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
