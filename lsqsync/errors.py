"""The root of the error tree, and the errors that more than one package raises. An error that
belongs to one package subclasses `LsqsyncError` there (``ProjectInvalid`` in
`lsqsync.documents.problems`, ``UnsafePlan`` in `lsqsync.plan.planner`). ``cli.main`` turns
every one into its message and its ``exit_code``; anything else is an unexpected error."""

from __future__ import annotations


class LsqsyncError(Exception):
    """Base of every error lsqsync reports to a user (exit code 1 unless a subclass says so)."""

    exit_code = 1


class ConfigError(LsqsyncError):
    """Bad or missing configuration: host, credentials, options."""


class ApiError(LsqsyncError):
    """LeadSquared answered with an error, or could not be reached.

    ``status`` is the HTTP status (None when no response arrived), ``exception_type`` and
    ``exception_message`` come from the LeadSquared error envelope when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        status: int | None = None,
        exception_type: str | None = None,
        exception_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status
        self.exception_type = exception_type
        self.exception_message = exception_message


class AuthError(ApiError):
    """401: the access key / secret key pair was refused (or the host is the wrong region)."""


class RateLimited(ApiError):
    """429 (or a 403 saying the limit was exceeded) that persisted through every retry."""


class ApiRejected(ApiError):
    """The API gave a verdict on the input: 400, 404, or a 5xx carrying an ``MX…`` exception.

    Retrying the same request cannot succeed.
    """


class ServerError(ApiError):
    """A transient server-side failure (5xx without an ``MX…`` exception) that outlived its
    retries."""


class ConnectionFailed(ApiError):
    """The host could not be reached at all; nothing was sent."""


class OutcomeUnknown(ApiError):
    """The request was sent but no answer arrived (timeout, dropped connection).

    For a write, the change may or may not have landed; the caller must re-read to find out.
    """


class PlanInvalid(LsqsyncError):
    """A plan file that cannot be used: unreadable, not a plan, a format this version cannot
    read, or modified after it was made. The message starts with the file's name."""


class StateError(LsqsyncError):
    """The state file cannot be used: not SQLite, not an lsqsync state file, a schema version
    newer than this lsqsync knows, an unknown or ambiguous run, a wrong lock id."""


class StateLocked(LsqsyncError):
    """Another process holds the state file's lock (the message names the holder and lock id)."""


class PlanRefused(LsqsyncError):
    """A saved plan that cannot be applied as reviewed (another lineage, expired, files
    changed since)."""
