"""``lsqsync emulator serve`` and ``lsqsync emulator run``: the emulator as a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from types import FrameType
from typing import TextIO

from lsqsync.emulator.server import Emulator

# The variables lsqsync reads its host and keys from (README, "Set-up"). Named here again, not
# imported: the emulator shares no code with the client it checks.
ENV_HOST = "LSQ_HOST"
ENV_ACCESS_KEY = "LSQ_ACCESS_KEY"
ENV_SECRET_KEY = "LSQ_SECRET_KEY"  # noqa: S105 - the variable name, not a secret


def banner(emu: Emulator) -> str:
    return f"lsqsync emulator {emu.url} access_key={emu.access_key} secret_key={emu.secret_key}"


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def serve(emu: Emulator, out: TextIO) -> int:
    """Serve in the foreground until SIGINT or SIGTERM; then shut down cleanly."""
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    print(banner(emu), file=out, flush=True)
    try:
        emu.httpd.serve_forever(poll_interval=0.1)
    except _Stop:
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        emu.stop()
    return 0


def run(emu: Emulator, command: Sequence[str], err: TextIO) -> int:
    """Run ``command`` with LSQ_HOST and the demo keys pointing at a fresh emulator; return
    its exit code. The emulator stops when the command ends."""
    with emu:
        print(banner(emu), file=err, flush=True)
        env = {
            **os.environ,
            ENV_HOST: emu.url,
            ENV_ACCESS_KEY: emu.access_key,
            ENV_SECRET_KEY: emu.secret_key,
        }
        try:
            return subprocess.run(list(command), env=env, check=False).returncode  # noqa: S603
        except FileNotFoundError:
            print(f"error: command not found: {command[0]}", file=sys.stderr)
            return 127
