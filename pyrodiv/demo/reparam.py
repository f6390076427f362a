r"""Experiment 6: the reparameterization catalogue, checked by gradients.

Each of the talk's samplers writes :math:`x = T_\theta(\varepsilon)` with parameter-free noise
:math:`\varepsilon`, so that :math:`\nabla_\theta\mathbb{E}[g(x)] = \mathbb{E}[\nabla_\theta
g(T_\theta(\varepsilon))]` can be estimated by autograd through the draws. For each family the
check compares that Monte Carlo gradient (with its standard error, from per-draw gradients)
against the closed-form gradient of a closed-form expectation:

================  =====================================  ===============  =========================
family            reparameterized draw                   :math:`g(x)`     :math:`\mathbb{E}[g]`
================  =====================================  ===============  =========================
Normal(mu, s)     mu + s N(0, 1)                         x^2              mu^2 + s^2
Uniform(a, b)     a + (b - a) U(0, 1)                    x^2              (a^2 + ab + b^2) / 3
Exp(lam)          Exp(1) / lam, Exp(1) = -log U          x^2              2 / lam^2
Cauchy(mu, g)     mu + g Cauchy(0,1) = mu + g tan(pi(U - 1/2))
                                                         1 / (1 + x^2)    (1+g) / ((1+g)^2 + mu^2)
Laplace(mu, b)    u ~ U(-1, 1); mu - b sgn(u) ln(1 - |u|)
                                                         x^2              mu^2 + 2 b^2
================  =====================================  ===============  =========================

(The Cauchy line uses :math:`1/(1+x^2) = \pi\,\mathrm{Cauchy}(x; 0, 1)`, so its expectation
is the density of the convolution :math:`\mathrm{Cauchy}(0, 1 + \gamma)` at :math:`\mu`, times
:math:`\pi`.) The Categorical has no such draw; the Gumbel-softmax (Concrete) relaxation
:math:`y = \mathrm{softmax}((\log\pi + G)/\tau)`, :math:`G` i.i.d. Gumbel, is reparameterized,
and :func:`gumbel_softmax_fit` fits learnable logits through it.
"""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import torch

import pyrodiv

from .. import ReverseKL
from ..output import new_figure, save_figure


def _deck_normal(p, n):
    return p["loc"] + p["scale"] * torch.randn(n, dtype=torch.float64)


def _deck_uniform(p, n):
    return p["low"] + (p["high"] - p["low"]) * torch.rand(n, dtype=torch.float64)


def _deck_exponential(p, n):
    return -torch.log1p(-torch.rand(n, dtype=torch.float64)) / p["rate"]


def _deck_cauchy(p, n):
    return p["loc"] + p["scale"] * torch.tan(math.pi * (torch.rand(n, dtype=torch.float64) - 0.5))


def _deck_laplace(p, n):
    u = 2.0 * torch.rand(n, dtype=torch.float64) - 1.0
    return p["loc"] - p["scale"] * torch.sign(u) * torch.log1p(-u.abs())


def _cauchy_grad(loc, scale):
    s = 1.0 + scale
    d = s**2 + loc**2
    return {"loc": -2.0 * loc * s / d**2, "scale": (loc**2 - s**2) / d**2}


