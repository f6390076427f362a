"""Model sites enumerated in parallel (``config_enumerate``) are summed out: every loss reads
the marginal log p, ReverseKL is ``TraceEnum_ELBO`` (value and gradient, to rounding,
from the same random draws), and on a mixture written with an enumerated assignment each loss
gives what it gives on the same mixture written as a ``MixtureSameFamily``.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, TraceEnum_ELBO, config_enumerate
from pyro.infer.autoguide import AutoNormalMessenger
from pyro.ops.indexing import Vindex

import pyrodiv
from pyrodiv.divergences.losses import get_loss
from pyrodiv.divergences.trace_pair import Order
from pyrodiv.divergences.traces import Runner

_F64 = {"dtype": torch.float64}  # the suite runs in float64 (conftest)
WEIGHTS, MEANS = torch.tensor([0.3, 0.7], **_F64), torch.tensor([-7.0, 7.0], **_F64)
MIXTURE = dist.MixtureSameFamily(dist.Categorical(WEIGHTS), dist.Normal(MEANS, 1.0))


@config_enumerate
def enumerated_mixture():
    """The talk's bimodal target with its assignment as a discrete site, summed out."""
    k = pyro.sample("k", dist.Categorical(WEIGHTS))
    pyro.sample("z", dist.Normal(Vindex(MEANS)[..., k], 1.0))


def mixture():
    pyro.sample("z", MIXTURE)


def normal_guide():
    loc = pyro.param("loc", torch.tensor(1.0))
    scale = pyro.param("scale", torch.tensor(2.0), constraint=dist.constraints.positive)
    pyro.sample("z", dist.Normal(loc, scale))


@pytest.mark.parametrize("order", [Order.GUIDE_FIRST, Order.MODEL_FIRST])
@pytest.mark.parametrize("vectorize", [False, True])
def test_log_p_is_the_mixture_density(order, vectorize):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    run = Runner(6, vectorize)(enumerated_mixture, normal_guide, (), {}, order)
    exact = MIXTURE.log_prob(run.latents["z"].squeeze(-1))
    assert torch.allclose(run.log_p, exact, atol=1e-5)
    assert sorted(run.latents) == ["z"]  # the assignment is summed out, not a latent


def test_draws_of_the_model_are_draws_of_the_mixture():
    """Model-first runs draw the assignment, then sum it out: z ~ P. 4000 draws: the share
    near -7 is 0.3 within 4 standard errors (sqrt(0.21 / 4000) = 0.0072)."""
    pyro.set_rng_seed(1)
    run = Runner(4000, True)(enumerated_mixture, normal_guide, (), {}, Order.MODEL_FIRST)
    share = float((run.latents["z"] < 0).double().mean())
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 4000)


@pytest.mark.parametrize(
    "name",
    ["reverse_kl", "squared_hellinger", "pearson", "total_variation", "renyi", "cubo"]
    + ["amari_alpha"],
)
def test_guide_first_losses_equal_the_mixture_same_family_program(name):
    values = []
    for model in (enumerated_mixture, mixture):
        pyro.clear_param_store()
        pyro.set_rng_seed(3)
        values.append(
            get_loss(name, num_particles=8, vectorize_particles=True).loss(model, normal_guide)
        )
    assert values[0] == pytest.approx(values[1], rel=1e-5)


# ---- against TraceEnum_ELBO ---------------------------------------------------------------

DATA = torch.cat(
    [
        torch.randn(30, generator=torch.Generator().manual_seed(0), **_F64) * 0.5 - 3.0,
        torch.randn(30, generator=torch.Generator().manual_seed(1), **_F64) * 0.5 + 3.0,
    ]
)


@config_enumerate
def gmm(data):
    """A Gaussian mixture with one assignment per data point, enumerated in the data plate."""
    locs = pyro.sample("locs", dist.Normal(0.0, 10.0).expand([2]).to_event(1))
    with pyro.plate("data", len(data)):
        k = pyro.sample("k", dist.Categorical(torch.tensor([0.5, 0.5])))
        pyro.sample("obs", dist.Normal(Vindex(locs)[..., k], 0.5), obs=data)


def gmm_guide(data):
    loc = pyro.param("loc", torch.tensor([-1.0, 1.0]))
    pyro.sample("locs", dist.Normal(loc, 0.3).to_event(1))


