"""``lsqsync doctor``: read-only checks of what lsqsync needs from the configured account, one
line each with a verdict and, unless all is well, a hint.

Verdicts: ``ok``; ``warn`` (lsqsync works, but not fully, or not as you may expect); ``fail``
(something lsqsync needs does not work); ``skip`` (an earlier failure leaves nothing to check:
the keys were refused, so no endpoint can be tried). Every check catches its own errors, so one
broken thing never hides the others. Nothing is written to LeadSquared (reads only) or to the
state (opened read-only, never created).
"""

from __future__ import annotations

import email.utils
import json
import os
import stat
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

from lsqsync.config import (
    Config,
    load_config,
    optional_config,
    state_location,
    tls_warning,
)
from lsqsync.display import clean, is_masked, plural, shown, table
from lsqsync.documents.problems import ProjectInvalid
from lsqsync.errors import (
    ApiError,
    ApiRejected,
    AuthError,
    ConfigError,
    ConnectionFailed,
    LsqsyncError,
)
from lsqsync.lsq import (
    FieldMeta,
    LsqClient,
    OpportunityRecord,
    OpportunityType,
    RateLimiter,
    User,
    WhoAmI,
)
from lsqsync.lsq.accounts import ACCOUNTS_FILE, cache_dir
from lsqsync.lsq.client import SearchRefused
from lsqsync.lsq.trace import Exchange
from lsqsync.lsq.transport import same_api_host
from lsqsync.plan.fetch import search_reason
from lsqsync.plan.snapshot import guid, selected_ids
from lsqsync.rules import names
from lsqsync.rules.metadata import field_type_problems, read_differently
from lsqsync.rules.project import Project, Rule, load_project
from lsqsync.state.database import NoState
from lsqsync.state.location import open_client, open_state

Verdict = Literal["ok", "warn", "fail", "skip"]
Format = Literal["text", "json"]
T = TypeVar("T")

MAX_SKEW = 30.0  # seconds between this machine's clock and the server's before a warning


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    message: str
    hint: str = ""


def failed(checks: Sequence[Check]) -> bool:
    return any(c.verdict == "fail" for c in checks)


# -- what the checks share -------------------------------------------------------------------


class _Skip(Exception):
    """A check that cannot run: an earlier one failed (the message says which)."""


@dataclass
class _Probe:
    """The project, the client, and the reads the checks share: each read is made once, and
    its error, if any, is raised again to every check that asks for it."""

    config: Config | None
    project: Project | None
    client: LsqClient | None = None
    limiter: RateLimiter | None = None
    down: str = "the connection settings are incomplete"  # why the API cannot be asked
    dates: list[tuple[float, str]] = field(default_factory=list)  # (local time, Date header)
    _reads: dict[tuple[str, int], tuple[bool, Any]] = field(default_factory=dict)

    def observe(self, exchange: Exchange) -> None:
        date = next((v for k, v in exchange.headers.items() if k.lower() == "date"), None)
        if date and exchange.status is not None:
            # the server stamps its answer about half-way through the round trip
            self.dates.append((exchange.started + exchange.duration / 2, date))

    def api(self) -> LsqClient:
        if self.client is None:
            raise _Skip(f"not checked: {self.down}")
        return self.client

    def give_up(self, why: str) -> None:
        """Ask the API nothing more: the checks that need it are skipped, saying ``why``."""
        self.close()
        self.client, self.down = None, why

    def once(self, what: str, code: int, read: Callable[[LsqClient], T]) -> T:
        key = (what, code)
        client = self.api()
        if key not in self._reads:
            try:
                self._reads[key] = (True, read(client))
            except ApiError as e:
                self._reads[key] = (False, e)
        done, value = self._reads[key]
        if not done:
            raise value
        result: T = value
        return result

    def who(self) -> WhoAmI:
        return self.once("whoami", 0, lambda c: c.who_am_i())

    def users(self) -> list[User]:
        return self.once("users", 0, lambda c: c.users())

    def metadata(self, code: int) -> OpportunityType:
        return self.once("metadata", code, lambda c: c.opportunity_type(code))

    def readable(self, code: int) -> OpportunityType:
        """The metadata of type ``code``; skips a check of a type whose metadata line failed."""
        try:
            return self.metadata(code)
        except ApiError:
            raise _Skip(f"not checked: the metadata of type {code} could not be read") from None

    def first_row(self, code: int) -> OpportunityRecord | None:
        columns = self.columns(code)
        return self.once(
            "search", code, lambda c: next(c.search_opportunities(code, columns, 1), None)
        )

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self.project.rules if self.project is not None else ()

    @property
    def codes(self) -> list[int]:
        return sorted({r.opportunity_type for r in self.rules})

    def used(self, code: int) -> set[str]:
        """The fields the rules of type ``code`` read, by schema name (display names resolved as
        ``plan`` resolves them)."""
        meta = self.metadata(code)
        of_type = [names.resolve_rule(r, meta)[0] for r in self.rules if r.opportunity_type == code]
        return set().union(*(r.read_fields for r in of_type))

    def columns(self, code: int) -> list[str]:
        """The fields the rules of type ``code`` read, as the plan asks for them."""
        meta = self.metadata(code)
        return sorted(name for name in self.used(code) if meta.field(name) is not None)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


