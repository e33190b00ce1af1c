"""HTTP for the LeadSquared client: one session, the rate limiter, retries, typed errors.

How a failure is handled depends on what it says about the request:

=============================================== ===========================================
failure                                         handling
=============================================== ===========================================
over the rate limit, whatever the status (429;  not processed: the limiter learns the limit
``MXAPIRateLimitExceededException``, seen with  the refusal names (the retry waits for its
200 and 403; a message saying the calls         slot), or slows down, widens its margin and
exceeded a limit)                               holds every caller; retry, then RateLimited
connection not established (nothing was sent)   back off, retry, then ConnectionFailed
sent but no answer (timeout, dropped)           write: OutcomeUnknown at once;
                                                read: back off, retry, then OutcomeUnknown
5xx without an ``MX…`` exception                back off, retry, then ServerError
5xx with an ``MX…`` exception, other 4xx        ApiRejected at once (a verdict on the input)
401                                             AuthError at once
=============================================== ===========================================

A 200 whose body is the error envelope ``{"Status":"Error",…}`` is handled like a 500 (unless it
is a rate-limit refusal). Every attempt first passes the rate limiter. The keys travel only in
headers and are scrubbed from every message, log line and repr — and from what observers of the
exchanges (``--trace``, ``doctor``) are given.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypedDict
from urllib.parse import quote, quote_plus, urlsplit

import requests
import requests.adapters
import urllib3.exceptions

from lsqsync import __version__
from lsqsync.errors import (
    ApiError,
    ConfigError,
    ConnectionFailed,
    OutcomeUnknown,
    RateLimited,
)
from lsqsync.lsq.answers import (
    SNIPPET,
    Answer,
    Failure,
    Kind,
    Ok,
    body_snippet,
    envelope,
    failure_of,
    is_error_envelope,
)
from lsqsync.lsq.ratelimit import RateLimiter, Verdict, is_refusal, named_limit
from lsqsync.lsq.trace import Exchange, Observer

log = logging.getLogger(__name__)

# Retry-After is not documented at all; if it ever appears it is honoured, but never for longer
# than this, so a bogus value cannot park a run for hours.
_MAX_RETRY_AFTER = 300.0

# Exceptions that mean the connection was never established, so nothing reached the server.
_NOT_SENT: tuple[type[BaseException], ...] = (
    urllib3.exceptions.NewConnectionError,  # includes NameResolutionError
    urllib3.exceptions.ConnectTimeoutError,
    ConnectionRefusedError,
    socket.gaierror,
)


# How a host may be written: as the docs' host table prints it, as a base URL, or bare.
HOST_FORMS = (
    "api-in21.leadsquared.com, https://api-in21.leadsquared.com or "
    "https://api-in21.leadsquared.com/v2/"
)


def normalise_host(host: str) -> str:
    """The base URL to call: ``https://`` (``http://`` only for loopback), no trailing slash.

    Accepted: a bare host name (``api-in21.leadsquared.com``, as ``LSQCommonServiceURLs.api``
    names it; https is assumed), a base URL, and either with a trailing ``/`` or ``/v2/`` (the
    form of the docs' host table; the client adds ``/v2/`` to every path itself). Any other
    path is refused: the calls would go somewhere no LeadSquared API is.
    """
    text = host.strip()
    example = f"write it as {HOST_FORMS}"
    if not text:
        raise ConfigError(f"the LeadSquared host is empty: set LSQ_HOST or host: ({example})")
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError(f"the LeadSquared host {text!r} is not a valid URL ({example})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"the LeadSquared host {text!r} must be a host name or a URL starting with "
            f"https:// ({example})"
        )
    if "@" in parts.netloc:
        # Never echo it: whatever precedes the @ may be a credential.
        raise ConfigError("the LeadSquared host must not contain a user name or password")
    if parts.query or parts.fragment:
        raise ConfigError(f"the LeadSquared host {text!r} must not have a query or fragment")
    if parts.path.rstrip("/").lower() not in ("", "/v2"):
        raise ConfigError(
            f"the LeadSquared host {text!r} has a path ({parts.path}) that is not the API's "
            f"/v2/: {example}"
        )
    hostname = parts.hostname or ""
    if parts.scheme == "http" and not _is_loopback(hostname):
        raise ConfigError(
            f"refusing http:// for {hostname}: the access keys would cross the network "
            "unencrypted. Use https:// (http:// is accepted only for loopback addresses such "
            "as localhost, 127.0.0.1 or ::1)"
        )
    return f"{parts.scheme}://{parts.netloc}"


def same_api_host(named: str, host: str) -> bool:
    """Whether the API host LeadSquared names (documented as a bare host name, as in
    ``api-in21.leadsquared.com``) is ``host``, the one in use, whatever scheme or ``/v2/``
    either has."""
    try:
        return urlsplit(normalise_host(named)).netloc.lower() == urlsplit(host).netloc.lower()
    except ConfigError:
        return False  # not a host lsqsync could use: callers show it as named


def _is_loopback(hostname: str) -> bool:
    if hostname.rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


# Real keys are 35-40 characters. A short one is a mistake, and could not be scrubbed from
# messages without mangling them, so it is refused.
_MIN_KEY_LENGTH = 8


def _check_key(name: str, value: str) -> str:
    key = value.strip()
    if not key:
        raise ConfigError(f"{name} is empty")
    if len(key) < _MIN_KEY_LENGTH:
        raise ConfigError(f"{name} is too short to be a LeadSquared key")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in key):
        # Header values must be plain ASCII; saying which character is wrong would echo it.
        raise ConfigError(f"{name} contains spaces, control or non-ASCII characters")
    return key


class _Redactor:
    """Scrubs the keys out of any text headed for an exception or a log line."""

    def __init__(self, secrets: Sequence[str]) -> None:
        # The key as sent, URL-encoded, and escaped as JSON or Python would quote it (a server
        # echoing the request may give any of them back).
        variants = {
            v
            for s in secrets
            if s
            for v in (s, quote(s, safe=""), quote_plus(s), json.dumps(s)[1:-1], repr(s)[1:-1])
        }
        # Longest first, so a key containing the other is replaced whole.
        self._variants = sorted(variants, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._variants:
            text = text.replace(secret, "***")
        return text

    def __repr__(self) -> str:
        return "_Redactor(***)"


class TransportOptions(TypedDict, total=False):
    """How a ``Transport`` (and the ``LsqClient`` over it) retries and waits."""

    timeout: tuple[float, float]
    max_retries: int
    rate_limit_retries: int
    backoff_base: float
    backoff_max: float
    sleep: Callable[[float], None]
    session: requests.Session | None
    rng: random.Random | None
    observers: Sequence[Observer]


class Transport:
    """Sends calls for one host and one pair of keys; thread-safe."""

    def __init__(
        self,
        host: str,
        access_key: str,
        secret_key: str,
        *,
        limiter: RateLimiter | None,
        timeout: tuple[float, float] = (5.0, 60.0),
        max_retries: int = 3,
        rate_limit_retries: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
        rng: random.Random | None = None,
        observers: Sequence[Observer] = (),
    ) -> None:
        self.host = normalise_host(host)
        access_key = _check_key("LSQ_ACCESS_KEY", access_key)
        secret_key = _check_key("LSQ_SECRET_KEY", secret_key)
        if max_retries < 0 or rate_limit_retries < 0:
            raise ValueError("retry counts must not be negative")
        if backoff_base < 0 or backoff_max < 0:
            raise ValueError("backoff times must not be negative")
        self.redact = _Redactor((access_key, secret_key))
        self.limiter = limiter or RateLimiter.off()
        self._timeout = timeout
        self._max_retries = max_retries
        self._rate_limit_retries = rate_limit_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._observers = tuple(observers)
        self._session = session if session is not None else _new_session()
        self._calls = 0
        self._rate_limited = 0
        self._calls_lock = threading.Lock()
        self._session.headers.update(
            {
                # Headers, never query parameters: URLs end up in logs and exception texts.
                "x-LSQ-AccessKey": access_key,
                "x-LSQ-SecretKey": secret_key,
                "User-Agent": f"lsqsync/{__version__}",
                "Accept": "application/json",
            }
        )

    def __repr__(self) -> str:
        return f"Transport(host={self.host!r})"

    @property
    def calls(self) -> int:
        """HTTP calls made so far (retries included): what the rate limit counts."""
        return self._calls

    @property
    def rate_limited(self) -> int:
        """Calls refused for the rate limit so far (any of its forms)."""
        return self._rate_limited

    def close(self) -> None:
        self._session.close()

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        write: bool = False,
        bulk: bool = False,
    ) -> Any:
        """One logical call: attempts, retries and error mapping. Returns the decoded JSON.
        ``bulk``: a call of a bulk API, which draws from the bulk bucket too."""
        url = self.host + path
        data = None
        headers = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            headers = {"Content-Type": "application/json; charset=utf-8"}
        failures: dict[Kind, int] = {}
        while True:
            # before the grant: a lesson learned while this call waits for its slot must not
            # make its refusal look like the margin's doing
            lessons = self.limiter.lessons
            self.limiter.acquire(bulk)
            with self._calls_lock:
                self._calls += 1
            attempt = sum(failures.values()) + 1
            result = self._attempt(method, path, url, params, data, headers, write, attempt)
            if isinstance(result, Ok):
                return result.payload
            verdict: Verdict | None = None
            if result.kind == "rate_limited":
                with self._calls_lock:
                    self._rate_limited += 1
                evidence = self.redact(result.evidence)
                verdict = self.limiter.refused(bulk, result.named, evidence, lessons)
            limit = {
                "rate_limited": self._rate_limit_retries,
                "server": self._max_retries,
                "connect": self._max_retries,
                # A write that got no answer is never re-sent: whether it landed is unknown.
                "no_response": 0 if write else self._max_retries,
                "final": 0,
            }[result.kind]
            count = failures[result.kind] = failures.get(result.kind, 0) + 1
            wait = result.retry_after
            if wait is None:
                # A refusal that taught the limit needs no backoff: the limiter now holds the
                # retry until the account's window has room for it. Other refusals back off,
                # but never longer than a window: by then it holds none of the calls before.
                wait = 0.0 if verdict == "learned" else self._backoff(count)
                if verdict is not None and not self.limiter.unlimited:
                    wait = min(wait, self.limiter.window)
            if verdict is not None:
                # Every caller holds off, not just this one: the budget is account-wide (also
                # when this call gives up: the others are still going).
                self.limiter.penalize(wait)
            if count > limit:
                raise self._error(result, path, count)
            log.log(
                logging.INFO if verdict == "learned" else logging.WARNING,
                "lsq: retry endpoint=%s attempt=%d/%d reason=%s wait=%.2fs",
                path,
                count,
                limit + 1,
                self.redact(result.reason),
                wait,
            )
            self._sleep(wait)

    def _backoff(self, failures: int) -> float:
        """Exponential backoff with "equal jitter": between half and all of base·2ⁿ⁻¹."""
        ceiling = min(self._backoff_max, self._backoff_base * 2.0 ** (failures - 1))
        return ceiling * (0.5 + 0.5 * self._rng.random())

    def _error(self, failure: Failure, path: str, attempts: int) -> ApiError:
        message = failure.message
        if attempts > 1:
            message += f" (gave up after {attempts} attempts)"
        return failure.error(
            self.redact(message),
            endpoint=path,
            status=failure.status,
            exception_type=self._redact_opt(failure.exception_type),
            exception_message=self._redact_opt(failure.exception_message),
        )

    def _redact_opt(self, text: str | None) -> str | None:
        return None if text is None else self.redact(text)

    def _attempt(
        self,
        method: str,
        path: str,
        url: str,
        params: Mapping[str, str] | None,
        data: bytes | None,
        headers: Mapping[str, str] | None,
        write: bool,
        attempt: int,
    ) -> Ok | Failure:
        started, clock = time.time(), time.monotonic()
        result, response = self._call(method, path, url, params, data, headers, write)
        if self._observers:
            took = time.monotonic() - clock
            sent = Exchange(
                started, method, path, dict(params or {}), _decoded(data), attempt=attempt
            )
            self._observe(self._answered(sent, took, result, response))
        return result

    def _answered(
        self,
        sent: Exchange,
        duration: float,
        result: Ok | Failure,
        response: requests.Response | None,
    ) -> Exchange:
        """``sent`` with what came back, every string in it scrubbed of the keys."""
        return Exchange(
            sent.started,
            sent.method,
            self.redact(sent.path),
            self._scrub(sent.query),
            self._scrub(sent.request),
            None if response is None else response.status_code,
            duration,
            None if response is None else self._scrub(_decoded(response.content)),
            {} if response is None else self._scrub(dict(response.headers)),
            None if isinstance(result, Ok) else self.redact(f"{result.reason}: {result.message}"),
            sent.attempt,
        )

    def _observe(self, exchange: Exchange) -> None:
        """Tell each observer (the exchange's strings hold no key). An observer's failure is
        logged, never raised: the call it watched has happened (a write may have landed)."""
        for observe in self._observers:
            try:
                observe(exchange)
            except Exception as e:
                log.warning("lsq: observer failed: %s", self.redact(f"{type(e).__name__}: {e}"))

    def _scrub(self, value: Any) -> Any:
        """``value`` (decoded JSON) with the keys removed from every string in it, names
        included."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, list):
            return [self._scrub(v) for v in value]
        if isinstance(value, dict):
            return {self._scrub(str(k)): self._scrub(v) for k, v in value.items()}
        return value

    def _call(
        self,
        method: str,
        path: str,
        url: str,
        params: Mapping[str, str] | None,
        data: bytes | None,
        headers: Mapping[str, str] | None,
        write: bool,
    ) -> tuple[Ok | Failure, requests.Response | None]:
        """Send once: the result, and the answer if one came (None: it did not)."""
        call = f"{method} {path}"
        try:
            response = self._session.request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                timeout=self._timeout,
                # The keys ride in headers that requests would carry to another host.
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as e:
            failure = Failure(
                "final",
                "tls_error",
                ConnectionFailed,
                f"TLS with {self.host} failed for {call} ({_describe_exception(e)}); nothing "
                "was sent. Certificate verification stays on.",
            )
            return failure, None
        except (
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as e:
            if _never_sent(e):
                failure = Failure(
                    "connect",
                    f"connect_error:{type(_root(e)).__name__}",
                    ConnectionFailed,
                    f"could not connect to {self.host} for {call} ({_describe_exception(e)}); "
                    "nothing was sent. Check the host and the network.",
                )
                return failure, None
            timed_out = isinstance(e, requests.exceptions.Timeout)
            why = (
                f"no answer within {self._timeout[1]:g}s"
                if timed_out
                else f"the connection broke: {_describe_exception(e)}"
            )
            outcome = (
                "the changes may or may not have been applied; re-read the records before "
                "sending them again"
                if write
                else "nothing was changed by this read"
            )
            failure = Failure(
                "no_response",
                "read_timeout" if timed_out else f"connection_dropped:{type(_root(e)).__name__}",
                OutcomeUnknown,
                f"{call} was sent but {why}: the outcome is unknown ({outcome}).",
            )
            return failure, None
        except requests.exceptions.RequestException as e:
            # Refused before sending (a malformed URL or header): nothing left this process.
            failure = Failure(
                "final",
                "request_error",
                ConnectionFailed,
                f"could not send {call} to {self.host} ({_describe_exception(e)})",
            )
            return failure, None
        with response:
            return self._classify(call, path, response, write), response

    def _classify(
        self, call: str, path: str, response: requests.Response, write: bool
    ) -> Ok | Failure:
        status = response.status_code
        try:
            payload: Any = json.loads(response.content) if response.content.strip() else None
            is_json = True
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            payload, is_json = None, False
        etype, emessage = envelope(payload)
        ok = 200 <= status < 300 and is_json and not is_error_envelope(payload)
        snippet = "" if is_json else body_snippet(response, self.redact)
        text = f"{emessage or ''} {snippet}"
        if is_refusal(status, etype, "" if ok else text):
            return self._refusal(call, status, etype, emessage, text, response)
        if ok:
            return Ok(payload)
        detail = f"HTTP {status}"
        if 200 <= status < 300 and is_json:
            detail += " with an error body"
        if etype:
            detail += f" {etype}"
        if emessage:
            detail += f": {emessage}"
        if snippet:
            detail += f": {snippet!r}"
        answer = Answer(status, payload, is_json, etype, emessage, detail)
        return failure_of(call, self.host, answer, response, write)

    def _refusal(
        self,
        call: str,
        status: int,
        etype: str | None,
        emessage: str | None,
        text: str,
        response: requests.Response,
    ) -> Failure:
        """A call refused for the rate limit: LeadSquared did not process it."""
        said = " ".join(self.redact(text).split()) or "no message"
        detail = f"HTTP {status}" + (f" {etype}" if etype else "") + f": {said}"
        return Failure(
            "rate_limited",
            f"http_{status}_rate_limited",
            RateLimited,
            f"LeadSquared kept refusing {call} for the account's rate limit ({detail}). "
            "The limit covers every integration using the account: lower rate_limit in "
            "lsqsync.yml, or run when others are quiet.",
            status,
            etype,
            emessage,
            _retry_after(response),
            named_limit(text),
            f"HTTP {status}: {said}"[:SNIPPET],
        )


# -- helpers ---------------------------------------------------------------------------------


def _never_sent(exc: BaseException) -> bool:
    """Whether the connection was never established, so the server cannot have seen the call.
    Anything else (timeouts, resets, broken responses) may have reached it."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    return any(isinstance(e, _NOT_SENT) for e in _chain(exc))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it explicitly wraps (args, urllib3's ``reason``, ``raise from``).
    Implicit ``__context__`` is not followed: it can hold an unrelated, handled error."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        inner = [*e.args, getattr(e, "reason", None), e.__cause__]
        stack.extend(x for x in inner if isinstance(x, BaseException))


def _root(exc: BaseException) -> BaseException:
    root = exc
    for e in _chain(exc):
        root = e
    return root


def _describe_exception(exc: BaseException) -> str:
    """The innermost cause, by type and message: requests' own texts may embed the URL."""
    root = _root(exc)
    text = " ".join(str(root).split())
    return f"{type(root).__name__}: {text}"[:300] if text else type(root).__name__


def _decoded(body: bytes | None) -> Any:
    """A body for observers: its JSON decoded, else its text (None when there is none)."""
    if not body or not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP-date, or garbage: fall back to backoff
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, _MAX_RETRY_AFTER)


def _new_session() -> requests.Session:
    session = requests.Session()
    session.verify = True
    # Room for the applier's worker threads. requests' own retries stay off (its default
    # Retry(0, read=False)): this module decides what may be retried.
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=32)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
