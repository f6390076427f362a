r"""Beyond the talk: a normalizing-flow guide on the talk's bimodal target, under three
divergences, scored exactly by quadrature.

The target is the talk's :math:`P = \tfrac12 N(-7, 1.4) + \tfrac12 N(7, 1.4)` (variances), a
Pyro model with one ``MixtureSameFamily`` site. The guide is Pyro's ``AutoNormalizingFlow``
over a fixed widening ``AffineTransform(0, 4)`` and a rational-quadratic ``Spline`` (16 bins,
bound 12) that starts as the identity
(:func:`~pyrodiv.inference.flow_guide.identity_spline`), so :math:`Q` starts as
:math:`N(0, 16)`, the same guide as ``benchmarks/bimodal_flows.py``. It is trained with
:class:`~pyrodiv.ForwardKL`, :class:`~pyrodiv.ReverseKL` and :class:`~pyrodiv.JensenShannon`
(``ClippedAdam``, lr 0.03 decaying tenfold over the run).

Each fitted :math:`Q` is read exactly, by the trapezoid rule on a grid of the real line:

.. math::

    \mathrm{KL}(P\|Q) = \int p\,(\log p - \log q)\,dx, \qquad
    \mathrm{KL}(Q\|P) = \int q\,(\log q - \log p)\,dx,

and :math:`Q`'s mass within ``MODE_RADIUS`` (2) of each mode (:math:`P` has 0.455 near each).
Forward KL and Jensen-Shannon are mass-covering: both modes. Reverse KL may keep one.

Example::

    >>> res = flow_fits(None, steps=200)                                 # doctest: +SKIP
    >>> res["fits"]["forward KL"]["forward_kl"] < 0.1                    # doctest: +SKIP
    True
"""

from __future__ import annotations

import time

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import AffineTransform, ComposeTransformModule
from pyro.infer.autoguide import AutoNormalizingFlow
from torch.distributions import constraints

from ..divergences.quadrature import divergence
from ..divergences.quadrature import grid as quadrature_grid
from . import common

__all__ = [
    "bimodal",
    "spline_flow",
    "quadrature",
    "log_q_on",
    "flow_fits",
    "plot_flow_fits",
    "flow_report",
]

#: The talk's bimodal target's modes are at -LOC and +LOC.
LOC = common.BIMODAL_MEANS[1]
#: Q's mass within this distance of a mode counts as "near" it.
MODE_RADIUS = 2.0
#: The quadrature grid: [-HALF_WIDTH, HALF_WIDTH] at this many points.
HALF_WIDTH, GRID_POINTS = 30.0, 12001
#: The divergences trained (forward KL, reverse KL, Jensen-Shannon).
DIVERGENCES = ("forward KL", "reverse KL", "JSD")


class _RealMixture(dist.MixtureSameFamily):
    """``MixtureSameFamily`` on the real line (torch's own mixture constraint has no
    bijection, which the autoguides need)."""

    support = constraints.real


def bimodal(dtype=None) -> _RealMixture:
    r""":math:`\tfrac12 N(-7, 1.4) + \tfrac12 N(7, 1.4)` in ``dtype`` (default: torch's): the
    talk's target (``pyrodiv.demo.common.bimodal``) on the real line."""
    target = common.bimodal(dtype or torch.get_default_dtype())
    return _RealMixture(target.mixture_distribution, target.component_distribution)


def _model():
    pyro.sample("x", bimodal())


def spline_flow(bins: int = 16, bound: float = 12.0, widen: float = 4.0) -> AutoNormalizingFlow:
    """The guide: ``AutoNormalizingFlow`` over ``AffineTransform(0, widen)`` and an identity
    spline, so that :math:`Q` starts as :math:`N(0, \\mathrm{widen}^2)`."""
    from ..inference.flow_guide import identity_spline

    def init(dim):
        return ComposeTransformModule(
            [AffineTransform(0.0, widen), identity_spline(dim, bins, bound)]
        )

    return AutoNormalizingFlow(_model, init)


def _loss(name: str, particles: int):
    import pyrodiv

    options = dict(num_particles=particles, vectorize_particles=True, max_plate_nesting=0)
    make = {
        "forward KL": pyrodiv.ForwardKL,
        "reverse KL": pyrodiv.ReverseKL,
        "JSD": pyrodiv.JensenShannon,
    }
    if name not in make:
        raise ValueError(f"unknown divergence {name!r}; known: {', '.join(make)}")
    return make[name](**options)


@torch.no_grad()
def log_q_on(guide, x: torch.Tensor) -> torch.Tensor:
    """:math:`\\log q(x)` of a fitted 1-D flow guide at the float64 points ``x`` (float64)."""
    dtype = next(iter(guide.parameters())).dtype
    return guide.get_posterior().log_prob(x.to(dtype).unsqueeze(-1)).to(torch.float64)


