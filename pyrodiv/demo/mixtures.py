r"""Experiment 2: Gaussian mixture models, as drawn in the talk.

A :math:`K`-component mixture draws :math:`z \sim \mathrm{Categorical}(\pi)` and then
:math:`x \mid z = k \sim N(\mu_k, v_k)`; its log-density marginalizes :math:`z`:

.. math::

    \log p(x) = \log \sum_{k=1}^K \pi_k\, N(x; \mu_k, v_k).
"""

from __future__ import annotations

import torch

from ..output import new_figure, save_figure
from .common import (
    BIMODAL_MEANS,
    BIMODAL_VARIANCE,
    mixture,
    normal,
)

#: The two mixtures drawn: the bimodal target (even weights) and a three-component one.
MIXTURES = {
    "two_even": {
        "means": list(BIMODAL_MEANS),
        "variances": [BIMODAL_VARIANCE] * 2,
        "weights": [0.5, 0.5],
    },
    "three_uneven": {
        "means": [-6.0, 0.0, 5.0],
        "variances": [1.0, 2.5, 0.8],
        "weights": [0.2, 0.5, 0.3],
    },
}


def mixture_visuals(out_dir=None, *, n_grid: int = 4001) -> dict:
    r"""Draw the two mixtures of the talk (densities, each weighted component
    :math:`\pi_k N(x;\mu_k, v_k)` dashed) and check that each density integrates to 1 and that
    its mean and variance match :math:`\sum_k \pi_k\mu_k` and
    :math:`\sum_k \pi_k (v_k + \mu_k^2) - (\sum_k\pi_k\mu_k)^2` (trapezoid rule on
    ``n_grid`` points over [-40, 40]).

    Writes ``mixtures.png`` when ``out_dir`` is given.

    Example::

        >>> res = mixture_visuals()
        >>> abs(res["two_even"]["integral"] - 1) < 1e-6
        True
    """
    xs = torch.linspace(-40.0, 40.0, n_grid, dtype=torch.float64)
    result = {"figures": []}
    for name, spec in MIXTURES.items():
        p = mixture(spec["means"], spec["variances"], spec["weights"], torch.float64)
        dens = p.log_prob(xs).exp()
        integral = float(torch.trapezoid(dens, xs))
        mean = float(torch.trapezoid(xs * dens, xs))
        var = float(torch.trapezoid((xs - mean) ** 2 * dens, xs))
        w = torch.tensor(spec["weights"], dtype=torch.float64)
        mu = torch.tensor(spec["means"], dtype=torch.float64)
        v = torch.tensor(spec["variances"], dtype=torch.float64)
        mean_cf = float((w * mu).sum())
        var_cf = float((w * (v + mu**2)).sum() - mean_cf**2)
        result[name] = {
            **spec,
            "integral": integral,
            "mean": mean,
            "variance": var,
            "mean_closed_form": mean_cf,
            "variance_closed_form": var_cf,
        }
    if out_dir is not None:
        fig, axes = new_figure(1, 2, size=(12.0, 4.0))
        xs_plot = torch.linspace(-14.0, 14.0, 1201, dtype=torch.float64)
        titles = {
            "two_even": "2 mixture components, even weights",
            "three_uneven": "3 mixture components, uneven weights",
        }
        for ax, (name, spec) in zip(axes, MIXTURES.items(), strict=True):
            p = mixture(spec["means"], spec["variances"], spec["weights"], torch.float64)
            ax.plot(xs_plot, p.log_prob(xs_plot).exp(), color="black", lw=2, label="mixture p(x)")
            for k, (m, var, wk) in enumerate(
                zip(spec["means"], spec["variances"], spec["weights"], strict=True)
            ):
                comp = wk * normal(m, var, torch.float64).log_prob(xs_plot).exp()
                ax.plot(
                    xs_plot,
                    comp,
                    ls="--",
                    lw=1.4,
                    color=f"C{k}",
                    label=f"{wk:g} x N({m:g}, {var:g})",
                )
            ax.set_title(titles[name], fontsize=10)
            ax.set_xlabel("x")
            ax.set_ylabel("density")
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=8)
        result["figures"].append(save_figure(fig, out_dir, "mixtures.png"))
    return result
