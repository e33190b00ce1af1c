"""The emulated tenant's data in SQLite, and what each endpoint does with it.

One connection, guarded by a lock: every call is atomic, as a bulk update must be when a bad
value fails the whole call. Handler threads still run their simulated latency in parallel.
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from lsqsync.emulator import model, scenarios, values

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leads (
    id TEXT PRIMARY KEY, first_name TEXT, last_name TEXT, email TEXT, phone TEXT
);
CREATE TABLE IF NOT EXISTS opportunities (
    id TEXT PRIMARY KEY,
    event_code INTEGER NOT NULL,
    auto_id TEXT UNIQUE,
    lead_id TEXT NOT NULL REFERENCES leads(id),
    created_on TEXT NOT NULL,
    fields TEXT NOT NULL
);
"""
INDEX = "CREATE INDEX opportunities_by_type ON opportunities(event_code, created_on, id)"

LEAD_COLUMNS = {
    "FirstName": "first_name",
    "LastName": "last_name",
    "EmailAddress": "email",
    "Phone": "phone",
}


class ApiFailure(Exception):
    """A whole-call failure, answered with the LeadSquared error envelope."""

    def __init__(self, status: int, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.exception_type = exception_type


def bad_request(message: str) -> ApiFailure:
    return ApiFailure(400, "MXInvalidInputException", message)


@dataclass(frozen=True)
class Opportunity:
    id: str
    event_code: int
    auto_id: str | None
    lead_id: str
    fields: dict[str, str | None]

    @property
    def type(self) -> model.OpportunityTypeDef:
        return model.TYPES[self.event_code]


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


class Store:
    """``clock`` (monotonic seconds) times the read lag; tests may replace it."""

    def __init__(
        self, path: Path, *, seed: int, opportunities: int, scenario: str = scenarios.DEFAULT
    ) -> None:
        if scenario not in scenarios.SCENARIOS:
            raise ValueError(
                f"no scenario {scenario!r} (scenarios: {', '.join(scenarios.SCENARIOS)})"
            )
        self.path = path
        self.seed = seed
        self.opportunity_count = opportunities
        self.scenario = scenario
        self.clock: Callable[[], float] = time.monotonic
        # Read lag: per opportunity written while a lag was set, its versions oldest first as
        # (written at, fields); the first is the one before those writes. Reads see the latest
        # version written at least `lag` seconds ago.
        self._versions: dict[str, list[tuple[float, dict[str, str | None]]]] = {}
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # A test server: speed over durability (one connection, so WAL would buy nothing).
        self._db.execute("PRAGMA journal_mode=MEMORY")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.executescript(SCHEMA)
        self.users = {u.id: u for u in model.USERS}
        self.active_user_ids = frozenset(u.id for u in model.USERS if u.active)
        if self._db.execute("SELECT value FROM meta WHERE key='seeded'").fetchone() is None:
            self.reset()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- seeding ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Replace all data with the deterministic data set for (seed, opportunities,
        scenario)."""
        leads, opps = generate(self.seed, self.opportunity_count)
        opps = scenarios.apply(self.scenario, opps)
        with self._transaction() as db:
            self._versions.clear()
            db.execute("DROP INDEX IF EXISTS opportunities_by_type")
            db.execute("DELETE FROM opportunities")
            db.execute("DELETE FROM leads")
            db.executemany("INSERT INTO leads VALUES (?, ?, ?, ?, ?)", leads)
            db.executemany("INSERT INTO opportunities VALUES (?, ?, ?, ?, ?, ?)", opps)
            db.execute(INDEX)  # building it once at the end is faster than row by row
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('seeded', ?)",
                (
                    json.dumps(
                        {
                            "seed": self.seed,
                            "opportunities": self.opportunity_count,
                            "scenario": self.scenario,
                        }
                    ),
                ),
            )

    # -- reads -----------------------------------------------------------------------------

    def _row(self, row: Sequence[Any]) -> Opportunity:
        return Opportunity(row[0], row[1], row[2], row[3], json.loads(row[5]))

    def get(self, opportunity_id: str) -> Opportunity | None:
        """By GUID (any case) or by AutoId value."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM opportunities WHERE id = ? OR auto_id = ?",
                (opportunity_id.strip().lower(), opportunity_id.strip()),
            ).fetchone()
        return self._row(row) if row else None

    def lead(self, lead_id: str) -> dict[str, str | None]:
        with self._lock:
            row = self._db.execute(
                "SELECT first_name, last_name, email, phone FROM leads WHERE id = ?", (lead_id,)
            ).fetchone()
        return dict(zip(LEAD_COLUMNS, row, strict=True)) if row else {}

    def search(
        self,
        event_code: int,
        *,
        page_index: int,
        page_size: int,
        sort_column: str,
        desc: bool,
        lag: float = 0.0,
    ) -> tuple[int, list[tuple[Opportunity, dict[str, str | None]]]]:
        """A page of the type's opportunities as a read ``lag`` seconds behind sees them (the
        order is the stored one: lag never changes which records a page holds)."""
        order = (
            "created_on" if sort_column != "ModifiedOn" else "json_extract(fields, '$.ModifiedOn')"
        )
        direction = "DESC" if desc else "ASC"
        with self._lock:
            (total,) = self._db.execute(
                "SELECT COUNT(*) FROM opportunities WHERE event_code = ?", (event_code,)
            ).fetchone()
            rows = self._db.execute(
                f"SELECT o.*, l.first_name, l.last_name, l.email, l.phone FROM opportunities o "
                f"JOIN leads l ON l.id = o.lead_id WHERE o.event_code = ? "
                f"ORDER BY {order} {direction}, o.id {direction} LIMIT ? OFFSET ?",
                (event_code, page_size, (page_index - 1) * page_size),
            ).fetchall()
            found = [(self._row(r), dict(zip(LEAD_COLUMNS, r[6:], strict=True))) for r in rows]
            return total, [(self._seen(opp, lag), lead) for opp, lead in found]

    def by_ids(
        self, event_code: int, ids: Iterable[str], *, lag: float = 0.0
    ) -> list[tuple[Opportunity, dict[str, str | None]]]:
        """The opportunities of that type among ``ids`` (GUIDs only), in the order asked, as a
        read ``lag`` seconds behind sees them."""
        wanted = [i.strip().lower() for i in ids]
        found: dict[str, tuple[Opportunity, dict[str, str | None]]] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for r in self._db.execute(
                    f"SELECT o.*, l.first_name, l.last_name, l.email, l.phone FROM opportunities o"
                    f" JOIN leads l ON l.id = o.lead_id"
                    f" WHERE o.event_code = ? AND o.id IN ({marks})",
                    (event_code, *chunk),
                ):
                    found[r[0]] = (self._row(r), dict(zip(LEAD_COLUMNS, r[6:], strict=True)))
            seen: set[str] = set()
            out = []
            for i in wanted:
                if i in found and i not in seen:
                    seen.add(i)
                    opp, lead = found[i]
                    out.append((self._seen(opp, lag), lead))
            return out

    def _seen(self, opp: Opportunity, lag: float) -> Opportunity:
        """``opp`` as a read ``lag`` seconds behind the writes sees it (under the lock)."""
        versions = self._versions.get(opp.id)
        if not versions:
            return opp
        cutoff = self.clock() - max(lag, 0.0)
        shown = max(i for i, (written, _) in enumerate(versions) if written <= cutoff)
        if shown == len(versions) - 1:
            del self._versions[opp.id]  # every read now sees the stored values
            return opp
        del versions[:shown]  # versions older than the one shown are never seen again
        return replace(opp, fields=versions[0][1])

    # -- the bulk update -------------------------------------------------------------------

    def bulk_update(
        self,
        items: list[Any],
        *,
        modified_by: str,
        allow_created_on: bool,
        date_zone: str = "",
        lag: float = 0.0,
        ignore_empty: bool = False,
    ) -> list[dict[str, Any]]:
        """Apply ``Bulk/Update/ByOpportunityId``. Returns the per-row results.

        Per-row problems (unknown id, wrong event code, unknown or read-only field, unknown or
        inactive user) fail that row only. A value the field's type cannot parse fails the
        whole call with a 500 ``MX…`` exception and nothing is written, as real tenants do.
        ``ignore_empty``: a field sent ``""`` keeps its value (a variant).
        """
        with self._transaction() as db:
            results: list[dict[str, Any]] = []
            updates: list[tuple[Opportunity, dict[str, str | None]]] = []
            for number, item in enumerate(items, start=1):
                try:
                    opp, changes = self._check_row(item, allow_created_on, date_zone, ignore_empty)
                except RowFailure as failure:
                    results.append(
                        {
                            "RowNumber": number,
                            "OpportunityUpdated": False,
                            "ExceptionType": failure.exception_type,
                            "ExceptionMessage": str(failure),
                        }
                    )
                    continue
                except values.InvalidValue as invalid:
                    raise ApiFailure(500, invalid.exception_type, str(invalid)) from None
                if changes:
                    changes |= {"ModifiedOn": now_utc(), "ModifiedBy": modified_by}
                updates.append((opp, changes))
                results.append({"RowNumber": number, "OpportunityUpdated": True})
            # Rows naming the same opportunity twice apply in order.
            merged: dict[str, dict[str, str | None]] = {}
            for opp, changes in updates:
                merged[opp.id] = {**merged.get(opp.id, opp.fields), **changes}
            db.executemany(
                "UPDATE opportunities SET fields = ? WHERE id = ?",
                [(json.dumps(f), i) for i, f in merged.items()],
            )
            if lag > 0:
                now = self.clock()
                for opp, _ in updates:
                    self._versions.setdefault(opp.id, [(-math.inf, opp.fields)])
                for opp_id, fields in merged.items():
                    self._versions[opp_id].append((now, fields))
        return results

    def _check_row(
        self, item: Any, allow_created_on: bool, date_zone: str, ignore_empty: bool = False
    ) -> tuple[Opportunity, dict[str, str | None]]:
        if not isinstance(item, dict) or not isinstance(item.get("Fields", []), list):
            raise bad_request(
                "Cannot deserialize the current JSON object into type "
                "'BulkOpportunityUpdate' because the type requires a JSON array."
            )
        raw_id = item.get("ProspectOpportunityId")
        if not isinstance(raw_id, str) or not raw_id.strip():
            raise RowFailure(
                "MXMandatoryAttributeMissingException", "'ProspectOpportunityId' is mandatory."
            )
        opp = self.get(raw_id)
        if opp is None:
            raise RowFailure(
                "MXInvalidEntityException", f"Opportunity with Id '{raw_id}' does not exist."
            )
        code = item.get("OpportunityEventCode")
        if code is None:
            raise RowFailure(
                "MXMandatoryAttributeMissingException", "'OpportunityEventCode' is mandatory."
            )
        if str(code).strip() != str(opp.event_code):
            raise RowFailure(
                "MXInvalidEntityException",
                f"Opportunity '{raw_id}' is not of opportunity type '{code}'.",
            )
        changes: dict[str, str | None] = {}
        for entry in item.get("Fields", []):
            if not isinstance(entry, dict):
                raise bad_request("Cannot deserialize the current JSON array into type 'Field'.")
            name = entry.get("SchemaName")
            f = opp.type.fields_by_name.get(name) if isinstance(name, str) else None
            if f is None:
                raise RowFailure(
                    "MXInvalidAttributeException",
                    f"Field '{name}' does not exist for opportunity type '{opp.event_code}'.",
                )
            creatable = allow_created_on and f.schema_name == "CreatedOn"
            if (f.read_only or f.is_system) and not creatable:
                raise RowFailure(
                    "MXReadOnlyAttributeException",
                    f"Field '{f.schema_name}' is a system or read-only field "
                    "and cannot be updated.",
                )
            raw = entry.get("Value")
            text = "" if raw is None else raw if isinstance(raw, str) else json.dumps(raw)
            if ignore_empty and text == "":
                continue  # the variant where "" leaves the field as it is
            if f.mandatory and not text.strip():
                # Whether clearing a mandatory field is refused is UNKNOWN; the defensive reading
                # is that the row fails.
                raise RowFailure(
                    "MXMandatoryAttributeMissingException",
                    f"Field name : '{f.schema_name}' of datatype : '{f.data_type}' is mandatory.",
                )
            try:
                changes[f.schema_name] = values.parse(f, text, self.active_user_ids, date_zone)
            except LookupError as missing:
                raise RowFailure("MXInvalidEntityException", str(missing)) from None
        return opp, changes


