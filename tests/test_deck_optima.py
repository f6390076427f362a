"""The talk's experiments reach their true optima (found by quadrature), not only "they ran".

The talk writes N(mean, variance). Each fit averages the iterates of its last steps (Polyak
averaging), which removes most of Adam's stationary jitter; the tolerances below are a few
times the jitter that remains (a few hundredths in the loc) and far smaller than the distance
between the competing optima (14 in loc, or a factor of 35 in variance).
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import constraints

import pyrodiv
from pyrodiv.divergences.quadrature import normal_log_prob, optimal_normal

pytestmark = pytest.mark.slow


def bimodal():
    components = dist.Normal(torch.tensor([-7.0, 7.0]), torch.tensor([1.4, 1.4]).sqrt())
    pyro.sample("x", dist.MixtureSameFamily(dist.Categorical(torch.ones(2)), components))


def bimodal_log_prob(x):
    return torch.logaddexp(
        normal_log_prob(-7.0, 1.4**0.5)(x), normal_log_prob(7.0, 1.4**0.5)(x)
    ) - math.log(2)


def positive_scale_guide():
    loc = pyro.param("loc", torch.tensor(0.0))
    scale = pyro.param("scale", torch.tensor(1.0), constraint=constraints.positive)
    pyro.sample("x", dist.Normal(loc, scale))


def plain_factor_guide():
    """The talk's parameterization: a plain learnable factor L with variance L^2."""
    loc = pyro.param("loc", torch.tensor(0.0))
    factor = pyro.param("L", torch.tensor(1.0))
    pyro.sample("x", dist.Normal(loc, factor.abs()))


def fit(model, guide, loss, start, lr, steps, average_last, seed=0):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    pyro.param("loc", torch.tensor(float(start[0])))
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": lr}), loss=loss)
    locs, variances = [], []
    for step in range(steps):
        svi.step()
        if step >= steps - average_last:
            locs.append(float(pyro.param("loc").detach()))
            name = "L" if "L" in pyro.get_param_store() else "scale"
            variances.append(float(pyro.param(name).detach()) ** 2)
    return sum(locs) / len(locs), sum(variances) / len(variances)


def test_forward_kl_learns_a_normal():
    def target():
        pyro.sample("x", dist.Normal(torch.tensor(-7.3), torch.tensor(3.2).sqrt()))

    exact = optimal_normal("kl_forward", normal_log_prob(-7.3, 3.2**0.5))
    loss = pyrodiv.ForwardKL(num_particles=256, vectorize_particles=True)
    loc, variance = fit(target, positive_scale_guide, loss, (0.0, 1.0), 0.05, 1500, 300)
    assert loc == pytest.approx(exact["loc"], abs=0.1)
    assert variance == pytest.approx(exact["variance"], abs=0.3)


def test_forward_kl_on_the_bimodal_target_moment_matches():
    exact = optimal_normal("kl_forward", bimodal_log_prob)
    assert exact["variance"] == pytest.approx(50.4, rel=1e-4)  # 7^2 + 1.4
    loss = pyrodiv.ForwardKL(num_particles=256, vectorize_particles=True)
    loc, variance = fit(bimodal, positive_scale_guide, loss, (0.0, 1.0), 0.05, 3000, 500)
    assert loc == pytest.approx(0.0, abs=0.5)
    assert variance == pytest.approx(50.4, rel=0.06)


@pytest.mark.parametrize("start", [1.0, -1.0])
def test_reverse_kl_collapses_onto_the_nearer_mode(start):
    exact = optimal_normal("kl_reverse", bimodal_log_prob, start=(start, 1.0))
    assert exact["loc"] == pytest.approx(7.0 * start, abs=1e-3)
    loss = pyrodiv.ReverseKL(num_particles=64, vectorize_particles=True)
    loc, variance = fit(bimodal, positive_scale_guide, loss, (start, 1.0), 0.05, 1500, 300)
    assert loc == pytest.approx(exact["loc"], abs=0.1)
    assert variance == pytest.approx(exact["variance"], abs=0.2)


@pytest.mark.parametrize("start,optimum", [((0.0, 5.0), "cover"), ((4.0, 1.0), "mode")])
def test_jensen_shannon_reaches_either_local_optimum(start, optimum):
    exact = optimal_normal("jensen_shannon", bimodal_log_prob, start=start)
    if optimum == "cover":
        assert exact["scale"] == pytest.approx(7.06, abs=0.01)
        assert exact["divergence"] == pytest.approx(0.2940, abs=1e-4)
    else:
        assert exact["scale"] == pytest.approx(1.183, abs=0.001)
        assert exact["divergence"] == pytest.approx(0.2158, abs=1e-4)

    def guide():
        loc = pyro.param("loc", torch.tensor(start[0]))
        scale = pyro.param("scale", torch.tensor(start[1]), constraint=constraints.positive)
        pyro.sample("x", dist.Normal(loc, scale))

    loss = pyrodiv.JensenShannon(num_particles=128, vectorize_particles=True)
    loc, variance = fit(bimodal, guide, loss, start, 0.05, 2500, 500)
    assert loc == pytest.approx(exact["loc"], abs=0.25 if optimum == "mode" else 1.0)
    assert variance == pytest.approx(exact["variance"], rel=0.15)


def test_the_talks_own_jsd_run_walks_to_the_mode():
    # Adam lr 0.01, 4000 steps, 64 samples, sigma a plain factor, from N(1, 1): the talk
    # reports N(6.99, 1.43); the exact local optimum is N(7, 1.4).
    loss = pyrodiv.JensenShannon(num_particles=64, vectorize_particles=True)
    loc, variance = fit(bimodal, plain_factor_guide, loss, (1.0, 1.0), 0.01, 4000, 500)
    assert loc == pytest.approx(7.0, abs=0.15)
    assert variance == pytest.approx(1.4, abs=0.25)