def quadrature(guide) -> dict:
    """Exact scores of a fitted guide against :func:`bimodal`, by the trapezoid rule:
    ``forward_kl`` KL(P||Q), ``reverse_kl`` KL(Q||P), ``mass_left``/``mass_right`` (Q's
    mass within ``MODE_RADIUS`` (2) of -7 and +7) and ``mass`` (Q's mass on the grid)."""
    log_p = bimodal(torch.float64).log_prob

    def log_q(x):
        return log_q_on(guide, x)

    def mass(lo, hi, n):
        x, w = quadrature_grid(lo, hi, n)
        return float((w * log_q(x).exp()).sum())

    grid = {"lo": -HALF_WIDTH, "hi": HALF_WIDTH, "n": GRID_POINTS}
    return {
        "forward_kl": divergence("kl_forward", log_p, log_q, **grid),
        "reverse_kl": divergence("kl_reverse", log_p, log_q, **grid),
        "mass_left": mass(-LOC - MODE_RADIUS, -LOC + MODE_RADIUS, 2001),
        "mass_right": mass(LOC - MODE_RADIUS, LOC + MODE_RADIUS, 2001),
        "mass": mass(-HALF_WIDTH, HALF_WIDTH, GRID_POINTS),
    }


def flow_fits(
    out_dir,
    *,
    steps: int = 2000,
    particles: int = 64,
    lr: float = 0.03,
    seed: int = 0,
    divergences=DIVERGENCES,
) -> dict:
    """Train :func:`spline_flow` with each of ``divergences`` for ``steps`` steps and score it
    by :func:`quadrature`. Returns ``{"fits": {name: scores and seconds}, "settings": ...,
    "figure": file name or None}``; writes ``flow_fits.png`` into ``out_dir`` (when given).

    Example::

        >>> res = flow_fits(None, steps=300)                             # doctest: +SKIP
        >>> sorted(res["fits"])                                          # doctest: +SKIP
        ['JSD', 'forward KL', 'reverse KL']
    """
    if steps < 1 or particles < 1:
        raise ValueError(f"flow_fits: steps and particles must be >= 1, got {steps}, {particles}")
    fits, guides = {}, {}
    for name in divergences:
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        guide = spline_flow()
        optim = pyro.optim.ClippedAdam({"lr": lr, "lrd": 0.1 ** (1 / steps)})
        svi = pyro.infer.SVI(_model, guide, optim, _loss(name, particles))
        start = time.perf_counter()
        for _ in range(steps):
            svi.step()
        fits[name] = {"seconds": time.perf_counter() - start, **quadrature(guide)}
        guides[name] = guide
    settings = {"steps": steps, "particles": particles, "lr": lr, "seed": seed}
    return {
        "fits": fits,
        "settings": settings,
        "figure": plot_flow_fits(guides, fits, out_dir),
    }


def plot_flow_fits(guides: dict, fits: dict, out_dir, name: str = "flow_fits.png"):
    """:math:`P`'s density and each fitted flow's, with its exact KL(P||Q) in the legend;
    saved as ``out_dir/name`` (nothing when ``out_dir`` is ``None``)."""
    if out_dir is None:
        return None
    from ..inference.output import new_figure, save_figure

    x = torch.linspace(-13.0, 13.0, 1601, dtype=torch.float64)
    fig, ax = new_figure(size=(6.5, 3.6))
    p = bimodal(torch.float64).log_prob(x).exp()
    ax.fill_between(x.numpy(), p.numpy(), color="0.85", label="P = ½N(−7, 1.4) + ½N(7, 1.4)")
    for label, guide in guides.items():
        q = log_q_on(guide, x).exp()
        kl = fits[label]["forward_kl"]
        ax.plot(x.numpy(), q.numpy(), lw=1.5, label=f"{label}: KL(P‖Q) = {kl:.3f} nats")
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.set_title("A spline flow fitted to the talk's bimodal target")
    ax.legend(fontsize=8, loc="upper center")
    return save_figure(fig, out_dir, name)


def flow_report(res: dict) -> str:
    """The Markdown table of :func:`flow_fits`'s numbers."""
    from ..inference.output import num, table

    s = res["settings"]
    rows = [
        [name, num(r["forward_kl"], 4), num(r["reverse_kl"], 4), num(r["mass_left"], 3),
         num(r["mass_right"], 3), num(r["seconds"], 1)]
        for name, r in res["fits"].items()
    ]  # fmt: skip
    return (
        f"A spline flow (`AutoNormalizingFlow`, {s['steps']} steps of {s['particles']} "
        "particles) on the talk's bimodal target, read exactly by quadrature "
        f"(P has 0.455 of its mass within {MODE_RADIUS:g} of each mode).\n\n"
        + table(
            [
                "flow trained with",
                "KL(P‖Q) nats",
                "KL(Q‖P) nats",
                "Q mass near −7",
                "Q mass near +7",
                "seconds",
            ],
            rows,
        )  # fmt: skip
        + "\n\n"
    )
