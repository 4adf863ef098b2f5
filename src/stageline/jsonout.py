"""JSON as the commands print it: the text of ``json.dumps(data, indent=2)``, written faster.

The standard library's C encoder is not used once ``indent`` is given, and its
pure-Python one spends most of its time in generators: ``status --json`` over
10,000 agents took 0.4 s to encode. This writer makes one call per value. Data
holding anything but strings, integers, booleans, None, lists and dicts with
string keys goes to ``json.dumps`` whole, so the text is the same either way.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii
from typing import Any


class _Unusual(Exception):
    """A value this writer leaves to json.dumps."""


def dumps(data: Any) -> str:
    """``json.dumps(data, indent=2)``."""
    out: list[str] = []
    try:
        _write(data, "", out.append)
    except _Unusual:
        return json.dumps(data, indent=2)
    return "".join(out)


def _write(value: Any, pad: str, emit: Any) -> None:
    kind = type(value)
    if kind is str:
        emit(encode_basestring_ascii(value))
    elif value is None:
        emit("null")
    elif value is True:
        emit("true")
    elif value is False:
        emit("false")
    elif kind is int:
        emit(int.__repr__(value))
    elif kind is dict:
        if not value:
            emit("{}")
            return
        inner = pad + "  "
        sep = "{\n" + inner
        for key, item in value.items():
            if type(key) is not str:
                raise _Unusual
            emit(sep + encode_basestring_ascii(key) + ": ")
            _write(item, inner, emit)
            sep = ",\n" + inner
        emit("\n" + pad + "}")
    elif kind is list:
        if not value:
            emit("[]")
            return
        inner = pad + "  "
        sep = "[\n" + inner
        for item in value:
            emit(sep)
            _write(item, inner, emit)
            sep = ",\n" + inner
        emit("\n" + pad + "]")
    else:
        raise _Unusual
