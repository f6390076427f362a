r"""Shared pieces of the speed benchmarks: the models, SVI set-up, interleaved timing and
markdown output.

Timing on a shared machine: every comparison is run in one process with
``torch.set_num_threads(1)``, and the candidates are **interleaved** (round after round, one
block of steps of each candidate in a shuffled order), so that a change of load hits them all
alike. Each round gives a paired ratio :math:`r_i = t_i / t^{\mathrm{base}}_i` to the baseline
timed in the same round; reported is the median of the :math:`r_i` with a distribution-free 95%
confidence interval for that median (order statistics :math:`n/2 \pm 0.98\sqrt n`).

The scripts beside this module import it as ``common`` (``python benchmarks/<script>.py``
puts this folder first on ``sys.path``).

Example::

    >>> from common import interleave, ratio_summary                    # doctest: +SKIP
    >>> timings = interleave({"a": lambda: None, "b": lambda: None}, budget_s=1.0)
    >>> ratio_summary(timings, "a", "b").median                         # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI
from pyro.infer.autoguide import AutoNormal
from torch.distributions import constraints

RESULTS = Path(__file__).resolve().parent / "results"

#: The talk's bimodal target: N(-7, var 1.4) and N(7, var 1.4), equal weights.
BIMODAL_LOC = 7.0
BIMODAL_VAR = 1.4


def setup(seed: int = 0) -> None:
    """One torch thread (timings on a shared machine) and fixed seeds."""
    torch.set_num_threads(1)
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()


def arguments(doc: str, out_name: str, budget: float) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--quick``, ``--budget`` (seconds of interleaved
    timing per group) and ``--out`` (default ``benchmarks/results/<out_name>``)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--budget", type=float, default=budget, help="seconds per group")
    parser.add_argument("--out", default=str(RESULTS / out_name), help="markdown file")
    return parser


def command_line() -> str:
    """The command that was run, to put at the top of a results file."""
    return " ".join(["python"] + [shlex.quote(a) for a in sys.argv])


# ---- models ------------------------------------------------------------------------------


def bimodal():
    r"""Prior target: :math:`\tfrac12 N(-7, 1.4) + \tfrac12 N(7, 1.4)` (variances)."""
    loc = torch.tensor([-BIMODAL_LOC, BIMODAL_LOC])
    components = dist.Normal(loc, torch.full((2,), BIMODAL_VAR).sqrt())
    pyro.sample("x", dist.MixtureSameFamily(dist.Categorical(torch.ones(2)), components))


def normal_guide(tag: str) -> Callable[[], None]:
    """The talk's approximation of the bimodal target: a learnable Normal on ``x``, with
    parameters named ``<tag>.loc`` and ``<tag>.scale``."""

    def guide():
        loc = pyro.param(f"{tag}.loc", torch.tensor(0.0))
        scale = pyro.param(f"{tag}.scale", torch.tensor(3.0), constraint=constraints.positive)
        pyro.sample("x", dist.Normal(loc, scale))

    return guide


def regression(X, y=None, subsample_size=None):
    r"""Posterior target: Bayesian linear regression,
    :math:`\beta\sim N(0, I)`, :math:`\sigma\sim\mathrm{HalfNormal}(1)`,
    :math:`y_n\sim N(x_n^\top\beta, \sigma^2)`, with optional plate subsampling."""
    beta = pyro.sample("beta", dist.Normal(X.new_zeros(X.shape[-1]), 1.0).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfNormal(X.new_tensor(1.0)))
    with pyro.plate("data", X.shape[0], subsample_size=subsample_size) as idx:
        x = X if subsample_size is None else X[idx]
        obs = y if (y is None or subsample_size is None) else y[idx]
        pyro.sample("y", dist.Normal((x * beta).sum(-1), sigma), obs=obs)


def regression_data(n: int = 1000, d: int = 10, seed: int = 0):
    """Design matrix ``X`` (n, d) and responses ``y`` with true weights linspace(-1, 1)."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen)
    y = (X * torch.linspace(-1, 1, d)).sum(-1) + 0.5 * torch.randn(n, generator=gen)
    return X, y


@dataclass
class Problem:
    """A model, its arguments, whether it is a prior target (no observed sites), and its
    guide factory ``tag -> guide`` (``None``: an ``AutoNormal``)."""

    name: str
    model: Callable
    args: tuple = ()
    kwargs: dict | None = None
    prior: bool = False
    guide: Callable[[str], Callable] | None = None

    def call_kwargs(self) -> dict:
        """The keyword arguments of the model (an empty dict for none)."""
        return self.kwargs or {}


