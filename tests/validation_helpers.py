"""What offline ``validate`` says about the opportunity types it could not check."""

from __future__ import annotations

import re

NOT_CHECKED = re.compile(
    r"\S+:\d+:\d+: warning: fields and options of opportunity type (\d+) not checked "
    r"\(types/ has no snapshot of it\)(?:, nor which field each name means \([^:]+: a schema "
    r"name, a display name or nothing\))?: run `lsqsync validate --online`, or keep a types "
    r"snapshot \(lsqsync types pull \1\)"
)


def unchecked_types(err: str) -> list[int]:
    """The types offline validate said it did not check, when stderr says nothing else."""
    lines = err.splitlines()
    assert lines, "offline validate said nothing about the fields it did not check"
    matched = [NOT_CHECKED.fullmatch(line) for line in lines]
    assert all(matched), f"stderr has more than the not-checked warnings:\n{err}"
    return [int(m.group(1)) for m in matched if m]
