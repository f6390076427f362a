"""A Gaussian mixture written for TraceEnum_ELBO, trained as it is with pyrodiv's divergences.

The assignment of each data point is a discrete site marked for parallel enumeration; every
pyrodiv loss sums it out, as TraceEnum_ELBO does, and reads the marginal log-density.
"""

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, TraceEnum_ELBO, config_enumerate
from pyro.ops.indexing import Vindex

import pyrodiv

generator = torch.Generator().manual_seed(0)
data = torch.cat([torch.randn(30, generator=generator) * 0.5 - 3.0,
                  torch.randn(30, generator=generator) * 0.5 + 3.0])  # fmt: skip


@config_enumerate
def model(data):
    locs = pyro.sample("locs", dist.Normal(0.0, 10.0).expand([2]).to_event(1))
    with pyro.plate("data", len(data)):
        assignment = pyro.sample("assignment", dist.Categorical(torch.tensor([0.5, 0.5])))
        pyro.sample("obs", dist.Normal(Vindex(locs)[..., assignment], 0.5), obs=data)


def guide(data):
    loc = pyro.param("loc", torch.tensor([-1.0, 1.0]))
    pyro.sample("locs", dist.Normal(loc, 0.3).to_event(1))


def train(loss, steps=300, seed=0):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.1}), loss)
    for _ in range(steps):
        svi.step(data)
    return pyro.param("loc").detach()


LOSSES = {
    "TraceEnum_ELBO": TraceEnum_ELBO(
        num_particles=16, vectorize_particles=True, max_plate_nesting=1
    ),  # fmt: skip
    "reverse KL": pyrodiv.ReverseKL(num_particles=16, vectorize_particles=True),
    "forward KL": pyrodiv.ForwardKL(num_particles=16, vectorize_particles=True),
    "squared Hellinger": pyrodiv.FDivergence(
        "squared_hellinger", num_particles=16, vectorize_particles=True
    ),
}

if __name__ == "__main__":
    for name, loss in LOSSES.items():
        print(f"{name:>18}: locs = {train(loss).tolist()}")
