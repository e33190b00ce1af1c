"""``lsqsync apply PLAN``: the I/O around the apply engine — the plan file, the state and its
lock, the client, the workers, reading back what was written, Ctrl-C — and the run's summary.

Every way out of a run that sent something ends with a summary: nothing sent is the only exit
1. A batch is ``sending`` in the journal only while its call is out; whatever became of it (an
answer, none, an error, the retries running out, a worker's crash) is recorded, and its records
are read back at the end of the run — or, when that read fails, by the next apply of the plan,
which the summary says.
"""

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
from lsqsync.apply.summary import SHOWN_PROBLEMS, ApplySummary, Checked
from lsqsync.clock import parse_stamp
from lsqsync.config import Config, connection_from_env, inside_project, load_config
from lsqsync.display import FieldNames, plural
from lsqsync.errors import ApiError, ConfigError, LsqsyncError, PlanRefused, RateLimited
from lsqsync.lsq import LsqClient, OpportunityType
from lsqsync.plan import planfile
from lsqsync.plan.model import OpportunityChange, Plan
from lsqsync.state import records as state
from lsqsync.state.location import open_client, open_state
from lsqsync.state.report import problem_lines, problems
from lsqsync.state.store import StateFile

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

# Batches in a row whose call failed for no reason of their rows (retries ran out, no
# connection): the account is taken to be down, and the rest is not sent.
DOWN_AFTER = 3


@dataclass(frozen=True)
class ApplyOptions:
    workers: int = 4
    lock_timeout: float = 0.0
    lock_expiry: float | None = 3600.0
    ignore_rule_changes: bool = False
    verify: bool = True  # read back every field written
    verify_wait: float = 20.0  # seconds to wait for written values to show in reads
    allow_nonconvergent: bool = False  # apply a plan with rules that never settle (recorded)


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


def _nonconvergent_refusal(plan: Plan, allowed: bool) -> list[str]:
    """Why a plan with rules that would change their fields again is not applied."""
    if allowed or not plan.nonconvergent:
        return []
    rules = sorted({w.split("'")[1] for w in plan.nonconvergent})
    return [
        f"non-convergent rule{'s' if len(rules) > 1 else ''} "
        f"{', '.join(repr(r) for r in rules)}: every plan would change "
        f"{'their' if len(rules) > 1 else 'its'} fields again (see the plan's warnings). Make "
        "them settle, give a one-off rule once: true, or pass --allow-nonconvergent (recorded)"
    ]


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
    started = time.monotonic()
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
        reasons += _nonconvergent_refusal(plan, options.allow_nonconvergent)
        if reasons:
            raise PlanRefused(f"{plan_path}: refused: " + "; ".join(reasons))
        lock = st.acquire_lock("apply", timeout=options.lock_timeout, expiry=options.lock_expiry)
        try:
            flags = (
                ("--ignore-rule-changes", options.ignore_rule_changes),
                ("--allow-large", plan.inputs.allow_large),
                ("--no-verify", not options.verify),
                ("--allow-nonconvergent", options.allow_nonconvergent and bool(plan.nonconvergent)),
            )
            overrides = [name for name, on in flags if on]
            since = tuple(r.id for r in st.runs_since(plan.state_serial or 0))
            run = st.begin_run(plan.digest, overrides=overrides, field_labels=plan.field_labels)
            with open_client(config) as client:
                session = _Session(plan, config, client, st, run.id, options, progress, started)
                return session.run(since)
        finally:
            st.release_lock(lock.id)


