"""A posterior target: Bayesian linear regression with a known noise scale, fitted by a
diagonal Normal guide with forward KL (self-normalized importance sampling) and reverse KL.

The exact posterior is Normal with precision ``I + X^T X / sigma^2``: forward KL recovers its
marginal standard deviations, reverse KL the narrower ``1 / sqrt(diagonal of the precision)``.
"""

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

import pyrodiv

SIGMA = 1.0  # known noise scale


def model(X, y=None):
    beta = pyro.sample("beta", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    mean = (X * beta).sum(-1)  # not X @ beta: beta gains a particle dimension on the left
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", dist.Normal(mean, SIGMA), obs=y)


def guide(X, y=None):
    loc = pyro.param("loc", torch.zeros(2))
    scale = pyro.param("scale", torch.ones(2), constraint=constraints.positive)
    pyro.sample("beta", dist.Normal(loc, scale).to_event(1))


def make_data(n=20, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x1 = torch.randn(n, generator=gen)
    X = torch.stack([x1, x1 + 0.5 * torch.randn(n, generator=gen)], -1)  # correlated columns
    y = (X * torch.tensor([1.0, -2.0])).sum(-1) + SIGMA * torch.randn(n, generator=gen)
    return X, y


def exact_posterior(X, y):
    precision = torch.eye(2) + X.T @ X / SIGMA**2  # plain matrices here: no particles
    cov = torch.linalg.inv(precision)
    return cov @ X.T @ y / SIGMA**2, cov, precision


def fit_guide(loss, X, y, steps=1500, seed=0):
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    optim = pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.1 ** (1 / steps)})  # lr 0.05 -> 0.005
    pyrodiv.fit(model, guide, X, y, loss=loss, num_steps=steps, optim=optim, progress=False)
    return pyro.param("loc").detach(), pyro.param("scale").detach()


if __name__ == "__main__":
    X, y = make_data()
    mean, cov, precision = exact_posterior(X, y)
    print(
        "exact mean",
        mean,
        "marginal sd",
        cov.diag().sqrt(),
        "1/sqrt(prec)",
        precision.diag().rsqrt(),
    )
    for loss in (
        pyrodiv.ForwardKL(num_particles=128, vectorize_particles=True),
        pyrodiv.ReverseKL(num_particles=32, vectorize_particles=True),
    ):
        loc, scale = fit_guide(loss, X, y)
        print(type(loss).__name__, "loc", loc, "scale", scale)
