"""The validation cases in ``cases/`` (see ``cases/README.md``): every bad rule file, bad
``lsqsync.yml`` and good project, run through the real ``lsqsync validate``."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from validation_helpers import unchecked_types

from lsqsync.cli import main

CASES = Path(__file__).parent / "cases"
SKELETON = CASES / "skeleton"
EXPECT = re.compile(r"^#\s*expect:\s?(.*)$")
XFAIL = re.compile(r"^#\s*xfail:\s*(.+)$")
HERE = re.compile(r"^\d+:\d+: ")  # LINE:COL: ... is in the case file itself


@dataclass(frozen=True)
class Case:
    source: Path  # a .yml file or a folder
    target: str | None  # where a single file goes in the project (None: a folder case)

    @property
    def id(self) -> str:
        return self.source.stem if self.source.is_file() else self.source.name

    def install(self, project: Path) -> None:
        shutil.copytree(SKELETON, project)
        (project / "rules").mkdir(exist_ok=True)
        if self.target is None:
            shutil.copytree(self.source, project, dirs_exist_ok=True)
            for extra in ("expected.txt", "args.txt"):
                (project / extra).unlink(missing_ok=True)
        else:
            shutil.copyfile(self.source, project / self.target)

    def expected(self) -> list[str]:
        if self.target is None:
            lines = (self.source / "expected.txt").read_text(encoding="utf-8").splitlines()
            return [line for line in lines if line.strip() and not line.startswith("#")]
        out = []
        for line in self.source.read_text(encoding="utf-8", errors="replace").splitlines():
            match = EXPECT.match(line.strip())
            if match:
                text = match.group(1)
                out.append(f"{self.target}:{text}" if HERE.match(text) else text)
        return out

    def args(self) -> list[str]:
        args = self.source / "args.txt"
        if self.target is not None or not args.exists():
            return []
        return [a for a in args.read_text(encoding="utf-8").splitlines() if a.strip()]

    def xfail(self) -> str | None:
        if self.target is None:
            return None
        for line in self.source.read_text(encoding="utf-8", errors="replace").splitlines():
            match = XFAIL.match(line.strip())
            if match:
                return match.group(1)
        return None


def _cases(folder: str, target: str | None) -> list[pytest.ParameterSet]:
    out = []
    for source in sorted((CASES / folder).iterdir()):
        if source.is_file() and source.suffix != ".yml":
            continue
        case = Case(source, None if source.is_dir() else (target or f"rules/{source.name}"))
        reason = case.xfail()
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


BAD = _cases("bad", None)
BAD_CONFIG = _cases("bad-config", "lsqsync.yml")
GOOD = _cases("good", None)


def _validate(
    project: Path,
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[int, list[str], str]:
    monkeypatch.chdir(project)
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "--config", "lsqsync.yml", *args])
    out, err = capsys.readouterr()
    code = exit_info.value.code
    assert isinstance(code, int)
    return code, out.splitlines(), err


def _summary(count: int) -> str:
    return f"{count} problem{'s' if count != 1 else ''} found"


def test_there_are_cases() -> None:
    assert len(BAD) >= 60
    assert len(BAD_CONFIG) >= 10
    assert len(GOOD) >= 10


@pytest.mark.parametrize("case", BAD + BAD_CONFIG)
def test_bad_case_prints_exactly_its_problems(
    case: Case,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = case.expected()
    assert expected, f"{case.source} has no expectations"
    project = tmp_path / "project"
    case.install(project)
    code, lines, err = _validate(project, case.args(), capsys, monkeypatch)
    assert (sorted(lines[:-1]), lines[-1:], err, code) == (
        sorted(expected),
        [_summary(len(expected))],
        "",
        1,
    )


@pytest.mark.parametrize("case", GOOD)
def test_good_case_is_valid(
    case: Case,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = tmp_path / "project"
    case.install(project)
    code, lines, err = _validate(project, case.args(), capsys, monkeypatch)
    assert (lines, code) == (case.expected(), 0)
    if (project / "types").is_dir() or lines[0].startswith("valid: 0 rules"):
        assert err == ""
    else:  # offline, without a snapshot: it says what it did not check
        assert unchecked_types(err)
