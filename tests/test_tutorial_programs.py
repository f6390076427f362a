"""Pyro-tutorial-style programs (``tests/tutorial_programs.py``) trained and evaluated with every
pyrodiv loss, each result checked against a closed form or Pyro's own ELBOs.

- At an exact guide every importance weight is the evidence Z, so every loss has a closed-form
  value: ReverseKL and the Renyi bound (alpha = 1/2) give -log Z, CUBO log Z, and every
  self-normalized divergence 0. This checks each program's log p (plates, subsampling scale,
  ``pyro.markov``, ``pyro.factor``, ``poutine.scale``, ``pyro.module``, sampled assignments)
  through every loss, to rounding.
- Where no guide is exact (a nonlinear VAE, the mixture with latent globals, the HMM), each
  loss's value obeys the inequalities that hold for any set of particles (Jensen's).
- ReverseKL equals ``Trace_ELBO``, ``TraceGraph_ELBO`` and ``TraceEnum_ELBO`` in value and
  gradient from the same seed; trained, it reaches the closed-form posterior.

Statistical tolerances are stated in standard errors estimated from the repetitions.
"""

import functools
import math
import warnings

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import pytest
import torch
import tutorial_programs as tp
from pyro import poutine
from pyro.infer import JitTrace_ELBO, Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO
from pyro.infer.autoguide import (
    AutoDelta,
    AutoDiagonalNormal,
    AutoGuideList,
    AutoIAFNormal,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
    AutoNormalizingFlow,
)

from pyrodiv.divergences.generators import GENERATOR_NAMES
from pyrodiv.divergences.jit import jit
from pyrodiv.divergences.losses import get_loss

#: Every loss that trains on a posterior target from Q's particles: the named ones and every
#: generator of :mod:`pyrodiv.divergences.generators` (defaults: amari_alpha 1/2, t_power 2;
#: "jensen_shannon" is the named loss; "forward_kl_msc" is ForwardKL(estimator="msc"),
#: Markovian score climbing).
ALL_POSTERIOR = ["reverse_kl", "forward_kl", "forward_kl_msc", "renyi", "cubo", *GENERATOR_NAMES]
#: Upper ends of the self-normalized estimates over K particles, t_k = K w_k / sum w (mean 1):
#: f(t) <= c (1 + t) for these, so the estimate is at most 2c.
UPPER = {"jensen_shannon": math.log(2), "total_variation": 1.0, "squared_hellinger": 2.0}


def _loss(name, **options):
    if name == "forward_kl_msc":
        return get_loss("forward_kl", estimator="msc", **options)
    return get_loss(name, **options)


def _params():
    return [p.unconstrained() for p in pyro.get_param_store().values()]


def _value_and_grads(loss, model, guide, *args):
    surrogate = loss.differentiable_loss(model, guide, *args)
    grads = torch.autograd.grad(surrogate, _params(), allow_unused=True)
    return float(surrogate.detach()), grads


def _exact_value(name, log_z):
    """Every loss at an exact guide, where each log-weight is log Z."""
    return {"reverse_kl": -log_z, "renyi": -log_z, "cubo": log_z}.get(name, 0.0)


# ---- every loss at an exact guide --------------------------------------------------------


def _approx_exact(name, log_z):
    """The closed form to rounding: 1e-10 relative, or 1e-9 absolute for a 0 (a log-weight off
    by d at one particle moves a self-normalized value by about d^2 / K)."""
    expected = _exact_value(name, log_z)
    return pytest.approx(expected, rel=1e-10, abs=1e-9 if expected == 0 else 0)


def _coin():
    tp.coin_exact()
    return tp.coin, tp.coin_guide, (tp.FLIPS,), tp.coin_posterior()[2]


def _regression():
    mean, cov, log_z = tp.regression_posterior()
    guide = AutoMultivariateNormal(tp.regression)
    guide(tp.REG_X, tp.REG_Y)
    tp.set_mvn_guide(guide, mean, cov)
    return tp.regression, guide, (tp.REG_X, tp.REG_Y), log_z