class _Session:
    """One run of a plan: re-read, send, resolve, read back, sum up."""

    def __init__(
        self,
        plan: Plan,
        config: Config,
        client: LsqClient,
        st: StateFile,
        run_id: str,
        options: ApplyOptions,
        progress: Progress | None,
        started: float,
    ) -> None:
        self.plan, self.config, self.client, self.st = plan, config, client, st
        self.run_id, self.options, self.started = run_id, options, started
        self.say = progress or (lambda _: None)
        self.calls_before, self.refused_before = client.calls, client.rate_limited
        self.stop = threading.Event()
        self.stopped: str | None = None
        self.checked: Checked | None = None
        self.found: list[state.Verification] = []  # what reading back found, so far
        self.not_persisted: list[state.FieldResult] = []

    def run(self, since: tuple[str, ...]) -> ApplySummary:
        try:
            types, pending = self._reread()
        except KeyboardInterrupt:  # before any batch was sent: nothing in flight
            return self._end("interrupted", since)
        except Exception:
            # e.g. the keys refused during the re-read: the run ends "failed" with the
            # results it recorded, instead of looking as if it were still running
            self.st.finish_run(self.run_id, "failed")
            raise
        try:
            interrupted = self._write(types, pending)
        except Exception:
            self._abandon()
            raise
        return self._end("interrupted" if interrupted else None, since)

    def _write(self, types: dict[int, OpportunityType], pending: list[apply.Pending]) -> bool:
        """Send, resolve unknown outcomes, read back; whether Ctrl-C cut it short."""
        try:
            with _ctrl_c_sets(self.stop):
                unknown = self._send_all(pending)
                if unknown and not self.stop.is_set():
                    self._resolve(unknown, types)
            if self.stop.is_set():
                return True
        except KeyboardInterrupt:
            return True
        if self.options.verify:
            try:
                self._verify(types)
            except KeyboardInterrupt:
                return True
        return False

    def _abandon(self) -> None:
        """An error the run cannot go on after (the state itself failed): end the run as failed
        if the state still takes it, and say which batches the next apply reads back."""
        with contextlib.suppress(Exception):
            self.st.finish_run(self.run_id, "failed")
        with contextlib.suppress(Exception):
            left = self.st.pending_batches(self.plan.digest)
            if left:
                log.warning(
                    "apply: the next apply of this plan reads back the records of %s",
                    ", ".join(f"run {b.run_id} batch {b.batch}" for b in left),
                )

    # -- before sending --------------------------------------------------------------------

    def _reread(self) -> tuple[dict[int, OpportunityType], list[apply.Pending]]:
        """Read the planned records again, record what needs no write, and return the rest."""
        plan, client, st = self.plan, self.client, self.st
        self.say(f"re-reading {plural(len(plan.changes), *_OPPORTUNITIES, grouped=True)}")
        # The type metadata and every chunk of the re-read go out together: none needs
        # another's answer, and one round trip before the first write is all the latency the
        # run pays.
        pool = ThreadPoolExecutor(max_workers=max(1, self.options.workers))
        try:
            metadata = {
                code: pool.submit(client.opportunity_type, code)
                for code in sorted({c.opportunity_type for c in plan.changes})
            }
            current = apply.read_current(client, plan.changes, pool)
            types = {code: f.result() for code, f in metadata.items()}
        except BaseException:
            # Ctrl-C or a failed read: drop the reads not yet started rather than wait for
            # them (the ones in flight finish on their own; reads change nothing).
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        fresh = apply.check_freshness(
            plan.changes,
            current,
            types,
            st.confirmed(plan.digest),
            (*plan.mask, *self.config.mask),
            st.confirmed(plan.digest, ("applied",)),
        )
        # Batches an earlier attempt sent without recording their answer (killed, or no
        # answer): a planned value found on their records was written by lsqsync — applied,
        # not merely already current — so that drift and rollback know it.
        earlier = st.pending_batches(plan.digest)
        in_flight = {i.lower() for b in earlier for i in b.opportunity_ids}
        settled = [
            replace(r, status="applied")
            if r.status == "already_current" and r.opportunity_id.lower() in in_flight
            else r
            for r in fresh.settled
        ]
        if earlier:
            st.resolve_batches(self.run_id, earlier, settled)
        else:
            st.record_results(self.run_id, settled)
        return types, list(fresh.pending)

    # -- sending ---------------------------------------------------------------------------

    def _send_all(self, pending: Sequence[apply.Pending]) -> list[_Unknown]:
        """Send every batch from ``options.workers`` threads; journal each before it is sent
        and record it when it comes back (from this thread: the state has one writer). Returns
        the batches with rows whose outcome is unknown. On Ctrl-C (``stop``) or when the
        account looks down, no new batch is sent; the ones in flight finish and are recorded."""
        queue = list(apply.batches(pending))
        progress = _Progress(self.say, len(pending), len(queue))
        in_flight: dict[Future[apply.BatchOutcome], tuple[int, tuple[apply.Pending, ...]]] = {}
        unknown: list[_Unknown] = []
        refusals, failures = apply.Refusals(), 0
        with ThreadPoolExecutor(max_workers=self.options.workers) as pool:
            while queue or in_flight:
                try:
                    self._fill(queue, in_flight, pool, refusals)
                    if not in_flight:
                        break
                    finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                except KeyboardInterrupt:  # outside the main thread's handler: see _ctrl_c_sets
                    self.stop.set()
                    finished, _ = wait(in_flight)  # let in-flight batches finish, recorded
                for future in finished:
                    number, batch = in_flight.pop(future)
                    outcome = _outcome(future, batch)
                    failures = failures + 1 if outcome.error else 0
                    unknown += self._record(number, batch, outcome)
                    self._stop_early(queue, outcome, failures)
                    progress.done(len(batch))
                if self.stop.is_set():
                    queue.clear()
        return unknown

    def _fill(
        self,
        queue: list[tuple[apply.Pending, ...]],
        in_flight: dict[Future[apply.BatchOutcome], tuple[int, tuple[apply.Pending, ...]]],
        pool: ThreadPoolExecutor,
        refusals: apply.Refusals,
    ) -> None:
        """Journal and hand out batches until ``workers * 2`` are in flight."""
        while queue and len(in_flight) < self.options.workers * 2 and not self.stop.is_set():
            batch = queue[0]
            payload = json.dumps([p.item.to_api() for p in batch]).encode()
            try:
                journal = self.st.begin_batch(self.run_id, [p.change.id for p in batch], payload)
            except LsqsyncError as e:  # the lock was taken over: send nothing more
                self._halt(queue, f"{e}")
                return
            queue.pop(0)
            future = self._submit(pool, batch, refusals)
            in_flight[future] = (journal.batch, batch)

    def _submit(
        self, pool: ThreadPoolExecutor, batch: tuple[apply.Pending, ...], refusals: apply.Refusals
    ) -> Future[apply.BatchOutcome]:
        return pool.submit(apply.send_batch, self.client, batch, refusals)

    def _record(
        self, number: int, batch: tuple[apply.Pending, ...], outcome: apply.BatchOutcome
    ) -> list[_Unknown]:
        message = outcome.error or (str(outcome.refused) if outcome.refused else None)
        journal = self.st.record_batch_result(
            self.run_id, number, outcome.status, outcome.results, message=message
        )
        return [(journal, outcome.unknown)] if outcome.unknown else []

    def _stop_early(
        self, queue: list[tuple[apply.Pending, ...]], outcome: apply.BatchOutcome, failures: int
    ) -> None:
        if not queue:
            return
        if outcome.refused is not None:
            # The account kept refusing through every retry: the next batches would only wait
            # out the same refusals. They are not sent; the next apply is.
            log.warning(
                "apply: LeadSquared kept refusing calls for the account's rate limit: "
                "not sending the other %d batches; apply the plan again to send them",
                len(queue),
            )
            rest = [p for b in queue for p in b]
            self.st.record_results(self.run_id, apply.not_sent(rest, outcome.refused))
            queue.clear()
        elif failures >= DOWN_AFTER:
            self._halt(
                queue,
                f"{failures} batches in a row failed (the last: {outcome.error}); "
                "LeadSquared looks down",
            )

    def _halt(self, queue: list[tuple[apply.Pending, ...]], why: str) -> None:
        """Send no more: the batches not sent yet are recorded *not sent*."""
        log.warning("apply: not sending the other %d batches: %s", len(queue), why)
        self.stopped = why
        message = f"not sent: {why}; apply the same plan again to send it"
        rest = [r for b in queue for p in b for r in apply.each_field(p, "not_sent", message)]
        self.st.record_results(self.run_id, rest)
        queue.clear()

    # -- unknown outcomes ------------------------------------------------------------------

    def _resolve(self, unknown: list[_Unknown], types: dict[int, OpportunityType]) -> None:
        """Read back the records of the rows whose outcome is unknown: applied if the values
        landed, else sent once more. If the read fails, they stay unknown and their batches
        unresolved: the next apply reads them back first."""
        rows = [p for _, ps in unknown for p in ps]
        many = plural(len(rows), *_OPPORTUNITIES, grouped=True)
        self.say(f"re-reading {many} whose outcome is unknown")
        try:
            current = self._read([p.change for p in rows])
        except ApiError as e:
            why = f"no answer, and reading the records back failed ({_short(e)})"
            if isinstance(e, RateLimited):
                why = (
                    "no answer, and re-reading was refused for the account's rate limit "
                    f"({e.status})"
                )
            self.st.record_results(
                self.run_id, [r for p in rows for r in apply.each_field(p, "unknown", why)]
            )
            return
        resolved, resend = apply.resolve_unknown(rows, current, types)
        self.st.resolve_batches(self.run_id, [b for b, _ in unknown], resolved)
        again = self._send_all(resend) if resend else []
        twice = [r for _, ps in again for p in ps for r in apply.each_field(p, "unknown", _TWICE)]
        self.st.record_results(self.run_id, twice)

    # -- reading back ----------------------------------------------------------------------

    def _verify(self, types: dict[int, OpportunityType]) -> None:
        """Read back every applied field of this plan not read back yet (this run's, and those
        of an earlier run that ended first), recording as it goes; wait for a value that is not
        there yet, up to ``verify_wait`` seconds, then it is *not persisted*."""
        written = list(self.st.unverified(self.plan.digest))
        if not written:
            return
        calls = self.client.calls
        earlier = sum(1 for run_id, _ in written if run_id != self.run_id)
        opportunities = len({r.opportunity_id for _, r in written})
        self.say(
            f"reading back {plural(len(written), 'field')} of "
            f"{plural(opportunities, 'opportunity', 'opportunities')}"
        )
        why: str | None = None
        try:
            missing = self._read_back(written, types)
            held = {(v.run_id, v.opportunity_id, v.field): v.current for v in self.found}
            # this run's are among its results; those of an earlier run are named here too
            self.not_persisted = [
                replace(r, verified="not_persisted", current=held[(run, r.opportunity_id, r.field)])
                for run, r in missing
                if run != self.run_id
            ]
        except ApiError as e:
            why = _short(e)
        finally:
            self._checked(len(written), earlier, calls, why)

    def _read_back(
        self, written: list[apply.Written], types: dict[int, OpportunityType]
    ) -> list[apply.Written]:
        """Read back until every field is there or the wait is over; the fields not there."""
        found = self.found
        deadline = time.monotonic() + self.options.verify_wait
        delay, pending = 0.5, written
        while True:
            current = self._read(apply.as_changes([r for _, r in pending]))
            done, pending = apply.verify(pending, current, types)
            self.st.record_verification(done)  # as it goes: a kill keeps what was learned
            found += done
            left = deadline - time.monotonic()
            if not pending or left <= 0:
                break
            self.say(
                f"{plural(len(pending), 'field')} not (yet) as written: reading "
                f"{'it' if len(pending) == 1 else 'them'} again in {min(delay, left):.1f} s"
            )
            time.sleep(min(delay, left))
            delay *= 2
        missing = apply.not_persisted(pending, current, types)
        self.st.record_verification(missing)
        found += missing
        return pending

    def _read(self, changes: list[OpportunityChange]) -> dict[str, dict[str, str | None]]:
        """The current values of ``changes``' fields, every call at once: none needs another's
        answer, and reading back costs the run one round trip, not one per 2,000 records."""
        pool = ThreadPoolExecutor(max_workers=max(1, self.options.workers))
        try:
            return apply.read_current(self.client, changes, pool)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            pool.shutdown()

    def _checked(self, written: int, earlier: int, calls: int, why: str | None) -> None:
        kinds = [v.verdict for v in self.found]
        self.checked = Checked(
            confirmed=kinds.count("confirmed"),
            normalised=kinds.count("normalised"),
            not_persisted=kinds.count("not_persisted"),
            unread=written - len(self.found),
            earlier=earlier,
            calls=self.client.calls - calls,
            why_unread=why or "interrupted",
        )

    # -- the end ---------------------------------------------------------------------------

    def _end(self, outcome: state.Outcome | None, since: tuple[str, ...]) -> ApplySummary:
        """Finish the run and sum it up."""
        st = self.st
        counts = st.run(self.run_id).counts
        checked = self.checked
        if checked is None and self.options.verify and outcome == "interrupted":
            unread = len(st.unverified(self.plan.digest))
            checked = Checked(unread=unread, why_unread="interrupted") if unread else None
        if outcome is None:
            bad = counts.failed or counts.stale or counts.unknown or counts.not_sent
            bad = bad or (checked is not None and (checked.not_persisted or checked.unread))
            outcome = "partial" if bad else "succeeded"
        run = st.finish_run(self.run_id, outcome)
        unresolved = tuple(
            f"run {b.run_id} batch {b.batch}" for b in st.pending_batches(self.plan.digest)
        )
        # fields not sent are counted, and applying the plan again sends them: not listed
        results = [
            r for r in problems(st.results(run.id), self.not_persisted) if r.status != "not_sent"
        ]
        names = FieldNames(self.plan.field_labels)
        lines = problem_lines(results[:SHOWN_PROBLEMS], self.config.mask, names)
        c = run.counts
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
            opportunities=len(self.plan.changes),
            calls=self.client.calls - self.calls_before,
            rate_limited=self.client.rate_limited - self.refused_before,
            seconds=time.monotonic() - self.started,
            runs_since=since,
            interrupted=run.outcome == "interrupted",
            budgets=tuple(self.client.limiter.budgets().items()),
            checked=checked,
            verify=self.options.verify,
            problems=tuple(lines),
            more=max(0, len(results) - SHOWN_PROBLEMS),
            stopped=self.stopped,
            unresolved=unresolved,
        )


