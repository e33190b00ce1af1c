"""Planning at scale: 100,000 opportunities in the emulator (rate limit off), 5 rules with
``where``, ``when`` and templated values, about 30% of the opportunities changing.

Reports the wall time, the time spent in the HTTP reads vs outside them (parse, evaluate, diff,
render), and the peak RSS. Baseline in the same run: the reads alone (fetch without planning).
Outside HTTP is also given as CPU time of this process (``time.process_time``): on a shared
machine the wall time includes waiting for a core, the CPU time does not.

The emulator runs in a process of its own, as it does for ``lsqsync plan`` against it, so that
the peak RSS is that of the planning process alone (the emulator's own peak is reported apart).
``--in-process`` runs it in this process instead, as the bench did before 2026-12-03: its peak
then includes the emulator's 100,000 rows and the encoding of its answers.

    .venv/bin/python -m bench.plan_bench [--opportunities 100000] [--runs 3] [--in-process]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import resource
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from bench.common import machine, today
from lsqsync.config import load_config
from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings
from lsqsync.lsq import LsqClient
from lsqsync.plan import planfile, render
from lsqsync.plan.fetch import fetch
from lsqsync.plan.planner import PlanOptions, build_plan
from lsqsync.rules.project import load_project

CONFIG = """version: 1
rules: [rules/]
vars: {region: APAC, cutoff: 250000}
safety: {max_changes: 1000000, max_change_ratio: 1}
"""
RULES = """version: 1
rules:
  - name: close-late-deals
    opportunity_type: 12003
    where: {Status: Open, mx_Custom_6: {gt: 200000}}
    when: "opp.mx_Custom_2 in ['Negotiation', 'Proposal']"
    set:
      Status: Won
      mx_Custom_2: Closed Won
      mx_Custom_8: "{{ now }}"
      mx_Custom_9: "Closed by {{ rule.name }} (was {{ opp.mx_Custom_2 }})"
  - name: prioritise-big-deals
    opportunity_type: 12003
    where: {mx_Custom_6: {gte: 400000}, mx_Custom_10: {ne: High}}
    set: {mx_Custom_10: High}
  - name: note-lost-loans
    opportunity_type: 12000
    where: {Status: Lost}
    set: {mx_Custom_9: "Lost at {{ opp.mx_Custom_2 }} ({{ vars.region }})"}
  - name: rate-review
    opportunity_type: 12000
    where: {mx_Custom_7: {gt: 15}}
    when: "opp.mx_Custom_6 > vars.cutoff | int"
    set: {mx_Custom_10: High}
  - name: reassign-inactive-owners
    opportunity_type: 12000
    where: {Owner: {in: [henry.potter@example.com, harry.bailey@example.com]}}
    set: {Owner: george.bailey@example.com}
"""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """This process's resident set now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


@dataclass
class Served:
    url: str
    peak_rss: float | None = None  # the emulator's process's, once it stopped (MB)


def _serve(opportunities: int, conn: Connection) -> None:
    """The emulator in a process of its own: sends its URL, serves until told to stop, then
    sends its peak RSS."""
    with Emulator(opportunities=opportunities, settings=Settings(rate_limit_calls=None)) as emu:
        conn.send(emu.url)
        conn.recv()
    conn.send(peak_rss_mb())


@contextlib.contextmanager
def emulator(opportunities: int, in_process: bool) -> Iterator[Served]:
    if in_process:
        with Emulator(opportunities=opportunities, settings=Settings(rate_limit_calls=None)) as e:
            yield Served(e.url)
        return
    context = multiprocessing.get_context("spawn")  # a fresh process, none of this one's memory
    here, there = context.Pipe()
    child = context.Process(target=_serve, args=(opportunities, there), daemon=True)
    child.start()
    served = Served(here.recv())
    try:
        yield served
    finally:
        here.send("stop")
        served.peak_rss = here.recv()
        child.join(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--opportunities", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--in-process", action="store_true", help="the emulator in this process")
    args = parser.parse_args()
    print(f"# planning — {today()} — {machine()}")
    with (
        tempfile.TemporaryDirectory() as tmp,
        emulator(args.opportunities, args.in_process) as emu,
    ):
        root = Path(tmp)
        (root / "rules").mkdir()
        (root / "lsqsync.yml").write_text(CONFIG)
        (root / "rules" / "bench.yml").write_text(RULES)
        project = load_project(load_config(root / "lsqsync.yml"))
        rows = []
        started_with, held = rss_mb(), 0.0
        for _ in range(args.runs):
            with LsqClient(emu.url, DEMO_ACCESS_KEY, DEMO_SECRET_KEY, limiter=None) as client:
                started = time.perf_counter()
                snapshot = fetch(client, project.rules)
                read = time.perf_counter() - started
            held = held or rss_mb()  # after the first read: the snapshot (and the emulator)
            started, cpu = time.perf_counter(), time.process_time()
            options = PlanOptions(
                now="2026-11-27 10:00:00", created_at=__import__("datetime").datetime(2026, 11, 27),
                lsqsync_version="bench", input_files={},
            )  # fmt: skip
            plan = build_plan(project, snapshot, emu.url, options)
            planned = time.perf_counter() - started
            started = time.perf_counter()
            text = render.render(plan, "text")
            markdown = render.render(plan, "markdown")
            planfile.save(plan, root / "plan.json")
            rendered = time.perf_counter() - started
            cpu = time.process_time() - cpu
            rows.append(
                (read, planned, rendered, plan.summary.opportunities, plan.summary.fields, cpu)
            )
            del snapshot, plan, text, markdown
    reads = statistics.median(r[0] for r in rows)
    plans = statistics.median(r[1] for r in rows)
    renders = statistics.median(r[2] for r in rows)
    cpus = statistics.median(r[5] for r in rows)
    changing, fields = rows[0][3], rows[0][4]
    n = args.opportunities + 2
    print(f"{n:,} opportunities, 5 rules; {changing:,} opportunities change "
          f"({changing / n:.0%}), {fields:,} fields; {args.runs} runs, medians")  # fmt: skip
    print(f"reads (HTTP, baseline)   {reads:6.2f} s")
    print(f"plan (evaluate, diff)    {plans:6.2f} s")
    print(f"render + save (text, markdown, JSON) {renders:6.2f} s")
    print(f"outside HTTP             {plans + renders:6.2f} s  (target < 2 s)")
    print(f"outside HTTP, CPU        {cpus:6.2f} s  (each run: "
          + ", ".join(f"{r[5]:.2f}" for r in rows) + ")")  # fmt: skip
    print(f"wall                     {reads + plans + renders:6.2f} s")
    where = "with the emulator in-process" if args.in_process else "this process, planning"
    print(f"peak RSS ({where}) {peak_rss_mb():.0f} MB (target < 300 MB); RSS before the "
          f"first read {started_with:.0f} MB, after it {held:.0f} MB")  # fmt: skip
    if emu.peak_rss is not None:
        print(f"peak RSS of the emulator's own process {emu.peak_rss:.0f} MB")


if __name__ == "__main__":
    main()