def _nested():
    tp.hierarchical_exact()
    return tp.hierarchical, tp.hierarchical_guide, (tp.NESTED_Y,), tp.hierarchical_posterior()[2]


def _ar1():
    log_z, mean, sd = tp.ar1_posterior()
    tp.set_normal_guide("phi", mean, sd)
    return tp.ar1, tp.normal_guide("phi"), (tp.AR_Y,), log_z


def _linear_vae():
    vae, log_z = tp.exact_linear_vae()
    return vae.model, vae.guide, (tp.VAE_X,), log_z


def _mixture():
    log_resp, log_z = tp.gmm_responsibilities()
    pyro.param("assignment_logits", log_resp)
    return tp.gmm, tp.assignment_guide, (tp.GMM_DATA, True), log_z


EXACT = {
    "coin": _coin,
    "regression": _regression,
    "nested": _nested,
    "ar1": _ar1,
    "linear_vae": _linear_vae,
    "sampled_mixture": _mixture,
}


@pytest.mark.parametrize("vectorize", [True, False])
@pytest.mark.parametrize("program", list(EXACT))
def test_every_loss_is_its_closed_form_at_the_exact_posterior(program, vectorize):
    model, guide, args, log_z = EXACT[program]()
    for name in ALL_POSTERIOR:
        loss = _loss(name, num_particles=6, vectorize_particles=vectorize)
        pyro.set_rng_seed(0)
        value = loss.loss(model, guide, *args)
        assert value == _approx_exact(name, log_z), name


@pytest.mark.parametrize("program", list(EXACT))
def test_a_compiled_loss_keeps_the_closed_form(program):
    # jit(loss) runs the first call as the loss does and records it; the second call replays
    # the recorded graph (new draws). Both give the closed form. The mixture's flag is a
    # keyword argument, baked into the graph.
    model, guide, args, log_z = EXACT[program]()
    kwargs = {}
    if program == "sampled_mixture":
        args, kwargs = args[:1], {"known": args[1]}
    for name in ["reverse_kl", "forward_kl", "squared_hellinger", "cubo"]:
        loss = jit(_loss(name, num_particles=6, vectorize_particles=True))
        for seed in (0, 1):
            pyro.set_rng_seed(seed)
            value = loss.loss(model, guide, *args, **kwargs)
            assert value == _approx_exact(name, log_z), name


def test_a_compiled_loss_takes_a_positional_flag_as_jit_trace_elbo_does():
    model, guide, args, log_z = EXACT["sampled_mixture"]()
    pyro.set_rng_seed(0)
    reference = JitTrace_ELBO(num_particles=6, vectorize_particles=True, max_plate_nesting=1)
    assert reference.loss(model, guide, *args) == pytest.approx(-log_z, rel=1e-10)
    pyro.set_rng_seed(0)
    loss = jit(_loss("reverse_kl", num_particles=6, vectorize_particles=True))
    assert loss.loss(model, guide, *args) == pytest.approx(-log_z, rel=1e-10)


# ---- every loss where no guide is exact: the inequalities of any particle set -------------


def _vae():
    pyro.set_rng_seed(0)
    vae = tp.VAE(hidden=8)
    return vae.model, vae.guide, (tp.VAE_X,)


INEXACT = {
    "vae": _vae,
    "mixture": lambda: (tp.gmm, tp.gmm_guide, (tp.GMM_DATA,)),
    "hmm": lambda: (tp.hmm, tp.hmm_guide, (tp.HMM_Y,)),
}


