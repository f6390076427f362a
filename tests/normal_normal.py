"""The Normal-Normal model shared by the baseline and InferenceData tests:
mu ~ N(M0, S0^2), y_i ~ N(mu, SIGMA^2), with its closed-form posterior.

Module level, so that spawned MCMC worker processes can import it.
"""

import pyro
import pyro.distributions as dist
import torch

M0, S0, SIGMA = 1.0, 2.0, 1.5


def normal_model(y):
    mu = pyro.sample("mu", dist.Normal(M0, S0))
    pyro.deterministic("mu_doubled", 2.0 * mu)
    with pyro.plate("data", y.shape[-1]):
        pyro.sample("y", dist.Normal(mu, SIGMA), obs=y)


def normal_data(n=10):
    return 0.7 + SIGMA * torch.randn(n, generator=torch.Generator().manual_seed(1))


def normal_posterior(y):
    """Posterior mean (a tensor) and sd of mu."""
    precision = 1 / S0**2 + len(y) / SIGMA**2
    mean = (M0 / S0**2 + y.sum() / SIGMA**2) / precision
    return mean, precision**-0.5