# -- running them ----------------------------------------------------------------------------


def doctor(config_path: Path | None) -> list[Check]:
    """Every check, in order. Never raises: a check that breaks is a ``fail`` line."""
    try:
        first, probe = _load(config_path)
    except LsqsyncError as e:  # e.g. a rule file that cannot be read
        first, probe = Check("project", "fail", str(e)), _Probe(None, None)
    checks = [first]
    try:
        for name, check in _checks(probe):
            checks.append(_safely(name, check, probe))
    finally:
        probe.close()
    return checks


def _safely(name: str, check: Callable[[_Probe], Check], probe: _Probe) -> Check:
    try:
        return check(probe)
    except _Skip as e:
        return Check(name, "skip", str(e))
    except LsqsyncError as e:  # the API's, the state's, the configuration's: what the user sees
        return Check(name, "fail", str(e))
    except Exception as e:  # a check's own failure is its verdict, never a crash
        return Check(name, "fail", f"{type(e).__name__}: {e}", "please report this as a bug")


def _checks(probe: _Probe) -> Iterator[tuple[str, Callable[[_Probe], Check]]]:
    yield "settings", _settings
    yield "host", _host
    yield "keys", _keys
    yield "clock", _clock
    yield "role", _role
    for code in probe.codes:
        yield f"metadata {code}", partial(_metadata, code=code)
        yield f"search {code}", partial(_search, code=code)
        yield f"by-id {code}", partial(_by_id, code=code)
        yield f"data types {code}", partial(_data_types, code=code)
    if probe.config is not None and probe.config.field_types:
        yield "field_types", _field_types
    yield "users", _users
    yield "rate limit", _rate_limit
    yield "state", _state


def _load(config_path: Path | None) -> tuple[Check, _Probe]:
    def invalid(what: str, e: ProjectInvalid) -> Check:
        first = str(e.problems[0]) if e.problems else str(e)
        more = f" (and {len(e.problems) - 1} more)" if len(e.problems) > 1 else ""
        return Check("project", "fail", f"{what}: {first}{more}", "lsqsync validate lists them all")

    try:
        config = load_config(config_path) if config_path is not None else optional_config(None)
    except ProjectInvalid as e:
        return invalid("lsqsync.yml", e), _Probe(None, None)
    if config is None:
        message = "no lsqsync.yml here: only the connection is checked"
        hint = "run in the project folder, or pass --config"
        return Check("project", "warn", message, hint), _Probe(None, None)
    try:
        project = load_project(config)
    except ProjectInvalid as e:
        return invalid("rules", e), _Probe(config, None)
    codes = ", ".join(str(c) for c in sorted({r.opportunity_type for r in project.rules}))
    message = (
        f"{config.file}: {plural(len(project.rules), 'rule')} in "
        f"{plural(len(project.files), 'file')}" + (f" (types {codes})" if codes else "")
    )
    return Check("project", "ok", message), _Probe(config, project)


# -- the connection --------------------------------------------------------------------------


def _settings(probe: _Probe) -> Check:
    try:
        # Fewer retries than other commands: a diagnosis should come quickly.
        client = open_client(
            probe.config, observers=[probe.observe], max_retries=1, backoff_base=0.5
        )
    except ConfigError as e:
        return Check("settings", "fail", str(e), "see docs/guide/connecting.md")
    probe.client, probe.limiter = client, client.limiter
    return Check("settings", "ok", f"host {client.host}; keys from the environment")


