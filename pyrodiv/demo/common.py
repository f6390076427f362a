r"""Shared pieces of the demo: the talk's targets, its guide, one SVI fit loop, quadrature
references and figure helpers.

Notation follows the talk: :math:`N(\mu, v)` is a Normal with mean :math:`\mu` and *variance*
:math:`v` (so the bimodal target :math:`\{N(-7, 1.4), N(7, 1.4)\}` has component sd
:math:`\sqrt{1.4} = 1.183`).

Example::

    >>> from pyrodiv.demo.common import bimodal, fit_normal, target_model
    >>> import pyrodiv
    >>> fit = fit_normal(target_model(bimodal()), pyrodiv.ReverseKL(num_particles=64,
    ...                  vectorize_particles=True, max_plate_nesting=0),
    ...                  start=(1.0, 1.0), steps=200, lr=0.05, seed=0)
    >>> fit["loc"] > 5
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pyro
import pyro.distributions as dist
import torch

#: Means and common variance of the talk's bimodal target (its code, not its captions).
BIMODAL_MEANS = (-7.0, 7.0)
BIMODAL_VARIANCE = 1.4
#: The unimodal target of the first experiment, N(-7.3, 3.2) in (mean, variance).
NORMAL_TARGET = (-7.3, 3.2)
#: Quadrature grid (lo, hi, points) used for exact references; wide enough for every Q here.
QUAD_RANGE = (-80.0, 80.0)

COLORS = {"target": "black", "initial": "tab:gray", "fitted": "tab:red", "exact": "tab:blue"}


# ---- targets ------------------------------------------------------------------------------


def mixture(means, variances, weights, dtype=torch.float32) -> dist.MixtureSameFamily:
    r"""A 1-D Gaussian mixture :math:`p(x) = \sum_k \pi_k N(x; \mu_k, v_k)` (variances
    :math:`v_k`), as a batched Pyro distribution whose ``log_prob`` marginalizes the component
    with ``logsumexp``: :math:`\log p(x) = \log\sum_k \exp(\log\pi_k + \log N(x;\mu_k, v_k))`.

    Example::

        >>> p = mixture([-1.0, 1.0], [1.0, 1.0], [0.5, 0.5])
        >>> round(float(p.log_prob(torch.tensor(0.0)).exp()), 4)
        0.242
    """
    means = torch.as_tensor(means, dtype=dtype)
    scales = torch.as_tensor(variances, dtype=dtype).sqrt()
    weights = torch.as_tensor(weights, dtype=dtype)
    return dist.MixtureSameFamily(
        dist.Categorical(probs=weights / weights.sum()), dist.Normal(means, scales)
    )


def bimodal(dtype=torch.float32) -> dist.MixtureSameFamily:
    r"""The talk's bimodal target :math:`\tfrac12 N(-7, 1.4) + \tfrac12 N(7, 1.4)`.

    Example::

        >>> float(bimodal().mean)
        0.0
    """
    return mixture(BIMODAL_MEANS, [BIMODAL_VARIANCE] * 2, [0.5, 0.5], dtype)


def normal(loc: float, variance: float, dtype=torch.float32) -> dist.Normal:
    r""":math:`N(\mu, v)` in the talk's (mean, variance) notation.

    Example::

        >>> float(normal(0.0, 4.0).scale)
        2.0
    """
    return dist.Normal(torch.tensor(loc, dtype=dtype), torch.tensor(variance, dtype=dtype).sqrt())


def target_model(distribution) -> Callable[[], torch.Tensor]:
    """A Pyro model with one latent site ``"x"`` drawn from ``distribution`` (a prior target).

    Example::

        >>> model = target_model(bimodal())
        >>> model().shape
        torch.Size([])
    """

    def model():
        return pyro.sample("x", distribution)

    return model


_LOG_PROB_FNS: dict = {}


def log_prob_fn(distribution_factory) -> Callable[[torch.Tensor], torch.Tensor]:
    """A float64 ``log p(x)`` callable for quadrature, from ``distribution_factory(dtype)``.

    The same factory gives the same callable, so that exact optima computed for it are
    computed once (:func:`exact_optimum` remembers them).

    Example::

        >>> lp = log_prob_fn(bimodal)
        >>> lp(torch.zeros(1, dtype=torch.float64)).dtype
        torch.float64
        >>> lp is log_prob_fn(bimodal)
        True
    """
    if distribution_factory not in _LOG_PROB_FNS:
        _LOG_PROB_FNS[distribution_factory] = _LastGrid(
            distribution_factory(torch.float64).log_prob
        )
    return _LOG_PROB_FNS[distribution_factory]


class _LastGrid:
    r"""``log_prob`` that remembers its last grid: a quadrature search evaluates :math:`\log p`
    on the same grid thousands of times (only :math:`q` changes), so it is computed once."""

    def __init__(self, log_prob):
        self.log_prob = log_prob
        self.x = self.y = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            return self.log_prob(x)
        last = self.x
        if (
            last is None
            or last.shape != x.shape
            or last.dtype != x.dtype
            or not torch.equal(last, x)
        ):
            self.x, self.y = x.clone(), self.log_prob(x)
        return self.y


# ---- the talk's guide and fit loop --------------------------------------------------------


def normal_guide(start=(0.0, 1.0), scale: str = "L") -> Callable[[], torch.Tensor]:
    r"""The talk's guide :math:`Q = N(\mu, v)` started at ``start = (mu, variance)``.

    ``scale="L"`` is the talk's parameterization: a plain learnable factor :math:`L` with
    :math:`\sigma = |L|` (variance :math:`L^2`), initialized at :math:`\sqrt{v_0}`.
    ``scale="exp"`` uses :math:`\sigma = e^{s}` (a log-scale parameter), Pyro's usual choice.
    The parameters are float32, as in the talk, whatever torch's default dtype.

    Example::

        >>> pyro.clear_param_store()
        >>> guide = normal_guide((1.0, 1.0), scale="exp")
        >>> _ = guide(); sorted(pyro.get_param_store().keys())
        ['loc', 'log_scale']
    """
    loc0, var0 = float(start[0]), float(start[1])
    if scale not in ("L", "exp"):
        raise ValueError(f"scale must be 'L' or 'exp', got {scale!r}")

    def guide():
        loc = pyro.param("loc", torch.tensor(loc0, dtype=torch.float32))
        if scale == "L":
            sigma = pyro.param("L", torch.tensor(math.sqrt(var0), dtype=torch.float32)).abs()
        else:
            log_scale = torch.tensor(0.5 * math.log(var0), dtype=torch.float32)
            sigma = pyro.param("log_scale", log_scale).exp()
        return pyro.sample("x", dist.Normal(loc, sigma))

    return guide


def guide_state() -> tuple[float, float]:
    """``(loc, variance)`` of the current :func:`normal_guide` in Pyro's param store."""
    store = pyro.get_param_store()
    loc = store["loc"].item()
    if "L" in store:
        variance = store["L"].item() ** 2
    else:
        variance = math.exp(2.0 * store["log_scale"].item())
    return loc, variance