@pytest.mark.parametrize("program", list(INEXACT))
def test_every_loss_obeys_jensens_inequalities_on_the_same_particles(program):
    # On the same K = 8 particles (same seed), with log w_k = log p - log q and
    # L = log mean_k w_k: ReverseKL is -mean log w_k >= -L; the Renyi bound of order 1/2 lies
    # between -L and ReverseKL; CUBO (n = 2) is at least L; every self-normalized divergence
    # (1/K) sum f(t_k), t_k = K w_k / sum w, is at least f(1) = 0, strictly when the weights
    # differ, and at most its bound in UPPER.
    model, guide, args = INEXACT[program]()
    probe = get_loss("reverse_kl", num_particles=8, vectorize_particles=True)
    pyro.set_rng_seed(1)
    log_p, log_q, _ = probe.particles(model, guide, args, {})
    log_w = (log_p - log_q).detach()
    log_mean_w = float(log_w.logsumexp(0)) - math.log(8)
    assert float(log_w.std()) > 1e-3  # the guide is not exact
    values = {}
    for name in ALL_POSTERIOR:
        pyro.set_rng_seed(1)
        values[name] = _loss(name, num_particles=8, vectorize_particles=True).loss(
            model, guide, *args
        )
    tol = 1e-9 * (1 + abs(log_mean_w))
    assert values["reverse_kl"] == pytest.approx(-float(log_w.mean()), rel=1e-10)
    assert -log_mean_w - tol <= values["renyi"] <= values["reverse_kl"] + tol
    assert values["cubo"] >= log_mean_w - tol
    for name in ["forward_kl", "forward_kl_msc", *GENERATOR_NAMES]:
        assert 0 < values[name] <= UPPER.get(name, math.inf), name
    assert values["forward_kl"] <= math.log(8)
    assert values["forward_kl_msc"] <= math.log(9)  # K particles and the chain's state


@pytest.mark.parametrize("name", ALL_POSTERIOR)
def test_an_enumerated_hmm_is_its_forward_algorithm(name):
    # The HMM with its states enumerated along pyro.markov, and the same HMM with the states
    # summed out by a hand-written forward algorithm: the same value from the same draws.
    values = []
    for model in (tp.hmm, tp.hmm_forward):
        pyro.clear_param_store()
        pyro.set_rng_seed(2)
        loss = _loss(name, num_particles=6, vectorize_particles=True)
        values.append(loss.loss(model, tp.hmm_guide, tp.HMM_Y))
    assert values[0] == pytest.approx(values[1], rel=1e-9, abs=1e-12)


# ---- losses that need draws of P ---------------------------------------------------------

N_DRAWS = 4000


def _draws(program):
    """Exact posterior draws (``N_DRAWS``), the exact guide, and the posterior's entropy (for
    the HMM, whose posterior is not known, the guide's own draws and entropy)."""
    gen = torch.Generator().manual_seed(5)
    if program == "coin":
        a, b, _ = tp.coin_posterior()
        posterior = dist.Beta(torch.tensor(a), torch.tensor(b))
        tp.coin_exact()
        draws = {"fairness": posterior.sample((N_DRAWS,))}
        return tp.coin, tp.coin_guide, (tp.FLIPS,), draws, float(posterior.entropy())
    if program == "ar1":
        _, mean, sd = tp.ar1_posterior()
        tp.set_normal_guide("phi", mean, sd)
        draws = {"phi": mean + sd * torch.randn(N_DRAWS, generator=gen)}
        return tp.ar1, tp.normal_guide("phi"), (tp.AR_Y,), draws, _normal_entropy(sd)
    if program == "regression":
        model, guide, args, _ = _regression()
        mean, cov, _ = tp.regression_posterior()
        theta = mean + torch.randn(N_DRAWS, 3, generator=gen) @ torch.linalg.cholesky(cov).T
        draws = {"a": theta[:, 0], "b": theta[:, 1:]}
        entropy = float(dist.MultivariateNormal(mean, cov).entropy())
        return model, guide, args, draws, entropy
    if program == "nested":
        model, guide, args, _ = _nested()
        (mu_mean, mu_sd), (shift, slope, g_sd), _ = tp.hierarchical_posterior()
        mu = mu_mean + mu_sd * torch.randn(N_DRAWS, generator=gen)
        g = shift + slope * mu[:, None] + g_sd * torch.randn(N_DRAWS, tp.GROUPS, generator=gen)
        entropy = _normal_entropy(mu_sd) + tp.GROUPS * _normal_entropy(g_sd)
        return model, guide, args, {"mu": mu, "g": g}, entropy
    if program == "sampled_mixture":
        model, guide, args, _ = _mixture()
        log_resp, _ = tp.gmm_responsibilities()
        posterior = dist.Categorical(logits=log_resp)
        draws = {"assignment": posterior.sample((N_DRAWS,))}
        return model, guide, args, draws, float(posterior.entropy().sum())
    if program == "linear_vae":
        model, guide, args, _ = _linear_vae()
        vae = guide.__self__
        with torch.no_grad():
            loc = vae.encoder_loc(tp.VAE_X)
            sd = vae.encoder_log_scale.bias.exp()
        z = loc + sd * torch.randn(N_DRAWS, *loc.shape, generator=gen)
        entropy = tp.VAE_N * sum(_normal_entropy(float(s)) for s in sd)
        return model, guide, args, {"z": z}, entropy
    if program == "hmm":  # P's draws are Q's own: the cross-entropy is Q's entropy
        tp.hmm_guide(tp.HMM_Y)
        store = pyro.get_param_store()
        probs = dist.Dirichlet(store["conc"].detach())
        locs = dist.Normal(store["locs_loc"].detach(), store["locs_scale"].detach())
        draws = {"probs_x": probs.sample((N_DRAWS,)), "locs": locs.sample((N_DRAWS,))}
        entropy = float(probs.entropy().sum() + locs.entropy().sum())
        return tp.hmm, tp.hmm_guide, (tp.HMM_Y,), draws, entropy
    raise KeyError(program)


