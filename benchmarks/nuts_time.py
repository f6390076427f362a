r"""NUTS wall time and ESS per second: ``pyrodiv.run_nuts`` (compiled and not) against NumPyro.

Two models, one chain each, the same warmup and draws, one torch thread, in one process:

- eight schools (non-centred, the classic data; 10 latent dimensions);
- the 10-D Bayesian linear regression of ``step_time.py`` (N = 1000).

For every sampler the table gives the wall time of the whole run (warmup and draws, compiling
included), the smallest bulk ESS over the scalar variables, and that ESS per second. NumPyro
(optional: ``pip install numpyro``) is skipped with a note when it is absent; its first run of
a model includes JAX's compilation, as a user's first run does.

``run_nuts`` compiles the potential energy with ``jit_compile=True`` where
:func:`pyrodiv.inference.baselines.jit_is_safe` allows it; the ``uncompiled`` rows pass
``kernel_kwargs={"jit_compile": False}``.

Example::

    python benchmarks/nuts_time.py --quick
"""

from __future__ import annotations

import logging
import sys
import time

import pyro
import torch
from common import arguments, command_line, markdown_table, regression, regression_data, setup

from pyrodiv.inference.arviz_adapter import summary, to_inference_data
from pyrodiv.inference.baselines import run_nuts
from pyrodiv.zoo.models import eight_schools_noncentered

SIGMA = [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]
Y = [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0]


def _min_ess(idata) -> float:
    return float(summary(idata, kind="diagnostics")["ess_bulk"].min())


def _pyro_run(model, args, kwargs, warmup, draws, jit: bool):
    began = time.perf_counter()
    idata = run_nuts(
        model,
        *args,
        num_samples=draws,
        warmup_steps=warmup,
        seed=0,
        kernel_kwargs={"jit_compile": jit},
        **kwargs,
    )
    return time.perf_counter() - began, _min_ess(idata)


def _numpyro_models():
    import numpyro
    import numpyro.distributions as nd

    def eight_schools(J, sigma, y):
        mu = numpyro.sample("mu", nd.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", nd.HalfCauchy(5.0))
        with numpyro.plate("schools", J):
            theta_trans = numpyro.sample("theta_trans", nd.Normal(0.0, 1.0))
            numpyro.sample("y", nd.Normal(mu + tau * theta_trans, sigma), obs=y)

    def linear(X, y):
        beta = numpyro.sample("beta", nd.Normal(0.0, 1.0).expand([X.shape[-1]]).to_event(1))
        sigma = numpyro.sample("sigma", nd.HalfNormal(1.0))
        with numpyro.plate("data", X.shape[0]):
            numpyro.sample("y", nd.Normal((X * beta).sum(-1), sigma), obs=y)

    return eight_schools, linear


def _numpyro_runs(model, args, warmup, draws) -> dict:
    """The first run (JAX compiles the sampler) and a second run of the same ``MCMC`` object
    with a new key (the compiled sampler is reused)."""
    import jax
    import numpy as np
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(NUTS(model), num_warmup=warmup, num_samples=draws, progress_bar=False)
    out = {}
    for label, key in (("NumPyro NUTS", 0), ("NumPyro NUTS (second run)", 1)):
        began = time.perf_counter()
        mcmc.run(jax.random.PRNGKey(key), *args)
        samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
        seconds = time.perf_counter() - began
        out[label] = seconds, _min_ess(to_inference_data(samples))
    return out


def main(argv=None):
    parser = arguments(__doc__, "nuts_time.md", budget=0.0)
    args = parser.parse_args(argv)
    setup()
    logging.getLogger("arviz").setLevel(logging.ERROR)  # one chain: no R-hat, on purpose
    warmup, draws = (100, 100) if args.quick else (1000, 1000)
    X, y = regression_data()
    problems = {
        "eight schools": (
            eight_schools_noncentered,
            (),
            {"J": 8, "sigma": torch.tensor(SIGMA), "y": torch.tensor(Y)},
        ),
        "regression (10-D, N=1000)": (regression, (X, y), {}),
    }
    try:
        eight_np, linear_np = _numpyro_models()
        import jax

        jax.config.update("jax_enable_x64", torch.get_default_dtype() == torch.float64)
        numpyro_args = {
            "eight schools": (eight_np, (8, jax.numpy.array(SIGMA), jax.numpy.array(Y))),
            "regression (10-D, N=1000)": (
                linear_np,
                (jax.numpy.asarray(X.numpy()), jax.numpy.asarray(y.numpy())),
            ),
        }
        note = ""
    except ImportError:
        numpyro_args, note = {}, "NumPyro is not installed: its rows are skipped.\n\n"
    rows = []
    for name, (model, margs, mkwargs) in problems.items():
        timed = {}
        for label, jit in (("run_nuts (compiled)", True), ("run_nuts (uncompiled)", False)):
            pyro.clear_param_store()
            timed[label] = _pyro_run(model, margs, mkwargs, warmup, draws, jit)
        if name in numpyro_args:
            timed.update(_numpyro_runs(*numpyro_args[name], warmup, draws))
        base = timed.get("NumPyro NUTS", timed["run_nuts (compiled)"])[0]
        for label, (seconds, ess) in timed.items():
            rows.append(
                [
                    name,
                    label,
                    f"{seconds:.1f}",
                    f"{seconds / base:.2f}",
                    f"{ess:.0f}",
                    f"{ess / seconds:.1f}",
                ]
            )
            print(rows[-1], flush=True)
    versions = f"torch {torch.__version__}, pyro {pyro.__version__}"
    try:
        import jax
        import numpyro

        versions += f", numpyro {numpyro.__version__}, jax {jax.__version__}"
    except ImportError:
        pass
    body = (
        f"Regenerate: `{command_line()}`\n\n"
        f"One chain, {warmup} warmup + {draws} draws, seed 0, one torch thread, float32 "
        f"({versions}; x86_64, a 2-core machine shared with other work: the seconds are "
        "rough, the ratios more stable). Time: the whole run, compiling included. x base: the "
        "time over NumPyro's on the same model (over compiled run_nuts's without NumPyro). "
        "ESS: the smallest bulk ESS over the scalar variables.\n\n"
        + note
        + markdown_table(["model", "sampler", "s", "x base", "min ESS", "ESS / s"], rows)
        + "\n"
    )
    with open(args.out, "w") as out:
        out.write("# NUTS: run_nuts against NumPyro\n\n" + body)


if __name__ == "__main__":
    sys.exit(main())
