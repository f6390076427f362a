r"""Bounds of :math:`\log Z` as losses: the Renyi bound of any order and the :math:`\chi` upper
bound (CUBO). Both are estimated from :math:`Q`'s particles only, as the log of a mean of
powers of the importance weights; above order 1 a
:class:`~pyrodiv.divergences.bound_watch.BoundWatch` stops a fit whose estimate runs away.

Example::

    >>> loss = CUBO(n=2, num_particles=64, vectorize_particles=True)
    >>> loss.divergence
    'CUBO (n=2)'
"""

from __future__ import annotations

from . import estimators
from .bound_watch import BoundWatch, watched
from .loss_base import DivergenceLoss, Plan
from .traces import Order

__all__ = ["CUBO", "RenyiBound"]


def _renyi(loss, run):
    bound = estimators.renyi_bound(loss.alpha, run.log_p, run.log_q, run.score)
    return watched(loss.watch, bound, run)


class RenyiBound(DivergenceLoss):
    r"""The Renyi divergence bound of order :math:`\alpha \ne 1` (Li and Turner 2016),

    .. math::

        R_\alpha = \frac{1}{\alpha - 1}\log\frac1K\sum_k \left(\frac{\tilde p(x_k)}{q(x_k)}
        \right)^{\alpha} \approx D^R_\alpha(P\|Q) + \frac{\alpha}{\alpha - 1}\log Z,
        \qquad x_k \sim Q,

    minimized over :math:`Q` (:func:`~pyrodiv.divergences.estimators.renyi_bound`). Its minimizer
    is that
    of :math:`D^R_\alpha`, whatever :math:`Z`: :math:`\alpha \to 0` approaches the ELBO,
    :math:`\alpha = 1/2` is Hellinger's, :math:`\alpha = 2` the :math:`\chi^2` (CUBO) bound. The
    value is the log of a mean: biased by :math:`O(1/K)`. With :math:`\alpha = 1 - \beta` it is
    :math:`(1-\beta)/\beta` times the loss of ``pyro.infer.RenyiELBO(alpha=beta)``.

    Above :math:`\alpha = 1` the estimate can run away (biased without bound when :math:`Q`
    does not cover :math:`P`); a :class:`~pyrodiv.divergences.bound_watch.BoundWatch` stops
    such a fit with a ``RuntimeError`` that says what to try.

    :param float alpha: the order, not 1 (use
        :class:`~pyrodiv.divergences.losses.ForwardKL` there).

    Example::

        >>> loss = RenyiBound(alpha=0.5, num_particles=64, vectorize_particles=True)
    """

    PLANS = {
        "prior": Plan(Order.GUIDE_FIRST, _renyi),
        "posterior": Plan(Order.GUIDE_FIRST, _renyi),
    }

    def __init__(self, alpha=0.5, **options):
        super().__init__(**options)
        if not isinstance(alpha, int | float) or isinstance(alpha, bool) or alpha == 1.0:
            raise ValueError(
                f"RenyiBound: alpha must be a number other than 1 (the inclusive KL: use "
                f"ForwardKL), got {alpha!r}"
            )
        self.alpha = float(alpha)
        self.divergence = f"Renyi bound (alpha={self.alpha:g})"
        # Above 1 the bound is at least alpha / (alpha - 1) log Z: its runaway can be seen.
        factor = self.alpha / (self.alpha - 1)
        self.watch = BoundWatch(self.divergence, factor) if self.alpha > 1 else None


def _cubo(loss, run):
    return watched(loss.watch, estimators.cubo(loss.n, run.log_p, run.log_q, run.score), run)


class CUBO(RenyiBound):
    r"""The :math:`\chi` upper bound :math:`\mathrm{CUBO}_n = \frac1n\log\frac1K\sum_k
    (\tilde p(x_k)/q(x_k))^n \ge \log Z` (Dieng et al. 2017), :math:`x_k\sim Q`, minimized over
    :math:`Q` (:func:`~pyrodiv.divergences.estimators.cubo`). It equals :math:`\frac{n-1}{n} R_n`,
    so its
    minimizer is that of the :math:`\chi^n` divergence (:math:`n = 2`: Pearson). Mass-covering;
    the log of a mean, biased low by :math:`O(1/K)`, and its gradient has high variance when
    :math:`Q` is narrower than :math:`P`.

    :param float n: the order, greater than 1.

    Example::

        >>> loss = CUBO(n=2, num_particles=64, vectorize_particles=True)
    """

    PLANS = {kind: Plan(Order.GUIDE_FIRST, _cubo) for kind in ("prior", "posterior")}

    def __init__(self, n=2.0, **options):
        if not isinstance(n, int | float) or isinstance(n, bool) or not n > 1.0:
            raise ValueError(f"CUBO: n must be a number greater than 1, got {n!r}")
        super().__init__(n, **options)
        self.n = float(n)
        self.divergence = f"CUBO (n={self.n:g})"
        self.watch = BoundWatch(self.divergence, 1.0)  # CUBO is at least log Z
