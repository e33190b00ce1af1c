"""What the client puts on the wire, and which hosts it accepts."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from lsq_helpers import OTHER_ACCESS_KEY, OTHER_SECRET_KEY, Reply, Serve, StubServer

from lsqsync import __version__, browse
from lsqsync.errors import ConfigError
from lsqsync.lsq import BulkUpdateItem, LsqClient, normalise_host

DOC_EXAMPLE = [
    {
        "ProspectOpportunityId": "4f530c63-4c93-4150-8b8e-83487befb3b2",
        "OpportunityEventCode": 12003,
        "Fields": [
            {"SchemaName": "Status", "Value": "Won"},
            {"SchemaName": "Owner", "Value": "96105aa0-61f2-11ea-8109-022edb41208c"},
        ],
    },
    {
        "ProspectOpportunityId": "c5a7f37c-b789-44c9-929b-74aa6250b539",
        "OpportunityEventCode": 12000,
        "Fields": [{"SchemaName": "mx_Custom_6", "Value": "23500"}],
    },
]


class RecordingSession(requests.Session):
    """A real session that remembers the keyword arguments of every request."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.calls.append(kwargs)
        return super().request(method, url, *args, **kwargs)


def test_bulk_update_sends_the_documented_body_with_keys_in_headers(serve: Serve) -> None:
    ok = {
        "Response": [
            {"RowNumber": 1, "OpportunityUpdated": True},
            {"RowNumber": 2, "OpportunityUpdated": True},
        ]
    }
    stub, client = serve(Reply(body=ok))
    client.bulk_update(
        [
            BulkUpdateItem(
                "4f530c63-4c93-4150-8b8e-83487befb3b2",
                12003,
                {"Status": "Won", "Owner": "96105aa0-61f2-11ea-8109-022edb41208c"},
            ),
            BulkUpdateItem("c5a7f37c-b789-44c9-929b-74aa6250b539", 12000, {"mx_Custom_6": "23500"}),
        ]
    )
    (seen,) = stub.seen
    assert (seen.method, seen.path, seen.query) == (
        "POST",
        "/v2/OpportunityManagement.svc/Bulk/Update/ByOpportunityId",
        {},
    )
    assert seen.json() == DOC_EXAMPLE
    assert isinstance(seen.json()[0]["OpportunityEventCode"], int)
    assert seen.headers["x-LSQ-AccessKey"] == OTHER_ACCESS_KEY
    assert seen.headers["x-LSQ-SecretKey"] == OTHER_SECRET_KEY
    assert seen.headers["Content-Type"] == "application/json; charset=utf-8"
    assert seen.headers["User-Agent"] == f"lsqsync/{__version__}"


def test_reads_send_no_body_and_the_keys_never_go_in_the_url(serve: Serve) -> None:
    stub, client = serve(Reply(body=[]))
    assert client.user_by_email("a@b.c") is None
    (seen,) = stub.seen
    assert (seen.method, seen.body) == ("GET", b"")
    assert seen.query == {"emailAddress": "a@b.c"}
    assert "Content-Type" not in seen.headers
    assert OTHER_ACCESS_KEY not in seen.path + json.dumps(seen.query)


def test_search_and_by_id_bodies(serve: Serve) -> None:
    page = {"RecordCount": 1, "List": [{"OpportunityId": "o1", "Status": "Won"}]}
    stub, client = serve(Reply(body=page))
    records = client.search_opportunities(12003, ["Status", "OpportunityId"], page_size=5)
    assert [r.id for r in records] == ["o1"]
    body = stub.seen[0].json()
    assert json.loads(body.pop("AdvancedSearch")) == {
        "GrpConOp": "And",
        "Conditions": [
            {
                "Type": "Activity",
                "ConOp": "and",
                "RowCondition": [
                    {
                        "SubConOp": "And",
                        "LSO": "ActivityEvent",
                        "LSO_Type": "PAEvent",
                        "Operator": "eq",
                        "RSO": "12003",
                    }
                ],
            }
        ],
        "QueryTimeZone": "UTC",
    }
    assert body == {
        "OpportunityEventCode": 12003,
        "Paging": {"PageIndex": 1, "PageSize": 5},
        "Sorting": {"ColumnName": "CreatedOn", "Direction": "0"},
        "Columns": {"Include_CSV": "OpportunityId,ProspectOpportunityId,Status"},
    }
    groups = [{"EventCode": "12003", "RecordCount": 0, "Opportunities": []}]
    stub, client = serve(Reply(body=groups))
    assert client.opportunities_by_id(12003, ["a", "b"], ["Owner", "Status"]) == []
    assert stub.seen[0].json() == {
        "SearchParameters": [
            {
                "EventCode": "12003",
                "ProspectActivityId": ["a", "b"],
                "Columns": {"Include_CSV": "Owner,Status"},
            }
        ]
    }


