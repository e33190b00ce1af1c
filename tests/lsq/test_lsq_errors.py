"""How answers map to typed errors, and which are retried: against the emulator where it can
produce the case, otherwise against a scripted server on 127.0.0.1."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

import pytest
from lsq_helpers import (
    OTHER_ACCESS_KEY,
    OTHER_SECRET_KEY,
    FakeClock,
    Reply,
    Serve,
    Sleeps,
    api_log,
)

from lsqsync.emulator.server import Emulator
from lsqsync.errors import (
    ApiError,
    ApiRejected,
    AuthError,
    OutcomeUnknown,
    RateLimited,
    ServerError,
)
from lsqsync.lsq import (
    BulkUpdateItem,
    LsqClient,
    PartialRead,
    RateLimiter,
    RowResult,
    SearchRefused,
)

WHO = {"Id": "u1", "EmailAddress": "a@example.com"}
RATE_429 = Reply(
    429,
    {
        "Status": "Error",
        "ExceptionType": "MXAPIRateLimitExceededException",
        "ExceptionMessage": "API calls exceeded the limit of 25 in 5 second(s)",
    },
)
FAULT = Reply(
    500, {"Status": "Error", "ExceptionType": "System.TimeoutException", "ExceptionMessage": "t/o"}
)
ITEM = BulkUpdateItem("o1", 12003, {"Status": "Won"})


def retry_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("lsq: retry ")]


# -- status mapping against the emulator -----------------------------------------------------


def test_wrong_keys_are_an_auth_error_after_one_request(
    make_client: Callable[..., LsqClient], emu: Emulator, sleeps: Sleeps
) -> None:
    client = make_client(access_key=OTHER_ACCESS_KEY, secret_key=OTHER_SECRET_KEY)
    with pytest.raises(AuthError) as caught:
        client.who_am_i()
    error = caught.value
    assert (error.status, error.exception_type) == (401, "MXUnAuthorizedAccessException")
    assert error.endpoint == "/v2/Authentication.svc/UserByAccessKey.Get"
    assert "LSQ_ACCESS_KEY" in str(error)
    assert "LSQ_SECRET_KEY" in str(error)
    assert f"the host {emu.url} is your account's region" in str(error)
    assert [e["status"] for e in api_log(emu.url)] == [401]
    assert sleeps == []


def test_not_found_is_rejected_after_one_request(
    make_client: Callable[..., LsqClient], emu: Emulator, sleeps: Sleeps
) -> None:
    # A path the API does not have (a host with a base path of its own is refused up front).
    client = make_client()
    with pytest.raises(ApiRejected) as caught:
        client._transport.send("GET", "/v2/UserManagement.svc/Users.List")
    error = caught.value
    assert (error.status, error.exception_type) == (404, "MXInvalidAPIException")
    assert error.exception_message == "No API found at '/v2/UserManagement.svc/Users.List'."
    assert error.endpoint == "/v2/UserManagement.svc/Users.List"
    assert [e["status"] for e in api_log(emu.url)] == [404]
    assert sleeps == []


def test_persistent_faults_are_a_server_error_after_every_retry(
    make_client: Callable[..., LsqClient],
    emu: Emulator,
    sleeps: Sleeps,
    caplog: pytest.LogCaptureFixture,
) -> None:
    emu.settings.fault_rate = 1.0
    client = make_client(max_retries=3, backoff_base=1.0)
    with pytest.raises(ServerError) as caught:
        client.bulk_update([ITEM])
    error = caught.value
    assert (error.status, error.exception_type) == (500, "System.TimeoutException")
    assert "gave up after 4 attempts" in str(error)
    assert [e["status"] for e in api_log(emu.url)] == [500] * 4
    assert len(sleeps) == 3
    for n, wait in enumerate(sleeps, start=1):  # equal jitter: half to all of 2ⁿ⁻¹ s
        assert 0.5 * 2 ** (n - 1) <= wait <= 2 ** (n - 1)
    lines = retry_lines(caplog)
    assert [line.split(" wait=")[0] for line in lines] == [
        f"lsq: retry endpoint=/v2/OpportunityManagement.svc/Bulk/Update/ByOpportunityId "
        f"attempt={n}/4 reason=http_500:System.TimeoutException"
        for n in (1, 2, 3)
    ]


def test_occasional_faults_are_retried_until_the_call_succeeds(
    make_client: Callable[..., LsqClient], emu: Emulator, sleeps: Sleeps
) -> None:
    emu.settings.fault_rate = 0.5
    client = make_client(max_retries=30, backoff_base=0.0)
    assert [client.who_am_i().user.name for _ in range(12)] == ["Ada Admin"] * 12
    statuses = [e["status"] for e in api_log(emu.url)]
    assert statuses.count(200) == 12
    assert statuses.count(500) == len(sleeps) == len(statuses) - 12


# -- scripted answers the emulator cannot give -----------------------------------------------


def test_transient_errors_then_success(serve: Serve, sleeps: Sleeps) -> None:
    stub, client = serve(FAULT, Reply(503, b"<html>Service Unavailable</html>"), Reply(body=WHO))
    assert client.who_am_i().user.id == "u1"
    assert len(stub.seen) == 3
    assert len(sleeps) == 2


def test_every_attempt_passes_the_limiter(serve: Serve, sleeps: Sleeps) -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, 10.0, margin=0.5, clock=clock, sleep=clock.sleep)
    stub, client = serve(FAULT, FAULT, Reply(body=WHO), limiter=limiter)
    assert client.who_am_i().user.id == "u1"
    assert len(stub.seen) == 3
    # two attempts fit the budget of 2 per 10.5 s; the third waited for the first slot
    assert clock.sleeps == [10.5]
    assert len(sleeps) == 2


def test_429_honours_retry_after_and_holds_the_shared_limiter(
    serve: Serve, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    limiter = RateLimiter(25, 5.0, clock=clock, sleep=clock.sleep)
    stub, client = serve(Reply(429, b"", {"Retry-After": "2"}), Reply(body=WHO), limiter=limiter)
    assert client.who_am_i().user.id == "u1"
    assert len(stub.seen) == 2
    assert sleeps == [2.0]
    assert clock.sleeps == [2.0]  # the limiter held the next acquisition for the penalty
    assert limiter.margin == pytest.approx(0.2)  # and widened its margin from 0.1 s
    assert retry_lines(caplog) == [
        "lsq: retry endpoint=/v2/Authentication.svc/UserByAccessKey.Get attempt=1/7 "
        "reason=http_429_rate_limited wait=2.00s"
    ]


def test_429_with_an_mx_exception_is_a_rate_limit_not_a_verdict(
    serve: Serve, sleeps: Sleeps
) -> None:
    stub, client = serve(RATE_429, RATE_429, Reply(body=WHO), rng=random.Random(7))
    assert client.who_am_i().user.id == "u1"
    assert len(stub.seen) == 3
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 1.0
    assert 1.0 <= sleeps[1] <= 2.0


def test_429_that_persists_is_rate_limited(serve: Serve, sleeps: Sleeps) -> None:
    stub, client = serve(RATE_429, rate_limit_retries=2)
    with pytest.raises(RateLimited) as caught:
        client.users()
    error = caught.value
    assert (error.status, error.exception_type) == (429, "MXAPIRateLimitExceededException")
    assert "rate limit" in str(error)
    assert "gave up after 3 attempts" in str(error)
    assert len(stub.seen) == 3
    assert len(sleeps) == 2


def test_a_429_that_gives_up_still_holds_the_other_threads_and_widens_the_margin(
    serve: Serve,
) -> None:
    clock = FakeClock()
    limiter = RateLimiter(25, 5.0, clock=clock, sleep=clock.sleep)
    _, client = serve(Reply(429, b"", {"Retry-After": "3"}), limiter=limiter, rate_limit_retries=0)
    with pytest.raises(RateLimited):
        client.users()
    assert limiter.margin == 0.2  # doubled from 0.1
    limiter.acquire()  # another thread's next call waits out the server's Retry-After
    assert clock.sleeps == [3.0]


@pytest.mark.parametrize("retry_after", ["soon", "-5", "nan", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_unusable_retry_after_falls_back_to_backoff(
    serve: Serve, sleeps: Sleeps, retry_after: str
) -> None:
    _, client = serve(
        Reply(429, b"", {"Retry-After": retry_after}), Reply(body=WHO), backoff_base=0.4
    )
    client.who_am_i()
    assert len(sleeps) == 1
    assert 0.2 <= sleeps[0] <= 0.4


def test_huge_retry_after_is_capped(serve: Serve, sleeps: Sleeps) -> None:
    _, client = serve(Reply(429, b"", {"Retry-After": "86400"}), Reply(body=WHO))
    client.who_am_i()
    assert sleeps == [300.0]


def test_403_saying_the_limit_was_exceeded_is_a_rate_limit(serve: Serve, sleeps: Sleeps) -> None:
    json_403 = Reply(403, {"Message": "API calls exceeded the limit of 20 in 5 second(s)"})
    text_403 = Reply(403, b"Rate limit exceeded, slow down", {"Content-Type": "text/plain"})
    stub, client = serve(json_403, text_403, Reply(body=WHO))
    assert client.who_am_i().user.id == "u1"
    assert len(stub.seen) == 3
    assert len(sleeps) == 2


RATE_200 = Reply(
    200, {**RATE_429.body, "ExceptionMessage": "API calls exceeded the limit of 20 in 5 second(s)"}
)


@pytest.mark.parametrize(
    "refusal",
    [RATE_200, Reply(403, {"Message": "API calls exceeded the limit of 20 in 5 second(s)"}),
     Reply(429, RATE_200.body)],
    ids=["200", "403", "429"],
)  # fmt: skip
def test_a_refusal_in_any_form_teaches_the_limit_and_is_retried_at_its_pace(
    serve: Serve, sleeps: Sleeps, refusal: Reply, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    limiter = RateLimiter(25, 5.0, kind="assumed", clock=clock, sleep=clock.sleep)
    stub, client = serve(refusal, Reply(body=WHO), limiter=limiter)
    assert client.who_am_i().user.id == "u1"
    assert len(stub.seen) == 2
    assert (limiter.calls, limiter.per_seconds) == (20, 5.0)
    assert sleeps == [0.0]  # no backoff: the limiter paces the retry
    assert client.rate_limited == 1
    assert limiter.budgets()["account"].endswith(
        f"HTTP {refusal.status}: API calls exceeded the limit of 20 in 5 second(s))"
    )
    (line,) = [r for r in caplog.records if r.getMessage().startswith("lsq: retry ")]
    assert line.levelno == logging.INFO  # a lesson, not a warning


def test_a_200_refusal_that_persists_is_rate_limited_never_rejected(
    serve: Serve, sleeps: Sleeps
) -> None:
    stub, client = serve(RATE_200, rate_limit_retries=2)
    with pytest.raises(RateLimited) as caught:
        client.bulk_update([ITEM])
    error = caught.value
    assert (error.status, error.exception_type) == (200, "MXAPIRateLimitExceededException")
    assert str(error).startswith(
        "LeadSquared kept refusing POST /v2/OpportunityManagement.svc/Bulk/Update/ByOpportunityId "
        "for the account's rate limit (HTTP 200 MXAPIRateLimitExceededException: API calls "
        "exceeded the limit of 20 in 5 second(s)). The limit covers every integration using the "
        "account: lower rate_limit in lsqsync.yml, or run when others are quiet. (gave up after 3"
    )
    assert len(stub.seen) == 3


def test_a_value_over_a_length_limit_is_a_verdict_not_a_refusal(
    serve: Serve, sleeps: Sleeps
) -> None:
    message = "mx_Custom_9 exceeds the maximum length limit"
    too_long = Reply(500, {"Status": "Error", "ExceptionType": "MXInvalidDataTypeException",
                           "ExceptionMessage": message})  # fmt: skip
    stub, client = serve(too_long)
    with pytest.raises(ApiRejected):
        client.bulk_update([ITEM])
    assert len(stub.seen) == 1
    assert client.rate_limited == 0


def test_a_bulk_update_refusal_below_the_known_limit_is_learned_for_the_bulk_bucket(
    serve: Serve,
) -> None:
    clock = FakeClock()
    limiter = RateLimiter(20, 5.0, kind="learned", clock=clock, sleep=clock.sleep)
    bulk_refusal = Reply(200, {**RATE_200.body, "ExceptionMessage": "API calls exceeded the "
                               "limit of 5 in 5 second(s)"})  # fmt: skip
    ok = Reply(body={"Response": [{"RowNumber": 1, "OpportunityUpdated": True}]})
    _, client = serve(bulk_refusal, ok, limiter=limiter)
    assert client.bulk_update([ITEM])[0].outcome == "applied"
    assert limiter.calls == 20
    assert limiter.budgets()["bulk"].startswith("5 calls per 5 s (learned ")


def test_other_403_is_rejected_at_once(serve: Serve, sleeps: Sleeps) -> None:
    denied = Reply(
        403,
        {"Status": "Error", "ExceptionType": "MXAccessDenied", "ExceptionMessage": "Only admins"},
    )
    stub, client = serve(denied)
    with pytest.raises(ApiRejected, match="Only admins") as caught:
        client.users()
    assert caught.value.status == 403
    assert "Administrator" in str(caught.value)
    assert len(stub.seen) == 1
    assert sleeps == []
    # from Advanced Search, it is the refusal of a user who is no administrator
    with pytest.raises(SearchRefused, match="Only admins") as refused:
        list(client.search_opportunities(12003, []))
    assert str(refused.value).startswith(
        "these keys cannot use Opportunity Advanced Search (administrators only) "
        '(LeadSquared answered HTTP 403 MXAccessDenied: "Only admins")'
    )
    assert len(stub.seen) == 2


@pytest.mark.parametrize("status", [400, 404, 405])
def test_client_errors_are_rejected_at_once(serve: Serve, sleeps: Sleeps, status: int) -> None:
    stub, client = serve(Reply(status, b"Bad thing happened", {"Content-Type": "text/plain"}))
    with pytest.raises(ApiRejected) as caught:
        client.users()
    error = caught.value
    assert (error.status, error.exception_type, error.exception_message) == (status, None, None)
    assert f"(HTTP {status}: 'Bad thing happened')" in str(error)
    assert len(stub.seen) == 1
    assert sleeps == []


def test_non_json_server_errors_are_retried_then_a_server_error(
    serve: Serve, sleeps: Sleeps
) -> None:
    html = Reply(
        502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", {"Content-Type": "text/html"}
    )
    stub, client = serve(html, max_retries=2)
    with pytest.raises(ServerError) as caught:
        client.users()
    assert caught.value.status == 502
    assert "502 Bad Gateway" in str(caught.value)
    assert len(stub.seen) == 3
    assert len(sleeps) == 2


def test_mx_exception_in_a_500_is_rejected_at_once(serve: Serve, sleeps: Sleeps) -> None:
    mx = Reply(
        500,
        {
            "Status": "Error",
            "ExceptionType": "MXDuplicateEntryException",
            "ExceptionMessage": "dup",
        },
    )
    stub, client = serve(mx)
    with pytest.raises(ApiRejected) as caught:
        client.users()
    assert (caught.value.exception_type, caught.value.exception_message) == (
        "MXDuplicateEntryException",
        "dup",
    )
    assert len(stub.seen) == 1
    assert sleeps == []


def test_error_envelope_with_http_200_is_an_error(serve: Serve) -> None:
    mx = Reply(
        200,
        {"Status": "Error", "ExceptionType": "MXInvalidInputException", "ExceptionMessage": "bad"},
    )
    stub, client = serve(mx)
    with pytest.raises(
        ApiRejected, match=r"HTTP 200 with an error body MXInvalidInputException: bad"
    ):
        client.bulk_update([ITEM])
    assert len(stub.seen) == 1


def test_error_envelope_with_http_200_and_no_mx_exception_is_retried(
    serve: Serve, sleeps: Sleeps
) -> None:
    other = Reply(
        200, {"Status": "Error", "ExceptionType": "System.Exception", "ExceptionMessage": "boom"}
    )
    stub, client = serve(other, Reply(body=WHO))
    assert client.who_am_i().user.id == "u1"
    assert len(stub.seen) == 2
    assert len(sleeps) == 1


def test_redirects_are_not_followed(serve: Serve) -> None:
    moved = Reply(
        301, b"", {"Location": "https://elsewhere.example.com/v2/UserManagement.svc/Users.Get"}
    )
    stub, client = serve(moved)
    with pytest.raises(ApiRejected, match="set the host to the URL it redirects to") as caught:
        client.users()
    assert "elsewhere.example.com" in str(caught.value)
    assert len(stub.seen) == 1


def test_a_read_answered_with_something_other_than_json_is_an_api_error(serve: Serve) -> None:
    stub, client = serve(Reply(200, b"<html>login</html>"))
    with pytest.raises(ApiError, match="which is not JSON") as caught:
        client.users()
    assert type(caught.value) is ApiError
    assert len(stub.seen) == 1


def test_a_write_answered_with_something_other_than_json_has_an_unknown_outcome(
    serve: Serve,
) -> None:
    stub, client = serve(Reply(200, b"<html>login</html>"))
    with pytest.raises(OutcomeUnknown, match="the outcome is unknown"):
        client.bulk_update([ITEM])
    assert len(stub.seen) == 1


@pytest.mark.parametrize(
    ("method", "body", "message"),
    [
        ("opportunity_type", {"Fields": "x"}, "'Fields' is not an array"),
        ("search", {"List": {}}, "'List' is not an array"),
        ("users", "text", "expected a JSON array"),
        ("who_am_i", [], "expected a JSON object"),
        ("by_id", "text", "expected a JSON array of groups"),
    ],
)
def test_bodies_of_an_unexpected_shape_are_an_api_error(
    serve: Serve, method: str, body: Any, message: str
) -> None:
    _, client = serve(Reply(body=body))
    calls: dict[str, Callable[[], object]] = {
        "opportunity_type": lambda: client.opportunity_type(12003),
        "search": lambda: list(client.search_opportunities(12003, [])),
        "users": client.users,
        "who_am_i": client.who_am_i,
        "by_id": lambda: client.opportunities_by_id(12003, ["a"], ["Status"]),
    }
    with pytest.raises(ApiError, match=message) as caught:
        calls[method]()
    assert type(caught.value) is ApiError
    assert caught.value.endpoint.startswith("/v2/")


# -- bulk update results in shapes the emulator does not produce -----------------------------


def test_bulk_results_from_a_bare_array_with_a_missing_row(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [
        {"RowNumber": 3, "OpportunityUpdated": True, "ExceptionType": None},
        {"RowNumber": 1, "OpportunityUpdated": False, "Message": "Invalid Owner"},
    ]
    _, client = serve(Reply(body=rows))
    results = client.bulk_update(
        [ITEM, BulkUpdateItem("o2", 12003, {"Status": "Lost"}), BulkUpdateItem("o3", 12003, {})]
    )
    assert results == [
        RowResult(1, "failed", None, "Invalid Owner"),
        RowResult(2, "unknown", None, "the response has no result for this row"),
        RowResult(3, "applied"),
    ]
    assert "lsq: bulk_update rows_without_result=1 of=3" in caplog.text


def test_bulk_results_missing_entirely_are_unknown(serve: Serve) -> None:
    _, client = serve(Reply(body={"Status": "Success"}))
    assert [r.outcome for r in client.bulk_update([ITEM, ITEM])] == ["unknown", "unknown"]


# -- paging against answers in other shapes ---------------------------------------------------


def test_search_reads_bare_array_pages_until_a_short_one(serve: Serve) -> None:
    def page(start: int, n: int) -> Reply:
        return Reply(
            body=[
                {"ProspectOpportunityId": f"o{i}", "Status": "Open"}
                for i in range(start, start + n)
            ]
        )

    stub, client = serve(page(0, 3), page(3, 3), page(6, 1))
    records = list(client.search_opportunities(12003, ["Status"], page_size=3))
    assert [r.id for r in records] == [f"o{i}" for i in range(7)]
    assert [s.json()["Paging"] for s in stub.seen] == [
        {"PageIndex": i, "PageSize": 3} for i in (1, 2, 3)
    ]


def test_count_without_a_record_count_reads_the_ids(serve: Serve) -> None:
    stub, client = serve(Reply(body=[{"OpportunityId": "o1"}]))
    assert client.count_opportunities(12003) == 1
    assert len(stub.seen) == 2


def ids_page(start: int, n: int, total: int | None) -> Reply:
    rows = [{"OpportunityId": f"o{i}"} for i in range(start, start + n)]
    return Reply(body=rows if total is None else {"RecordCount": total, "List": rows})


def test_search_pages_on_until_the_record_count_whatever_the_page_size(serve: Serve) -> None:
    # asked for 1,000 a page, the server clamps to 500: the first short page is not the end
    stub, client = serve(
        ids_page(0, 500, 1200), ids_page(500, 500, 1200), ids_page(1000, 200, 1200)
    )
    records = list(client.search_opportunities(12003, []))
    assert [r.id for r in records] == [f"o{i}" for i in range(1200)]
    assert [s.json()["Paging"] for s in stub.seen] == [
        {"PageIndex": i, "PageSize": 1000} for i in (1, 2, 3)
    ]


def test_a_search_that_stops_early_is_refused_not_planned_on(serve: Serve) -> None:
    stub, client = serve(ids_page(0, 500, 1200), ids_page(0, 0, 1200))
    with pytest.raises(PartialRead) as caught:
        list(client.search_opportunities(12003, []))
    assert str(caught.value).startswith(
        "read 500 of 1,200 opportunities of type 12003; refusing to plan on a partial read "
        "(Advanced Search page 2 was empty"
    )
    assert caught.value.exit_code == 1
    assert len(stub.seen) == 2


def test_a_server_that_ignores_the_page_index_is_refused(serve: Serve) -> None:
    stub, client = serve(ids_page(0, 2, 100))
    with pytest.raises(PartialRead, match=r"read 2 of 100 .* page 2 repeated opportunities"):
        list(client.search_opportunities(12003, [], page_size=2))
    assert len(stub.seen) == 2


def test_a_record_count_that_falls_while_paging_is_refused(serve: Serve) -> None:
    # a record deleted from page 1 shifts the first of page 2 onto page 1: never seen
    _, client = serve(ids_page(0, 3, 7), ids_page(4, 3, 6))
    with pytest.raises(PartialRead, match="their number fell to 6 while they were read"):
        list(client.search_opportunities(12003, [], page_size=3))


def test_records_created_while_paging_are_read_too(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    _, client = serve(ids_page(0, 3, 5), ids_page(3, 3, 6))
    assert len(list(client.search_opportunities(12003, [], page_size=3))) == 6
    assert "lsq: search record_count_grew type=12003 from=5 to=6" in caplog.text


def test_a_bare_array_page_repeated_ends_the_read_with_a_warning(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    _, client = serve(ids_page(0, 2, None))
    assert [r.id for r in client.search_opportunities(12003, [], page_size=2)] == ["o0", "o1"]
    assert "lsq: search stopped page=2 no_new_rows" in caplog.text


ADMIN_ONLY_401 = Reply(
    401,
    {"Status": "Error", "ExceptionType": "MXUnAuthorizedAccessException",
     "ExceptionMessage": "Not authorized"},
)  # fmt: skip


def test_a_401_from_search_with_keys_that_work_is_the_role(serve: Serve) -> None:
    stub, client = serve(ADMIN_ONLY_401, Reply(body={**WHO, "Role": "Sales_User"}))
    with pytest.raises(SearchRefused) as caught:
        client.count_opportunities(12003)
    assert str(caught.value) == (
        "these keys cannot use Opportunity Advanced Search (administrators only) (LeadSquared "
        'answered HTTP 401 MXUnAuthorizedAccessException: "Not authorized"; the keys\' user is '
        "'Sales_User')"
    )
    assert (caught.value.role, caught.value.status) == ("Sales_User", 401)
    assert [s.path for s in stub.seen] == [
        "/v2/OpportunityManagement.svc/Retrieve/BySearchParameter",
        "/v2/Authentication.svc/UserByAccessKey.Get",
    ]
    # the role does not change: later searches are refused without asking again
    with pytest.raises(SearchRefused):
        list(client.search_opportunities(12000, []))
    assert len(stub.seen) == 2


def test_a_401_from_search_with_keys_refused_everywhere_is_the_keys(serve: Serve) -> None:
    _, client = serve(ADMIN_ONLY_401)
    with pytest.raises(AuthError, match="Check LSQ_ACCESS_KEY"):
        list(client.search_opportunities(12003, []))


@pytest.mark.parametrize(
    ("exception", "refused"),
    [
        (("MXInsufficientPrivilegeException", "No."), True),
        (("MXException", "You do not have permission to perform this action"), True),
        (("MXInvalidInputException", "'AdvancedSearch' is not valid"), False),
    ],
)
def test_an_mx_refusal_speaking_of_permission_is_the_role(
    serve: Serve, exception: tuple[str, str], refused: bool
) -> None:
    etype, message = exception
    body = {"Status": "Error", "ExceptionType": etype, "ExceptionMessage": message}
    _, client = serve(Reply(500, body))
    with pytest.raises(ApiRejected) as caught:
        list(client.search_opportunities(12003, []))
    assert isinstance(caught.value, SearchRefused) is refused


def test_by_id_accepts_a_single_group_object_and_skips_other_codes(serve: Serve) -> None:
    body = [
        {"EventCode": "12000", "Opportunities": [{"ProspectActivityId": "x"}]},
        {
            "EventCode": "12003",
            "Opportunities": [{"ProspectActivityId": "a", "Status": 1}, {"NoId": True}],
        },
    ]
    _, client = serve(Reply(body=body), Reply(body=body[1]))
    first = client.opportunities_by_id(12003, ["a", "x"], ["Status"])
    second = client.opportunities_by_id(12003, ["a"], ["Status"])
    assert [(r.id, dict(r.values)) for r in first] == [("a", {"Status": "1"})]
    assert first == second


def test_retries_are_logged_as_warnings(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    _, client = serve(FAULT, Reply(body=WHO))
    client.who_am_i()
    (record,) = [r for r in caplog.records if r.name == "lsqsync.lsq.transport"]
    assert record.levelno == logging.WARNING
