r"""Throughput of mini-batch training on PyTorch Lightning: 2 DDP processes against 1.

Runs ``examples/svi_lightning.py`` (the conjugate Normal mean, :math:`N = 10^6`, ReverseKL,
``AutoNormal``) in fresh interpreters, for each mini-batch size:

* 1 process, 1 torch thread;
* 1 process, ``--threads`` torch threads (all the cores one process may use);
* 2 DDP processes (gloo on CPU, ``strategy="ddp"``), 1 torch thread each.

Throughput is observations per second of training, all processes together (the first epoch,
which pays for start-up, is left out). The configurations are interleaved, round after round
in a shuffled order, so that a change of load on a shared machine hits them all alike; each
round gives a paired ratio to the 1-process, 1-thread run of the same round, and the table
reports the median throughput and the median ratio over the rounds.

Regenerate with::

    python benchmarks/lightning_throughput.py              # CPU, N = 10**6
    python benchmarks/lightning_throughput.py --quick      # a smoke run
    python benchmarks/lightning_throughput.py --accelerator gpu --devices-list 1 2 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "svi_lightning.py"
RESULTS = Path(__file__).resolve().parent / "results"


def run_one(size, batch, epochs, devices, threads, accelerator) -> dict:
    """One training run of the example in a fresh interpreter; its JSON result."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    cmd = [sys.executable, str(EXAMPLE), "--size", str(size), "--batch-size", str(batch)]
    cmd += ["--epochs", str(epochs), "--devices", str(devices), "--threads", str(threads)]
    cmd += ["--accelerator", accelerator]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def machine(accelerator: str) -> str:
    import lightning
    import torch

    cores = os.cpu_count()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    text = (
        f"{platform.machine()} {platform.processor() or ''} Linux, {cores} CPU core(s) "
        f"visible (shared with other work), torch {torch.__version__}, lightning "
        f"{lightning.__version__}, Python {platform.python_version()}"
    )
    if accelerator == "gpu" and torch.cuda.is_available():
        text += f", GPU: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 10**5, one round")
    parser.add_argument("--size", type=int, default=10**6)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--epochs", type=int, default=3, help="the first is not timed")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="threads of the 1-process row")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--devices-list", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS / "lightning.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.rounds, args.epochs = 10**5, 1, 2
    configs = []
    for batch in args.batch_sizes:
        for devices in args.devices_list:
            configs.append((batch, devices, 1))
            if devices == 1 and args.threads > 1 and args.accelerator == "cpu":
                configs.append((batch, 1, args.threads))
    rates = {c: [] for c in configs}
    ratios = {c: [] for c in configs}
    rng = random.Random(0)
    start = time.time()
    for r in range(args.rounds):
        order = configs[:]
        rng.shuffle(order)
        got = {}
        for batch, devices, threads in order:
            res = run_one(args.size, batch, args.epochs, devices, threads, args.accelerator)
            got[(batch, devices, threads)] = res["obs_per_s"]
            print(
                f"round {r} batch {batch} devices {devices} threads {threads}: "
                f"{res['obs_per_s']:.4g} obs/s, loc error {res['loc_error_in_sd']:+.2f} sd",
                flush=True,
            )
        for c in configs:
            rates[c].append(got[c])
            ratios[c].append(got[c] / got[(c[0], args.devices_list[0], 1)])
    lines = [
        "# Lightning throughput: DDP processes against one",
        "",
        "Regenerate with:",
        "",
        "```bash",
        "python benchmarks/lightning_throughput.py " + " ".join(argv or sys.argv[1:]),
        "```",
        "",
        f"Machine: {machine(args.accelerator)}.",
        "",
        f"Model: `examples/svi_lightning.py`, the conjugate Normal mean with N = {args.size:,} "
        "observations, `ReverseKL` (1 particle), `AutoNormal`, Adam; accelerator "
        f'`{args.accelerator}`, `strategy="ddp"` (gloo on CPU) for several processes. '
        f"{args.epochs} epochs per run, the first not timed; {args.rounds} interleaved "
        f"round(s), {time.time() - start:.0f} s in all. Throughput is observations per "
        "second of training, all processes together; the ratio is to the 1-process, "
        "1-thread run of the same round (medians over rounds).",
        "",
        "| batch per process | processes | threads each | obs/s | x 1 process |",
        "|---|---|---|---|---|",
    ]
    for c in configs:
        batch, devices, threads = c
        lines.append(
            f"| {batch:,} | {devices} | {threads} | {statistics.median(rates[c]):,.0f} | "
            f"{statistics.median(ratios[c]):.2f} |"
        )
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.quick and args.out == RESULTS / "lightning.md":
        print(text)
    else:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return text


if __name__ == "__main__":
    main()
