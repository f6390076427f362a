"""Losses on posterior targets (observed sites, pyro.factor): agreement with Pyro's ELBO,
a conjugate optimum, and invariance to huge normalizing constants."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoNormal

import pyrodiv

# Normal-Normal: z ~ N(0, 1), y_i | z ~ N(z, 1); posterior N(sum y / (n + 1), 1 / (n + 1)).
Y = torch.tensor([0.3, 1.1, 0.8, 1.9, 0.4], dtype=torch.float64)


def conjugate(y, log_offset=0.0):
    z = pyro.sample("z", dist.Normal(y.new_tensor(0.0), 1.0))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Normal(z, 1.0), obs=y)
    if log_offset:
        pyro.factor("offset", y.new_tensor(log_offset))


def test_reverse_kl_is_the_negative_elbo_with_its_gradient():
    guide = AutoNormal(conjugate)
    guide(Y)  # initialize before seeding: the prototype run draws random numbers
    kw = {"num_particles": 16, "vectorize_particles": True, "max_plate_nesting": 1}
    pyro.set_rng_seed(3)
    ours = pyrodiv.ReverseKL(**kw).differentiable_loss(conjugate, guide, Y)
    params = [p.unconstrained() for p in pyro.get_param_store().values()]
    ours_grads = torch.autograd.grad(ours, params)
    pyro.set_rng_seed(3)
    theirs = Trace_ELBO(**kw).differentiable_loss(conjugate, guide, Y)
    theirs_grads = torch.autograd.grad(theirs, params)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-12)
    for a, b in zip(ours_grads, theirs_grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-10)


def test_targets_are_detected_and_can_be_overridden():
    loss = pyrodiv.ForwardKL()
    assert loss.target_kind(conjugate, (Y,), {}) == "posterior"
    assert loss.target_kind(lambda: pyro.sample("z", dist.Normal(0.0, 1.0)), (), {}) == "prior"
    assert pyrodiv.ForwardKL(target="prior").target_kind(conjugate, (Y,), {}) == "prior"
    with pytest.raises(ValueError, match="cross-entropy needs x ~ P, which this posterior target"):
        pyrodiv.CrossEntropy().loss(conjugate, AutoNormal(conjugate), Y)


@pytest.mark.slow
@pytest.mark.parametrize(
    "make",
    [
        lambda: pyrodiv.ForwardKL(num_particles=256, vectorize_particles=True),
        lambda: pyrodiv.FDivergence(
            "squared_hellinger", num_particles=256, vectorize_particles=True
        ),
        lambda: pyrodiv.JensenShannon(num_particles=256, vectorize_particles=True),
    ],
    ids=["forward_kl", "hellinger", "jensen_shannon"],
)
def test_posterior_losses_recover_a_conjugate_posterior(make):
    # The exact posterior is in the guide family, so every divergence is minimized there.
    n = Y.shape[0]
    post_loc, post_sd = float(Y.sum()) / (n + 1), 1 / math.sqrt(n + 1)
    pyro.set_rng_seed(0)
    guide = AutoNormal(conjugate)
    svi = pyro.infer.SVI(conjugate, guide, pyro.optim.Adam({"lr": 0.02}), loss=make())
    locs, scales = [], []
    for step in range(1500):
        svi.step(Y)
        if step >= 1200:
            locs.append(float(guide.locs.z.detach()))
            scales.append(float(guide.scales.z.detach()))
    # Self-normalized estimators with 256 particles: the O(1/K) bias and Adam's jitter are
    # both below 0.05 posterior sd here.
    assert sum(locs) / len(locs) == pytest.approx(post_loc, abs=0.1 * post_sd)
    assert sum(scales) / len(scales) == pytest.approx(post_sd, rel=0.1)


@pytest.mark.parametrize("offset", [1e4, -1e4])
def test_huge_log_normalizers_change_no_self_normalized_estimate(offset):
    guide = AutoNormal(conjugate)
    guide(Y)
    kw = {"num_particles": 64, "vectorize_particles": True, "max_plate_nesting": 1}
    for loss in [
        pyrodiv.ForwardKL(**kw),
        pyrodiv.JensenShannon(**kw),
        pyrodiv.FDivergence("pearson", **kw),
        pyrodiv.FDivergence("total_variation", **kw),
    ]:
        pyro.set_rng_seed(5)
        base = loss.differentiable_loss(conjugate, guide, Y)
        params = [p.unconstrained() for p in pyro.get_param_store().values()]
        base_grads = torch.autograd.grad(base, params)
        pyro.set_rng_seed(5)
        shifted = loss.differentiable_loss(conjugate, guide, Y, offset)
        shifted_grads = torch.autograd.grad(shifted, params)
        assert float(shifted) == pytest.approx(float(base), rel=1e-8, abs=1e-10)
        for a, b in zip(base_grads, shifted_grads, strict=True):
            assert torch.isfinite(b).all()
            assert torch.allclose(a, b, rtol=1e-6, atol=1e-10)


def test_forward_kl_with_one_particle_on_a_posterior_says_it_learns_nothing():
    guide = AutoNormal(conjugate)
    loss = pyrodiv.ForwardKL(num_particles=1)
    with pytest.warns(UserWarning, match="one self-normalized weight is 1"):
        loss.loss(conjugate, guide, Y)
