"""Applying 2,500 updates at the real rate limit (25 calls / 5 s) with 300 ± 100 ms latency.

Theoretical maximum: 25 items x 25 calls / 5 s = 125 updates/s. Baseline in the same run: a
sequential script of the kind public LeadSquared users write — one call at a time, a fixed pause
of 5 s / 25 between calls, backoff on 429.

    .venv/bin/python -m bench.apply_bench [--updates 2500]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import logging
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import requests

from bench.common import machine, today
from lsqsync import config as lsqsync_config
from lsqsync.cli import main as lsqsync
from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings
from lsqsync.lsq import RateLimiter

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


def one_apply(emu: Emulator, updates: int, workers: int) -> dict[str, float]:
    """Plan, wait for an empty window, apply; the figures of the apply and its timeline."""
    last = cli("plan", "--out", "p.json", "--max-details", "0").strip().splitlines()[-1]
    planned = int(last.split("Plan: ")[1].split()[0])
    if planned != updates:
        raise SystemExit(f"the plan changes {planned} opportunities, not {updates}: {last}")
    time.sleep(WINDOW + 0.5)  # an empty window for each contender
    start = time.time()
    t0 = time.monotonic()
    summary = cli("apply", "p.json", "--workers", str(workers))
    elapsed = time.monotonic() - t0
    entries = log_since(emu, start)
    writes = [e for e in entries if e["path"] == BULK]
    reads = [e for e in entries if e["path"] != BULK]
    if f"applied: {updates}," not in summary:
        raise SystemExit(f"not every update was applied: {summary}")

    def at(e: dict[str, object]) -> float:
        return float(e["arrived_at"]) - start  # type: ignore[arg-type]

    def answered(e: dict[str, object]) -> float:
        return at(e) + float(e["duration_ms"]) / 1000  # type: ignore[arg-type]

    return {
        "elapsed": elapsed,
        "calls": len(entries),
        "writes": len(writes),
        "refused": sum(1 for e in entries if e["status"] == 429),
        "first_arrival": min(map(at, entries)),
        "reads_answered": max(map(answered, reads)),
        "first_write": min(map(at, writes)),
        "last_arrival": max(map(at, entries)),
        "last_answer": max(map(answered, entries)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=2500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--margin", type=float, default=None, help="a fixed margin (s) instead of the adaptive one"
    )
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    logging.getLogger("lsqsync").setLevel(logging.ERROR)
    if args.margin is not None:  # the CLI runs in this process: swap in a fixed-margin limiter
        lsqsync_config.RateLimiter = functools.partial(  # type: ignore[misc]
            RateLimiter, margin=args.margin, max_margin=args.margin
        )
    theoretical = LIMIT * LIMIT / WINDOW
    updates = args.updates
    print(f"# apply — {today()} — {machine()}")
    print(
        f"{updates} updates, workers {args.workers}, margin "
        f"{'default' if args.margin is None else args.margin}, {args.runs} runs"
    )
    settings = Settings(rate_limit_calls=LIMIT, rate_limit_seconds=WINDOW, latency_ms=300,
                        jitter_ms=100)  # fmt: skip
    # The data set holds the two example opportunities (one of each type) and then alternates
    # between the two types: 2 (n - 1) generated ones give exactly n of type 12000.
    with (
        tempfile.TemporaryDirectory() as tmp,
        Emulator(opportunities=2 * (updates - 1), settings=settings) as emu,
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
        ratios: list[float] = []
        runs: list[dict[str, float]] = []
        for run in range(1, args.runs + 1):
            r = one_apply(emu, updates, args.workers)
            runs.append(r)
            rate = updates / r["elapsed"]
            print(
                f"run {run}: lsqsync  {r['elapsed']:6.2f} s  {rate:6.1f} updates/s "
                f"({rate / theoretical:.1%} of {theoretical:.0f}/s)  calls {r['calls']:.0f} "
                f"(writes {r['writes']:.0f}), 429s {r['refused']:.0f} "
                f"({r['refused'] / r['calls']:.1%})"
            )
            print(
                f"       timeline (s after apply started): first call arrived "
                f"{r['first_arrival']:.2f}, reads answered {r['reads_answered']:.2f}, first "
                f"write arrived {r['first_write']:.2f}, last call arrived "
                f"{r['last_arrival']:.2f} (= first + {r['last_arrival'] - r['first_arrival']:.2f})"
                f", last answer {r['last_answer']:.2f}, apply returned {r['elapsed']:.2f}"
            )
            if args.no_baseline:
                continue
            time.sleep(WINDOW + 0.5)
            b_elapsed, b_calls, b_refused = baseline(emu, ids)
            ratios.append(b_elapsed / r["elapsed"])
            print(
                f"run {run}: baseline {b_elapsed:6.2f} s  {updates / b_elapsed:6.1f} updates/s "
                f"({updates / b_elapsed / theoretical:.1%} of {theoretical:.0f}/s)  "
                f"calls {b_calls}, 429s {b_refused} ({b_refused / max(1, b_calls):.1%}); "
                f"lsqsync {ratios[-1]:.2f}x faster"
            )
        elapsed = statistics.median(r["elapsed"] for r in runs)
        rate = updates / elapsed
        print(
            f"median: lsqsync {elapsed:.2f} s  {rate:.1f} updates/s ({rate / theoretical:.1%} of "
            f"{theoretical:.0f}/s), 429s per run {[int(r['refused']) for r in runs]} of "
            f"{[int(r['calls']) for r in runs]} calls"
            + (f", {statistics.median(ratios):.2f}x the baseline" if ratios else "")
        )


if __name__ == "__main__":
    main()