class RowFailure(Exception):
    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type


# -- deterministic data generation -----------------------------------------------------------
# Written for speed (100,000 opportunities seed in a few seconds): integer arithmetic on one
# random stream instead of datetime objects and the heavier Random helpers.

_FIRST = ("Asha", "Ravi", "Meera", "Arjun", "Priya", "Kabir", "Neha", "Vikram", "Isha", "Rohan")
_LAST = ("Sharma", "Iyer", "Khan", "Das", "Nair", "Gupta", "Reddy", "Mehta", "Bose", "Pillai")
_COMPANIES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell")
_SOURCES = ("Website", "Referral", "Partner", "Event", "Cold Call")
_PRIORITIES = ("Low", "Medium", "High")
_DAYS = 600
_DATES = [(date(2025, 1, 1) + timedelta(days=d)).isoformat() for d in range(_DAYS + 400)]


_EXAMPLE_VALUES: tuple[dict[str, str | None], ...] = (
    {
        "Status": "Open",
        "mx_Custom_2": "Negotiation",
        "Owner": model.USERS[2].id,
        "mx_Custom_8": None,
    },
    {"Status": "Open", "mx_Custom_2": "Credit Review", "mx_Custom_6": "20000"},
)


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _stamp(seconds: int) -> str:
    """Seconds since 2025-01-01 00:00:00 as ``YYYY-MM-DD HH:MM:SS``."""
    day, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{_DATES[day]} {hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def generate(
    seed: int, count: int
) -> tuple[list[tuple[str, str, str, str, str]], list[tuple[Any, ...]]]:
    """Leads and opportunities for the data set: the two example opportunities, then ``count``
    generated ones alternating between the types. Same (seed, count) → same rows."""
    data = _DataSet(seed)
    for opp_id, code in model.EXAMPLE_OPPORTUNITIES:
        data.opportunity(opp_id, model.TYPES[code], data.lead())
    # The example opportunities start where the Bulk Update page's example changes them.
    opps = data.opportunities
    for index, overrides in enumerate(_EXAMPLE_VALUES):
        row = opps[index]
        opps[index] = (*row[:5], json.dumps({**json.loads(row[5]), **overrides}))
    types = list(model.TYPES.values())
    lead_id = ""
    for i in range(count):
        if i % 2 == 0:
            lead_id = data.lead()
        data.opportunity(_uuid(data.rng), types[i % len(types)], lead_id)
    return data.leads, opps


def _loan_extras(opp_id: str, owners: Sequence[str]) -> dict[str, str | None]:
    """The Home Loan fields added later (a user, a multi-select, a type nobody knows), drawn
    from the opportunity's id rather than the random stream: every other value of the data set
    stays what it was."""
    h = int(opp_id.replace("-", "")[-8:], 16)
    documents = [d for i, d in enumerate(model.DOCUMENTS) if h >> i & 1]
    return {
        "mx_Custom_16": owners[(h >> 8) % len(owners)] if h % 4 else None,
        "mx_Custom_17": ";".join(documents) or None,
        "mx_Custom_18": f"BR-{(h >> 12) % 90 + 10}",
    }


class _DataSet:
    """The rows generated so far, and the one random stream they are drawn from: the order of
    the draws is the data, so each row draws its values in a fixed order."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.r = self.rng.random
        self.owners = [u.id for u in model.USERS if u.role != "Administrator"]
        self.stages = {
            code: dict(t.fields_by_name["mx_Custom_2"].dependent_options)
            for code, t in model.TYPES.items()
        }
        self.leads: list[tuple[str, str, str, str, str]] = []
        self.opportunities: list[tuple[Any, ...]] = []
        self.deals = 0  # the AutoId counter of type 12003

    def pick(self, seq: Sequence[str]) -> str:
        return seq[int(self.r() * len(seq))]

    def lead(self) -> str:
        """A new lead; its id."""
        first, last = self.pick(_FIRST), self.pick(_LAST)
        lead_id = _uuid(self.rng)
        email = f"{first}.{last}.{len(self.leads) + 1}@example.org".lower()
        self.leads.append((lead_id, first, last, email, f"+91-9{int(self.r() * 9e8) + 10**8}"))
        return lead_id

    def opportunity(self, opp_id: str, t: model.OpportunityTypeDef, lead_id: str) -> None:
        """A new opportunity of type ``t``: the fields both types have, then the type's own."""
        r, pick = self.r, self.pick
        created = int(r() * _DAYS * 86400)
        modified = created + int(r() * 30 * 86400)
        x = r()
        status = "Open" if x < 0.6 else "Won" if x < 0.8 else "Lost"
        creator = pick(self.owners)
        fields: dict[str, str | None] = {
            "Status": status,
            "mx_Custom_1": f"{pick(_COMPANIES)} {t.name} {len(self.opportunities) + 1}",
            "mx_Custom_2": pick(self.stages[t.code][status]),
            "Owner": pick(self.owners),
            "mx_Custom_6": str((5 + int(r() * 495)) * 1000),
            "mx_Custom_7": str(int(r() * 2000) / 100).removesuffix(".0"),
            "mx_Custom_9": None,
            "mx_Custom_10": pick(_PRIORITIES),
            "mx_Custom_14": pick(_SOURCES),
            "CreatedOn": _stamp(created),
            "ModifiedOn": _stamp(modified),
            "CreatedBy": creator,
            "ModifiedBy": creator,
        }
        auto_id = None
        if t.code == 12000:
            fields["mx_Custom_8"] = _DATES[created // 86400 + 10 + int(r() * 110)]
            fields["mx_Custom_11"] = f"ABCDE{1000 + int(r() * 8999)}F"
            fields["mx_Custom_12"] = "1" if r() < 0.3 else "0"
            fields["mx_Custom_13"] = _stamp(modified)
            fields |= _loan_extras(opp_id, self.owners)
        else:
            self.deals += 1
            auto_id = f"DEAL-{self.deals:06d}"
            fields["mx_Custom_15"] = auto_id
            fields["mx_Custom_8"] = _stamp(modified) if status != "Open" else None
            fields["mx_Custom_11"] = f"+91-8{int(r() * 9e8) + 10**8}"
            fields["mx_Custom_12"] = _DATES[created // 86400 + 365]
            fields["mx_Custom_13"] = "1" if r() < 0.4 else "0"
        self.opportunities.append(
            (opp_id, t.code, auto_id, lead_id, fields["CreatedOn"], json.dumps(fields))
        )
