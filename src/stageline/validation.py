"""The checks an agent directory must pass before it is promoted.

The minimal contract: ``agent.yaml`` present and parseable, ``name`` equal to
the directory, the keys of the smallest valid agent, a ``system_prompt`` file
inside the agent directory, and regular files only.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Sequence

from stageline import yamlsafe
from stageline.layout import AGENT_FILE

REGULAR_MODES = frozenset({"100644", "100755"})
REQUIRED_KEYS = ("name", "description", "model", "system_prompt")


def check_agent(agent: str, files: Sequence[tuple[str, str]],
                read: Callable[[str], bytes]) -> list[str]:
    """Problems of an agent directory: ``files`` are ``(mode, relative path)``."""
    problems = []
    modes = dict((path, mode) for mode, path in files)
    for path, mode in sorted(modes.items()):
        if mode not in REGULAR_MODES:
            kind = {"120000": "a symlink", "160000": "a submodule"}.get(mode, f"mode {mode}")
            problems.append(f"{agent}/{path} is {kind}; only regular files are allowed")
    if AGENT_FILE not in modes:
        return [*problems, f"{agent} has no {AGENT_FILE}"]
    if modes[AGENT_FILE] not in REGULAR_MODES:
        return problems
    source = f"{agent}/{AGENT_FILE}"
    try:
        doc = yamlsafe.load(read(AGENT_FILE), source)
    except yamlsafe.YamlError as exc:
        return [*problems, str(exc).rstrip(".")]
    if not isinstance(doc, dict):
        return [*problems, f"{source} must be a mapping"]
    missing = [k for k in REQUIRED_KEYS if k not in doc]
    if missing:
        problems.append(f"{source} lacks {', '.join(missing)}")
    if "name" in doc and doc["name"] != agent:
        problems.append(f"{source}: name is {doc['name']!r} but the directory is {agent!r}")
    model = doc.get("model")
    if "model" in doc and not (isinstance(model, dict) and isinstance(model.get("provider"), str)
                               and isinstance(model.get("name"), str)):
        problems.append(f"{source}: model needs a provider and a name")
    prompt = doc.get("system_prompt")
    if "system_prompt" in doc:
        target = _inside(prompt)
        if target is None:
            problems.append(f"{source}: system_prompt must be a file path inside the agent "
                            "directory")
        elif modes.get(target) not in REGULAR_MODES:
            problems.append(f"{source}: system_prompt {prompt} does not exist")
    return problems


def _inside(ref: object) -> str | None:
    """A reference normalised to a path inside the agent directory, or None."""
    if not isinstance(ref, str) or not ref or ref.startswith("/") or "\\" in ref:
        return None
    norm = posixpath.normpath(ref)
    if norm.startswith("../") or norm in ("..", "."):
        return None
    return norm
