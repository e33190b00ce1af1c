"""The documentation's examples are real: every YAML block in the README and in docs/ validates
(configuration, rule files and test files)."""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from lsqsync.config import load_config
from lsqsync.documents import schemacheck, yamlsource
from lsqsync.rules.project import load_project

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# a fenced block, also one indented in a list item (its closing fence has the same indent)
FENCE = re.compile(r"^( *)```yaml\n(.*?)^\1```", flags=re.S | re.M)


def yaml_blocks() -> list[tuple[str, str]]:
    """(where, block) for every YAML block of the pages, de-indented."""
    out = []
    for page in PAGES:
        text = page.read_text()
        for found in FENCE.finditer(text):
            line = text.count("\n", 0, found.start()) + 1
            out.append((f"{page.relative_to(ROOT)}:{line}", textwrap.dedent(found.group(2))))
    return out


BLOCKS = yaml_blocks()


def test_the_documentation_has_yaml_examples() -> None:
    assert len(BLOCKS) >= 10
    assert any(where.startswith("docs/recipes/") for where, _ in BLOCKS)


@pytest.mark.parametrize("block", [b for _, b in BLOCKS], ids=[w for w, _ in BLOCKS])
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
