r"""Beyond the talk: the techniques of its last two slides, run on its own targets.

Three experiments, each with a closed form or a known optimum to read the result against:

* **Expectation-maximization** next to gradient maximum likelihood (``CrossEntropy`` on the
  draws), on the talk's two mixtures: both reach the same log-likelihood
  (:func:`pyrodiv.inference.em.plot_em_vs_gradient`, figure ``em_vs_gradient.png``).
* **Gibbs sampling** of the bimodal mixture with its assignments kept as sites (not summed
  out): each assignment drawn from its exact conditional, the weight and the two locations by
  HMC within Gibbs (:func:`pyrodiv.inference.mcmc_kernels.run_mcmc`); read against the
  values the data were drawn with (up to a swap of the two labels, which the posterior
  cannot tell apart).
* **Adversarial training**: a Normal guide fitted to the talk's first target
  :math:`N(-7.3, 3.2)` (mean, variance) through a critic alone, by the GAN (Jensen-Shannon)
  and WGAN (earth mover's, one-sided gradient penalty) losses
  (:mod:`pyrodiv.divergences.adversarial`); the optimum is :math:`P` itself.

Example::

    >>> results = beyond_the_talk("out/demo", quick=True)               # doctest: +SKIP
    >>> results["gan"]["WGAN"]["loc"]                                    # doctest: +SKIP
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import config_enumerate
from pyro.ops.indexing import Vindex

__all__ = ["beyond_the_talk"]

#: The talk's first target, N(mean, variance).
NORMAL_TARGET = (-7.3, 3.2)


@config_enumerate
def _bimodal_with_assignments(x):
    """The talk's bimodal mixture with unknown weight and locations, one assignment per
    point kept as a site."""
    w = pyro.sample("w", dist.Beta(2.0, 2.0))
    locs = pyro.sample("locs", dist.Normal(x.new_tensor([-5.0, 5.0]), 3.0).to_event(1))
    with pyro.plate("data", len(x)):
        k = pyro.sample("k", dist.Categorical(torch.stack([1 - w, w], -1)))
        pyro.sample("x", dist.Normal(Vindex(locs)[..., k], math.sqrt(1.4)), obs=x)


def _gibbs(num_points: int, num_samples: int, seed: int) -> dict:
    from ..inference import arviz_adapter
    from ..inference.mcmc_kernels import run_mcmc

    generator = torch.Generator().manual_seed(seed)
    truth_k = torch.bernoulli(torch.full((num_points,), 0.5), generator=generator).long()
    x = torch.tensor([-7.0, 7.0])[truth_k] + math.sqrt(1.4) * torch.randn(
        num_points, generator=generator
    )
    idata = run_mcmc(
        _bimodal_with_assignments, x, kernel="gibbs", num_samples=num_samples,
        warmup_steps=num_samples // 2, seed=seed,
        kernel_kwargs={"continuous": "hmc", "continuous_kwargs": {"num_steps": 5}},
    )  # fmt: skip
    k = arviz_adapter.get_draws(idata, "k").double()
    locs = arviz_adapter.get_draws(idata, "locs").mean((0, 1))
    w = float(arviz_adapter.get_draws(idata, "w").mean())
    agree = float(((k.mean((0, 1)) > 0.5).long() == truth_k).double().mean())
    if locs[0] > locs[1]:  # the chain found the mixture with its labels swapped
        locs, w, agree = locs.flip(0), 1 - w, 1 - agree
    return {
        "num_points": num_points,
        "num_samples": num_samples,
        "w_mean": w,
        "w_drawn": float(truth_k.double().mean()),
        "locs_mean": locs.tolist(),
        "assignments_agreeing": agree,
        "seconds": float(idata.attrs.get("wall_time_s", float("nan"))),
    }


def _adversarial(steps: int, particles: int, seed: int) -> dict:
    from ..divergences.adversarial import GAN, WGAN

    mean, variance = NORMAL_TARGET

    def target():
        pyro.sample("x", dist.Normal(torch.tensor(mean), math.sqrt(variance)))

    out = {}
    for name, make in (("GAN", GAN), ("WGAN", WGAN)):
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
        svi = pyro.infer.SVI(target, guide, pyro.optim.Adam({"lr": 0.02}), loss)
        for _ in range(steps):
            svi.step()
        scale = float(pyro.param(f"{name}_scale").detach())
        out[name] = {"loc": float(pyro.param(f"{name}_loc").detach()), "variance": scale**2}
    out["target"] = {"loc": mean, "variance": variance}
    return out


def beyond_the_talk(
    out_dir,
    *,
    em_points: int = 2000,
    em_steps: int = 1500,
    gibbs_points: int = 100,
    gibbs_samples: int = 400,
    gan_steps: int = 1500,
    gan_particles: int = 256,
    seed: int = 0,
    progress=None,
) -> dict:
    """Run the three experiments (see the module doc) and return their numbers; writes
    ``em_vs_gradient.png`` into ``out_dir``."""
    from ..inference.em import plot_em_vs_gradient

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
    with pyro.validation_enabled(True):
        gibbs = _gibbs(gibbs_points, gibbs_samples, seed)
    gan = _adversarial(gan_steps, gan_particles, seed)
    if progress is not None:
        progress.advance(1)
    return {"em": em_rows, "gibbs": gibbs, "gan": gan, "figures": ["em_vs_gradient.png"]}


def beyond_report(res: dict) -> str:
    """The report section of :func:`beyond_the_talk`'s results (Markdown)."""
    from ..output import num, table
    from .report import _figs

    em = [
        [name, num(r["em_log_likelihood_per_point"], 6), r["em_iterations"],
         num(r["gradient_log_likelihood_per_point"], 6), r["gradient_steps"]]
        for name, r in res["em"].items()
    ]  # fmt: skip
    g = res["gibbs"]
    gan = [[name, num(r["loc"], 3), num(r["variance"], 3)] for name, r in res["gan"].items()]
    return (
        "## 9. Beyond the talk: EM, Gibbs and adversarial training\n\n"
        + table(
            ["mixture", "EM log-lik / point", "EM iterations", "gradient MLE", "SVI steps"], em
        )
        + f"\n\nGibbs on the bimodal mixture with its {g['num_points']} assignments kept "
        f"({g['num_samples']} draws, HMC within Gibbs): weight {num(g['w_mean'], 3)} "
        f"(drawn share {num(g['w_drawn'], 3)}), locations "
        f"{', '.join(num(v, 3) for v in g['locs_mean'])} (drawn at -7 and 7), "
        f"{num(100 * g['assignments_agreeing'], 1)}% of the assignments as drawn.\n\n"
        + table(["adversarial fit of N(-7.3, 3.2)", "mean", "variance"], gan)
        + "\n\n"
        + _figs(res)
        + "\n"
    )