#: family -> (deck formula, parameters, g(x) name, g, E[g], d E[g] / d param, deck sampler,
#: Pyro distribution)
CATALOGUE = {
    "Normal": (
        "mu + sigma * N(0, 1)",
        {"loc": 1.5, "scale": 2.0},
        "x^2",
        torch.square,
        lambda p: p["loc"] ** 2 + p["scale"] ** 2,
        lambda p: {"loc": 2 * p["loc"], "scale": 2 * p["scale"]},
        _deck_normal,
        lambda p: dist.Normal(p["loc"], p["scale"]),
    ),
    "Uniform": (
        "a + (b - a) * Uniform(0, 1)",
        {"low": -1.0, "high": 3.0},
        "x^2",
        torch.square,
        lambda p: (p["low"] ** 2 + p["low"] * p["high"] + p["high"] ** 2) / 3,
        lambda p: {"low": (2 * p["low"] + p["high"]) / 3, "high": (p["low"] + 2 * p["high"]) / 3},
        _deck_uniform,
        lambda p: dist.Uniform(p["low"], p["high"]),
    ),
    "Exponential": (
        "Exp(1) / lambda",
        {"rate": 0.7},
        "x^2",
        torch.square,
        lambda p: 2 / p["rate"] ** 2,
        lambda p: {"rate": -4 / p["rate"] ** 3},
        _deck_exponential,
        lambda p: dist.Exponential(p["rate"]),
    ),
    "Cauchy": (
        "mu + gamma * Cauchy(0, 1)",
        {"loc": 0.5, "scale": 1.5},
        "1/(1+x^2)",
        lambda x: 1.0 / (1.0 + x**2),
        lambda p: (1 + p["scale"]) / ((1 + p["scale"]) ** 2 + p["loc"] ** 2),
        lambda p: _cauchy_grad(p["loc"], p["scale"]),
        _deck_cauchy,
        lambda p: dist.Cauchy(p["loc"], p["scale"]),
    ),
    "Laplace": (
        "u ~ U(-1, 1); mu - b * sgn(u) * ln(1 - |u|)",
        {"loc": 1.0, "scale": 0.8},
        "x^2",
        torch.square,
        lambda p: p["loc"] ** 2 + 2 * p["scale"] ** 2,
        lambda p: {"loc": 2 * p["loc"], "scale": 4 * p["scale"]},
        _deck_laplace,
        lambda p: dist.Laplace(p["loc"], p["scale"]),
    ),
}


def mc_gradient(family: str, sampler: str = "deck", n: int = 200_000, seed: int = 0) -> dict:
    r"""Monte Carlo :math:`\nabla_\theta \mathbb{E}[g(x)]` for one family of :data:`CATALOGUE`,
    by autograd through ``n`` reparameterized draws, with the standard error from per-draw
    gradients (each draw gets its own copy of the parameters), against the closed form.

    ``sampler`` is ``"deck"`` (the talk's formula, written out) or ``"pyro"``
    (``dist.<Family>(...).rsample()``). Returns ``{param: {"mc", "se", "exact", "z"}}`` and,
    for ``"deck"``, ``"max_abs_diff_to_pyro_draws"``: how far the talk's draws are from Pyro's
    ``rsample`` from the same seed (0 where Pyro uses the same transformation of the same
    noise).

    Example::

        >>> res = mc_gradient("Normal", n=20000)
        >>> abs(res["loc"]["z"]) < 4
        True
    """
    formula, params, _, g, _, grad, deck, pyro_dist = CATALOGUE[family]
    torch.manual_seed(seed)
    leaves = {
        k: torch.full((n,), v, dtype=torch.float64, requires_grad=True) for k, v in params.items()
    }
    x = deck(leaves, n) if sampler == "deck" else pyro_dist(leaves).rsample()
    g(x).sum().backward()
    exact = grad(params)
    out = {}
    if sampler == "deck":  # the same noise through Pyro's rsample gives the same draws?
        torch.manual_seed(seed)
        plain = {k: torch.full((n,), v, dtype=torch.float64) for k, v in params.items()}
        x_pyro = pyro_dist(plain).rsample()
        out["max_abs_diff_to_pyro_draws"] = float((x.detach() - x_pyro).abs().max())
    for k, leaf in leaves.items():
        per_draw = leaf.grad
        mc, se = float(per_draw.mean()), float(per_draw.std() / math.sqrt(n))
        out[k] = {"mc": mc, "se": se, "exact": float(exact[k]), "z": (mc - float(exact[k])) / se}
    return out


