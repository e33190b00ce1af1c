"""lsqsync doctor against the emulator, and against the emulator seen through a proxy that makes
it disagree (a clock an hour off, a non-administrator's refusals, an unknown data type…)."""

from __future__ import annotations

import email.utils
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from cli_helpers import run
from crm_helpers import example_project
from lsq.lsq_helpers import closed_port_url
from pg_server import PgServer
from profiles import PROFILES, Profile

from lsqsync import doctor
from lsqsync.config import StateLocation
from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator
from lsqsync.state.database import NoState
from lsqsync.state.location import open_location
from lsqsync.state.store import StateFile

SEARCH = "/v2/OpportunityManagement.svc/Retrieve/BySearchParameter"
BY_IDS = "/v2/OpportunityManagement.svc/GetOpportunitiesById"
METADATA = "/v2/OpportunityManagement.svc/GetOpportunityTypeMetadata"
WHO_AM_I = "/v2/Authentication.svc/UserByAccessKey.Get"
# the example project: where-rules on 12003 and 12000, a CSV rule on 12000
NEEDS_SEARCH = "close-signed-deals, flag-high-value, note-lost-loans"
CHECKS = [
    "project", "settings", "host", "keys", "clock", "role",
    "metadata 12000", "search 12000", "by-id 12000", "data types 12000",
    "metadata 12003", "search 12003", "by-id 12003", "data types 12003",
    "users", "rate limit", "state",
]  # fmt: skip

Rewrite = Callable[[str, int, Any], tuple[int, Any]]


def verdicts(
    capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, dict[str, dict[str, str]]]:
    code, out, _ = run(["doctor", "--format", "json", *args], capsys)
    body = json.loads(out)
    assert body["ok"] is (code == 0)
    return code, {c["name"]: c for c in body["checks"]}


@pytest.fixture
def project(connected: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return example_project(tmp_path)


class Proxy:
    """Forwards every call to ``target``; ``rewrite(path, status, body)`` may change the answer
    and ``skew`` moves the Date header the answer carries."""

    def __init__(
        self,
        target: str,
        rewrite: Rewrite | None = None,
        skew: float = 0.0,
        date: str | None = None,
    ) -> None:
        proxy = self
        self.target, self.rewrite, self.skew, self.date = target, rewrite, skew, date

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def date_time_string(self, timestamp: float | None = None) -> str:
                if proxy.date is not None:
                    return proxy.date
                return email.utils.formatdate(time.time() + proxy.skew, usegmt=True)

            def do_GET(self) -> None:
                proxy.forward(self)

            do_POST = do_GET

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def forward(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        headers = {
            k: v for k, v in h.headers.items() if k.lower().startswith(("x-lsq", "content-t"))
        }
        answer = requests.request(
            h.command, self.target + h.path, headers=headers, data=h.rfile.read(length), timeout=10
        )
        status, body = answer.status_code, answer.json()
        if self.rewrite is not None:
            status, body = self.rewrite(h.path.split("?")[0], status, body)
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)


@pytest.fixture
def proxied(
    project: Path, connected: Emulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Proxy]]:
    """``proxied(rewrite=…, skew=…, date=…)``: LSQ_HOST now points at a proxy of the emulator
    (``date``: the Date header every answer carries, "" for none)."""
    started: list[Proxy] = []

    def start(rewrite: Rewrite | None = None, skew: float = 0.0, date: str | None = None) -> Proxy:
        proxy = Proxy(connected.url, rewrite, skew, date)
        proxy.thread.start()
        started.append(proxy)
        monkeypatch.setenv("LSQ_HOST", proxy.url)
        return proxy

    yield start
    for proxy in started:
        proxy.httpd.shutdown()
        proxy.httpd.server_close()


