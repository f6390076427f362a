"""Prior, posterior and sample targets; given draws; the table of what each divergence needs.

Statistical checks compare a Monte Carlo estimate over K draws of P with its exact value (the
mean over every draw), within 4 standard errors sd / sqrt(K), at fixed seeds.
"""

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoNormal

import pyrodiv
from pyrodiv.divergences.losses import get_loss
from pyrodiv.divergences.targets import SampleTarget, SetDraws, available, require

K = 400


def prior_model():
    pyro.sample("z", dist.Normal(1.0, 2.0))


Y = torch.tensor([0.5, 1.5, 2.0])


def posterior_model(y=Y):
    z = pyro.sample("z", dist.Normal(0.0, 3.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(z, 1.0), obs=y)


def guide(*args):
    loc = pyro.param("loc", torch.tensor(0.3))
    scale = pyro.param("scale", torch.tensor(1.2), constraint=dist.constraints.positive)
    pyro.sample("z", dist.Normal(loc, scale))


DRAWS = {"z": torch.linspace(-2.0, 4.0, 1001)}
SAMPLE_TARGET = SampleTarget(DRAWS)

# The talk's "Summary of Methods": what each loss needs of P, and so which targets it refuses.
# (loss name, refuses prior?, refuses posterior?, refuses sample?)
TABLE = [
    ("reverse_kl", False, False, True),
    ("forward_kl", False, False, True),
    ("jensen_shannon", False, False, True),
    ("squared_hellinger", False, False, True),
    ("renyi", False, False, True),
    ("cubo", False, False, True),
    ("cross_entropy", False, True, False),
    ("wasserstein", False, True, False),
]
MISSING = {
    "reverse_kl": "log p",
    "forward_kl": "log p",
    "jensen_shannon": "log p",
    "squared_hellinger": "log p",
    "renyi": "log p",
    "cubo": "log p",
    "cross_entropy": "x ~ P",
    "wasserstein": "x ~ P",
}


@pytest.mark.parametrize("name,on_prior,on_posterior,on_sample", TABLE)
@pytest.mark.parametrize("kind", ["prior", "posterior", "sample"])
def test_every_loss_follows_the_table_of_ingredients(
    name, on_prior, on_posterior, on_sample, kind
):
    model = {"prior": prior_model, "posterior": posterior_model, "sample": SAMPLE_TARGET}[kind]
    refuses = {"prior": on_prior, "posterior": on_posterior, "sample": on_sample}[kind]
    loss = get_loss(name, num_particles=8, vectorize_particles=True)
    assert loss.target_kind(model, (), {}) == kind
    if refuses:
        with pytest.raises(ValueError) as info:
            loss.loss(model, guide)
        message = str(info.value)
        assert loss.divergence in message
        assert f"needs {MISSING[name]}" in message
        assert f"this {kind} target cannot give" in message
        assert loss.instead(kind) in message and loss.instead(kind)
    else:
        assert torch.isfinite(torch.tensor(loss.loss(model, guide)))


@pytest.mark.parametrize("name", list(MISSING))
def test_each_loss_table_agrees_with_the_talks_ingredients(name):
    # A loss has a plan for a kind of target exactly when the kind gives what the talk's
    # table says the divergence needs (x ~ P replaced by importance sampling on posteriors).
    loss = get_loss(name)
    for kind in ("prior", "posterior", "sample"):
        needs = set(loss.needs) - ({"x ~ P"} if loss.self_normalizes else set())
        gives = available(kind)
        assert (kind in loss.plans()) == (needs <= gives), (name, kind)


def test_require_names_what_is_missing_and_what_to_do():
    assert available("posterior") == {"log p"}
    assert available("posterior", has_draws=True) == {"log p", "x ~ P"}
    require("forward KL", {"log p", "x ~ P"}, "prior")
    with pytest.raises(ValueError, match=r"needs log p, which this sample target .*; do this"):
        require("f", {"log p", "x ~ P"}, "sample", instead="do this")
    with pytest.raises(ValueError, match="needs x ~ P, which this posterior target"):
        require("f", {"log p", "x ~ P"}, "posterior")
    require("f", {"log p", "x ~ P"}, "posterior", has_draws=True)
    with pytest.raises(ValueError, match="unknown target kind 'other'"):
        available("other")


def test_the_target_kind_can_be_overridden():
    assert pyrodiv.CrossEntropy(target="sample").target_kind(prior_model, (), {}) == "sample"
    with pytest.raises(ValueError, match="reverse KL needs log p"):
        pyrodiv.ReverseKL(target="sample").loss(prior_model, guide)
    with pytest.raises(ValueError, match="target must be one of"):
        pyrodiv.ReverseKL(target="data")


def _exact_cross_entropy(draws):
    loc, scale = pyro.param("loc"), pyro.param("scale")
    per_draw = -dist.Normal(loc, scale).log_prob(draws)
    return per_draw.mean(), per_draw.std() / K**0.5


@pytest.mark.parametrize("vectorize", [True, False])
def test_cross_entropy_on_a_sample_target_is_unbiased(vectorize):
    pyro.set_rng_seed(0)
    loss = pyrodiv.CrossEntropy(num_particles=K, vectorize_particles=vectorize)
    with warnings.catch_warnings():  # the draws vectorize: no fallback to one at a time
        warnings.simplefilter("error", RuntimeWarning)
        value = loss.differentiable_loss(SAMPLE_TARGET, guide)
    exact, se = _exact_cross_entropy(DRAWS["z"])
    assert abs(float(value.detach()) - float(exact)) < 4 * float(se)
    # the gradient: d/dloc of the exact cross-entropy is -(mean(x) - loc) / scale^2
    (grad,) = torch.autograd.grad(value, pyro.param("loc").unconstrained())
    loc, scale = pyro.param("loc"), pyro.param("scale")
    per_draw = -(DRAWS["z"] - loc) / scale**2
    assert abs(float(grad) - float(per_draw.mean())) < 4 * float(per_draw.std()) / K**0.5


@pytest.mark.parametrize("vectorize", [True, False])
def test_forward_kl_with_given_draws_of_a_posterior_is_their_cross_entropy(vectorize):
    pyro.set_rng_seed(1)
    loss = pyrodiv.ForwardKL(num_particles=K, vectorize_particles=vectorize, draws=DRAWS)
    assert loss.target_kind(posterior_model, (), {}) == "posterior"
    value = loss.loss(posterior_model, guide)
    exact, se = _exact_cross_entropy(DRAWS["z"])
    assert abs(value - float(exact)) < 4 * float(se)


def test_set_draws_shapes_each_draw_to_the_sites_plates():
    draws = {"a": torch.arange(5.0), "theta": torch.arange(15.0).reshape(5, 3)}

    def model():
        pyro.sample("a", dist.Normal(0.0, 1.0))
        with pyro.plate("groups", 3):
            pyro.sample("theta", dist.Normal(0.0, 1.0))

    pyro.set_rng_seed(0)
    with SetDraws(draws, 4, -2) as set_draws, pyro.plate("particles", 4, dim=-2):
        trace = pyro.poutine.trace(model).get_trace()
    a, theta = trace.nodes["a"]["value"], trace.nodes["theta"]["value"]
    assert a.shape == (4, 1) and theta.shape == (4, 3)
    # draws stay joint: particle k holds row index[k] of every site
    assert torch.equal(a[:, 0], set_draws.index.double())
    assert torch.equal(theta, draws["theta"][set_draws.index])
    assert not trace.nodes["theta"]["is_observed"]


def test_bad_draws_are_refused_by_name():
    with pytest.raises(ValueError, match="draws of site 'z' contain NaN"):
        pyrodiv.ForwardKL(draws={"z": torch.tensor([0.0, float("nan")])})
    with pytest.raises(ValueError, match="same number of draws"):
        SampleTarget({"a": torch.zeros(3), "b": torch.zeros(4)})
    with pytest.raises(TypeError, match="draws must be a non-empty dict"):
        SampleTarget(torch.zeros(3))
    loss = pyrodiv.ForwardKL(draws={"z": torch.zeros(10, 2)})
    with pytest.raises(ValueError, match="draws of site 'z'.*does not fit the site's shape"):
        loss.loss(posterior_model, guide)


def test_autoguides_are_set_up_before_they_are_evaluated_at_the_targets_draws():
    pyro.set_rng_seed(0)
    auto = AutoNormal(SAMPLE_TARGET)
    value = pyrodiv.CrossEntropy(num_particles=16, vectorize_particles=True).loss(
        SAMPLE_TARGET, auto
    )
    assert torch.isfinite(torch.tensor(value))


def test_an_inference_data_gives_its_posterior_draws():
    from pyrodiv import arviz_adapter

    chains = torch.linspace(-1.0, 1.0, 2 * 50).reshape(2, 50)
    idata = arviz_adapter.to_inference_data({"z": chains})
    loss = pyrodiv.ForwardKL(num_particles=K, draws=idata)
    assert loss.draws["z"].shape == (100,)
    assert torch.equal(loss.draws["z"], chains.reshape(-1))


def test_draws_must_cover_every_latent_site_and_only_the_models_sites():
    def model():
        pyro.sample("a", dist.Normal(0.0, 1.0))
        pyro.sample("b", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(0.0, 1.0), obs=torch.tensor(0.5))

    def two_site_guide():
        pyro.sample("a", dist.Normal(0.0, 1.0))
        pyro.sample("b", dist.Normal(0.0, 1.0))

    some = torch.randn(10)
    with pytest.raises(ValueError, match="no values for the model's latent site 'b'"):
        pyrodiv.CrossEntropy(draws={"a": some}).loss(model, two_site_guide)
    with pytest.raises(ValueError, match=r"draws of \['c'\]: the model has no such latent site"):
        pyrodiv.CrossEntropy(draws={"a": some, "b": some, "c": some}).loss(model, two_site_guide)


def test_deterministic_sites_do_not_make_a_posterior():
    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.deterministic("twice", 2 * z)

    assert pyrodiv.CrossEntropy().target_kind(model, (), {}) == "prior"


def test_empty_draws_are_refused_where_given():
    with pytest.raises(ValueError, match="draws of site 'x' are empty"):
        SampleTarget({"x": torch.randn(0, 2)})
    with pytest.raises(ValueError, match="draws of site 'z' are empty"):
        pyrodiv.ForwardKL(num_particles=8, draws={"z": torch.zeros(0)})