_TWICE = "no answer, twice"
_OPPORTUNITIES = ("opportunity", "opportunities")
_Unknown = tuple[state.Batch, list[apply.Pending]]  # a recorded batch, its rows to read back


def _outcome(
    future: Future[apply.BatchOutcome], batch: Sequence[apply.Pending]
) -> apply.BatchOutcome:
    """A batch's outcome; a worker that crashed leaves its rows unknown (they may have
    landed), to be read back like those of an unanswered call."""
    try:
        return future.result()
    except Exception as e:
        log.warning("apply: a worker failed: %s: %s", type(e).__name__, e, exc_info=True)
        return apply.BatchOutcome(unknown=list(batch), error=f"{type(e).__name__}: {e}")


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 200 else text[:199] + "…"


class _Progress:
    def __init__(self, say: Progress, opportunities: int, batches: int) -> None:
        self.say, self.opportunities, self.batches = say, opportunities, batches
        self.sent = self.finished = 0
        self.started = time.monotonic()

    def done(self, opportunities: int) -> None:
        self.finished += 1
        self.sent += opportunities
        rate = self.sent / max(time.monotonic() - self.started, 1e-9)
        eta = (self.opportunities - self.sent) / rate if rate else 0.0
        self.say(
            f"apply: {self.sent:,}/{self.opportunities:,} opportunities "
            f"({self.finished}/{self.batches} batches), {rate:.1f}/s, about {eta:.0f} s to go"
        )


@contextmanager
def _ctrl_c_sets(stop: threading.Event) -> Iterator[None]:
    """While batches are sent, Ctrl-C only sets ``stop``: no new batch is sent, and the ones in
    flight finish (each bounded by the client's timeouts) and are recorded. Raised where it
    lands, it could leave a batch journaled but never sent, or answered but not recorded, for a
    resume to re-read. Signal handlers belong to the main thread: elsewhere (an embedding
    program) Ctrl-C raises as usual and the except clause in ``_send_all`` copes."""
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
