"""Markovian score climbing (`ForwardKL(estimator="msc")`) against self-normalized importance
sampling, on a posterior outside the guide family where the inclusive-KL gradient is known.

Target: a `pyro.factor` makes the posterior the mixture 0.5 N(-2, 1) + 0.5 N(2, 1) (mean 0,
E[z^2] = 5). For Q = N(m, s^2) the gradient of KL(P || Q) is
d/dm = -(E[z] - m) / s^2 and d/dlog s = 1 - E[(z - m)^2] / s^2.
At K = 2 particles the self-normalized gradient is far off; the chain of score climbing makes
its average converge to the exact gradient. Standard errors come from batch means (the chain's
draws are correlated).
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyrodiv
from pyrodiv.divergences.score_climbing import RetainParticle

MIXTURE = dist.MixtureSameFamily(
    dist.Categorical(torch.tensor([0.5, 0.5])), dist.Normal(torch.tensor([-2.0, 2.0]), 1.0)
)
PRIOR = dist.Normal(0.0, 10.0)


def model():
    z = pyro.sample("z", PRIOR)
    pyro.factor("mixture", MIXTURE.log_prob(z) - PRIOR.log_prob(z))


def guide():
    loc = pyro.param("loc", torch.tensor(0.5))
    log_scale = pyro.param("log_scale", torch.tensor(0.5))
    return pyro.sample("z", dist.Normal(loc, log_scale.exp()))


def _mean_gradient(loss, steps=2000, batches=20):
    guide()
    params = [pyro.param("loc").unconstrained(), pyro.param("log_scale").unconstrained()]
    grads = []
    for _ in range(steps):
        value = loss.differentiable_loss(model, guide)
        grads.append(torch.stack(torch.autograd.grad(value, params)))
    batch_means = torch.stack(grads).reshape(batches, -1, 2).mean(1)
    return batch_means.mean(0), batch_means.std(0) / batches**0.5


@pytest.mark.slow
def test_score_climbing_removes_the_bias_of_few_particles():
    scale2 = math.exp(2 * 0.5)
    exact = torch.tensor([0.5 / scale2, 1.0 - (5.0 + 0.25) / scale2])

    pyro.set_rng_seed(0)
    mean, se = _mean_gradient(pyrodiv.ForwardKL(num_particles=2, estimator="msc"))
    assert ((mean - exact).abs() < 4 * se).all(), (mean, se, exact)

    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    mean, se = _mean_gradient(pyrodiv.ForwardKL(num_particles=2))
    assert ((mean - exact).abs() > 4 * se).all(), (mean, se, exact)  # the bias it removes


@pytest.mark.parametrize("vectorize", [True, False])
def test_the_chain_state_is_particle_zero_of_the_next_step(vectorize):
    draws = []

    def recording_guide():
        z = guide()
        if not vectorize or z.numel() > 1:  # not the one-particle check of the first run
            draws.append(z.detach().reshape(-1))

    pyro.set_rng_seed(1)
    loss = pyrodiv.ForwardKL(num_particles=3, vectorize_particles=vectorize, estimator="msc")
    loss.loss(model, recording_guide)
    state = loss.chain.state["z"].reshape(-1)
    first = torch.cat(draws[-3:] if not vectorize else draws[-1:])
    assert (first == state).any()  # the new state is one of this step's particles
    loss.loss(model, recording_guide)
    second = draws[-3] if not vectorize else draws[-1][:1]
    assert torch.equal(second, state)
    loss.reset_state()
    assert loss.chain.state is None


def test_unknown_estimators_are_refused():
    with pytest.raises(ValueError, match="estimator must be one of"):
        pyrodiv.ForwardKL(estimator="mcmc")


def test_the_state_belongs_to_one_model_and_one_subsample():
    data = torch.linspace(-1.0, 1.0, 20)

    def local_model():
        with pyro.plate("data", 20, subsample_size=5) as index:
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("y", dist.Normal(z, 1.0), obs=data[index])

    def local_guide():
        with pyro.plate("data", 20, subsample_size=5):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    pyro.set_rng_seed(0)
    loss = pyrodiv.ForwardKL(num_particles=4, vectorize_particles=True, estimator="msc")
    loss.loss(local_model, local_guide)
    kept = loss.chain.subsamples["data"]
    retain = RetainParticle(loss.chain.state, -2, loss.chain.subsamples)
    with retain, pyro.plate("particles", 4, dim=-2):
        local_guide()
    # a fresh subsample of 5 of 20 points differs from the state's: the state is dropped
    assert not torch.equal(retain.subsamples["data"], kept) and retain.state_lost
    loss.loss(model, guide)  # another model: the chain starts again
    assert loss.chain.owner == (model, guide) and "z" in loss.chain.state
