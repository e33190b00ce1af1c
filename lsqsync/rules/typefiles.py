"""The reviewed snapshot of the account's opportunity types: ``types/<code>.json``, one file per
type, written by ``lsqsync types pull`` and committed with the rules.

A file keeps GetOpportunityTypeMetadata's body exactly as LeadSquared sent it (keys sorted and
indented, so that a pull request shows what changed in the account), with when and from which
host and organisation it was pulled — never a key. It is read back through the parser the
client uses for the live answer (``OpportunityType.from_api``), so the offline checks of
``validate`` and the plans of ``lsqsync test`` see exactly what ``plan`` would see online.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from lsqsync.clock import parse_stamp, stamp
from lsqsync.config import Config, display_path, inside_project
from lsqsync.documents.problems import Problem, ProjectInvalid
from lsqsync.documents.yamlsource import Location
from lsqsync.errors import LsqsyncError
from lsqsync.lsq import FieldMeta, LsqClient, OpportunityType
from lsqsync.lsq.models import UnexpectedResponse

FORMAT = 1  # the ``lsqsync_types`` value of the files this version writes and reads
MAX_BYTES = 16 * 2**20  # metadata of a type with thousands of fields stays far below


@dataclass(frozen=True)
class TypeFile:
    """One snapshot file, read and parsed."""

    code: int
    file: str  # as shown in messages
    pulled_at: str  # UTC timestamp
    host: str
    org_id: str | None  # the account's OrgId, as whoami reads it
    meta: OpportunityType
    text: str  # the file's text, to point at a field's line

    def field_location(self, name: str | None = None) -> Location:
        """Where the field ``name`` is in the file (its SchemaName line), or the file's start."""
        needle = json.dumps(name) if name is not None else None
        if needle is not None:
            for number, line in enumerate(self.text.splitlines(), start=1):
                if '"SchemaName":' in line and line.rstrip().rstrip(",").endswith(needle):
                    return Location(self.file, number, line.index('"SchemaName"') + 1)
        return Location(self.file, 1, 1)


@dataclass(frozen=True)
class TypeSnapshots:
    """Every snapshot file of the project's ``types:`` folder."""

    folder: str  # as shown in messages
    exists: bool  # the folder is there (without it, validate checks no field offline)
    files: Mapping[int, TypeFile]
    problems: tuple[Problem, ...]  # files that cannot be used

    @property
    def types(self) -> dict[int, OpportunityType]:
        return {code: f.meta for code, f in self.files.items()}


def folder(config: Config) -> Path:
    """The project's snapshot folder; ProjectInvalid when ``types.path`` leads out of the project
    folder (its files would not be the project's)."""
    path = inside_project(config.root, config.types.path)
    if isinstance(path, str):
        raise ProjectInvalid([Problem(config.where(("types", "path")), "types.path", path)])
    return path


def load(config: Config) -> TypeSnapshots:
    """Read every ``<code>.json`` of the project's snapshot folder; a file that cannot be used
    is a problem at its place, and the others are still read."""
    where = folder(config)
    shown = display_path(where)
    if not where.is_dir():
        return TypeSnapshots(shown, False, {}, ())
    files: dict[int, TypeFile] = {}
    problems: list[Problem] = []
    for path in sorted(where.glob("*.json")):
        read = read_file(path, display_path(path))
        if isinstance(read, Problem):
            problems.append(read)
        else:
            files[read.code] = read
    return TypeSnapshots(shown, True, files, tuple(problems))


def field_labels(
    config: Config, recorded: Mapping[int, Mapping[str, str]]
) -> dict[int, dict[str, str]]:
    """Display names for outputs that read no metadata (``state show``): ``recorded`` (type code
    → schema name → display name, e.g. a run's), completed from the project's snapshot files
    for what it lacks (a run older than the labels). A snapshot folder or file that cannot be
    read adds nothing: a field is then named by its schema name."""
    try:
        snapshots = load(config)
    except (LsqsyncError, OSError):
        snapshots = TypeSnapshots("", False, {}, ())
    labels = {code: meta.display_names for code, meta in snapshots.types.items()}
    for code, names in recorded.items():
        labels[code] = {**labels.get(code, {}), **names}
    return labels


