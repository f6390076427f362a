"""A new divergence in pyrodiv: one estimator function and one table entry.

The symmetric (Jeffreys) divergence J(P, Q) = KL(P||Q) + KL(Q||P) on a prior target: the
forward half over draws of P (the model run first), the reverse half over draws of Q (the guide
run first, pathwise and score-function gradients).
"""

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from pyrodiv.divergences import estimators
from pyrodiv.divergences.generators import get_generator
from pyrodiv.divergences.loss_base import DivergenceLoss, Plan
from pyrodiv.divergences.traces import Order


def jeffreys(loss, at_p, at_q):
    """KL(P||Q) over P's draws plus KL(Q||P) over Q's draws; values and surrogates add."""
    forward = estimators.kl_forward(at_p.log_p, at_p.log_q)
    reverse = estimators.f_divergence(
        get_generator("kl_reverse"), at_q.log_p, at_q.log_q, at_q.score
    )
    return estimators.Estimate(
        forward.value + reverse.value, forward.surrogate + reverse.surrogate
    )


class Jeffreys(DivergenceLoss):
    divergence = "Jeffreys"
    needs = frozenset({"log p", "x ~ P"})  # the talk's ingredients of P
    PLANS = {"prior": Plan((Order.MODEL_FIRST, Order.GUIDE_FIRST), jeffreys)}


def model():
    pyro.sample("x", dist.Normal(1.0, 2.0))


def guide():
    loc = pyro.param("loc", torch.tensor(0.0))
    scale = pyro.param("scale", torch.tensor(1.0), constraint=constraints.positive)
    pyro.sample("x", dist.Normal(loc, scale))


if __name__ == "__main__":
    loss = Jeffreys(num_particles=256, vectorize_particles=True)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), loss)
    for _ in range(1000):
        svi.step()
    print(f"Q = N({pyro.param('loc').item():.2f}, {pyro.param('scale').item():.2f}^2)")
