"""The benchmark's plan, byte for byte: the planner and the plan's writers are tuned for speed
(bench/plan_bench.py), and none of that may change a byte of what they produce.

The golden files were made from the planner before it was tuned, with the benchmark's own rules
and configuration (read from bench/plan_bench.py, so that they cannot drift apart) over 2,000
opportunities of the emulator, read over HTTP. After an intended change to the plan's content,
regenerate them with `LSQSYNC_UPDATE_GOLDEN=1` and review their diff like code.
"""

from __future__ import annotations

import ast
import os
from datetime import datetime
from pathlib import Path

import pytest

from lsqsync.config import load_config
from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings
from lsqsync.lsq import LsqClient
from lsqsync.plan import planfile, render
from lsqsync.plan.fetch import fetch
from lsqsync.plan.model import Plan
from lsqsync.plan.planner import PlanOptions, build_plan
from lsqsync.rules.project import load_project

GOLDEN = Path(__file__).parent / "golden-bench"
BENCH = Path(__file__).parents[2] / "bench" / "plan_bench.py"
UPDATE_GOLDEN = os.environ.get("LSQSYNC_UPDATE_GOLDEN") == "1"
OPPORTUNITIES = 2_000


def bench_constant(name: str) -> str:
    """A string constant of the benchmark (its rules, its configuration)."""
    for node in ast.parse(BENCH.read_text()).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [
            name
        ]:
            value = ast.literal_eval(node.value)
            assert isinstance(value, str)
            return value
    raise AssertionError(f"{BENCH} defines no {name}")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bench-golden")
    (root / "rules").mkdir()
    (root / "lsqsync.yml").write_text(bench_constant("CONFIG"))
    (root / "rules" / "bench.yml").write_text(bench_constant("RULES"))
    before = os.getcwd()
    os.chdir(root)  # sources are shown relative to the project, as `lsqsync plan` shows them
    try:
        project = load_project(load_config(Path("lsqsync.yml")))
    finally:
        os.chdir(before)
    with Emulator(opportunities=OPPORTUNITIES, settings=Settings(rate_limit_calls=None)) as emu:
        with LsqClient(emu.url, DEMO_ACCESS_KEY, DEMO_SECRET_KEY, limiter=None) as client:
            snapshot = fetch(client, project.rules)
        options = PlanOptions(
            now="2026-11-27 10:00:00",
            created_at=datetime(2026, 11, 27),
            lsqsync_version="bench",
            input_files={},
        )
        # the emulator's port is in the plan: one fixed host, as the benchmark's plan would have
        plan: Plan = build_plan(project, snapshot, "http://127.0.0.1:8000", options)
    planfile.save(plan, root / "plan.json")
    return {
        "plan.json": (root / "plan.json").read_text(encoding="utf-8"),
        "plan.txt": render.render(plan, "text"),
        "plan.md": render.render(plan, "markdown"),
    }


@pytest.mark.parametrize("name", ["plan.json", "plan.txt", "plan.md"])
def test_the_benchmarks_plan_is_byte_identical(outputs: dict[str, str], name: str) -> None:
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        GOLDEN.mkdir(exist_ok=True)
        path.write_bytes(outputs[name].encode())
    assert outputs[name].encode() == path.read_bytes(), (
        f"{path} differs; if the change is intended, regenerate with LSQSYNC_UPDATE_GOLDEN=1"
    )


def test_the_golden_plan_changes_something_of_every_rule(outputs: dict[str, str]) -> None:
    # a golden file of an empty plan would prove nothing
    plan = planfile.load(GOLDEN / "plan.json")
    assert plan.summary.opportunities > 100
    assert all(r.fields > 0 for r in plan.summary.rules)