def _normal_entropy(sd):
    return 0.5 * math.log(2 * math.pi * math.e * sd**2)


@pytest.mark.parametrize("name", ["cross_entropy", "forward_kl"])
@pytest.mark.parametrize(
    "program", ["coin", "ar1", "regression", "nested", "sampled_mixture", "linear_vae", "hmm"]
)
def test_cross_entropy_at_exact_draws_is_the_posterior_entropy(program, name):
    # Given exact posterior draws x_n, both value the cross-entropy -mean log q(x_n); at the
    # exact guide it estimates the posterior's entropy, within 4 standard errors (the sd of
    # log q over the draws, sqrt(2 / K): K draws resampled from N_DRAWS). The enumerated HMM's
    # draws hold no values of its states, which are summed out.
    model, guide, args, draws, entropy = _draws(program)
    loss = _loss(name, num_particles=N_DRAWS, vectorize_particles=True, draws=draws)
    pyro.set_rng_seed(6)
    value = loss.loss(model, guide, *args)
    pyro.set_rng_seed(6)
    _, log_q, _ = loss.particles(model, guide, args, {}, "draws")
    se = float(log_q.detach().std()) * math.sqrt(2 / N_DRAWS)
    assert abs(value - entropy) < 4 * se, (value, entropy, se)
    assert value == pytest.approx(-float(log_q.detach().mean()), rel=1e-10)


def test_wasserstein_from_exact_draws_is_the_shift_of_the_guide():
    # W1 between N(m + d, s^2) and N(m, s^2) is |d|. With 2000 particles of each, the
    # estimate (sorted draws, biased upward by O(s / sqrt(K))) is within 0.1 s of d = s.
    _, mean, sd = tp.ar1_posterior()
    gen = torch.Generator().manual_seed(7)
    draws = {"phi": mean + sd * torch.randn(N_DRAWS, generator=gen)}
    tp.set_normal_guide("phi", mean + sd, sd)
    loss = get_loss("wasserstein", num_particles=2000, vectorize_particles=True, draws=draws)
    pyro.set_rng_seed(8)
    value = loss.loss(tp.ar1, tp.normal_guide("phi"), tp.AR_Y)
    assert abs(value - sd) < 0.1 * sd


