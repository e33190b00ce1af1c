"""A throw-away PostgreSQL server for the tests, one per test process.

``initdb`` and ``pg_ctl`` come from the PATH, else from Debian's ``/usr/lib/postgresql/N/bin``
(``.ci/run`` installs the ``postgresql`` package when neither has them). ``initdb`` refuses to
run as root, so as root the server runs as the unprivileged system user ``lsqsync-pg`` (made
with ``useradd`` if it is missing), in a temporary folder it owns, listening on a free loopback
port and on a Unix socket in that folder. Roles: ``postgres`` (the superuser, trusted from
loopback), and ``lsqsync_team``, which logs in with a password and has only what the README says
a team's role needs.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

USER = "lsqsync-pg"
TEAM_ROLE = "lsqsync_team"
TEAM_PASSWORD = "correct horse battery staple"  # a throw-away server's
HBA = f"""\
local all all trust
host all {TEAM_ROLE} 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
"""
SETTINGS = [
    "listen_addresses=127.0.0.1",
    "fsync=off",  # the server is never killed, only its clients: nothing to lose
    "full_page_writes=off",
    "max_connections=60",
]


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl: the PATH's, else the newest Debian install."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(debian[-1]).parent if debian else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run_as() -> list[str]:
    """The command prefix that runs the server's programs as an unprivileged user."""
    if os.geteuid() != 0:
        return []
    if subprocess.run(["id", "-u", USER], capture_output=True, check=False).returncode:
        made = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
            capture_output=True,
            text=True,
            check=False,
        )
        if made.returncode not in (0, 9):  # 9: made meanwhile by another test process
            raise RuntimeError(f"useradd {USER}: {made.stderr.strip()}")
    return ["runuser", "-u", USER, "--"]


@dataclass
class PgServer:
    folder: Path
    bin: Path
    run_as: list[str]
    port: int = 0
    names: itertools.count[int] = field(default_factory=itertools.count)

    @classmethod
    def start(cls) -> PgServer:
        found = binaries()
        if found is None:
            raise RuntimeError(
                "PostgreSQL's initdb and pg_ctl were not found on the PATH nor in "
                "/usr/lib/postgresql/*/bin: apt-get install postgresql (.ci/run does)"
            )
        run_as = _run_as()
        folder = Path(tempfile.mkdtemp(prefix="lsqsync-pg-"))
        if run_as:
            shutil.chown(folder, USER)
        server = cls(folder, found, run_as)
        server._run(
            "initdb", "-D", str(folder / "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C.UTF-8", "--no-sync", "--no-instructions",
        )  # fmt: skip
        server._as_owner(["sh", "-c", f"cat > {folder / 'data' / 'pg_hba.conf'}"], HBA)
        for attempt in range(3):  # a free port can be taken before the server binds it
            server.port = _free_port()
            options = " ".join(
                f"-c {s}"
                for s in [*SETTINGS, f"port={server.port}", f"unix_socket_directories={folder}"]
            )
            started = server._run(
                "pg_ctl", "-D", str(folder / "data"), "-l", str(folder / "log"), "-w", "-t", "30",
                "-o", options, "start", check=attempt == 2,
            )  # fmt: skip
            if started.returncode == 0:
                break
        server.execute(f"CREATE ROLE {TEAM_ROLE} LOGIN PASSWORD '{TEAM_PASSWORD}'")
        return server

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self.run_as, str(self.bin / program), *args],
            cwd=self.folder,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and done.returncode:
            log = self.folder / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed: {done.stdout}{done.stderr}{tail}")
        return done

    def _as_owner(self, command: list[str], stdin: str) -> None:
        subprocess.run([*self.run_as, *command], input=stdin, text=True, check=True)

    # -- what tests use --------------------------------------------------------------------

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def execute(self, statement: str, database: str = "postgres") -> list[tuple[object, ...]]:
        """Run ``statement`` as the superuser; its rows, if it returns any."""
        with psycopg.connect(self.url(database), autocommit=True) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def new_database(self, team: bool = False) -> str:
        """A new, empty database (its name). With ``team``, only the team's role may use it,
        with the least privileges: CONNECT and CREATE (to make lsqsync's schemas)."""
        name = f"t{os.getpid()}_{next(self.names)}"
        self.execute(f"CREATE DATABASE {name}")
        if team:
            self.execute(f"REVOKE ALL ON DATABASE {name} FROM PUBLIC")
            self.execute(f"GRANT CONNECT, CREATE ON DATABASE {name} TO {TEAM_ROLE}")
        return name

    def terminate(self, database: str) -> None:
        """End every session on ``database`` (as a server restart would)."""
        with contextlib.suppress(psycopg.Error):
            self.execute(
                sql.SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {}")
                .format(sql.Literal(database))
                .as_string()
            )
