"""The README's examples are real: every YAML block in it validates (configuration, rule files
and test files)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from lsqsync.config import load_config
from lsqsync.documents import schemacheck, yamlsource
from lsqsync.rules.project import load_project

ROOT = Path(__file__).parents[1]
BLOCKS = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_the_readme_has_yaml_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_every_yaml_example_validates(block: str, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "rules" / "data", tmp_path / "rules" / "data")
    data = yaml.safe_load(block)
    if isinstance(data.get("tests"), list) and all(isinstance(t, dict) for t in data["tests"]):
        # a test file (lsqsync test): its schema, every problem at its place
        document = yamlsource.loads(block, "tests/example.yml")
        assert schemacheck.check(document, "tests") == []
    elif isinstance(data.get("rules"), list) and all(isinstance(r, dict) for r in data["rules"]):
        (tmp_path / "lsqsync.yml").write_text("version: 1\nvars: {region: APAC}\n")
        (tmp_path / "rules" / "example.yml").write_text(block)
        project = load_project(load_config(tmp_path / "lsqsync.yml"))
        assert [r.name for r in project.rules] == [r["name"] for r in data["rules"]]
    else:
        (tmp_path / "lsqsync.yml").write_text(block)
        config = load_config(tmp_path / "lsqsync.yml")
        assert config.vars == data.get("vars", {})