@config_enumerate
def hmm(ys):
    """A two-state hidden Markov model: the states summed out along a pyro.markov chain."""
    probs = pyro.sample("probs", dist.Dirichlet(torch.ones(2, 2) + 2.0).to_event(1))
    state = 0
    for t in pyro.markov(range(len(ys))):
        state = pyro.sample(f"x_{t}", dist.Categorical(Vindex(probs)[..., state, :]))
        pyro.sample(f"y_{t}", dist.Normal(Vindex(MEANS)[..., state], 3.0), obs=ys[t])


def hmm_guide(ys):
    conc = pyro.param("conc", torch.full((2, 2), 2.0), constraint=dist.constraints.positive)
    pyro.sample("probs", dist.Dirichlet(conc).to_event(1))


HMM_DATA = torch.tensor([-6.0, -7.0, 8.0, 6.0, 7.0, -5.0], **_F64)


@pytest.mark.parametrize(
    "model,guide,data,nesting",
    [(gmm, gmm_guide, DATA, 1), (hmm, hmm_guide, HMM_DATA, 0)],
    ids=["gmm", "hmm"],
)
@pytest.mark.parametrize("num_particles,vectorize", [(1, False), (4, False), (4, True)])
def test_reverse_kl_is_trace_enum_elbo(model, guide, data, nesting, num_particles, vectorize):
    grads = []
    values = []
    for loss in (
        TraceEnum_ELBO(
            num_particles=num_particles, vectorize_particles=vectorize, max_plate_nesting=nesting
        ),
        pyrodiv.ReverseKL(num_particles=num_particles, vectorize_particles=vectorize),
    ):
        pyro.clear_param_store()
        pyro.set_rng_seed(1)
        value = loss.differentiable_loss(model, guide, data)
        params = [p.unconstrained() for p in pyro.get_param_store().values()]
        values.append(float(value.detach()))
        grads.append(torch.autograd.grad(value, params))
    assert values[1] == pytest.approx(values[0], rel=1e-6)
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-4)


def _train(loss, steps=300):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    svi = SVI(gmm, gmm_guide, pyro.optim.Adam({"lr": 0.1}), loss)
    for _ in range(steps):
        svi.step(DATA)
    return pyro.param("loc").detach()


def test_training_on_the_mixture_follows_trace_enum_elbo():
    """ReverseKL takes TraceEnum_ELBO's steps exactly; forward KL and squared Hellinger
    (self-normalized, 16 particles) separate the clusters too: within 0.1 of the data's
    cluster means (posterior sd of each loc: 0.5 / sqrt(30) = 0.09)."""
    reference = _train(
        TraceEnum_ELBO(num_particles=16, vectorize_particles=True, max_plate_nesting=1)
    )
    reverse = _train(pyrodiv.ReverseKL(num_particles=16, vectorize_particles=True))
    assert torch.allclose(reverse, reference, atol=1e-4)
    cluster_means = torch.stack([DATA[:30].mean(), DATA[30:].mean()])
    assert torch.allclose(reference, cluster_means, atol=0.2)
    for name in ("forward_kl", "squared_hellinger"):
        fitted = _train(get_loss(name, num_particles=16, vectorize_particles=True))
        assert torch.allclose(fitted, cluster_means, atol=0.2), (name, fitted)


def test_sequential_enumeration_is_named():
    @config_enumerate(default="sequential")
    def model():
        k = pyro.sample("k", dist.Categorical(WEIGHTS))
        pyro.sample("z", dist.Normal(MEANS[k], 1.0))

    with pytest.raises(ValueError, match="'k' is marked for 'sequential' enumeration"):
        pyrodiv.ReverseKL().loss(model, normal_guide)


def test_a_given_plate_nesting_finds_the_enumerated_sites_on_the_first_run():
    values = []
    for loss in (
        TraceEnum_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1),
        pyrodiv.ReverseKL(num_particles=4, vectorize_particles=True, max_plate_nesting=1),
    ):
        pyro.clear_param_store()
        pyro.set_rng_seed(2)
        values.append(loss.loss(gmm, gmm_guide, DATA))
    assert values[1] == pytest.approx(values[0], rel=1e-9)


def test_a_guide_that_runs_the_model_itself_cannot_sum_out_and_names_the_site():
    @config_enumerate
    def model():
        k = pyro.sample("k", dist.Categorical(WEIGHTS))
        pyro.sample("z", dist.Normal(Vindex(MEANS)[..., k], 1.0))

    guide = AutoNormalMessenger(model)
    with pytest.raises(ValueError, match="reverse KL: .*discrete sample site 'k'"):
        pyrodiv.ReverseKL().loss(model, guide)
