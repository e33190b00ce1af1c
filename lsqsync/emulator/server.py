"""A LeadSquared-compatible HTTP server over the SQLite store.

What a call goes through, in order: simulated inbound latency (so arrival times carry network
jitter), authentication (401), the account-wide sliding-window rate limit counted by arrival
time and, for Bulk Update, the bulk APIs' own (a refusal is a 429, a 403 or a 200, as the
account is set up: ``limits``), an injected transient fault (500, nothing done), the endpoint
itself, and finally an injected dropped connection (the work is done, the answer never
arrives) or the outbound latency and the response.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from lsqsync.emulator import model, values
from lsqsync.emulator.limits import RESPONSES, Windows, refusal
from lsqsync.emulator.store import ApiFailure, Opportunity, Store, bad_request
from lsqsync.emulator.variants import REJECTION_STATUSES

log = logging.getLogger(__name__)

# The only keys in this repository: they open the local emulator and nothing else.
DEMO_ACCESS_KEY = "u$r-emulator-demo-access-key"
DEMO_SECRET_KEY = "emulator-demo-secret-key-0000000000000000"  # noqa: S105 - demo only

OPP = "/v2/OpportunityManagement.svc/"
BULK_UPDATE = OPP + "Bulk/Update/ByOpportunityId"
MAX_BULK_ITEMS = 25
MAX_IDS_PER_READ = 2000
# Advanced Search: a PageSize above 1,000 was seen silently clamped on a real account.
PAGE_CAP = 1000
# How the emulator refuses a non-administrator Advanced Search. The real form is UNKNOWN (the
# docs say only "accessible to Administrator users"): a 401 is the form hardest on a client,
# which must not take it for refused keys.
NON_ADMIN_REFUSAL = (
    401,
    "MXUnAuthorizedAccessException",
    "You do not have permission to access this API. It is only accessible to Administrator users.",
)
NON_ADMIN_ROLE = "Sales_User"


_MISSING = object()


@dataclass
class Settings:
    """What tests and benchmarks may change while the emulator runs (``/_emulator/settings``)."""

    rate_limit_calls: int | None = 25  # None: no limit
    rate_limit_seconds: float = 5.0
    bulk_rate_limit_calls: int | None = None  # the bulk APIs' own limit (None: none)
    bulk_rate_limit_seconds: float = 5.0
    rate_limit_response: int = 429  # how a refusal comes back: 429, 403 or 200
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    fault_rate: float = 0.0
    drop_rate: float = 0.0
    allow_created_on: bool = False
    # "": Date fields keep the day; an IANA zone: they keep the instant of local midnight there
    # (how LeadSquared stores a Date is UNKNOWN; see values.py)
    date_zone: str = ""
    # How real accounts were seen (or may be expected) to differ, for the client to cope with:
    page_cap: int = PAGE_CAP  # Advanced Search: a larger PageSize is silently clamped to it
    short_pages: bool = False  # ... and pages hold fewer rows than asked, RecordCount right
    ignore_page_index: bool = False  # ... and every PageIndex answers page 1 (a broken server)
    read_lag_ms: float = 0.0  # searches and by-id reads show a write only this long after it
    non_admin: bool = False  # the keys' user is no administrator: Advanced Search is refused
    ignore_empty_writes: bool = False  # Bulk Update leaves a field sent "" as it is
    rejection_status: int = 500  # a whole-call rejection's HTTP status: 500, or 200 (variants)
    # "CODE.SchemaName" -> the display name the type's metadata reports for that field instead
    # of the model's: an account whose administrators renamed fields, or gave two fields of a
    # type one display name (whether LeadSquared allows that is UNKNOWN; lsqsync refuses to
    # pick one, and this lets tests show it)
    display_names: dict[str, str] = field(default_factory=dict)

    def update(self, changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            current = getattr(self, key, _MISSING)
            if current is _MISSING or key.startswith("_"):
                raise bad_request(f"unknown setting {key!r}")
            if key == "display_names":
                self.display_names = _display_names(value)
                continue
            if isinstance(current, str):
                if not isinstance(value, str) or (value and not values.is_zone(value)):
                    raise bad_request(f"setting {key!r} must be an IANA time zone or ''")
                setattr(self, key, value)
                continue
            allowed: tuple[type, ...] = (
                (int, float) if isinstance(current, int | float) else (bool,)
            )
            if key.endswith("rate_limit_calls"):
                allowed = (int, type(None))
            if key == "page_cap":
                allowed = (int,)
            if isinstance(value, bool) is not isinstance(current, bool) or not isinstance(
                value, allowed
            ):
                raise bad_request(f"setting {key!r} cannot be {value!r}")
            if key == "rate_limit_response" and value not in RESPONSES:
                raise bad_request(f"setting {key!r} must be one of {RESPONSES}")
            if key == "rejection_status" and value not in REJECTION_STATUSES:
                raise bad_request(f"setting {key!r} must be one of {REJECTION_STATUSES}")
            if isinstance(value, int | float) and not isinstance(value, bool):
                low = 1 if key.endswith("rate_limit_calls") or key == "page_cap" else 0
                high = 1 if key.endswith("_rate") else math.inf
                positive = not key.endswith("rate_limit_seconds") or value > 0
                if not (math.isfinite(value) and low <= value <= high and positive):
                    raise bad_request(f"setting {key!r} must be in [{low}, {high}]")
            setattr(self, key, value)


class Emulator:
    """The emulator as a library: ``with Emulator(...) as emu: emu.url``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        db: Path | None = None,
        seed: int = 1,
        opportunities: int = 1000,
        scenario: str = "default",
        settings: Settings | None = None,
        access_key: str = DEMO_ACCESS_KEY,
        secret_key: str = DEMO_SECRET_KEY,
    ) -> None:
        # Bind first: a port in use must not leave a seeded temporary database behind.
        self.httpd = _Server((host, port), _Handler)
        self.httpd.emulator = self
        self._tmpdir = None if db else tempfile.TemporaryDirectory(prefix="lsqsync-emulator-")
        db_path = db or Path(self._tmpdir.name) / "emulator.db"  # type: ignore[union-attr]
        try:
            self.store = Store(db_path, seed=seed, opportunities=opportunities, scenario=scenario)
        except BaseException:
            self.httpd.server_close()
            if self._tmpdir is not None:
                self._tmpdir.cleanup()
            raise
        self.settings = settings or Settings()
        self.access_key = access_key
        self.secret_key = secret_key
        self.windows = Windows()
        self.requests: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        # Bound to every interface: loopback reaches it, and clients accept http:// only there.
        shown = "127.0.0.1" if host == "0.0.0.0" else host  # noqa: S104
        return f"http://{shown!s}:{port}"

    def chance(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._rng_lock:
            return self._rng.random() < rate

    def delay(self) -> float:
        """One leg (half) of the simulated round trip, in seconds."""
        s = self.settings
        if s.latency_ms <= 0 and s.jitter_ms <= 0:
            return 0.0
        with self._rng_lock:
            jitter = self._rng.uniform(-s.jitter_ms, s.jitter_ms) / 2
        return max(0.0, s.latency_ms / 2 + jitter) / 1000

    def record(self, entry: dict[str, Any]) -> None:
        with self._log_lock:
            self.requests.append(entry)

    def reset(self) -> None:
        self.store.reset()
        with self._log_lock:
            self.requests.clear()
        self.windows.clear()

    def start(self) -> Emulator:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
            self._thread = None
        self.httpd.server_close()
        self.store.close()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    emulator: Emulator


class _Dropped(Exception):
    """Cut the connection without answering."""


Endpoint = Callable[["_Handler"], Any]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this each answer waits for a delayed ACK
    # (about 40 ms a call on loopback).
    disable_nagle_algorithm = True
    server: _Server
    server_version = "lsqsync-emulator"
    refused = False

    # BaseHTTPRequestHandler logs every request to stderr; the emulator keeps its own log.
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("emulator: " + format, *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")

    # -- plumbing --------------------------------------------------------------------------

    @property
    def emu(self) -> Emulator:
        return self.server.emulator

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        self.route = parts.path
        self.query = {k.lower(): v for k, v in parse_qsl(parts.query, keep_blank_values=True)}
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._respond(400, _error("MXInvalidInputException", "Invalid Content-Length."))
            return
        self.body = self.rfile.read(length) if length else b""
        if self.route.startswith("/_emulator/"):
            self._respond(*self._admin(method))
            return
        time.sleep(self.emu.delay())
        arrived = time.time()
        entry: dict[str, Any] = {
            "method": method,
            "path": self.route,
            # never the keys: only the names of the other query parameters and their values
            "query": {k: v for k, v in self.query.items() if k not in ("accesskey", "secretkey")},
            "arrived_at": arrived,
        }
        self.refused = False  # set by _api when the rate limit refuses the call
        try:
            status, payload = self._api(method)
        except _Dropped:
            entry.update(status=None, dropped=True, duration_ms=(time.time() - arrived) * 1000)
            self.emu.record(entry)
            self.close_connection = True
            # the peer may be gone already
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        time.sleep(self.emu.delay())
        entry.update(status=status, dropped=False, duration_ms=(time.time() - arrived) * 1000)
        # whatever form the refusal took (429, 403 or 200): what tests and benchmarks count
        entry["rate_limited"] = self.refused
        self.emu.record(entry)
        self._respond(status, payload)

    def _respond(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _api(self, method: str) -> tuple[int, Any]:
        emu, s = self.emu, self.emu.settings
        access = self.headers.get("x-LSQ-AccessKey") or self.query.get("accesskey")
        secret = self.headers.get("x-LSQ-SecretKey") or self.query.get("secretkey")
        if access != emu.access_key or secret != emu.secret_key:
            return 401, _error("MXUnAuthorizedAccessException", "Invalid access key or secret key")
        over = emu.windows.admit(
            None if s.rate_limit_calls is None else (s.rate_limit_calls, s.rate_limit_seconds),
            None
            if s.bulk_rate_limit_calls is None or self.route != BULK_UPDATE
            else (s.bulk_rate_limit_calls, s.bulk_rate_limit_seconds),
        )
        if over is not None:
            self.refused = True
            return refusal(s.rate_limit_response, over)
        endpoint = ROUTES.get(self.route)
        if endpoint is None:
            return 404, _error("MXInvalidAPIException", f"No API found at '{self.route}'.")
        wanted, handler = endpoint
        if method != wanted:
            return 405, _error("MXMethodNotAllowedException", f"Use {wanted} for {self.route}.")
        if emu.chance(s.fault_rate):
            return 500, _error(
                "System.TimeoutException", "The operation has timed out (injected fault)."
            )
        try:
            status, payload = 200, handler(self)
        except ApiFailure as failure:
            status, payload = failure.status, _error(failure.exception_type, str(failure))
        except Exception as e:  # a bug or an input the emulator did not foresee: answer, as a
            log.exception("emulator: %s failed", self.route)  # server would, never hang up
            status, payload = 500, _error("System.Exception", f"{type(e).__name__}: {e}")
        if emu.chance(s.drop_rate):
            raise _Dropped
        return status, payload

    def json_body(self) -> Any:
        ctype = self.headers.get("Content-Type", "")
        if "json" not in ctype.lower():
            raise bad_request("The request content type must be 'application/json'.")
        try:
            return json.loads(self.body.decode("utf-8"))
        except UnicodeDecodeError:
            raise bad_request("The request body is not valid UTF-8.") from None
        except json.JSONDecodeError as e:
            raise bad_request(
                f"Unexpected character encountered while parsing value: line {e.lineno}, "
                f"position {e.colno}."
            ) from None

    def param(self, name: str) -> str:
        value = self.query.get(name.lower(), "").strip()
        if not value:
            raise ApiFailure(500, "MXMandatoryAttributeMissingException", f"'{name}' is mandatory")
        return value

    # -- the admin surface -----------------------------------------------------------------

    def _admin(self, method: str) -> tuple[int, Any]:
        emu = self.emu
        route = self.route.removeprefix("/_emulator/")
        try:
            if route == "requests" and method == "GET":
                with emu._log_lock:
                    return 200, {"requests": list(emu.requests)}
            if route == "requests" and method == "DELETE":
                with emu._log_lock:
                    emu.requests.clear()
                return 200, {"cleared": True}
            if route == "reset" and method == "POST":
                emu.reset()
                return 200, {"reset": True}
            if route == "settings" and method == "GET":
                return 200, asdict(emu.settings)
            if route == "settings" and method in ("POST", "PUT"):
                changes = json.loads(self.body or b"{}")
                if not isinstance(changes, dict):
                    raise bad_request("settings must be a JSON object")
                emu.settings.update(changes)
                return 200, asdict(emu.settings)
            if route == "edits" and method == "POST":
                # A person's edits in LeadSquared's UI (a Bulk Update body): no API call, so no
                # keys and no rate limit — what a demo needs for "someone changed it by hand".
                # ?by=EMAIL names the person (ModifiedBy); the API user by default.
                items = json.loads(self.body or b"[]")
                if not isinstance(items, list):
                    raise bad_request("edits must be a JSON array, as Bulk Update takes")
                edited = emu.store.bulk_update(
                    items,
                    modified_by=_editor(self.query.get("by")).id,
                    allow_created_on=False,
                    date_zone=emu.settings.date_zone,
                    lag=emu.settings.read_lag_ms / 1000,
                )
                return 200, {"Response": edited}
            if route.startswith("opportunities/") and method == "GET":
                opp = emu.store.get(route.removeprefix("opportunities/"))
                if opp is None:
                    return 404, _error("MXInvalidEntityException", "no such opportunity")
                return 200, {
                    "id": opp.id,
                    "event_code": opp.event_code,
                    "auto_id": opp.auto_id,
                    "lead_id": opp.lead_id,
                    "fields": opp.fields,
                }
        except (ApiFailure, json.JSONDecodeError) as e:
            return 400, _error("MXInvalidInputException", str(e))
        return 404, _error("MXInvalidAPIException", f"no admin route {method} {self.route}")


def _editor(email: str | None) -> model.User:
    """The user an admin edit is made as: the one with ``email``, else the API user."""
    if not email:
        return model.API_USER
    found = next((u for u in model.USERS if u.email.lower() == email.strip().lower()), None)
    if found is None:
        raise bad_request(
            f"no user with email {email!r} (users: {', '.join(u.email for u in model.USERS)})"
        )
    if not found.active:
        raise bad_request(f"{found.email} is an inactive user: inactive users cannot sign in")
    return found


def _error(exception_type: str, message: str) -> dict[str, str]:
    return {"Status": "Error", "ExceptionType": exception_type, "ExceptionMessage": message}


# -- endpoints -------------------------------------------------------------------------------


def _columns(spec: Any) -> list[str]:
    csv = spec.get("Include_CSV") if isinstance(spec, dict) else None
    if not isinstance(csv, str):
        return []
    return [c.strip() for c in csv.split(",") if c.strip()]


def _flat_row(
    opp: Opportunity,
    lead: dict[str, str | None],
    columns: list[str],
    style: values.Style,
    base: dict[str, Any],
    date_zone: str = "",
) -> dict[str, Any]:
    row = dict(base)
    for column in columns:
        if column in ("OpportunityId", "ProspectOpportunityId", "ProspectActivityId"):
            row[column] = opp.id
        elif column in ("RelatedProspectId", "ProspectId"):
            row[column] = opp.lead_id
        elif column in lead:
            row[column] = lead[column]
        elif (f := opp.type.fields_by_name.get(column)) is not None:
            row[column] = values.render(f, opp.fields.get(column), style, date_zone)
        # Unknown columns are left out, not nulled: a client must not rely on their presence.
    return row


def _event_code(value: Any) -> int:
    try:
        code = int(str(value).strip())
    except ValueError:
        raise ApiFailure(
            500, "MXInvalidInputException", f"'{value}' is not a valid opportunity type code."
        ) from None
    if code not in model.TYPES:
        raise ApiFailure(
            500, "MXInvalidEntityException", f"Opportunity type with code '{code}' does not exist."
        )
    return code


def bulk_update(h: _Handler) -> dict[str, Any]:
    items = h.json_body()
    if not isinstance(items, list):
        raise bad_request(
            "Cannot deserialize the current JSON object into type "
            "'List`1[BulkOpportunityUpdate]' because the type requires a JSON array."
        )
    if len(items) > MAX_BULK_ITEMS:
        raise bad_request(f"You can update at most {MAX_BULK_ITEMS} opportunities in one call.")
    s = h.emu.settings
    try:
        results = h.emu.store.bulk_update(
            items,
            modified_by=model.API_USER.id,
            allow_created_on=s.allow_created_on,
            date_zone=s.date_zone,
            lag=s.read_lag_ms / 1000,
            ignore_empty=s.ignore_empty_writes,
        )
    except ApiFailure as failure:
        if failure.status == 500:  # a whole-call rejection, in the account's form of it
            failure.status = s.rejection_status
        raise
    return {"Response": results}


def search(h: _Handler) -> dict[str, Any]:
    body = h.json_body()
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    if "OpportunityEventCode" not in body or "AdvancedSearch" not in body:
        raise ApiFailure(
            500,
            "MXMandatoryAttributeMissingException",
            "'OpportunityEventCode' and 'AdvancedSearch' are mandatory",
        )
    s = h.emu.settings
    if s.non_admin:
        status, exception_type, message = NON_ADMIN_REFUSAL
        raise ApiFailure(status, exception_type, message)
    code = _event_code(body["OpportunityEventCode"])
    _check_advanced_search(body["AdvancedSearch"], code)
    page_index, page_size = _paging(body.get("Paging") or {}, s)
    sorting = body.get("Sorting") or {}
    if not isinstance(sorting, dict):
        raise bad_request("Sorting must be an object with ColumnName and Direction.")
    sort_column = str(sorting.get("ColumnName") or "CreatedOn")
    desc = str(sorting.get("Direction", "1")) == "1"
    total, rows = h.emu.store.search(
        code,
        page_index=page_index,
        page_size=page_size,
        sort_column=sort_column,
        desc=desc,
        lag=s.read_lag_ms / 1000,
    )
    columns = _columns(body.get("Columns"))
    zone = h.emu.settings.date_zone
    return {
        "RecordCount": total,
        "List": [
            _flat_row(opp, lead, columns, "iso", {"OpportunityId": opp.id}, zone)
            for opp, lead in rows
        ],
    }


def _paging(paging: Any, s: Settings) -> tuple[int, int]:
    """The page the server answers: (PageIndex, the page size it uses). A PageSize above the cap
    is clamped silently, as seen on a real account; with ``short_pages`` the server uses a page
    a third smaller than asked — either way PageIndex counts pages of the size used, so a client
    that pages on until RecordCount reads every record."""
    try:
        page_index = int(paging.get("PageIndex", 1))
        page_size = int(paging.get("PageSize", 10))
    except (TypeError, ValueError, AttributeError):
        raise bad_request("Paging.PageIndex and Paging.PageSize must be numbers.") from None
    if not 1 <= page_index <= 10**9 or page_size < 1:
        raise bad_request("PageIndex must be 1 to 10^9 and PageSize at least 1.")
    used = min(page_size, s.page_cap)
    if s.short_pages:
        used = max(1, used * 2 // 3)
    return (1 if s.ignore_page_index else page_index), used


def _check_advanced_search(advanced: Any, code: int) -> None:
    """AdvancedSearch is a JSON *string*; it must restate ``ActivityEvent eq <code>``."""
    try:
        query: Any = json.loads(advanced) if isinstance(advanced, str) else None
        conditions = [row for group in query["Conditions"] for row in group["RowCondition"]]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ApiFailure(
            500, "MXInvalidInputException", "'AdvancedSearch' is not a valid search string."
        ) from None
    events = [c for c in conditions if isinstance(c, dict) and c.get("LSO") == "ActivityEvent"]
    if not any(c.get("Operator") == "eq" and str(c.get("RSO")) == str(code) for c in events):
        raise ApiFailure(
            500,
            "MXInvalidInputException",
            f"'AdvancedSearch' must contain the condition ActivityEvent eq {code}.",
        )
    if len(events) != len(conditions):
        # Real tenants filter on any field; the emulator's callers filter client-side.
        raise bad_request("The emulator supports only the ActivityEvent condition.")


def get_by_ids(h: _Handler) -> list[dict[str, Any]]:
    body = h.json_body()
    params = body.get("SearchParameters") if isinstance(body, dict) else None
    if not isinstance(params, list):
        raise ApiFailure(
            500, "MXMandatoryAttributeMissingException", "'SearchParameters' is mandatory"
        )
    total = 0
    out = []
    for p in params:
        if not isinstance(p, dict) or not all(
            k in p for k in ("EventCode", "ProspectActivityId", "Columns")
        ):
            raise ApiFailure(
                500,
                "MXMandatoryAttributeMissingException",
                "'EventCode', 'ProspectActivityId' and 'Columns' are mandatory",
            )
        ids = p["ProspectActivityId"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise bad_request("'ProspectActivityId' must be an array of opportunity ids.")
        total += len(ids)
        if total > MAX_IDS_PER_READ:
            raise bad_request(f"You can retrieve at most {MAX_IDS_PER_READ} opportunities.")
        code = _event_code(p["EventCode"])
        columns = _columns(p["Columns"])
        rows = [
            _flat_row(
                opp,
                lead,
                columns,
                "us",
                {"ProspectId": opp.lead_id, "ProspectActivityId": opp.id},
                h.emu.settings.date_zone,
            )
            for opp, lead in h.emu.store.by_ids(code, ids, lag=h.emu.settings.read_lag_ms / 1000)
        ]
        out.append({"EventCode": str(code), "RecordCount": len(rows), "Opportunities": rows})
    return out


def type_metadata(h: _Handler) -> dict[str, Any]:
    code = _event_code(h.param("code"))
    body = model.TYPES[code].metadata()
    renamed = h.emu.settings.display_names
    for f in body["Fields"]:
        f["DisplayName"] = renamed.get(f"{code}.{f['SchemaName']}", f["DisplayName"])
    return body


def _display_names(value: Any) -> dict[str, str]:
    """The ``display_names`` setting: "CODE.SchemaName" of a field of the model -> a name."""
    if not isinstance(value, dict):
        raise bad_request("setting 'display_names' must map CODE.SchemaName to a display name")
    for key, name in value.items():
        code, _, schema_name = str(key).partition(".")
        t = model.TYPES.get(int(code)) if code.isdigit() else None
        if t is None or schema_name not in t.fields_by_name or not isinstance(name, str):
            raise bad_request(f"setting 'display_names': {key!r} is no field of the model")
    return dict(value)


def details(h: _Handler) -> dict[str, Any]:
    opp = h.emu.store.get(h.param("OpportunityId"))
    if opp is None:
        # As observed: a missing or deleted opportunity is a 500, not a 404.
        raise ApiFailure(500, "MXInvalidEntityException", "Opportunity does not exist.")
    return {
        "ID": opp.id,
        "Name": opp.type.name,
        "DisplayName": opp.type.name,
        "RelatedProspectId": opp.lead_id,
        "OpportunityNote": None,
        "Fields": [
            f.metadata(
                i + 1,
                values.render(f, opp.fields.get(f.schema_name), "iso", h.emu.settings.date_zone),
            )
            for i, f in enumerate(opp.type.fields)
        ],
    }


def users_get(h: _Handler) -> list[dict[str, Any]]:
    rows = [u.users_get() for u in model.USERS]
    if h.emu.settings.non_admin:
        rows[model.USERS.index(model.API_USER)]["Role"] = NON_ADMIN_ROLE
    return rows


def user_by_email(h: _Handler) -> list[dict[str, Any]]:
    email = h.param("emailAddress").lower()
    # As documented: an inactive user is not found either.
    return [u.by_email() for u in model.USERS if u.email == email and u.active]


# The documented example's organisation id is a GUID string (By-email rows carry the number).
ORG_GUID = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"org-{model.ORG_ID}.emulator.lsqsync"))


def who_am_i(h: _Handler) -> dict[str, Any]:
    """The documented body (user-authentication page), trimmed of the keys nobody reads: one
    ``Name``, the email as ``PassPhrase`` with ``EmailAddress`` null, and the API host as a
    bare host name — callers build ``https://`` + it + ``/v2/`` (the emulator's, which speaks
    http, is its loopback address and port)."""
    u = model.API_USER
    host = urlsplit(h.emu.url).netloc
    return {
        "Id": u.id,
        "Name": f"{u.first_name} {u.last_name}",
        "PassPhrase": u.email,
        "Role": NON_ADMIN_ROLE if h.emu.settings.non_admin else u.role,
        "EmailAddress": None,
        "SessionId": "",
        "TimeZone": "UTC",
        "TokenId": None,
        "Type": "ApplicationUser",
        "OrgDisplayName": "lsqsync emulator",
        "OrgId": ORG_GUID,
        "OrgShortCode": str(model.ORG_ID),
        "LSQCommonServiceURLs": {"api": host, "app": host},
    }


ROUTES: dict[str, tuple[str, Endpoint]] = {
    BULK_UPDATE: ("POST", bulk_update),
    OPP + "Retrieve/BySearchParameter": ("POST", search),
    OPP + "GetOpportunitiesById": ("POST", get_by_ids),
    OPP + "GetOpportunityTypeMetadata": ("GET", type_metadata),
    OPP + "GetOpportunityDetails": ("GET", details),
    "/v2/UserManagement.svc/Users.Get": ("GET", users_get),
    "/v2/UserManagement.svc/User/Retrieve/ByEmailAddress": ("GET", user_by_email),
    "/v2/Authentication.svc/UserByAccessKey.Get": ("GET", who_am_i),
}
