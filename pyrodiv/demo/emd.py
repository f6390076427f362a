r"""Experiment 7: the earth mover's distance (Wasserstein-1).

Between two histograms :math:`a, b` on bins :math:`0, \dots, 9` with cost
:math:`M_{ij} = |i - j|` (bin units), the EMD is the linear programme

.. math::

    \mathrm{EMD}(a, b) = \min_{\gamma \ge 0} \sum_{ij} M_{ij}\gamma_{ij}
    \quad\text{s.t.}\quad \gamma \mathbf 1 = a,\ \gamma^\top \mathbf 1 = b,

solved exactly by POT (``ot.emd``). The histograms are the talk's (:data:`DECK_COUNTS`, from
its EMD notebook), and the value is the talk's 0.70624. In one dimension it has the closed form
:math:`\sum_k |A_k - B_k|` (cumulative sums, unit bin width), the discrete case of
:math:`W_1(P, Q) = \int |F_P - F_Q|\,dx = \int_0^1 |F_P^{-1}(u) - F_Q^{-1}(u)|\,du`.

The second part fits a Normal :math:`Q` to the bimodal target by :math:`W_1`, estimated from
equal-size samples as :math:`\frac1K\sum_k |x^P_{(k)} - x^Q_{(k)}|` (sorted draws, :math:`x^Q`
reparameterized): :class:`pyrodiv.Wasserstein` in Pyro's SVI loop with Adam, the exact 1-D
:math:`W_1` between the two empirical distributions.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize
from scipy.special import ndtr, ndtri

from .. import Wasserstein
from ..output import new_figure, save_figure
from .common import (
    BIMODAL_MEANS,
    BIMODAL_VARIANCE,
    COLORS,
    bimodal,
    fit_normal,
    fmt_normal,
    log_prob_fn,
    plot_densities,
    target_model,
)

#: The talk's two histograms as raw counts on bins 0..9 (its EMD notebook): ``"Q"`` has 77
#: counts and two bumps, ``"P"`` 71 counts and one. Normalized, their EMD is 0.7062374.
DECK_COUNTS = {
    "Q": (12, 7, 4, 1, 19, 14, 9, 6, 3, 2),
    "P": (1, 5, 11, 17, 13, 9, 6, 4, 3, 2),
}
#: The talk's EMD between the two histograms, printed by its notebook ("primal EMD").
DECK_EMD = 0.7062374245472838


def histograms() -> tuple[np.ndarray, np.ndarray]:
    r"""The talk's two 10-bin histograms, normalized: :math:`a` = the counts
    ``DECK_COUNTS["Q"]`` / 77 (moved from) and :math:`b` = ``DECK_COUNTS["P"]`` / 71 (moved to).

    Example::

        >>> a, b = histograms()
        >>> round(float(a.sum()), 12), round(float(b.sum()), 12)
        (1.0, 1.0)
        >>> round(emd_1d(a, b)["value"], 6)  # the talk's 0.706
        0.706237
    """
    a = np.asarray(DECK_COUNTS["Q"], dtype=np.float64)
    b = np.asarray(DECK_COUNTS["P"], dtype=np.float64)
    return a / a.sum(), b / b.sum()


def emd_1d(a, b) -> dict:
    r"""The EMD between histograms ``a`` and ``b`` (cost :math:`|i - j|`) by POT's exact
    linear-programme solver, and the 1-D closed form :math:`\sum_k |A_k - B_k|`.

    Returns ``{"plan", "value", "closed_form", "abs_diff"}``.

    Example::

        >>> res = emd_1d(np.array([1.0, 0, 0]), np.array([0, 0, 1.0]))
        >>> res["value"], res["closed_form"]
        (2.0, 2.0)
    """
    import ot

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    i = np.arange(len(a))
    cost = np.abs(i[:, None] - i[None, :]).astype(np.float64)
    plan = ot.emd(a, b, cost)
    value = float((plan * cost).sum())
    closed = float(np.abs(np.cumsum(a) - np.cumsum(b))[:-1].sum())
    return {"plan": plan, "value": value, "closed_form": closed, "abs_diff": abs(value - closed)}


def mixture_quantile(u: np.ndarray, iters: int = 200) -> np.ndarray:
    r""":math:`F_P^{-1}(u)` of the bimodal target, by bisection on
    :math:`F_P(x) = \tfrac12\Phi((x + 7)/s) + \tfrac12\Phi((x - 7)/s)`, :math:`s = \sqrt{1.4}`.

    Example::

        >>> abs(float(mixture_quantile(np.array([0.5]))[0])) < 1e-6  # the median
        True
    """
    s = math.sqrt(BIMODAL_VARIANCE)
    lo = np.full_like(u, -60.0)
    hi = np.full_like(u, 60.0)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        cdf = 0.5 * sum(ndtr((mid - m) / s) for m in BIMODAL_MEANS)
        below = cdf < u
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def w1_to_normal(loc: float, sd: float, n: int = 20000) -> float:
    r""":math:`W_1(P, N(\mu, \sigma^2)) = \int_0^1 |F_P^{-1}(u) - \mu - \sigma\Phi^{-1}(u)|\,du`
    by the midpoint rule on ``n`` points.

    Example::

        >>> round(w1_to_normal(0.0, 1e-9), 3)  # E|X| for X ~ P: about 7
        7.0
    """
    u = (np.arange(n) + 0.5) / n
    return float(np.mean(np.abs(_quantiles(n) - loc - sd * ndtri(u))))


_QUANTILE_CACHE: dict = {}


def _quantiles(n):
    if n not in _QUANTILE_CACHE:
        _QUANTILE_CACHE[n] = mixture_quantile((np.arange(n) + 0.5) / n)
    return _QUANTILE_CACHE[n]


def w1_by_cdfs(loc: float, sd: float) -> float:
    r""":math:`\int |F_P(x) - F_Q(x)|\,dx` on a fine grid: a cross-check of
    :func:`w1_to_normal`."""
    x = np.linspace(-80, 80, 320001)
    s = math.sqrt(BIMODAL_VARIANCE)
    fp = 0.5 * sum(ndtr((x - m) / s) for m in BIMODAL_MEANS)
    fq = ndtr((x - loc) / sd)
    return float(np.trapezoid(np.abs(fp - fq), x))


def w1_optimal_normal(start=(1.0, 1.0), n: int = 20000) -> dict:
    r"""The Normal minimizing :func:`w1_to_normal`, by Nelder-Mead over :math:`(\mu,
    \log\sigma)` from ``start = (mu, variance)``.

    Example::

        >>> opt = w1_optimal_normal(n=2000)
        >>> abs(opt["loc"]) < 0.05
        True
    """
    res = minimize(
        lambda t: w1_to_normal(t[0], math.exp(t[1]), n),
        np.array([start[0], 0.5 * math.log(start[1])]),
        method="Nelder-Mead",
        options={"xatol": 1e-7, "fatol": 1e-12, "maxiter": 4000},
    )
    loc, sd = float(res.x[0]), math.exp(float(res.x[1]))
    return {"loc": loc, "variance": sd**2, "w1": float(res.fun), "w1_by_cdfs": w1_by_cdfs(loc, sd)}


def w1_fit(
    *,
    start=(1.0, 1.0),
    steps: int = 3000,
    lr: float = 0.01,
    samples: int = 512,
    seed: int = 0,
    progress=False,
) -> dict:
    r"""Fit :math:`Q = N(\mu, L^2)` to the bimodal target with
    :class:`pyrodiv.Wasserstein` (:math:`p = 1`) in the ordinary SVI loop: each step the
    sample :math:`W_1 = \frac1K\sum_k |x^P_{(k)} - (\mu + |L|\,\varepsilon)_{(k)}|` between
    ``samples`` fresh draws of each (sorted draws), and Adam. The fitted Normal averages the
    last quarter of the recorded steps.

    Example::

        >>> fit = w1_fit(steps=300, lr=0.05, samples=256)
        >>> fit["variance"] > 10
        True
    """
    loss = Wasserstein(p=1.0, num_particles=samples, vectorize_particles=True, max_plate_nesting=0)
    fit = fit_normal(
        target_model(bimodal()),
        loss,
        start=start,
        steps=steps,
        lr=lr,
        seed=seed,
        progress=progress,
    )
    traj = fit["trajectory"]
    tail = [k for k, s in enumerate(traj["step"]) if s > 0.75 * steps]
    return {
        "start": list(start),
        "steps": steps,
        "lr": lr,
        "samples": samples,
        "loc": float(np.mean([traj["loc"][k] for k in tail])),
        "variance": float(np.mean([traj["variance"][k] for k in tail])),
        "final": {"loc": fit["loc"], "variance": fit["variance"]},
        "trajectory": traj,
    }


def earth_movers(
    out_dir=None,
    *,
    steps: int = 3000,
    lr: float = 0.01,
    samples: int = 512,
    quantile_n: int = 20000,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    r"""The EMD between :func:`histograms` (LP and closed form), and the :math:`W_1` fit of a
    Normal to the bimodal target (:func:`w1_fit`) against the :math:`W_1`-optimal Normal
    (:func:`w1_optimal_normal`).

    Writes ``emd_plan.png`` (the transport plan with the histograms on its margins) and
    ``emd_w1_fit.png``.

    Example::

        >>> res = earth_movers(steps=200, lr=0.05, samples=128, quantile_n=2000)
        >>> res["histograms"]["abs_diff"] < 1e-9
        True
    """
    a, b = histograms()
    emd = emd_1d(a, b)
    fit = w1_fit(
        start=(1.0, 1.0), steps=steps, lr=lr, samples=samples, seed=seed, progress=progress
    )
    optimum = w1_optimal_normal(start=(1.0, 1.0), n=quantile_n)
    result = {
        "histograms": {
            "a": a.tolist(),
            "b": b.tolist(),
            "a_mean": float((np.arange(10) * a).sum()),
            "b_mean": float((np.arange(10) * b).sum()),
            "value": emd["value"],
            "closed_form": emd["closed_form"],
            "abs_diff": emd["abs_diff"],
            "counts": {k: list(v) for k, v in DECK_COUNTS.items()},
            "deck_value": DECK_EMD,
            "abs_diff_to_deck": abs(emd["value"] - DECK_EMD),
            "plan": emd["plan"].tolist(),
        },
        "w1_fit": {
            "ours": {"loc": fit["loc"], "variance": fit["variance"]},
            "final": fit["final"],
            "settings": {
                "start": fit["start"],
                "steps": steps,
                "lr": lr,
                "samples": samples,
                "seed": seed,
            },
            "w1_at_fit": w1_to_normal(fit["loc"], math.sqrt(fit["variance"]), quantile_n),
            "optimum": optimum,
            "trajectory": fit["trajectory"],
        },
        "figures": [],
    }
    if out_dir is not None:
        result["figures"] += _figures(out_dir, a, b, emd, fit, optimum)
    return result


def _figures(out_dir, a, b, emd, fit, optimum):
    files = []
    fig = new_figure(1, 1, size=(7.0, 6.4))[0]
    fig.clear()
    gs = fig.add_gridspec(2, 3, width_ratios=[1, 4, 0.2], height_ratios=[1, 4])
    ax_plan = fig.add_subplot(gs[1, 1])
    ax_a = fig.add_subplot(gs[1, 0], sharey=ax_plan)
    ax_b = fig.add_subplot(gs[0, 1], sharex=ax_plan)
    ax_cb = fig.add_subplot(gs[1, 2])
    bins = np.arange(10)
    im = ax_plan.imshow(emd["plan"], cmap="Blues", origin="upper", aspect="auto")
    for i in bins:
        for j in bins:
            if emd["plan"][i, j] > 5e-3:
                ax_plan.text(
                    j,
                    i,
                    f"{emd['plan'][i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="k",
                )
    ax_plan.set_xlabel("bin j of P (to)")
    ax_plan.set_ylabel("bin i of Q (from)")
    ax_plan.set_xticks(bins)
    ax_plan.set_yticks(bins)
    fig.colorbar(im, cax=ax_cb, label=r"transport plan $\gamma_{ij}$")
    ax_a.barh(bins, a, color="tab:orange")
    ax_a.invert_xaxis()
    ax_a.set_xlabel("Q: counts / 77")
    ax_a.tick_params(labelleft=False)
    ax_b.bar(bins, b, color="tab:green")
    ax_b.set_ylabel("P: counts / 71")
    ax_b.tick_params(labelbottom=False)
    ax_b.set_title(
        f"The talk's histograms: EMD(Q, P) = {emd['value']:.4f} (LP), "
        f"closed form {emd['closed_form']:.4f},\ntalk {DECK_EMD:.4f}; cost |i - j| in bins",
        fontsize=9,
    )
    files.append(save_figure(fig, out_dir, "emd_plan.png"))

    fig, axes = new_figure(1, 2, size=(12.0, 4.0), width_ratios=[1.5, 1])
    log_p = log_prob_fn(bimodal)
    plot_densities(
        axes[0],
        log_p,
        [
            ("initial Q = N(1, 1)", 1.0, 1.0, COLORS["initial"], "--"),
            (
                f"W1 fit {fmt_normal(fit['loc'], fit['variance'])}",
                fit["loc"],
                fit["variance"],
                COLORS["fitted"],
                "-",
            ),
            (
                f"W1-optimal {fmt_normal(optimum['loc'], optimum['variance'])}",
                optimum["loc"],
                optimum["variance"],
                COLORS["exact"],
                ":",
            ),
        ],
        title="Wasserstein-1 fit of a Normal to the bimodal target",
        target_label="P = {N(-7, 1.4), N(7, 1.4)}",
    )
    t = fit["trajectory"]
    axes[1].plot(t["step"], t["variance"], color=COLORS["fitted"], label="variance of Q")
    axes[1].plot(t["step"], t["loc"], color="tab:purple", label="mean of Q")
    axes[1].axhline(
        optimum["variance"],
        color=COLORS["exact"],
        ls="--",
        label=f"W1-optimal variance {optimum['variance']:.2f}",
    )
    axes[1].set_xlabel("Adam step")
    axes[1].set_ylabel("parameter")
    axes[1].set_title("trajectory", fontsize=10)
    axes[1].legend(fontsize=8)
    files.append(save_figure(fig, out_dir, "emd_w1_fit.png"))
    return files
