"""``lsqsync apply PLAN``: the I/O around the apply engine — the plan file, the state and its
lock, the client, the workers, Ctrl-C — and the run's summary."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from lsqsync.apply import engine as apply
from lsqsync.clock import parse_stamp
from lsqsync.config import Config, connection_from_env, inside_project, load_config
from lsqsync.errors import ConfigError, PlanRefused, RateLimited
from lsqsync.lsq import LsqClient, OpportunityType
from lsqsync.plan import planfile
from lsqsync.plan.model import Plan
from lsqsync.state import records as state
from lsqsync.state.location import open_client, open_state
from lsqsync.state.store import StateFile

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ApplyOptions:
    workers: int = 4
    lock_timeout: float = 0.0
    lock_expiry: float | None = 3600.0
    ignore_rule_changes: bool = False


@dataclass(frozen=True)
class ApplySummary:
    run_id: str
    outcome: str
    counts: dict[str, int]
    opportunities: int
    calls: int
    rate_limited: int
    seconds: float
    runs_since: tuple[str, ...]
    interrupted: bool = False
    budgets: tuple[tuple[str, str], ...] = ()  # (bucket, its limit and where it comes from)

    @property
    def clean(self) -> bool:
        return not any(self.counts.get(s, 0) for s in ("failed", "stale", "unknown", "not_sent"))

    def text(self) -> str:
        c = self.counts
        not_sent = f", not sent: {c['not_sent']}" if c.get("not_sent") else ""
        lines = [
            f"Run {self.run_id}: {self.outcome}.",
            f"  applied: {c.get('applied', 0)}, already current: {c.get('already_current', 0)}, "
            f"stale: {c.get('stale', 0)}, failed: {c.get('failed', 0)}, "
            f"unknown: {c.get('unknown', 0)}{not_sent} (fields of {self.opportunities} "
            "opportunities)",
            f"  {self.calls} API calls ({self.rate_limited} refused for the rate limit) in "
            f"{self.seconds:.1f} s",
        ]
        lines += [
            f"  {'rate limit' if bucket == 'account' else 'bulk limit'}: {text}"
            for bucket, text in self.budgets
        ]
        if self.runs_since:
            lines.append(
                "  runs since the plan was made: "
                + ", ".join(self.runs_since)
                + " (each field was checked against LeadSquared before writing)"
            )
        if not_sent:
            lines.append(
                "  LeadSquared kept refusing calls for the account's rate limit: apply the same "
                "plan again to send the fields not sent"
            )
        if not self.clean:
            lines.append(f"  details: lsqsync state show {self.run_id}")
        return "\n".join(lines) + "\n"


def _current_files(root: Path, names: Iterable[str]) -> dict[str, str | None]:
    """The sha256 of each of the plan's files (named relative to the project folder) as it is
    now; None for one that is gone or that names a place outside the project (never read)."""
    out: dict[str, str | None] = {}
    for name in names:
        path = inside_project(root, name)
        out[name] = None
        if isinstance(path, Path) and path.is_file():
            with contextlib.suppress(OSError):
                out[name] = planfile.file_sha256(path)
    return out


def _target_host(config: Config) -> str | None:
    """The host apply would write to; None when it is not set or keys are missing (opening the
    client says why, after the plan's own refusals)."""
    try:
        return connection_from_env(default_host=config.host).host
    except ConfigError:
        return None


def apply_plan_file(
    plan_path: Path,
    config_path: Path | None,
    options: ApplyOptions,
    progress: Progress | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ApplySummary:
    plan = planfile.load(plan_path)
    config = load_config(config_path)
    with open_state(config) as st:
        reasons = apply.refusals(
            plan.state_lineage,
            st.lineage,
            parse_stamp(plan.expires_at),
            now(),
            plan.inputs.files,
            _current_files(config.root, plan.inputs.files),
            options.ignore_rule_changes,
            (plan.inputs.host, _target_host(config)),
        )
        if reasons:
            raise PlanRefused(f"{plan_path}: refused: " + "; ".join(reasons))
        lock = st.acquire_lock("apply", timeout=options.lock_timeout, expiry=options.lock_expiry)
        try:
            flags = (
                ("--ignore-rule-changes", options.ignore_rule_changes),
                ("--allow-large", plan.inputs.allow_large),
            )
            overrides = [name for name, on in flags if on]
            since = tuple(r.id for r in st.runs_since(plan.state_serial or 0))
            run = st.begin_run(plan.digest, overrides=overrides)
            with open_client(config) as client:
                try:
                    return _run(plan, config, client, st, run.id, options, since, progress)
                except KeyboardInterrupt:  # before any batch was sent: nothing in flight
                    run = st.finish_run(run.id, "interrupted")
                    return _summary(run, len(plan.changes), None, (0, 0, 0.0), since)
                except Exception:
                    # e.g. the keys refused during the re-read: the run ends "failed" with the
                    # results it recorded, instead of looking as if it were still running
                    st.finish_run(run.id, "failed")
                    raise
        finally:
            st.release_lock(lock.id)


def _run(
    plan: Plan,
    config: Config,
    client: LsqClient,
    st: StateFile,
    run_id: str,
    options: ApplyOptions,
    since: tuple[str, ...],
    progress: Progress | None,
) -> ApplySummary:
    say = progress or (lambda _: None)
    started, calls_before, refused_before = time.monotonic(), client.calls, client.rate_limited
    say(f"re-reading {len(plan.changes):,} opportunities")
    # The type metadata and every chunk of the re-read go out together: none needs another's
    # answer, and one round trip before the first write is all the latency the run pays.
    pool = ThreadPoolExecutor(max_workers=max(1, options.workers))
    try:
        metadata = {
            code: pool.submit(client.opportunity_type, code)
            for code in sorted({c.opportunity_type for c in plan.changes})
        }
        current = apply.read_current(client, plan.changes, pool)
        types: dict[int, OpportunityType] = {code: f.result() for code, f in metadata.items()}
    except BaseException:
        # Ctrl-C or a failed read: drop the reads not yet started rather than wait for them
        # (the ones in flight finish on their own; reads change nothing).
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    fresh = apply.check_freshness(
        plan.changes,
        current,
        types,
        st.confirmed(plan.digest),
        (*plan.mask, *config.mask),
        st.confirmed(plan.digest, ("applied",)),
    )
    # Batches an earlier attempt sent without recording their answer (killed, or no answer):
    # a planned value found on their records was written by lsqsync — applied, not merely
    # already current — so that drift and rollback know it.
    pending = st.pending_batches(plan.digest)
    in_flight = {i.lower() for b in pending for i in b.opportunity_ids}
    settled = [
        replace(r, status="applied")
        if r.status == "already_current" and r.opportunity_id.lower() in in_flight
        else r
        for r in fresh.settled
    ]
    if pending:
        st.resolve_batches(run_id, pending, settled)
    else:
        st.record_results(run_id, settled)
    stop = threading.Event()
    unknown: list[apply.Pending] = []
    interrupted = False
    try:
        unknown = _send_all(client, st, run_id, list(fresh.pending), options, stop, say)
    except KeyboardInterrupt:
        interrupted = True
    if unknown and not interrupted:
        _resolve_unknown(client, st, run_id, unknown, types, options, stop, say)
    counts = st.run(run_id).counts
    outcome: state.Outcome = "succeeded"
    if interrupted:
        outcome = "interrupted"
    elif counts.failed or counts.stale or counts.unknown or counts.not_sent:
        outcome = "partial"
    usage = (
        client.calls - calls_before,
        client.rate_limited - refused_before,
        time.monotonic() - started,
    )
    return _summary(st.finish_run(run_id, outcome), len(plan.changes), client, usage, since)


def _resolve_unknown(
    client: LsqClient,
    st: StateFile,
    run_id: str,
    unknown: list[apply.Pending],
    types: dict[int, OpportunityType],
    options: ApplyOptions,
    stop: threading.Event,
    say: Progress,
) -> None:
    """Read back the records of unanswered calls: applied if the values landed, else sent once
    more. If the rate limit keeps refusing the re-read, they stay unknown (the next apply
    re-reads them)."""
    say(f"re-reading {len(unknown)} opportunities whose outcome is unknown")
    try:
        current = apply.read_current(client, [p.change for p in unknown])
    except RateLimited as e:
        why = f"no answer, and re-reading was refused for the account's rate limit ({e.status})"
        st.record_results(run_id, [r for p in unknown for r in apply.each_field(p, "unknown", why)])
        return
    resolved, resend = apply.resolve_unknown(unknown, current, types)
    st.record_results(run_id, resolved)
    still = _send_all(client, st, run_id, resend, options, stop, say) if resend else []
    twice = [r for p in still for r in apply.each_field(p, "unknown", "no answer, twice")]
    st.record_results(run_id, twice)


def _summary(
    run: state.Run,
    opportunities: int,
    client: LsqClient | None,
    usage: tuple[int, int, float],
    since: tuple[str, ...],
) -> ApplySummary:
    """The summary of ``run``; ``usage``: (calls, calls refused for the rate limit, seconds)."""
    c = run.counts
    calls, rate_limited, seconds = usage
    return ApplySummary(
        run_id=run.id,
        outcome=run.outcome,
        counts={
            "applied": c.applied,
            "already_current": c.already_current,
            "stale": c.stale,
            "failed": c.failed,
            "unknown": c.unknown,
            "not_sent": c.not_sent,
        },
        opportunities=opportunities,
        calls=calls,
        rate_limited=rate_limited,
        seconds=seconds,
        runs_since=since,
        interrupted=run.outcome == "interrupted",
        budgets=tuple(client.limiter.budgets().items()) if client is not None else (),
    )


def _send_all(
    client: LsqClient,
    st: StateFile,
    run_id: str,
    pending: Sequence[apply.Pending],
    options: ApplyOptions,
    stop: threading.Event,
    say: Progress,
) -> list[apply.Pending]:
    """Send every batch from ``options.workers`` threads; journal each before it is sent and
    record it when it comes back (from this thread: the state file has one writer). Returns the
    opportunities whose outcome is unknown. On Ctrl-C: no new batch is sent, the in-flight ones
    are recorded, and KeyboardInterrupt is raised again."""
    queue = list(apply.batches(pending))
    total = len(queue)
    opportunities, sent, started = len(pending), 0, time.monotonic()
    in_flight: dict[Future[apply.BatchOutcome], tuple[int, tuple[apply.Pending, ...]]] = {}
    unknown: list[apply.Pending] = []
    refusals = apply.Refusals()
    done = 0
    with _ctrl_c_sets(stop), ThreadPoolExecutor(max_workers=options.workers) as pool:
        while queue or in_flight:
            try:
                while queue and len(in_flight) < options.workers * 2 and not stop.is_set():
                    batch = queue.pop(0)
                    payload = json.dumps([p.item.to_api() for p in batch]).encode()
                    journal = st.begin_batch(run_id, [p.change.id for p in batch], payload)
                    future = pool.submit(apply.send_batch, client, batch, refusals)
                    in_flight[future] = (journal.batch, batch)
                if not in_flight:
                    break
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                stop.set()
                queue.clear()
                finished, _ = wait(in_flight)  # let in-flight batches finish and be recorded
            for future in finished:
                number, batch = in_flight.pop(future)
                outcome = future.result()
                refused = str(outcome.refused) if outcome.refused else None
                st.record_batch_result(
                    run_id, number, outcome.status, outcome.results, message=refused
                )
                unknown.extend(outcome.unknown)
                if outcome.refused is not None and queue:
                    # The account kept refusing through every retry: the next batches would
                    # only wait out the same refusals. They are not sent; the next apply is.
                    log.warning(
                        "apply: LeadSquared kept refusing calls for the account's rate limit: "
                        "not sending the other %d batches; apply the plan again to send them",
                        len(queue),
                    )
                    rest = [p for b in queue for p in b]
                    st.record_results(run_id, apply.not_sent(rest, outcome.refused))
                    queue.clear()
                done += 1
                sent += len(batch)
                rate = sent / max(time.monotonic() - started, 1e-9)
                eta = (opportunities - sent) / rate if rate else 0.0
                say(
                    f"apply: {sent:,}/{opportunities:,} opportunities ({done}/{total} batches), "
                    f"{rate:.1f}/s, about {eta:.0f} s to go"
                )
    if stop.is_set():
        raise KeyboardInterrupt
    return unknown


@contextmanager
def _ctrl_c_sets(stop: threading.Event) -> Iterator[None]:
    """While batches are sent, Ctrl-C only sets ``stop``: no new batch is sent, and the ones in
    flight finish (each bounded by the client's timeouts) and are recorded. Raised where it
    lands, it could leave a batch journaled but never sent, or answered but not recorded, for a
    resume to re-read. Signal handlers belong to the main thread: elsewhere (an embedding
    program) Ctrl-C raises as usual and the except clause above copes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def interrupted(signum: int, frame: object) -> None:
        if not stop.is_set():
            log.warning("apply: interrupted: finishing the batches in flight, then stopping")
        stop.set()

    signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
