r"""SVI step time on a GPU: pyrodiv's losses, uncompiled and compiled, against Pyro's
``Trace_ELBO`` and ``JitTrace_ELBO``; and NUTS through ``pyrodiv.run_nuts`` against NumPyro.

The model is :func:`common.regression` (Bayesian linear regression, 10 features) with
N = 100,000 observations and an ``AutoNormal`` guide, every tensor on the device. One step is
``loss_and_grads`` plus an Adam step with K vectorized particles (K = 64, 1024, 8192),
followed by ``torch.cuda.synchronize()`` so that the time covers the kernels and not only
their launch. The candidates of one K are timed interleaved in one process (:mod:`common`);
ratios are medians of per-round paired ratios to ``JitTrace_ELBO`` [95% interval], the
reference of the project's GPU goal (every compiled loss at most 1.0x ``JitTrace_ELBO``). A
candidate that runs out of device memory is reported as such and left out of its group.

NUTS: ``pyrodiv.run_nuts`` (Pyro's NUTS, one chain) and, when NumPyro is installed,
NumPyro's NUTS on the same model and data (on JAX's default backend: a GPU with
``jax[cuda]``, else the CPU), wall time including compilation.

Without CUDA the script stops with a message; ``--device cpu --quick`` runs the whole script
on the CPU at a toy size in seconds (a smoke test, not a measurement)::

    python benchmarks/gpu.py                          # on a CUDA machine, ~10 minutes
    python benchmarks/gpu.py --device cpu --quick     # smoke run, prints only
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings

import numpyro_steps
import pyro
import torch
from common import (
    RESULTS,
    interleave,
    make_step,
    markdown_table,
    ms,
    ratio_summary,
    regression,
    regression_data,
    setup,
    write_results,
)
from common import Problem as _Problem
from pyro.infer import JitTrace_ELBO, Trace_ELBO

import pyrodiv

try:  # the compiled path; its rows are skipped where this checkout lacks it
    from pyrodiv.divergences.compiled import compile as compile_loss
except ImportError:
    compile_loss = None

REFERENCE = "JitTrace_ELBO"
#: The pyrodiv losses of the table.
OURS = {
    "ReverseKL": pyrodiv.ReverseKL,
    "ForwardKL": pyrodiv.ForwardKL,
    "JensenShannon": pyrodiv.JensenShannon,
}


def arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="toy sizes, seconds (smoke run)")
    parser.add_argument("--n", type=int, default=None, help="observations (100000)")
    parser.add_argument(
        "--particles", type=int, nargs="+", default=None, help="K values (64 1024 8192)"
    )
    parser.add_argument("--budget", type=float, default=None, help="seconds per K (20)")
    parser.add_argument("--nuts-steps", type=int, default=None, help="NUTS warmup = draws (500)")
    parser.add_argument("--no-nuts", action="store_true", help="skip the NUTS comparison")
    parser.add_argument("--no-numpyro", action="store_true", help="leave NumPyro out")
    parser.add_argument(
        "--out",
        default=None,
        help="markdown file (default: benchmarks/results/gpu.md on a CUDA run; a --quick run "
        "writes nothing unless given)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.n = args.n or (500 if quick else 100_000)
    args.particles = args.particles or ([4, 16] if quick else [64, 1024, 8192])
    args.budget = args.budget if args.budget is not None else (0.2 if quick else 20.0)
    args.nuts_steps = args.nuts_steps or (10 if quick else 500)
    if args.out is None and not quick and args.device.startswith("cuda"):
        args.out = str(RESULTS / "gpu.md")
    return args


def check_device(device: str) -> torch.device:
    """The device, or ``SystemExit`` with a message when CUDA is asked for and absent."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "benchmarks/gpu.py: no CUDA device here (torch.cuda.is_available() is False). Run "
            "it on a machine with a CUDA GPU, or smoke-test it on the CPU with "
            "`python benchmarks/gpu.py --device cpu --quick`."
        )
    if device.type not in ("cuda", "cpu"):
        raise SystemExit(f"benchmarks/gpu.py: --device must be cuda or cpu, got {device}")
    return device


def synchronized(step, device: torch.device):
    """``step`` followed by a device synchronization (a no-op on the CPU)."""
    if device.type != "cuda":
        return step

    def run():
        out = step()
        torch.cuda.synchronize(device)
        return out

    return run


def losses(k: int) -> dict[str, object]:
    """Every candidate of the table at ``k`` particles (fresh instances)."""
    kw = {"num_particles": k, "vectorize_particles": True}
    out = {"Trace_ELBO": Trace_ELBO(**kw), REFERENCE: JitTrace_ELBO(**kw)}
    out.update({name: make(**kw) for name, make in OURS.items()})
    if compile_loss is not None:
        out.update({f"{name} (compiled)": compile_loss(make(**kw)) for name, make in OURS.items()})
    return out


