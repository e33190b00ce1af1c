"""What an HTTP answer from LeadSquared means: a result, a rate-limit refusal, or a failure of a
kind the transport retries (a server error, no answer) or reports (a verdict on the input, refused
keys, a redirect, an unreadable body)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import requests

from lsqsync.errors import (
    ApiError,
    ApiRejected,
    AuthError,
    OutcomeUnknown,
    ServerError,
)
from lsqsync.lsq.ratelimit import Limit

SNIPPET = 160  # characters of a body that is not JSON, in a message


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as the classifier reads it."""

    status: int
    payload: Any
    is_json: bool
    etype: str | None
    emessage: str | None
    detail: str  # "HTTP 500 MXDuplicateEntryException: …", for messages


@dataclass(frozen=True)
class Ok:
    payload: Any


Kind = Literal["rate_limited", "server", "connect", "no_response", "final"]


@dataclass(frozen=True)
class Failure:
    kind: Kind
    reason: str  # short and grep-friendly, for the retry log line
    error: type[ApiError]
    message: str
    status: int | None = None
    exception_type: str | None = None
    exception_message: str | None = None
    retry_after: float | None = None
    named: Limit | None = None  # the limit a rate-limit refusal named
    evidence: str = ""  # what a rate-limit refusal said, in short


def failure_of(
    call: str, host: str, answer: Answer, response: requests.Response, write: bool
) -> Failure:
    """What an answer that is neither a result nor a rate-limit refusal means. One branch per
    kind of answer, in the order they are told apart; it reads better whole than as helpers that
    each depend on the branches before them."""
    status, payload, etype, detail = answer.status, answer.payload, answer.etype, answer.detail

    def failure(kind: Kind, reason: str, error: type[ApiError], message: str) -> Failure:
        return Failure(kind, reason, error, message, status, etype, answer.emessage)

    if 200 <= status < 300 and not answer.is_json:
        if write:
            return failure(
                "final",
                "unreadable_body",
                OutcomeUnknown,
                f"{call} answered {detail}, which is not JSON: the outcome is unknown "
                "(the changes may or may not have been applied; re-read the records).",
            )
        return failure(
            "final",
            "unreadable_body",
            ApiError,
            f"{call} answered {detail}, which is not JSON.",
        )
    if status == 401:
        return failure(
            "final",
            "http_401",
            AuthError,
            f"LeadSquared refused the keys for {call} ({detail}). Check LSQ_ACCESS_KEY and "
            f"LSQ_SECRET_KEY, and that the host {host} is your account's region "
            "(keys work only on their own region's host).",
        )
    if 300 <= status < 400:
        location = response.headers.get("Location", "")
        return failure(
            "final",
            f"http_{status}",
            ApiRejected,
            f"LeadSquared answered {call} with a redirect ({detail}) to {location!r}. "
            "Redirects are not followed, so the keys never go to another host: set the "
            "host to the URL it redirects to.",
        )
    if status >= 500 or (200 <= status < 300 and is_error_envelope(payload)):
        if etype and etype.strip().startswith("MX"):
            # An MX… exception is LeadSquared's verdict on the input: retrying cannot help.
            return failure(
                "final",
                f"http_{status}",
                ApiRejected,
                f"LeadSquared rejected {call} ({detail}).",
            )
        return failure(
            "server",
            f"http_{status}:{etype or 'no_exception_type'}",
            ServerError,
            f"LeadSquared failed {call} ({detail}).",
        )
    hint = ""
    if status == 403:
        hint = (
            " The user the keys belong to may lack a permission (Opportunity Advanced "
            "Search needs an Administrator)."
        )
    return failure(
        "final", f"http_{status}", ApiRejected, f"LeadSquared rejected {call} ({detail}).{hint}"
    )


def rejects_the_call(status: int | None, exception_type: str | None) -> bool:
    """Whether a refusal is LeadSquared's verdict on a call's content as a whole: an ``MX…``
    exception with a 5xx, or in the error envelope of a 200. For a batch, one bad row may be the
    cause, so splitting the batch isolates it. (A 4xx is about the request itself — its shape,
    its keys, a permission — which no half of the batch would change.)"""
    if status is None or not exception_type or not exception_type.strip().startswith("MX"):
        return False
    return status >= 500 or 200 <= status < 300


def body_snippet(response: requests.Response, redact: Callable[[str], str]) -> str:
    """The start of a body that is not JSON, for a message: the keys are removed *before* it is
    cut or quoted (cut first, a key's start survives; quoted first, its escaped form does)."""
    text = redact(response.content[:2000].decode("utf-8", errors="replace"))
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET else text[:SNIPPET] + "…"


def envelope(payload: Any) -> tuple[str | None, str | None]:
    """``ExceptionType`` and the message of a LeadSquared error envelope, if there is one."""
    if not isinstance(payload, dict):
        return None, None
    etype = payload.get("ExceptionType")
    message = next(
        (
            payload[k]
            for k in ("ExceptionMessage", "Message", "ErrorMessage")
            if isinstance(payload.get(k), str) and payload[k]
        ),
        None,
    )
    return (etype if isinstance(etype, str) and etype else None), message


def is_error_envelope(payload: Any) -> bool:
    status = payload.get("Status") if isinstance(payload, dict) else None
    return isinstance(status, str) and status.strip().lower() == "error"
