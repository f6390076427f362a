"""Run each example script with ``--smoke`` (a few steps) in a fresh interpreter.

Every example takes ``--smoke``. Add a glob pattern to ``PATTERNS`` to include more of them.
"""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: Glob patterns (relative to ``examples/``) of the scripts run here.
PATTERNS = ["deck_*.py"]

SCRIPTS = sorted({path for pattern in PATTERNS for path in EXAMPLES.glob(pattern)})


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_example_smoke(script, tmp_path):
    result = subprocess.run(
        [sys.executable, str(script), "--smoke"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{script.name} failed:\n{result.stdout}\n{result.stderr}"
