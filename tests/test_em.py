"""EM for a 1-D Gaussian mixture and gradient maximum likelihood (CrossEntropy on a
SampleTarget) reach the same maximum-likelihood estimate.

Both maximize the same log-likelihood of the same draws, so their answers differ only by
optimization error. The tolerances below are fractions of the MLE's standard error (mean:
sqrt(v_k / n_k); variance: v_k sqrt(2 / n_k); weight: sqrt(w_k (1 - w_k) / n)), the scale of the
statistical error that any such difference must be small against.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyrodiv
from pyrodiv.demo.mixtures import MIXTURES
from pyrodiv.inference.em import (
    draw_mixture,
    em_gaussian_mixture,
    gradient_mle_gaussian_mixture,
    initial_parameters,
    mixture_guide,
    mixture_log_likelihood,
    plot_em_vs_gradient,
)


def standard_errors(fit, n):
    """The MLE's standard errors (per component) of weights, means and variances."""
    nk = fit.weights * n
    return {
        "weights": (fit.weights * (1 - fit.weights) / n).sqrt(),
        "means": (fit.variances / nk).sqrt(),
        "variances": fit.variances * (2.0 / nk).sqrt(),
    }


def test_log_likelihood_matches_pyro_mixture():
    spec = MIXTURES["three_uneven"]
    x = draw_mixture(spec, 300, seed=3)
    w, m, v = (torch.tensor(spec[key]) for key in ("weights", "means", "variances"))
    reference = dist.MixtureSameFamily(dist.Categorical(probs=w), dist.Normal(m, v.sqrt()))
    assert torch.allclose(mixture_log_likelihood(x, w, m, v), reference.log_prob(x).sum())


@pytest.mark.parametrize("name, init", [("two_even", "spread"), ("three_uneven", "random")])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_em_log_likelihood_never_decreases(name, init, seed):
    x = draw_mixture(MIXTURES[name], 500, seed=seed)
    fit = em_gaussian_mixture(x, len(MIXTURES[name]["weights"]), init=init, seed=seed, tol=1e-12)
    assert fit.converged and fit.num_iterations >= 3
    # non-decreasing up to the rounding of a sum of n float64 terms
    steps = torch.diff(fit.trace)
    assert (steps >= -1e-12 * fit.trace.abs()[1:]).all(), steps.min()
    assert fit.trace[-1] > fit.trace[0] + 1.0  # it climbed from the start
    assert fit.log_likelihood == pytest.approx(float(fit.trace[-1]))


@pytest.mark.parametrize("name", ["two_even", "three_uneven"])
def test_em_and_gradient_mle_reach_the_same_optimum(name):
    spec, n = MIXTURES[name], 1000
    x, k = draw_mixture(spec, n, seed=0), len(spec["weights"])
    em = em_gaussian_mixture(x, k, init="spread", tol=1e-13)
    grad = gradient_mle_gaussian_mixture(x, k, steps=1000, init="spread")
    assert em.converged and grad.converged
    se = standard_errors(em, n)
    for key in ("weights", "means", "variances"):
        gap = (getattr(em, key) - getattr(grad, key)).abs() / se[key]
        # optimization error only: measured under 2e-5 standard errors (seed 0)
        assert (gap < 0.02).all(), (key, gap)
        # and it is the right optimum: the MLE lies within 4 standard errors of the truth
        truth = torch.tensor(spec[key])
        assert ((getattr(em, key) - truth).abs() < 4 * se[key]).all(), (key, getattr(em, key))
    # the same log-likelihood (measured within 1e-13 per point; 1e-3 would be enough)
    assert abs(em.mean_log_likelihood - grad.mean_log_likelihood) < 1e-6
    # and the MLE beats the true parameters on its own data
    truth = (torch.tensor(spec[key]) for key in ("weights", "means", "variances"))
    assert em.log_likelihood >= float(mixture_log_likelihood(x, *truth))


@pytest.mark.filterwarnings("ignore:gradient MLE")
def test_minibatch_cross_entropy_reaches_the_optimum():
    # batch_size draws 256 points a step (num_particles=256): a stochastic gradient of the same
    # objective, so the final iterate carries SGD noise. Over seeds 0-3 its largest gap to EM
    # was 0.17 to 0.26 standard errors, and 2e-5 to 4e-5 in log-likelihood per point; the
    # bounds are 0.5 standard errors and 1e-3 per point.
    spec, n = MIXTURES["three_uneven"], 1000
    x = draw_mixture(spec, n, seed=0)
    em = em_gaussian_mixture(x, 3)
    grad = gradient_mle_gaussian_mixture(x, 3, steps=800, batch_size=256)
    se = standard_errors(em, n)
    for key in ("weights", "means", "variances"):
        gap = (getattr(em, key) - getattr(grad, key)).abs() / se[key]
        assert (gap < 0.5).all(), (key, gap)
    assert 0 <= em.mean_log_likelihood - grad.mean_log_likelihood < 1e-3


