r"""MCMC kernels next to the divergences on eight schools: accuracy and effective draws per second.

Each MCMC kernel of :func:`pyrodiv.inference.mcmc_kernels.run_mcmc` (NUTS, HMC, random-walk
MH; one chain of ``--warmup`` + ``--draws``) and each divergence through
:func:`pyrodiv.approximate` (1000 guide draws) is scored against posteriordb's reference draws
with :func:`pyrodiv.compare_posteriors`: the worst-variable W1 and the sd-ratio range in
reference sds. For the chains, the smallest bulk ESS over the scalar variables (ArviZ, through
the adapter) per second of sampling; a fit's draws are independent, so its ESS per second is
its draws over its fitting time. Writes ``kernels_and_divergences.md``::

    python benchmarks/kernels_and_divergences.py [--draws 1000 --warmup 1000]
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings
from pathlib import Path

import torch

import pyrodiv
from pyrodiv.inference import arviz_adapter
from pyrodiv.inference.approximate import approximate
from pyrodiv.inference.mcmc_kernels import run_mcmc
from pyrodiv.inference.output import num, table
from pyrodiv.zoo.comparison import (
    REFERENCE_DRAWS_PER_CHAIN,
    _posteriordb_idata,
    resolve_model,
    summarize_by_method,
)

OUT = Path(__file__).resolve().parent / "results"


def _min_bulk_ess(idata) -> float:
    table_ = arviz_adapter.summary(idata, kind="diagnostics")
    return float(table_["ess_bulk"].min())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="eight_schools")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--kernels", default="nuts,hmc,rwmh")
    parser.add_argument("--divergences", default="reverse_kl,forward_kl,jensen_shannon")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    entry = resolve_model(args.model)
    kwargs = entry.kwargs(None, torch.float64)
    idatas = {
        "posteriordb": _posteriordb_idata(
            entry, entry.model, kwargs, None, REFERENCE_DRAWS_PER_CHAIN
        )
    }
    ess_per_s, seconds = {}, {}
    for kernel in args.kernels.split(","):
        began = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = run_mcmc(
                entry.model, kernel=kernel, num_samples=args.draws, warmup_steps=args.warmup,
                seed=0, **kwargs,
            )  # fmt: skip
        seconds[kernel] = time.perf_counter() - began
        idatas[kernel] = idata
        ess_per_s[kernel] = _min_bulk_ess(idata) / seconds[kernel]
        print(kernel, round(seconds[kernel], 1), round(ess_per_s[kernel], 1), flush=True)
    for divergence in args.divergences.split(","):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = approximate(
                entry.model, divergence=divergence, model_kwargs=kwargs, progress=False
            )
            idatas[divergence] = fit.to_inference_data(1000)
        seconds[divergence] = fit.seconds
        ess_per_s[divergence] = 1000 / fit.seconds
        print(divergence, round(fit.seconds, 1), flush=True)
    summary = summarize_by_method(
        pyrodiv.compare_posteriors(idatas, reference="posteriordb")
    ).set_index("method")
    rows = [
        [method, num(summary.loc[method, "w1_max"], 3),
         f"{num(summary.loc[method, 'sd_ratio_min'], 2)} / "
         f"{num(summary.loc[method, 'sd_ratio_max'], 2)}",
         num(seconds[method], 1), num(ess_per_s[method], 1)]
        for method in seconds
    ]  # fmt: skip
    text = (
        f"# MCMC kernels next to the divergences on {entry.name}\n\n"
        f"Regenerate: `python benchmarks/kernels_and_divergences.py --draws {args.draws} "
        f"--warmup {args.warmup}`\n\n"
        f"One chain of {args.warmup} warmup + {args.draws} draws per kernel (NUTS and HMC "
        "compiled where safe), `approximate` with its defaults per divergence; seed 0, "
        f"float64, one torch thread ({platform.machine()}, a 2-core machine shared with other "
        "work: the seconds are rough). W1 and sd ratios in reference sds against posteriordb's "
        "draws. ESS / s: the smallest bulk ESS over the scalar variables per second of "
        "sampling (a fit: its 1000 independent draws per second of fitting).\n\n"
        + table(["method", "W1 max", "sd ratio min / max", "seconds", "ESS / s"], rows)
        + "\n"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kernels_and_divergences.md").write_text(text)
    print(f"wrote {out / 'kernels_and_divergences.md'}")


if __name__ == "__main__":
    main()