def gumbel_softmax_fit(
    target=(0.05, 0.15, 0.2, 0.25, 0.35),
    *,
    temperature: float = 0.5,
    steps: int = 2000,
    lr: float = 0.05,
    particles: int = 256,
    seed: int = 0,
    n_check: int = 100_000,
) -> dict:
    r"""Fit learnable logits :math:`\ell` of a relaxed categorical
    :math:`Q_\ell = \mathrm{RelaxedOneHotCategorical}(\tau, \mathrm{softmax}(\ell))` to
    :math:`P = \mathrm{RelaxedOneHotCategorical}(\tau, \pi)` by reverse KL
    (``pyrodiv.ReverseKL``: gradients flow through the Gumbel-softmax draws
    :math:`y = \mathrm{softmax}((\ell + G)/\tau)`). The relaxed family is identifiable, so the
    optimum is :math:`\mathrm{softmax}(\ell) = \pi`. The fitted probabilities average
    :math:`\mathrm{softmax}(\ell)` over the last quarter of the steps. The check also draws
    ``n_check`` relaxed samples from the fit: their argmax is an exact categorical draw
    (Gumbel-max), so its frequencies estimate :math:`\mathrm{softmax}(\ell)`.

    Example::

        >>> res = gumbel_softmax_fit(steps=300, particles=64)
        >>> res["max_abs_error"] < 0.05
        True
    """
    pi = torch.tensor(target, dtype=torch.float64)
    temp = torch.tensor(temperature, dtype=torch.float64)

    def model():
        pyro.sample("y", dist.RelaxedOneHotCategorical(temp, probs=pi))

    def guide():
        logits = pyro.param("logits", torch.zeros(len(target), dtype=torch.float64))
        pyro.sample("y", dist.RelaxedOneHotCategorical(temp, logits=logits))

    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    loss = ReverseKL(num_particles=particles, vectorize_particles=True, max_plate_nesting=0)
    history = {"step": [0], "probs": [[1.0 / len(target)] * len(target)], "loss": []}
    every = max(1, steps // 100)
    window = []

    def record(step, value):
        window.append(value)
        if step % every == 0 or step == steps:
            probs = torch.softmax(pyro.param("logits").detach(), -1)
            history["step"].append(step)
            history["probs"].append(probs.tolist())
            history["loss"].append(float(np.mean(window)))
            window.clear()

    settings = pyrodiv.FitSettings(num_steps=steps, lr=lr, progress=False)
    pyrodiv.fit(model, guide, loss=loss, settings=settings, callback=record)
    tail = [k for k, s in enumerate(history["step"]) if s > 0.75 * steps]
    fitted = torch.tensor(history["probs"], dtype=torch.float64)[tail].mean(0)
    logits = fitted.log()
    draws = dist.RelaxedOneHotCategorical(temp, logits=logits).sample((n_check,))
    freq = torch.bincount(draws.argmax(-1), minlength=len(target)).double() / n_check
    return {
        "target": list(target),
        "temperature": temperature,
        "steps": steps,
        "lr": lr,
        "particles": particles,
        "fitted": fitted.tolist(),
        "argmax_frequencies": freq.tolist(),
        "max_abs_error": float((fitted - pi).abs().max()),
        "max_abs_error_frequencies": float((freq - pi).abs().max()),
        "history": history,
    }


def reparam_catalogue(
    out_dir=None,
    *,
    n: int = 200_000,
    gumbel_steps: int = 2000,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    r"""The talk's reparameterization table, checked: for each family and parameter, the
    Monte Carlo gradient (talk's formula and Pyro's ``rsample``), the closed form and the
    z-score :math:`(\hat g - g)/\mathrm{se}`; then the Gumbel-softmax fit
    (:func:`gumbel_softmax_fit`).

    Writes ``reparam.png`` (each sampler's histogram against its density) and
    ``gumbel_softmax.png``.

    Example::

        >>> res = reparam_catalogue(n=20000, gumbel_steps=200)
        >>> max(abs(r["z"]) for r in res["rows"]) < 4
        True
    """
    rows = []
    draws_vs_pyro = {}
    for family, entry in CATALOGUE.items():
        formula, params, g_name = entry[0], entry[1], entry[2]
        for sampler in ("deck", "pyro"):
            grads = mc_gradient(family, sampler, n=n, seed=seed)
            same = grads.pop("max_abs_diff_to_pyro_draws", None)
            if same is not None:
                draws_vs_pyro[family] = same
            for param, r in grads.items():
                rows.append(
                    {
                        "family": family,
                        "params": params,
                        "formula": formula,
                        "g": g_name,
                        "sampler": sampler,
                        "param": param,
                        **r,
                    }
                )
    gumbel = gumbel_softmax_fit(steps=gumbel_steps, seed=seed)
    result = {
        "n": n,
        "rows": rows,
        "max_abs_diff_deck_vs_pyro_draws": draws_vs_pyro,
        "gumbel_softmax": gumbel,
        "figures": [],
    }
    if out_dir is not None:
        result["figures"] += _figures(out_dir, rows, gumbel, seed)
    return result


def _figures(out_dir, rows, gumbel, seed):
    files = []
    fig, axes = new_figure(2, 3, size=(13.0, 7.0))
    torch.manual_seed(seed)
    for ax, (family, entry) in zip(axes.flat, CATALOGUE.items(), strict=False):
        formula, params, deck, pyro_dist = entry[0], entry[1], entry[6], entry[7]
        p = {k: torch.tensor(v, dtype=torch.float64) for k, v in params.items()}
        n_draws = 50_000
        x = deck(p, n_draws)
        d = pyro_dist(p)
        lo, hi = {"Cauchy": (-10, 10), "Exponential": (0, 8)}.get(family, (-6, 8))
        bins = 120
        # normalized by all draws, so the part beyond the plotted range is simply not shown
        weights = np.full(n_draws, bins / ((hi - lo) * n_draws))
        ax.hist(
            x.numpy(),
            bins=bins,
            range=(lo, hi),
            weights=weights,
            color="tab:blue",
            alpha=0.5,
            label="talk's reparameterized draws",
        )
        xs = torch.linspace(lo, hi, 600, dtype=torch.float64)
        if family == "Uniform":
            xs = xs.clamp(params["low"] + 1e-9, params["high"] - 1e-9)
        elif family == "Exponential":
            xs = xs.clamp(min=1e-9)
        ax.plot(xs, d.log_prob(xs).exp(), color="k", lw=1.4, label="exact density")
        args = ", ".join(f"{v:g}" for v in params.values())
        ax.set_title(f"{family}({args}): {formula}", fontsize=8.5)
        ax.set_xlabel("x")
        ax.set_ylabel("density")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=2, fontsize=9, frameon=False)
    ax = axes.flat[-1]
    labels = [f"{r['family']} d/d{r['param']} ({r['sampler']})" for r in rows]
    zs = [r["z"] for r in rows]
    ax.barh(
        range(len(zs)),
        zs,
        color=["tab:blue" if r["sampler"] == "deck" else "tab:orange" for r in rows],
    )
    ax.set_yticks(range(len(zs)), labels, fontsize=6)
    ax.axvline(-2, color="0.5", ls=":")
    ax.axvline(2, color="0.5", ls=":")
    ax.set_xlim(-4, 4)
    ax.set_xlabel("z = (MC gradient - exact) / s.e.")
    ax.set_title("gradient checks (blue: talk's formula, orange: Pyro rsample)", fontsize=8.5)
    files.append(save_figure(fig, out_dir, "reparam.png"))

    fig, axes = new_figure(1, 2, size=(12.0, 4.0))
    k = np.arange(len(gumbel["target"]))
    axes[0].bar(k - 0.27, gumbel["target"], 0.27, label="target pi", color="0.6")
    axes[0].bar(k, gumbel["fitted"], 0.27, label="fitted softmax(logits)", color="tab:red")
    axes[0].bar(
        k + 0.27,
        gumbel["argmax_frequencies"],
        0.27,
        label="argmax of fitted relaxed draws",
        color="tab:blue",
    )
    axes[0].set_xticks(k)
    axes[0].set_xlabel("category")
    axes[0].set_ylabel("probability")
    axes[0].set_title(
        f"Gumbel-softmax fit (temperature {gumbel['temperature']:g}) by reverse KL", fontsize=10
    )
    axes[0].legend(fontsize=8, loc="upper left")
    h = gumbel["history"]
    probs = np.array(h["probs"])
    for j in range(probs.shape[1]):
        axes[1].plot(h["step"], probs[:, j], color=f"C{j}", label=f"category {j}")
        axes[1].axhline(gumbel["target"][j], color=f"C{j}", ls=":", lw=1)
    axes[1].set_xlabel("SVI step")
    axes[1].set_ylabel("softmax(logits)")
    axes[1].set_title("probabilities vs step (dotted: target)", fontsize=10)
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    files.append(save_figure(fig, out_dir, "gumbel_softmax.png"))
    return files
