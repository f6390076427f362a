"""NUTS/HMC baselines as InferenceData, checked against conjugate posteriors."""

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from normal_normal import M0, S0, SIGMA, normal_data, normal_model, normal_posterior
from pyro.infer import MCMC, NUTS

from pyrodiv import arviz_adapter
from pyrodiv.inference.baselines import jit_is_safe, mcmc_to_inference_data, run_hmc, run_nuts


@pytest.fixture(autouse=True)
def float64():
    # float64 for closed-form comparisons; one torch thread (two test workers share two cores).
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


# Models live at module level so that spawned worker processes can import them.


TAU, NOISE = 1.5, 0.5


def regression_model(X, y):
    beta = pyro.sample("beta", dist.Normal(torch.zeros(X.shape[-1]), TAU).to_event(1))
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", dist.Normal((X * beta).sum(-1), NOISE), obs=y)


def regression_data(n=15):
    g = torch.Generator().manual_seed(2)
    X = torch.randn(n, 3, generator=g)
    return X, X @ torch.tensor([1.0, -0.5, 0.25]) + NOISE * torch.randn(n, generator=g)


def regression_posterior(X, y):
    cov = torch.linalg.inv(X.T @ X / NOISE**2 + torch.eye(X.shape[1]) / TAU**2)
    return cov @ X.T @ y / NOISE**2, cov.diagonal().sqrt()


def assert_within_mcse(idata, var_name, mean, sd):
    """Posterior mean and sd within 4 Monte Carlo standard errors (ArviZ's mcse_mean, mcse_sd)
    of the closed form: for a correct sampler this fails with probability ~1e-4 per number."""
    table = arviz_adapter.summary(idata, var_names=[var_name], kind="all", round_to="none")
    mean = torch.as_tensor(mean).reshape(-1)
    sd = torch.as_tensor(sd).reshape(-1)
    for i in range(len(mean)):
        row = table.iloc[i]
        assert abs(row["mean"] - mean[i].item()) < 4 * row["mcse_mean"], (row, mean[i])
        assert abs(row["sd"] - sd[i].item()) < 4 * row["mcse_sd"], (row, sd[i])


def test_run_nuts_conjugate_normal():
    y = normal_data()
    idata = run_nuts(normal_model, y, num_samples=1000, warmup_steps=500, seed=0)
    mean, sd = normal_posterior(y)
    assert_within_mcse(idata, "mu", mean, sd)

    assert set(arviz_adapter.group_names(idata)) == {
        "posterior",
        "sample_stats",
        "log_likelihood",
        "observed_data",
    }
    mu = arviz_adapter.get_draws(idata, "mu")
    assert mu.shape == (1, 1000)  # no spurious trailing dim for a scalar site
    torch.testing.assert_close(arviz_adapter.get_draws(idata, "mu_doubled"), 2 * mu)
    log_lik = arviz_adapter.get_draws(idata, "y", "log_likelihood")
    expected = dist.Normal(mu.unsqueeze(-1), SIGMA).log_prob(y)
    torch.testing.assert_close(log_lik, expected)
    lp = arviz_adapter.get_draws(idata, "lp", "sample_stats")
    torch.testing.assert_close(lp, dist.Normal(M0, S0).log_prob(mu) + expected.sum(-1))
    diverging = arviz_adapter.get_draws(idata, "diverging", "sample_stats")
    assert diverging.dtype == torch.bool and diverging.shape == (1, 1000)
    assert not diverging.any()
    torch.testing.assert_close(arviz_adapter.get_draws(idata, "y", "observed_data"), y)
    assert idata.attrs["sampler"] == "NUTS"
    assert idata.attrs["wall_time_s"] > 0
    assert idata.attrs["chain_method"] == "sequential"


def test_run_nuts_to_event_latent_keeps_log_likelihood():
    X, y = regression_data()
    idata = run_nuts(regression_model, X, y, num_samples=500, warmup_steps=250, seed=1)
    mean, sd = regression_posterior(X, y)
    assert_within_mcse(idata, "beta", mean, sd)
    assert arviz_adapter.get_draws(idata, "beta").shape == (1, 500, 3)
    beta = arviz_adapter.get_draws(idata, "beta")
    log_lik = arviz_adapter.get_draws(idata, "y", "log_likelihood")
    assert log_lik.shape == (1, 500, len(y))
    torch.testing.assert_close(
        log_lik, dist.Normal((beta.unsqueeze(-2) * X).sum(-1), NOISE).log_prob(y)
    )


def test_run_hmc_conjugate_normal():
    y = normal_data()
    idata = run_hmc(
        normal_model, y, num_samples=1000, warmup_steps=300, step_size=0.2, num_steps=8, seed=2
    )
    mean, sd = normal_posterior(y)
    assert_within_mcse(idata, "mu", mean, sd)
    assert idata.attrs["sampler"] == "HMC"


