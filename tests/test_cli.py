"""The command line as a user meets it: entry points, exit codes, the emulator commands."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest
import requests

from lsqsync import __version__, resources
from lsqsync.cli import cli, main
from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator

LSQSYNC = [sys.executable, "-m", "lsqsync"]
BANNER = re.compile(
    r"^lsqsync emulator (http://127\.0\.0\.1:\d+) access_key=(\S+) secret_key=(\S+)$"
)


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_version_names_the_schema_versions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["--version"], capsys)
    assert code == 0
    schemas = "config schema v1, rules schema v1, plan format v3, tests schema v1"
    assert out == f"lsqsync {__version__} ({schemas})\n"


@pytest.mark.parametrize("name", resources.SCHEMA_NAMES)
def test_schema_prints_the_shipped_schema(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["schema", name], capsys)
    assert code == 0
    assert json.loads(out) == json.loads(
        (Path(__file__).parents[1] / "schemas" / f"{name}.schema.json").read_text()
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "No such command 'nope'"),
        (["schema", "nope"], "Invalid value for '{config|rules|plan|tests}'"),
        (["emulator", "serve", "--rate-limit", "fast"], "expected CALLS/SECONDS"),
        (["emulator", "serve", "--rate-limit", "0/5"], "CALLS must be at least 1"),
        (["emulator", "serve", "--fault-rate", "2"], "0<=x<=1"),
        (["emulator", "serve", "--rate-limit", "5/nan"], "CALLS must be at least 1"),
    ],
)
def test_usage_errors_exit_1_not_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # exit code 2 is reserved for "the plan has changes"
    code, out, err = run_main(args, capsys)
    assert code == 1
    assert out == ""
    assert message in err


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run([*LSQSYNC, "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert done.stdout.startswith(f"lsqsync {__version__} ")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_emulator_serve_prints_its_address_and_stops_cleanly(sig: signal.Signals) -> None:
    with subprocess.Popen(
        [*LSQSYNC, "emulator", "serve", "--opportunities", "5", "--rate-limit", "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stderr is not None
            match = BANNER.match(proc.stdout.readline().rstrip("\n"))
            assert match is not None
            url, access, secret = match.groups()
            assert (access, secret) == (DEMO_ACCESS_KEY, DEMO_SECRET_KEY)
            response = requests.get(
                url + "/v2/Authentication.svc/UserByAccessKey.Get",
                headers={"x-LSQ-AccessKey": access, "x-LSQ-SecretKey": secret},
                timeout=5,
            )
            assert response.status_code == 200
            proc.send_signal(sig)
            assert proc.wait(timeout=10) == 0
            assert "Traceback" not in proc.stderr.read()
        finally:
            proc.kill()


def test_emulator_serve_reports_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run_main(["emulator", "serve", "--port", str(port)], capsys)
    assert code == 1
    assert f"error: emulator: cannot listen on 127.0.0.1:{port}" in err


@pytest.mark.slow
def test_emulator_run_gives_the_command_the_connection_and_its_exit_code() -> None:
    script = (
        "import os, sys, requests;"
        "r = requests.get(os.environ['LSQ_HOST'] + '/v2/UserManagement.svc/Users.Get',"
        " headers={'x-LSQ-AccessKey': os.environ['LSQ_ACCESS_KEY'],"
        " 'x-LSQ-SecretKey': os.environ['LSQ_SECRET_KEY']}, timeout=5);"
        "print(r.status_code); sys.exit(7)"
    )
    done = subprocess.run(
        [*LSQSYNC, "emulator", "run", "--opportunities", "2", "--", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("LSQ_")},
    )
    assert done.returncode == 7
    assert done.stdout == "200\n"
    assert BANNER.match(done.stderr.splitlines()[0])


def test_emulator_serve_reports_a_db_that_is_not_sqlite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "not.db"
    db.write_text("this is not a database, it is a text file of some length\n" * 10)
    code, _, err = run_main(["emulator", "serve", "--db", str(db)], capsys)
    assert code == 1
    assert f"error: emulator: --db {db}: not a usable SQLite file (" in err


def test_emulator_run_reports_a_missing_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["emulator", "run", "--", "no-such-command-here"], capsys)
    assert code == 127
    assert "error: command not found: no-such-command-here" in err


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_script_for_the_shell(
    shell: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_main(["completion", shell], capsys)
    assert code == 0
    assert "_LSQSYNC_COMPLETE" in out
    assert "lsqsync" in out


def test_completion_refuses_an_unknown_shell(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["completion", "tcsh"], capsys)
    assert code == 1
    assert out == ""
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish'" in err


@pytest.mark.parametrize(
    ("words", "cword", "offered"),
    [
        ("lsqsync sta", 1, "state"),
        ("lsqsync state s", 2, "show"),
        ("lsqsync completion ", 2, "zsh"),
    ],
)
def test_completion_round_trip_offers_commands(words: str, cword: int, offered: str) -> None:
    # What the bash script sends back to lsqsync on <TAB>: click's bash_complete protocol.
    env = {
        **os.environ,
        "_LSQSYNC_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(cword),
    }
    done = subprocess.run(LSQSYNC, capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert f"plain,{offered}" in done.stdout.splitlines()


def test_debug_is_lsqsyncs_own_option_not_an_argument_of_a_child_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(options: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("lsqsync.emulator.cli._make_emulator", boom)
    with pytest.raises(SystemExit) as exit_info:
        main(["emulator", "run", "--", "some-command", "--debug"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == (
        "unexpected error: RuntimeError: boom (run with --debug for the traceback)\n"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["--debug", "emulator", "run", "--", "some-command"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert err.startswith("Traceback (most recent call last):\n")
    assert err.endswith("RuntimeError: boom\n")


def test_an_output_encoding_that_cannot_show_a_character_escapes_it(
    connected: Emulator, tmp_path: Path
) -> None:
    import shutil

    root = Path(__file__).parent.parent
    shutil.copy(root / "lsqsync.yml", tmp_path / "lsqsync.yml")
    shutil.copytree(root / "rules", tmp_path / "rules")
    (tmp_path / "rules" / "arrow.yml").write_text(
        "version: 1\nrules:\n  - name: arrow-note\n    opportunity_type: 12003\n"
        '    ids: [DEAL-000002]\n    set: {mx_Custom_9: "call \u2192 Asha"}\n'
    )
    env = {**os.environ, "PYTHONIOENCODING": "latin-1"}
    done = subprocess.run(
        [*LSQSYNC, "plan", "--no-color", "--now", "2026-11-27 10:00:00"],
        capture_output=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert b"call \\u2192 Asha" in done.stdout  # escaped: the plan is all there
    assert done.stdout.rstrip().endswith(b"fields).")


def _groups(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            out += _groups(command, (*path, name))
    return out


@pytest.mark.parametrize("group", _groups(cli), ids=lambda g: " ".join(g) or "lsqsync")
def test_help_lists_every_command_with_a_whole_sentence(
    group: tuple[str, ...], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """click cuts a long first sentence at the terminal's width ("send 25..."): every line of
    every group's command list is a whole sentence instead, wrapped."""
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_main([*group, "--help"], capsys)
    assert code == 0
    listing = out.split("Commands:\n", 1)[1]
    entries = re.split(r"\n(?=  \S)", listing.rstrip("\n"))
    described = {e.split()[0]: " ".join(e.split()[1:]) for e in entries}
    assert described
    for name, text in described.items():
        assert "..." not in text, (name, text)
        assert text.endswith((".", ")")), (name, text)
        assert max(map(len, out.splitlines())) <= 80
