"""Shared helpers for the benchmarks: the machine they ran on, medians, a results line."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable


def machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def today() -> str:
    return time.strftime("%Y-%m-%d")


def repeat(fn: Callable[[], float], runs: int) -> list[float]:
    """Run ``fn`` ``runs`` times; it returns the figure of one run (seconds, a rate …)."""
    return [fn() for _ in range(runs)]


def summary(values: list[float], unit: str) -> str:
    return (
        f"median {statistics.median(values):.3f} {unit} "
        f"(min {min(values):.3f}, max {max(values):.3f}, n={len(values)})"
    )
