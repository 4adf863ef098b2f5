"""Per-environment settings: ``settings/<env>.yaml``, never promoted, changed by org-admins.

What must differ between environments (endpoints, phone numbers, secret
references such as ``vault://billing/token`` or ``env://BILLING_TOKEN``) lives
here, and agent files refer to it as ``${settings.NAME}``. Promotion copies the
agent unchanged; the references resolve against the target environment's file.

    # settings/production.yaml
    BILLING_API_URL: https://billing.acme.test/v1
    SUPPORT_PHONE: "+1 555 0100"
    BILLING_API_TOKEN: vault://billing/api-token
"""

from __future__ import annotations

import re
from typing import Any

from stageline import yamlsafe

SETTINGS_DIR = "settings"
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
REFERENCE_RE = re.compile(r"\$\{settings\.([A-Za-z_][A-Za-z0-9_]*)\}")


def settings_path(env: str) -> str:
    return f"{SETTINGS_DIR}/{env}.yaml"


def parse_settings(data: bytes | None, env: str) -> tuple[dict[str, Any], str | None]:
    """The settings of ``env`` and, when the file is unusable, why (one sentence)."""
    if data is None:
        return {}, None
    source = settings_path(env)
    try:
        doc = yamlsafe.load(data, source)
    except yamlsafe.YamlError as exc:
        return {}, str(exc)
    if doc is None:
        return {}, None
    if not isinstance(doc, dict):
        return {}, f"{source} must map setting names to values."
    for name, value in doc.items():
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            return {}, f"{source}: {yamlsafe.show(name)} is not a setting name (letters, digits, _)."
        if not isinstance(value, (str, int, float, bool)):
            return {}, f"{source}: {name} must be a plain value (text, number or boolean)."
    return dict(doc), None


def references(text: str) -> list[tuple[str, int]]:
    """``(NAME, line)`` of every ``${settings.NAME}`` in a text, lines counted as YAML
    counts them (``yamlsafe.line_numbers``)."""
    matches = list(REFERENCE_RE.finditer(text))
    lines = yamlsafe.line_numbers(text, (m.start() for m in matches))
    return [(m.group(1), line) for m, line in zip(matches, lines, strict=True)]