def _host(probe: _Probe) -> Check:
    client = probe.api()
    try:
        me = probe.who()
    except ConnectionFailed as e:
        probe.give_up("the host did not answer")
        tls = str(e).startswith("TLS")
        hint = (
            "the certificate could not be verified: check the host name, and the CA "
            "certificates of this machine (REQUESTS_CA_BUNDLE behind a proxy that inspects TLS)"
            if tls
            else "check LSQ_HOST (your account's regional API host) and the network"
        )
        return Check("host", "fail", str(e), hint)
    except ApiError as e:
        if e.status == 404 or (e.status is not None and 300 <= e.status < 400):
            probe.give_up("the host is not LeadSquared's API")
            hint = "set LSQ_HOST to the API base URL, e.g. https://api-in21.leadsquared.com"
            return Check("host", "fail", str(e), hint)
        if e.status is None:  # sent, no answer
            probe.give_up("the host did not answer")
            return Check("host", "fail", str(e), "check the network; try again")
        me = None  # it answered: the keys line says what
    how = (
        "TLS, certificate verified"
        if client.host.startswith("https://")
        else "loopback, no TLS needed (the emulator)"
    )
    named = me.api_host if me is not None else None
    if named and not same_api_host(named, client.host):
        return Check(
            "host",
            "warn",
            f"{client.host}: {how}; LeadSquared names {named} as this account's API host",
            f"set LSQ_HOST to {named}",
        )
    return Check("host", "ok", f"{client.host}: {how}")


def _keys(probe: _Probe) -> Check:
    probe.api()
    try:
        me = probe.who()
    except ApiError as e:
        probe.give_up("the keys check failed")
        hint = (
            "check LSQ_ACCESS_KEY and LSQ_SECRET_KEY (My Account > Settings > API and "
            "Webhooks), and that LSQ_HOST is your account's region"
            if isinstance(e, AuthError)
            else ""
        )
        return Check("keys", "fail", str(e), hint)
    return Check("keys", "ok", f"accepted: {clean(me.user.name)} <{clean(me.user.email)}>")


def _clock(probe: _Probe) -> Check:
    if not probe.dates:
        probe.api()  # skips when nothing could be asked
        return Check("clock", "warn", "the server's answers carry no Date header: skew unknown")
    local, header = probe.dates[0]
    try:
        server = email.utils.parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError):
        return Check("clock", "warn", f"the server's Date header {header!r} is not a date")
    skew = server - local
    if abs(skew) <= MAX_SKEW:
        return Check("clock", "ok", f"within {max(1, round(abs(skew)))} s of the server's")
    way = "behind" if skew > 0 else "ahead of"
    return Check(
        "clock",
        "warn",
        f"this machine's clock is {abs(skew):,.0f} s {way} the server's (more than {MAX_SKEW:g} s)",
        "templates' now, plan expiry and lock heartbeats use this clock: synchronise it (NTP)",
    )


# -- the account -----------------------------------------------------------------------------


def _role(probe: _Probe) -> Check:
    me = probe.who()
    role = me.user.role or _role_from_users(probe, me.user.id)
    shown_role = clean(role) if role else "role not stated"
    needing = [r.name for r in probe.rules if search_reason(r, None)]
    codes = _readable(probe, needing)
    if not codes:
        admin = role.casefold() == "administrator"
        message = (
            f"{shown_role}: Opportunity Advanced Search not tried (no opportunity type to try)"
        )
        if admin or not role:
            return Check("role", "ok", message)
        hint = "rules with where, or selecting a whole type, will need an administrator's keys"
        return Check("role", "warn", message, hint)
    try:
        probe.first_row(codes[0])
    except SearchRefused as e:  # the client decides what a refusal looks like (UNKNOWN forms)
        return _non_admin(shown_role, needing, e)
    return Check(
        "role", "ok", f"{shown_role}: Opportunity Advanced Search works: every kind of rule plans"
    )


def _readable(probe: _Probe, needing: Collection[str]) -> list[int]:
    """The rules' types whose metadata reads, those of rules that need a search first."""
    first = [r.opportunity_type for r in probe.rules if r.name in needing]
    ordered = list(dict.fromkeys([*first, *probe.codes]))
    out = []
    for code in ordered:
        try:
            probe.metadata(code)
        except ApiError:
            continue
        out.append(code)
    return out


