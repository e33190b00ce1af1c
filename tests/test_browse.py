"""whoami, types show and opportunities list, end to end against the emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run

from lsqsync.emulator import DEMO_ACCESS_KEY, Emulator
from lsqsync.emulator.model import USERS


def test_whoami(
    connected: Emulator, capsys: pytest.CaptureFixture[str], lsqsync_cache: Path
) -> None:
    code, out, err = run(["whoami"], capsys)
    assert code == 0
    assert out == (
        f"host:  {connected.url}\nuser:  Ada Admin <ada.admin@example.com>\nrole:  Administrator\n"
        "rate:  25 calls per 5 s (assumed: LeadSquared's documented top tier, until the account "
        "names its own)\n"
        "bulk:  none known: Bulk Update is paced by the account's limit\n"
        f"cache: {lsqsync_cache / 'accounts.json'} (what refusals taught; delete it to forget)\n"
    )
    assert err == ""


@pytest.mark.parametrize("suffix", ["/v2/", "/v2", "/"])
def test_lsq_host_may_be_written_as_the_docs_host_table_prints_it(
    connected: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    suffix: str,
) -> None:
    monkeypatch.setenv("LSQ_HOST", connected.url + suffix)
    code, out, err = run(["whoami"], capsys)
    assert (code, err) == (0, "")
    assert out.startswith(f"host:  {connected.url}\nuser:  Ada Admin <ada.admin@example.com>\n")
    assert "note:" not in out  # the account's API host, named bare, is the one in use
    assert [e["path"] for e in connected.requests] == ["/v2/Authentication.svc/UserByAccessKey.Get"]


def test_a_host_with_another_path_is_refused_with_the_accepted_forms(
    connected: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LSQ_HOST", connected.url + "/api/v2/")
    code, out, err = run(["whoami"], capsys)
    assert (code, out) == (1, "")
    assert err == (
        f"error: the LeadSquared host '{connected.url}/api/v2/' has a path (/api/v2/) that is "
        "not the API's /v2/: write it as api-in21.leadsquared.com, "
        "https://api-in21.leadsquared.com or https://api-in21.leadsquared.com/v2/\n"
    )
    assert connected.requests == []


def test_types_show_lists_every_field(
    connected: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["types", "show", "12003"], capsys)
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == "12003 Enterprise Deal: 18 fields"
    assert lines[1].split() == [
        "SCHEMA", "NAME", "DISPLAY", "NAME", "TYPE", "KIND", "FLAGS", "OPTIONS",
    ]  # fmt: skip
    stage = next(line for line in lines if line.startswith("mx_Custom_2 "))
    assert "under Status: Open: Prospecting, Qualification, Proposal, Negotiation; Won:" in stage
    assert next(line for line in lines if line.startswith("CreatedOn ")).split()[-1] == "system"
    assert "String(200)" in next(line for line in lines if line.startswith("mx_Custom_9 "))
    assert next(line for line in lines if line.startswith("mx_Custom_8 ")).split()[-1] == "datetime"


def test_types_show_json(connected: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["types", "show", "12000", "--format", "json"], capsys)
    body = json.loads(out)
    assert code == 0
    assert (body["code"], body["name"], len(body["fields"])) == (12000, "Home Loan", 20)
    kinds = {
        f["schema_name"]: (f["data_type"], f["render_type"], f["kind"]) for f in body["fields"]
    }
    assert kinds["mx_Custom_13"] == ("Date", "DateTime", "datetime")
    assert kinds["mx_Custom_17"] == ("Select", "Dropdown", "multiselect")
    assert kinds["mx_Custom_18"] == ("Lookup", "Lookup", None)
    stage = next(f for f in body["fields"] if f["schema_name"] == "mx_Custom_2")
    assert stage["dependent_options"]["Won"] == ["Disbursed"]


def test_opportunities_list_shows_owners_as_emails(
    connected: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        ["opportunities", "list", "--type", "12003", "--limit", "4", "--format", "json",
         "--columns", "Status, Owner,mx_Custom_15"],
        capsys,
    )  # fmt: skip
    rows = json.loads(out)
    assert code == 0
    assert len(rows) == 4
    assert {tuple(r) for r in rows} == {("id", "Status", "Owner", "mx_Custom_15")}
    emails = {u.email for u in USERS}
    assert all(r["Owner"] in emails for r in rows)
    assert all(r["mx_Custom_15"].startswith("DEAL-") for r in rows)


def test_opportunities_list_text(connected: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["opportunities", "list", "--type", "12000", "--limit", "3"], capsys)
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["ID", "Status", "Owner", "ModifiedOn"]
    assert len(lines) == 4


def test_missing_environment_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("LSQ_HOST", "LSQ_ACCESS_KEY", "LSQ_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LSQ_HOST", "https://api-in21.leadsquared.com")
    code, out, err = run(["whoami"], capsys)
    assert (code, out) == (1, "")
    assert err.startswith("error: LSQ_ACCESS_KEY and LSQ_SECRET_KEY not set: ")


def test_wrong_keys_exit_1_without_showing_them(
    connected: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LSQ_SECRET_KEY", "not-the-secret-0123456789")
    code, out, err = run(["whoami"], capsys)
    assert (code, out) == (1, "")
    assert err.startswith("error: ")
    assert "401" in err
    for secret in ("not-the-secret-0123456789", DEMO_ACCESS_KEY):
        assert secret not in err


def test_plain_http_to_a_remote_host_is_refused(
    connected: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LSQ_HOST", "http://api-in21.leadsquared.com")
    code, _, err = run(["whoami"], capsys)
    assert code == 1
    assert "http://" in err
    assert "https://" in err
    assert connected.requests == []


def test_the_host_and_rate_limit_come_from_lsqsync_yml_when_there_is_one(
    connected: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("LSQ_HOST")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lsqsync.yml").write_text(f"version: 1\nhost: {connected.url}\n")
    code, out, _ = run(["whoami"], capsys)
    assert code == 0
    assert out.startswith(f"host:  {connected.url}\n")
    monkeypatch.setenv("LSQ_HOST", connected.url + "/")  # the same host, written otherwise
    code, out, _ = run(["whoami"], capsys)
    assert code == 0
    assert out.startswith(f"host:  {connected.url}\n")
    # the same host in the form of the docs' host table: no conflict
    (tmp_path / "lsqsync.yml").write_text(f"version: 1\nhost: {connected.url}/v2/\n")
    code, out, _ = run(["whoami"], capsys)
    assert code == 0
    assert out.startswith(f"host:  {connected.url}\n")
    # A host: naming another place than LSQ_HOST (in CI: a pull request's lsqsync.yml against
    # the repository's variable) is refused, not quietly overruled.
    (tmp_path / "other.yml").write_text("version: 1\nhost: http://127.0.0.1:1\n")
    code, _, err = run(["whoami", "--config", "other.yml"], capsys)
    assert code == 1
    assert err == (
        f"error: LSQ_HOST ({connected.url}/) and host: in lsqsync.yml (http://127.0.0.1:1) name "
        "different hosts: make them agree, or remove host: from lsqsync.yml\n"
    )


def test_opportunities_list_escapes_crm_values_and_masks_masked_fields(
    connected: Emulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from crm_helpers import write_directly

    args = ["opportunities", "list", "--type", "12003", "--limit", "1"]
    deal = json.loads(run([*args, "--format", "json"], capsys)[1])[0]["id"]
    hostile = "\x1b[2Jgone\r\nfake line\u202e"
    write_directly(connected, [{"ProspectOpportunityId": deal, "OpportunityEventCode": 12003,
        "Fields": [{"SchemaName": "mx_Custom_9", "Value": hostile},
                   {"SchemaName": "mx_Custom_11", "Value": "+91-98450 12345"}]}])  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lsqsync.yml").write_text("version: 1\nmask: [MX_CUSTOM_11]\n")
    code, out, _ = run([*args, "--columns", "mx_Custom_9,mx_Custom_11"], capsys)
    assert code == 0
    assert out.splitlines()[1].split("  ")[-2:] == ["\\u001b[2Jgone\\r\\nfake line\\u202e", "***"]
    assert "\x1b" not in out
    assert "98450" not in out
    code, out, _ = run([*args, "--columns", "mx_Custom_11", "--format", "json"], capsys)
    assert json.loads(out)[0]["mx_Custom_11"] == "***"


def test_users_list_shows_active_and_inactive_users(
    connected: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["users", "list"], capsys)
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["EMAIL", "NAME", "ROLE", "STATUS", "ID"]
    potter = next(line for line in lines if line.startswith("henry.potter@example.com "))
    assert potter.split()[-2:] == ["inactive", next(u.id for u in USERS if u.last_name == "Potter")]
    assert lines[-1] == "10 users: 8 active, 2 inactive"
    code, out, _ = run(["users", "list", "--format", "json"], capsys)
    listed = json.loads(out)
    assert [u["email"] for u in listed] == sorted(u.email for u in USERS)
    assert listed[0] == {
        "email": "ada.admin@example.com",
        "name": "Ada Admin",
        "role": "Administrator",
        "status": "active",
        "id": USERS[0].id,
    }


def test_users_list_csv(connected: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    import csv
    import io

    code, out, _ = run(["users", "list", "--format", "csv"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0
    assert len(rows) == len(USERS)
    assert {r["email"]: r["status"] for r in rows}["harry.bailey@example.com"] == "inactive"


def test_opportunities_list_where_selects_as_a_rule_would(
    connected: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """--where takes the conditions of a rule's where, typed by the field: a number compares as
    a number, a User field takes an email, in takes a list; every condition must hold."""
    import csv
    import io

    every = json.loads(
        run(["opportunities", "list", "--type", "12003", "--limit", "1000", "--format", "json",
             "--columns", "Status,mx_Custom_6,mx_Custom_10,Owner"], capsys)[1]
    )  # fmt: skip
    mary = "mary.hatch@example.com"
    expected = [
        r["id"]
        for r in every
        if r["Status"] in ("Open", "Won") and int(r["mx_Custom_6"]) >= 250000 and r["Owner"] != mary
    ]
    assert 0 < len(expected) < len(every)
    code, out, err = run(
        ["opportunities", "list", "--type", "12003", "--limit", "1000", "--format", "csv",
         "--where", "Status=in:Open,Won", "--where", "mx_Custom_6=gte:250000",
         "--where", f"Owner=ne:{mary}"],
        capsys,
    )  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(out)))
    assert (code, err) == (0, "")
    # the default columns, and the fields the conditions test
    assert list(rows[0]) == ["id", "Status", "Owner", "ModifiedOn", "mx_Custom_6"]
    assert [r["id"] for r in rows] == expected
    # --limit counts the opportunities that match, not those read
    code, out, _ = run(
        ["opportunities", "list", "--type", "12003", "--limit", "2", "--format", "json",
         "--where", "mx_Custom_6=gte:250000", "--where", "mx_Custom_9=empty:true"],
        capsys,
    )  # fmt: skip
    assert [r["id"] for r in json.loads(out)] == [
        r["id"] for r in every if int(r["mx_Custom_6"]) >= 250000
    ][:2]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("Stauts=Open",
         "error: 'Stauts' is not a field of opportunity type 12003 (Enterprise Deal) (did you "
         "mean 'Status'?); lsqsync types show 12003 lists them\n"),
        ("Status=Opne",
         "error: --where Status=Opne: 'Opne' is not an option of Status (Open, Won, Lost): the "
         "condition can never hold (did you mean 'Open'?)\n"),
        ("mx_Custom_6=gt:lots",
         "error: --where mx_Custom_6=gt:lots: mx_Custom_6 (number): 'lots' is not a number\n"),
        ("Owner=nobody@example.com",
         "error: --where Owner=nobody@example.com: Owner: no active user with email "
         "'nobody@example.com' (lsqsync users list shows every user)\n"),
        ("mx_Custom_9=empty:perhaps",
         "error: --where 'mx_Custom_9=empty:perhaps': empty takes true or false\n"),
        ("Status",
         "error: --where 'Status': expected FIELD=VALUE or FIELD=OP:VALUE (OP: eq, ne, in, "
         "not_in, gt, gte, lt, lte, contains, startswith, empty)\n"),
    ],
)  # fmt: skip
def test_opportunities_list_where_problems_are_errors(
    connected: Emulator, capsys: pytest.CaptureFixture[str], where: str, message: str
) -> None:
    code, out, err = run(["opportunities", "list", "--type", "12003", "--where", where], capsys)
    assert (code, out, err) == (1, "", message)
