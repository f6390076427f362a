r"""Optimal-transport (Wasserstein) distances between two sets of draws, differentiable in torch.

For empirical distributions :math:`\hat Q = \frac1n\sum_i\delta_{x_i}` and
:math:`\hat P = \frac1m\sum_j \delta_{y_j}` in :math:`\mathbb{R}^D`,

.. math::

    W_p(\hat Q, \hat P) = \Big(\min_{\pi \in \Pi(\hat Q, \hat P)}
        \sum_{ij} \pi_{ij}\, \|x_i - y_j\|^p\Big)^{1/p}.

* ``"exact"``: in one dimension the optimal plan matches sorted draws,
  :math:`W_p^p = \int_0^1 |F_Q^{-1}(u) - F_P^{-1}(u)|^p du` (:func:`ot.wasserstein_1d`,
  :math:`O(n\log n)`); in several, the linear program (:func:`ot.emd2`, :math:`O(n^3)`).
* ``"sliced"``: :math:`SW_p^p = \mathbb{E}_{\theta\sim \mathrm{Unif}(S^{D-1})}
  W_p^p(\theta^\top\hat Q, \theta^\top \hat P)`, over ``num_projections`` random directions
  drawn from torch's random state (so Pyro's seed fixes them). A different distance from
  :math:`W_p` (:math:`SW_p \le W_p`), zero only when :math:`Q = P`; :math:`O(Ln\log n)`.
* ``"sinkhorn"``: the entropic plan (:func:`ot.sinkhorn2`, log-domain iterations) with
  regularization ``reg`` times the mean cost; biased upward by the entropy term.

The computations are POT's, whose torch backend carries gradients to the draws.
The estimate between finite samples is biased upward as an estimate of :math:`W_p(Q, P)`
(:math:`O(n^{-1/2})` in 1-D, :math:`O(n^{-1/D})` for exact transport in :math:`D > 2`).

Example::

    >>> x = torch.tensor([0.0, 1.0, 2.0])
    >>> float(wasserstein(x, x + 3.0))
    3.0
"""

from __future__ import annotations

import ot
import torch

METHODS = ("auto", "exact", "sliced", "sinkhorn")


def _as_matrix(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape (num_draws,) or (num_draws, D), got {x.shape}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    p: float = 1.0,
    method: str = "auto",
    num_projections: int = 100,
    reg: float = 0.05,
) -> torch.Tensor:
    r""":math:`W_p` between the draws ``x`` (shape ``(n,)`` or ``(n, D)``) and ``y`` (``(m, D)``).

    :param p: the order, :math:`p \ge 1`.
    :param method: ``"exact"``, ``"sliced"``, ``"sinkhorn"``, or ``"auto"`` (exact in 1-D,
        sliced otherwise).
    :param num_projections: directions of the sliced distance.
    :param reg: entropic regularization of Sinkhorn, relative to the mean cost.

    Example::

        >>> x = torch.randn(200, 2)
        >>> float(wasserstein(x, x, method="exact"))
        0.0
    """
    x, y = _as_matrix(x, "x"), _as_matrix(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y differ in dimension: {x.shape[1]} and {y.shape[1]}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if not p >= 1.0:
        raise ValueError(f"p must be >= 1, got {p}")
    y = y.to(x)
    if method == "auto":
        method = "exact" if x.shape[1] == 1 else "sliced"
    if method == "exact" and x.shape[1] == 1:
        return ot.wasserstein_1d(x, y, p=p)[0] ** (1.0 / p)
    if method == "sliced":
        directions = torch.randn(x.shape[1], num_projections, dtype=x.dtype, device=x.device)
        directions = directions / directions.norm(dim=0, keepdim=True)
        return ot.sliced_wasserstein_distance(x, y, p=p, projections=directions)
    squared = ot.dist(x, y, metric="sqeuclidean")
    if p == 2.0:
        cost = squared
    else:  # |x - y|^p with a finite gradient where x = y (the square root's is infinite)
        positive = squared > 0
        cost = torch.where(positive, squared.where(positive, 1.0) ** (p / 2), 0.0)
    a = torch.full((x.shape[0],), 1.0 / x.shape[0], dtype=x.dtype, device=x.device)
    b = torch.full((y.shape[0],), 1.0 / y.shape[0], dtype=x.dtype, device=x.device)
    if method == "exact":
        return ot.emd2(a, b, cost) ** (1.0 / p)
    scale = cost.detach().mean().clamp_min(torch.finfo(x.dtype).tiny)
    return ot.sinkhorn2(a, b, cost, reg * scale, method="sinkhorn_log") ** (1.0 / p)
