r"""The warm start of :func:`pyrodiv.approximate`: a Laplace approximation in the unconstrained
space, and Gaussian guides whitened by it.

Every latent site :math:`x_j` with support :math:`S_j` is mapped to the real line by
``biject_to(S_j)``, :math:`x = T(z)`, and packed into one vector :math:`z \in \mathbb R^D` in
the order of :class:`pyro.infer.autoguide.AutoContinuous`. The unconstrained log density is

.. math::

    \log \pi(z) = \log p(\text{data}, T(z)) + \log |\det \partial T(z) / \partial z| .

:func:`laplace` finds its mode :math:`m` (torch L-BFGS with a strong-Wolfe line search, then
damped Newton steps with the exact Hessian, from several starts) and the Hessian
:math:`H = -\nabla^2 \log\pi(m)`; the Laplace approximation is
:math:`N(m, H^{-1}) = N(m, L L^\top)`. A Hessian that is not positive definite (a saddle, a
flat direction) has its eigenvalues replaced by their absolute values, floored, and the
count is recorded.

:class:`AutoWhitenedNormal` is a Gaussian guide in the coordinates
:math:`u = L^{-1}(z - m)`, where the posterior is near :math:`N(0, I)` whatever the scales
and correlations of the model (a predictor near 100 or 2000, an intercept correlated with a
slope at 0.9999):

.. math::

    q(z) = N\big(m + L a,\ (L B)(L B)^\top\big), \qquad
    B = \operatorname{diag}(e^{s}) + \operatorname{tril}(R, -1),

with the learned :math:`a`, :math:`s`, :math:`R` starting at 0 (the Laplace approximation
itself). ``full_rank=False`` keeps :math:`B` and :math:`L` diagonal (the marginal Laplace
sds), the family of ``AutoNormal``. Adam then moves :math:`a` and :math:`s` in units of
posterior sds.

Example::

    >>> guide = AutoWhitenedNormal(model)                                   # doctest: +SKIP
    >>> start = laplace(model, guide, (), {"y": y})                         # doctest: +SKIP
    >>> guide.set_whitening(start.mode, start.scale_tril)                   # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.distributions.transforms import biject_to
from pyro.infer.autoguide import AutoContinuous
from pyro.infer.autoguide.initialization import init_to_median, init_to_uniform
from torch import nn

__all__ = ["AutoWhitenedNormal", "LaplaceStart", "laplace", "log_density_fn"]

_names = itertools.count()


class AutoWhitenedNormal(AutoContinuous):
    r"""A Gaussian guide :math:`N(m + L a, (LB)(LB)^\top)` over the packed unconstrained
    latents, whitened by a fixed :math:`(m, L)` (see the module doc).

    :param model: the Pyro model.
    :param full_rank: a full-rank :math:`B` (and :math:`L`); else both diagonal.
    :param init_loc_fn: the per-site initialization used for the prototype trace and as the
        first start of :func:`laplace`.

    Call :meth:`set_whitening` after the prototype is set up; until then :math:`m` is the
    initial location and :math:`L = I`. Each instance has its own parameter names, so that
    several guides of one model do not share the param store's entries.
    """

    def __init__(self, model, full_rank: bool = True, init_loc_fn=init_to_median):
        super().__init__(model, init_loc_fn=init_loc_fn)
        self._pyro_name = f"{type(self).__name__}_{next(_names)}"
        self.full_rank = bool(full_rank)
        self.center = None
        self.factor = None

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        init = self._init_loc().detach()
        dim = self.latent_dim
        self.loc = nn.Parameter(torch.zeros_like(init))
        self.log_scale = nn.Parameter(torch.zeros_like(init))
        if self.full_rank:
            self.tril = nn.Parameter(init.new_zeros(dim, dim))
        self.center = init
        self.factor = torch.eye(dim, dtype=init.dtype) if self.full_rank else init.new_ones(dim)

    def set_whitening(self, center: torch.Tensor, scale_tril: torch.Tensor) -> None:
        """Fix :math:`m` and :math:`L` (a diagonal guide keeps the diagonal of
        :math:`L L^\\top`, as sds) and reset :math:`a, s, R` to 0."""
        self.center = center.detach().clone()
        if self.full_rank or scale_tril.dim() == 1:  # a diagonal guide's own factor: sds
            self.factor = scale_tril.detach().clone()
        else:
            self.factor = scale_tril.detach().pow(2).sum(-1).sqrt()
        self._zero_gaussian()

    def _zero_gaussian(self) -> None:
        """Reset :math:`a, s, R` to 0 (the warm start itself, in whitened coordinates)."""
        with torch.no_grad():
            for p in (self.loc, self.log_scale, getattr(self, "tril", None)):
                if p is not None:
                    p.zero_()

    def rewhiten(self) -> float:
        r"""Make the current guide the new whitening, :math:`m \leftarrow m + La`,
        :math:`L \leftarrow LB`, and reset :math:`a, s, R` to 0; returns how far the guide
        had moved from the old whitening (the largest of :math:`|a|_\infty` and
        :math:`|\log \sigma(B)|_\infty`)."""
        a, sds = self.whitened_moments()
        moved = max(float(a.abs().max()), float(sds.log().abs().max()))
        with torch.no_grad():
            posterior = self.get_posterior()
            if self.full_rank:
                self.set_whitening(posterior.loc, posterior.scale_tril)
            else:
                self.center = posterior.base_dist.loc.detach().clone()
                self.factor = posterior.base_dist.scale.detach().clone()
                self._zero_gaussian()
        return moved

    def whitened_tril(self) -> torch.Tensor:
        """:math:`B`, the guide's Cholesky factor in whitened coordinates."""
        B = torch.diag_embed(self.log_scale.exp())
        if self.full_rank:
            B = B + torch.tril(self.tril, -1)
        return B

    def get_posterior(self, *args, **kwargs):
        if self.full_rank:
            loc = self.center + self.factor @ self.loc
            return dist.MultivariateNormal(loc, scale_tril=self.factor @ self.whitened_tril())
        loc = self.center + self.factor * self.loc
        return dist.Normal(loc, self.factor * self.log_scale.exp()).to_event(1)

    def _loc_scale(self, *args, **kwargs):
        posterior = self.get_posterior()
        if self.full_rank:
            return posterior.loc, posterior.scale_tril.pow(2).sum(-1).sqrt()
        return posterior.base_dist.loc, posterior.base_dist.scale

    def whitened_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The guide's mean :math:`a` and per-direction sds (singular values of :math:`B`) in
        whitened coordinates, where the warm start is :math:`N(0, I)`."""
        with torch.no_grad():
            return self.loc.detach().clone(), torch.linalg.svdvals(self.whitened_tril())


def log_density_fn(model, guide: AutoContinuous, args: tuple, kwargs: dict):
    r"""``f(z)``: the unconstrained log density :math:`\log\pi(z)` of the packed vector ``z``
    of shape ``(D,)``, in the packing of ``guide`` (set up), with the Jacobian of the
    constraining transforms and Pyro's plate scaling."""

    def log_density(z: torch.Tensor) -> torch.Tensor:
        values, log_det = {}, z.new_zeros(())
        for site, unconstrained in guide._unpack_latent(z):
            transform = biject_to(site["fn"].support)
            value = transform(unconstrained)
            log_det = log_det + transform.log_abs_det_jacobian(unconstrained, value).sum()
            values[site["name"]] = value
        with poutine.block():
            trace = poutine.trace(poutine.condition(model, values)).get_trace(*args, **kwargs)
        return trace.log_prob_sum() + log_det

    return log_density


