"""``lsqsync types pull`` and the snapshot it writes: kept as LeadSquared sent it, read back by the
client's own parser, and used by ``validate`` offline — with no network at all — and compared
with the account by ``validate --online``."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from cli_helpers import run
from validation_helpers import unchecked_types

from lsqsync.clock import utcnow
from lsqsync.config import load_config
from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator
from lsqsync.lsq import LsqClient
from lsqsync.rules import typefiles

ROOT = Path(__file__).parents[2]
METADATA = "/v2/OpportunityManagement.svc/GetOpportunityTypeMetadata"

RULES = """\
version: 1
rules:
  - name: close-deals
    opportunity_type: 12003
    where: {Stauts: Open}
    set:
      Status: Won
      mx_Custom_2: Negotiation
      mx_Custom_10: high
"""
GOOD = """\
version: 1
rules:
  - name: flag
    opportunity_type: 12003
    where: {Status: Open}
    set: {mx_Custom_10: High}
"""


def served(emu: Emulator, code: int) -> Any:
    answer = requests.get(
        emu.url + METADATA,
        params={"code": str(code)},
        headers={"x-LSQ-AccessKey": emu.access_key, "x-LSQ-SecretKey": emu.secret_key},
        timeout=5,
    )
    answer.raise_for_status()
    return answer.json()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "lsqsync.yml").write_text("version: 1\n")
    (tmp_path / "rules" / "deals.yml").write_text(GOOD)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_pull_keeps_the_metadata_as_leadsquared_sent_it(
    connected: Emulator, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["types", "pull"], capsys)

    assert (code, err) == (0, "")
    assert out == "types/12003.json  Enterprise Deal: 18 fields (new)\n"
    text = (project / "types" / "12003.json").read_text()
    saved = json.loads(text)
    assert saved["metadata"] == served(connected, 12003)  # exactly the body, nothing dropped
    assert text == json.dumps(saved, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert (saved["lsqsync_types"], saved["code"], saved["host"]) == (1, 12003, connected.url)
    assert isinstance(saved["org_id"], str)
    assert saved["pulled_at"].endswith("Z")
    assert DEMO_ACCESS_KEY not in text
    assert DEMO_SECRET_KEY not in text
    assert (project / "types" / "12003.json").stat().st_mode & 0o777 == 0o644

    # read back through the parser the client uses for the live answer: the same type
    snapshot = typefiles.load(load_config())
    with LsqClient(connected.url, DEMO_ACCESS_KEY, DEMO_SECRET_KEY, limiter=None) as client:
        assert snapshot.files[12003].meta == client.opportunity_type(12003)

    # named types, and again: unchanged
    code, out, _ = run(["types", "pull", "12000", "12003"], capsys)
    assert (code, out) == (
        0,
        "types/12000.json  Home Loan: 20 fields (new)\n"
        "types/12003.json  Enterprise Deal: 18 fields (unchanged)\n",
    )
    assert sorted(typefiles.load(load_config()).files) == [12000, 12003]


def test_an_unknown_type_is_refused_and_nothing_is_written(
    connected: Emulator, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["types", "pull", "99999"], capsys)

    assert (code, out) == (1, "")
    assert err.startswith("error: LeadSquared rejected GET ")
    assert not (project / "types").exists()


def test_pull_without_types_to_pull_says_so(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "rules" / "deals.yml").write_text("version: 1\nrules: []\n")
    code, _, err = run(["types", "pull"], capsys)
    assert code == 1
    assert err.startswith("error: no opportunity types to pull: the rules use none")


def test_validate_checks_fields_offline_against_the_snapshot_without_any_network(
    project: Path, no_network: list[object], capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(ROOT / "types", project / "types")
    (project / "rules" / "deals.yml").write_text(RULES)

    code, out, err = run(["validate"], capsys)

    assert (code, err) == (1, "")
    assert out.splitlines() == [
        "rules/deals.yml:5:21: rules[0].where.Stauts: 'Stauts' is not a field of opportunity type "
        "12003 (Enterprise Deal) (did you mean 'Status'?)",
        "rules/deals.yml:8:20: rules[0].set.mx_Custom_2: mx_Custom_2 'Negotiation' is not allowed"
        " under Status 'Won' (allowed: Closed Won, Onboarding)",
        "rules/deals.yml:9:21: rules[0].set.mx_Custom_10: 'high' is not an option of mx_Custom_10 "
        "(Low, Medium, High) (did you mean 'High'?); LeadSquared would store it anyway",
        "3 problems found",
    ]
    assert no_network == []  # not one connection was attempted

    (project / "rules" / "deals.yml").write_text(GOOD)
    assert run(["validate"], capsys) == (0, "valid: 1 rule in 1 file\n", "")
    assert no_network == []


def test_without_a_snapshot_validate_checks_no_field_and_says_so(
    project: Path, no_network: list[object], capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "rules" / "deals.yml").write_text(RULES)
    code, out, err = run(["validate"], capsys)
    assert (code, out) == (0, "valid: 1 rule in 1 file\n")
    assert unchecked_types(err) == [12003]
    assert no_network == []


def write_snapshot(project: Path, code: int, **changes: Any) -> Path:
    path = project / "types" / f"{code}.json"
    data = json.loads((ROOT / "types" / f"{code}.json").read_text())
    data.update(changes)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True))
    return path


def test_warnings_for_a_type_without_snapshot_and_an_old_snapshot(
    project: Path, no_network: list[object], capsys: pytest.CaptureFixture[str]
) -> None:
    write_snapshot(project, 12003, pulled_at="2020-01-01T00:00:00Z")
    rules = GOOD + "  - name: loans\n    opportunity_type: 12000\n    set: {mx_Custom_99: x}\n"
    (project / "rules" / "deals.yml").write_text(rules)

    code, out, err = run(["validate"], capsys)

    assert (code, out) == (0, "valid: 2 rules in 1 file\n")
    days = (utcnow() - datetime(2020, 1, 1, tzinfo=UTC)).days
    host = json.loads((project / "types" / "12003.json").read_text())["host"]
    assert err.splitlines() == [
        "rules/deals.yml:7:11: warning: fields and options of opportunity type 12000 not checked "
        "(types/ has no snapshot of it), nor which field each name means (mx_Custom_99: a "
        "schema name, a display name or nothing): run `lsqsync validate --online`, or keep a "
        "types snapshot (lsqsync types pull 12000)",
        f"types/12003.json:1:1: warning: pulled {days} days ago (2020-01-01T00:00:00Z from "
        f"{host}), more than types.max_age_days (90): the account may have changed since; "
        "lsqsync types pull 12003",
    ]

    code, out, _ = run(["validate", "--format", "github"], capsys)
    assert code == 0
    assert out.startswith("::warning file=rules/deals.yml,line=7,col=11,title=lsqsync validate::")
    data = json.loads(run(["validate", "--format", "json"], capsys)[1])
    assert [w["file"] for w in data["warnings"]] == ["rules/deals.yml", "types/12003.json"]
    assert data["valid"] is True


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "types/12003.json:1:1: cannot read the snapshot: Expecting property name"),
        ('{"a": 1}', "types/12003.json:1:1: not an lsqsync snapshot of an opportunity type"),
        (
            '{"lsqsync_types": 2}',
            "types/12003.json:1:1: snapshot format 2; this lsqsync reads 1 (pull it again: "
            "lsqsync types pull 12003)",
        ),
        (
            '{"lsqsync_types": 1, "code": 12000}',
            "types/12003.json:1:1: holds type 12000, but the file is named 12003.json",
        ),
        (
            '{"lsqsync_types": 1, "code": 12003, "pulled_at": "yesterday"}',
            "types/12003.json:1:1: pulled_at is not a UTC timestamp",
        ),
        (
            '{"lsqsync_types": 1, "code": 12003, "pulled_at": "2026-01-01T00:00:00Z",'
            ' "host": "h", "metadata": {"Fields": 3}}',
            "types/12003.json:1:1: metadata: not metadata lsqsync can read: 'Fields' is not an"
            " array",
        ),
    ],
)
def test_a_broken_snapshot_is_a_problem_at_its_file(
    project: Path,
    no_network: list[object],
    capsys: pytest.CaptureFixture[str],
    content: str,
    message: str,
) -> None:
    (project / "types").mkdir()
    (project / "types" / "12003.json").write_text(content)
    (project / "types" / "notes.json").write_text("{}")

    code, out, _ = run(["validate"], capsys)

    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(message), lines
    assert lines[1:] == [
        "types/notes.json:1:1: not a snapshot of an opportunity type (expected CODE.json)",
        "2 problems found",
    ]


def test_validate_online_lists_how_the_account_differs_from_the_snapshot(
    connected: Emulator, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_snapshot(project, 12003)
    data = json.loads(path.read_text())
    fields = data["metadata"]["Fields"]
    priority = next(f for f in fields if f["SchemaName"] == "mx_Custom_10")
    priority["OptionSet"] = priority["OptionSet"].replace('"High"', '"Urgent"')
    fields.remove(next(f for f in fields if f["SchemaName"] == "mx_Custom_13"))
    fields.append({**priority, "SchemaName": "mx_Custom_99", "DisplayName": "Gone"})
    path.write_text(json.dumps(data, indent=2, sort_keys=True))
    lines = path.read_text().splitlines()

    def line_of(name: str) -> int:
        return next(i for i, t in enumerate(lines, 1) if t.strip() == f'"SchemaName": "{name}",')

    code, out, _ = run(["validate", "--online"], capsys)

    assert code == 1
    hint = "; lsqsync types pull 12003 and review the difference"
    assert out.splitlines() == [
        f"types/12003.json:1:1: the account has a field mx_Custom_13 that the snapshot lacks{hint}",
        f"types/12003.json:{line_of('mx_Custom_10')}:9: mx_Custom_10 differs in the account: "
        f'options ["Low", "Medium", "Urgent"] -> ["Low", "Medium", "High"]{hint}',
        f"types/12003.json:{line_of('mx_Custom_99')}:9: mx_Custom_99 is no longer a field of the"
        f" account{hint}",
        "3 problems found",
    ]


SHIPPED = [
    ROOT / "types" / "12000.json",
    ROOT / "types" / "12003.json",
    ROOT / "lsqsync" / "templates" / "init" / "types" / "12003.json",
]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_shipped_snapshots_are_the_emulators_types(emu: Emulator, path: Path) -> None:
    data = json.loads(path.read_text())
    assert data["metadata"] == served(emu, data["code"]), (
        f"{path.relative_to(ROOT)} is not the emulator's metadata any more: pull it again "
        "(lsqsync types pull, against lsqsync emulator serve)"
    )


def test_a_snapshot_folder_outside_the_project_is_refused(
    project: Path, no_network: list[object], capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "lsqsync.yml").write_text("version: 1\ntypes: {path: ../elsewhere}\n")
    for command in (["validate"], ["test"]):
        code, out, _ = run(command, capsys)
        assert code == 1
        assert (
            "lsqsync.yml:2:15: types.path: must stay inside the project folder (no '..' or links"
            " leading out)" in out
        ), command


def test_a_pulled_snapshot_lets_validate_check_fields_with_no_network(
    connected: Emulator,
    project: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["types", "pull"], capsys)[0] == 0
    (project / "rules" / "deals.yml").write_text(RULES)
    seen = len(connected.requests)
    attempts: list[object] = request.getfixturevalue("no_network")  # from here on: no network

    code, out, err = run(["validate"], capsys)

    assert (code, err) == (1, "")
    assert [line.split(": ")[1] for line in out.splitlines()[:-1]] == [
        "rules[0].where.Stauts",
        "rules[0].set.mx_Custom_2",
        "rules[0].set.mx_Custom_10",
    ]
    assert attempts == []
    assert len(connected.requests) == seen  # the emulator heard nothing either
