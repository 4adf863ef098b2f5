"""The fixed repository layout: where environments, approvals and the policy live."""

from __future__ import annotations

import posixpath
import re

from stageline.errors import UsageError

ENVIRONMENTS = ("development", "staging", "production")
ENV_ROOT = "environments"
APPROVALS = "approvals"
POLICY_FILE = "stageline.yaml"
AGENT_FILE = "agent.yaml"
AGENT_DEPTH = 2  # directories above an agent's: environments/<environment>/<agent>
PUSH_LOG = "stageline-pushes.jsonl"  # in the server repository, written by post-receive
AGENT_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def env_dir(env: str, agent: str) -> str:
    return f"{ENV_ROOT}/{env}/{agent}"


def approval_path(agent: str) -> str:
    return f"{APPROVALS}/{agent}.yaml"


def is_agent_name(name: str) -> bool:
    return bool(AGENT_RE.fullmatch(name))


def check_agent_name(name: str) -> str:
    if not is_agent_name(name):
        raise UsageError(
            f"{name!r} is not a valid agent name; use lowercase letters, digits and hyphens "
            "(up to 63, starting with a letter or digit)."
        )
    return name


def check_env(env: str) -> str:
    if env not in ENVIRONMENTS:
        raise UsageError(f"{env!r} is not an environment; use one of {', '.join(ENVIRONMENTS)}.")
    return env


def inside_agent(ref: object) -> str | None:
    """A file reference normalised to a path inside its agent directory, or None when it
    is no relative path there (absolute, ``..`` above it, backslashes)."""
    if not isinstance(ref, str) or not ref or ref.startswith("/") or "\\" in ref:
        return None
    norm = posixpath.normpath(ref)
    if norm.startswith("../") or norm in ("..", "."):
        return None
    return norm


def file_text(data: bytes | None) -> str | None:
    """A file's text when it is UTF-8 without NUL bytes; None for anything else (binary,
    shown as such by diff and carried as base64 by export) and for no file."""
    if data is None or b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
