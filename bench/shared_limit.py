"""Two `lsqsync apply` processes against one account, started together: one budget or two.

Two rule repositories (one stamps the 1,250 opportunities of type 12000, the other those of type
12003) are planned, then applied by two processes started at the same moment, against one
emulator account at 25 calls / 5 s with 300 ± 100 ms latency. Ceiling: 125 updates/s combined.

- ``shared``: the processes share one cache folder, so one ledger: one budget between them;
- ``separate`` (the baseline): each has its own cache folder, so each paces only itself.

Figures: combined updates/s over the wall time from the start of both processes to the end of
the last one, as a share of the ceiling, and the calls refused. Medians of ``--runs``.

    .venv/bin/python -m bench.shared_limit [--updates 1250] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.common import machine, today
from lsqsync.cli import main as lsqsync
from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings

LIMIT, WINDOW = 25, 5.0
TYPES = (12000, 12003)


def plan(root: Path, code: int, updates: int) -> None:
    (root / "rules").mkdir(parents=True)
    (root / "lsqsync.yml").write_text(
        "version: 1\nrules: [rules/]\nsafety: {max_changes: 1000000, max_change_ratio: 1}\n"
    )
    (root / "rules" / "stamp.yml").write_text(
        f"version: 1\nrules:\n  - name: stamp-{code}\n    opportunity_type: {code}\n"
        "    set: {mx_Custom_9: 'benchmark {{ now }}'}\n"
    )
    out = io.StringIO()
    args = ["plan", "--config", str(root), "--out", str(root / "p.json"), "--max-details", "0"]
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        lsqsync(args)
    last = out.getvalue().strip().splitlines()[-1]
    if not last.startswith(f"Plan: {updates} opportunities"):
        raise SystemExit(f"{root}: the plan is not {updates} opportunities: {last}")


def one_run(emu: Emulator, tmp: Path, run: int, shared: bool, updates: int) -> dict[str, float]:
    requests.post(emu.url + "/_emulator/reset", timeout=60).raise_for_status()
    mode = "shared" if shared else "separate"
    roots = [tmp / f"{mode}{run}" / str(code) for code in TYPES]
    caches = [tmp / f"{mode}{run}" / ("cache" if shared else f"cache{code}") for code in TYPES]
    for root, cache, code in zip(roots, caches, TYPES, strict=True):
        os.environ["LSQSYNC_CACHE_DIR"] = str(cache)
        plan(root, code, updates)
    time.sleep(WINDOW + 0.5)  # the plans' calls leave the window
    requests.delete(emu.url + "/_emulator/requests", timeout=10).raise_for_status()
    start = time.time()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "lsqsync", "apply", "p.json"], cwd=root,
            env={**os.environ, "LSQSYNC_CACHE_DIR": str(cache)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for root, cache in zip(roots, caches, strict=True)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=600) for p in procs]
    elapsed = time.time() - start
    for proc, (out, err) in zip(procs, outputs, strict=True):
        if proc.returncode != 0 or f"applied: {updates}," not in out:
            raise SystemExit(f"an apply did not apply everything: {out}{err}")
    log = requests.get(emu.url + "/_emulator/requests", timeout=10).json()["requests"]
    arrivals = sorted(float(e["arrived_at"]) - start for e in log)
    return {
        "elapsed": elapsed,
        "calls": len(log),
        "refused": sum(1 for e in log if e["rate_limited"]),
        "first": arrivals[0],
        "last": arrivals[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=1250, help="per process")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("lsqsync").setLevel(logging.ERROR)
    updates = args.updates
    ceiling = 25 * LIMIT / WINDOW
    print(f"# shared limit — {today()} — {machine()}")
    print(f"2 processes x {updates} updates, account {LIMIT}/{WINDOW:g} s, {args.runs} runs")
    settings = Settings(
        rate_limit_calls=LIMIT, rate_limit_seconds=WINDOW, latency_ms=300, jitter_ms=100
    )
    # the two examples, then alternating types: 2 (n - 1) generated give n of each type
    with (
        tempfile.TemporaryDirectory() as tmp,
        Emulator(opportunities=2 * (updates - 1), settings=settings) as emu,
    ):
        os.environ.update(LSQ_HOST=emu.url, LSQ_ACCESS_KEY=DEMO_ACCESS_KEY,
                          LSQ_SECRET_KEY=DEMO_SECRET_KEY)  # fmt: skip
        results: dict[str, list[dict[str, float]]] = {"shared": [], "separate": []}
        for run in range(1, args.runs + 1):
            for mode in ("shared", "separate"):
                r = one_run(emu, Path(tmp), run, mode == "shared", updates)
                results[mode].append(r)
                rate = 2 * updates / r["elapsed"]
                print(
                    f"run {run}: {mode:8}  {r['elapsed']:6.2f} s  {rate:6.1f} updates/s "
                    f"({rate / ceiling:.1%} of {ceiling:.0f}/s)  calls {r['calls']:.0f}, "
                    f"refused {r['refused']:.0f}; first call arrived {r['first']:.2f} s after "
                    f"the start, last {r['last']:.2f}"
                )
        for mode, runs in results.items():
            elapsed = statistics.median(r["elapsed"] for r in runs)
            rate = 2 * updates / elapsed
            print(
                f"median {mode:8}  {elapsed:.2f} s  {rate:.1f} updates/s ({rate / ceiling:.1%} "
                f"of {ceiling:.0f}/s), refused per run {[int(r['refused']) for r in runs]} of "
                f"{[int(r['calls']) for r in runs]} calls"
            )


if __name__ == "__main__":
    main()