def test_wasserstein_on_the_coin_is_the_quadrature_distance_between_betas():
    # W1 = integral |F_P - F_Q| between the Beta posterior and a Beta guide, by quadrature of
    # the densities on a grid; 2000 draws of each: within 0.1 posterior sd.
    a, b, _ = tp.coin_posterior()
    posterior, guide_dist = dist.Beta(torch.tensor(a), torch.tensor(b)), dist.Beta(30.0, 25.0)
    grid = torch.linspace(1e-6, 1 - 1e-6, 20001)
    step = float(grid[1] - grid[0])
    cdf_gap = (posterior.log_prob(grid).exp() - guide_dist.log_prob(grid).exp()).cumsum(0)
    exact = float(cdf_gap.abs().sum()) * step**2
    pyro.param("alpha_q", torch.tensor(30.0), constraint=dist.constraints.positive)
    pyro.param("beta_q", torch.tensor(25.0), constraint=dist.constraints.positive)
    draws = {"fairness": posterior.sample((N_DRAWS,))}
    loss = get_loss("wasserstein", num_particles=2000, vectorize_particles=True, draws=draws)
    pyro.set_rng_seed(9)
    value = loss.loss(tp.coin, tp.coin_guide, tp.FLIPS)
    assert exact > 0.5 * float(posterior.stddev)  # the guide is visibly off
    assert abs(value - exact) < 0.1 * float(posterior.stddev), (value, exact)


def test_wasserstein_refuses_the_sampled_assignment_naming_it():
    model, guide, args, draws, _ = _draws("sampled_mixture")
    loss = get_loss("wasserstein", num_particles=16, vectorize_particles=True, draws=draws)
    with pytest.raises(ValueError, match="guide site 'assignment' is not reparameterizable"):
        loss.loss(model, guide, *args)


# ---- Beta-Bernoulli: every loss reaches the Beta posterior -------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_POSTERIOR)
def test_every_loss_reaches_the_beta_posterior_of_the_coin(name):
    # The Beta guide contains the posterior Beta(38, 22), so every divergence is minimized
    # there (each self-normalized estimator's weights are constant, its gradient 0). From
    # Beta(3, 3): 600 steps of 32 particles, learning rate 0.2 decaying 20-fold; the guide's
    # mean and sd, averaged over the last 150 steps, within 0.1 posterior sd and 6%.
    a, b, _ = tp.coin_posterior()
    posterior = dist.Beta(torch.tensor(a), torch.tensor(b))
    steps = 600
    pyro.set_rng_seed(0)
    optim = pyro.optim.ClippedAdam({"lr": 0.2, "lrd": 0.05 ** (1 / steps)})
    loss = _loss(name, num_particles=32, vectorize_particles=True)
    svi = pyro.infer.SVI(tp.coin, tp.coin_guide, optim, loss=loss)
    means, sds = [], []
    for step in range(steps):
        svi.step(tp.FLIPS)
        if step >= steps - 150:
            q = dist.Beta(pyro.param("alpha_q").detach(), pyro.param("beta_q").detach())
            means.append(float(q.mean))
            sds.append(float(q.stddev))
    mean, sd = sum(means) / len(means), sum(sds) / len(sds)
    post_mean, post_sd = float(posterior.mean), float(posterior.stddev)
    assert abs(mean - post_mean) < 0.1 * post_sd, (mean, post_mean)
    assert abs(sd / post_sd - 1) < 0.06, (sd, post_sd)


# ---- Bayesian linear regression with every autoguide -------------------------------------


def _guide_list(model):
    guide = AutoGuideList(model)
    guide.append(AutoNormal(poutine.block(model, expose=["a"])))
    guide.append(AutoMultivariateNormal(poutine.block(model, expose=["b"])))
    return guide


def _flow(model):
    return AutoNormalizingFlow(model, functools.partial(T.iterated, 2, T.affine_autoregressive))


_FULL, _DIAGONAL = torch.ones(3, 3), torch.eye(3)
#: Each autoguide and the precision entries its family keeps: reverse KL's optimum over a
#: Gaussian family that factorizes into blocks has the posterior mean and, per block, the
#: inverse of the posterior precision's block; a full-covariance family (or a flow, which
#: contains it) is exact.
AUTOGUIDES = {
    "AutoNormal": (AutoNormal, _DIAGONAL),
    "AutoDiagonalNormal": (AutoDiagonalNormal, _DIAGONAL),
    "AutoMultivariateNormal": (AutoMultivariateNormal, _FULL),
    "AutoLowRankMultivariateNormal": (
        lambda m: AutoLowRankMultivariateNormal(m, rank=2),
        _FULL,
    ),
    "AutoIAFNormal": (lambda m: AutoIAFNormal(m, hidden_dim=[8], num_transforms=2), _FULL),
    "AutoNormalizingFlow": (_flow, _FULL),
    "AutoGuideList": (_guide_list, torch.block_diag(torch.ones(1, 1), torch.ones(2, 2))),
}


