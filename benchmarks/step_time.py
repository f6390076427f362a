"""SVI step time of each pyrodiv loss as a ratio to Pyro's Trace_ELBO, in one process.

Model: Bayesian linear regression, 10 features, N = 1000 observations, AutoNormal guide,
64 vectorized particles. Runs are interleaved (one step of each loss in turn) with
``torch.set_num_threads(1)``, and the median step time is reported.

    python benchmarks/step_time.py [--steps 200] [--particles 64] [--out benchmarks/step_time.md]
"""

import argparse
import statistics
import time

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal

import pyrodiv


def regression(X, y=None):
    beta = pyro.sample("beta", dist.Normal(X.new_zeros(X.shape[-1]), 1.0).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfNormal(X.new_tensor(1.0)))
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", dist.Normal((X * beta[..., None, :]).sum(-1), sigma[..., None]), obs=y)


def main(args):
    torch.set_num_threads(1)
    pyro.set_rng_seed(0)
    X = torch.randn(1000, 10)
    y = (X * torch.linspace(-1, 1, 10)).sum(-1) + 0.5 * torch.randn(1000)
    kw = {"num_particles": args.particles, "vectorize_particles": True, "max_plate_nesting": 1}
    losses = {
        "Trace_ELBO": Trace_ELBO(**kw),
        "ReverseKL": pyrodiv.ReverseKL(**kw),
        "ForwardKL": pyrodiv.ForwardKL(**kw),
        "FDivergence(squared_hellinger)": pyrodiv.FDivergence("squared_hellinger", **kw),
        "JensenShannon": pyrodiv.JensenShannon(**kw),
    }
    runs = {}
    for name, loss in losses.items():
        pyro.clear_param_store()
        guide = AutoNormal(regression)
        svi = SVI(regression, guide, pyro.optim.Adam({"lr": 0.01}), loss=loss)
        svi.step(X, y)
        runs[name] = (svi, [])
    for _ in range(args.steps):
        for svi, times in runs.values():
            start = time.perf_counter()
            svi.step(X, y)
            times.append(time.perf_counter() - start)
    base = statistics.median(runs["Trace_ELBO"][1])
    lines = [
        f"Step time, 10-D regression, N=1000, {args.particles} vectorized particles, "
        f"median of {args.steps} interleaved steps, 1 thread.",
        "",
        "| loss | ms / step | ratio to Trace_ELBO |",
        "|---|---|---|",
    ]
    for name, (_, times) in runs.items():
        median = statistics.median(times)
        lines.append(f"| {name} | {1000 * median:.2f} | {median / base:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(table + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--particles", type=int, default=64)
    parser.add_argument("--out", default="")
    main(parser.parse_args())
