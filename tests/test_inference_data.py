"""Fitted guides and posterior draws as InferenceData, checked against conjugate closed forms."""

import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from normal_normal import M0, S0, SIGMA, normal_data, normal_model, normal_posterior
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import (
    AutoDiagonalNormal,
    AutoMultivariateNormal,
    AutoNormal,
    AutoNormalMessenger,
)

from pyrodiv import arviz_adapter
from pyrodiv.inference import inference_data
from pyrodiv.inference.inference_data import (
    guide_log_weights,
    guide_to_inference_data,
    samples_to_inference_data,
)


@pytest.fixture(autouse=True)
def float64():
    # float64 so that identities (constant log weights) hold to ~1e-12; one torch thread, since
    # the suite runs two workers on two cores and oversubscribed thread pools are 1000x slower
    # on tiny tensors.
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    pyro.clear_param_store()
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)
    pyro.clear_param_store()


# --- Normal-Normal: mu ~ N(M0, S0), y_i ~ N(mu, SIGMA) --------------------------------------


def normal_log_evidence(y):
    n = len(y)
    cov = SIGMA**2 * torch.eye(n) + S0**2 * torch.ones(n, n)
    return dist.MultivariateNormal(torch.full((n,), M0), cov).log_prob(y)


def normal_exact_guide(y):
    mean, sd = normal_posterior(y)
    pyro.sample("mu", dist.Normal(mean, sd))


# --- Bayesian linear regression with a to_event(1) weight vector ------------------------------

TAU, NOISE = 1.5, 0.5


def regression_model(X, y):
    beta = pyro.sample("beta", dist.Normal(torch.zeros(X.shape[-1]), TAU).to_event(1))
    mean = pyro.deterministic("mean", (X * beta).sum(-1))
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", dist.Normal(mean, NOISE), obs=y)


def regression_model_matmul(X, y):
    # `X @ beta` does not broadcast over a batch dimension on the left of beta.
    beta = pyro.sample("beta", dist.Normal(torch.zeros(X.shape[-1]), TAU).to_event(1))
    mean = pyro.deterministic("mean", X @ beta)
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", dist.Normal(mean, NOISE), obs=y)


def regression_model_total_sum(X, y):
    # `.sum()` without a dim silently mixes draws when vectorized.
    beta = pyro.sample("beta", dist.Normal(torch.zeros(X.shape[-1]), TAU).to_event(1))
    pyro.factor("penalty", -(beta**2).sum())
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", dist.Normal((X * beta).sum(-1), NOISE), obs=y)


def regression_data(n=15, d=3):
    g = torch.Generator().manual_seed(2)
    X = torch.randn(n, d, generator=g)
    y = X @ torch.tensor([1.0, -0.5, 0.25])[:d] + NOISE * torch.randn(n, generator=g)
    return X, y


def regression_posterior(X, y):
    cov = torch.linalg.inv(X.T @ X / NOISE**2 + torch.eye(X.shape[1]) / TAU**2)
    return cov @ X.T @ y / NOISE**2, cov


def regression_log_evidence(X, y):
    cov = NOISE**2 * torch.eye(len(y)) + TAU**2 * X @ X.T
    return dist.MultivariateNormal(torch.zeros(len(y)), cov).log_prob(y)


def regression_exact_guide(X, y):
    mean, cov = regression_posterior(X, y)
    pyro.sample("beta", dist.MultivariateNormal(mean, covariance_matrix=cov))


# --- Gamma-Poisson: a positive latent, so that guides work through a log transform -------------

A, B = 2.0, 1.0
POISSON_Y = torch.tensor([1.0, 3.0, 0.0, 2.0, 4.0, 1.0])


def poisson_model(y):
    rate = pyro.sample("rate", dist.Gamma(A, B))
    with pyro.plate("data", y.shape[-1]):
        pyro.sample("y", dist.Poisson(rate), obs=y)


def poisson_log_evidence(y):
    a, b, s, n = torch.tensor(A), torch.tensor(B), y.sum(), len(y)
    return (
        a * b.log()
        - torch.lgamma(a)
        + torch.lgamma(a + s)
        - (a + s) * torch.log(b + n)
        - torch.lgamma(y + 1).sum()
    )


