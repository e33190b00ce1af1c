"""Applying 2,500 updates at the real rate limit (25 calls / 5 s) with 300 ± 100 ms latency.

Theoretical maximum: 25 items x 25 calls / 5 s = 125 updates/s. Baseline in the same run: a
sequential script of the kind public LeadSquared users write — one call at a time, a fixed pause
of 5 s / 25 between calls, backoff on 429.

    .venv/bin/python -m bench.apply_bench [--updates 2500]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import math
import os
import tempfile
import time
from pathlib import Path

import requests

from bench.common import machine, today
from lsqsync.cli import main as lsqsync
from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings

LIMIT, WINDOW = 25, 5.0
BULK = "/v2/OpportunityManagement.svc/Bulk/Update/ByOpportunityId"


def cli(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        lsqsync(list(args))
    return out.getvalue()


def log_since(emu: Emulator, start: float) -> list[dict[str, object]]:
    entries = requests.get(emu.url + "/_emulator/requests", timeout=10).json()["requests"]
    return [e for e in entries if float(e["arrived_at"]) >= start]  # type: ignore[arg-type]


def baseline(emu: Emulator, ids: list[str]) -> tuple[float, int, int]:
    """One call at a time, a fixed pause of 5 s / 25, exponential backoff on 429."""
    headers = {"x-LSQ-AccessKey": DEMO_ACCESS_KEY, "x-LSQ-SecretKey": DEMO_SECRET_KEY}
    started = time.monotonic()
    refused = calls = 0
    with requests.Session() as http:
        for i in range(0, len(ids), 25):
            body = [{"ProspectOpportunityId": o, "OpportunityEventCode": 12000,
                     "Fields": [{"SchemaName": "mx_Custom_9", "Value": "baseline"}]}
                    for o in ids[i : i + 25]]  # fmt: skip
            wait = 1.0
            while True:
                calls += 1
                if (
                    http.post(emu.url + BULK, json=body, headers=headers, timeout=30).status_code
                    != 429
                ):
                    break
                refused += 1
                time.sleep(wait)
                wait *= 2
            time.sleep(WINDOW / LIMIT)
    return time.monotonic() - started, calls, refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=2500)
    args = parser.parse_args()
    logging.getLogger("lsqsync").setLevel(logging.ERROR)
    theoretical = LIMIT * LIMIT / WINDOW
    print(f"# apply — {today()} — {machine()}")
    settings = Settings(rate_limit_calls=LIMIT, rate_limit_seconds=WINDOW, latency_ms=300,
                        jitter_ms=100)  # fmt: skip
    with (
        tempfile.TemporaryDirectory() as tmp,
        Emulator(opportunities=args.updates * 2, settings=settings) as emu,
    ):
        root = Path(tmp)
        (root / "rules").mkdir()
        (root / "lsqsync.yml").write_text(
            "version: 1\nrules: [rules/]\nsafety: {max_changes: 1000000, max_change_ratio: 1}\n"
        )
        (root / "rules" / "bench.yml").write_text(
            "version: 1\nrules:\n  - name: stamp\n    opportunity_type: 12000\n"
            "    set: {mx_Custom_9: 'benchmark {{ now }}'}\n"
        )
        os.environ.update(LSQ_HOST=emu.url, LSQ_ACCESS_KEY=DEMO_ACCESS_KEY,
                          LSQ_SECRET_KEY=DEMO_SECRET_KEY)  # fmt: skip
        os.chdir(root)
        last = cli("plan", "--out", "p.json", "--max-details", "0").strip().splitlines()[-1]
        print(f"plan: {last}")
        time.sleep(WINDOW + 0.5)  # an empty window for each contender
        start = time.time()
        t0 = time.monotonic()
        summary = cli("apply", "p.json", "--workers", "8")
        elapsed = time.monotonic() - t0
        entries = log_since(emu, start)
        writes = [e for e in entries if e["path"] == BULK]
        print(summary.strip().replace("\n", " | "))
        updates = args.updates
        print(
            f"lsqsync   {elapsed:6.1f} s  {updates / elapsed:6.1f} updates/s "
            f"({updates / elapsed / theoretical:.0%} of {theoretical:.0f}/s)  "
            f"calls {len(entries)} (writes {len(writes)}), 429s "
            f"{sum(1 for e in entries if e['status'] == 429)} "
            f"({sum(1 for e in entries if e['status'] == 429) / max(1, len(entries)):.1%})"
        )
        ids = [
            r["OpportunityId"]
            for page in range(1, math.ceil(updates / 1000) + 1)
            for r in requests.post(
                emu.url + "/v2/OpportunityManagement.svc/Retrieve/BySearchParameter",
                json={"OpportunityEventCode": 12000, "AdvancedSearch": (
                    '{"Conditions":[{"RowCondition":[{"LSO":"ActivityEvent","Operator":"eq",'
                    '"RSO":"12000"}]}]}'), "Paging": {"PageIndex": page, "PageSize": 1000}},
                headers={"x-LSQ-AccessKey": DEMO_ACCESS_KEY, "x-LSQ-SecretKey": DEMO_SECRET_KEY},
                timeout=30,
            ).json()["List"]
        ][:updates]  # fmt: skip
        time.sleep(WINDOW + 0.5)
        b_elapsed, b_calls, b_refused = baseline(emu, ids)
        print(
            f"baseline  {b_elapsed:6.1f} s  {updates / b_elapsed:6.1f} updates/s "
            f"({updates / b_elapsed / theoretical:.0%} of {theoretical:.0f}/s)  "
            f"calls {b_calls}, 429s {b_refused} ({b_refused / max(1, b_calls):.1%})"
        )
        print(f"lsqsync / baseline: {b_elapsed / elapsed:.2f}x faster")


if __name__ == "__main__":
    main()