def _role_from_users(probe: _Probe, user_id: str) -> str:
    try:
        users = probe.users()
    except ApiError:
        return ""
    return next((u.role for u in users if u.id.lower() == user_id.lower()), "")


def _non_admin(role: str, needing: Sequence[str], e: ApiError) -> Check:
    said = e.exception_message or str(e)
    message = (
        f"{role}: these keys cannot use Opportunity Advanced Search (administrators only; "
        f"LeadSquared said: {clean(said)})"
    )
    if not needing:
        return Check("role", "ok", message + "; no rule needs it")
    names = ", ".join(needing)
    return Check(
        "role",
        "warn",
        f"{message}; rules that need it (where, or a whole type): {names}",
        "use an administrator's keys, or select those rules' opportunities with ids: or csv: "
        "(which plan without Advanced Search)",
    )


def _metadata(probe: _Probe, code: int) -> Check:
    name = f"metadata {code}"
    try:
        t = probe.metadata(code)
    except ApiRejected as e:
        hint = f"check opportunity_type in the rules (lsqsync types show {code})"
        return Check(name, "fail", e.exception_message or str(e), hint)
    return Check(name, "ok", f"{clean(t.name)}: {plural(len(t.fields), 'field')}")


def _search(probe: _Probe, code: int) -> Check:
    name = f"search {code}"
    probe.readable(code)
    try:
        row = probe.first_row(code)
    except SearchRefused as e:
        return Check(name, "warn", f"refused: {e.exception_message or e} (see role)")
    if row is None:
        return Check(name, "ok", "answered: no opportunities of this type")
    return Check(name, "ok", f"one opportunity read ({plural(len(probe.columns(code)), 'column')})")


def _by_id(probe: _Probe, code: int) -> Check:
    name = f"by-id {code}"
    probe.readable(code)
    columns = probe.columns(code)
    try:
        row = probe.first_row(code)
    except ApiError:
        row = None  # the search line says why; a listed id still tells whether by-id works
    target = row.id if row is not None else _listed_id(probe.rules, code)
    if target is None:
        return Check(name, "skip", "no opportunity to read: none found by search, none listed")
    client = probe.api()
    found = [
        r
        for r in client.opportunities_by_id(code, [target], columns)
        if r.id.lower() == target.lower()
    ]
    if not found:
        if row is None:
            return Check(
                name, "warn", f"{target}, listed by a rule, is not an opportunity of type {code}"
            )
        return Check(
            name, "fail", f"{target}, found by search, is missing from GetOpportunitiesById"
        )
    if row is None:
        return Check(name, "ok", f"read {target}, listed by a rule")
    differ = _differences(probe.metadata(code), row, found[0], probe.config)
    if differ:
        return Check(
            name,
            "warn",
            "search and GetOpportunitiesById read the same opportunity differently: "
            + "; ".join(differ),
            "lsqsync would see changes that are not there: report it with a --trace file",
        )
    return Check(name, "ok", "the opportunity found by search reads the same by id")


def _listed_id(rules: Sequence[Rule], code: int) -> str | None:
    for rule in rules:
        if rule.opportunity_type == code:
            for value in selected_ids(rule) or ():
                if (found := guid(value)) is not None:
                    return found
    return None


def _differences(
    t: OpportunityType, a: OpportunityRecord, b: OpportunityRecord, config: Config | None
) -> list[str]:
    """Fields whose values, as lsqsync compares them, differ between two reads of a record."""
    mask = config.mask if config is not None else ()
    return [
        f"{column}: {shown(first, is_masked(column, mask))} vs "
        f"{shown(second, is_masked(column, mask))}"
        for column, first, second in read_differently(t, a.values, b.values)
    ]


