"""The fixed repository layout: where environments, approvals and the policy live."""

from __future__ import annotations

import posixpath
import re
import unicodedata

from stageline.errors import UsageError

ENVIRONMENTS = ("development", "staging", "production")
ENV_ROOT = "environments"
APPROVALS = "approvals"
POLICY_FILE = "stageline.yaml"
AGENT_FILE = "agent.yaml"
AGENT_DEPTH = 2  # directories above an agent's: environments/<environment>/<agent>
PUSH_LOG = "stageline-pushes.jsonl"  # in the server repository, written by post-receive
AGENT_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

# git's file modes, as git's listings print them. Under environments/ and approvals/ only
# regular files may be; ``mode_name`` says what anything else is, for a refusal.
TREE_MODE = "040000"
FILE_MODE = "100644"
EXECUTABLE_MODE = "100755"
REGULAR_MODES = frozenset({FILE_MODE, EXECUTABLE_MODE})
SYMLINK_MODE = "120000"
GITLINK_MODE = "160000"
DELETED_MODE = "000000"  # the new mode of a path a diff deletes
MODE_NAMES = {SYMLINK_MODE: "a symlink", GITLINK_MODE: "a submodule", TREE_MODE: "a directory"}


def mode_name(mode: str) -> str:
    """What a mode that is not a regular file's is, in words."""
    return MODE_NAMES.get(mode, f"mode {mode}")


def env_dir(env: str, agent: str) -> str:
    return f"{ENV_ROOT}/{env}/{agent}"


def approval_path(agent: str) -> str:
    return f"{APPROVALS}/{agent}.yaml"


# Names Windows gives to devices in every directory: an agent called "con" could be
# neither checked out nor exported there.
DEVICE_NAMES = frozenset({"con", "prn", "aux", "nul", "conin$", "conout$",
                          *(f"{p}{i}" for p in ("com", "lpt")
                            for i in (*"0123456789", "\u00b9", "\u00b2", "\u00b3"))})


def is_agent_name(name: str) -> bool:
    return bool(AGENT_RE.fullmatch(name)) and name not in DEVICE_NAMES


def check_agent_name(name: str) -> str:
    if not is_agent_name(name):
        raise UsageError(
            f"{name!r} is not a valid agent name; use lowercase letters, digits and hyphens "
            "(up to 63, starting with a letter or digit; not a Windows device name such as "
            "con or nul)."
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


# Code points that file systems and Unicode-aware tools ignore in names (Unicode's
# Default_Ignorable_Code_Point): "environments<U+200C>" is "environments" to them.
_IGNORABLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]")
_SHORT_NAME = re.compile(r"([^~]{1,6})~[0-9]+(\.[^.]{0,3})?")


def folded(name: str) -> str:
    """``name`` as a file system that folds names may store it: without ignorable code
    points, NFKC-normalised, case-folded, without trailing dots and spaces (Windows)."""
    text = unicodedata.normalize("NFKC", _IGNORABLE.sub("", name)).casefold()
    return text.rstrip(". ")


def stands_for(name: str, reserved: str) -> bool:
    """Whether ``name`` may name the same file as ``reserved`` on some file system:
    equal once folded, or an 8.3 short name (``ENVIRO~1``, ``STAGEL~1.YAM``) of it."""
    text = folded(name)
    if text == reserved:
        return True
    short = _SHORT_NAME.fullmatch(text)
    if not short:
        return False
    # the short name keeps up to six characters of the name without its leading dots and
    # spaces, and up to three of its extension: ".git" is "GIT~1", "stageline.yaml"
    # "STAGEL~1.YAM"
    long = reserved.lstrip(".")
    base, _, ext = long.rpartition(".") if "." in long else (long, "", "")
    base = base.replace(".", "").replace(" ", "")
    return base.startswith(short.group(1)) and ext.startswith((short.group(2) or ".")[1:])


_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")
_NOT_ON_WINDOWS = re.compile(r'[<>:"|?*]')
_SHORT_LOOKING = re.compile(r"~[0-9]")


def name_problem(name: str, strict: bool) -> str | None:
    """Why a file or directory name would not check out alike everywhere, or None.

    Anywhere in the repository: a backslash or a control character (Git for Windows
    refuses such paths, so every Windows clone would fail), a name that is not UTF-8, or
    longer than 255 bytes (no file system holds it). With ``strict`` (top-level names,
    and every name under environments/ and approvals/, whose content is judged): also
    characters Windows refuses, a trailing dot or space (Windows drops them), an 8.3
    short-name form (``ENVIRO~1``), a device name, a code point file systems ignore
    (zero-width joiners, variation selectors), and a name not in Unicode's composed form
    (NFC): each names another file than it seems on some system.
    """
    shown = repr(name) if not name.isprintable() else f"'{name}'"
    if _CONTROL.search(name):
        return f"{shown} holds a control character or a backslash"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return f"{shown} is not UTF-8 text"
    if size > 255:
        return f"{shown[:40]}... is longer than 255 bytes"
    if not strict:
        return None
    if _NOT_ON_WINDOWS.search(name):
        return f"{shown} holds a character Windows refuses in names ({_NOT_ON_WINDOWS.pattern[1:-1]})"
    if name != name.rstrip(". ") and name not in (".", ".."):
        return f"{shown} ends with a dot or a space, which Windows drops"
    if _SHORT_LOOKING.search(name):
        return f"{shown} looks like a Windows short (8.3) name"
    # as Git for Windows reads them: the part before the first dot, spaces after it ignored
    if name.partition(".")[0].rstrip(" ").lower() in DEVICE_NAMES:
        return f"{shown} is a Windows device name"
    if _IGNORABLE.search(name):
        return f"{shown} holds a code point that file systems ignore"
    if unicodedata.normalize("NFC", name) != name:
        return f"{shown} is not in Unicode's composed form (NFC)"
    return None


def collision(names: list[str]) -> tuple[str, str] | None:
    """Two names of one directory that a case-insensitive or normalising file system
    (Windows, macOS) stores as one file: a checkout there would keep only one of them,
    and not always the one that was checked."""
    seen: dict[str, str] = {}
    for name in names:
        key = folded(name)
        if key in seen:
            return seen[key], name
        seen[key] = name
    return None
