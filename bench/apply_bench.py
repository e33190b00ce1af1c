"""Applying 2,500 updates against an account's rate limit with 300 ± 100 ms latency.

The account (the emulator) allows ``--limit CALLS/SECONDS`` (default 25/5), Bulk Update also
``--bulk-limit`` if given, and refuses in the ``--response`` form (429, 403 or 200). lsqsync is
``--configured`` right (``N``, or ``N/B`` with a bulk limit of B calls per the same window) or
``auto``, on a fresh cache every run.

Ceiling: 25 items a call at the strictest limit Bulk Update meets (25 x 25 calls / 5 s = 125
updates/s at the top tier). Each run applies twice — reading back what was written (the default)
and with ``--no-verify`` — in alternating order, so the cost of reading back is measured in the
same conditions: its extra calls and time. Baseline in the same run: a sequential script of the
kind public LeadSquared users write — one call at a time, a fixed pause of one window / the limit
Bulk Update meets (configured right), backoff on a refusal (it knows all three forms).

    .venv/bin/python -m bench.apply_bench [--updates 2500] [--limit 20/5] [--bulk-limit 5/5]
                                          [--response 200] [--configured auto]
                                          [--verify both|on|off]
"""

from __future__ import annotations

import argparse
import contextlib
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
from lsqsync.cli import main as lsqsync
from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings

BULK = "/v2/OpportunityManagement.svc/Bulk/Update/ByOpportunityId"
HEADERS = {"x-LSQ-AccessKey": DEMO_ACCESS_KEY, "x-LSQ-SecretKey": DEMO_SECRET_KEY}
Entry = dict[str, object]


def limit(text: str) -> tuple[int, float]:
    calls, _, seconds = text.partition("/")
    return int(calls), float(seconds)