def _data_types(probe: _Probe, code: int) -> Check:
    name = f"data types {code}"
    t = probe.readable(code)
    unknown = list(t.unrecognised)  # field_types: declarations are applied when it is read
    if not unknown:
        return Check(name, "ok", f"lsqsync knows all {len(t.fields)}")
    used = probe.used(code)
    needed = [f for f in unknown if f.schema_name in used]
    unused = ", ".join(_typed(f) for f in unknown if f.schema_name not in used)
    if not needed:
        return Check(name, "ok", f"not known, and used by no rule: {unused}")
    message = "rules use fields of data types lsqsync does not know: " + ", ".join(
        _typed(f) for f in needed
    )
    return Check(
        name,
        "fail",
        message + (f"; used by no rule: {unused}" if unused else ""),
        "say what each is under field_types: in lsqsync.yml",
    )


def _typed(f: FieldMeta) -> str:
    return f"{f.schema_name} ({clean(f.data_type) or 'no data type'})"


def _field_types(probe: _Probe) -> Check:
    assert probe.config is not None  # only asked when lsqsync.yml has field_types:
    types = {code: probe.metadata(code) for code in probe.codes}
    stray = field_type_problems(probe.config, types)
    if not stray:
        return Check("field_types", "ok", "every entry names a field of the rules' types")
    return Check(
        "field_types",
        "warn",
        "; ".join(p.message for p in stray),
        "check the schema names (lsqsync types show CODE)",
    )


def _users(probe: _Probe) -> Check:
    users = probe.users()
    active = sum(u.active for u in users)
    return Check("users", "ok", f"{plural(len(users), 'user')}, {active} active")


def _rate_limit(probe: _Probe) -> Check:
    path = cache_dir() / ACCOUNTS_FILE
    if path.exists():
        try:
            json.loads(path.read_bytes())
        except (OSError, ValueError) as e:
            return Check(
                "rate limit",
                "warn",
                f"{path} cannot be read ({e}): limits learned earlier are forgotten",
                f"delete {path}: the next refusal teaches the limit again",
            )
    if probe.limiter is None:
        raise _Skip("not checked: the connection settings are incomplete")
    budgets = probe.limiter.budgets()
    parts = [f"{bucket}: {text}" for bucket, text in budgets.items()]
    return Check("rate limit", "ok", "; ".join(parts) or "no limit")


# -- the state -------------------------------------------------------------------------------


def _state(probe: _Probe) -> Check:
    config = probe.config
    if config is None:
        raise _Skip("not checked: no lsqsync.yml")
    location = state_location(config)
    where = location.describe(config.root)
    try:
        st = open_state(config, read_only=True, create=False)
    except NoState:
        return Check("state", "ok", f"{where}: none yet (the first apply creates it)")
    with st:
        facts = [where, f"lineage {st.lineage}", f"serial {st.serial}"]
        lock = st.current_lock()
    warnings: list[tuple[str, str]] = []
    if location.path is not None:
        mode = stat.S_IMODE(os.stat(config.root / location.path).st_mode)
        facts.append(f"mode {mode:04o}")
        if mode & 0o077:
            warnings.append(("others may read it (it holds CRM values)", f"chmod 600 {where}"))
    elif location.url is not None and (why := tls_warning(location.url)):
        warnings.append((why, "add ?sslmode=require (or verify-full) to the URL"))
    if lock is None:
        facts.append("not locked")
    else:
        run = f", run {lock.run_id}" if lock.run_id else ""
        warnings.append(
            (
                f"locked by {lock.holder} (pid {lock.pid} on {lock.host}) for {lock.operation}"
                f"{run} since {lock.since}",
                f"if that process is gone: lsqsync state unlock {lock.id}",
            )
        )
    message = ", ".join(facts)
    if not warnings:
        return Check("state", "ok", message)
    return Check(
        "state",
        "warn",
        message + "; " + "; ".join(w for w, _ in warnings),
        "; ".join(h for _, h in warnings),
    )


# -- output ----------------------------------------------------------------------------------


def render(checks: Sequence[Check], fmt: Format) -> str:
    counts = {v: sum(c.verdict == v for c in checks) for v in ("ok", "warn", "fail", "skip")}
    if fmt == "json":
        body = {"ok": not failed(checks), "counts": counts, "checks": [asdict(c) for c in checks]}
        return json.dumps(body, indent=2, ensure_ascii=False) + "\n"
    rows = [[c.verdict, c.name, c.message + (f" → {c.hint}" if c.hint else "")] for c in checks]
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n or v in ("ok", "fail"))
    return table(["VERDICT", "CHECK", "RESULT"], rows, cut=None) + f"doctor: {summary}\n"