@pytest.mark.slow
@pytest.mark.parametrize("guide_name", list(AUTOGUIDES))
def test_every_autoguide_reaches_its_optimum_on_the_regression(guide_name):
    # 600 steps of ReverseKL (16 particles, learning rate 0.05 decaying tenfold), then 4000
    # draws of the guide: the mean within 0.2 posterior sd of the exact one (the Monte Carlo
    # error of 4000 draws is 0.016 sd, the rest is the optimizer's jitter), the covariance
    # within 0.15 in units of sd_i sd_j of the family's optimum.
    make, kept = AUTOGUIDES[guide_name]
    mean, cov, _ = tp.regression_posterior()
    optimum = torch.linalg.inv(torch.linalg.inv(cov) * kept)
    pyro.set_rng_seed(0)
    guide = make(tp.regression)
    steps = 600
    optim = pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.1 ** (1 / steps)})
    loss = get_loss("reverse_kl", num_particles=16, vectorize_particles=True)
    svi = pyro.infer.SVI(tp.regression, guide, optim, loss=loss)
    for _ in range(steps):
        svi.step(tp.REG_X, tp.REG_Y)
    with torch.no_grad(), pyro.plate("draws", N_DRAWS, dim=-2):
        draws = guide(tp.REG_X, tp.REG_Y)
    theta = torch.cat([draws["a"].reshape(-1, 1), draws["b"].reshape(-1, 2)], -1)
    sd = cov.diagonal().sqrt()
    assert ((theta.mean(0) - mean).abs() < 0.2 * sd).all(), (theta.mean(0), mean)
    opt_sd = optimum.diagonal().sqrt()
    error = (torch.cov(theta.T) - optimum) / (opt_sd[:, None] * opt_sd)
    assert (error.abs() < 0.15).all(), error


def test_an_autodelta_part_of_a_guide_list_is_refused_naming_its_site():
    guide = AutoGuideList(tp.regression)
    guide.append(AutoDelta(poutine.block(tp.regression, expose=["a"])))
    guide.append(AutoNormal(poutine.block(tp.regression, expose=["b"])))
    guide(tp.REG_X, tp.REG_Y)
    for name in ALL_POSTERIOR:
        loss = _loss(name, num_particles=4, vectorize_particles=True)
        with pytest.raises(ValueError, match="guide site 'a' is a point mass"):
            loss.loss(tp.regression, guide, tp.REG_X, tp.REG_Y)


def test_a_block_autoregressive_flow_vectorizes_as_under_trace_elbo():
    # The AutoNormalizingFlow example of Pyro's documentation.
    guide = AutoNormalizingFlow(
        tp.regression, functools.partial(T.iterated, 2, T.block_autoregressive)
    )
    guide(tp.REG_X, tp.REG_Y)  # its parameters made before either loss draws
    values = []
    for loss in (
        Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1),
        get_loss("reverse_kl", num_particles=4, vectorize_particles=True),
    ):
        pyro.set_rng_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            values.append(loss.loss(tp.regression, guide, tp.REG_X, tp.REG_Y))
    assert values[1] == pytest.approx(values[0], rel=1e-10)


# ---- ReverseKL is Trace_ELBO on each program -----------------------------------------------


def _nonlinear_vae():
    model, guide, args = _vae()
    return model, guide, args, 1


def _subsampled():
    tp.hierarchical_guide(tp.NESTED_Y)  # parameters away from the exact posterior
    return tp.hierarchical, tp.hierarchical_guide, (tp.NESTED_Y, 4, 3), 2


TRACE_ELBO_PROGRAMS = {
    "ar1": lambda: (tp.ar1, tp.normal_guide("phi"), (tp.AR_Y,), 0),
    "nested_subsampled": _subsampled,
    "regression": lambda: (*_regression()[:3], 1),
    "vae": _nonlinear_vae,
}


