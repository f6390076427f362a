"""A discrete guide site: a learnable Categorical fitted to a Categorical target.

The family contains the target, so both losses should reach Q = P; reverse KL gets its gradient
from the score function (with a leave-one-out baseline), forward KL from maximum likelihood
on P's draws.
"""

import pyro
import pyro.distributions as dist
import torch

import pyrodiv

P_PROBS = torch.tensor([0.2, 0.5, 0.3])


def target():
    pyro.sample("k", dist.Categorical(P_PROBS))


def approx():
    logits = pyro.param("logits", torch.zeros(3))
    pyro.sample("k", dist.Categorical(logits=logits))


def fit_categorical(loss, steps=1000, seed=0):
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    optim = pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.1 ** (1 / steps)})
    pyrodiv.fit(target, approx, loss=loss, num_steps=steps, optim=optim, progress=False)
    return torch.softmax(pyro.param("logits").detach(), -1)


if __name__ == "__main__":
    for loss in (
        pyrodiv.ForwardKL(num_particles=64, vectorize_particles=True),
        pyrodiv.ReverseKL(num_particles=64, vectorize_particles=True),
    ):
        print(type(loss).__name__, fit_categorical(loss))