def problems(names=("bimodal", "regression", "eight_schools")) -> dict[str, Problem]:
    """The three benchmark targets by name."""
    out = {}
    for name in names:
        if name == "bimodal":
            out[name] = Problem("bimodal (prior, 1-D)", bimodal, prior=True, guide=normal_guide)
        elif name == "regression":
            out[name] = Problem("regression (10-D, N=1000)", regression, regression_data())
        elif name == "eight_schools":
            from pyrodiv.zoo import get_model

            model, kwargs = get_model("eight_schools")
            out[name] = Problem("eight schools (noncentered)", model, (), kwargs)
        else:
            raise ValueError(f"unknown benchmark problem {name!r}")
    return out


def make_step(problem: Problem, loss, tag: str, lr: float = 0.01) -> Callable[[], float]:
    """A zero-argument SVI step (``loss_and_grads`` and an Adam step) with its own guide,
    whose parameters are prefixed by ``tag`` (``<tag>.AutoNormal.*`` for an ``AutoNormal``) so
    that several guides share the global param store without sharing parameters."""
    if problem.guide is not None:
        guide = problem.guide(tag)
    else:
        guide = AutoNormal(problem.model)
        guide._pyro_name = f"{tag}.AutoNormal"
    svi = SVI(problem.model, guide, pyro.optim.Adam({"lr": lr}), loss=loss)
    args, kwargs = problem.args, problem.call_kwargs()
    return lambda: svi.step(*args, **kwargs)


# ---- timing ------------------------------------------------------------------------------


def interleave(
    steps: dict[str, Callable[[], object]],
    budget_s: float,
    min_rounds: int = 5,
    max_rounds: int = 400,
    min_block_s: float = 0.01,
    warmup: int = 3,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Seconds per call of each candidate, from interleaved rounds.

    After ``warmup`` calls of each candidate (whose times set the block size and the number
    of rounds), each round runs every candidate once, in a shuffled order, for a block of
    calls lasting about ``min_block_s`` or more; one block gives one sample (its time divided
    by its length). The rounds fill about ``budget_s`` seconds, within
    ``[min_rounds, max_rounds]``.
    """
    order = list(steps)
    per_call = {}
    for name in order:
        steps[name]()  # first call: guide set-up, plate-nesting guess, target detection
        start = time.perf_counter()
        for _ in range(warmup):
            steps[name]()
        per_call[name] = max((time.perf_counter() - start) / warmup, 1e-6)
    blocks = {name: max(1, math.ceil(min_block_s / t)) for name, t in per_call.items()}
    round_s = sum(blocks[name] * per_call[name] for name in order)
    rounds = int(min(max_rounds, max(min_rounds, budget_s / round_s)))
    rng = random.Random(seed)
    out = {name: [] for name in order}
    gc.collect()
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            fn, block = steps[name], blocks[name]
            start = time.perf_counter()
            for _ in range(block):
                fn()
            out[name].append((time.perf_counter() - start) / block)
    return out


@dataclass
class Ratio:
    """Median of paired ratios with a distribution-free 95% confidence interval."""

    median: float
    low: float
    high: float

    def __str__(self):
        return f"{self.median:.2f} [{self.low:.2f}, {self.high:.2f}]"


def median_ci(values: list[float]) -> Ratio:
    """Median with the order-statistic 95% interval :math:`n/2 \\pm 0.98\\sqrt n`."""
    s = sorted(values)
    n = len(s)
    half = 0.98 * math.sqrt(n)
    lo = max(0, int(math.floor(n / 2 - half)))
    hi = min(n - 1, int(math.ceil(n / 2 + half)) - 1)
    return Ratio(statistics.median(s), s[lo], s[hi])


def ratio_summary(timings: dict[str, list[float]], name: str, base: str) -> Ratio:
    """Median of the per-round ratios ``timings[name][i] / timings[base][i]``."""
    pairs = zip(timings[name], timings[base], strict=True)
    return median_ci([a / b for a, b in pairs])


def ms(values: list[float]) -> str:
    """Median in milliseconds."""
    return f"{1000 * statistics.median(values):.2f}"


# ---- output ------------------------------------------------------------------------------


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    """A markdown table.

    Example::

        >>> print(markdown_table(["a", "b"], [[1, 2]]))
        | a | b |
        |---|---|
        | 1 | 2 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(path: str | Path, title: str, body: str) -> Path:
    """Write a markdown results file headed by the command that regenerates it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    machine = f"torch {torch.__version__}, pyro {pyro.__version__}, 1 torch thread"
    text = (
        f"# {title}\n\nRegenerate with:\n\n```bash\n{command_line()}\n```\n\n"
        f"({machine}; timings interleaved in one process.)\n\n{body.rstrip()}\n"
    )
    path.write_text(text)
    return path