def test_em_fixed_point_satisfies_the_score_equations():
    x = draw_mixture(MIXTURES["three_uneven"], 800, seed=5)
    em = em_gaussian_mixture(x, 3, tol=0.0, max_iter=3000)

    def score(weights, means, variances):
        params = [t.clone().requires_grad_(True) for t in (weights.log(), means, variances.log())]
        ll = mixture_log_likelihood(x, params[0].softmax(-1), params[1], params[2].exp())
        return torch.cat(torch.autograd.grad(ll / x.numel(), params))

    at_em = score(em.weights, em.means, em.variances)
    assert at_em.abs().max() < 1e-8, at_em
    # not a test that cannot fail: at the start the score is far from 0
    start = initial_parameters(x, 3, "spread")
    assert score(start["weights"], start["means"], start["variances"]).abs().max() > 1e-2


def test_cross_entropy_on_the_sample_target_is_the_negative_log_likelihood():
    x = draw_mixture(MIXTURES["two_even"], 200, seed=1)
    start = initial_parameters(x, 2, "spread")
    target = pyrodiv.SampleTarget({"x": x.unsqueeze(0)})
    guide = mixture_guide(2, start, num_points=x.numel())
    loss = pyrodiv.CrossEntropy(max_plate_nesting=0).loss(target, guide)
    assert loss == pytest.approx(-float(mixture_log_likelihood(x, *start.values())), rel=1e-12)


def test_collapsed_component_is_held_at_the_floor_with_a_warning():
    # five copies of one point, and a component started on them: its variance goes to 0
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(100, generator=g), torch.full((5,), 10.0)])
    init = {"weights": [0.5, 0.5], "means": [0.0, 10.0], "variances": [1.0, 0.5]}
    with pytest.warns(UserWarning, match="EM: mixture component 1 collapsed"):
        fit = em_gaussian_mixture(x, 2, init=init, min_variance=1e-4)
    assert fit.collapsed == [1]
    assert float(fit.variances[1]) == 1e-4
    assert fit.means[1] == pytest.approx(10.0)
    assert (torch.diff(fit.trace) >= -1e-12 * fit.trace.abs()[1:]).all()
    assert math.isfinite(fit.log_likelihood)


def test_params_of_the_caller_are_left_alone():
    pyro.param("mixture_locs", torch.tensor([123.0]))
    x = draw_mixture(MIXTURES["two_even"], 100, seed=0)
    with pytest.warns(UserWarning, match="gradient MLE"):
        gradient_mle_gaussian_mixture(x, 2, steps=5)
    assert pyro.param("mixture_locs").item() == 123.0


@pytest.mark.parametrize("fit", [em_gaussian_mixture, gradient_mle_gaussian_mixture])
def test_bad_input_is_named(fit):
    x = torch.randn(20)
    with pytest.raises(ValueError, match="num_components"):
        fit(x, 0)
    with pytest.raises(ValueError, match="num_components"):
        fit(x, 1.5)
    with pytest.raises(ValueError, match="x contains NaN"):
        fit(torch.tensor([0.0, float("nan"), 1.0]), 1)
    with pytest.raises(ValueError, match="x must be 1-D"):
        fit(torch.randn(10, 2), 1)
    with pytest.raises(ValueError, match="init"):
        fit(x, 2, init="kmeans")
    with pytest.raises(ValueError, match=r"init\['variances'\]"):
        fit(x, 2, init={"weights": [0.5, 0.5], "means": [0.0, 1.0], "variances": [1.0, -1.0]})


def test_figure_is_written(tmp_path):
    with pytest.warns(UserWarning, match="gradient MLE"):
        res = plot_em_vs_gradient(tmp_path, num_points=300, steps=100)
    assert (tmp_path / res["figure"]).stat().st_size > 10_000
    for name in MIXTURES:
        em = res[name]["em"]
        assert em.converged and em.log_likelihood >= res[name]["true_log_likelihood"]
        assert res[name]["gradient"].trace.numel() == 101
