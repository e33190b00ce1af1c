"""How long the emulator takes to seed its data set (the issue asks: 100,000 in seconds).

Baseline in the same run: seeding 10,000, to show the cost is linear.

    .venv/bin/python -m bench.seed [--runs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import machine, repeat, summary, today
from lsqsync.emulator.store import Store


def seed_once(count: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        store = Store(Path(tmp) / "bench.db", seed=1, opportunities=count)
        elapsed = time.perf_counter() - started
        store.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"# emulator seeding — {today()} — {machine()}")
    results = {}
    for count in (10_000, 100_000):
        results[count] = repeat(lambda c=count: seed_once(c), args.runs)  # type: ignore[misc]
        print(f"seed {count:>7,} opportunities: {summary(results[count], 's')}")
    small, large = (sorted(results[c])[len(results[c]) // 2] for c in (10_000, 100_000))
    print(f"ratio 100k/10k: {large / small:.1f}x (10.0x = linear)")
    print(f"rate at 100k: {100_000 / large:,.0f} opportunities/s")


if __name__ == "__main__":
    main()
