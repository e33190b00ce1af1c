"""The LeadSquared client: one method per endpoint the tool uses, returning plain values from
``models``; paging and chunking happen inside. How calls are sent, retried and mapped to errors
is ``transport``'s job.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, Unpack

from lsqsync.errors import ApiError, ApiRejected, AuthError
from lsqsync.lsq.models import (
    BulkUpdateItem,
    FieldSettings,
    OpportunityDetails,
    OpportunityRecord,
    OpportunityType,
    RowResult,
    UnexpectedResponse,
    User,
    WhoAmI,
    parse_bulk_results,
    value_text,
)
from lsqsync.lsq.ratelimit import RateLimiter
from lsqsync.lsq.transport import Transport, TransportOptions

log = logging.getLogger(__name__)

T = TypeVar("T")

_OPP = "/v2/OpportunityManagement.svc/"
WHO_AM_I = "/v2/Authentication.svc/UserByAccessKey.Get"
USERS = "/v2/UserManagement.svc/Users.Get"
USER_BY_EMAIL = "/v2/UserManagement.svc/User/Retrieve/ByEmailAddress"
TYPE_METADATA = _OPP + "GetOpportunityTypeMetadata"
DETAILS = _OPP + "GetOpportunityDetails"
BY_IDS = _OPP + "GetOpportunitiesById"
SEARCH = _OPP + "Retrieve/BySearchParameter"
BULK_UPDATE = _OPP + "Bulk/Update/ByOpportunityId"

MAX_BULK_ITEMS = 25
MAX_IDS_PER_CALL = 2000
MAX_PAGE_SIZE = 1000
# The AdvancedSearch examples name Windows time zones ("India Standard Time"); "UTC" is the
# Windows name of UTC, the zone the docs say dates are in.
QUERY_TIME_ZONE = "UTC"

ADMIN_ONLY = "these keys cannot use Opportunity Advanced Search (administrators only)"


class PartialRead(ApiError):
    """Advanced Search ended before it returned every opportunity its ``RecordCount`` names (a
    server that ignores ``PageIndex``, stops early, or lost records while they were read)."""


class SearchRefused(ApiRejected):
    """The keys work, but their user may not use Opportunity Advanced Search (it is for
    administrators only). ``role`` is the user's, when LeadSquared named it."""

    def __init__(self, message: str, *, role: str | None = None, **details: Any) -> None:
        super().__init__(message, **details)
        self.role = role