def test_every_call_has_a_timeout_and_follows_no_redirect(serve: Serve) -> None:
    session = RecordingSession()
    _, client = serve(Reply(body=[]), session=session, timeout=(2, 9))
    client.users()
    client.user_by_email("x@y.z")
    client.bulk_update([BulkUpdateItem("a", 1, {"b": "c"})])
    assert [(c["timeout"], c["allow_redirects"]) for c in session.calls] == [((2, 9), False)] * 3


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("https://api-in21.leadsquared.com", "https://api-in21.leadsquared.com"),
        ("  https://api-in21.leadsquared.com/ ", "https://api-in21.leadsquared.com"),
        ("HTTPS://api-us11.leadsquared.com//", "https://api-us11.leadsquared.com"),
        # as the docs' host table prints hosts, and as LSQCommonServiceURLs.api names them
        ("https://api-in21.leadsquared.com/v2/", "https://api-in21.leadsquared.com"),
        ("https://api-in21.leadsquared.com/v2", "https://api-in21.leadsquared.com"),
        ("api-in21.leadsquared.com", "https://api-in21.leadsquared.com"),
        (" api-in21.leadsquared.com/v2/ ", "https://api-in21.leadsquared.com"),
        ("api.leadsquared.com/", "https://api.leadsquared.com"),
        ("https://proxy.example.com:8443/", "https://proxy.example.com:8443"),
        ("http://127.0.0.1:9/v2/", "http://127.0.0.1:9"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://127.0.0.1:9/", "http://127.0.0.1:9"),
        ("http://127.5.6.7", "http://127.5.6.7"),
        ("http://[::1]:8000", "http://[::1]:8000"),
    ],
)
def test_accepted_hosts(host: str, expected: str) -> None:
    assert normalise_host(host) == expected


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("http://api-in21.leadsquared.com", "refusing http:// for api-in21.leadsquared.com"),
        ("http://10.0.0.1", "refusing http://"),
        ("http://localhost.evil.com", "refusing http://"),
        ("http://128.0.0.1", "refusing http://"),
        ("ftp://api.leadsquared.com", "must be a host name or a URL starting with https://"),
        ("https://proxy.example.com:8443/lsq/", r"has a path \(/lsq/\) that is not the API's"),
        ("https://api-in21.leadsquared.com/v2/v2/", "has a path"),
        ("api-in21.leadsquared.com/v1", "write it as api-in21.leadsquared.com, https://"),
        ("https://api.leadsquared.com/v2/OpportunityManagement.svc", "has a path"),
        ("", "is empty"),
        ("https://user:secret@api.leadsquared.com", "must not contain a user name or password"),
        ("https://api.leadsquared.com/?accessKey=x", "must not have a query"),
        ("https://api.leadsquared.com:99999", "is not a valid URL"),
        ("https://[::1", "is not a valid URL"),
        ("https://:443", "must be a host name or a URL"),
    ],
)
def test_refused_hosts(host: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        LsqClient(host, OTHER_ACCESS_KEY, OTHER_SECRET_KEY, limiter=None)
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("access", "secret", "message"),
    [
        ("", OTHER_SECRET_KEY, "LSQ_ACCESS_KEY is empty"),
        (OTHER_ACCESS_KEY, "  ", "LSQ_SECRET_KEY is empty"),
        ("tinykey", OTHER_SECRET_KEY, "LSQ_ACCESS_KEY is too short"),
        (OTHER_ACCESS_KEY, "1234567", "LSQ_SECRET_KEY is too short"),
        ("access key with spaces", OTHER_SECRET_KEY, "LSQ_ACCESS_KEY contains"),
        (OTHER_ACCESS_KEY, "secret-\u00e9\u00e9\u00e9\u00e9", "LSQ_SECRET_KEY contains"),
    ],
)
def test_malformed_keys_are_refused_without_echoing_them(
    access: str, secret: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        LsqClient("https://api.leadsquared.com", access, secret, limiter=None)
    for key in (access, secret):
        assert not key.strip() or key not in str(caught.value)


def test_surrounding_whitespace_of_keys_is_dropped() -> None:
    with StubServer(Reply(body=[])) as stub:
        with LsqClient(stub.url, f" {OTHER_ACCESS_KEY}\n", OTHER_SECRET_KEY, limiter=None) as c:
            c.users()
        assert stub.seen[0].headers["x-LSQ-AccessKey"] == OTHER_ACCESS_KEY


def test_repr_shows_only_the_host() -> None:
    client = LsqClient(
        "https://api-in21.leadsquared.com/", OTHER_ACCESS_KEY, OTHER_SECRET_KEY, limiter=None
    )
    assert repr(client) == "LsqClient(host='https://api-in21.leadsquared.com')"
    assert OTHER_ACCESS_KEY not in repr(vars(client))
    assert OTHER_SECRET_KEY not in repr(vars(client))
    client.close()


DOCUMENTED_WHO = {
    "Id": "1a50c565-8525-11ea-a93b-0aa4c559f4ca",
    "Name": "Yogesh",
    "PassPhrase": "sri.sudhan@leadsquared.com",
    "Role": "Administrator",
    "EmailAddress": None,
    "OrgId": "3b1041a3-8374-11e7-8758-0a106ee76b21",
}


@pytest.mark.parametrize(
    ("api", "note"),
    [
        # the same host, named bare or as the docs' table prints it: no hint
        ("127.0.0.1:{port}", False),
        ("http://127.0.0.1:{port}/v2/", False),
        # another host: the hint to set LSQ_HOST to it
        ("api-in21.leadsquared.com", True),
        ("not a host at all", True),
    ],
)
def test_whoami_reads_the_documented_body_and_compares_hosts_without_the_scheme(
    serve: Serve, api: str, note: bool
) -> None:
    stub, client = serve()
    api = api.format(port=client.host.rsplit(":", 1)[1])
    stub.replies = [Reply(body={**DOCUMENTED_WHO, "LSQCommonServiceURLs": {"api": api}})]
    text = browse.whoami(client)
    assert "user:  Yogesh <sri.sudhan@leadsquared.com>\nrole:  Administrator\n" in text
    hint = f"note:  LeadSquared names {api} as this account's API host; set LSQ_HOST to it\n"
    assert text.endswith(hint) is note
