r"""Experiment 1: learning a Normal by forward KL.

The target is :math:`P = N(-7.3, 3.2)` (mean, variance) and :math:`Q = N(\mu, L^2)` starts at
:math:`N(0, 1)`. Minimizing :math:`\mathrm{KL}(P\|Q) = \mathbb{E}_P[\log p - \log q]` over a
Normal family that contains :math:`P` recovers :math:`P` exactly, so the exact optimum is
:math:`N(-7.3, 3.2)`; the talk's run reached :math:`N(-7.2829, 3.2358)`.
"""

from __future__ import annotations

import torch

from .. import ForwardKL
from ..output import new_figure, save_figure
from .common import (
    COLORS,
    NORMAL_TARGET,
    exact_optimum,
    fit_normal,
    fmt_normal,
    log_prob_fn,
    normal,
    plot_densities,
    plot_trajectory,
    target_model,
)

#: The talk's raw output for this run (mean, variance).
DECK = {"loc": -7.2829, "variance": 3.2358}


def target(dtype=None):
    """:math:`P = N(-7.3, 3.2)`."""
    return normal(*NORMAL_TARGET, dtype or torch.float32)


def learn_normal(
    out_dir=None,
    *,
    steps: int = 4000,
    lr: float = 0.01,
    particles: int = 64,
    seed: int = 0,
    quad_n: int = 16001,
    progress: bool = False,
) -> dict:
    r"""Fit :math:`Q = N(\mu, L^2)` from :math:`N(0, 1)` to :math:`P = N(-7.3, 3.2)` by forward
    KL with the talk's settings (Adam, ``lr``, ``steps``, ``particles`` draws of :math:`P` a
    step), and compare with the talk and with the exact optimum (by quadrature).

    Writes ``normal_forward_kl.png`` (densities and trajectory) when ``out_dir`` is given.

    Example::

        >>> res = learn_normal(steps=300, lr=0.1)
        >>> abs(res["ours"]["loc"] + 7.3) < 0.5
        True
    """
    loss = ForwardKL(num_particles=particles, vectorize_particles=True, max_plate_nesting=0)
    fit = fit_normal(
        target_model(target()),
        loss,
        start=(0.0, 1.0),
        steps=steps,
        lr=lr,
        seed=seed,
        progress=progress,
        desc="forward KL, Normal",
    )
    exact = exact_optimum("kl_forward", log_prob_fn(target), start=(0.0, 1.0), n=quad_n)
    result = {
        "target": {"loc": NORMAL_TARGET[0], "variance": NORMAL_TARGET[1]},
        "start": {"loc": 0.0, "variance": 1.0},
        "settings": {"steps": steps, "lr": lr, "particles": particles, "seed": seed},
        "deck": DECK,
        "ours": {"loc": fit["loc"], "variance": fit["variance"]},
        "exact": exact,
        "trajectory": fit["trajectory"],
        "figures": [],
    }
    if out_dir is not None:
        fig, axes = new_figure(1, 3, size=(13.0, 3.8), width_ratios=[1.6, 1, 1])
        plot_densities(
            axes[0],
            target(torch.float64).log_prob,
            [
                ("initial Q = N(0, 1)", 0.0, 1.0, COLORS["initial"], "--"),
                (
                    f"fitted Q = {fmt_normal(fit['loc'], fit['variance'])}",
                    fit["loc"],
                    fit["variance"],
                    COLORS["fitted"],
                    "-",
                ),
            ],
            target_label="target P = N(-7.3, 3.2)",
            title="Forward KL: learning a Normal",
        )
        plot_trajectory(axes[1:], fit["trajectory"], exact=exact, deck=DECK)
        result["figures"].append(save_figure(fig, out_dir, "normal_forward_kl.png"))
    return result
