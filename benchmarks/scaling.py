r"""How the SVI step time of ReverseKL, ForwardKL and Pyro's Trace_ELBO grows with the number
of particles and with the data size, on the Bayesian regression (10 features, ``AutoNormal``).

* particles: :math:`K = 1, 4, \dots, 4096` vectorized particles, N = 1000;
* data size with plate subsampling (``pyro.plate("data", N, subsample_size=S)``),
  :math:`N = 10^3 \dots 10^6`, 16 particles, a fixed subsample :math:`S = 100` and a growing
  one :math:`S = N / 10`. With a fixed subsample the ideal step time does not depend on N.

Each point is the median step time of interleaved rounds (:mod:`common`); every loss at every
point of a curve is interleaved with all the others, so that load changes do not bend it. On
log-log axes the least-squares slope :math:`b` of :math:`\log t = a + b \log x` is fitted over
the upper half of the range (where the fixed overhead no longer dominates), and a segment
between two neighbouring points is flagged as a *cliff* when its local slope exceeds the ideal
one (1 for particles and for the growing subsample, 0 for the fixed subsample) by more than
0.25. Also timed alone: ``torch.randperm(N)``, which Pyro's subsampling plate draws at each step.

Writes ``benchmarks/results/scaling.md`` and ``scaling.png``::

    python benchmarks/scaling.py            # full run, a few minutes
    python benchmarks/scaling.py --quick    # seconds-long smoke run
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import torch
from common import (
    Problem,
    arguments,
    interleave,
    make_step,
    markdown_table,
    regression,
    regression_data,
    setup,
    write_results,
)
from pyro.infer import Trace_ELBO

import pyrodiv

LOSSES = {
    "Trace_ELBO": Trace_ELBO,
    "ReverseKL": pyrodiv.ReverseKL,
    "ForwardKL": pyrodiv.ForwardKL,
}
PARTICLES = (1, 4, 16, 64, 256, 1024, 4096)
SIZES = (1_000, 10_000, 100_000, 1_000_000)
DATA_PARTICLES = 16
FIXED_SUBSAMPLE = 100
CLIFF_MARGIN = 0.25


def loglog_slope(xs, ts) -> float:
    r"""Least-squares slope of :math:`\log t` on :math:`\log x`.

    Example::

        >>> loglog_slope([1, 10, 100], [2.0, 20.0, 200.0])
        1.0
    """
    lx = [math.log(x) for x in xs]
    lt = [math.log(t) for t in ts]
    mx, mt = statistics.fmean(lx), statistics.fmean(lt)
    sxx = sum((a - mx) ** 2 for a in lx)
    return round(sum((a - mx) * (b - mt) for a, b in zip(lx, lt, strict=True)) / sxx, 12)


def cliffs(xs, ts, ideal: float) -> list[str]:
    """Segments whose local log-log slope exceeds ``ideal`` by more than ``CLIFF_MARGIN``."""
    out = []
    points = list(zip(xs, ts, strict=True))
    for (x0, t0), (x1, t1) in zip(points, points[1:], strict=False):
        local = math.log(t1 / t0) / math.log(x1 / x0)
        if local > ideal + CLIFF_MARGIN:
            out.append(f"{x0:g}->{x1:g}: slope {local:.2f}")
    return out


def subsampled_problem(n: int, subsample: int | None) -> Problem:
    """The regression on ``n`` rows, its plate drawing ``subsample`` rows per step."""
    X, y = regression_data(n)

    def model(X, y):
        return regression(X, y, subsample_size=subsample)

    return Problem(f"regression N={n}, S={subsample}", model, (X, y))


def time_points(points: dict, budget: float, quick: bool) -> dict:
    """Median seconds per step of every loss at every point, all interleaved together.

    ``points`` maps a key (a particle count, or (mode, N)) to ``(problem, particles)``.
    Interleaving every point, not only the losses of one point, lets a change of load hit
    the whole curve alike, so that the slopes are not bent by it.
    """
    setup(0)
    steps = {}
    for key, (problem, k) in points.items():
        kw = {"num_particles": k, "vectorize_particles": True}
        for name, cls in LOSSES.items():
            steps[key, name] = make_step(problem, cls(**kw), f"{name}.{key}")
    timings = interleave(steps, budget_s=budget, min_rounds=3 if quick else 9, warmup=2)
    out = {key: {} for key in points}
    for (key, name), t in timings.items():
        out[key][name] = statistics.median(t)
    return out


def randperm_seconds(n: int, repeats: int = 20) -> float:
    """Median time of ``torch.randperm(n)``, the subsample index Pyro's plate draws."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.randperm(n)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(args):
    """Time the particle curve and the two data-size curves; time ``torch.randperm``."""
    particles = (1, 16, 256) if args.quick else PARTICLES
    sizes = SIZES[:2] if args.quick else SIZES
    budget = 0.5 if args.quick else args.budget
    base = Problem("regression N=1000", regression, regression_data())
    by_particles = time_points({k: (base, k) for k in particles}, budget, args.quick)
    for k, t in by_particles.items():
        print(f"K={k:5d}  " + "  ".join(f"{n} {1e3 * v:8.2f} ms" for n, v in t.items()))
    points = {}
    for n in sizes:
        for mode, sub in (("fixed", FIXED_SUBSAMPLE), ("growing", n // 10)):
            points[mode, n] = (subsampled_problem(n, sub), DATA_PARTICLES)
    timed = time_points(points, budget, args.quick)
    by_size = {"fixed": {}, "growing": {}}
    for (mode, n), t in timed.items():
        by_size[mode][n] = t
        print(f"N={n:8d} {mode:8s} " + "  ".join(f"{a} {1e3 * b:8.2f} ms" for a, b in t.items()))
    perm = {n: randperm_seconds(n) for n in sizes}
    return particles, sizes, by_particles, by_size, perm


def analyse(xs, series: dict[int, dict[str, float]], ideal: float):
    """Table rows per loss: ms at each point, the upper-half slope and the cliffs."""
    rows = []
    upper = xs[len(xs) // 2 :] if len(xs) > 2 else xs
    for name in LOSSES:
        ts = [series[x][name] for x in xs]
        fit = loglog_slope(upper, ts[len(xs) - len(upper) :])
        flagged = cliffs(xs, ts, ideal)
        rows.append(
            [name]
            + [f"{1e3 * t:.2f}" for t in ts]
            + [f"{fit:.2f}", "; ".join(flagged) if flagged else "none"]
        )
    return rows


def plot(path: Path, particles, sizes, by_particles, by_size, perm):
    """Both curves on log-log axes, written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = dict(zip(LOSSES, ("black", "tab:blue", "tab:orange"), strict=True))
    for name in LOSSES:
        left.plot(
            particles,
            [1e3 * by_particles[k][name] for k in particles],
            "o-",
            color=colors[name],
            label=name,
        )
        for mode, style in (("fixed", "o-"), ("growing", "s--")):
            right.plot(
                sizes,
                [1e3 * by_size[mode][n][name] for n in sizes],
                style,
                color=colors[name],
                label=f"{name}, {mode} subsample",
            )
    right.plot(
        sizes, [1e3 * perm[n] for n in sizes], ":", color="gray", label="torch.randperm(N) alone"
    )
    left.set(
        xscale="log",
        yscale="log",
        xlabel="vectorized particles K",
        ylabel="ms per SVI step",
        title="regression N=1000: step time vs particles",
    )
    right.set(
        xscale="log",
        yscale="log",
        xlabel="data size N",
        ylabel="ms per SVI step",
        title=f"K={DATA_PARTICLES}: subsample {FIXED_SUBSAMPLE} (solid), N/10 (dashed)",
    )
    left.legend(fontsize=8)
    right.legend(fontsize=7)
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(args, particles, sizes, by_particles, by_size, perm):
    """Print the tables and write them with the figure."""
    out = Path(args.out)
    png = out.with_suffix(".png")
    plot(png, particles, sizes, by_particles, by_size, perm)
    head = ["loss"] + [f"ms, K={k}" for k in particles] + ["slope (upper half)", "cliffs"]
    sections = [
        "Median ms per SVI step (interleaved), regression with 10 features and an `AutoNormal` "
        "guide. Slope: least-squares log-log slope over the upper half of the range. Cliff: a "
        f"segment whose local slope exceeds the ideal one by more than {CLIFF_MARGIN}.",
        f"![step time scaling]({png.name})",
        "## Particles (N = 1000, no subsampling; ideal slope 1)\n\n"
        + markdown_table(head, analyse(particles, by_particles, 1.0)),
    ]
    for mode, ideal, what in (
        ("fixed", 0.0, f"fixed subsample S = {FIXED_SUBSAMPLE}; ideal slope 0"),
        ("growing", 1.0, "growing subsample S = N/10; ideal slope 1"),
    ):
        head = ["loss"] + [f"ms, N={n:g}" for n in sizes] + ["slope (upper half)", "cliffs"]
        sections.append(
            f"## Data size, {what} (K = {DATA_PARTICLES})\n\n"
            + markdown_table(head, analyse(sizes, by_size[mode], ideal))
        )
    sections.append(
        "## `torch.randperm(N)` alone (drawn by the subsampling plate at every step)\n\n"
        + markdown_table(["N", "ms"], [[f"{n:g}", f"{1e3 * t:.3f}"] for n, t in perm.items()])
    )
    text = "\n\n".join(sections)
    print("\n" + text)
    path = write_results(out, "Step time scaling", text)
    print(f"\nwrote {path} and {png}")


def main(argv=None):
    parser = arguments(__doc__, "scaling.md", 90.0)
    args = parser.parse_args(argv)
    setup(0)
    report(args, *run(args))


if __name__ == "__main__":
    main()
