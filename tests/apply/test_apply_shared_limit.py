"""Two `lsqsync apply` processes of two rule repositories against one account, started
together: they share one budget through the ledger, and the account refuses none of their
calls. Real processes, a real emulator, a real ledger file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from lsqsync.cli import main
from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings

# 4 per 5 s, scaled to 2 s: the margin is then 0.1 s, as against a real account, which a busy
# machine's scheduling noise does not reach
CALLS, WINDOW = 4, 2.0


def project(root: Path, code: int) -> Path:
    (root / "rules").mkdir(parents=True)
    (root / "lsqsync.yml").write_text(
        f"version: 1\nrate_limit: {{calls: {CALLS}, per_seconds: {WINDOW}}}\n"
        "safety: {max_changes: 100000, max_change_ratio: 1}\n"
    )
    (root / "rules" / "stamp.yml").write_text(
        f"version: 1\nrules:\n  - name: stamp-{code}\n    opportunity_type: {code}\n"
        f"    set: {{mx_Custom_9: 'stamped by the {code} project'}}\n"
    )
    return root


@pytest.mark.slow
def test_two_applies_started_together_share_the_accounts_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(rate_limit_calls=CALLS, rate_limit_seconds=WINDOW)
    with Emulator(opportunities=100, settings=settings) as emu:
        monkeypatch.setenv("LSQ_HOST", emu.url)
        monkeypatch.setenv("LSQ_ACCESS_KEY", DEMO_ACCESS_KEY)
        monkeypatch.setenv("LSQ_SECRET_KEY", DEMO_SECRET_KEY)
        roots = [project(tmp_path / str(code), code) for code in (12000, 12003)]
        for root in roots:
            with pytest.raises(SystemExit) as planned:
                main(["plan", "--config", str(root), "--out", str(root / "p.json")])
            assert planned.value.code == 0
        capsys.readouterr()
        time.sleep(WINDOW)  # the plans' calls leave the window
        requests.delete(emu.url + "/_emulator/requests", timeout=5).raise_for_status()

        applies = [
            subprocess.Popen(
                [sys.executable, "-m", "lsqsync", "apply", "p.json"],
                cwd=root,
                env=os.environ,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for root in roots
        ]
        outputs = [proc.communicate(timeout=60) for proc in applies]
        log = requests.get(emu.url + "/_emulator/requests", timeout=5).json()["requests"]

    for proc, (out, err) in zip(applies, outputs, strict=True):
        assert proc.returncode == 0, (out, err)
        assert " 0 refused for the rate limit)" in out
        assert "WARNING" not in err
    assert [e for e in log if e["rate_limited"]] == []
    arrivals = sorted(float(e["arrived_at"]) for e in log)
    # per process: metadata, the re-read, 3 batches, reading back what they wrote
    assert len(arrivals) == 2 * (2 + 3 + 1)
    # the two ran at the same time: each one's first call came before the other's last
    firsts = [
        min(float(e["arrived_at"]) for e in log if e["query"].get("code") == str(code))
        for code in (12000, 12003)
    ]
    assert max(firsts) < arrivals[-1] - WINDOW
    # and together they kept to the account's window
    assert all(arrivals[i + CALLS] - arrivals[i] > WINDOW for i in range(len(arrivals) - CALLS))