def fit(model, guide, *args, steps=300, lr=0.05):
    svi = SVI(model, guide, pyro.optim.Adam({"lr": lr}), Trace_ELBO())
    for _ in range(steps):
        svi.step(*args)
    return guide


def assert_evidence_estimate(log_weights, log_evidence):
    """Importance-sampling estimate of log p(x) within 4 standard errors of the closed form.

    By the delta method, log(mean w) has standard error sqrt(var(w) / S) / mean(w); the weights
    are rescaled by their maximum first. Also mean(log w), the ELBO, may not exceed log p(x) by
    more than 4 standard errors sd(log w) / sqrt(S).
    """
    s = log_weights.numel()
    w = (log_weights - log_weights.max()).exp()
    estimate = log_weights.logsumexp(0) - math.log(s)
    se = (w.std() / math.sqrt(s) / w.mean()).item()
    assert abs(estimate - log_evidence) < 4 * se + 1e-9, (estimate, log_evidence, se)
    elbo_se = log_weights.std().item() / math.sqrt(s)
    assert log_weights.mean() <= log_evidence + 4 * elbo_se + 1e-9


# --- closed forms ----------------------------------------------------------------------------


def test_exact_guide_gives_constant_log_weight_equal_to_log_evidence():
    # log p(y, mu) - log p(mu | y) = log p(y) for every mu: exact up to float64 rounding.
    y = normal_data()
    idata = guide_to_inference_data(normal_model, normal_exact_guide, y, num_samples=500)
    log_weight = arviz_adapter.get_draws(idata, "log_weight", "sample_stats")
    assert log_weight.shape == (1, 500)
    torch.testing.assert_close(
        log_weight, normal_log_evidence(y).expand(1, 500), rtol=0, atol=1e-10
    )
    lp = arviz_adapter.get_draws(idata, "lp", "sample_stats")
    log_q = arviz_adapter.get_draws(idata, "log_q", "sample_stats")
    torch.testing.assert_close(lp - log_q, log_weight)


def test_exact_guide_to_event_latent_gives_log_evidence():
    X, y = regression_data()
    lw = guide_log_weights(regression_model, regression_exact_guide, X, y, num_samples=300)
    assert lw.shape == (300,)
    torch.testing.assert_close(lw, regression_log_evidence(X, y).expand(300), rtol=0, atol=1e-9)


def test_groups_shapes_and_values_match_closed_forms():
    y = normal_data()
    num_samples = 400
    idata = guide_to_inference_data(
        normal_model, normal_exact_guide, y, num_samples=num_samples, seed=3
    )
    assert set(arviz_adapter.group_names(idata)) == {
        "posterior",
        "sample_stats",
        "log_likelihood",
        "observed_data",
    }
    mu = arviz_adapter.get_draws(idata, "mu")
    # A scalar site has shape (chain, draw), not (chain, draw, 1).
    assert mu.shape == (1, num_samples)
    torch.testing.assert_close(arviz_adapter.get_draws(idata, "mu_doubled"), 2 * mu)
    log_lik = arviz_adapter.get_draws(idata, "y", "log_likelihood")
    assert log_lik.shape == (1, num_samples, len(y))
    expected = dist.Normal(mu.unsqueeze(-1), SIGMA).log_prob(y)
    torch.testing.assert_close(log_lik, expected)
    lp = arviz_adapter.get_draws(idata, "lp", "sample_stats")
    torch.testing.assert_close(lp, dist.Normal(M0, S0).log_prob(mu) + expected.sum(-1))
    torch.testing.assert_close(arviz_adapter.get_draws(idata, "y", "observed_data"), y)
    # Draws come from the guide: mean within 4 standard errors of the posterior mean.
    mean, sd = normal_posterior(y)
    assert abs(mu.mean() - mean) < 4 * sd / math.sqrt(num_samples)
    assert idata.attrs["guide"] == "normal_exact_guide"