def _out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error)


def time_group(problem, k: int, device, args) -> tuple[dict, dict]:
    """Timings of every candidate at ``k`` particles, and the candidates left out (why)."""
    setup(0)
    steps, left_out = {}, {}
    for name, loss in losses(k).items():
        step = synchronized(make_step(problem, loss, f"{name}.{k}"), device)
        try:
            step()  # set-up, recording, first compilation
        except Exception as error:  # noqa: BLE001 - reported in the table
            if not _out_of_memory(error):
                raise
            left_out[name] = "out of device memory"
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        steps[name] = step
    timings = interleave(steps, budget_s=args.budget, min_rounds=3 if args.quick else 10)
    return timings, left_out


def svi_table(args, device) -> tuple[str, list[str]]:
    """The step-time tables: ms per step and the ratio to JitTrace_ELBO, per K."""
    X, y = regression_data(args.n)
    problem = _Problem(f"regression (10-D, N={args.n})", regression, (X.to(device), y.to(device)))
    notes = []
    results = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for k in args.particles:
            results[k] = time_group(problem, k, device, args)
            t, _ = results[k]
            print(f"\nK={k} ({len(t[REFERENCE])} rounds)")
            for name, v in t.items():
                print(f"  {name:28s} {ms(v):>9s} ms  x{ratio_summary(t, name, REFERENCE)}")
    for text in sorted({str(w.message) for w in caught if "pyrodiv.compile:" in str(w.message)}):
        notes.append(f"- fell back: {text}")
    names = list(losses(args.particles[0]))
    rows = []
    for name in names:
        row = [name]
        for k in args.particles:
            t, left = results[k]
            row.append(left.get(name, ms(t[name]) if name in t else "-"))
        for k in args.particles:
            t, left = results[k]
            row.append(str(ratio_summary(t, name, REFERENCE)) if name in t else "-")
        rows.append(row)
    header = (
        ["loss"]
        + [f"ms, K={k}" for k in args.particles]
        + [f"x {REFERENCE}, K={k}" for k in args.particles]
    )
    rounds = ", ".join(f"K={k}: {len(results[k][0][REFERENCE])}" for k in args.particles)
    text = f"## SVI step, {problem.name}, AutoNormal\n\nRounds: {rounds}.\n\n"
    return text + markdown_table(header, rows), notes


def nuts_table(args, device) -> str:
    """Wall time of ``pyrodiv.run_nuts`` and NumPyro's NUTS on the regression."""
    X, y = regression_data(args.n)
    X, y = X.to(device), y.to(device)
    steps = args.nuts_steps
    rows = []
    setup(0)
    start = time.perf_counter()
    try:
        pyrodiv.run_nuts(regression, X, y, num_samples=steps, warmup_steps=steps, seed=0)
        rows.append(
            ["pyrodiv.run_nuts (Pyro NUTS)", str(device), f"{time.perf_counter() - start:.1f}"]
        )
    except Exception as error:  # noqa: BLE001 - reported in the table
        rows.append(["pyrodiv.run_nuts (Pyro NUTS)", str(device), f"failed: {error}"])
    ok, why = numpyro_steps.available()
    if ok and not args.no_numpyro:
        import jax

        start = time.perf_counter()
        numpyro_steps.nuts("regression", steps, steps, n=args.n)
        rows.append(["NumPyro NUTS", jax.default_backend(), f"{time.perf_counter() - start:.1f}"])
    elif not ok:
        rows.append(["NumPyro NUTS", "-", why])
    head = f"## NUTS, {steps} warmup and {steps} draws, one chain, N={args.n}\n\n"
    return head + markdown_table(["sampler", "device", "wall s (with compilation)"], rows)


def machine(device) -> str:
    """The machine, in one line."""
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
        cuda = f", CUDA {torch.version.cuda}"
    else:
        what, cuda = f"CPU ({platform.processor() or platform.machine()})", ""
    extra = f", {numpyro_steps.versions()}" if numpyro_steps.available()[0] else ""
    return f"{what}; torch {torch.__version__}{cuda}, pyro {pyro.__version__}{extra}"


def main(argv=None):
    args = arguments(argv)
    device = check_device(args.device)
    torch.set_num_threads(1 if device.type == "cpu" else torch.get_num_threads())
    sections = [f"Machine: {machine(device)}."]
    table, notes = svi_table(args, device)
    sections.append(table)
    if notes:
        sections.append("The compiled path fell back here:\n\n" + "\n".join(notes))
    if not args.no_nuts:
        sections.append(nuts_table(args, device))
    text = "\n\n".join(sections)
    print("\n" + text)
    if args.out:
        path = write_results(args.out, "GPU step time", text)
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
