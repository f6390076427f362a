"""Getting started: fit a Normal Q to the Normal target P = N(-7.3, 3.2) with forward KL."""

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

import pyrodiv


def target():  # P: N(-7.3, variance 3.2), the first target of the talk
    pyro.sample("x", dist.Normal(-7.3, 3.2**0.5))


def approx():  # Q: a Normal with a learnable mean and scale, starting at N(0, 1)
    loc = pyro.param("loc", torch.tensor(0.0))
    scale = pyro.param("scale", torch.tensor(1.0), constraint=constraints.positive)
    pyro.sample("x", dist.Normal(loc, scale))


pyro.set_rng_seed(0)
pyro.clear_param_store()
loss = pyrodiv.ForwardKL(num_particles=256, vectorize_particles=True)
svi = pyro.infer.SVI(target, approx, pyro.optim.Adam({"lr": 0.05}), loss=loss)
for _ in range(2000):
    svi.step()
loc, variance = pyro.param("loc").item(), pyro.param("scale").item() ** 2
print(f"Q = N({loc:.2f}, {variance:.2f})")  # forward KL matches P's moments: N(-7.30, 3.20)
