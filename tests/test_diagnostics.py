"""PSIS k-hat of fitted guides, checked on posteriors where the weights' tail is known exactly."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrodiv import arviz_adapter
from pyrodiv.inference.diagnostics import psis_khat
from pyrodiv.inference.inference_data import guide_log_weights


@pytest.fixture(autouse=True)
def float64():
    # float64 for exact identities; one torch thread (two test workers share two cores).
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


# Exponential prior and Poisson counts that are all zero: the posterior is Exponential(1 + n),
# and the evidence is p(y = 0) = 1 / (1 + n).
N_ZEROS = 4
POSTERIOR_RATE = 1.0 + N_ZEROS
Y_ZEROS = torch.zeros(N_ZEROS)


def poisson_model(y):
    rate = pyro.sample("rate", dist.Exponential(1.0))
    with pyro.plate("data", y.shape[-1]):
        pyro.sample("y", dist.Poisson(rate), obs=y)


def exponential_guide(scale):
    """Guide Exponential(scale * posterior rate); scale = 1 is the exact posterior."""

    def guide(y):
        pyro.sample("rate", dist.Exponential(scale * POSTERIOR_RATE))

    return guide


def khat_standard_error(k, num_samples):
    """Asymptotic sd (1 + k) / sqrt(M) of the generalized Pareto shape fitted to the M largest of
    num_samples weights; ArviZ uses M = min(S / 5, 3 sqrt(S))."""
    m = min(num_samples / 5, 3 * math.sqrt(num_samples))
    return (1 + k) / math.sqrt(m)


def test_exact_guide_has_constant_weights_and_khat_minus_inf():
    lw = guide_log_weights(poisson_model, exponential_guide(1.0), Y_ZEROS, num_samples=500)
    torch.testing.assert_close(lw, torch.full((500,), -math.log(1 + N_ZEROS)), rtol=0, atol=1e-12)
    khat = psis_khat(poisson_model, exponential_guide(1.0), Y_ZEROS, num_samples=500)
    assert khat == -math.inf
    assert khat < 0.5


@pytest.mark.parametrize("scale", [1.25, 2.0, 50.0])
def test_khat_of_too_narrow_guide_matches_exact_pareto_tail(scale):
    # Posterior Exp(b), guide Exp(lambda b) with lambda > 1: w = p/q is proportional to
    # exp((lambda - 1) b z), and for z ~ q, P(w > t) is proportional to t^(-lambda/(lambda-1)):
    # an exact Pareto tail with shape k = 1 - 1/lambda. Tolerance: 3 standard errors.
    num_samples = 10_000
    k = 1 - 1 / scale
    khat = psis_khat(poisson_model, exponential_guide(scale), Y_ZEROS, num_samples=num_samples)
    assert abs(khat - k) < 3 * khat_standard_error(k, num_samples), (khat, k)


def test_much_too_narrow_guide_is_unreliable():
    # k = 0.98; the estimate's standard error is 0.114, so 0.7 is 2.5 standard errors away.
    khat = psis_khat(poisson_model, exponential_guide(50.0), Y_ZEROS, num_samples=10_000)
    assert khat > 0.7


def test_too_wide_guide_is_good():
    # lambda < 1: the weights are bounded (largest at z = 0), a tail with k = -1 near the bound.
    # The empirical sd of the estimate over seeds is ~0.06, so 0 is far away.
    khat = psis_khat(poisson_model, exponential_guide(0.5), Y_ZEROS, num_samples=10_000)
    assert khat < 0


def test_khat_is_arviz_psislw_of_the_guide_log_weights():
    guide = exponential_guide(2.0)
    lw = guide_log_weights(poisson_model, guide, Y_ZEROS, num_samples=3000, seed=11)
    smoothed, khat = arviz_adapter.psis(lw)
    assert psis_khat(poisson_model, guide, Y_ZEROS, num_samples=3000, seed=11) == khat
    assert smoothed.shape == (3000,)
    assert abs(smoothed.logsumexp(0).item()) < 1e-12
    # Smoothing only lowers the largest weights: the order of the draws is kept.
    assert torch.equal(smoothed.argsort()[:100], lw.argsort()[:100])


def test_psis_of_pareto_weights():
    # w = U^(-k) with U uniform is Pareto with shape k; 3 standard errors.
    num_samples, k = 10_000, 0.5
    u = torch.rand(num_samples, generator=torch.Generator().manual_seed(0))
    _, khat = arviz_adapter.psis(-k * u.log())
    assert abs(khat - k) < 3 * khat_standard_error(k, num_samples)


def test_psis_bad_input():
    with pytest.raises(ValueError, match="vector"):
        arviz_adapter.psis(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="vector"):
        arviz_adapter.psis(torch.zeros(0))
    with pytest.raises(ValueError, match="nan"):
        arviz_adapter.psis(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="-inf"):
        arviz_adapter.psis(torch.full((5,), -math.inf))


def test_psis_khat_bad_num_samples():
    with pytest.raises(ValueError, match="num_samples"):
        psis_khat(poisson_model, exponential_guide(1.0), Y_ZEROS, num_samples=0)
