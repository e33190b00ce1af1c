"""lsqsync.yml's defaults have one home (config.py); the schema that editors show repeats them."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsqsync import resources
from lsqsync.config import RateLimit, Safety, load_config
from lsqsync.documents.problems import ProjectInvalid
from lsqsync.lsq import DOCUMENTED_LIMIT, Limit


def test_the_schema_shows_the_defaults_lsqsync_uses() -> None:
    props = resources.schema("config")["properties"]
    safety = props["safety"]["properties"]
    assert props["rate_limit"]["default"] == "auto"
    assert RateLimit().auto
    assert (safety["max_changes"]["default"], safety["max_change_ratio"]["default"]) == (
        Safety().max_changes,
        Safety().max_change_ratio,
    )


def test_a_minimal_file_gets_the_defaults_and_a_partial_one_keeps_the_rest(tmp_path: Path) -> None:
    (tmp_path / "lsqsync.yml").write_text("version: 1\n")
    config = load_config(tmp_path)
    assert (config.rate_limit, config.safety) == (RateLimit(), Safety())
    (tmp_path / "lsqsync.yml").write_text(
        "version: 1\nrate_limit: {calls: 10, per_seconds: 5}\nsafety: {max_changes: 50}\n"
    )
    config = load_config(tmp_path)
    assert config.rate_limit == RateLimit(Limit(10, 5.0))
    assert config.safety == Safety(max_changes=50, max_change_ratio=Safety().max_change_ratio)
    assert config.where(("safety", "max_changes")).line == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rate_limit: auto", RateLimit()),
        ("rate_limit: {calls: 20, per_seconds: 5, bulk: {calls: 10, per_seconds: 5}}",
         RateLimit(Limit(20, 5.0), Limit(10, 5.0))),
    ],
)  # fmt: skip
def test_rate_limit_is_auto_or_the_plans_limit_with_an_optional_bulk_one(
    tmp_path: Path, text: str, expected: RateLimit
) -> None:
    (tmp_path / "lsqsync.yml").write_text(f"version: 1\n{text}\n")
    assert load_config(tmp_path).rate_limit == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("rate_limit: fast", "2:13: rate_limit: must be auto, or {calls: N, per_seconds: S} with"),
        ("rate_limit: {calls: 20}", "2:13: rate_limit: 'per_seconds' is required"),
        ("rate_limit: {calls: 0, per_seconds: 5}", "2:21: rate_limit.calls: 0 is less than the "),
        ("rate_limit: {calls: 9, per_seconds: 5, bulk: {calls: 1}}",
         "2:46: rate_limit.bulk: 'per_seconds' is required"),
    ],
)  # fmt: skip
def test_a_rate_limit_that_is_neither_is_one_problem_at_its_place(
    tmp_path: Path, text: str, problem: str
) -> None:
    (tmp_path / "lsqsync.yml").write_text(f"version: 1\n{text}\n")
    with pytest.raises(ProjectInvalid) as caught:
        load_config(tmp_path)
    (found,) = caught.value.problems
    assert f"lsqsync.yml:{problem}" in str(found)


def test_the_write_pace_is_the_strictest_limit_a_bulk_update_meets() -> None:
    assert RateLimit().write_pace() == DOCUMENTED_LIMIT
    assert RateLimit(Limit(20, 5.0)).write_pace() == Limit(20, 5.0)
    assert RateLimit(Limit(20, 5.0), Limit(10, 5.0)).write_pace() == Limit(10, 5.0)