def cli(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        lsqsync(list(args))
    return out.getvalue()


def log_since(emu: Emulator, start: float) -> list[Entry]:
    entries = requests.get(emu.url + "/_emulator/requests", timeout=10).json()["requests"]
    return [e for e in entries if float(e["arrived_at"]) >= start]  # type: ignore[arg-type]


def at(e: Entry, start: float) -> float:
    return float(e["arrived_at"]) - start  # type: ignore[arg-type]


def baseline(emu: Emulator, ids: list[str], pause: float) -> tuple[float, int, int]:
    """One call at a time, a fixed pause, exponential backoff on a refusal."""
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
                answer = http.post(emu.url + BULK, json=body, headers=HEADERS, timeout=30)
                if answer.status_code != 429 and "exceeded the limit" not in answer.text:
                    break
                refused += 1
                time.sleep(wait)
                wait *= 2
            time.sleep(pause)
    return time.monotonic() - started, calls, refused


def one_apply(
    emu: Emulator, updates: int, workers: int, window: float, verify: bool = True
) -> tuple[dict[str, float], str]:
    """Plan, wait for an empty window, apply on a fresh cache (reading back what was written,
    or not): the figures and the summary."""
    os.environ["LSQSYNC_CACHE_DIR"] = tempfile.mkdtemp(prefix="lsqsync-bench-cache-")
    last = cli("plan", "--out", "p.json", "--max-details", "0").strip().splitlines()[-1]
    planned = int(last.split("Plan: ")[1].split()[0])
    if planned != updates:
        raise SystemExit(f"the plan changes {planned} opportunities, not {updates}: {last}")
    time.sleep(window + 0.5)  # an empty window for each contender
    start = time.time()
    t0 = time.monotonic()
    summary = cli(
        "apply", "p.json", "--workers", str(workers), *([] if verify else ["--no-verify"])
    )
    elapsed = time.monotonic() - t0
    entries = log_since(emu, start)
    if f"applied: {updates}," not in summary:
        raise SystemExit(f"not every update was applied: {summary}")
    refused = [e for e in entries if e["rate_limited"]]
    learned = max((at(e, start) for e in refused), default=0.0)
    after = sorted(
        at(e, start) for e in entries if not e["rate_limited"] and at(e, start) > learned
    )
    figures = {
        "elapsed": elapsed,
        "calls": len(entries),
        "reads_after": reads_after_writes(entries),
        "writes": sum(1 for e in entries if e["path"] == BULK and not e["rate_limited"]),
        "refused": len(refused),
        "learned_at": learned,
        # accepted calls per second after the last refusal
        "pace_after": (len(after) - 1) / (after[-1] - after[0]) if len(after) > 1 else 0.0,
        "first_arrival": min(at(e, start) for e in entries),
        "last_arrival": max(at(e, start) for e in entries),
    }
    return figures, summary


def reads_after_writes(entries: list[Entry]) -> int:
    """The calls after the last write: reading back what was written."""
    last = max((i for i, e in enumerate(entries) if e["path"] == BULK), default=len(entries))
    return sum(1 for e in entries[last + 1 :] if e["path"] != BULK)


def project(root: Path, configured: str, window: float) -> None:
    (root / "rules").mkdir()
    if configured == "auto":
        rate = "auto"
    else:
        calls, _, bulk = configured.partition("/")
        rate = f"{{calls: {int(calls)}, per_seconds: {window:g}"
        rate += f", bulk: {{calls: {int(bulk)}, per_seconds: {window:g}}}}}" if bulk else "}"
    (root / "lsqsync.yml").write_text(
        f"version: 1\nrules: [rules/]\nrate_limit: {rate}\n"
        "safety: {max_changes: 1000000, max_change_ratio: 1}\n"
    )
    (root / "rules" / "bench.yml").write_text(
        "version: 1\nrules:\n  - name: stamp\n    opportunity_type: 12000\n"
        "    set: {mx_Custom_9: 'benchmark {{ now }}'}\n"
    )


def report(
    r: dict[str, float],
    summary: str,
    run: int,
    updates: int,
    ceiling: float,
    pace: float,
    label: str = "lsqsync",
) -> None:
    """One run's line; ``pace``: the calls per second the strictest limit allows writes."""
    rate = updates / r["elapsed"]
    print(
        f"run {run}: {label}  {r['elapsed']:6.2f} s  {rate:6.1f} updates/s "
        f"({rate / ceiling:.1%} of {ceiling:.0f}/s)  calls {r['calls']:.0f} "
        f"(writes {r['writes']:.0f}, after the writes {r['reads_after']:.0f}), "
        f"refused {r['refused']:.0f}"
    )
    if r["refused"]:
        print(
            f"       last refusal {r['learned_at']:.2f} s after the start; after it "
            f"{r['pace_after']:.2f} calls/s ({r['pace_after'] / pace:.1%} of the limit's "
            f"{pace:.2f}/s)"
        )
    print(
        f"       first call arrived {r['first_arrival']:.2f}, last {r['last_arrival']:.2f}; "
        + " | ".join(line.strip() for line in summary.splitlines() if "limit:" in line)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=2500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--limit", type=limit, default=(25, 5.0), metavar="CALLS/SECONDS")
    parser.add_argument("--bulk-limit", type=limit, default=None, metavar="CALLS/SECONDS")
    parser.add_argument("--response", type=int, choices=(429, 403, 200), default=429)
    parser.add_argument("--configured", default=None, help="auto, N or N/B (default: right)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--verify",
        choices=("both", "on", "off"),
        default="both",
        help="apply reading back what was written (on), with --no-verify (off), or both",
    )
    args = parser.parse_args()
    logging.getLogger("lsqsync").setLevel(logging.ERROR)
    (calls, window), bulk = args.limit, args.bulk_limit
    if bulk is not None and bulk[1] != window:
        raise SystemExit("--bulk-limit must have the same window as --limit")
    configured = args.configured or (f"{calls}/{bulk[0]}" if bulk else str(calls))
    write_calls = min(calls, bulk[0]) if bulk else calls
    ceiling = 25 * write_calls / window
    updates = args.updates
    print(f"# apply — {today()} — {machine()}")
    print(
        f"{updates} updates, workers {args.workers}, account {calls}/{window:g} s, bulk "
        f"{f'{bulk[0]}/{bulk[1]:g} s' if bulk else 'none'}, refusals as HTTP {args.response}, "
        f"configured {configured}, {args.runs} runs"
    )
    settings = Settings(
        rate_limit_calls=calls, rate_limit_seconds=window,
        bulk_rate_limit_calls=bulk[0] if bulk else None, bulk_rate_limit_seconds=window,
        rate_limit_response=args.response, latency_ms=300, jitter_ms=100,
    )  # fmt: skip
    # The data set holds the two example opportunities (one of each type) and then alternates
    # between the two types: 2 (n - 1) generated ones give exactly n of type 12000.
    with (
        tempfile.TemporaryDirectory() as tmp,
        Emulator(opportunities=2 * (updates - 1), settings=settings) as emu,
    ):
        root = Path(tmp)
        project(root, configured, window)
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
                headers=HEADERS, timeout=30,
            ).json()["List"]
        ][:updates]  # fmt: skip
        ratios: list[float] = []
        runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
        modes = {"both": (True, False), "on": (True,), "off": (False,)}[args.verify]
        for run in range(1, args.runs + 1):
            # alternate which goes first, so neither always meets a quieter machine
            for verify in modes if run % 2 else modes[::-1]:
                r, summary = one_apply(emu, updates, args.workers, window, verify)
                runs[verify].append(r)
                label = "lsqsync" if verify else "--no-verify"
                report(r, summary, run, updates, ceiling, write_calls / window, label)
            if args.no_baseline:
                continue
            time.sleep(window + 0.5)
            b_elapsed, b_calls, b_refused = baseline(emu, ids, window / write_calls)
            ratios.append(b_elapsed / (runs[True] or runs[False])[-1]["elapsed"])
            print(
                f"run {run}: baseline {b_elapsed:6.2f} s  {updates / b_elapsed:6.1f} updates/s "
                f"({updates / b_elapsed / ceiling:.1%} of {ceiling:.0f}/s)  calls {b_calls}, "
                f"refused {b_refused}; lsqsync {ratios[-1]:.2f}x faster"
            )
        for verify in modes:
            median(runs[verify], updates, ceiling, write_calls / window, ratios, verify)
        if len(modes) == 2:
            cost(runs[True], runs[False])


