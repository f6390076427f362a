r"""Rao-Blackwellized score-function gradients of the reverse KL, as ``TraceGraph_ELBO``.

For a guide site :math:`z_j` drawn without a reparameterized sampler, the gradient of
:math:`\mathrm{KL}(Q\|P) = \mathbb{E}_Q[\log q - \log p]` has the score term
:math:`\mathbb{E}_Q[\nabla\log q(z_j\mid\cdot)\,c_j]`. With :math:`c_j` the whole particle's
:math:`\log q - \log p` (what a per-particle estimator can use), its variance grows with every
other site and every data point. Only the costs *downstream* of :math:`z_j` have a non-zero
expectation against its score: the model and guide factors whose value depends on
:math:`z_j` (found by Pyro's provenance tracking, ``TrackNonReparam``), summed only within
:math:`z_j`'s own plate slice, so that a mixture assignment :math:`k_i` sees the likelihood of
its own data point :math:`y_i` and not the other :math:`N - 1`:

.. math::

    \nabla_\theta\,\mathrm{ELBO} \approx \sum_j \nabla_\theta \log q_\theta(z_j)\,
      \big(\textstyle\sum_{f \in \mathrm{down}(j)} \log f - b_j\big)
      + \text{pathwise terms},

with the baselines :math:`b_j` a guide site asks for in ``infer={"baseline": ...}``
(decaying average, a neural baseline, or a value). This module hands the traces to Pyro's own
``TraceGraph_ELBO`` computation, so the two agree exactly.

What carries over to other divergences: the decomposition needs a cost that is a *sum* of
per-factor terms, which :math:`\log q - \log p` is. For an f-divergence
:math:`\mathbb{E}_Q[f(p/q)]`, or a self-normalized estimator, the integrand is a non-linear
function of the whole particle's weight, so no factor can be dropped from a site's cost; those
losses keep the per-particle score term with its leave-one-out baseline
(:mod:`pyrodiv.divergences.estimators`).

Example::

    >>> loss = pyrodiv.ReverseKL(num_particles=16, vectorize_particles=True)
    >>> # a guide with pyro.sample("k", dist.Categorical(logits=...)) inside a data plate
    >>> # now trains k with TraceGraph_ELBO's per-data-point score terms
"""

from __future__ import annotations

import torch
from pyro.infer.tracegraph_elbo import _compute_elbo

from .estimators import Estimate

__all__ = ["reverse_kl_surrogate"]


def reverse_kl_surrogate(traces, num_particles: int, value: torch.Tensor) -> Estimate:
    r"""The reverse-KL :class:`~pyrodiv.divergences.estimators.Estimate` with
    ``TraceGraph_ELBO``'s gradient: ``traces`` are the (model, guide) pairs of one run under
    ``TrackNonReparam`` (one pair of all particles when vectorized, one per particle
    otherwise), ``value`` the mean of :math:`\log q - \log p` over the particles."""
    surrogate = 0.0
    for model_trace, guide_trace in traces:
        model_trace.log_prob_sum()  # memoized per site, read by Pyro's _compute_elbo
        guide_trace.log_prob_sum()
        surrogate = surrogate + _compute_elbo(model_trace, guide_trace)[1]
    surrogate = surrogate / num_particles
    return Estimate(value.detach(), value.detach() + (surrogate - surrogate.detach()))
