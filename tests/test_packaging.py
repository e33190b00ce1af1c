"""The wheel carries the schemas and templates: build it, install it in a fresh venv, run it."""

from __future__ import annotations

import json
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from lsqsync import __version__

ROOT = Path(__file__).parents[1]


def run(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=False, cwd=cwd
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_the_wheel_installs_and_reads_its_schemas(tmp_path: Path) -> None:
    # No build isolation and no index: the build backend is already in the dev environment,
    # and the suite must not depend on the network.
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-w",
        tmp_path / "dist",
        ROOT,
    )
    (wheel,) = (tmp_path / "dist").glob("lsqsync-*.whl")
    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--quiet",
        "--no-deps",
        "--no-index",
        wheel,
    )
    # The runtime dependencies come from this environment; lsqsync itself only from the wheel.
    target = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    )
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (target / "zz_dev_dependencies.pth").write_text("\n".join(deps) + "\n")

    where = run(python, "-c", "import lsqsync; print(lsqsync.__file__)", cwd=tmp_path).strip()
    assert Path(where).is_relative_to(env)
    version = run(env / "bin" / "lsqsync", "--version", cwd=tmp_path)
    assert version.startswith(f"lsqsync {__version__} (")
    schema = json.loads(run(env / "bin" / "lsqsync", "schema", "rules", cwd=tmp_path))
    assert schema["title"] == "lsqsync rule file"
    # the templates of `lsqsync init` are package data too
    run(env / "bin" / "lsqsync", "init", "repo", cwd=tmp_path)
    workflow = tmp_path / "repo" / ".github" / "workflows" / "lsqsync.yml"
    assert f'LSQSYNC_VERSION: "{__version__}"' in workflow.read_text()
    assert run(env / "bin" / "lsqsync", "validate", cwd=tmp_path / "repo").startswith("valid:")
