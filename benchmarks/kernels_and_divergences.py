r"""MCMC kernels next to the divergences on eight schools and on the talk's mixture: accuracy and
effective draws per second.

Each MCMC kernel of :func:`pyrodiv.inference.mcmc_kernels.run_mcmc` (one chain of
``--warmup`` + ``--draws``) and each divergence through :func:`pyrodiv.approximate` (1000 guide
draws) is scored with :func:`pyrodiv.inference.kernel_comparison.score_methods`: the
worst-variable W1 and the sd-ratio range in reference sds; for a chain, the smallest bulk ESS
over the scalar variables (ArviZ, through the adapter) per second of sampling; a fit's draws
are independent, so its ESS per second is its draws over its fitting time.

- Eight schools (non-centred): NUTS, HMC, random-walk MH and the divergences, against
  posteriordb's reference draws.
- The talk's bimodal mixture, :math:`\tfrac12 N(-7, 1.4) + \tfrac12 N(7, 1.4)`, 100 draws,
  weights and (ordered) locations unknown: Gibbs on the model with its assignment site kept
  (NUTS within Gibbs), NUTS, HMC and random-walk MH on the model with the assignments summed
  out, and the divergences on the latter, against the quadrature posterior
  (:func:`~pyrodiv.inference.kernel_comparison.mixture_quadrature`).

Writes ``kernels_and_divergences.md`` and ``kernels_and_divergences.png``::

    python benchmarks/kernels_and_divergences.py [--draws 1000 --warmup 1000]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from pyrodiv.demo.beyond import kernel_table
from pyrodiv.inference.kernel_comparison import (
    TALK_BIMODAL,
    eight_schools_comparison,
    mixture_comparison,
)
from pyrodiv.inference.output import new_figure, num, save_figure

OUT = Path(__file__).resolve().parent / "results"


def plot(results: dict, out_dir, name: str = "kernels_and_divergences.png") -> str | None:
    """W1 (reference sds) against ESS per second, one panel per example, log-log."""
    fig, axes = new_figure(1, len(results), size=(5.0 * len(results), 4.0))
    axes = list(axes) if len(results) > 1 else [axes]
    for ax, (title, res) in zip(axes, results.items(), strict=True):
        for i, r in enumerate(res["rows"]):
            is_chain = r["method"] in ("nuts", "hmc", "rwmh", "gibbs")
            ax.scatter(r["ess_per_s"], r["w1_max"], marker="o" if is_chain else "s")
            ax.annotate(r["method"], (r["ess_per_s"], r["w1_max"]), textcoords="offset points",
                        xytext=(4, 4 if i % 2 else -10), fontsize=8)  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("ESS per second (fits: draws per second of fitting)")
        ax.set_ylabel("worst W1 (reference sds)")
        ax.set_title(title)
    return save_figure(fig, out_dir, name)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--points", type=int, default=100, help="mixture data points")
    parser.add_argument("--divergences", default="reverse_kl,forward_kl,jensen_shannon")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    divergences = tuple(args.divergences.split(","))
    common = dict(num_samples=args.draws, warmup_steps=args.warmup, divergences=divergences)
    results = {
        "eight schools": eight_schools_comparison(
            **common, kernels=("nuts", "hmc", "rwmh"), log=print
        ),
        "the talk's bimodal mixture": mixture_comparison(
            **common, num_points=args.points, kernels=("gibbs", "nuts", "hmc", "rwmh"), log=print
        ),
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figure = plot(results, out)
    mixture = results["the talk's bimodal mixture"]
    ref, g = mixture["reference"], mixture["gibbs"]
    means = ", ".join(f"{k} {', '.join(num(v, 3) for v in vs)}" for k, vs in ref["mean"].items())
    sds = ", ".join(f"{k} {', '.join(num(v, 3) for v in vs)}" for k, vs in ref["sd"].items())
    text = (
        "# MCMC kernels next to the divergences\n\n"
        f"Regenerate: `python benchmarks/kernels_and_divergences.py --draws {args.draws} "
        f"--warmup {args.warmup} --points {args.points}`\n\n"
        f"One chain of {args.warmup} warmup + {args.draws} draws per kernel (Pyro's default "
        "settings: NUTS and HMC compiled where safe, HMC's trajectory length 2 pi on eight "
        "schools and 1 on the mixture (see below), random-walk MH's initial step 0.1, "
        "adapted), `approximate` with its defaults per divergence (1000 "
        "guide draws); seed 0, float64, one torch thread "
        f"({platform.machine()}, a 2-core machine shared with other work: the seconds are "
        "rough). W1 and sd ratios in reference sds, over every scalar variable. ESS / s: the "
        "smallest bulk ESS over the scalar variables per second of sampling, warmup "
        "included (a fit: its 1000 independent draws per second of fitting).\n\n"
        "## Eight schools (non-centred), against posteriordb's reference draws\n\n"
        + kernel_table(results["eight schools"]["rows"])
        + "\n\n## The talk's bimodal mixture, against quadrature\n\n"
        f"{args.points} draws of {TALK_BIMODAL['weights'][0]} N(-7, 1.4) + "
        f"{TALK_BIMODAL['weights'][1]} N(7, 1.4) (seed 0); unknown weights "
        "(Dirichlet(2, 2)) and locations, the variances known. **Label switching** is removed "
        "by an ordered prior: the locations are two N(0, 10^2) draws restricted to "
        "mu_1 < mu_2 (`OrderedNormal`), so the posterior has one copy of each mode and "
        "every method sees the same one. `gibbs` samples the model with its 100 assignment "
        "sites kept, each drawn from its exact enumerated conditional, the weights and "
        "locations by NUTS within Gibbs; `nuts`, `hmc`, `rwmh` and the divergences use the "
        "model with the assignments summed out (`MixtureSameFamily`, the talk's "
        "log-sum-exp). HMC's trajectory length is 1: with Pyro's 2 pi, its early warmup "
        "takes hundreds of leapfrog steps a draw, because the step size starts small along "
        "the log gap of the ordered locations (posterior sd about 0.02). Reference: the "
        "three-dimensional posterior of (pi_2, mu_1, mu_2) on a "
        f"64^3 grid (`mixture_quadrature`): means {means}; sds {sds}; 20000 draws from it "
        "for W1.\n\n"
        + kernel_table(mixture["rows"])
        + "\n\nGibbs's assignments: the most probable component of each point is the one it "
        f"was drawn from for {num(100 * g['assignments_agreeing'], 1)}% of the points; "
        f"posterior mean weights {', '.join(num(v, 3) for v in g['weights_mean'])} (drawn "
        f"share of the second component {num(g['weight_drawn'], 3)}).\n\n"
        f"![W1 against ESS per second]({Path(figure).name if figure else ''})\n"
    )
    (out / "kernels_and_divergences.md").write_text(text)
    (out / "kernels_and_divergences.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {out / 'kernels_and_divergences.md'}")


if __name__ == "__main__":
    main()
