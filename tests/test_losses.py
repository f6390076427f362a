"""The SVI losses on prior targets: values and gradients against quadrature, agreement
between the three entry points, sequential vs vectorized particles, and bad input."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoDiagonalNormal, AutoMultivariateNormal, AutoNormal

import pyrodiv
from pyrodiv.divergences.quadrature import divergence_tensor

P_LOC, P_SCALE = -1.0, 1.5


def normal_target():
    pyro.sample("x", dist.Normal(torch.tensor(P_LOC), torch.tensor(P_SCALE)))


def mixture_target():
    pyro.sample(
        "x",
        dist.MixtureSameFamily(
            dist.Categorical(torch.ones(2)),
            dist.Normal(torch.tensor([-1.0, 1.5]), torch.tensor([1.0, 1.2])),
        ),
    )


def normal_guide():
    loc = pyro.param("loc", torch.tensor(0.2))
    log_scale = pyro.param("log_scale", torch.tensor(math.log(1.5)))
    pyro.sample("x", dist.Normal(loc, log_scale.exp()))


TARGETS = {
    "normal": (normal_target, dist.Normal(P_LOC, P_SCALE)),
    "mixture": (mixture_target, None),
}


def _target_log_prob(name):
    if name == "normal":
        return lambda x: dist.Normal(torch.tensor(P_LOC), torch.tensor(P_SCALE)).log_prob(x)
    mix = dist.MixtureSameFamily(
        dist.Categorical(torch.ones(2)),
        dist.Normal(torch.tensor([-1.0, 1.5]), torch.tensor([1.0, 1.2])),
    )
    return mix.log_prob


LOSSES = {
    "ForwardKL": (lambda **kw: pyrodiv.ForwardKL(**kw), "kl_forward"),
    "ReverseKL": (lambda **kw: pyrodiv.ReverseKL(**kw), "kl_reverse"),
    "JensenShannon": (lambda **kw: pyrodiv.JensenShannon(**kw), "jensen_shannon"),
    "FDiv-hellinger": (
        lambda **kw: pyrodiv.FDivergence("squared_hellinger", **kw),
        "squared_hellinger",
    ),
    "FDiv-pearson": (lambda **kw: pyrodiv.FDivergence("pearson", **kw), "pearson"),
    "FDiv-tv": (lambda **kw: pyrodiv.FDivergence("total_variation", **kw), "total_variation"),
    "FDiv-alpha": (lambda **kw: pyrodiv.FDivergence("amari_alpha", alpha=-0.5, **kw), None),
    "FDiv-kl_forward": (lambda **kw: pyrodiv.FDivergence("kl_forward", **kw), "kl_forward"),
}


def _params():
    store = pyro.get_param_store()
    return [store.get_param("loc").unconstrained(), store.get_param("log_scale").unconstrained()]


def _exact(target, generator):
    """Value and gradient in (loc, log_scale) of D_f(P||Q) by differentiable quadrature."""
    loc, log_scale = (p.detach().clone().requires_grad_() for p in _params())
    q_log_prob = lambda x: dist.Normal(loc, log_scale.exp()).log_prob(x)  # noqa: E731
    value = divergence_tensor(generator, _target_log_prob(target), q_log_prob)
    return float(value), torch.stack(torch.autograd.grad(value, [loc, log_scale]))


def _repeat(loss, model, reps):
    values, grads = [], []
    for seed in range(reps):
        pyro.set_rng_seed(seed)
        surrogate = loss.differentiable_loss(model, normal_guide)
        values.append(float(surrogate.detach()))
        grads.append(torch.stack(torch.autograd.grad(surrogate, _params())))
    values, grads = torch.tensor(values), torch.stack(grads)
    return (
        values.mean(),
        values.std() / math.sqrt(reps),
        grads.mean(0),
        grads.std(0) / math.sqrt(reps),
    )


@pytest.mark.parametrize("target", ["normal", "mixture"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_value_and_gradient_match_quadrature(name, target):
    make, generator = LOSSES[name]
    if generator is None:
        generator = pyrodiv.get_generator("amari_alpha", alpha=-0.5)
    model = TARGETS[target][0]
    normal_guide()  # create the parameters
    exact_value, exact_grad = _exact(target, generator)
    loss = make(num_particles=2000, vectorize_particles=True)
    value, value_se, grad, grad_se = _repeat(loss, model, reps=20)
    # Unbiased estimators (prior target): within 4 standard errors of the exact numbers
    # (the standard error is estimated from 20 independent repetitions).
    assert abs(value - exact_value) < 4 * value_se + 1e-9
    assert (abs(grad - exact_grad) < 4 * grad_se + 1e-9).all()


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("name", ["ForwardKL", "ReverseKL", "JensenShannon", "FDiv-pearson"])
def test_loss_differentiable_loss_and_loss_and_grads_agree(name, vectorize):
    make, _ = LOSSES[name]
    loss = make(num_particles=8, vectorize_particles=vectorize)
    normal_guide()
    pyro.set_rng_seed(7)
    value = loss.loss(mixture_target, normal_guide)
    pyro.set_rng_seed(7)
    surrogate = loss.differentiable_loss(mixture_target, normal_guide)
    expected_grads = torch.autograd.grad(surrogate, _params())
    pyro.set_rng_seed(7)
    returned = loss.loss_and_grads(mixture_target, normal_guide)
    assert value == pytest.approx(float(surrogate.detach()), rel=1e-12)
    assert returned == pytest.approx(value, rel=1e-12)
    for param, grad in zip(_params(), expected_grads, strict=True):
        assert torch.allclose(param.grad, grad, rtol=1e-10)


@pytest.mark.parametrize("name", ["ForwardKL", "ReverseKL", "JensenShannon", "FDiv-hellinger"])
def test_sequential_and_vectorized_particles_agree(name):
    make, _ = LOSSES[name]
    normal_guide()
    results = []
    for vectorize in [False, True]:
        loss = make(num_particles=50, vectorize_particles=vectorize)
        results.append(_repeat(loss, mixture_target, reps=30))
    (v1, s1, g1, gs1), (v2, s2, g2, gs2) = results
    # Two independent unbiased estimates of the same numbers: their difference is within
    # 4 combined standard errors.
    assert abs(v1 - v2) < 4 * math.hypot(s1, s2)
    assert (abs(g1 - g2) < 4 * (gs1**2 + gs2**2).sqrt()).all()


@pytest.mark.parametrize(
    "specialised,generic",
    [("ForwardKL", "FDiv-kl_forward"), ("JensenShannon", None)],
)
def test_named_losses_agree_with_fdivergence(specialised, generic):
    normal_guide()
    special = _repeat(
        LOSSES[specialised][0](num_particles=1000, vectorize_particles=True), mixture_target, 20
    )
    make_generic = (
        LOSSES[generic][0]
        if generic
        else (lambda **kw: pyrodiv.FDivergence("jensen_shannon", **kw))
    )
    general = _repeat(
        make_generic(num_particles=1000, vectorize_particles=True), mixture_target, 20
    )
    # Different unbiased estimators (draws from P vs draws from Q) of one divergence.
    assert abs(special[0] - general[0]) < 4 * math.hypot(special[1], general[1])
    assert (abs(special[2] - general[2]) < 4 * (special[3] ** 2 + general[3] ** 2).sqrt()).all()


def categorical_target():
    pyro.sample("k", dist.Categorical(torch.tensor([0.6, 0.3, 0.1])))


def categorical_guide():
    logits = pyro.param("logits", torch.tensor([0.0, 0.2, -0.3]))
    pyro.sample("k", dist.Categorical(logits=logits))


@pytest.mark.parametrize(
    "make,generator",
    [
        (pyrodiv.ForwardKL, "kl_forward"),
        (pyrodiv.ReverseKL, "kl_reverse"),
        (pyrodiv.JensenShannon, "jensen_shannon"),
        (lambda **kw: pyrodiv.FDivergence("pearson", **kw), "pearson"),
    ],
)
def test_discrete_guide_sites_train_by_score_function(make, generator):
    categorical_guide()
    logits = pyro.get_param_store().get_param("logits").unconstrained()
    p = torch.tensor([0.6, 0.3, 0.1])
    leaf = logits.detach().clone().requires_grad_()
    q = torch.softmax(leaf, -1)
    exact = (q * pyrodiv.get_generator(generator)(p.log() - q.log())).sum()
    (exact_grad,) = torch.autograd.grad(exact, [leaf])
    loss = make(num_particles=500, vectorize_particles=True)
    values, grads = [], []
    for seed in range(30):
        pyro.set_rng_seed(seed)
        surrogate = loss.differentiable_loss(categorical_target, categorical_guide)
        values.append(float(surrogate.detach()))
        grads.append(torch.autograd.grad(surrogate, [logits])[0])
    values, grads = torch.tensor(values), torch.stack(grads)
    assert abs(values.mean() - exact) < 4 * values.std() / math.sqrt(30)
    assert (abs(grads.mean(0) - exact_grad) < 4 * grads.std(0) / math.sqrt(30) + 1e-12).all()


@pytest.mark.parametrize("autoguide", [AutoNormal, AutoDiagonalNormal, AutoMultivariateNormal])
def test_forward_kl_evaluates_autoguides_at_target_draws(autoguide):
    # A 2-D prior target with a constrained site: the guide must be evaluated at P's draws,
    # inverting AutoContinuous's transform and counting its Jacobian.
    def model():
        pyro.sample("a", dist.Normal(torch.tensor(1.0), torch.tensor(2.0)))
        pyro.sample("s", dist.LogNormal(torch.tensor(0.5), torch.tensor(0.4)))

    guide = autoguide(model)
    guide()
    loss = pyrodiv.ForwardKL(num_particles=20000, vectorize_particles=True)
    pyro.set_rng_seed(0)
    value = loss.loss(model, guide)
    # The guide is Normal in (a, log s) with the autoguide's initial loc and scale; KL is the
    # closed-form Normal KL in the unconstrained space (the Jacobians cancel).
    q_loc, q_scale = _autoguide_moments(guide)
    p_loc, p_scale = torch.tensor([1.0, 0.5]), torch.tensor([2.0, 0.4])
    exact = float(
        torch.distributions.kl_divergence(
            dist.Normal(p_loc, p_scale), dist.Normal(q_loc, q_scale)
        ).sum()
    )
    assert value == pytest.approx(exact, rel=0.05)


def _autoguide_moments(guide):
    if isinstance(guide, AutoNormal):
        locs = torch.stack([guide.locs.a, guide.locs.s]).detach()
        scales = torch.stack([guide.scales.a, guide.scales.s]).detach()
        return locs, scales
    posterior = guide.get_posterior()
    if isinstance(posterior, dist.MultivariateNormal):
        return posterior.loc.detach(), posterior.covariance_matrix.diagonal().sqrt().detach()
    return posterior.base_dist.loc.detach(), posterior.base_dist.scale.detach()


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="num_particles"):
        pyrodiv.ForwardKL(num_particles=0)
    with pytest.raises(ValueError, match="target must be one of"):
        pyrodiv.ReverseKL(target="data")
    with pytest.raises(ValueError, match="unknown generator"):
        pyrodiv.FDivergence("hellinger")

    def nan_model():
        pyro.sample("x", dist.Normal(torch.tensor(float("nan")), 1.0, validate_args=False))

    normal_guide()
    with pytest.raises(ValueError, match="model site 'x'"):
        pyrodiv.ReverseKL(num_particles=4, vectorize_particles=True).loss(nan_model, normal_guide)

    def far_target():
        pyro.sample("x", dist.Normal(torch.tensor(200.0), torch.tensor(1.0)))

    def narrow_guide():
        pyro.sample("x", dist.Normal(torch.tensor(0.0), torch.tensor(1.0)))

    # log p/q is about -2e4 at Q's draws, so 1/t - 1 overflows: a clear error, not NaN.
    with pytest.raises(ValueError, match="beyond the floating-point range"):
        pyrodiv.FDivergence("neyman", num_particles=64).loss(far_target, narrow_guide)
    # ...while the reverse KL (linear in log t) stays finite, at about 2e4 nats.
    assert pyrodiv.ReverseKL(num_particles=64).loss(far_target, narrow_guide) > 1.9e4


def test_a_non_finite_gradient_is_refused_by_name_and_no_step_is_taken():
    # d sqrt(|loc|) / d loc is infinite at loc = 0: the step must raise, not write NaN.
    def model():
        pyro.sample("x", dist.Normal(0.0, 1.0))

    def guide():
        loc = pyro.param("loc", torch.tensor(0.0))
        pyro.sample("x", dist.Normal(loc.abs().sqrt(), 1.0))

    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.1}), pyrodiv.ReverseKL(4))
    with pytest.raises(ValueError, match=r"gradient of parameter\(s\) \['loc'\] is NaN or inf"):
        svi.step()
    assert float(pyro.param("loc")) == 0.0 and pyro.param("loc").unconstrained().grad is None


def test_forward_kl_with_draws_says_its_value_is_a_cross_entropy():
    draws = {"x": torch.randn(50, dtype=torch.float64)}
    assert "cross-entropy" in pyrodiv.ForwardKL(draws=draws).divergence
    assert pyrodiv.ForwardKL().divergence == "forward KL"


def test_score_climbing_on_a_prior_target_says_it_is_not_used():
    def prior():
        pyro.sample("x", dist.Normal(1.0, 2.0))

    def normal(loc=0.0):
        pyro.sample("x", dist.Normal(pyro.param("loc", torch.tensor(loc)), 1.0))

    loss = pyrodiv.ForwardKL(num_particles=4, estimator="msc")
    with pytest.warns(UserWarning, match="estimator='msc' applies to posterior targets"):
        loss.loss(prior, normal)
    # The value is the prior target's own unbiased estimate: KL(N(1, 4) || N(0, 1)) in
    # closed form is log(1/2) + (4 + 1) / 2 - 1/2 = 1.307; 4000 particles give a standard
    # error of about 0.05 (the per-draw sd of log p - log q is about 3).
    pyro.set_rng_seed(0)
    value = pyrodiv.ForwardKL(num_particles=4000, vectorize_particles=True).loss(prior, normal)
    assert abs(value - (math.log(0.5) + 2.0)) < 0.25


@pytest.mark.parametrize(
    "name, ceiling",
    [("jensen_shannon", math.log(2)), ("squared_hellinger", 1.0), ("total_variation", 0.5)],
)
def test_a_saturated_divergence_says_so(name, ceiling):
    # P = N(0, 1), Q = N(60, 1): every density ratio underflows, the bounded divergences sit at
    # their ceiling (log 2, 1, 1/2) with a gradient of exactly 0, and Q would never move.
    def prior():
        pyro.sample("x", dist.Normal(0.0, 1.0))

    def far():
        pyro.sample("x", dist.Normal(pyro.param("loc", torch.tensor(60.0)), 1.0))

    loss = pyrodiv.get_loss(name, num_particles=16, vectorize_particles=True)
    svi = pyro.infer.SVI(prior, far, pyro.optim.Adam({"lr": 0.05}), loss=loss)
    with pytest.warns(RuntimeWarning, match=r"gradient has been exactly 0 for 10 steps"):
        values = [svi.step() for _ in range(10)]
    assert values[-1] == pytest.approx(ceiling, rel=1e-12)
    assert float(pyro.param("loc").detach()) == 60.0
