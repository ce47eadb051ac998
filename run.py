#!/usr/bin/env python3
"""Set up and run archbench with nothing but Python: ``python3 run.py bench`` or ``python3 run.py test``.

Creates ``.venv`` beside this file on first use (or uses $ARCHBENCH_VENV), installs the project into it
with pip, then runs

* ``bench``: ``pytest bench/ --benchmark-json=results/latest.json`` (the main job, on the embedded data;
  the smoke profile without CUDA), extra arguments passed on to pytest;
* ``test``:  ``pytest tests/``, extra arguments passed on to pytest.

The install is skipped when pyproject.toml has not changed since the last one.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _venv() -> Path:
    return Path(os.environ.get("ARCHBENCH_VENV", ROOT / ".venv"))


def _python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_installed() -> Path:
    env = _venv()
    python = _python(env)
    if not python.exists():
        print(f"run.py: creating {env}", flush=True)
        venv.EnvBuilder(with_pip=True).create(env)
    stamp = env / ".archbench-installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        print("run.py: installing archbench and its dependencies (torch is large: a few minutes)", flush=True)
        subprocess.run([python, "-m", "pip", "install", "--upgrade", "pip"], check=True)
        subprocess.run([python, "-m", "pip", "install", "-e", str(ROOT)], check=True)
        stamp.write_text(digest)
    return python


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("bench", "test"):
        print(__doc__, file=sys.stderr)
        return 2
    python = ensure_installed()
    what, rest = argv[0], argv[1:]
    if what == "bench":
        (ROOT / "results").mkdir(exist_ok=True)
        has_json = any(a.startswith("--benchmark-json") for a in rest)
        cmd = [python, "-m", "pytest", "bench/", *([] if has_json else ["--benchmark-json=results/latest.json"]), *rest]
    else:
        cmd = [python, "-m", "pytest", "tests/", *rest]
    return subprocess.run(cmd, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