@pytest.mark.parametrize(
    "guide_class", [AutoNormal, AutoDiagonalNormal, AutoMultivariateNormal, AutoNormalMessenger]
)
def test_fitted_autoguides_estimate_the_evidence(guide_class):
    # rate > 0: the guides work on log(rate), so log q must include the log-Jacobian for the
    # importance estimate of p(y) to be consistent (assert_evidence_estimate).
    guide = fit(poisson_model, guide_class(poisson_model), POISSON_Y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # must vectorize
        idata = guide_to_inference_data(poisson_model, guide, POISSON_Y, num_samples=2000)
    assert arviz_adapter.get_draws(idata, "rate").shape == (1, 2000)
    assert arviz_adapter.var_names(idata) == ["rate"]
    log_weight = arviz_adapter.get_draws(idata, "log_weight", "sample_stats").reshape(-1)
    assert_evidence_estimate(log_weight, poisson_log_evidence(POISSON_Y).item())


@pytest.mark.parametrize("guide_class", [AutoNormal, AutoMultivariateNormal])
def test_fitted_autoguides_on_to_event_latent(guide_class):
    X, y = regression_data()
    guide = fit(regression_model, guide_class(regression_model), X, y, steps=400)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # must vectorize
        idata = guide_to_inference_data(regression_model, guide, X, y, num_samples=2000)
    assert arviz_adapter.get_draws(idata, "beta").shape == (1, 2000, 3)
    assert arviz_adapter.get_draws(idata, "mean").shape == (1, 2000, len(y))
    assert arviz_adapter.get_draws(idata, "y", "log_likelihood").shape == (1, 2000, len(y))
    log_weight = arviz_adapter.get_draws(idata, "log_weight", "sample_stats").reshape(-1)
    assert_evidence_estimate(log_weight, regression_log_evidence(X, y).item())


def test_model_that_does_not_broadcast_falls_back_to_one_draw_at_a_time():
    X, y = regression_data()
    with pytest.warns(RuntimeWarning, match="does not vectorize"):
        idata = guide_to_inference_data(
            regression_model_matmul, regression_exact_guide, X, y, num_samples=30
        )
    log_weight = arviz_adapter.get_draws(idata, "log_weight", "sample_stats")
    torch.testing.assert_close(
        log_weight, regression_log_evidence(X, y).expand(1, 30), rtol=0, atol=1e-9
    )
    beta = arviz_adapter.get_draws(idata, "beta")
    assert beta.shape == (1, 30, 3)
    torch.testing.assert_close(arviz_adapter.get_draws(idata, "mean"), beta @ X.T)


def test_silent_broadcast_error_is_detected():
    # Vectorized, (beta**2).sum() adds up all draws; the one-draw check catches it.
    X, y = regression_data()
    beta = torch.randn(2, 10, 3, generator=torch.Generator().manual_seed(4))
    with pytest.warns(RuntimeWarning, match="differs"):
        idata = samples_to_inference_data(regression_model_total_sum, {"beta": beta}, X, y)
    prior = dist.Normal(0.0, TAU).log_prob(beta).sum(-1) - (beta**2).sum(-1)
    log_lik = dist.Normal((beta.unsqueeze(-2) * X).sum(-1), NOISE).log_prob(y).sum(-1)
    torch.testing.assert_close(
        arviz_adapter.get_draws(idata, "lp", "sample_stats"), prior + log_lik
    )


def subsampled_normal_model(y):
    mu = pyro.sample("mu", dist.Normal(M0, S0))
    with pyro.plate("data", y.shape[-1], subsample_size=4) as idx:
        pyro.sample("y", dist.Normal(mu, SIGMA), obs=y[idx])


def subsampled_normal_guide(y):
    normal_exact_guide(y)
    with pyro.plate("data", y.shape[-1], subsample_size=4):
        pass


@pytest.mark.parametrize("vectorize", [True, False])
def test_subsampling_uses_one_subsample_for_all_draws(vectorize):
    # log_likelihood must refer to the points in observed_data, for every draw; lp scales the
    # subsample's log likelihood by n / m as Pyro's ELBO does.
    y = normal_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        idata = guide_to_inference_data(
            subsampled_normal_model,
            subsampled_normal_guide,
            y,
            num_samples=50,
            seed=9,
            vectorize=vectorize,
        )
    observed = arviz_adapter.get_draws(idata, "y", "observed_data")
    assert observed.shape == (4,)
    assert all(bool((y == value).any()) for value in observed)
    mu = arviz_adapter.get_draws(idata, "mu")
    log_lik = arviz_adapter.get_draws(idata, "y", "log_likelihood")
    torch.testing.assert_close(log_lik, dist.Normal(mu.unsqueeze(-1), SIGMA).log_prob(observed))
    lp = arviz_adapter.get_draws(idata, "lp", "sample_stats")
    torch.testing.assert_close(lp, dist.Normal(M0, S0).log_prob(mu) + len(y) / 4 * log_lik.sum(-1))


def test_samples_to_inference_data_vectorized_equals_sequential():
    X, y = regression_data()
    beta = torch.randn(3, 20, 3, generator=torch.Generator().manual_seed(5))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fast = samples_to_inference_data(regression_model, {"beta": beta}, X, y)
    slow = samples_to_inference_data(regression_model, {"beta": beta}, X, y, vectorize=False)
    for group, name in [
        ("posterior", "beta"),
        ("posterior", "mean"),
        ("log_likelihood", "y"),
        ("sample_stats", "lp"),
    ]:
        a = arviz_adapter.get_draws(fast, name, group)
        torch.testing.assert_close(a, arviz_adapter.get_draws(slow, name, group))
    assert arviz_adapter.get_draws(fast, "y", "log_likelihood").shape == (3, 20, len(y))
    torch.testing.assert_close(arviz_adapter.get_draws(fast, "beta"), beta)


def test_draws_in_chunks_equal_draws_at_once(monkeypatch):
    # 60 draws of 3 + 20 pointwise log-likelihoods (+ 20 means) in chunks of 7 draws: the same
    # groups as one run of all 60, and the exact log evidence for the exact guide.
    X, y = regression_data()
    beta = torch.randn(3, 20, 3, generator=torch.Generator().manual_seed(5))
    whole = samples_to_inference_data(regression_model, {"beta": beta}, X, y)
    monkeypatch.setattr(inference_data, "CHUNK_ELEMENTS", 7 * (3 + 2 * len(y)))
    chunked = samples_to_inference_data(regression_model, {"beta": beta}, X, y)
    for group, name in [("posterior", "beta"), ("log_likelihood", "y"), ("sample_stats", "lp")]:
        a = arviz_adapter.get_draws(chunked, name, group)
        torch.testing.assert_close(a, arviz_adapter.get_draws(whole, name, group))
    y = normal_data()
    lw = guide_log_weights(normal_model, normal_exact_guide, y, num_samples=50)
    torch.testing.assert_close(lw, normal_log_evidence(y).expand(50), rtol=0, atol=1e-10)


def test_guide_vectorized_equals_sequential_in_distribution():
    # The one-draw path draws other values; both must give the exact log evidence.
    y = normal_data()
    lw = guide_log_weights(normal_model, normal_exact_guide, y, num_samples=20, vectorize=False)
    torch.testing.assert_close(lw, normal_log_evidence(y).expand(20), rtol=0, atol=1e-10)


def test_seed_reproducible_and_global_rng_untouched():
    y = normal_data()
    guide = fit(normal_model, AutoNormal(normal_model), y, steps=50)
    state = torch.get_rng_state()
    a = guide_to_inference_data(normal_model, guide, y, num_samples=50, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    b = guide_to_inference_data(normal_model, guide, y, num_samples=50, seed=7)
    c = guide_to_inference_data(normal_model, guide, y, num_samples=50, seed=8)
    assert torch.equal(arviz_adapter.get_draws(a, "mu"), arviz_adapter.get_draws(b, "mu"))
    assert not torch.equal(arviz_adapter.get_draws(a, "mu"), arviz_adapter.get_draws(c, "mu"))


# --- bad input -------------------------------------------------------------------------------


def no_latent_model(y):
    with pyro.plate("data", y.shape[-1]):
        pyro.sample("y", dist.Normal(0.0, 1.0), obs=y)


def empty_guide(y):
    pass


def two_latent_model(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    log_scale = pyro.sample("log_scale", dist.Normal(0.0, 1.0))
    with pyro.plate("data", y.shape[-1]):
        pyro.sample("y", dist.Normal(mu, log_scale.exp()), obs=y)


@pytest.mark.parametrize("num_samples", [0, -3, 2.5, True, None])
def test_bad_num_samples(num_samples):
    y = normal_data()
    with pytest.raises(ValueError, match="num_samples"):
        guide_to_inference_data(normal_model, normal_exact_guide, y, num_samples=num_samples)


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        guide_log_weights(normal_model, normal_exact_guide, normal_data(), seed=seed)


def test_model_without_latent_sites():
    with pytest.raises(ValueError, match="model has no latent"):
        guide_to_inference_data(no_latent_model, empty_guide, normal_data(), num_samples=10)


def test_bad_samples():
    y = normal_data()
    with pytest.raises(ValueError, match="samples"):
        samples_to_inference_data(normal_model, {}, y)
    with pytest.raises(ValueError, match="not latent sample sites"):
        samples_to_inference_data(
            normal_model, {"mu": torch.zeros(1, 5), "nu": torch.zeros(1, 5)}, y
        )
    # Deterministic and observed sites are computed by the model, not given.
    with pytest.raises(ValueError, match="not latent sample sites"):
        samples_to_inference_data(normal_model, {"mu_doubled": torch.zeros(1, 5)}, y)
    with pytest.raises(ValueError, match="not latent sample sites"):
        samples_to_inference_data(
            normal_model, {"mu": torch.zeros(1, 5), "y": y.expand(1, 5, -1)}, y
        )
    with pytest.raises(ValueError, match="no draws of the latent site"):
        samples_to_inference_data(two_latent_model, {"mu": torch.zeros(1, 5)}, y)
    with pytest.raises(ValueError, match=r"\(chain, draw\)"):
        samples_to_inference_data(normal_model, {"mu": torch.zeros(5)}, y)


# --- the ArviZ adapter -----------------------------------------------------------------------


def test_to_inference_data_checks_shapes():
    with pytest.raises(ValueError, match="posterior"):
        arviz_adapter.to_inference_data({})
    with pytest.raises(ValueError, match=r"\(chain, draw\)"):
        arviz_adapter.to_inference_data({"mu": torch.zeros(10)})
    with pytest.raises(ValueError, match="sample_stats"):
        arviz_adapter.to_inference_data(
            {"mu": torch.zeros(1, 10)}, sample_stats={"lp": torch.zeros(1, 9)}
        )
    # More chains than draws is allowed (ArviZ would warn).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        idata = arviz_adapter.to_inference_data({"mu": torch.zeros(4, 2)})
    assert arviz_adapter.get_draws(idata, "mu").shape == (4, 2)


def test_netcdf_round_trip(tmp_path):
    y = normal_data()
    idata = guide_to_inference_data(normal_model, normal_exact_guide, y, num_samples=20)
    idata.attrs["wall_time_s"] = 1.25
    path = arviz_adapter.to_netcdf(idata, tmp_path / "guide.nc")
    back = arviz_adapter.from_netcdf(path)
    assert arviz_adapter.group_names(back) == arviz_adapter.group_names(idata)
    assert float(back.attrs["wall_time_s"]) == 1.25
    torch.testing.assert_close(
        arviz_adapter.get_draws(back, "y", "log_likelihood"),
        arviz_adapter.get_draws(idata, "y", "log_likelihood"),
    )


def test_summary_and_plots():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = normal_data()
    exact = guide_to_inference_data(normal_model, normal_exact_guide, y, num_samples=200)
    other = samples_to_inference_data(normal_model, {"mu": torch.randn(2, 100)}, y)
    table = arviz_adapter.summary(exact, var_names=["mu"], kind="stats")
    mean, _ = normal_posterior(y)
    assert abs(table.loc["mu", "mean"] - mean.item()) < 0.05
    both = {"exact": exact, "other": other}
    assert arviz_adapter.plot_forest(both) is not None
    assert arviz_adapter.plot_pair(exact, var_names=["mu", "mu_doubled"]) is not None
    plt.close("all")
