r"""Monte Carlo estimators of divergences, in pure torch.

Every estimator takes per-particle log-densities (1-D tensors over :math:`K` particles) and
returns an :class:`Estimate`: the ``value`` of the divergence estimate (detached) and a
``surrogate`` scalar whose value equals ``value`` and whose gradient is the gradient estimator.
Gradients flow in three ways:

* pathwise, through ``log_p`` and ``log_q`` when the particles were drawn by ``rsample``;
* through the parameters of :math:`Q` at fixed particles (``log_q`` evaluated at detached draws);
* by the score function, through ``score`` (the summed log-density of the guide sites that
  could not be reparameterized), with a leave-one-out baseline, which keeps the estimator
  unbiased and lowers its variance:

  .. math::

      \nabla_\theta \mathbb{E}_Q[g] \approx \frac1K \sum_k
        \big(g_k - \bar g_{-k}\big) \nabla_\theta \log q_\theta(x_k)
        + \nabla_\theta g_k,\qquad \bar g_{-k} = \frac{1}{K-1}\sum_{j\ne k} g_j.

The score term is added as :math:`(g_k - \bar g_{-k})\,(s_k - \mathrm{sg}(s_k))`, which is zero
in value, so ``surrogate`` and ``value`` agree.

Nothing here knows about Pyro: each function is checked against closed forms in the tests.
All reductions over particles use ``logsumexp``/``softmax``, so shifting every log-weight by
:math:`\pm 10^4` (an unnormalized posterior) changes no self-normalized result.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .generators import LOG2, Generator


class Estimate(NamedTuple):
    """A divergence estimate: its detached ``value`` and a ``surrogate`` for autograd."""

    value: torch.Tensor
    surrogate: torch.Tensor


def _estimate(value: torch.Tensor, objective: torch.Tensor) -> Estimate:
    """An estimate reporting ``value`` whose gradient is that of ``objective``."""
    if objective is value:  # the value is its own surrogate: no extra graph nodes
        return Estimate(value.detach(), value)
    return Estimate(value.detach(), value.detach() + (objective - objective.detach()))


def log_mean_exp(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r""":math:`\log \frac1K \sum_k e^{x_k}`, computed with ``logsumexp``.

    Example::

        >>> float(log_mean_exp(torch.tensor([1e4, 1e4])))
        10000.0
    """
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])


def mean_under_q(values: torch.Tensor, score: torch.Tensor | None = None) -> torch.Tensor:
    r"""The surrogate of :math:`\mathbb{E}_{x\sim Q}[g(x)]` from ``values`` :math:`g(x_k)`.

    Its value is the sample mean. With ``score`` (per-particle :math:`\log q_\theta(x_k)` of the
    non-reparameterized sites), it adds the leave-one-out score-function term.

    Example::

        >>> mean_under_q(torch.tensor([1.0, 3.0]))
        tensor(2.)
    """
    mean = values.mean()
    if score is None or not score.requires_grad:
        return mean
    return mean + _score_term(values, score)


def _score_term(values: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """The leave-one-out score-function term of :func:`mean_under_q`, zero in value."""
    k = values.numel()
    baseline = (values.sum() - values) / (k - 1) if k > 1 else torch.zeros_like(values)
    return ((values - baseline).detach() * (score - score.detach())).mean()


def _mean_estimate(values: torch.Tensor, score: torch.Tensor | None) -> Estimate:
    """The sample mean of ``values`` as an :class:`Estimate` with the gradient of
    :func:`mean_under_q`, the mean computed once."""
    mean = values.mean()
    if score is None or not score.requires_grad:
        return _estimate(mean, mean)
    return _estimate(mean, mean + _score_term(values, score))


def f_divergence(
    f: Generator, log_p: torch.Tensor, log_q: torch.Tensor, score: torch.Tensor | None = None
) -> Estimate:
    r"""Unbiased :math:`D_f(P\|Q) = \mathbb{E}_Q[f(p/q)] \approx \frac1K\sum_k f(p(x_k)/q(x_k))`,
    :math:`x_k \sim Q`.

    Needs a normalized ``log_p`` (a prior target).

    Example::

        >>> from pyrodiv.divergences.generators import get_generator
        >>> est = f_divergence(get_generator("kl_reverse"), torch.zeros(3), torch.ones(3))
        >>> float(est.value)  # E_Q[log q - log p]
        1.0
    """
    return _mean_estimate(f(log_p - log_q), score)


def kl_forward(log_p: torch.Tensor, log_q: torch.Tensor) -> Estimate:
    r"""Unbiased :math:`\mathrm{KL}(P\|Q) \approx \frac1K \sum_k \log p(x_k) - \log q(x_k)`,
    :math:`x_k \sim P`.

    The draws come from :math:`P`, so the gradient :math:`-\frac1K\sum_k \nabla_\theta \log
    q_\theta(x_k)` (maximum likelihood on :math:`P`'s draws) needs no reparameterization.

    Example::

        >>> float(kl_forward(torch.tensor([-1.0, -1.0]), torch.tensor([-2.0, -3.0])).value)
        1.5
    """
    return _estimate((log_p - log_q).mean(), -log_q.mean())


def cross_entropy(log_q: torch.Tensor) -> Estimate:
    r"""Cross-entropy :math:`H(P, Q) = -\mathbb{E}_P[\log q(x)] \approx -\frac1K\sum_k \log
    q(x_k)`, :math:`x_k \sim P`: the negative average log-likelihood (maximum likelihood).

    Example::

        >>> float(cross_entropy(torch.tensor([-1.0, -3.0])).value)
        2.0
    """
    objective = -log_q.mean()
    return _estimate(objective, objective)


def jensen_shannon(
    log_p_at_p: torch.Tensor,
    log_q_at_p: torch.Tensor,
    log_p_at_q: torch.Tensor,
    log_q_at_q: torch.Tensor,
    score_at_q: torch.Tensor | None = None,
) -> Estimate:
    r"""Unbiased two-sample Jensen-Shannon divergence, from draws of both :math:`P` and :math:`Q`:

    .. math::

        \mathrm{JSD} = \tfrac12\,\mathbb{E}_P\!\left[\log\frac{2p}{p+q}\right]
                     + \tfrac12\,\mathbb{E}_Q\!\left[\log\frac{2q}{p+q}\right],\qquad
        \log\frac{2p}{p+q} = \log 2 - \mathrm{softplus}(\log q - \log p).

    Example::

        >>> z = torch.zeros(4)
        >>> float(jensen_shannon(z, z, z, z).value)  # P = Q
        0.0
    """
    term_p = LOG2 - F.softplus(log_q_at_p - log_p_at_p)
    term_q = LOG2 - F.softplus(log_p_at_q - log_q_at_q)
    value = 0.5 * (term_p.mean() + term_q.mean())
    objective = 0.5 * (term_p.mean() + mean_under_q(term_q, score_at_q))
    return _estimate(value, objective)


def self_normalized_kl_forward(log_p: torch.Tensor, log_q: torch.Tensor) -> Estimate:
    r"""Inclusive :math:`\mathrm{KL}(P\|Q)` for an unnormalized :math:`\tilde p`, by
    self-normalized importance sampling over :math:`x_k\sim Q` (the wake-phase estimator):

    .. math::

        \bar w_k = \mathrm{softmax}_k(\log\tilde p_k - \log q_k),\qquad
        \widehat{\mathrm{KL}} = \sum_k \bar w_k (\log \tilde p_k - \log q_k) - \log\hat Z,\qquad
        \hat\nabla_\theta = -\sum_k \bar w_k\, \nabla_\theta \log q_\theta(x_k).

    ``log_q`` must be evaluated at *detached* draws, so that its gradient is
    :math:`\nabla_\theta\log q_\theta(x)` at fixed :math:`x`. Value and gradient are consistent
    but biased at finite :math:`K` (bias :math:`O(1/K)`, growing with the variance of the
    weights); the gradient needs no reparameterization, so discrete guide sites train too.

    Example::

        >>> lq = torch.tensor([-1.0, -2.0])
        >>> float(self_normalized_kl_forward(lq + 1e4, lq).value)  # p = q up to a constant
        0.0
    """
    logw = log_p - log_q
    weights = torch.softmax(logw.detach(), -1)
    value = (weights * logw).sum() - log_mean_exp(logw)
    return _estimate(value, -(weights * log_q).sum())


def self_normalized_f_divergence(
    f: Generator, log_p: torch.Tensor, log_q: torch.Tensor, score: torch.Tensor | None = None
) -> Estimate:
    r""":math:`D_f(P\|Q)` for an unnormalized :math:`\tilde p`, with :math:`P` normalized by the
    importance-sampling estimate :math:`\hat Z` of the same particles:

    .. math::

        \hat D_f = \frac1K\sum_k f\!\left(\frac{\tilde p(x_k)}{\hat Z\, q(x_k)}\right),\qquad
        \log\hat Z = \log\frac1K\sum_j \frac{\tilde p(x_j)}{q(x_j)}.

    Consistent, with an :math:`O(1/K)` bias from the shared :math:`\hat Z`. The gradient flows
    through :math:`\hat Z` along reparameterized draws only: at sites trained by the score
    function (``score``) the value of :math:`\log\hat Z` is kept but its gradient at fixed
    draws is removed, since the per-particle score term cannot see that every value depends on
    every draw through :math:`\hat Z` (keeping it gives an inconsistent gradient,
    :math:`-\mathbb{E}_P[\nabla\log q]` off at :math:`K\to\infty`). Invariant to the scale of
    :math:`\tilde p`, so log-weights of any magnitude are safe.

    Example::

        >>> from pyrodiv.divergences.generators import get_generator
        >>> lq = torch.tensor([-1.0, -2.0])
        >>> float(self_normalized_f_divergence(get_generator("pearson"), lq + 1e4, lq).value)
        0.0
    """
    logu = log_p - log_q
    logu_for_z = logu
    if score is not None and score.requires_grad:
        logu_for_z = logu + (score - score.detach())
    return _mean_estimate(f(logu - log_mean_exp(logu_for_z)), score)


def renyi_bound(
    alpha: float, log_p: torch.Tensor, log_q: torch.Tensor, score: torch.Tensor | None = None
) -> Estimate:
    r"""The Renyi divergence of order :math:`\alpha` to an unnormalized :math:`\tilde p`:

    .. math::

        R_\alpha = \frac{1}{\alpha - 1}\log\frac1K\sum_k
            \left(\frac{\tilde p(x_k)}{q(x_k)}\right)^{\alpha}
            \;\approx\; D^{R}_\alpha(P\|Q) + \frac{\alpha}{\alpha-1}\log Z,

    computed with ``logsumexp``. The constant does not move the minimizer, and
    :math:`D^R_\alpha` is an increasing function of the Amari :math:`D_\alpha`, so minimizing
    :math:`R_\alpha` minimizes every member of the power family with this :math:`\alpha`
    (:math:`\alpha = 2`: the :math:`\chi^2` upper bound, CUBO; :math:`\alpha = 1/2`: Hellinger;
    :math:`\alpha = -1`: Neyman). Biased (log of a mean) by :math:`O(1/K)`. For
    non-reparameterized sites the gradient is
    :math:`\frac{1}{\alpha-1}\sum_k \bar w_k (\alpha\nabla\log w_k + \nabla \log q_k)`
    with :math:`\bar w = \mathrm{softmax}(\alpha \log w)`.

    Example::

        >>> lq = torch.tensor([-1.0, -2.0])
        >>> float(renyi_bound(2.0, lq + 3.0, lq).value)  # alpha / (alpha - 1) * log Z
        6.0
    """
    if alpha == 1.0:
        raise ValueError(
            "renyi_bound: alpha = 1 is the inclusive KL; use self_normalized_kl_forward"
        )
    logw = alpha * (log_p - log_q)
    value = log_mean_exp(logw) / (alpha - 1.0)
    if score is not None and score.requires_grad:
        logw = logw + (score - score.detach())
    return _estimate(value, log_mean_exp(logw) / (alpha - 1.0))


def cubo(
    n: float, log_p: torch.Tensor, log_q: torch.Tensor, score: torch.Tensor | None = None
) -> Estimate:
    r"""The :math:`\chi` upper bound :math:`\mathrm{CUBO}_n = \frac1n \log \frac1K\sum_k
    (\tilde p(x_k)/q(x_k))^n \ge \log Z` (Dieng et al. 2017), :math:`x_k \sim Q`;
    :math:`n = 2` bounds the Pearson :math:`\chi^2`.

    Equal to :math:`\frac{n-1}{n} R_n` (:func:`renyi_bound`, whose score-function terms it
    shares); biased low by :math:`O(1/K)` like every log of a mean.

    Example::

        >>> lq = torch.tensor([-1.0, -2.0])
        >>> float(cubo(2.0, lq + 3.0, lq).value)  # log Z when q is exact
        3.0
    """
    value, surrogate = renyi_bound(n, log_p, log_q, score)
    scale = (n - 1.0) / n
    return Estimate(scale * value, scale * surrogate)
