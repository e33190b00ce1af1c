"""The hostile-input corpus: every folder of ``cases/`` is a project (or a part of one) that
tries to make lsqsync crash, hang, leak or write where it must not. Each runs through the real
CLI, in-process, against the emulator, and must end with the expected exit code and message —
and with nothing written to LeadSquared. Adding a case adds no code (see ``cases/README.md``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from crm_helpers import writes

from lsqsync.cli import main
from lsqsync.emulator import Emulator

CASES = Path(__file__).parent / "cases"
CASE_FILE = "case.json"


def _cases() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if p.is_dir())


@pytest.mark.parametrize("folder", _cases(), ids=lambda p: p.name)
def test_hostile_case(
    folder: Path,
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case: dict[str, Any] = json.loads((folder / CASE_FILE).read_text())
    project = tmp_path / "project"
    shutil.copytree(folder, project, ignore=shutil.ignore_patterns(CASE_FILE))
    monkeypatch.chdir(project)
    for name, value in case.get("env", {}).items():
        monkeypatch.setenv(name, value)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    with pytest.raises(SystemExit) as exit_info:
        main(case["args"])
    out, err = capsys.readouterr()

    assert exit_info.value.code == case["exit"], (out, err)
    assert case["message"] in (err if case.get("stream", "stderr") == "stderr" else out), err
    for text in case.get("absent", []):
        assert text not in out + err
    assert "unexpected error" not in err
    assert writes(connected) == []  # nothing reached LeadSquared
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    outside = [p for p in after if p not in before and not str(p).startswith("project")]
    assert outside == []  # nothing was created outside the project folder