def read_file(path: Path, shown: str) -> TypeFile | Problem:
    """One snapshot file, or the problem that keeps it from being used."""
    at = Location(shown, 1, 1)
    if not path.stem.isdigit():
        return Problem(at, "", "not a snapshot of an opportunity type (expected CODE.json)")
    code = int(path.stem)
    if isinstance(inside_project(path.parent, path.name), str) or not path.is_file():
        return Problem(at, "", "not a regular file inside the project folder: not read")
    try:
        if path.stat().st_size > MAX_BYTES:
            return Problem(at, "", f"larger than {MAX_BYTES // 2**20} MiB: not a snapshot")
        text = path.read_text("utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        return Problem(at, "", f"cannot read the snapshot: {e}")
    why = _shape_problem(data, code)
    if why:
        return Problem(at, "", why + f" (pull it again: lsqsync types pull {code})")
    try:
        meta = OpportunityType.from_api(data["metadata"], code=code)
    except UnexpectedResponse as e:
        return Problem(at, "metadata", f"not metadata lsqsync can read: {e}")
    return TypeFile(code, shown, data["pulled_at"], data["host"], data.get("org_id"), meta, text)


def _shape_problem(data: Any, code: int) -> str | None:
    if not isinstance(data, dict) or "lsqsync_types" not in data:
        return "not an lsqsync snapshot of an opportunity type"
    if data["lsqsync_types"] != FORMAT:
        return f"snapshot format {data['lsqsync_types']!r}; this lsqsync reads {FORMAT}"
    if data.get("code") != code:
        return f"holds type {data.get('code')!r}, but the file is named {code}.json"
    try:
        parse_stamp(str(data.get("pulled_at")))
    except ValueError:
        return "pulled_at is not a UTC timestamp (YYYY-MM-DDTHH:MM:SSZ)"
    if not isinstance(data.get("host"), str) or not isinstance(data.get("metadata"), dict):
        return "host or metadata is missing"
    org = data.get("org_id")
    if org is not None and not isinstance(org, str):
        return "org_id is not a string"
    return None


def dumps(code: int, metadata: Any, host: str, org_id: str | None, pulled_at: datetime) -> str:
    """A snapshot file's text: the body as LeadSquared sent it, keys sorted, indented."""
    data = {
        "lsqsync_types": FORMAT,
        "code": code,
        "pulled_at": stamp(pulled_at),
        "host": host,
        "org_id": org_id,
        "metadata": metadata,
    }
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class Pulled:
    code: int
    file: str
    name: str
    fields: int
    status: str  # new | changed | unchanged (the metadata, not the time of the pull)


def wanted_codes(config: Config, rule_codes: Iterable[int]) -> list[int]:
    """What ``types pull`` without codes pulls: the types the rules use and those the snapshot
    already has (refreshed)."""
    codes = set(rule_codes)
    where = folder(config)
    if where.is_dir():
        codes |= {int(p.stem) for p in where.glob("*.json") if p.stem.isdigit()}
    if not codes:
        raise LsqsyncError(
            "no opportunity types to pull: the rules use none and types/ has none; name them "
            "(lsqsync types pull CODE…)"
        )
    return sorted(codes)


def pull(client: LsqClient, config: Config, codes: Sequence[int], now: datetime) -> list[Pulled]:
    """Write ``types/<code>.json`` for each code, from LeadSquared's answer as it is (a body the
    client cannot read is refused before anything is written)."""
    where = folder(config)
    org_id = client.who_am_i().org_id
    out = []
    for code in codes:
        raw = client.opportunity_type_metadata(code)
        try:  # the body must read as the live answer would, or it is not written
            meta = OpportunityType.from_api(raw, code=code)
        except UnexpectedResponse as e:
            raise LsqsyncError(
                f"LeadSquared answered the metadata of type {code} with a body lsqsync cannot "
                f"read: {e}; {display_path(where / f'{code}.json')} was not written"
            ) from None
        path = where / f"{code}.json"
        before = read_file(path, display_path(path)) if path.exists() else None
        status = "new"
        if isinstance(before, TypeFile):
            status = "unchanged" if before.meta == meta else "changed"
        write_atomically(path, dumps(code, raw, client.host, org_id, now))
        out.append(Pulled(code, display_path(path), meta.name, len(meta.fields), status))
    return out


def write_atomically(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
                out.write(text)
            os.chmod(temp, 0o644)  # committed with the rules: no CRM values in it
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise LsqsyncError(f"{path}: cannot write the snapshot: {e.strerror or e}") from None


# -- what validate says about the snapshot -----------------------------------------------------


def missing(
    snapshots: TypeSnapshots,
    codes: Iterable[int],
    where: Mapping[int, Location],
    names: Mapping[int, Sequence[str]] | None = None,
) -> list[Problem]:
    """A warning for each type the rules use that has no usable snapshot, saying what offline
    validation did not check for it and how to have it checked. ``names``: the names the rules
    use for fields of each type, which offline validation could not resolve (a name may be a
    schema name, a display name or nothing)."""
    broken = {Path(p.location.file).name for p in snapshots.problems}
    names = names or {}
    return [
        Problem(
            where[code],
            "",
            f"fields and options of opportunity type {code} not checked ({snapshots.folder}/ "
            f"has no snapshot of it){_unresolved(names.get(code, ()))}: run `lsqsync validate "
            f"--online`, or keep a types snapshot (lsqsync types pull {code})",
        )
        for code in sorted(set(codes))
        if code not in snapshots.files and f"{code}.json" not in broken
    ]


def _unresolved(names: Sequence[str]) -> str:
    if not names:
        return ""
    return (
        f", nor which field each name means ({', '.join(names)}: a schema name, a display "
        "name or nothing)"
    )


def too_old(
    snapshots: TypeSnapshots, codes: Iterable[int], now: datetime, days: int
) -> list[Problem]:
    """A warning for each snapshot the rules use that was pulled more than ``days`` days ago."""
    out = []
    for code in sorted(set(codes)):
        f = snapshots.files.get(code)
        if f is None:
            continue
        age = (now - parse_stamp(f.pulled_at)).days
        if age > days:
            out.append(
                Problem(
                    Location(f.file, 1, 1),
                    "",
                    f"pulled {age} days ago ({f.pulled_at} from {f.host}), more than "
                    f"types.max_age_days ({days}): the account may have changed since; "
                    f"lsqsync types pull {code}",
                )
            )
    return out


def differences(snapshot: TypeFile, live: OpportunityType) -> list[Problem]:
    """How the account's type differs from the snapshot, field by field: one problem each, at
    the field's line in the file (a field the snapshot lacks: at the top)."""
    hint = f"; lsqsync types pull {snapshot.code} and review the difference"
    out = []
    if live.name != snapshot.meta.name:
        out.append(
            Problem(snapshot.field_location(), "",
                    f"the account names type {live.code} '{live.name}', the snapshot "
                    f"'{snapshot.meta.name}'{hint}")
        )  # fmt: skip
    names = [f.schema_name for f in snapshot.meta.fields]
    for f in live.fields:
        if snapshot.meta.field(f.schema_name) is None:
            out.append(
                Problem(snapshot.field_location(), "",
                        f"the account has a field {f.schema_name} that the snapshot lacks{hint}")
            )  # fmt: skip
    for name in names:
        mine, theirs = snapshot.meta.field(name), live.field(name)
        assert mine is not None
        where = snapshot.field_location(name)
        if theirs is None:
            out.append(Problem(where, "", f"{name} is no longer a field of the account{hint}"))
            continue
        changed = _changed(mine, theirs)
        if changed:
            out.append(
                Problem(where, "", f"{name} differs in the account: {'; '.join(changed)}{hint}")
            )
    return out


def _changed(mine: FieldMeta, theirs: FieldMeta) -> list[str]:
    """``attribute: snapshot → account`` for each attribute of the field that differs (every
    attribute the parser reads, so that what it learns to read is compared too)."""
    out = []
    for attribute in fields(FieldMeta):
        a, b = getattr(mine, attribute.name), getattr(theirs, attribute.name)
        if isinstance(a, Mapping):
            a, b = dict(a), dict(b)
        if a != b:
            out.append(f"{attribute.name} {_short(a)} -> {_short(b)}")
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:79] + "…"
