"""Three runners on three "machines" against one account, started together: one budget through
the PostgreSQL state's ledger, or three.

Three rule repositories (type 12000's Remarks, type 12003's Closing Note, type 12000's Last
Contacted: 1,000 opportunities each) are planned, then applied by three `lsqsync apply`
processes started at the same moment, each with a cache folder of its own (as on separate
machines), against one emulator account at 25 calls / 5 s with 300 ± 100 ms latency. Ceiling:
125 updates/s combined.

- ``shared``: the three states are workspaces of one PostgreSQL database (a throw-away server,
  `tests/pg_server.py`), so the runners share its rate-limit ledger: one budget;
- ``separate`` (the baseline): each state is a SQLite file and each runner paces itself with its
  own machine's ledger: three budgets, as runners on separate machines had before.

Figures per run: combined updates/s over the wall time from starting the three processes to the
end of the last one (Python start-up included) and over the account's view (first call to last
call), as a share of the ceiling; the calls refused; and each runner's grant latency — the
duration of its ledger transactions, median and 99th percentile, as `lsqsync -v apply` logs
them. Medians of ``--runs``.

    .venv/bin/python -m bench.team_bench [--updates 1000] [--runs 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.common import machine, today
from lsqsync.cli import main as lsqsync
from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from pg_server import PgServer  # the tests' throw-away server

LIMIT, WINDOW = 25, 5.0
CEILING = LIMIT * 25 / WINDOW  # updates/s: 25 calls of 25 items a window
# (workspace, type, field, value): one repository each
REPOSITORIES = (
    ("sales-ops", 12000, "mx_Custom_9", "team bench {{ now }}"),
    ("finance", 12003, "mx_Custom_9", "team bench {{ now }}"),
    ("migration", 12000, "mx_Custom_13", "{{ now }}"),
)
LATENCY = re.compile(
    r"rate-limit ledger: (\d+) grant transactions, median ([\d.]+) ms, 99th percentile ([\d.]+) ms"
)
REFUSED = re.compile(r"\((\d+) refused for the rate limit\)")
APPLIED = re.compile(r"applied: (\d+),")


@dataclass
class Run:
    wall: float  # s, from starting the processes to the end of the last
    first: float  # s, from starting the processes to the first call's arrival
    span: float  # s, from the first call's arrival to the last's
    calls: int
    refused: int
    applied: int
    latency: list[tuple[int, float, float]]  # per runner: transactions, median ms, p99 ms
    load: tuple[float, float]  # the machine's 1-minute load average at the start and the end


def project(root: Path, state: str, workspace: str, code: int, field: str, value: str) -> None:
    (root / "rules").mkdir(parents=True)
    (root / "lsqsync.yml").write_text(
        f"version: 1\nstate: {state}\nsafety: {{max_changes: 1000000, max_change_ratio: 1}}\n"
    )
    (root / "rules" / "stamp.yml").write_text(
        f"version: 1\nrules:\n  - name: {workspace}\n    opportunity_type: {code}\n"
        f"    set: {{{field}: '{value}'}}\n"
    )


def plan(root: Path, updates: int) -> None:
    out = io.StringIO()
    args = ["plan", "--config", str(root), "--out", str(root / "p.json"), "--max-details", "0"]
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(io.StringIO()),
        contextlib.suppress(SystemExit),
    ):
        lsqsync(args)
    last = out.getvalue().strip().splitlines()[-1]
    if not last.startswith(f"Plan: {updates} opportunities"):
        raise SystemExit(f"{root}: the plan is not {updates} opportunities: {last}")


def one_run(emu: Emulator, pg: PgServer, tmp: Path, run: int, shared: bool, updates: int) -> Run:
    requests.post(emu.url + "/_emulator/reset", timeout=60).raise_for_status()
    mode = "shared" if shared else "separate"
    url = pg.url(pg.new_database()) if shared else ""
    roots, caches = [], []
    for workspace, code, field, value in REPOSITORIES:
        root, cache = tmp / f"{mode}{run}" / workspace, tmp / f"{mode}{run}" / f"cache-{workspace}"
        state = f"{{url: '{url}', workspace: {workspace}}}" if shared else ".lsqsync/state.db"
        project(root, state, workspace, code, field, value)
        os.environ["LSQSYNC_CACHE_DIR"] = str(cache)
        plan(root, updates)
        roots.append(root)
        caches.append(cache)
    time.sleep(WINDOW + 0.5)  # the plans' calls leave the window
    requests.delete(emu.url + "/_emulator/requests", timeout=10).raise_for_status()
    load = os.getloadavg()[0]
    start = time.time()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "lsqsync", "-v", "apply", "p.json"], cwd=root,
            env={**os.environ, "LSQSYNC_CACHE_DIR": str(cache)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for root, cache in zip(roots, caches, strict=True)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=1200) for p in procs]
    wall = time.time() - start
    log = requests.get(emu.url + "/_emulator/requests", timeout=10).json()["requests"]
    arrivals = sorted(float(e["arrived_at"]) for e in log)
    latency, applied = [], 0
    for proc, (out, err) in zip(procs, outputs, strict=True):
        found, done = LATENCY.search(err), APPLIED.search(out)
        if found is None or done is None or REFUSED.search(out) is None:
            raise SystemExit(f"an apply gave no summary (exit {proc.returncode}): {out}{err}")
        latency.append((int(found[1]), float(found[2]), float(found[3])))
        applied += int(done[1])
    return Run(
        wall=wall,
        first=arrivals[0] - start,
        span=arrivals[-1] - arrivals[0],
        calls=len(log),
        refused=sum(1 for e in log if e["rate_limited"]),
        applied=applied,
        latency=latency,
        load=(load, os.getloadavg()[0]),
    )


def describe(mode: str, run: int, r: Run, total: int) -> str:
    rate, account = r.applied / r.wall, r.applied / r.span
    grants = ", ".join(f"{m:.2f}/{p:.2f}" for _, m, p in r.latency)
    return (
        f"run {run}: {mode:8}  wall {r.wall:6.2f} s  {rate:6.1f} updates/s "
        f"({rate / CEILING:.1%} of {CEILING:.0f}/s), first call after {r.first:.2f} s; first "
        f"to last call {r.span:6.2f} s "
        f"({account / CEILING:.1%}); applied {r.applied}/{total}, calls {r.calls}, refused "
        f"{r.refused}; grant ms median/p99 per runner: {grants}; load average "
        f"{r.load[0]:.1f} -> {r.load[1]:.1f}"
    )


def uncontended(pg: PgServer, grants: int) -> str:
    """The floor: one runner's grant transactions in a loop, nobody else asking, on an account
    of its own (a limit no loop reaches, in a window short enough to keep a real account's few
    dozen grants in the row)."""
    from lsqsync.lsq.ledger import Window
    from lsqsync.state.ledger import PostgresLedger
    from lsqsync.state.postgres import PostgresWorkspace

    url = pg.url(pg.new_database())
    PostgresWorkspace.open(url, "bench").close()
    ledger = PostgresLedger.open(url, "bench-account", "bench")
    assert ledger is not None
    windows = {"account": [Window(1_000_000, 0.05)], "bulk": []}
    taken = []
    for _ in range(grants):
        began = time.perf_counter()
        ledger.grant(windows)
        taken.append((time.perf_counter() - began) * 1000)
    ledger.close()
    taken.sort()
    return (
        f"uncontended grant transactions ({grants}, one runner alone): median "
        f"{statistics.median(taken):.2f} ms, 99th percentile {taken[int(0.99 * grants) - 1]:.2f} "
        f"ms; load average {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=1000, help="per runner")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    logging.getLogger("lsqsync").setLevel(logging.ERROR)
    updates, total = args.updates, args.updates * len(REPOSITORIES)
    print(f"# team bench — {today()} — {machine()}")
    print(
        f"{len(REPOSITORIES)} runners x {updates} updates, account {LIMIT}/{WINDOW:g} s, "
        f"300 ± 100 ms, {args.runs} runs"
    )
    settings = Settings(
        rate_limit_calls=LIMIT, rate_limit_seconds=WINDOW, latency_ms=300, jitter_ms=100
    )
    pg = PgServer.start()
    try:
        print(uncontended(pg, 1000), flush=True)
        # the two examples, then alternating types: 2 (n - 1) generated give n of each type
        with (
            tempfile.TemporaryDirectory() as tmp,
            Emulator(opportunities=2 * (updates - 1), settings=settings) as emu,
        ):
            os.environ.update(LSQ_HOST=emu.url, LSQ_ACCESS_KEY=DEMO_ACCESS_KEY,
                              LSQ_SECRET_KEY=DEMO_SECRET_KEY)  # fmt: skip
            results: dict[str, list[Run]] = {"shared": [], "separate": []}
            for run in range(1, args.runs + 1):
                for mode in ("shared", "separate"):
                    r = one_run(emu, pg, Path(tmp), run, mode == "shared", updates)
                    results[mode].append(r)
                    print(describe(mode, run, r, total), flush=True)
            for mode, runs in results.items():
                summarise(mode, runs, total)
    finally:
        pg.stop()


def summarise(mode: str, runs: list[Run], total: int) -> None:
    wall = statistics.median(r.wall for r in runs)
    span = statistics.median(r.span for r in runs)
    medians = [m for r in runs for _, m, _ in r.latency]
    p99s = [p for r in runs for _, _, p in r.latency]
    print(
        f"median {mode:8}  wall {wall:.2f} s ({total / wall / CEILING:.1%} of the ceiling), "
        f"first to last call {span:.2f} s ({total / span / CEILING:.1%}); refused per run "
        f"{[r.refused for r in runs]} of {[r.calls for r in runs]} calls; applied "
        f"{[r.applied for r in runs]}; grant latency: median of the runners' medians "
        f"{statistics.median(medians):.2f} ms, their 99th percentiles {min(p99s):.2f} to "
        f"{max(p99s):.2f} ms"
    )


if __name__ == "__main__":
    main()
