"""Every HTTP exchange with LeadSquared, as the transport saw it, for whoever observes it: the
trace file of ``--trace FILE`` (one JSON line an exchange) and ``doctor`` (the server's clock).

The transport hands observers an `Exchange` whose strings are already scrubbed of the keys. The
trace file masks the values of ``mask:`` fields on top: wherever a body names such a field —
``{"SchemaName": F, "Value": v}`` (Bulk Update, opportunity details), ``{F: v}`` (the rows of a
search or a by-id read) — and, in the texts of the answer to a write, the masked values that
write sent (an error message may quote them).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

from lsqsync.display import MASKED, is_masked
from lsqsync.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Exchange:
    """One attempt of one call: what was sent and what came back (``status`` None: no answer,
    ``error`` says why). Strings hold no key."""

    started: float  # when it was sent, seconds since the epoch
    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    request: Any = None  # the JSON body sent, decoded (None: no body)
    status: int | None = None
    duration: float = 0.0  # seconds until the answer (or the failure)
    response: Any = None  # the body: decoded JSON, else its text; None without an answer
    headers: Mapping[str, str] = field(default_factory=dict)  # of the answer
    error: str | None = None  # why the answer is not a result: a refusal, a failure, none
    attempt: int = 1  # 2 and more: a retry


Observer = Callable[[Exchange], None]


class TraceFile:
    """``--trace FILE``: one JSON line per exchange, written whole and flushed under a lock (the
    applier's workers share it). Created (or truncated) with mode 0600: it holds CRM data."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
        except OSError as e:
            raise ConfigError(f"--trace {path}: cannot write: {e.strerror or e}") from None
        self._file: IO[str] | None = os.fdopen(fd, "w", encoding="utf-8")
        self._lock = threading.Lock()

    def observer(self, mask: Collection[str] = ()) -> Observer:
        """What a transport calls for each exchange: writes it with ``mask``'s fields masked."""
        fields = tuple(mask)
        return lambda exchange: self.write(exchange, fields)

    def write(self, exchange: Exchange, mask: Collection[str] = ()) -> None:
        """Never raises: a trace that cannot be written must not fail the call it records (a
        write that landed would look failed). It stops, with a warning."""
        try:
            line = json.dumps(_line(exchange, mask), ensure_ascii=False, default=str)
        except (TypeError, ValueError) as e:  # pragma: no cover - bodies are decoded JSON
            line = json.dumps({"path": exchange.path, "error": f"not traceable: {e}"})
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write(line + "\n")
                self._file.flush()
            except OSError as e:
                log.warning("trace: stopped writing %s: %s", self.path, e.strerror or e)
                self._close()

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as e:
                log.warning("trace: %s: %s", self.path, e.strerror or e)
            self._file = None


def _line(exchange: Exchange, mask: Collection[str]) -> dict[str, Any]:
    path = exchange.path
    if exchange.query:
        path += "?" + urlencode(dict(exchange.query))
    request = mask_body(exchange.request, mask)
    response = mask_body(exchange.response, mask)
    error = exchange.error
    sent = sorted(masked_values(exchange.request, mask), key=len, reverse=True)
    if sent:
        response = _scrub(response, sent)
        error = None if error is None else _scrub(error, sent)
    return {
        "time": _time(exchange.started),
        "method": exchange.method,
        "path": path,
        "attempt": exchange.attempt,
        "status": exchange.status,
        "duration_ms": round(exchange.duration * 1000, 1),
        "error": error,
        "request": request,
        "response_headers": dict(exchange.headers),
        "response": response,
    }


def _time(epoch: float) -> str:
    """``2026-12-03T09:30:00.123Z``: the state file's UTC stamps, to the millisecond."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


_NAME_KEYS = ("SchemaName", "schemaName", "Attribute", "Key")


def mask_body(body: Any, mask: Collection[str]) -> Any:
    """``body`` with the value of every ``mask:`` field replaced by ``***`` (empty values stay
    empty: they are no secret)."""
    if not mask:
        return body
    if isinstance(body, list):
        return [mask_body(item, mask) for item in body]
    if not isinstance(body, dict):
        return body
    named = next((body[k] for k in _NAME_KEYS if isinstance(body.get(k), str)), None)
    hide_value = named is not None and is_masked(named, mask)
    out: dict[str, Any] = {}
    for key, value in body.items():
        hidden = is_masked(str(key), mask) or (hide_value and key == "Value")
        if hidden and value not in (None, ""):
            out[key] = MASKED
        else:
            out[key] = mask_body(value, mask)
    return out


# Shorter values are not looked for in free text: "12" would be cut out of every number in a
# message. Where such a value has a field's name next to it, `mask_body` masks it anyway.
_MIN_SCRUBBED = 4


def masked_values(request: Any, mask: Collection[str]) -> set[str]:
    """The values a request body sends for ``mask:`` fields (long enough to look for)."""
    found: set[str] = set()
    if not mask:
        return found
    if isinstance(request, list):
        for item in request:
            found |= masked_values(item, mask)
    elif isinstance(request, dict):
        named = next((request[k] for k in _NAME_KEYS if isinstance(request.get(k), str)), None)
        for key, value in request.items():
            if isinstance(value, list | dict):
                found |= masked_values(value, mask)
            elif isinstance(value, str) and len(value.strip()) >= _MIN_SCRUBBED:
                by_key = is_masked(str(key), mask)
                by_name = key == "Value" and named is not None and is_masked(named, mask)
                if by_key or by_name:
                    found.add(value.strip())
    return found


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASKED)
        return value
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, dict):
        return {_scrub(k, secrets): _scrub(v, secrets) for k, v in value.items()}
    return value


# -- the process's trace ---------------------------------------------------------------------

_current: TraceFile | None = None


def install(trace: TraceFile | None) -> None:
    """Make ``trace`` the process's trace (None: no more tracing): every client opened after
    this writes to it."""
    global _current
    _current = trace


def current() -> TraceFile | None:
    return _current
