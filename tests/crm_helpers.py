"""What tests do to the emulator's CRM from outside lsqsync, and what they read back."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import requests

from lsqsync.emulator import Emulator
from lsqsync.plan.model import Plan

BULK_UPDATE = "/v2/OpportunityManagement.svc/Bulk/Update/ByOpportunityId"
ROOT = Path(__file__).parents[1]
# For an emulator with no rate limit: every lsqsync process of a test shares one budget (the
# ledger in the test's cache folder), and the documented 25 calls per 5 s would only add waits.
NO_LIMIT = "{calls: 1000, per_seconds: 1}"


def example_project(root: Path, rate_limit: str = NO_LIMIT) -> Path:
    """The repository's example project (lsqsync.yml and rules/) in ``root``, with
    ``rate_limit``."""
    root.mkdir(parents=True, exist_ok=True)
    config = (ROOT / "lsqsync.yml").read_text()
    assert "\nrate_limit: auto " in config
    (root / "lsqsync.yml").write_text(
        config.replace("\nrate_limit: auto ", f"\nrate_limit: {rate_limit} ")
    )
    shutil.copytree(ROOT / "rules", root / "rules")
    return root


def write_directly(emu: Emulator, body: list[dict[str, object]]) -> None:
    """A Bulk Update made outside lsqsync (a person, another integration)."""
    requests.post(
        emu.url + BULK_UPDATE,
        json=body,
        headers={"x-LSQ-AccessKey": emu.access_key, "x-LSQ-SecretKey": emu.secret_key},
        timeout=5,
    ).raise_for_status()


def requests_log(emu: Emulator) -> list[dict[str, Any]]:
    """Every API call in the emulator's request log, oldest first."""
    log = requests.get(emu.url + "/_emulator/requests", timeout=5).json()
    entries: list[dict[str, Any]] = log["requests"]
    return entries


def writes(emu: Emulator) -> list[dict[str, Any]]:
    """The Bulk Update calls in the emulator's request log."""
    return [e for e in requests_log(emu) if str(e["path"]).endswith(BULK_UPDATE)]


def not_as_planned(emu: Emulator, plan: Plan) -> list[tuple[str, str]]:
    """The (opportunity, field) pairs of ``plan`` whose stored value is not the planned one."""
    wrong = []
    for change in plan.changes:
        stored = requests.get(f"{emu.url}/_emulator/opportunities/{change.id}", timeout=10)
        fields = stored.json()["fields"]
        wrong += [
            (change.id, f.field) for f in change.changes if (fields[f.field] or "") != f.after
        ]
    return wrong
