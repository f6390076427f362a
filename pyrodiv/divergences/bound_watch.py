r"""A watch on upper bounds of :math:`\log Z` whose Monte Carlo estimate runs away.

The :math:`\chi` upper bound and the Renyi bound of order :math:`\alpha > 1` are upper bounds
of :math:`\log Z`, scaled:

.. math::

    \mathrm{CUBO}_n(Q) \ge \log Z, \qquad
    R_\alpha(Q) \ge \tfrac{\alpha}{\alpha - 1} \log Z \quad (\alpha > 1),

and every ELBO is a lower bound, :math:`\mathrm{ELBO}(Q') \le \log Z` for every :math:`Q'`.
So the true bound of any :math:`Q` is at least :math:`c\,\max_{t} \mathrm{ELBO}(Q_t)` over the
guides :math:`Q_t` seen during training (:math:`c = 1` for CUBO, :math:`\alpha/(\alpha-1)` for
the Renyi bound). Their Monte Carlo estimates, :math:`\frac1n \log \frac1K \sum_k w_k^n` with
:math:`w_k = \tilde p(x_k)/q(x_k)`, are biased low, and when :math:`Q` does not cover
:math:`P` the bias is unbounded: minimizing the estimate moves :math:`Q` away from :math:`P`
and shrinks it, while the estimate keeps falling (a runaway). An estimate below the largest
ELBO seen cannot be the bound; :class:`BoundWatch` raises when the running mean of the
estimates stays more than ``margin`` nats below :math:`c` times the largest running mean of
the ELBO estimates (:math:`\frac1K\sum_k \log w_k`, from the same particles) for ``patience``
steps.

Example::

    >>> watch = BoundWatch("CUBO(n=2)", factor=1.0, patience=3)
    >>> for step in range(2):
    ...     watch.update(bound=-1.0, elbo=-1.5)       # a bound above the ELBO: fine
    >>> watch.update(bound=-50.0, elbo=-60.0)         # one low step is not yet a runaway
"""

from __future__ import annotations

import math

import torch

__all__ = ["BoundRunaway", "BoundWatch", "WatchedValue", "watched"]


class BoundRunaway(RuntimeError):
    """A bound's estimate fell below the ELBO for good: the fit runs away."""


class BoundWatch:
    """Raises :class:`BoundRunaway` when an upper bound's estimate stays below the ELBO.

    :param name: the divergence's name, for the message.
    :param factor: :math:`c`, the bound's multiple of :math:`\\log Z`.
    :param decay: the running means' decay per step (0.98: about 50 steps).
    :param margin: nats below :math:`c\\max\\mathrm{ELBO}` that count as impossible.
    :param patience: consecutive impossible steps before raising.
    """

    def __init__(self, name: str, factor: float, decay=0.98, margin=1.0, patience=100):
        self.name, self.factor = name, factor
        self.decay, self.margin, self.patience = decay, margin, patience
        self.bound = self.elbo = None
        self.best_elbo = -math.inf
        self.below = 0
        self.steps = 0

    def _mean(self, old, new):
        return new if old is None else self.decay * old + (1 - self.decay) * new

    def update(self, bound: float, elbo: float) -> None:
        """Record one training step's bound and ELBO estimates; raise on a runaway."""
        self.steps += 1
        if not (math.isfinite(bound) and math.isfinite(elbo)):
            return  # the losses' own NaN checks name non-finite values
        self.bound = self._mean(self.bound, bound)
        self.elbo = self._mean(self.elbo, elbo)
        self.best_elbo = max(self.best_elbo, self.elbo)
        floor = self.factor * self.best_elbo
        self.below = self.below + 1 if self.bound < floor - self.margin else 0
        if self.below >= self.patience:
            raise BoundRunaway(
                f"{self.name}: the Monte Carlo estimate of the bound ({self.bound:.4g}, running "
                f"mean) has stayed below {floor:.4g}, a value the true bound cannot go under "
                f"(the largest ELBO seen, times {self.factor:g}), for {self.below} steps (step "
                f"{self.steps}). The estimate is biased because Q does not cover P, and "
                "minimizing it moves Q away from P and shrinks it. Start Q wider than P (a "
                "larger initial scale, or from a ForwardKL fit), or use ForwardKL, "
                "JensenShannon or a RenyiBound with alpha < 1; more particles help little."
            )


class WatchedValue:
    """Stands in for a :class:`BoundWatch` while a compiled program records its graph: it
    keeps the watched estimate as a tensor (a graph output), where a watch would take its
    float."""

    value = None


def watched(watch: BoundWatch | WatchedValue | None, estimate, run):
    r"""``estimate`` (a bound's :class:`~pyrodiv.divergences.estimators.Estimate`), first
    recorded by ``watch`` with the ELBO of the same particles,
    :math:`\frac1K\sum_k(\log p_k - \log q_k)`, at training steps (autograd on); ``watch``
    may be ``None``."""
    if isinstance(watch, WatchedValue):
        watch.value = estimate.value
        return estimate
    if watch is not None and torch.is_grad_enabled():
        elbo = (run.log_p - run.log_q).detach().mean()
        watch.update(float(estimate.value), float(elbo))
    return estimate
