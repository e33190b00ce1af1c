"""A burst of calls through the client's rate limiter against the emulator's sliding window.

The emulator counts calls by *arrival* in a strict sliding window, with simulated network
latency and jitter. Three clients (and any ``--margins``) send the same burst from several threads:

- ``limiter``   : the client's limiter with its default, adaptive margin (the shipped
  behaviour);
- ``no-margin`` : the limiter with a fixed margin of 0 — a slot reused exactly one window later;
- ``margin M``  : (``--margins``) the limiter with a fixed margin of M seconds;
- ``baseline``  : no client-side limiter; the client only backs off after each 429.

Figures: wall time against the theoretical minimum set by the rate limit, calls per second,
and the number of 429 answers (from the emulator's request log). Medians of several runs.

    .venv/bin/python -m bench.ratelimit [--calls 100] [--window 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from bench.common import machine, today
from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings
from lsqsync.lsq import LsqClient, RateLimiter

LIMIT = 25


def burst(
    emu: Emulator, limiter: RateLimiter | None, calls: int, threads: int
) -> tuple[float, int]:
    requests.post(emu.url + "/_emulator/reset", timeout=10)
    # No limiter: back off quickly so the baseline is not penalised by long sleeps.
    client = LsqClient(
        emu.url, DEMO_ACCESS_KEY, DEMO_SECRET_KEY, limiter=limiter, rate_limit_retries=50,
        backoff_base=0.05, backoff_max=1.0,
    )  # fmt: skip
    with client, ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        list(pool.map(lambda _: client.who_am_i(), range(calls)))
        elapsed = time.perf_counter() - started
    log = requests.get(emu.url + "/_emulator/requests", timeout=10).json()["requests"]
    return elapsed, sum(1 for entry in log if entry["status"] == 429)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--window", type=float, default=2.0, help="seconds per 25 calls")
    parser.add_argument("--threads", type=int, default=6)
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--jitter-ms", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--margins", default="", help="extra limiters with these margins (s), comma-separated"
    )
    parser.add_argument("--only-margins", action="store_true", help="skip the default three")
    args = parser.parse_args()
    # The baseline's retries would log one warning per 429; the figures say enough.
    logging.getLogger("lsqsync").setLevel(logging.ERROR)
    settings = Settings(
        rate_limit_calls=LIMIT, rate_limit_seconds=args.window,
        latency_ms=args.latency_ms, jitter_ms=args.jitter_ms,
    )  # fmt: skip
    # The first LIMIT calls go at once; each further LIMIT needs one more window.
    theoretical = (math.ceil(args.calls / LIMIT) - 1) * args.window
    print(f"# rate limiter — {today()} — {machine()}")
    print(
        f"{args.calls} calls, {args.threads} threads, limit {LIMIT}/{args.window:g}s, "
        f"latency {args.latency_ms:g}±{args.jitter_ms:g} ms; theoretical minimum "
        f"{theoretical:.2f} s; {args.runs} runs, medians"
    )
    clients = {
        "limiter": lambda: RateLimiter(LIMIT, args.window),
        "no-margin": lambda: RateLimiter(LIMIT, args.window, margin=0.0, max_margin=0.0),
        "baseline": lambda: None,
    }
    if args.only_margins:
        clients.clear()
    for m in filter(None, args.margins.split(",")):
        clients[f"margin {float(m):g}"] = lambda m=float(m): RateLimiter(
            LIMIT, args.window, margin=m, max_margin=m
        )
    with Emulator(opportunities=0, settings=settings) as emu:
        for name, make in clients.items():
            runs = [burst(emu, make(), args.calls, args.threads) for _ in range(args.runs)]
            elapsed = statistics.median(r[0] for r in runs)
            refused = statistics.median(r[1] for r in runs)
            print(
                f"{name:<10} time {elapsed:6.2f} s  ({theoretical / elapsed:5.1%} of the limit's "
                f"pace)  {args.calls / elapsed:5.2f} calls/s  429s {refused:g} "
                f"(per run: {', '.join(str(r[1]) for r in runs)})"
            )


if __name__ == "__main__":
    main()