@pytest.mark.parametrize("vectorize", [True, False])
@pytest.mark.parametrize("program", list(TRACE_ELBO_PROGRAMS))
def test_reverse_kl_is_trace_elbo_from_the_same_seed(program, vectorize):
    # pyro.markov, pyro.deterministic, pyro.factor, poutine.scale (ar1); nested plates with
    # both subsampled (nested); an autoguide (regression); pyro.module (vae).
    model, guide, args, nesting = TRACE_ELBO_PROGRAMS[program]()
    results = []
    for loss in (
        Trace_ELBO(num_particles=4, vectorize_particles=vectorize, max_plate_nesting=nesting),
        get_loss("reverse_kl", num_particles=4, vectorize_particles=vectorize),
    ):
        pyro.set_rng_seed(3)
        results.append(_value_and_grads(loss, model, guide, *args))
    (expected, expected_grads), (value, grads) = results
    assert value == pytest.approx(expected, rel=1e-10)
    for a, b in zip(grads, expected_grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)


# ---- nested plates with subsampling --------------------------------------------------------


@pytest.mark.parametrize("vectorize", [True, False])
def test_subsampled_nested_plates_are_unbiased_for_the_full_data_value(vectorize):
    # At the exact guide the full-data value is -log Z exactly and the expected gradient 0 (the
    # optimum). With 4 of 12 groups and 3 of 8 items drawn per step (both plates, each scaled
    # by Pyro), the mean over 200 steps of 2 particles is within 4 standard errors of both.
    _, _, _, log_z = _nested()
    loss = get_loss("reverse_kl", num_particles=2, vectorize_particles=vectorize)
    values, grads = [], []
    for seed in range(200):
        pyro.set_rng_seed(seed)
        value, grad = _value_and_grads(loss, tp.hierarchical, tp.hierarchical_guide, *_SUB)
        values.append(value)
        grads.append(torch.cat([g.reshape(-1) for g in grad]))
    values, grads = torch.tensor(values), torch.stack(grads)
    se = values.std() / math.sqrt(200)
    assert se > 0.1  # the subsample moves the estimate (constant on the full data)
    assert abs(values.mean() + log_z) < 4 * se, (values.mean(), -log_z, se)
    grad_se = grads.std(0) / math.sqrt(200)
    assert (grads.mean(0).abs() < 4 * grad_se + 1e-12).all()


_SUB = (tp.NESTED_Y, 4, 3)


# ---- AR(1): the trained posterior --------------------------------------------------------


def test_reverse_kl_trains_the_ar1_coefficient_to_its_posterior():
    # The posterior of phi is N(m, s^2) (closed form), in the guide's family. 200 steps of
    # 16 particles, learning rate 0.1 decaying tenfold; the guide's loc and scale averaged
    # over the last 50 steps: within 0.1 s and 6%.
    _, mean, sd = tp.ar1_posterior()
    steps = 200
    pyro.set_rng_seed(0)
    optim = pyro.optim.ClippedAdam({"lr": 0.1, "lrd": 0.1 ** (1 / steps)})
    loss = get_loss("reverse_kl", num_particles=16, vectorize_particles=True)
    svi = pyro.infer.SVI(tp.ar1, tp.normal_guide("phi"), optim, loss=loss)
    locs, scales = [], []
    for step in range(steps):
        svi.step(tp.AR_Y)
        if step >= steps - 50:
            locs.append(float(pyro.param("phi_loc").detach()))
            scales.append(float(pyro.param("phi_scale").detach()))
    loc, scale = sum(locs) / len(locs), sum(scales) / len(scales)
    assert abs(loc - mean) < 0.1 * sd, (loc, mean)
    assert abs(scale / sd - 1) < 0.06, (scale, sd)


# ---- the VAE -----------------------------------------------------------------------------