def test_chains_are_seeded_and_rng_state_restored():
    y = normal_data()
    state = torch.get_rng_state()
    a = run_nuts(
        normal_model,
        y,
        num_samples=50,
        warmup_steps=50,
        num_chains=2,
        seed=4,
        chain_method="sequential",
    )
    assert torch.equal(torch.get_rng_state(), state)
    b = run_nuts(normal_model, y=y, num_samples=50, warmup_steps=50, seed=5)  # data by keyword
    mu_a, mu_b = arviz_adapter.get_draws(a, "mu"), arviz_adapter.get_draws(b, "mu")
    assert mu_a.shape == (2, 50)
    # Chain c is seeded with seed + c, whatever the number of chains.
    torch.testing.assert_close(mu_a[1], mu_b[0], rtol=0, atol=0)
    assert not torch.equal(mu_a[0], mu_a[1])


def test_unpicklable_model_falls_back_to_sequential_chains():
    y = normal_data()

    def local_model(y):  # a closure cannot be sent to a spawned process
        return normal_model(y)

    with pytest.warns(RuntimeWarning, match="sequentially"):
        idata = run_nuts(
            local_model, y, num_samples=30, warmup_steps=30, num_chains=2, chain_method="parallel"
        )
    assert idata.attrs["chain_method"] == "sequential"
    assert arviz_adapter.get_draws(idata, "mu").shape == (2, 30)


@pytest.mark.slow
def test_parallel_chains_equal_sequential_chains():
    # Spawned workers start a fresh interpreter (several seconds each).
    y = normal_data()
    options = dict(num_samples=100, warmup_steps=100, num_chains=2, seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        parallel = run_nuts(normal_model, y, chain_method="parallel", **options)
    sequential = run_nuts(normal_model, y, chain_method="sequential", **options)
    assert parallel.attrs["chain_method"] == "parallel"
    for group, name in [("posterior", "mu"), ("log_likelihood", "y"), ("sample_stats", "lp")]:
        torch.testing.assert_close(
            arviz_adapter.get_draws(parallel, name, group),
            arviz_adapter.get_draws(sequential, name, group),
        )


def test_mcmc_to_inference_data_keeps_what_from_pyro_drops():
    X, y = regression_data()
    pyro.set_rng_seed(0)
    mcmc = MCMC(NUTS(regression_model), num_samples=40, warmup_steps=40, disable_progbar=True)
    mcmc.run(X, y)
    idata = mcmc_to_inference_data(mcmc, wall_time_s=1.0)
    assert arviz_adapter.get_draws(idata, "y", "log_likelihood").shape == (1, 40, len(y))
    assert idata.attrs["wall_time_s"] == 1.0


def no_latent_model(y):
    with pyro.plate("data", y.shape[-1]):
        pyro.sample("y", dist.Normal(0.0, 1.0), obs=y)


@pytest.mark.parametrize(
    "options, name",
    [
        ({"num_samples": 0}, "num_samples"),
        ({"num_samples": 2.5}, "num_samples"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"num_chains": 0}, "num_chains"),
        ({"seed": -1}, "seed"),
        ({"chain_method": "threads"}, "chain_method"),
    ],
)
def test_bad_options(options, name):
    with pytest.raises(ValueError, match=name):
        run_nuts(normal_model, normal_data(), **options)


def test_bad_hmc_options():
    with pytest.raises(ValueError, match="step_size"):
        run_hmc(normal_model, normal_data(), step_size=0.0)
    with pytest.raises(ValueError, match="num_steps"):
        run_hmc(normal_model, normal_data(), num_steps=0)


def test_model_without_latent_sites():
    with pytest.raises(ValueError, match="model has no latent"):
        run_nuts(no_latent_model, normal_data(), num_samples=5, warmup_steps=5)
    with pytest.raises(ValueError, match="model"):
        run_nuts("not a model", normal_data())


def branchy(y):
    """Python control flow on a latent value: a trace would freeze the branch it saw."""
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    pyro.sample("y", dist.Normal(z if z > 0 else -2.0 * z, 1.0), obs=y)


def test_nuts_compiles_the_potential_where_that_is_safe_and_draws_the_same():
    y = normal_data()
    assert jit_is_safe(normal_model, (y,), {}, {}, 0)
    assert not jit_is_safe(branchy, (torch.tensor(0.3),), {}, {}, 0)
    options = {"num_samples": 200, "warmup_steps": 100, "seed": 0}
    compiled = run_nuts(normal_model, y, **options)
    eager = run_nuts(normal_model, y, kernel_kwargs={"jit_compile": False}, **options)
    assert compiled.attrs["jit_compile"] and not eager.attrs["jit_compile"]
    # the same chain, to rounding: the compiled potential is the eager one
    mu, mu_eager = (arviz_adapter.get_draws(i, "mu") for i in (compiled, eager))
    torch.testing.assert_close(mu, mu_eager, rtol=1e-8, atol=1e-8)
    branchy_run = run_nuts(branchy, torch.tensor(0.3), **options)
    assert not branchy_run.attrs["jit_compile"]
