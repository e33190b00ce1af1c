"""Files shipped inside the package: the JSON Schemas (``lsqsync/schemas/``, linked from the
repository's top-level ``schemas/``)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

SCHEMA_NAMES = ("config", "rules", "plan", "tests")

# The key holding each schema's format version: the plan follows Terraform's ``format_version``.
_VERSION_KEYS = {"plan": "format_version"}
_VERSION_LABELS = {"plan": "plan format"}


@cache
def schema(name: str) -> dict[str, Any]:
    """The JSON Schema ``name`` (one of SCHEMA_NAMES), read from the installed package."""
    if name not in SCHEMA_NAMES:
        raise KeyError(name)
    text = resources.files("lsqsync").joinpath("schemas", f"{name}.schema.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def schema_text(name: str) -> str:
    return json.dumps(schema(name), indent=2, ensure_ascii=False) + "\n"


def schema_versions() -> dict[str, int]:
    """The format version each schema accepts (its ``version`` or ``format_version`` constant)."""
    return {
        name: schema(name)["properties"][_VERSION_KEYS.get(name, "version")]["const"]
        for name in SCHEMA_NAMES
    }


def versions_text() -> str:
    """``config schema v1, rules schema v1, plan format v1``: for ``lsqsync --version``."""
    return ", ".join(
        f"{_VERSION_LABELS.get(name, name + ' schema')} v{version}"
        for name, version in schema_versions().items()
    )