def test_the_vae_loss_decreases():
    # 40 steps of one particle (Adam, learning rate 0.02) on the 300 points; the loss over 20
    # seeds of 4 particles before and after: lower by more than 4 combined standard errors.
    model, guide, args = _vae()
    loss = get_loss("reverse_kl", num_particles=4, vectorize_particles=True)

    def evaluate():
        values = []
        for seed in range(20):
            pyro.set_rng_seed(100 + seed)
            values.append(loss.loss(model, guide, *args))
        values = torch.tensor(values)
        return values.mean(), values.std() / math.sqrt(20)

    before, before_se = evaluate()
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.02}), loss=get_loss("reverse_kl"))
    pyro.set_rng_seed(0)
    for _ in range(40):
        svi.step(*args)
    after, after_se = evaluate()
    assert after < before - 4 * math.hypot(before_se, after_se), (before, after)


# ---- the mixture with a sampled assignment, and the enumerated HMM -------------------------


def _second_step(loss, model, guide, data):
    """The value and gradients of the second step (baselines carried over from the first)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(1)
    loss.loss_and_grads(model, guide, data)
    for p in pyro.get_param_store().values():
        p.unconstrained().grad = None
    pyro.set_rng_seed(2)
    value = loss.loss_and_grads(model, guide, data)
    store = pyro.get_param_store()
    return value, {n: store[n].unconstrained().grad for n in sorted(store.keys())}


@pytest.mark.parametrize("vectorize", [True, False])
def test_the_sampled_mixture_is_trace_graph_elbo(vectorize):
    # The mixture tutorial's model (Dirichlet weights, LogNormal scale, a plate of locs) and
    # a guide sampling each point's assignment: TraceGraph_ELBO's value and Rao-Blackwellized
    # gradient, with the assignments' score terms.
    options = {"num_particles": 4, "vectorize_particles": vectorize}
    expected, expected_grads = _second_step(
        TraceGraph_ELBO(max_plate_nesting=1, **options), tp.gmm, tp.gmm_guide, tp.GMM_DATA
    )
    value, grads = _second_step(
        get_loss("reverse_kl", **options), tp.gmm, tp.gmm_guide, tp.GMM_DATA
    )
    assert value == pytest.approx(expected, rel=1e-12)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        assert torch.allclose(grad, expected_grads[name], rtol=1e-9, atol=1e-10), name


ENUMERATED = {
    "hmm": (tp.hmm, tp.hmm_guide, tp.HMM_Y),
    "tempered_hmm": (tp.tempered_hmm, tp.hmm_guide, tp.HMM_Y),
    "mixture": (tp.enumerated_gmm, tp.gmm_globals_guide, tp.GMM_DATA),
}


@pytest.mark.parametrize("vectorize", [True, False])
@pytest.mark.parametrize("program", list(ENUMERATED))
def test_enumerated_programs_are_trace_enum_elbo(program, vectorize):
    # A plate of sequences, states enumerated along pyro.markov (also under poutine.scale),
    # and the mixture tutorial with its assignment enumerated: ReverseKL is TraceEnum_ELBO in
    # value and gradient from the same seed.
    model, guide, data = ENUMERATED[program]
    options = {"num_particles": 4, "vectorize_particles": vectorize}
    results = []
    for loss in (
        TraceEnum_ELBO(max_plate_nesting=1, **options),
        get_loss("reverse_kl", **options),
    ):
        pyro.clear_param_store()
        pyro.set_rng_seed(4)
        results.append(_value_and_grads(loss, model, guide, data))
    (expected, expected_grads), (value, grads) = results
    assert value == pytest.approx(expected, rel=1e-10)
    for a, b in zip(grads, expected_grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("vectorize", [True, False])
def test_trace_elbo_on_the_forward_algorithm_is_trace_enum_elbo(vectorize):
    # The reference of test_an_enumerated_hmm_is_its_forward_algorithm is itself right.
    options = {"num_particles": 4, "vectorize_particles": vectorize, "max_plate_nesting": 1}
    values = []
    for model, loss in (
        (tp.hmm, TraceEnum_ELBO(**options)),
        (tp.hmm_forward, Trace_ELBO(**options)),
    ):
        pyro.clear_param_store()
        pyro.set_rng_seed(4)
        values.append(loss.loss(model, tp.hmm_guide, tp.HMM_Y))
    assert values[1] == pytest.approx(values[0], rel=1e-10)
