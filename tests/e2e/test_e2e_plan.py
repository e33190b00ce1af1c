"""End-to-end cases of ``lsqsync plan`` (see ``cases/README.md``): every folder in ``cases/`` is a
project run through the real CLI, in-process, against the emulator. Adding a case adds no code.

``LSQSYNC_UPDATE_GOLDEN=1`` (re)writes the expected files of the cases that are not marked
``xfail``; review every one by eye before keeping it: the expected files are the specification.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from lsqsync.cli import main
from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings
from lsqsync.plan import planfile

CASES = Path(__file__).parent / "cases"
NOW = "2026-11-27 10:00:00"
UPDATE = os.environ.get("LSQSYNC_UPDATE_GOLDEN") == "1"
DEFAULT_EMULATOR = {"opportunities": 40, "seed": 1}
MARKDOWN_LIMIT = 60_000
BULK_UPDATE = "/v2/OpportunityManagement.svc/Bulk/Update/ByOpportunityId"
AUTH = {"x-LSQ-AccessKey": DEMO_ACCESS_KEY, "x-LSQ-SecretKey": DEMO_SECRET_KEY}

# What legitimately varies from run to run, and how it is shown in the expected files.
HOST = "http://127.0.0.1:PORT"
STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
DIGEST = re.compile(r"digest\W{1,6}([0-9a-f]{64})\b")
GIT_LINE = re.compile(r"^(?:  git: +[0-9a-f]{40}|- git: `[0-9a-f]{40}`)\n", re.MULTILINE)
# Files of a case folder that describe the case rather than belong to the project.
CASE_FILES = (
    "expected*",
    "args.txt",
    "setup.json",
    "emulator.json",
    "show-args.txt",
    "xfail.txt",
)


# -- cases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name

    def file(self, name: str) -> Path:
        return self.folder / name

    def text(self, name: str) -> str | None:
        path = self.file(name)
        return path.read_text(encoding="utf-8") if path.exists() else None

    def lines(self, name: str, *, strip: bool = True) -> list[str]:
        """A list file: one item a line; blank lines and lines starting with '#' are skipped
        (``strip=False``: the lines keep their indentation)."""
        text = self.text(name) or ""
        return [
            line.strip() if strip else line.rstrip()
            for line in text.splitlines()
            if line.strip() and line[0] != "#"
        ]

    def emulator(self) -> tuple[int, int]:
        spec = {**DEFAULT_EMULATOR, **json.loads(self.text("emulator.json") or "{}")}
        return int(spec["opportunities"]), int(spec["seed"])

    def settings(self) -> Settings:
        """The emulator's settings for the case: no rate limit, and ``settings`` of
        emulator.json (a profile of ``profiles.py``, e.g. ``{"non_admin": true}``)."""
        spec = json.loads(self.text("emulator.json") or "{}")
        return Settings(**{"rate_limit_calls": None, **spec.get("settings", {})})

    def xfail(self) -> str | None:
        reason = self.text("xfail.txt")
        return " ".join(reason.split()) if reason is not None else None


def _params() -> list[Any]:
    params = []
    for folder in sorted(p for p in CASES.iterdir() if p.is_dir()):
        case = Case(folder)
        reason = case.xfail()
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


# -- the emulators ----------------------------------------------------------------------------


class Emulators:
    """One emulator per (opportunities, seed), started on first use, kept for the module."""

    def __init__(self) -> None:
        self._running: dict[tuple[int, int], Emulator] = {}

    def get(self, opportunities: int, seed: int, settings: Settings) -> Emulator:
        key = (opportunities, seed)
        if key not in self._running:
            emu = Emulator(opportunities=opportunities, seed=seed, settings=settings)
            self._running[key] = emu.start()
        emu = self._running[key]
        emu.settings = settings
        emu.reset()
        return emu

    def close(self) -> None:
        for emu in self._running.values():
            emu.stop()


@pytest.fixture(scope="module")
def emulators() -> Iterator[Emulators]:
    running = Emulators()
    yield running
    running.close()


def _apply_setup(emu: Emulator, items: list[Any]) -> None:
    """Bulk Update items, 25 a call, as the CRM's users would have made them; every row must
    succeed (a setup that does not apply is a broken case, not a finding)."""
    for start in range(0, len(items), 25):
        answer = requests.post(
            emu.url + BULK_UPDATE, json=items[start : start + 25], headers=AUTH, timeout=10
        )
        assert answer.status_code == 200, f"setup.json: {answer.status_code} {answer.text}"
        failed = [r for r in answer.json()["Response"] if not r["OpportunityUpdated"]]
        assert not failed, f"setup.json: rows failed: {failed}"


# -- running the CLI --------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> Run:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return Run(code if isinstance(code, int) else 1, out, err)


def _digest(text: str) -> str | None:
    match = DIGEST.search(text)
    return match.group(1) if match else None


def _normalise(text: str, url: str, digest: str | None) -> str:
    """Text or Markdown output (or stderr) with the emulator's address, the plan's own times,
    its git commit and its digest (a hash over the host, among others) made stable."""
    text = text.replace(url, HOST)
    for moment in ("created", "expires"):
        text = re.sub(rf"\b({moment}:\W*){STAMP.pattern}", rf"\1{moment.upper()}_AT", text)
    text = GIT_LINE.sub("", text)
    if digest is not None:
        # Its prefixes only where they are shown, so that no other text can be mistaken for one.
        text = text.replace(digest, "DIGEST")
        text = re.sub(rf"^(#* ?lsqsync plan `?){digest[:8]}\b", r"\1DIGEST8", text, flags=re.M)
        text = text.replace(f"(digest {digest[:12]})", "(digest DIGEST12)")
    return text


def _normalise_json(out: str) -> tuple[dict[str, Any], str]:
    """The JSON plan checked (schema, digest, summary: what ``show`` checks), without the fields
    that vary from run to run; and its digest (which covers them)."""
    data = json.loads(out)
    planfile.parse(json.loads(out), "stdout")
    created = datetime.strptime(data.pop("created_at"), "%Y-%m-%dT%H:%M:%SZ")
    expires = datetime.strptime(data.pop("expires_at"), "%Y-%m-%dT%H:%M:%SZ")
    assert expires - created == timedelta(hours=24)
    data.pop("git_commit")
    data["inputs"].pop("host")
    return data, data.pop("digest")


def _format_args(args: list[str], fmt: str) -> list[str]:
    """``args`` with their ``--format`` (if any) replaced by ``fmt``."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--format":
            skip = True
        elif not arg.startswith("--format="):
            out.append(arg)
    return [*out, "--format", fmt]


