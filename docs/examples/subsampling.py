"""Subsampling: 2000 observations, 100 per step; reverse KL sees an unbiased estimate of the
full-data objective because Pyro scales the subsampled log-likelihood by 2000 / 100."""

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoNormal

import pyrodiv

N, BATCH = 2000, 100


def model(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("data", y.shape[0], subsample_size=BATCH) as idx:
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y[idx])


def fit_subsampled(y, steps=2000, seed=0):
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    guide = AutoNormal(model)
    optim = pyro.optim.ClippedAdam({"lr": 0.02, "lrd": 0.01 ** (1 / steps)})  # 0.02 -> 0.0002
    loss = pyrodiv.ReverseKL(num_particles=8, vectorize_particles=True)
    pyrodiv.fit(model, guide, y, loss=loss, num_steps=steps, optim=optim, progress=False)
    return guide.median()["mu"].item()


if __name__ == "__main__":
    y = 1.5 + torch.randn(N, generator=torch.Generator().manual_seed(0))
    exact_mean = y.sum().item() / (N + 1 / 10.0**2)  # conjugate posterior of mu
    exact_sd = (N + 1 / 10.0**2) ** -0.5
    print(f"mu: {fit_subsampled(y):.4f}, exact posterior {exact_mean:.4f} (sd {exact_sd:.4f})")
