"""Discrete latent sites in the guide, on a posterior target: every loss's value and gradient
against exact enumeration over the discrete values.

The reverse KL is unbiased. The others normalize P by the particles' own importance weights
(an O(1/K) bias); with K = 1000 particles on two or three values that bias is far below the
standard error of 30 repetitions, which sets the tolerance (4 standard errors, estimated from
the repetitions).
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F

import pyrodiv
from pyrodiv.generators import get_generator

Y = torch.tensor([0.9, 1.4, 0.2], dtype=torch.float64)
_F64 = {"dtype": torch.float64}
MODELS = {
    # k ~ Bernoulli(0.3), y_i ~ N(2k - 1, 1)
    "bernoulli": (
        torch.tensor([0.7, 0.3], **_F64),
        torch.tensor([-1.0, 1.0], **_F64),
        torch.tensor([0.2], **_F64),
    ),
    # k ~ Categorical(0.5, 0.3, 0.2), y_i ~ N(mu_k, 1)
    "categorical": (
        torch.tensor([0.5, 0.3, 0.2], **_F64),
        torch.tensor([-1.0, 0.5, 2.0], **_F64),
        torch.tensor([0.1, -0.3, 0.4], **_F64),
    ),
}


def make_program(name):
    prior, means, start = MODELS[name]

    def model(y):
        if name == "bernoulli":
            k = pyro.sample("k", dist.Bernoulli(prior[1])).long()
        else:
            k = pyro.sample("k", dist.Categorical(prior))
        with pyro.plate("data", y.shape[0]):
            pyro.sample("y", dist.Normal(means[k], 1.0), obs=y)

    def guide(y):
        logits = pyro.param("logits", start.clone())
        if name == "bernoulli":
            pyro.sample("k", dist.Bernoulli(logits=logits[0]))
        else:
            pyro.sample("k", dist.Categorical(logits=logits))

    def log_joint():
        """log p(k, y) for every value k."""
        return prior.log() + dist.Normal(means.unsqueeze(-1), 1.0).log_prob(Y).sum(-1)

    def log_q(logits):
        if name == "bernoulli":  # log q(0), log q(1)
            return torch.cat([-F.softplus(logits), -F.softplus(-logits)])
        return torch.log_softmax(logits, -1)

    return model, guide, log_joint, log_q


#: (loss, the generator of its reported value, the power of its training objective)
LOSSES = {
    "reverse_kl": (pyrodiv.ReverseKL, None, 0.0),
    "forward_kl": (pyrodiv.ForwardKL, "kl_forward", 1.0),
    "jensen_shannon": (pyrodiv.JensenShannon, "jensen_shannon", None),
    "total_variation": (
        lambda **kw: pyrodiv.FDivergence("total_variation", **kw),
        "total_variation",
        None,
    ),
    "hellinger": (
        lambda **kw: pyrodiv.FDivergence("squared_hellinger", **kw),
        "squared_hellinger",
        0.5,
    ),
    "amari_alpha": (
        lambda **kw: pyrodiv.FDivergence("amari_alpha", alpha=-0.5, **kw),
        ("amari_alpha", {"alpha": -0.5}),
        -0.5,
    ),
    "kl_reverse_f": (lambda **kw: pyrodiv.FDivergence("kl_reverse", **kw), "kl_reverse", 0.0),
}


def _generator(spec):
    return get_generator(spec[0], **spec[1]) if isinstance(spec, tuple) else get_generator(spec)


def _exact(name, log_joint, log_q, logits):
    """The exact reported value and the gradient of the training objective, by summing over
    the discrete values:

    * reverse KL: the negative ELBO, sum_k q_k (log q_k - log p(k, y));
    * non-power f (JS, TV): D_f(P||Q) = sum_k q_k f(p_k / q_k) with the exact posterior p;
    * power alpha: log(sum_k q_k^(1-alpha) p(k, y)^alpha) / (alpha (alpha - 1)), whose
      gradient the Renyi-bound training follows (alpha = 1: KL(P||Q); alpha = 0: KL(Q||P)).
    """
    _, generator, power = LOSSES[name]
    leaf = logits.detach().clone().requires_grad_()
    lq, lj = log_q(leaf), log_joint()
    q = lq.exp()
    post = torch.softmax(lj, -1)
    if generator is None:
        value = (q * (lq - lj)).sum()
    else:
        value = (q * _generator(generator)(post.log() - lq)).sum()
    if power is None:
        objective = value
    elif power == 1.0:
        objective = -(post * lq).sum()
    elif power == 0.0:
        objective = (q * (lq - lj)).sum()
    else:
        objective = torch.logsumexp((1 - power) * lq + power * lj, -1) / (power * (power - 1))
    (grad,) = torch.autograd.grad(objective, [leaf])
    return float(value.detach()), grad


#: Non-power f-divergences on a posterior target keep the gradient of log Z-hat at fixed draws
#: of score-function sites, which the per-particle score term does not offset: their gradient
#: is off by O(1) at any K. The fix is in pyrodiv/estimators.py (self_normalized_f_divergence:
#: remove the score sites' gradient from log Z-hat), which this file does not own.
_SELF_NORMALIZED_SCORE = pytest.mark.xfail(
    strict=True,
    reason="self_normalized_f_divergence differentiates log Z-hat at fixed discrete draws",
)


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=_SELF_NORMALIZED_SCORE) if LOSSES[name][2] is None else name
        for name in LOSSES
    ],
)
def test_discrete_guide_sites_train_with_the_exact_gradient(name, model_name):
    model, guide, log_joint, log_q = make_program(model_name)
    guide(Y)
    logits = pyro.get_param_store().get_param("logits")
    exact_value, exact_grad = _exact(name, log_joint, log_q, logits)
    loss = LOSSES[name][0](num_particles=1000, vectorize_particles=True)
    values, grads = [], []
    for seed in range(30):
        pyro.set_rng_seed(seed)
        surrogate = loss.differentiable_loss(model, guide, Y)
        values.append(float(surrogate.detach()))
        grads.append(torch.autograd.grad(surrogate, [logits])[0])
    values, grads = torch.tensor(values), torch.stack(grads)
    value_se, grad_se = values.std() / math.sqrt(30), grads.std(0) / math.sqrt(30)
    assert (grad_se > 0).all()  # the score function is at work
    assert abs(values.mean() - exact_value) < 4 * value_se + 1e-9
    assert (abs(grads.mean(0) - exact_grad) < 4 * grad_se).all()