def median(
    runs: list[dict[str, float]],
    updates: int,
    ceiling: float,
    pace: float,
    ratios: list[float],
    verify: bool,
) -> None:
    elapsed = statistics.median(r["elapsed"] for r in runs)
    rate = updates / elapsed
    refused = [int(r["refused"]) for r in runs]
    after = [r["pace_after"] / pace for r in runs if r["refused"]]
    print(
        f"median{'' if verify else ' --no-verify'}: lsqsync {elapsed:.2f} s  {rate:.1f} "
        f"updates/s ({rate / ceiling:.1%} of {ceiling:.0f}/s), refused per run {refused} of "
        f"{[int(r['calls']) for r in runs]} calls"
        + (f", pace after the last refusal {statistics.median(after):.1%} of the limit's"
           if after else "")
        + (f", {statistics.median(ratios):.2f}x the baseline" if ratios and verify else "")
    )  # fmt: skip


def cost(on: list[dict[str, float]], off: list[dict[str, float]]) -> None:
    """What reading back costs: the extra calls and time, medians of the runs."""
    calls = statistics.median(a["calls"] - b["calls"] for a, b in zip(on, off, strict=True))
    seconds = statistics.median(r["elapsed"] for r in on) - statistics.median(
        r["elapsed"] for r in off
    )
    base = statistics.median(r["elapsed"] for r in off)
    print(
        f"reading back: {calls:+.0f} calls, {seconds:+.2f} s ({seconds / base:+.1%} of the "
        f"apply without it); per-run differences "
        + ", ".join(f"{a['elapsed'] - b['elapsed']:+.2f} s" for a, b in zip(on, off, strict=True))
    )


if __name__ == "__main__":
    main()
