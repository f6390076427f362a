"""benchmarks/gpu.py runs end to end on the CPU at toy size, and refuses a missing CUDA device
with a message (the GPU measurement itself needs a GPU machine)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_quick_cpu_run_writes_every_row(tmp_path):
    out = tmp_path / "gpu.md"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--no-numpyro"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = out.read_text()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()}
    names = ["Trace_ELBO", "JitTrace_ELBO", "ReverseKL", "ForwardKL", "JensenShannon"]
    names += [f"{n} (compiled)" for n in ("ReverseKL", "ForwardKL", "JensenShannon")]
    for name in names:
        cells = rows[name].strip("| ").split(" | ")
        # two K values: two positive ms cells, then two ratios with their intervals
        assert all(float(c) > 0 for c in cells[1:3]), rows[name]
        for ratio in cells[3:5]:
            median, low, high = map(float, re.findall(r"[\d.]+", ratio))
            assert 0 < low <= median <= high, rows[name]
    assert rows["JitTrace_ELBO"].count("1.00 [1.00, 1.00]") == 2  # the reference
    nuts = rows["pyrodiv.run_nuts (Pyro NUTS)"].strip("| ").split(" | ")
    assert nuts[1] == "cpu" and float(nuts[2]) > 0, nuts


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present: the script would run")
def test_without_cuda_it_stops_with_a_message():
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120, env=ENV
    )
    assert result.returncode == 1
    assert "no CUDA device" in result.stderr and "--device cpu --quick" in result.stderr