@dataclass
class LaplaceStart:
    r"""The outcome of :func:`laplace`: the mode :math:`m` of :math:`\log\pi`, the Cholesky
    factor :math:`L` of :math:`H^{-1}`, the log density at the mode, the number of gradient
    evaluations (a Hessian counts :math:`D`), the wall time, the number of Hessian eigenvalues
    that had to be fixed (0 for a proper local maximum), the largest Newton decrement left
    (:math:`g^\top H^{-1} g`, small when converged) and ``optima``: the log densities of the
    distinct local maxima the starts reached (more than 3 Laplace sds apart), highest
    first."""

    mode: torch.Tensor
    scale_tril: torch.Tensor
    log_density: float
    num_gradient_evaluations: int
    seconds: float
    fixed_eigenvalues: int
    newton_decrement: float
    path_point: int | None = None
    optima: list = field(default_factory=list)


def _gradient(f, z):
    z = z.detach().requires_grad_()
    value = f(z)
    (grad,) = torch.autograd.grad(value, z)
    return value.detach(), grad


def _lbfgs(f, z0, max_iter: int) -> tuple[torch.Tensor, float, int, list]:
    z = z0.detach().clone().requires_grad_()
    optimizer = torch.optim.LBFGS(
        [z],
        lr=1.0,
        max_iter=max_iter,
        max_eval=int(max_iter * 1.5),
        tolerance_grad=1e-10,
        tolerance_change=1e-14,
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    count = 0
    path = []

    def closure():
        nonlocal count
        count += 1
        optimizer.zero_grad()
        try:
            value = -f(z)
        except (ValueError, RuntimeError):  # a trial point where the model is not defined
            # (with validation on, a NaN likelihood raises): reject that step, not the start
            return torch.tensor(1e300, dtype=z.dtype)
        if not torch.isfinite(value):
            return torch.full_like(value, 1e300)
        value.backward()
        path.append((float(value.detach()), z.detach().clone()))
        return value

    optimizer.step(closure)
    with torch.no_grad():
        value = float(f(z))
    return z.detach(), value, count + 1, path


def _fixed_cholesky(H: torch.Tensor, floor: float) -> tuple[torch.Tensor, int]:
    """Cholesky factor of :math:`H^{-1}`, with eigenvalues of H made at least ``floor``."""
    H = 0.5 * (H + H.T)
    eigenvalues, vectors = torch.linalg.eigh(H)
    bad = int((eigenvalues < floor).sum())
    eigenvalues = eigenvalues.abs().clamp(min=floor)
    covariance = (vectors / eigenvalues) @ vectors.T
    covariance = 0.5 * (covariance + covariance.T)
    return torch.linalg.cholesky(covariance), bad


def laplace(
    model,
    guide: AutoContinuous,
    args: tuple,
    kwargs: dict,
    *,
    num_starts: int = 5,
    max_iter: int = 200,
    newton_steps: int = 8,
    seed: int = 0,
    elbo=None,
    path_points: int = 6,
) -> LaplaceStart:
    r"""The Laplace approximation :math:`N(m, H^{-1})` of ``model``'s posterior in the
    unconstrained packing of ``guide`` (set up here if needed).

    The mode is searched by L-BFGS from the guide's initial location (``init_loc_fn``, e.g.
    the prior medians, where a HalfCauchy(100) scale sits at 100), then from
    ``num_starts - 1`` uniform draws in :math:`[-2, 2]` per coordinate (Stan's init), every
    one of them (a hidden Markov model's prior medians can lead to a local mode 60 nats below
    the posterior's); the best finite end point is polished by up to ``newton_steps`` damped
    Newton steps with the exact Hessian (``torch.autograd.functional.hessian``), which also
    reach the mode along the nearly flat directions of badly conditioned posteriors where
    L-BFGS stalls.

    With ``elbo`` (``(center, scale_tril) -> (ELBO estimate, gradient evaluations)``), up to
    ``path_points`` Gaussians at points of the L-BFGS path (their own Hessians) compete with
    the Laplace approximation, and the one of largest ELBO is returned (as in Pathfinder,
    Zhang et al. 2022, with the exact Hessian instead of the L-BFGS estimate);
    ``path_point`` says which (``None``: the mode).

    :raises ValueError: when no start gives a finite log density.
    """
    began = time.perf_counter()
    if guide.prototype_trace is None:
        guide._setup_prototype(*args, **kwargs)
    f = log_density_fn(model, guide, args, kwargs)
    dim = guide.latent_dim
    count = 0
    starts = [guide._init_loc().detach()]
    with torch.random.fork_rng():
        pyro.set_rng_seed(seed)
        for _ in range(num_starts - 1):
            with poutine.block():
                site_values = {}
                for name, site in guide.prototype_trace.iter_stochastic_nodes():
                    value = init_to_uniform(site, radius=2.0)
                    site_values[name] = biject_to(site["fn"].support).inv(value).reshape(-1)
            starts.append(torch.cat(list(site_values.values())))
    best, best_value, best_path, ends = None, -math.inf, [], []
    for start in starts:
        try:
            z, value, used, path = _lbfgs(f, start, max_iter)
        except (RuntimeError, ValueError):
            continue
        count += used
        if math.isfinite(value):
            ends.append((value, z.detach()))
            if value > best_value:
                best, best_value, best_path = z, value, path
    if best is None:
        raise ValueError(
            "approximate: the model's log density is not finite at any start (the prior "
            "medians and uniform draws on [-2, 2] in the unconstrained space); give a start "
            "with ApproximateSettings(init_values={site: value})"
        )
    z = best
    floor = 1e-8
    decrement = math.inf
    for iteration in range(newton_steps + 1):
        value, grad = _gradient(f, z)
        H = -torch.autograd.functional.hessian(f, z.detach())
        count += 1 + dim
        L, bad = _fixed_cholesky(H, floor)
        step = L @ (L.T @ grad)  # H^{-1} g: an ascent direction of log pi
        decrement = float(grad @ step)
        if decrement < 1e-10 or iteration == newton_steps:
            break
        t = 1.0
        for _halving in range(30):
            candidate = z + t * step
            with torch.no_grad():
                new = f(candidate)
            count += 1
            if torch.isfinite(new) and new >= value + 0.25 * t * decrement:
                break
            t *= 0.5
        else:
            break
        z = candidate.detach()
    with torch.no_grad():
        log_density = float(f(z))
    center, path_point = z.detach(), None
    if elbo is not None and path_points:
        # Pathfinder's idea: a Gaussian at a point of the optimization path can beat the
        # Laplace approximation at the mode (hierarchical models, whose joint mode sits in a
        # corner of the posterior). Candidates: evenly spaced accepted points of the path.
        accepted = _monotone(best_path)
        step = max(1, len(accepted) // path_points)
        candidates = [(center, L)]
        for point in accepted[::step][:path_points]:
            H_point = -torch.autograd.functional.hessian(f, point)
            count += dim
            candidates.append((point, _fixed_cholesky(H_point, floor)[0]))
        scores = []
        for point, tril in candidates:
            value, used = elbo(point, tril)
            count += used
            scores.append(value)
        index = max(range(len(scores)), key=lambda i: scores[i])
        if index > 0:
            center, L = candidates[index]
            path_point = index
    return LaplaceStart(
        mode=center,
        scale_tril=L.detach(),
        log_density=log_density,
        num_gradient_evaluations=count,
        seconds=time.perf_counter() - began,
        fixed_eigenvalues=bad,
        newton_decrement=decrement,
        path_point=path_point,
        optima=_distinct(ends, L.detach()),
    )


def _distinct(ends: list, scale_tril: torch.Tensor, gap: float = 3.0) -> list:
    """The log densities of the distinct optima among the end points ``[(value, z)]``,
    highest first: an end point more than ``gap`` Laplace sds (whitened by ``scale_tril``)
    from every higher one is another optimum."""
    kept = []
    for value, z in sorted(ends, key=lambda end: -end[0]):
        far = all(
            float(torch.linalg.solve_triangular(scale_tril, (z - other)[:, None], upper=False)
                  .abs().max()) > gap
            for _, other in kept
        )  # fmt: skip
        if far:
            kept.append((value, z))
    return [value for value, _ in kept]


def _monotone(path):
    """The points of an L-BFGS run that improved on every earlier one (its accepted iterates,
    up to line-search trials)."""
    out, best = [], math.inf
    for value, point in path:
        if value < best:
            out.append(point)
            best = value
    return out
