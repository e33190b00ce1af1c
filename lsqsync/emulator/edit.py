"""``lsqsync emulator edit``: a person's edit of a running emulator's opportunity, through its
admin surface (``/_emulator/``: no keys, no rate limit), as LeadSquared's screens would make it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote as escape

from lsqsync.display import did_you_mean, quote
from lsqsync.emulator import model
from lsqsync.errors import LsqsyncError

TIMEOUT = 10.0  # seconds; the emulator answers admin calls at once


def edit_opportunity(url: str, opportunity: str, changes: Sequence[str], editor: str) -> str:
    """Set the fields of ``changes`` (FIELD=VALUE; FIELD= clears) as user ``editor``; the
    changes as text (before -> after)."""
    base = url.rstrip("/")
    before = _get(base, opportunity)
    t = model.TYPES[before["event_code"]]
    fields = [_field(t, change) for change in changes]
    body = [
        {
            "ProspectOpportunityId": before["id"],
            "OpportunityEventCode": t.code,
            "Fields": [{"SchemaName": name, "Value": value} for name, value in fields],
        }
    ]
    answer = _call(base, f"/_emulator/edits?by={escape(editor)}", body)
    (row,) = answer["Response"]
    if not row.get("OpportunityUpdated"):
        raise LsqsyncError(f"emulator: {row.get('ExceptionType')}: {row.get('ExceptionMessage')}")
    after = _get(base, before["id"])["fields"]
    person = next(u for u in model.USERS if u.id == after.get("ModifiedBy"))
    lines = [
        f"~ {before['id']} (type {t.code} {t.name}) {name}: "
        f"{_shown(before['fields'].get(name))} -> {_shown(after.get(name))}"
        for name, _ in fields
    ]
    lines.append(
        f"Edited by {person.first_name} {person.last_name} <{person.email}> at "
        f"{after.get('ModifiedOn')} (UTC), as a person's edit in LeadSquared."
    )
    return "\n".join(lines) + "\n"


def _field(t: model.OpportunityTypeDef, change: str) -> tuple[str, str]:
    name, sep, value = change.partition("=")
    name = name.strip()
    if not sep or not name:
        raise LsqsyncError(f"emulator edit: {change!r}: expected FIELD=VALUE (FIELD= clears it)")
    if name not in t.fields_by_name:
        hint = did_you_mean(name, t.fields_by_name)
        raise LsqsyncError(f"emulator edit: '{name}' is not a field of type {t.code}{hint}")
    return name, value


def _shown(value: str | None) -> str:
    return quote(value) if value else "(empty)"


def _get(base: str, opportunity: str) -> dict[str, Any]:
    found: dict[str, Any] = _call(base, f"/_emulator/opportunities/{escape(opportunity)}")
    return found


def _call(base: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the URL is the emulator's, http or https
        base + path, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read()).get("ExceptionMessage") or e.reason
        except ValueError:
            message = e.reason
        if e.code == 404 and path.startswith("/_emulator/opportunities/"):
            message = f"no opportunity {path.rsplit('/', 1)[-1]!r}"
        raise LsqsyncError(f"emulator at {base}: {message}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise LsqsyncError(
            f"cannot reach an emulator at {base} ({reason}): is `lsqsync emulator serve` running?"
        ) from None
