r"""Beyond the talk: the techniques of its last two slides, run on its own targets.

Five experiments, each with a closed form, a reference or a known optimum to read the result
against:

* **Expectation-maximization** next to gradient maximum likelihood (``CrossEntropy`` on the
  draws), on the talk's two mixtures: both reach the same log-likelihood
  (:func:`pyrodiv.inference.em.plot_em_vs_gradient`, figure ``em_vs_gradient.png``).
* **Gibbs sampling** of the bimodal mixture with its assignments kept as sites (not summed
  out): each assignment drawn from its exact conditional, the weights and the two (ordered)
  locations by NUTS within Gibbs (:func:`pyrodiv.inference.mcmc_kernels.run_mcmc`); read
  against the values the data were drawn with.
* **MCMC kernels next to the divergences**
  (:mod:`pyrodiv.inference.kernel_comparison`): Gibbs, NUTS, HMC and random-walk MH, and
  :func:`pyrodiv.approximate` with reverse KL, forward KL and Jensen-Shannon, scored by W1,
  sd ratios and ESS per second against the quadrature posterior of the same mixture, and
  against posteriordb's draws on eight schools (skipped when no posteriordb folder is found).
* **Adversarial training**: a Normal guide fitted to the talk's first target
  :math:`N(-7.3, 3.2)` (mean, variance) through a critic alone, by the GAN (Jensen-Shannon),
  LSGAN (Pearson chi-square), f-GAN (the variational form of forward KL) and WGAN (earth
  mover's, one-sided gradient penalty) losses (:mod:`pyrodiv.divergences.adversarial`); the
  optimum is :math:`P` itself.
* **Normalizing flows**: a spline flow on the talk's bimodal target, trained with forward KL,
  reverse KL and Jensen-Shannon and read exactly by quadrature
  (:mod:`pyrodiv.demo.beyond_flows`, figure ``flow_fits.png``).

Example::

    >>> results = beyond_the_talk("out/demo", quick=True)               # doctest: +SKIP
    >>> results["gan"]["WGAN"]["loc"]                                    # doctest: +SKIP
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch

__all__ = ["beyond_the_talk"]

#: The talk's first target, N(mean, variance).
NORMAL_TARGET = (-7.3, 3.2)


def _kernels(num_points: int, draws: int, warmup: int, seed: int) -> dict:
    """MCMC kernels next to the divergences on the talk's mixture (quadrature reference) and
    on eight schools (posteriordb's draws, when a posteriordb folder is found)."""
    from ..inference.kernel_comparison import eight_schools_comparison, mixture_comparison

    common = dict(num_samples=draws, warmup_steps=warmup, seed=seed)
    mixture = mixture_comparison(
        num_points=num_points, kernels=("gibbs", "nuts", "hmc", "rwmh"), **common
    )
    try:
        schools = eight_schools_comparison(kernels=("nuts", "hmc", "rwmh"), **common)
    except FileNotFoundError as error:
        schools = {"skipped": str(error).split(". ")[0]}
    g = mixture["gibbs"]
    gibbs = {
        "num_points": num_points,
        "num_samples": draws,
        "w_mean": g["weights_mean"][1],
        "w_drawn": g["weight_drawn"],
        "locs_mean": g["locs_mean"],
        "assignments_agreeing": g["assignments_agreeing"],
        "seconds": next(r["seconds"] for r in mixture["rows"] if r["method"] == "gibbs"),
    }
    return gibbs, {"mixture": mixture, "eight_schools": schools}


def _adversarial(steps: int, particles: int, seed: int) -> dict:
    """Each adversarial loss trains a Normal guide on :data:`NORMAL_TARGET` by simultaneous
    descent-ascent (one Adam, betas 0.5 and 0.9 as in Gulrajani et al.); the fit is the mean of
    the last quarter of the iterates (descent-ascent circles the saddle point), and ``last``
    the final iterate."""
    from ..divergences.adversarial import GAN, LSGAN, WGAN, AdversarialFDivergence

    mean, variance = NORMAL_TARGET

    def target():
        pyro.sample("x", dist.Normal(torch.tensor(mean), math.sqrt(variance)))

    losses = (
        ("GAN", GAN),
        ("LSGAN", LSGAN),
        ("f-GAN KL", lambda critic, **o: AdversarialFDivergence("kl_forward", critic, **o)),
        ("WGAN", WGAN),
    )
    out = {}
    for name, make in losses:
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        critic = torch.nn.Sequential(
            torch.nn.Linear(1, 32), torch.nn.ELU(), torch.nn.Linear(32, 1), torch.nn.Flatten(0)
        )

        def guide(name=name):
            loc = pyro.param(f"{name}_loc", torch.tensor(0.0))
            scale = pyro.param(
                f"{name}_scale", torch.tensor(1.0), constraint=dist.constraints.positive
            )
            pyro.sample("x", dist.Normal(loc, scale))

        loss = make(critic, num_particles=particles, vectorize_particles=True)
        optim = pyro.optim.Adam({"lr": 0.02, "betas": (0.5, 0.9)})
        svi = pyro.infer.SVI(target, guide, optim, loss)
        tail = []
        for step in range(steps):
            svi.step()
            if step >= steps - max(1, steps // 4):
                loc = float(pyro.param(f"{name}_loc").detach())
                tail.append((loc, float(pyro.param(f"{name}_scale").detach()) ** 2))
        out[name] = {
            "loc": sum(t[0] for t in tail) / len(tail),
            "variance": sum(t[1] for t in tail) / len(tail),
            "last": {"loc": tail[-1][0], "variance": tail[-1][1]},
        }
    out["target"] = {"loc": mean, "variance": variance}
    return out


def plot_adversarial(fits: dict, out_dir, name: str = "adversarial_fits.png") -> str | None:
    """The talk's :math:`P = N(-7.3, 3.2)` and each adversarial fit's Normal density (from
    :func:`beyond_the_talk`'s ``"gan"`` numbers); saved as ``out_dir/name``."""
    from ..inference.output import new_figure, save_figure

    target = fits["target"]
    grid = torch.linspace(target["loc"] - 7.0, target["loc"] + 7.0, 801)
    fig, ax = new_figure(size=(6.0, 3.6))
    for label, fit in fits.items():
        density = dist.Normal(fit["loc"], math.sqrt(fit["variance"])).log_prob(grid).exp()
        style = {"color": "grey", "lw": 3, "alpha": 0.6} if label == "target" else {"lw": 1.5}
        text = "P = N(-7.3, 3.2)" if label == "target" else label
        text += f": N({fit['loc']:.2f}, {fit['variance']:.2f})" if label != "target" else ""
        ax.plot(grid, density, label=text, **style)
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.set_title("Normal guides trained through a critic alone")
    ax.legend(fontsize=8)
    return save_figure(fig, out_dir, name)


def beyond_the_talk(
    out_dir,
    *,
    em_points: int = 2000,
    em_steps: int = 1500,
    gibbs_points: int = 100,
    gibbs_samples: int = 400,
    kernel_draws: int | None = None,
    gan_steps: int = 1500,
    gan_particles: int = 256,
    flow_steps: int = 2000,
    flow_particles: int = 64,
    seed: int = 0,
    progress=None,
) -> dict:
    """Run the five experiments (see the module doc) and return their numbers; writes
    ``em_vs_gradient.png``, ``adversarial_fits.png`` and ``flow_fits.png`` into ``out_dir``
    (when given). The flows take ``flow_steps`` steps of ``flow_particles`` particles. The
    kernel comparison runs each chain for ``kernel_draws`` warmup steps and ``kernel_draws``
    draws (default ``gibbs_samples // 2``), on ``gibbs_points`` draws of the talk's bimodal
    mixture."""
    from ..inference.em import plot_em_vs_gradient
    from .beyond_flows import flow_fits

    em = plot_em_vs_gradient(out_dir, num_points=em_points, steps=em_steps, seed=seed)
    em_rows = {
        name: {
            "em_log_likelihood_per_point": r["em"].log_likelihood / r["em"].num_points,
            "gradient_log_likelihood_per_point": r["gradient"].log_likelihood
            / r["gradient"].num_points,
            "em_iterations": r["em"].num_iterations,
            "gradient_steps": r["gradient"].num_iterations,
        }
        for name, r in em.items()
        if name != "figure"
    }
    draws = gibbs_samples // 2 if kernel_draws is None else kernel_draws
    with pyro.validation_enabled(True):
        gibbs, kernels = _kernels(gibbs_points, draws, draws, seed)
    gan = _adversarial(gan_steps, gan_particles, seed)
    flows = flow_fits(out_dir, steps=flow_steps, particles=flow_particles, seed=seed)
    figures = [em["figure"], plot_adversarial(gan, out_dir), flows.pop("figure")]
    if progress is not None:
        progress.advance(1)
    return {
        "em": em_rows,
        "gibbs": gibbs,
        "kernels": kernels,
        "gan": gan,
        "flows": flows,
        "figures": [f for f in figures if f],
    }


def kernel_table(rows) -> str:
    """The Markdown table of :func:`pyrodiv.inference.kernel_comparison.score_methods` rows."""
    from ..inference.output import num, table

    return table(
        ["method", "W1 max", "sd ratio min / max", "seconds", "ESS / s"],
        [
            [r["method"], num(r["w1_max"], 3),
             f"{num(r['sd_ratio_min'], 2)} / {num(r['sd_ratio_max'], 2)}",
             num(r["seconds"], 1), num(r["ess_per_s"], 1)]
            for r in rows
        ],
    )  # fmt: skip


def _kernels_report(res: dict) -> str:
    from ..inference.output import num

    mix, schools = res["mixture"], res["eight_schools"]
    ref = mix["reference"]
    text = (
        "MCMC kernels next to the divergences (one chain of "
        f"{mix['warmup_steps']} warmup + {mix['num_samples']} draws per kernel, "
        "`approximate` with its defaults per divergence, 1000 guide draws). W1 and sd ratios "
        "in reference sds over every scalar variable; ESS / s: the smallest bulk ESS per "
        "second of sampling, warmup included (a fit: its independent draws per second of "
        "fitting). `benchmarks/kernels_and_divergences.py` runs the same at 1000 + 1000.\n\n"
        f"The talk's bimodal mixture, {mix['num_points']} draws, weights and locations "
        "unknown, an ordered prior on the locations (no label switching). `gibbs` keeps one "
        "assignment site per point (exact conditionals, NUTS within Gibbs); the other "
        "kernels and the divergences use the model with the assignments summed out. "
        "Reference: quadrature on a 64^3 grid, locations "
        f"{', '.join(num(m, 3) for m in ref['mean']['locs'])} "
        f"(sd {', '.join(num(s, 3) for s in ref['sd']['locs'])}), weight of the second "
        f"component {num(ref['mean']['weights'][1], 3)} (sd {num(ref['sd']['weights'][1], 3)})."
        "\n\n" + kernel_table(mix["rows"]) + "\n\n"
    )
    if "skipped" in schools:
        return text + f"Eight schools: not run ({schools['skipped']}).\n\n"
    return (
        text
        + "Eight schools (non-centred), against posteriordb's reference draws.\n\n"
        + kernel_table(schools["rows"])
        + "\n\n"
    )


def beyond_report(res: dict) -> str:
    """The report section of :func:`beyond_the_talk`'s results (Markdown)."""
    from ..output import num, table
    from .beyond_flows import flow_report
    from .report import _figs

    em = [
        [name, num(r["em_log_likelihood_per_point"], 6), r["em_iterations"],
         num(r["gradient_log_likelihood_per_point"], 6), r["gradient_steps"]]
        for name, r in res["em"].items()
    ]  # fmt: skip
    g = res["gibbs"]
    gan = [
        [name, num(r["loc"], 3), num(r["variance"], 3)]
        + ([num(r["last"]["loc"], 3), num(r["last"]["variance"], 3)] if "last" in r else ["", ""])
        for name, r in res["gan"].items()
    ]
    return (
        "## 9. Beyond the talk: EM, MCMC kernels next to the divergences, adversarial training, "
        "normalizing flows\n\n"
        + table(
            ["mixture", "EM log-lik / point", "EM iterations", "gradient MLE", "SVI steps"], em
        )
        + f"\n\nGibbs on the bimodal mixture with its {g['num_points']} assignments kept "
        f"({g['num_samples']} draws, NUTS within Gibbs): weight {num(g['w_mean'], 3)} "
        f"(drawn share {num(g['w_drawn'], 3)}), locations "
        f"{', '.join(num(v, 3) for v in g['locs_mean'])} (drawn at -7 and 7), "
        f"{num(100 * g['assignments_agreeing'], 1)}% of the assignments as drawn.\n\n"
        + (_kernels_report(res["kernels"]) if "kernels" in res else "")
        + "Adversarial fits of N(-7.3, 3.2): a Normal guide trained through a critic alone "
        "(mean and variance averaged over the last quarter of the iterates, and the last "
        "iterate).\n\n"
        + table(["adversarial fit", "mean", "variance", "last iterate: mean", "variance"], gan)
        + "\n\n"
        + (flow_report(res["flows"]) if "flows" in res else "")
        + _figs(res)
        + "\n"
    )