def fit_normal(
    model,
    loss,
    *,
    start=(0.0, 1.0),
    scale: str = "L",
    steps: int = 4000,
    lr: float = 0.01,
    seed: int = 0,
    record: int = 200,
    checkpoints=(),
    progress=False,
    desc: str | None = None,
) -> dict:
    r"""Fit the talk's Normal guide to ``model`` with :func:`pyrodiv.fit` (``pyro.infer.SVI``
    with ``Adam(lr)`` and ``loss``) for ``steps`` steps: :math:`\theta \leftarrow
    \mathrm{Adam}(\nabla_\theta \hat D(P\|Q_\theta))`, from a cleared param store and
    ``pyro.set_rng_seed(seed)``.

    Returns ``{"loc", "variance", "start", "scale", "steps", "lr", "seed", "trajectory",
    "checkpoints"}`` where ``trajectory`` holds ``step``, ``loc``, ``variance`` (about
    ``record`` points, the first being the start) and ``loss`` (the mean of the loss values
    since the last point), and ``checkpoints`` maps each step in ``checkpoints`` (as a string)
    to ``{"loc", "variance"}`` after that step.

    ``progress`` is ``False``, ``True`` (a bar for this fit) or a
    :class:`~pyrodiv.demo.progress.Tracker`, which is advanced by one unit per step.

    Example::

        >>> import pyrodiv
        >>> fit = fit_normal(target_model(normal(-7.3, 3.2)),
        ...                  pyrodiv.ForwardKL(num_particles=64, vectorize_particles=True,
        ...                                    max_plate_nesting=0),
        ...                  steps=100, lr=0.1)
        >>> len(fit["trajectory"]["step"]) > 1
        True
    """
    import pyrodiv

    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    guide = normal_guide(start, scale)
    every = max(1, steps // max(1, record))
    traj = {"step": [0], "loc": [float(start[0])], "variance": [float(start[1])], "loss": []}
    window = []
    snaps = {}
    checkpoints = set(checkpoints)
    tracker = progress if hasattr(progress, "advance") else None

    def callback(step, value):
        window.append(value)
        if step % every == 0 or step == steps:
            loc, var = guide_state()
            traj["step"].append(step)
            traj["loc"].append(loc)
            traj["variance"].append(var)
            traj["loss"].append(float(np.mean(window)))
            window.clear()
            if tracker is not None:
                tracker.advance(every if step % every == 0 else step % every)
        if step in checkpoints:
            loc, var = guide_state()
            snaps[str(step)] = {"loc": loc, "variance": var}

    settings = pyrodiv.FitSettings(num_steps=steps, lr=lr, progress=progress is True, desc=desc)
    pyrodiv.fit(model, guide, loss=loss, settings=settings, callback=callback)
    loc, var = guide_state()
    return {
        "loc": loc,
        "variance": var,
        "start": [float(start[0]), float(start[1])],
        "scale": scale,
        "steps": steps,
        "lr": lr,
        "seed": seed,
        "trajectory": traj,
        "checkpoints": snaps,
    }


# ---- quadrature references ----------------------------------------------------------------


_OPTIMA: dict = {}


def exact_optimum(f, log_p, start=(0.0, 1.0), n: int = 16001, **params) -> dict:
    r"""The local optimum :math:`\arg\min_{\mu, v} D_f(P\|N(\mu, v))` by quadrature
    (:func:`pyrodiv.quadrature.optimal_normal`), searched from ``start = (mu, variance)``.

    Returns ``{"loc", "variance", "divergence"}`` (nats). A search is run once: a generator
    given by name, with the same ``log_p``, start, grid and parameters, gets the remembered
    result (a copy), since several experiments ask for the same optima.

    Example::

        >>> opt = exact_optimum("kl_forward", log_prob_fn(bimodal), start=(0.0, 1.0), n=4001)
        >>> round(opt["variance"], 1)
        50.4
    """
    from .. import get_generator, quadrature

    key = None
    if isinstance(f, str):
        key = (f, log_p, float(start[0]), float(start[1]), n, tuple(sorted(params.items())))
        if key in _OPTIMA:
            return dict(_OPTIMA[key])
    g = get_generator(f, **params)
    lo, hi = QUAD_RANGE
    opt = quadrature.optimal_normal(
        g, log_p, start=(start[0], math.sqrt(start[1])), lo=lo, hi=hi, n=n
    )
    result = {"loc": opt["loc"], "variance": opt["variance"], "divergence": opt["divergence"]}
    if key is not None:
        _OPTIMA[key] = dict(result)
    return result


def exact_divergence(f, log_p, loc: float, variance: float, n: int = 16001, **params) -> float:
    r""":math:`D_f(P\|N(\mu, v))` by quadrature (:func:`pyrodiv.quadrature.divergence`).

    Example::

        >>> round(exact_divergence("kl_reverse", log_prob_fn(bimodal), 7.0, 1.4), 4)  # log 2
        0.6931
    """
    from .. import get_generator, quadrature

    g = get_generator(f, **params)
    lo, hi = QUAD_RANGE
    q = quadrature.normal_log_prob(loc, math.sqrt(variance))
    return quadrature.divergence(g, log_p, q, lo=lo, hi=hi, n=n)


# ---- formatting and figures ---------------------------------------------------------------


def fmt_normal(loc: float, variance: float, digits: int = 2) -> str:
    """The talk's notation, ``N(mean, variance)``.

    Example::

        >>> fmt_normal(-7.2829, 3.2358, 4)
        'N(-7.2829, 3.2358)'
        >>> fmt_normal(-0.0004, 50.4)  # no "-0.00"
        'N(0.00, 50.40)'
    """
    return f"N({fixed(loc, digits)}, {fixed(variance, digits)})"


def fixed(x: float, digits: int = 2) -> str:
    """``x`` with ``digits`` decimals, without the sign of a value that rounds to zero.

    Example::

        >>> fixed(-0.0001, 2), fixed(-0.5, 0), fixed(-1.25, 1)
        ('0.00', '0', '-1.2')
    """
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def density_xgrid(lo: float = -20.0, hi: float = 20.0, n: int = 801) -> torch.Tensor:
    """The x grid on which densities are drawn."""
    return torch.linspace(lo, hi, n, dtype=torch.float64)


def plot_densities(ax, target, curves, xs=None, title=None, target_label="target P"):
    """Draw the target density and a list of ``(label, loc, variance, color, linestyle)``
    Normal curves on ``ax``."""
    xs = density_xgrid() if xs is None else xs
    ax.fill_between(xs, target(xs).exp(), color="0.85", label=target_label)
    ax.plot(xs, target(xs).exp(), color=COLORS["target"], lw=1.2)
    for label, loc, var, color, style in curves:
        q = normal(loc, var, torch.float64).log_prob(xs).exp()
        ax.plot(xs, q, color=color, ls=style, lw=1.8, label=label)
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.set_xlim(float(xs[0]), float(xs[-1]))
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="upper left")
    if title:
        ax.set_title(title, fontsize=10)


def plot_trajectory(axes, traj, exact=None, deck=None, exact_label="exact optimum"):
    """Draw ``loc`` and ``variance`` against the step on two axes, with dashed lines at the
    exact optimum (labelled ``exact_label``) and dotted lines at the talk's value."""
    ax_loc, ax_var = axes
    ax_loc.plot(traj["step"], traj["loc"], color=COLORS["fitted"], lw=1.4, label="ours")
    ax_var.plot(traj["step"], traj["variance"], color=COLORS["fitted"], lw=1.4, label="ours")
    for ax, key in ((ax_loc, "loc"), (ax_var, "variance")):
        if exact is not None:
            ax.axhline(exact[key], color=COLORS["exact"], ls="--", lw=1, label=exact_label)
        if deck is not None:
            ax.axhline(deck[key], color="tab:green", ls=":", lw=1.5, label="talk")
        ax.set_xlabel("SVI step")
        ax.legend(fontsize=7)
    ax_loc.set_ylabel("mean of Q")
    ax_var.set_ylabel("variance of Q")
    ax_loc.set_title("mean vs step", fontsize=10)
    ax_var.set_title("variance vs step", fontsize=10)