def test_every_check_passes_against_the_emulator(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["doctor"], capsys)
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["VERDICT", "CHECK", "RESULT"]
    assert [line.split()[0] for line in lines[1:-1]] == ["ok"] * len(CHECKS)
    assert lines[-1] == f"doctor: {len(CHECKS)} ok, 0 fail"
    assert err == ""
    code, checks = verdicts(capsys)
    assert code == 0
    assert list(checks) == CHECKS
    assert checks["role"]["message"].startswith("Administrator: Opportunity Advanced Search works")
    assert (
        checks["by-id 12003"]["message"] == "the opportunity found by search reads the same by id"
    )
    assert checks["state"]["message"] == ".lsqsync/state.db: none yet (the first apply creates it)"
    assert not (project / ".lsqsync").exists()  # read-only: the state is never created


def test_refused_keys_fail_the_keys_line_and_skip_what_needs_them(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LSQ_SECRET_KEY", "not-the-emulator-secret-key")
    code, checks = verdicts(capsys)
    assert code == 1
    assert checks["host"]["verdict"] == "ok"  # it answered: a 401
    assert checks["keys"]["verdict"] == "fail"
    assert "HTTP 401" in checks["keys"]["message"]
    assert "LSQ_ACCESS_KEY and LSQ_SECRET_KEY" in checks["keys"]["hint"]
    assert checks["clock"]["verdict"] == "ok"  # the refusal carried a Date
    skipped = [name for name, c in checks.items() if c["verdict"] == "skip"]
    assert skipped == CHECKS[5:15]
    assert {checks[n]["message"] for n in skipped} == {"not checked: the keys check failed"}
    assert checks["state"]["verdict"] == "ok"


def test_an_unreachable_host_fails_quickly(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LSQ_HOST", closed_port_url())
    started = time.monotonic()
    code, checks = verdicts(capsys)
    assert time.monotonic() - started < 10  # one retry, not the usual three
    assert code == 1
    assert checks["host"]["verdict"] == "fail"
    assert "could not connect" in checks["host"]["message"]
    assert checks["keys"] == {
        "name": "keys",
        "verdict": "skip",
        "message": "not checked: the host did not answer",
        "hint": "",
    }


def test_missing_settings_fail_and_nothing_is_asked(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LSQ_ACCESS_KEY")
    code, checks = verdicts(capsys)
    assert code == 1
    assert checks["settings"]["verdict"] == "fail"
    assert "LSQ_ACCESS_KEY not set" in checks["settings"]["message"]
    assert checks["rate limit"]["verdict"] == "skip"
    assert checks["state"]["verdict"] == "ok"


def refuse_search_as_non_admin(path: str, status: int, body: Any) -> tuple[int, Any]:
    """A non-administrator's keys. How LeadSquared refuses them is UNKNOWN: a 403 with an MX…
    exception here. (The emulator's `--non-admin` option, where there is one, does the same.)"""
    if path == SEARCH:
        return 403, {
            "Status": "Error",
            "ExceptionType": "MXUnAuthorizedAccessException",
            "ExceptionMessage": "Only administrators may use Opportunity Advanced Search",
        }
    if path == WHO_AM_I:
        return status, {**body, "Role": "Sales_User"}
    return status, body


def test_a_non_administrator_gets_a_warning_naming_the_rules_that_need_one(
    proxied: Callable[..., Proxy], capsys: pytest.CaptureFixture[str]
) -> None:
    proxied(refuse_search_as_non_admin)
    code, checks = verdicts(capsys)
    assert code == 0  # warnings only: rules that list ids still plan
    role = checks["role"]
    assert role["verdict"] == "warn"
    assert role["message"].startswith(
        "Sales_User: these keys cannot use Opportunity Advanced Search (administrators only; "
        "LeadSquared said: Only administrators may use Opportunity Advanced Search)"
    )
    assert role["message"].endswith(f"rules that need it (where, or a whole type): {NEEDS_SEARCH}")
    assert "ids: or csv:" in role["hint"]
    assert checks["search 12003"]["verdict"] == "warn"
    # by-id is still checked, with an id a rule lists (the CSV rule of type 12000)
    assert checks["by-id 12000"]["verdict"] == "ok"
    assert checks["by-id 12000"]["message"].endswith("listed by a rule")
    assert checks["by-id 12003"]["verdict"] == "skip"


def test_the_emulators_non_administrator_profile_gets_the_same_warning(
    connected: Emulator, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    connected.settings.non_admin = True
    code, checks = verdicts(capsys)
    assert code == 0
    role = checks["role"]
    assert role["verdict"] == "warn"
    assert (
        "these keys cannot use Opportunity Advanced Search (administrators only"
        in (role["message"])
    )
    assert role["message"].endswith(f"rules that need it (where, or a whole type): {NEEDS_SEARCH}")
    assert checks["by-id 12000"]["verdict"] == "ok"


def test_a_clock_off_by_an_hour_is_a_warning(
    proxied: Callable[..., Proxy], capsys: pytest.CaptureFixture[str]
) -> None:
    proxied(skew=-3600.0)
    code, checks = verdicts(capsys)
    assert code == 0
    clock = checks["clock"]
    assert clock["verdict"] == "warn"
    assert clock["message"].startswith("this machine's clock is 3,")
    assert "s ahead of the server's (more than 30 s)" in clock["message"]
    assert "NTP" in clock["hint"]


@pytest.mark.parametrize(
    ("date", "message"),
    [
        ("", "the server's answers carry no Date header: skew unknown"),
        ("yesterday", "the server's Date header 'yesterday' is not a date"),
    ],
)
def test_a_missing_or_unreadable_date_header_is_a_warning(
    proxied: Callable[..., Proxy], capsys: pytest.CaptureFixture[str], date: str, message: str
) -> None:
    proxied(date=date)
    code, checks = verdicts(capsys)
    assert code == 0
    assert (checks["clock"]["verdict"], checks["clock"]["message"]) == ("warn", message)


def test_the_role_comes_from_the_users_when_whoami_does_not_say(
    proxied: Callable[..., Proxy], capsys: pytest.CaptureFixture[str]
) -> None:
    def no_role(path: str, status: int, body: Any) -> tuple[int, Any]:
        if path == WHO_AM_I:
            del body["Role"]
        return status, body

    proxied(no_role)
    code, checks = verdicts(capsys)
    assert code == 0
    assert checks["role"]["message"].startswith("Administrator: ")


def test_a_host_that_is_not_the_api_fails_the_host_line(
    proxied: Callable[..., Proxy], capsys: pytest.CaptureFixture[str]
) -> None:
    def not_found(path: str, status: int, body: Any) -> tuple[int, Any]:
        return 404, {"Status": "Error", "ExceptionMessage": f"No API found at '{path}'."}

    proxied(not_found)
    code, checks = verdicts(capsys)
    assert code == 1
    assert checks["host"]["verdict"] == "fail"
    assert "HTTP 404" in checks["host"]["message"]
    assert checks["host"]["hint"].startswith("set LSQ_HOST to the API base URL")
    assert checks["keys"]["message"] == "not checked: the host is not LeadSquared's API"


def test_field_types_entries_that_name_no_field_are_a_warning(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = project / "lsqsync.yml"
    config.write_text(
        config.read_text() + "field_types: {mx_Custom_10: dropdown, mx_Custom_99: number}\n"
    )
    code, checks = verdicts(capsys)
    assert code == 0
    assert list(checks)[-4:] == ["field_types", "users", "rate limit", "state"]
    assert checks["field_types"]["verdict"] == "warn"
    assert "mx_Custom_99" in checks["field_types"]["message"]
    assert "mx_Custom_10" not in checks["field_types"]["message"]


@pytest.mark.parametrize("named", ["mx_Custom_10", "Priority"])  # by schema or display name
def test_a_field_of_an_unknown_data_type_fails_when_a_rule_uses_it(
    proxied: Callable[..., Proxy], project: Path, named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = project / "rules" / "deals.yml"
    rules.write_text(rules.read_text().replace("mx_Custom_10:", f"{named}:"))

    def odd_types(path: str, status: int, body: Any) -> tuple[int, Any]:
        if path == METADATA and body.get("EventCode") == 12003:
            strange = {"mx_Custom_10": "Lookup", "mx_Custom_15": "Frobnicator"}
            for f in body["Fields"]:
                f["DataType"] = strange.get(f["SchemaName"], f["DataType"])
        return status, body

    proxied(odd_types)
    code, checks = verdicts(capsys)
    assert code == 1
    assert checks["data types 12003"] == {
        "name": "data types 12003",
        "verdict": "fail",
        "message": "rules use fields of data types lsqsync does not know: mx_Custom_10 (Lookup); "
        "used by no rule: mx_Custom_15 (Frobnicator)",
        "hint": "say what each is under field_types: in lsqsync.yml",
    }
    assert checks["data types 12000"]["verdict"] == "ok"


def test_reads_that_disagree_and_a_host_named_otherwise_are_warnings(
    proxied: Callable[..., Proxy], capsys: pytest.CaptureFixture[str]
) -> None:
    def disagree(path: str, status: int, body: Any) -> tuple[int, Any]:
        if path == BY_IDS:
            for group in body:
                for row in group["Opportunities"]:
                    row["mx_Custom_6"] = "1.5"
        if path == WHO_AM_I:
            body["LSQCommonServiceURLs"]["api"] = "api-in21.leadsquared.com"
        return status, body

    proxied(disagree)
    code, checks = verdicts(capsys)
    assert code == 0
    by_id = checks["by-id 12003"]
    assert by_id["verdict"] == "warn"
    assert by_id["message"].startswith("search and GetOpportunitiesById read the same")
    assert 'mx_Custom_6: "' in by_id["message"]
    assert by_id["message"].endswith(' vs "1.5"')
    host = checks["host"]
    assert host["verdict"] == "warn"
    assert host["hint"] == "set LSQ_HOST to api-in21.leadsquared.com"


def test_a_type_that_does_not_exist_fails_its_metadata_and_skips_the_rest(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "rules" / "ghost.yml").write_text(
        "version: 1\nrules:\n  - name: ghost\n    opportunity_type: 99999\n"
        "    where: {Status: Open}\n    set: {Status: Won}\n"
    )
    code, checks = verdicts(capsys)
    assert code == 1
    assert checks["metadata 99999"]["verdict"] == "fail"
    assert "99999" in checks["metadata 99999"]["message"]
    assert "lsqsync types show 99999" in checks["metadata 99999"]["hint"]
    for name in ("search 99999", "by-id 99999", "data types 99999"):
        assert checks[name]["verdict"] == "skip"
    assert checks["role"]["verdict"] == "ok"  # tried on a type that exists


def test_the_state_line_names_the_lock_holder_and_an_open_mode(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = project / ".lsqsync" / "state.db"
    with StateFile.open(path) as st:
        lock = st.acquire_lock("apply")
        lineage = st.lineage
        path.chmod(0o644)
        code, checks = verdicts(capsys)
    state = checks["state"]
    assert code == 0
    assert state["verdict"] == "warn"
    assert state["message"].startswith(
        f".lsqsync/state.db, lineage {lineage}, serial 0, mode 0644; others may read it"
    )
    assert f"locked by {lock.holder} (pid {os.getpid()}" in state["message"]
    assert f"lsqsync state unlock {lock.id}" in state["hint"]
    assert "chmod 600 .lsqsync/state.db" in state["hint"]


def test_without_a_project_only_the_connection_is_checked(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    code, checks = verdicts(capsys)
    assert code == 0
    assert list(checks) == [*CHECKS[:6], "users", "rate limit", "state"]
    assert checks["project"]["verdict"] == "warn"
    assert checks["role"]["message"] == (
        "Administrator: Opportunity Advanced Search not tried (no opportunity type to try)"
    )
    assert checks["state"] == {
        "name": "state",
        "verdict": "skip",
        "message": "not checked: no lsqsync.yml",
        "hint": "",
    }


def test_invalid_rules_fail_the_project_line(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "rules" / "broken.yml").write_text("version: 1\nrules: [{name: x}]\n")
    code, checks = verdicts(capsys)
    assert code == 1
    assert checks["project"]["verdict"] == "fail"
    assert checks["project"]["message"].startswith("rules: rules/broken.yml:2:")
    assert checks["keys"]["verdict"] == "ok"  # the connection is still checked


def test_a_check_that_breaks_is_a_failed_line_not_a_crash(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(probe: object) -> doctor.Check:
        raise RuntimeError("boom")

    monkeypatch.setattr(doctor, "_users", broken)
    code, checks = verdicts(capsys)
    assert code == 1
    assert checks["users"]["verdict"] == "fail"
    assert checks["users"]["message"] == "RuntimeError: boom"
    assert checks["rate limit"]["verdict"] == "ok"  # the checks after it still ran


def test_an_unreadable_rate_limit_cache_is_a_warning(
    project: Path, lsqsync_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (lsqsync_cache / "accounts.json").write_text("{not json")
    code, checks = verdicts(capsys)
    assert code == 0
    assert checks["rate limit"]["verdict"] == "warn"
    assert "delete" in checks["rate limit"]["hint"]


def test_a_state_that_is_not_one_fails_the_state_line(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / ".lsqsync").mkdir()
    (project / ".lsqsync" / "state.db").write_text("not a database")
    code, checks = verdicts(capsys)
    assert code == 1
    assert checks["state"]["verdict"] == "fail"
    assert checks["state"]["message"].startswith(".lsqsync/state.db")
    assert checks["state"]["hint"] == ""


def test_a_postgresql_state_is_read_never_created(
    project: Path, pg: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = pg.url(pg.new_database())
    config = (project / "lsqsync.yml").read_text()
    config = config.replace("state: .lsqsync/state.db", f"state: {{url: '{url}', workspace: team}}")
    (project / "lsqsync.yml").write_text(config)
    location = StateLocation(None, url, "team")

    code, checks = verdicts(capsys)
    assert code == 0
    assert (
        checks["state"]["message"]
        == f"{url} (workspace team): none yet (the first apply creates it)"
    )
    with pytest.raises(NoState):
        open_location(location, create=False)

    with open_location(location) as st:
        st.acquire_lock("apply")
        code, checks = verdicts(capsys)
        lineage = st.lineage
    assert checks["state"]["verdict"] == "warn"
    assert checks["state"]["message"].startswith(
        f"{url} (workspace team), lineage {lineage}, serial 0; locked by "
    )


@pytest.mark.parametrize("profile", [pytest.param(p, id=p.name) for p in PROFILES])
def test_doctor_gives_the_right_verdicts_in_every_emulator_profile(
    profile: Profile,
    profiled_emulator: Callable[[Profile], Emulator],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = profiled_emulator(profile)
    monkeypatch.setenv("LSQ_HOST", emu.url)
    monkeypatch.setenv("LSQ_ACCESS_KEY", DEMO_ACCESS_KEY)
    monkeypatch.setenv("LSQ_SECRET_KEY", DEMO_SECRET_KEY)
    monkeypatch.chdir(tmp_path)
    example_project(tmp_path)
    config = tmp_path / "lsqsync.yml"
    config.write_text(config.read_text() + profile.config)
    code, checks = verdicts(capsys)
    assert code == 0, checks
    not_ok = {name: c["verdict"] for name, c in checks.items() if c["verdict"] != "ok"}
    if profile.name == "non-admin":
        # the search is refused: a warning naming the rules that need it; reads by id still work
        assert not_ok["role"] == "warn"
        assert set(not_ok) <= {"role", "search 12003", "search 12000", "by-id 12003"}
        assert checks["by-id 12000"]["verdict"] == "ok"
    else:
        assert not_ok == {}
