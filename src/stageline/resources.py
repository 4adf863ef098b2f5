"""Files the installed command reads at run time: the hook shim and the sample organization.

In a wheel they are package data under ``stageline/_data/``; in a source
checkout they are the top-level ``hooks/`` and ``sample-repo/``.
"""

from __future__ import annotations

from pathlib import Path

from stageline.errors import RepositoryError

_PACKAGE = Path(__file__).resolve().parent


def data_path(name: str) -> Path:
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent.parent / name):
        if candidate.exists():
            return candidate
    raise RepositoryError(f"the installation is incomplete: {name} is missing; reinstall "
                          "stageline.")