class LsqClient:
    """A LeadSquared API client for one host and one pair of keys.

    Safe to share between threads. Pass the process's one ``RateLimiter`` (the budget is
    account-wide), or ``None`` for no client-side limit. ``sleep`` is used for retry backoff
    only (tests pass a recorder); ``max_retries`` bounds retries of server errors, connection
    failures and unanswered reads, ``rate_limit_retries`` those of rate-limit refusals.
    ``field_settings``: how the account's values are read (lsqsync.yml's field_types and
    timezone), given to every opportunity type's metadata.
    """

    def __init__(
        self,
        host: str,
        access_key: str,
        secret_key: str,
        *,
        limiter: RateLimiter | None,
        field_settings: FieldSettings | None = None,
        **options: Unpack[TransportOptions],
    ) -> None:
        self._transport = Transport(host, access_key, secret_key, limiter=limiter, **options)
        self.field_settings = field_settings or FieldSettings()
        self._search_refused: SearchRefused | None = None

    @property
    def host(self) -> str:
        return self._transport.host

    @property
    def calls(self) -> int:
        """HTTP calls made through this client so far, retries included."""
        return self._transport.calls

    @property
    def rate_limited(self) -> int:
        """Calls refused for the rate limit so far (429, 403 or 200: any of its forms)."""
        return self._transport.rate_limited

    @property
    def limiter(self) -> RateLimiter:
        return self._transport.limiter

    def __repr__(self) -> str:
        return f"LsqClient(host={self.host!r})"

    def close(self) -> None:
        """Close the HTTP session and the limiter's ledger."""
        self._transport.close()
        self._transport.limiter.close()

    def __enter__(self) -> LsqClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- endpoints -------------------------------------------------------------------------

    def who_am_i(self) -> WhoAmI:
        """The user the keys belong to and the tenant's API host (works on any host)."""
        payload = self._transport.send("GET", WHO_AM_I)
        return self._read(WHO_AM_I, WhoAmI.from_api, payload)

    def users(self) -> list[User]:
        """Every user, active or not (``StatusCode`` 0 = active)."""
        payload = self._transport.send("GET", USERS)
        # Whether Users.Get caps its answer (one client says 200) is UNKNOWN; it has no paging.
        rows = self._read(USERS, _rows, payload)
        return [User.from_api(row) for row in rows if _has(row, "ID", "UserId", "Id")]

    def user_by_email(self, email: str) -> User | None:
        """The active user with this email address, or None (missing *or* inactive: the API
        does not tell them apart)."""
        payload = self._transport.send("GET", USER_BY_EMAIL, params={"emailAddress": email.strip()})
        rows = self._read(USER_BY_EMAIL, _rows, payload)
        found = [row for row in rows if _has(row, "UserId", "ID", "Id")]
        return User.from_api(found[0], active=True) if found else None

    def opportunity_type(self, code: int) -> OpportunityType:
        """The fields of an opportunity type, with their data types and option sets."""
        payload = self.opportunity_type_metadata(code)
        return self._read(
            TYPE_METADATA,
            OpportunityType.from_api,
            payload,
            code=code,
            settings=self.field_settings,
        )

    def opportunity_type_metadata(self, code: int) -> Any:
        """GetOpportunityTypeMetadata's body as LeadSquared sent it (decoded JSON, unparsed):
        what ``lsqsync types pull`` keeps, to be read later by the same parser."""
        return self._transport.send("GET", TYPE_METADATA, params={"code": str(int(code))})

    def opportunity_details(self, opportunity_id: str) -> OpportunityDetails | None:
        """One opportunity with every field. A missing or deleted one is a 500 (ApiRejected,
        ``MXInvalidEntityException``) or, as observed, an empty envelope (None)."""
        payload = self._transport.send("GET", DETAILS, params={"OpportunityId": opportunity_id})
        return self._read(DETAILS, OpportunityDetails.from_api, payload, self.field_settings)

    def opportunities_by_id(
        self, event_code: int, ids: Sequence[str], columns: Sequence[str]
    ) -> list[OpportunityRecord]:
        """The opportunities of type ``event_code`` among ``ids`` with the given columns, in
        calls of at most 2,000 ids. Ids that do not exist (or are of another type) are absent."""
        wanted = list(dict.fromkeys(i.strip() for i in ids if i and i.strip()))
        csv = _columns_csv(columns) or "ProspectActivityId"
        records: list[OpportunityRecord] = []
        texts: dict[str | None, str | None] = {}
        for start in range(0, len(wanted), MAX_IDS_PER_CALL):
            body = {
                "SearchParameters": [
                    {
                        # A string here, unlike the number Bulk Update and Advanced Search take.
                        "EventCode": str(int(event_code)),
                        "ProspectActivityId": wanted[start : start + MAX_IDS_PER_CALL],
                        "Columns": {"Include_CSV": csv},
                    }
                ]
            }
            payload = self._transport.send("POST", BY_IDS, body=body)
            rows = self._read(BY_IDS, _by_id_rows, payload, event_code)
            records.extend(_records(rows, event_code, columns, _BY_ID_KEYS, texts))
        return records

    def search_opportunities(
        self, event_code: int, columns: Sequence[str], page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[OpportunityRecord]:
        """Every opportunity of a type (Opportunity Advanced Search, administrators only),
        oldest first, paging inside until ``RecordCount`` is reached, whatever page size the
        server actually uses. Arguments are checked at once; calls happen as the iterator is
        consumed. Raises PartialRead when the pages end before ``RecordCount`` (never a silent
        short read) and SearchRefused when the keys' user is not an administrator."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1 to {MAX_PAGE_SIZE}")
        # Both id columns: which one a tenant returns is UNKNOWN; whichever is present is used.
        csv = _columns_csv(["OpportunityId", "ProspectOpportunityId", *columns])
        return self._search_pages(int(event_code), csv, list(columns), page_size)

    def count_opportunities(self, event_code: int) -> int:
        """How many opportunities of a type exist (one call)."""
        body = _search_body(int(event_code), "OpportunityId", page_index=1, page_size=1)
        total, _ = self._read(SEARCH, _search_page, self._search(body))
        if total is not None:
            return total
        # A bare-array answer has no RecordCount: count by reading the ids.
        return sum(1 for _ in self.search_opportunities(event_code, []))

    def bulk_update(self, items: Sequence[BulkUpdateItem]) -> list[RowResult]:
        """Write up to 25 opportunities in one call; one RowResult per item, in input order.

        Raises OutcomeUnknown if the request was sent and no answer arrived: nothing is
        retried then, because the caller must find out by re-reading what landed.
        """
        if len(items) > MAX_BULK_ITEMS:
            raise ValueError(f"Bulk Update takes at most {MAX_BULK_ITEMS} items, got {len(items)}")
        if not items:
            return []
        # UNKNOWN whether Bulk Update is one of the "bulk APIs" with their own, lower limit:
        # it draws from the bulk bucket too, the defensive reading (the bucket stays empty
        # until one is configured or a refusal shows one).
        payload = self._transport.send(
            "POST", BULK_UPDATE, body=[i.to_api() for i in items], write=True, bulk=True
        )
        results = parse_bulk_results(payload, len(items))
        unknown = sum(r.outcome == "unknown" for r in results)
        if unknown:
            log.warning("lsq: bulk_update rows_without_result=%d of=%d", unknown, len(items))
        return results

    # -- paging ----------------------------------------------------------------------------

    def _search_pages(
        self, event_code: int, csv: str, columns: list[str], page_size: int
    ) -> Iterator[OpportunityRecord]:
        seen: set[str] = set()
        texts: dict[str | None, str | None] = {}  # see _records
        expected: int | None = None  # RecordCount, as the latest page states it
        page_index = 1
        while True:
            body = _search_body(event_code, csv, page_index=page_index, page_size=page_size)
            total, rows = self._read(SEARCH, _search_page, self._search(body))
            if total is not None:
                expected = _recount(event_code, expected, total, len(seen))
            new = 0
            for record in _records(rows, event_code, columns, _SEARCH_KEYS, texts):
                # Records created while paging can shift a page; never yield one twice.
                if record.id.lower() not in seen:
                    seen.add(record.id.lower())
                    new += 1
                    yield record
            if expected is None:
                # A bare array (seen on a tenant) has no RecordCount: a short page is the only
                # sign of the end there is.
                if len(rows) < page_size or new == 0:
                    if rows and new == 0:
                        log.warning("lsq: search stopped page=%d no_new_rows", page_index)
                    return
            elif len(seen) >= expected:
                return
            elif new == 0:
                # Pages may be shorter than asked (clamped above 1,000, or smaller still): only
                # a page that brings nothing new ends the read, and before RecordCount that is
                # a server that ignores PageIndex or stops early.
                why = "was empty" if not rows else "repeated opportunities already read"
                raise PartialRead(
                    f"read {len(seen):,} of {expected:,} opportunities of type {event_code}; "
                    f"refusing to plan on a partial read (Advanced Search page {page_index} "
                    f"{why}: the server ignores PageIndex or stopped early)",
                    endpoint=SEARCH,
                )
            page_index += 1

    def _search(self, body: dict[str, Any]) -> Any:
        """One Advanced Search call; a refusal that is about the user's role is SearchRefused,
        raised again for every later search without asking (the role does not change)."""
        if self._search_refused is not None:
            raise self._search_refused
        try:
            return self._transport.send("POST", SEARCH, body=body)
        except (AuthError, ApiRejected) as e:
            role = self._refused_role(e)
            if role is None:
                raise
            who = f"; the keys' user is {role!r}" if role else ""
            said = " ".join(str(part) for part in ("HTTP", e.status, e.exception_type) if part)
            if e.exception_message:
                said += f': "{e.exception_message}"'
            self._search_refused = SearchRefused(
                self._transport.redact(f"{ADMIN_ONLY} (LeadSquared answered {said}{who})"),
                role=role or None,
                endpoint=SEARCH,
                status=e.status,
                exception_type=e.exception_type,
                exception_message=e.exception_message,
            )
            raise self._search_refused from None

    def _refused_role(self, error: ApiError) -> str | None:
        """The role of a user refused Advanced Search for it ("" when unknown), or None when
        ``error`` is not such a refusal.

        How LeadSquared refuses a non-administrator is UNKNOWN (the docs say only "accessible to
        Administrator users"). Every plausible form is taken for one: a 403; a 401 although the
        same keys are accepted elsewhere (asked once, of UserByAccessKey.Get: a 401 there too
        means the keys themselves are wrong); an ``MX…`` exception that speaks of permission.
        """
        if isinstance(error, AuthError):
            try:
                me = self.who_am_i()
            except ApiError:
                return None
            return me.user.role
        if error.status == 403 or _PERMISSION.search(
            f"{error.exception_type or ''} {error.exception_message or ''}"
        ):
            return ""
        return None

    # -- the call --------------------------------------------------------------------------

    def _read(self, path: str, parse: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``parse(*args)``, with a body it cannot read reported as an ApiError."""
        try:
            return parse(*args, **kwargs)
        except UnexpectedResponse as e:
            raise ApiError(
                self._transport.redact(
                    f"LeadSquared answered {path} with a body lsqsync cannot read: {e}"
                ),
                endpoint=path,
            ) from None


# -- response shapes -------------------------------------------------------------------------


_PERMISSION = re.compile(
    r"unauthori[sz]|permission|privilege|administrator|not allowed|access denied|forbidden",
    re.IGNORECASE,
)


def _recount(code: int, expected: int | None, total: int, read: int) -> int:
    """The RecordCount to page to, when a page states ``total`` after ``read`` records.

    Oldest first, a record created while paging lands after the pages already read: paging on
    to the larger count reads it, harmless either way. A count that falls means records were
    deleted while paging, which shifts later records onto pages already read — some may never
    be seen, so the read is refused rather than trusted.
    """
    if expected is not None and total < expected:
        raise PartialRead(
            f"read {read:,} of {expected:,} opportunities of type {code}; refusing to plan on "
            f"a partial read (their number fell to {total:,} while they were read: records "
            "deleted meanwhile may have hidden others; run it again)",
            endpoint=SEARCH,
        )
    if expected is not None and total > expected:
        log.info("lsq: search record_count_grew type=%d from=%d to=%d", code, expected, total)
    return total


def _has(row: Any, *keys: str) -> bool:
    return isinstance(row, dict) and any(row.get(k) not in (None, "") for k in keys)


def _rows(payload: Any) -> list[Any]:
    if not isinstance(payload, list):
        raise UnexpectedResponse("expected a JSON array")
    return payload


def _columns_csv(columns: Sequence[str]) -> str:
    clean = []
    for column in columns:
        name = column.strip() if isinstance(column, str) else ""
        if not name or "," in name:
            raise ValueError(f"invalid column name {column!r}")
        clean.append(name)
    return ",".join(dict.fromkeys(clean))


def _search_body(event_code: int, csv: str, *, page_index: int, page_size: int) -> dict[str, Any]:
    condition = {
        "SubConOp": "And",
        "LSO": "ActivityEvent",
        "LSO_Type": "PAEvent",
        "Operator": "eq",
        "RSO": str(event_code),
    }
    # No condition involves a date yet; QueryTimeZone is sent all the same, as every published
    # example does, so that one added later is read in UTC rather than the user's zone.
    advanced = {
        "GrpConOp": "And",
        "Conditions": [{"Type": "Activity", "ConOp": "and", "RowCondition": [condition]}],
        "QueryTimeZone": QUERY_TIME_ZONE,
    }
    return {
        "OpportunityEventCode": event_code,
        "AdvancedSearch": json.dumps(advanced, separators=(",", ":")),
        "Paging": {"PageIndex": page_index, "PageSize": page_size},
        # Oldest first: records created while paging land after the pages already read.
        "Sorting": {"ColumnName": "CreatedOn", "Direction": "0"},
        "Columns": {"Include_CSV": csv},
    }


def _search_page(payload: Any) -> tuple[int | None, list[Any]]:
    """``{"RecordCount": N, "List": [...]}``, or (seen on a tenant) a bare array."""
    if isinstance(payload, list):
        return None, payload
    if not isinstance(payload, dict):
        raise UnexpectedResponse("expected a JSON object with a List")
    rows = payload.get("List")
    if rows is None:
        rows = []
    if not isinstance(rows, list):
        raise UnexpectedResponse("'List' is not an array")
    total = payload.get("RecordCount")
    try:
        count = None if total is None or isinstance(total, bool) else int(total)
    except (TypeError, ValueError):
        count = None
    return count, rows


def _by_id_rows(payload: Any, event_code: int) -> list[Any]:
    """The ``Opportunities`` of the answer's group for ``event_code`` (one group per code)."""
    groups = [payload] if isinstance(payload, dict) else payload
    if not isinstance(groups, list):
        raise UnexpectedResponse("expected a JSON array of groups")
    rows: list[Any] = []
    for group in groups:
        if not isinstance(group, dict):
            continue
        code = group.get("EventCode")
        if code is not None and str(code).strip() != str(event_code):
            continue
        found = group.get("Opportunities")
        if isinstance(found, list):
            rows.extend(found)
    return rows


_BY_ID_KEYS = ("ProspectActivityId", "OpportunityId", "ProspectOpportunityId")
_SEARCH_KEYS = ("OpportunityId", "ProspectOpportunityId", "ProspectActivityId")


def _records(
    rows: Sequence[Any],
    event_code: int,
    columns: Sequence[str],
    id_keys: Sequence[str],
    texts: dict[str | None, str | None],
) -> Iterator[OpportunityRecord]:
    """The records of ``rows``. ``texts``: the values read so far in this read (of many
    pages), so that each distinct value is held once, not once per opportunity (Status,
    Stage, Owner … repeat a lot: at 100,000 opportunities that is tens of MB)."""
    wanted = [c.strip() for c in columns]
    same = texts.setdefault
    for row in rows:
        if not isinstance(row, dict):
            continue
        opp_id = next((str(row[k]) for k in id_keys if row.get(k) not in (None, "")), None)
        if opp_id is None:
            continue
        values = {}
        for c in wanted:
            if c in row:
                text = value_text(row[c])
                values[c] = same(text, text)
        yield OpportunityRecord(opp_id, int(event_code), values)
