"""The fit loop: trains to a closed-form optimum, records history, stops on a plateau."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import constraints

import pyrodiv
from pyrodiv.inference.fit import fit


def target():
    pyro.sample("x", dist.Normal(torch.tensor(2.0), torch.tensor(0.5)))


def guide():
    loc = pyro.param("loc", torch.tensor(0.0))
    scale = pyro.param("scale", torch.tensor(1.0), constraint=constraints.positive)
    pyro.sample("x", dist.Normal(loc, scale))


def test_fit_reaches_the_target_and_records_history():
    pyro.set_rng_seed(0)
    loss = pyrodiv.ForwardKL(num_particles=256, vectorize_particles=True)
    result = fit(
        target,
        guide,
        loss=loss,
        num_steps=800,
        optim=pyro.optim.Adam({"lr": 0.05}),
        progress=False,
    )
    assert result.num_steps == 800 and not result.stopped_early and result.seconds > 0
    # Forward KL between Normals is exactly zero at Q = P; Adam's jitter is ~0.02 here.
    assert float(pyro.param("loc")) == pytest.approx(2.0, abs=0.05)
    assert float(pyro.param("scale")) == pytest.approx(0.5, abs=0.05)
    assert sum(result.losses[-100:]) / 100 == pytest.approx(0.0, abs=0.01)
    assert result.losses[0] > 1.0  # KL(N(2, .25) || N(0, 1)) = 2.14 at the start


def test_fit_stops_on_a_plateau():
    pyro.set_rng_seed(0)
    loss = pyrodiv.ForwardKL(num_particles=256, vectorize_particles=True)
    result = fit(
        target,
        guide,
        loss=loss,
        num_steps=5000,
        optim=pyro.optim.Adam({"lr": 0.05}),
        progress=False,
        patience=3,
        window=100,
        tolerance=0.05,
    )
    assert result.stopped_early and result.num_steps < 5000


def test_fit_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_steps"):
        fit(target, guide, loss=pyrodiv.ReverseKL(), num_steps=0)
    with pytest.raises(ValueError, match="patience"):
        fit(target, guide, loss=pyrodiv.ReverseKL(), patience=0)
