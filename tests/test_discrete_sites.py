"""Discrete latent sites in the guide, on a posterior target: every loss's value and gradient
against the exact numbers, summed over the discrete values (and, for a guide that mixes a
discrete site with a reparameterized continuous one, integrated on a fine grid).

The reverse KL is unbiased. The others normalize P by the particles' own importance weights
(an O(1/K) bias); with K = 1000 particles that bias is far below the standard error of 30
repetitions, which sets the tolerance (4 standard errors, estimated from the repetitions).
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import constraints

import pyrodiv
from pyrodiv.divergences.generators import get_generator

_F64 = {"dtype": torch.float64}
Y = torch.tensor([0.9, 1.4, 0.2], **_F64)
PRIORS = {"bernoulli": [0.7, 0.3], "categorical": [0.5, 0.3, 0.2], "mixed": [0.6, 0.4]}
MEANS = {"bernoulli": [-1.0, 1.0], "categorical": [-1.0, 0.5, 2.0], "mixed": [-1.0, 1.0]}
#: The mixed model: k ~ Bernoulli(0.4), z | k ~ N(mean_k, 0.8), y_i ~ N(z, 1); its guide:
#: k ~ Bernoulli(logit), z | k ~ N(loc_k, scale), on this grid of z.
Z_GRID = torch.linspace(-7.0, 7.0, 4001, **_F64)


def _log_q_discrete(logits):
    """log q(k) for every value k, from the guide's logits (one logit: a Bernoulli)."""
    if logits.shape[-1] == 1:
        return torch.cat([-F.softplus(logits), -F.softplus(-logits)])
    return torch.log_softmax(logits, -1)


def make_program(name):
    """``(model, guide, tables)``: ``tables(params)`` gives, on every cell of the latent
    space (each discrete value, times the z grid for ``"mixed"``), log q, log p(latents, y)
    and the log of the cell's measure, differentiable in the guide's parameters."""
    prior = torch.tensor(PRIORS[name], **_F64)
    means = torch.tensor(MEANS[name], **_F64)

    def sample_k():
        if name == "categorical":
            return pyro.sample("k", dist.Categorical(prior))
        return pyro.sample("k", dist.Bernoulli(prior[1])).long()

    def model(y):
        k = sample_k()
        loc = means[k]
        if name == "mixed":
            loc = pyro.sample("z", dist.Normal(loc, 0.8))
        with pyro.plate("data", y.shape[0]):
            pyro.sample("y", dist.Normal(loc, 1.0), obs=y)

    def guide(y):
        if name == "categorical":
            logits = pyro.param("logits", torch.tensor([0.1, -0.3, 0.4], **_F64))
            pyro.sample("k", dist.Categorical(logits=logits))
            return
        logits = pyro.param("logits", torch.tensor([0.2], **_F64))
        k = pyro.sample("k", dist.Bernoulli(logits=logits[0])).long()
        if name == "mixed":
            locs = pyro.param("locs", torch.tensor([-0.5, 0.8], **_F64))
            scale = pyro.param("scale", torch.tensor(0.6, **_F64), constraints.positive)
            pyro.sample("z", dist.Normal(locs[k], scale))

    def tables(params):
        log_q = _log_q_discrete(params["logits"])
        log_joint = prior.log() + dist.Normal(means.unsqueeze(-1), 1.0).log_prob(Y).sum(-1)
        if name != "mixed":
            return log_q, log_joint, torch.zeros_like(log_q)
        z = Z_GRID.unsqueeze(-1)  # (grid, 1) against k in the last dimension
        log_q = log_q + dist.Normal(params["locs"], params["scale"]).log_prob(z)
        log_joint = (
            prior.log()
            + dist.Normal(means, 0.8).log_prob(z)
            + dist.Normal(z, 1.0).log_prob(Y).sum(-1, keepdim=True)
        )
        log_cell = torch.full_like(log_q, math.log(float(Z_GRID[1] - Z_GRID[0])))
        return log_q.reshape(-1), log_joint.reshape(-1), log_cell.reshape(-1)

    return model, guide, tables


#: (the generator of the reported value, the power of the training objective) of each loss
#: name for :func:`pyrodiv.get_loss`; ``None`` generator: the negative ELBO.
LOSSES = {
    "reverse_kl": (None, 0.0),
    "forward_kl": ("kl_forward", 1.0),
    "jensen_shannon": ("jensen_shannon", None),
    "total_variation": ("total_variation", None),
    "squared_hellinger": ("squared_hellinger", 0.5),
    "pearson": ("pearson", 2.0),
    "kl_reverse": ("kl_reverse", 0.0),
}


def _exact(name, tables, params):
    """The exact reported value and the gradient of the training objective, as sums over the
    cells (q_c = exp(log q + log cell) is Q's mass on a cell, p the exact posterior):

    * reverse KL: the negative ELBO, sum_c q_c (log q - log p(latents, y));
    * non-power f (JS, TV): D_f(P||Q) = sum_c q_c f(p / q);
    * power alpha: log(sum_c cell q^(1 - alpha) p(latents, y)^alpha) / (alpha (alpha - 1)),
      whose gradient the Renyi-bound training follows (alpha = 1: KL(P||Q); alpha = 0:
      KL(Q||P)).
    """
    generator, power = LOSSES[name]
    leaves = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    lq, lj, log_cell = tables(leaves)
    mass = (lq + log_cell).exp()
    log_post = lj - torch.logsumexp(lj + log_cell, -1)
    if generator is None:
        value = (mass * (lq - lj)).sum()
    else:
        value = (mass * get_generator(generator)(log_post - lq)).sum()
    if power is None:
        objective = value
    elif power == 1.0:
        objective = -((log_post + log_cell).exp() * lq).sum()
    elif power == 0.0:
        objective = (mass * (lq - lj)).sum()
    else:
        log_terms = (1 - power) * lq + power * lj + log_cell
        objective = torch.logsumexp(log_terms, -1) / (power * (power - 1))
    grads = torch.autograd.grad(objective, list(leaves.values()))
    return float(value.detach()), torch.cat([g.reshape(-1) for g in grads])


@pytest.mark.parametrize("model_name", list(PRIORS))
@pytest.mark.parametrize(
    "name",
    list(LOSSES),
)
def test_discrete_guide_sites_train_with_the_exact_gradient(name, model_name):
    model, guide, tables = make_program(model_name)
    guide(Y)
    store = pyro.get_param_store()
    params = {k: store.get_param(k) for k in store.keys()}
    exact_value, exact_grad = _exact(name, tables, params)
    unconstrained = [store.get_param(k).unconstrained() for k in params]
    loss = pyrodiv.get_loss(name, num_particles=1000, vectorize_particles=True)
    values, grads = [], []
    for seed in range(30):
        pyro.set_rng_seed(seed)
        surrogate = loss.differentiable_loss(model, guide, Y)
        values.append(float(surrogate.detach()))
        grad = torch.autograd.grad(surrogate, unconstrained)
        grads.append(torch.cat([g.reshape(-1) for g in grad]))
    values, grads = torch.tensor(values), torch.stack(grads)
    if "scale" in params:  # the exact gradient is in the constrained scale: chain rule
        exact_grad[-1] = exact_grad[-1] * float(params["scale"].detach())
    value_se, grad_se = values.std() / math.sqrt(30), grads.std(0) / math.sqrt(30)
    assert (grad_se > 0).all()  # the estimate is random: the score function is at work
    assert abs(values.mean() - exact_value) < 4 * value_se + 1e-9
    assert (abs(grads.mean(0) - exact_grad) < 4 * grad_se).all(), (grads.mean(0), exact_grad)