def _format_of(args: list[str]) -> str:
    fmt = "text"
    for arg, value in zip(args, [*args[1:], ""], strict=True):
        if arg == "--format":
            fmt = value
        elif arg.startswith("--format="):
            fmt = arg.partition("=")[2]
    return fmt


def _check_markdown(args: list[str], out: str) -> None:
    """Every Markdown rendering fits a pull-request comment."""
    if _format_of(args) == "markdown":
        assert len(out) <= MARKDOWN_LIMIT, f"Markdown of {len(out):,} characters"


def _expect_text(case: Case, name: str, actual: str) -> None:
    """``actual`` must be the content of ``name`` (absent: empty)."""
    path = case.file(name)
    if UPDATE and not case.xfail():
        if actual:
            path.write_text(actual, encoding="utf-8")
        else:
            path.unlink(missing_ok=True)
        return
    assert actual == (case.text(name) or ""), f"{case.name}/{name}"


def _check_absent(case: Case, text: str) -> None:
    """What must never be shown (masked values): absent from text, Markdown and stderr."""
    shown = [value for value in case.lines("expected-absent.txt") if value in text]
    assert not shown, f"shown but must not be: {shown}"


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# -- the test ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", _params())
def test_plan_case(
    case: Case,
    emulators: Emulators,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = tmp_path / "project"
    shutil.copytree(case.folder, project, ignore=shutil.ignore_patterns(*CASE_FILES))
    monkeypatch.chdir(project)
    emu = emulators.get(*case.emulator(), case.settings())
    _apply_setup(emu, json.loads(case.text("setup.json") or "[]"))
    monkeypatch.setenv("LSQ_HOST", emu.url)
    monkeypatch.setenv("LSQ_ACCESS_KEY", DEMO_ACCESS_KEY)
    monkeypatch.setenv("LSQ_SECRET_KEY", DEMO_SECRET_KEY)
    monkeypatch.delenv("NO_COLOR", raising=False)

    args = ["plan", "--no-color", "--now", NOW, *case.lines("args.txt")]
    run = _run(args, capsys)
    digest = _digest(run.out)
    out, err = _normalise(run.out, emu.url, digest), _normalise(run.err, emu.url, digest)
    _check_markdown(args, run.out)

    # The exit code first: a wrong one explains the rest.
    expected_exit = int((case.text("expected-exit.txt") or "0").strip())
    if UPDATE and not case.xfail():
        exit_file = case.file("expected-exit.txt")
        if run.code:
            exit_file.write_text(f"{run.code}\n", encoding="utf-8")
        else:
            exit_file.unlink(missing_ok=True)
    else:
        assert run.code == expected_exit, f"exit {run.code}; stderr:\n{run.err}"
    stderr_contains = case.lines("expected-stderr-contains.txt")
    if stderr_contains:
        missing = [line for line in stderr_contains if line not in err]
        assert not missing, f"missing from stderr: {missing}\n{err}"
    else:
        _expect_text(case, "expected-stderr.txt", err)
    contains = case.lines("expected-contains.txt", strip=False)
    if contains:
        missing = [line for line in contains if line not in out.splitlines()]
        assert not missing, f"lines missing from the output: {missing}\n{out}"
    else:
        _expect_text(case, "expected.txt", out)
    _check_absent(case, out + err)

    if case.file("show-args.txt").exists():
        shown = _run(["show", *case.lines("show-args.txt")], capsys)
        assert shown.code == 0, shown.err
        assert not shown.err
        _check_markdown(case.lines("show-args.txt"), shown.out)
        shown_out = _normalise(shown.out, emu.url, digest)
        _expect_text(case, "expected-show.txt", shown_out)
        _check_absent(case, shown_out)

    for fmt, name in (("json", "expected.json"), ("markdown", "expected.md")):
        if not case.file(name).exists():
            continue
        other_args = _format_args(args, fmt)
        other = _run(other_args, capsys)
        assert other.code == run.code, other.err
        # The digest covers the plan's time too: each run is normalised with its own.
        other_digest = _digest(other.out) if fmt == "markdown" else None
        assert _normalise(other.err, emu.url, other_digest) == err
        if fmt == "markdown":
            _check_markdown(other_args, other.out)
            assert (other_digest is None) == (digest is None)
            markdown = _normalise(other.out, emu.url, other_digest)
            _expect_text(case, name, markdown)
            _check_absent(case, markdown)
            continue
        data, _ = _normalise_json(other.out)
        if UPDATE and not case.xfail():
            _write_json(case.file(name), data)
        else:
            expected = json.loads(case.text(name) or "null")
            assert data == expected, f"{case.name}/{name}"
