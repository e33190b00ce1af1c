"""lsqsync.yml's defaults have one home (config.py); the schema that editors show repeats them."""

from __future__ import annotations

from pathlib import Path

from lsqsync import resources
from lsqsync.config import RateLimit, Safety, load_config


def test_the_schema_shows_the_defaults_lsqsync_uses() -> None:
    props = resources.schema("config")["properties"]
    rate, safety = props["rate_limit"]["properties"], props["safety"]["properties"]
    assert (rate["calls"]["default"], rate["per_seconds"]["default"]) == (
        RateLimit().calls,
        RateLimit().per_seconds,
    )
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
    assert config.rate_limit == RateLimit(10, 5.0)
    assert config.safety == Safety(max_changes=50, max_change_ratio=Safety().max_change_ratio)
    assert config.where(("safety", "max_changes")).line == 3
