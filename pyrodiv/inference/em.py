r"""Expectation-maximization for a 1-D Gaussian mixture, next to gradient maximum likelihood.

The talk's mixture :math:`z \sim \mathrm{Categorical}(\pi)`, :math:`x \mid z = k \sim
N(\mu_k, v_k)` (variances :math:`v_k`) has the log-likelihood
:math:`\ell(\theta) = \sum_i \log \sum_k \pi_k N(x_i; \mu_k, v_k)`. Two ways climb it to the same
maximum:

* :func:`em_gaussian_mixture`, the classic EM: coordinate ascent on the ELBO
  :math:`\mathcal L(q, \theta) = \ell(\theta) - \mathrm{KL}(q(z)\,\|\,p(z\mid x,\theta))`. The
  E-step sets :math:`q` to the exact posterior over the assignments (the bound touches
  :math:`\ell`), the M-step maximizes the bound over :math:`\theta` in closed form, so
  :math:`\ell` never decreases.
* :func:`gradient_mle_gaussian_mixture`: the data as a
  :class:`~pyrodiv.divergences.targets.SampleTarget`, a guide whose one site is a
  ``MixtureSameFamily`` with learnable logits, locs and scales, and
  :class:`~pyrodiv.divergences.losses.CrossEntropy` (:math:`-\mathbb E_P[\log q]`, maximum
  likelihood on :math:`P`'s draws) in the ordinary :class:`pyro.infer.SVI` loop.

:func:`plot_em_vs_gradient` draws both log-likelihood traces on the talk's 2- and 3-component
mixtures.

Example::

    >>> x = torch.cat([torch.randn(500) - 7.0, torch.randn(500) + 7.0])
    >>> fit = em_gaussian_mixture(x, 2)
    >>> [round(m) for m in fit.means.tolist()]
    [-7, 7]
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints

from ..validation import check_int

_LOG_2PI = math.log(2.0 * math.pi)
INIT_OPTIONS = ("quantile", "spread", "random")
GRADIENT = "gradient MLE (CrossEntropy)"
MIXTURE_KEYS = ("weights", "means", "variances")


@dataclass
class MixtureFit:
    r"""A fitted 1-D Gaussian mixture :math:`\sum_k \pi_k N(\mu_k, v_k)` and how it was reached.

    ``weights``, ``means``, ``variances``: shape ``(K,)``; ``log_likelihood``: :math:`\ell`
    (summed over the ``num_points`` points) at the fit; ``trace``: :math:`\ell` at the start and
    after each EM iteration or SVI step; ``converged``: the stopping rule was met (EM: the gain
    per point fell under ``tol``; gradient MLE: the score per point under ``gtol``);
    ``collapsed``: the components held at (EM) or found under (gradient) the variance floor.
    """

    weights: torch.Tensor
    means: torch.Tensor
    variances: torch.Tensor
    log_likelihood: float
    trace: torch.Tensor
    method: str
    num_iterations: int
    converged: bool
    num_points: int
    collapsed: list = field(default_factory=list)

    @property
    def scales(self) -> torch.Tensor:
        """Component standard deviations :math:`\\sqrt{v_k}`."""
        return self.variances.sqrt()

    @property
    def mean_log_likelihood(self) -> float:
        """:math:`\\ell / n`, the log-likelihood per point."""
        return self.log_likelihood / self.num_points

    def distribution(self) -> dist.MixtureSameFamily:
        """The fitted mixture as a Pyro distribution."""
        return dist.MixtureSameFamily(
            dist.Categorical(probs=self.weights), dist.Normal(self.means, self.scales)
        )


# ---- checks and shared pieces -------------------------------------------------------------


def _check_data(x) -> torch.Tensor:
    """``x`` as a finite 1-D floating tensor of at least 2 points, else a ``ValueError``."""
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"x must be a 1-D tensor, not {type(x).__name__}") from error
    if x.dim() != 1:
        raise ValueError(f"x must be 1-D (one number per data point), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if x.numel() < 2:
        raise ValueError(f"x needs at least 2 data points, got {x.numel()}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf")
    return x.detach()


def _check_components(num_components, n: int) -> int:
    k = check_int(num_components, "num_components", 1)
    if k > n:
        raise ValueError(f"num_components ({k}) exceeds the number of data points in x ({n})")
    return k


def _positive(value, name: str, zero: bool = False) -> float:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not (value >= 0 if zero else value > 0):
        raise ValueError(f"{name} must be a number {'>=' if zero else '>'} 0, got {value!r}")
    return float(value)


def _default_floor(x: torch.Tensor, min_variance) -> float:
    if min_variance is None:
        return 1e-6 * float(x.var())
    return _positive(min_variance, "min_variance")


def initial_parameters(x, num_components: int, init=None, seed: int = 0) -> dict:
    r"""Starting weights, means and variances for a :math:`K`-component fit of ``x``.

    * ``None`` or ``"quantile"``: split the sorted data into :math:`K` equal-count bins; each
      component starts at its bin's mean and variance, weights :math:`1/K`;
    * ``"spread"``: one broad start, as the talk's :math:`Q = N(0, 1)`: means
      :math:`\bar x + s\,(-\tfrac12, \dots, \tfrac12)`, variances :math:`s^2` (the data's sd
      :math:`s`), weights :math:`1/K`;
    * ``"random"``: means at :math:`K` distinct data points drawn with ``seed``, variances
      :math:`s^2`, weights :math:`1/K`;
    * a dict with ``"weights"``, ``"means"`` and ``"variances"`` (each of length :math:`K`).

    Example::

        >>> init = initial_parameters(torch.tensor([-1.0, -0.9, 1.0, 1.1]), 2)
        >>> [round(m, 2) for m in init["means"].tolist()]
        [-0.95, 1.05]
    """
    x = _check_data(x)
    k = _check_components(num_components, x.numel())
    weights = torch.full((k,), 1.0 / k, dtype=x.dtype)
    variances = torch.full((k,), float(x.var()), dtype=x.dtype)
    if init is None or init == "quantile":
        bins = torch.sort(x).values.tensor_split(k)
        means = torch.stack([b.mean() for b in bins])
        variances = torch.stack([b.var(unbiased=False) for b in bins])
        variances = variances.clamp_min(max(1e-3 * float(x.var()), 1e-12))
    elif init == "spread":
        means = x.mean() + x.std() * torch.linspace(-0.5, 0.5, k, dtype=x.dtype) * (k > 1)
    elif init == "random":
        generator = torch.Generator().manual_seed(seed)
        means = x[torch.randperm(x.numel(), generator=generator)[:k]]
    elif isinstance(init, dict):
        missing = [key for key in MIXTURE_KEYS if key not in init]
        if missing:
            raise ValueError(f"init is missing {missing}; give weights, means and variances")
        start = {key: torch.as_tensor(init[key], dtype=x.dtype).detach() for key in MIXTURE_KEYS}
        for key, value in start.items():
            if value.shape != (k,) or not torch.isfinite(value).all():
                raise ValueError(f"init[{key!r}] must be {k} finite numbers, got {value}")
            if key != "means" and (value <= 0).any():
                raise ValueError(f"init[{key!r}] must be positive, got {value}")
        weights, means, variances = (start[key].clone() for key in MIXTURE_KEYS)
        weights = weights / weights.sum()
    else:
        raise ValueError(f"init must be None, one of {INIT_OPTIONS} or a dict, got {init!r}")
    return dict(zip(MIXTURE_KEYS, (weights, means, variances), strict=True))


def _log_joint(x, log_weights, means, variances) -> torch.Tensor:
    r""":math:`\log\pi_k + \log N(x_i; \mu_k, v_k)`, shape ``(n, K)``."""
    return log_weights - 0.5 * (_LOG_2PI + variances.log() + (x[:, None] - means) ** 2 / variances)


def mixture_log_likelihood(x, weights, means, variances) -> torch.Tensor:
    r"""The log-likelihood :math:`\sum_i \log\sum_k \pi_k N(x_i; \mu_k, v_k)` (a 0-d tensor,
    differentiable in the parameters), computed with ``logsumexp``.

    Example::

        >>> one = torch.ones(1)
        >>> ll = mixture_log_likelihood(torch.zeros(3), one, torch.zeros(1), one)
        >>> round(float(ll), 4)  # 3 * log N(0; 0, 1)
        -2.7568
    """
    x = _check_data(x)
    return torch.logsumexp(_log_joint(x, weights.log(), means, variances), -1).sum()


def _warn_collapse(method: str, k: int, variance: float, floor: float, fix: str):
    message = f"{method}: mixture component {k} collapsed onto one point (variance "
    message += f"{variance:.3g} under the floor {floor:.3g}); the likelihood is unbounded there, "
    message += f"so {fix}. Try another init, fewer components or a larger min_variance"
    warnings.warn(message, UserWarning, stacklevel=3)


# ---- EM ----------------------------------------------------------------------------------


def em_gaussian_mixture(
    x,
    num_components: int,
    init=None,
    max_iter: int = 1000,
    tol: float = 1e-10,
    seed: int = 0,
    min_variance: float | None = None,
) -> MixtureFit:
    r"""Fit a 1-D Gaussian mixture to ``x`` by expectation-maximization.

    E-step (log space): :math:`\log r_{ik} = \log\pi_k + \log N(x_i;\mu_k,v_k) -
    \operatorname{logsumexp}_j[\log\pi_j + \log N(x_i;\mu_j,v_j)]`. M-step: with
    :math:`N_k = \sum_i r_{ik}`, :math:`\pi_k = N_k/n`, :math:`\mu_k = \sum_i r_{ik}x_i / N_k`,
    :math:`v_k = \sum_i r_{ik}(x_i-\mu_k)^2 / N_k`. Each iteration maximizes the ELBO first in
    the assignment posterior, then in :math:`\theta`, so the log-likelihood :math:`\ell` never
    decreases (see the module docstring).

    A component that collapses onto one data point (:math:`v_k \to 0`, :math:`\ell \to \infty`)
    has its variance held at ``min_variance`` (default :math:`10^{-6}` times the data's
    variance), with a warning naming the component; the M-step is then the maximum over
    :math:`v_k \ge` ``min_variance``, so :math:`\ell` still never decreases. A component left with
    no responsibility keeps its mean and variance, with weight 0, and a warning.

    :param x: the data, a 1-D tensor; ``num_components``: :math:`K \ge 1`.
    :param init: the start (:func:`initial_parameters`); ``seed``: for ``init="random"``.
    :param max_iter: the most iterations; ``tol``: stop when one raises :math:`\ell/n` by less.
    :returns: a :class:`MixtureFit`; its ``trace`` holds :math:`\ell` at the start and after
        each iteration.

    Example::

        >>> x = torch.cat([torch.randn(300) * 0.5, torch.randn(700) + 6.0])
        >>> fit = em_gaussian_mixture(x, 2)
        >>> [round(w, 1) for w in fit.weights.tolist()]
        [0.3, 0.7]
    """
    x = _check_data(x)
    n = x.numel()
    k = _check_components(num_components, n)
    max_iter = check_int(max_iter, "max_iter", 0)
    tol = _positive(tol, "tol", zero=True)
    floor = _default_floor(x, min_variance)
    start = initial_parameters(x, k, init, seed)
    log_w, means = start["weights"].log(), start["means"]
    variances = start["variances"].clamp_min(floor)
    collapsed, empty = set(), set()

    def e_step():
        joint = _log_joint(x, log_w, means, variances)
        log_px = torch.logsumexp(joint, -1, keepdim=True)
        return joint - log_px, float(log_px.sum())

    log_r, ll = e_step()
    trace, converged = [ll], False
    for _ in range(max_iter):
        # M-step: closed form, from the log responsibilities
        log_nk, r = torch.logsumexp(log_r, 0), log_r.exp()
        nk = log_nk.exp()
        alive = nk > 1e-12 * n
        for j in (~alive).nonzero().flatten().tolist():
            if j not in empty:
                empty.add(j)
                message = f"EM: mixture component {j} has no responsibility left (weight ~0)"
                warnings.warn(f"{message}; try another init or fewer components", stacklevel=2)
        log_w = log_nk - math.log(n)
        safe_nk = torch.where(alive, nk, torch.ones_like(nk))
        new_means = (r * x[:, None]).sum(0) / safe_nk
        new_vars = (r * (x[:, None] - new_means) ** 2).sum(0) / safe_nk
        means = torch.where(alive, new_means, means)
        new_vars = torch.where(alive, new_vars, variances)
        for j in (new_vars < floor).nonzero().flatten().tolist():
            if j not in collapsed:
                collapsed.add(j)
                _warn_collapse("EM", j, float(new_vars[j]), floor, "its variance is held there")
        variances = new_vars.clamp_min(floor)
        log_r, ll = e_step()
        trace.append(ll)
        if trace[-1] - trace[-2] < tol * n:
            converged = True
            break
    if not converged and max_iter > 0:
        gain = (trace[-1] - trace[-2]) / n
        message = f"EM stopped at max_iter={max_iter}, the log-likelihood rising by {gain:.3g}"
        warnings.warn(f"{message} per point (tol={tol:g}); raise max_iter or tol", stacklevel=2)
    trace = torch.tensor(trace, dtype=torch.float64)
    fit = (log_w.exp(), means, variances, trace[-1].item(), trace, "EM", len(trace) - 1)
    return MixtureFit(*fit, converged, n, sorted(collapsed))


# ---- gradient MLE through pyrodiv's CrossEntropy -------------------------------------------


def mixture_guide(num_components: int, init: dict, num_points: int | None = None):
    r"""A Pyro guide whose one site ``"x"`` is the mixture
    ``MixtureSameFamily(Categorical(logits), Normal(locs, scales))`` with learnable
    ``mixture_logits``, ``mixture_locs`` and ``mixture_scales`` (positive), started at ``init``
    (:func:`initial_parameters`). With ``num_points`` the site holds a whole data set of that
    many points (event shape ``(num_points,)``), so :math:`\log q` is the full log-likelihood.

    Example::

        >>> guide = mixture_guide(2, initial_parameters(torch.randn(10), 2))
        >>> guide().shape
        torch.Size([])
    """
    check_int(num_components, "num_components", 1)

    def guide(*args, **kwargs):
        logits = pyro.param("mixture_logits", init["weights"].log().clone())
        locs = pyro.param("mixture_locs", init["means"].clone())
        scales = pyro.param(
            "mixture_scales", init["variances"].sqrt().clone(), constraint=constraints.positive
        )
        mix = dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(locs, scales))
        if num_points is not None:
            mix = mix.expand([num_points]).to_event(1)
        return pyro.sample("x", mix)

    return guide


def _score_per_point(x, logits, locs, log_scales) -> float:
    """The largest absolute gradient of ``ell / n`` in (logits, locs, log scales)."""
    params = [p.detach().clone().requires_grad_(True) for p in (logits, locs, log_scales)]
    weights = params[0].softmax(-1)
    ll = mixture_log_likelihood(x, weights, params[1], (2.0 * params[2]).exp()) / x.numel()
    grads = torch.autograd.grad(ll, params)
    return max(float(g.abs().max()) for g in grads)


def gradient_mle_gaussian_mixture(
    x,
    num_components: int,
    steps: int = 2000,
    lr: float = 0.05,
    final_lr: float = 1e-4,
    batch_size: int | None = None,
    init=None,
    seed: int = 0,
    gtol: float = 1e-4,
    min_variance: float | None = None,
) -> MixtureFit:
    r"""Fit the same mixture by gradient maximum likelihood: ``pyrodiv.CrossEntropy`` on a
    :class:`~pyrodiv.divergences.targets.SampleTarget` of ``x``, with the mixture guide
    (:func:`mixture_guide`), in the ordinary :class:`pyro.infer.SVI` loop with
    ``pyro.optim.ClippedAdam`` (learning rate decayed from ``lr`` to ``final_lr``).

    The cross-entropy :math:`H(P, Q_\theta) = -\mathbb E_P[\log q_\theta(x)]` of the empirical
    distribution :math:`P = \frac1n\sum_i\delta_{x_i}` is :math:`-\ell(\theta)/n`, so its
    minimizer is the maximum-likelihood estimate that EM reaches. With ``batch_size=None`` the
    target holds the whole data set as one draw and every step uses the exact gradient of
    :math:`-\ell`; with a ``batch_size`` each step draws that many points with replacement (the
    stochastic gradient of the same objective, ``num_particles=batch_size``).

    ``x``, ``num_components``, ``init``, ``seed`` (also of the minibatches) and
    ``min_variance`` (here only warned of) are as for :func:`em_gaussian_mixture`; ``converged``
    means that the largest score per point ends under ``gtol``, else a warning. The ``trace``
    holds :math:`\ell` at the start and after each step (exact, on all the points).

    Example::

        >>> x = torch.cat([torch.randn(500) - 7.0, torch.randn(500) + 7.0])
        >>> fit = gradient_mle_gaussian_mixture(x, 2, steps=300)
        >>> [round(m) for m in fit.means.tolist()]
        [-7, 7]
    """
    from ..divergences.losses import CrossEntropy
    from ..divergences.targets import SampleTarget

    x = _check_data(x)
    n = x.numel()
    k = _check_components(num_components, n)
    steps = check_int(steps, "steps", 0)
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", 1)
    lr, final_lr = _positive(lr, "lr"), _positive(final_lr, "final_lr")
    floor = _default_floor(x, min_variance)
    start = initial_parameters(x, k, init, seed)
    if batch_size is None:
        target = SampleTarget({"x": x.unsqueeze(0)})
        guide = mixture_guide(k, start, num_points=n)
        loss = CrossEntropy(num_particles=1, max_plate_nesting=0)
    else:
        target = SampleTarget({"x": x})
        guide = mixture_guide(k, start)
        loss = CrossEntropy(
            num_particles=batch_size, vectorize_particles=True, max_plate_nesting=0
        )
    decay = (final_lr / lr) ** (1.0 / max(steps, 1))
    optim = pyro.optim.ClippedAdam({"lr": lr, "lrd": decay, "clip_norm": 1e6})
    rng = pyro.util.get_rng_state()
    pyro.set_rng_seed(seed)
    try:
        with pyro.get_param_store().scope():  # the user's param store is left as it was
            guide()  # create the params at the start
            svi = pyro.infer.SVI(target, guide, optim, loss)
            names = ("mixture_logits", "mixture_locs", "mixture_scales")
            trace = []
            for step in range(steps + 1):
                if step:
                    svi.step()
                logits, locs, scales = (pyro.param(name).detach() for name in names)
                ll = mixture_log_likelihood(x, logits.softmax(-1), locs, scales**2)
                trace.append(float(ll))
    finally:
        pyro.util.set_rng_state(rng)
    score = _score_per_point(x, logits, locs, scales.log())
    converged = score < gtol
    variances = scales**2
    collapsed = (variances < floor).nonzero().flatten().tolist()
    for j in collapsed:
        _warn_collapse(GRADIENT, j, float(variances[j]), floor, "the fit is degenerate")
    if not converged and steps > 0 and not collapsed:
        message = f"{GRADIENT} stopped after {steps} steps, the score {score:.3g} per point "
        warnings.warn(
            f"{message}(gtol={gtol:g}); try more steps, a larger lr, or EM", stacklevel=2
        )
    trace = torch.tensor(trace, dtype=torch.float64)
    fit = (logits.softmax(-1), locs, variances, trace[-1].item(), trace, GRADIENT, steps)
    return MixtureFit(*fit, converged, n, collapsed)


# ---- the figure -----------------------------------------------------------------------------


def draw_mixture(spec: dict, num_points: int, seed: int = 0) -> torch.Tensor:
    r"""``num_points`` float64 draws of the mixture ``spec`` (``weights``, ``means`` and
    ``variances``, as in ``pyrodiv.demo.mixtures.MIXTURES``), seeded.

    Example::

        >>> draw_mixture({"weights": [1.0], "means": [3.0], "variances": [1.0]}, 5).shape
        torch.Size([5])
    """
    w, m, v = (torch.tensor(spec[key], dtype=torch.float64) for key in MIXTURE_KEYS)
    generator = torch.Generator().manual_seed(seed)
    z = torch.multinomial(w, num_points, replacement=True, generator=generator)
    return m[z] + v[z].sqrt() * torch.randn(num_points, generator=generator, dtype=torch.float64)


def plot_em_vs_gradient(
    out_dir=None,
    *,
    mixtures: dict | None = None,
    num_points: int = 2000,
    init="spread",
    steps: int = 1500,
    lr: float = 0.05,
    seed: int = 0,
    name: str = "em_vs_gradient.png",
) -> dict:
    r"""The log-likelihood per point against EM iteration and against SVI step of gradient MLE
    (``CrossEntropy``), from the same ``init``, on ``num_points`` draws of each mixture (default:
    the talk's two, ``pyrodiv.demo.mixtures.MIXTURES``: the bimodal
    :math:`\tfrac12 N(-7, 1.4) + \tfrac12 N(7, 1.4)` and
    :math:`0.2\,N(-6, 1) + 0.5\,N(0, 2.5) + 0.3\,N(5, 0.8)`), with the log-likelihood at the
    true parameters dashed. Saves ``out_dir/name`` (PNG) when ``out_dir`` is given.

    :returns: ``{mixture name: {"em": MixtureFit, "gradient": MixtureFit, "x": draws,
        "true_log_likelihood": float}, "figure": file name or None}``.

    Example::

        >>> res = plot_em_vs_gradient("figures", num_points=500, steps=300)  # doctest: +SKIP
    """
    from .output import new_figure, save_figure

    if mixtures is None:
        from ..demo.mixtures import MIXTURES as mixtures  # the talk's two mixtures
    result = {}
    fig, axes = new_figure(1, len(mixtures), size=(6.5 * len(mixtures), 4.4), squeeze=False)
    for ax, (index, (label, spec)) in zip(axes[0], enumerate(mixtures.items()), strict=True):
        x, k = draw_mixture(spec, num_points, seed + index), len(spec["weights"])
        em = em_gaussian_mixture(x, k, init=init, seed=seed)
        grad = gradient_mle_gaussian_mixture(x, k, steps=steps, lr=lr, init=init, seed=seed)
        truth = (torch.tensor(spec[key], dtype=torch.float64) for key in MIXTURE_KEYS)
        true_ll = float(mixture_log_likelihood(x, *truth))
        result[label] = {"em": em, "gradient": grad, "x": x, "true_log_likelihood": true_ll}
        for fit, style, what in ((em, "o-", "iterations"), (grad, "-", "steps")):
            steps_axis = torch.arange(1, fit.trace.numel() + 1)
            tag = f"{fit.method} ({fit.num_iterations} {what})"
            ax.plot(steps_axis, fit.trace / num_points, style, ms=3, label=tag)
        ax.axhline(true_ll / num_points, ls="--", color="black", lw=1, label="true parameters")
        low, top = float(em.trace[0]) / num_points, em.log_likelihood / num_points
        ax.set(xscale="log", ylim=(low - 0.05 * (top - low), top + 0.1 * (top - low)))
        ax.set(xlabel="EM iteration / SVI step (+1)", ylabel="log-likelihood per point")
        ax.set_title(f"{k} components, n = {num_points}")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3)
    result["figure"] = save_figure(fig, out_dir, name)
    return result
