"""The exit codes of the contract and the one exception type that carries them.

Every refusal anywhere in stageline is a ``StagelineError`` with one of these
codes; the CLI turns it into one sentence on stderr and the exit status.
"""

from __future__ import annotations

OK = 0
CHECK_FAILED = 1
USAGE = 2
PERMISSION_DENIED = 3
BLOCKED = 4
REPOSITORY = 5


class StagelineError(Exception):
    """A refusal: one sentence for the user, and the exit code it maps to."""

    code = REPOSITORY

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0])


class CheckFailed(StagelineError):
    code = CHECK_FAILED


class UsageError(StagelineError):
    code = USAGE


class PermissionDenied(StagelineError):
    code = PERMISSION_DENIED


class Blocked(StagelineError):
    code = BLOCKED


class RepositoryError(StagelineError):
    code = REPOSITORY
