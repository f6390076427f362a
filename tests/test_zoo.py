"""Tests of the model zoo against the posteriordb data and reference draws.

The strongest check is the Stein identity: for draws z ~ p, E[grad_u log p(u)] = 0 in the
unconstrained coordinates u (Jacobian included). Evaluated at the reference draws, a model that
differs from the reference posterior (a wrong prior, a lag off by one, a missing Jacobian) has a
mean gradient many standard errors from 0.
"""

from __future__ import annotations

import doctest
import json
import math
import zipfile

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoDelta, AutoNormal
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import biject_to

from pyrodiv import zoo
from pyrodiv.zoo import (
    ZOO,
    OrderedNormal,
    garch11_variance,
    get_entry,
    get_model,
    load_data,
    load_posterior_info,
    load_reference_draws,
    posterior_folder,
    posteriordb_path,
)
from pyrodiv.zoo.posteriordb import ENV_VAR, group_draws

NAMES = sorted(ZOO)
F64 = torch.float64


def _have_db() -> bool:
    try:
        posteriordb_path()
    except FileNotFoundError:
        return False
    return True


needs_db = pytest.mark.skipif(not _have_db(), reason="posteriordb folder not found")


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    torch.set_default_dtype(old)


_CACHE: dict = {}


def _kwargs(name):
    if ("kw", name) not in _CACHE:
        _CACHE["kw", name] = ZOO[name].kwargs(dtype=F64)
    return _CACHE["kw", name]


def _latents(name):
    """Reference draws as latent values, flattened to (10000, ...)."""
    if ("lat", name) not in _CACHE:
        _CACHE["lat", name] = ZOO[name].reference_latents(dtype=F64, flatten=True)
    return _CACHE["lat", name]


def _draws(name):
    if ("ref", name) not in _CACHE:
        _CACHE["ref", name] = load_reference_draws(ZOO[name].posterior)
    return _CACHE["ref", name]


def _flat(a):
    return a.reshape((-1,) + a.shape[2:])


# ------------------------------------------------------------------ batched evaluation


def _plate_nesting(trace) -> int:
    dims = [
        -f.dim
        for s in trace.nodes.values()
        if s["type"] == "sample"
        for f in s["cond_indep_stack"]
        if f.vectorized
    ]
    return max(dims, default=0)


def batched_log_joint(model, kwargs, proto, values, unconstrained=False):
    """log p(z, data) for S draws at once, under an outer plate left of the model's plates.

    ``values`` maps latent names to tensors of shape (S, *site_shape). With ``unconstrained``,
    the draws are mapped to unconstrained leaves u (returned) and the log-Jacobian is added.
    Returns (log_joint of shape (S,), leaves).
    """
    S = next(iter(values.values())).shape[0]
    m = _plate_nesting(proto)
    data, leaves = {}, {}
    total = torch.zeros(S)
    for name, z in values.items():
        fn = proto.nodes[name]["fn"]
        b, e = tuple(fn.batch_shape), tuple(fn.event_shape)
        z = z.reshape((S,) + (1,) * (m - len(b)) + b + e)
        if unconstrained:
            t = biject_to(fn.support)
            u = t.inv(z).detach().requires_grad_()
            z = t(u)
            total = total + t.log_abs_det_jacobian(u, z).reshape(S, -1).sum(-1)
            leaves[name] = u
        data[name] = z
    with pyro.plate("_draws", S, dim=-(m + 1)):
        tr = poutine.trace(poutine.condition(model, data=data)).get_trace(**kwargs)
    tr = prune_subsample_sites(tr)
    tr.compute_log_prob()
    for site in tr.nodes.values():
        if site["type"] == "sample":
            lp = site["log_prob"]
            # A site that does not broadcast would gain extra dims (e.g. (S, S, N)).
            assert lp.dim() <= m + 1, (site["name"], tuple(lp.shape))
            total = total + lp.expand((S,) + lp.shape[1:]).reshape(S, -1).sum(-1)
    return total, leaves


def _trace(name):
    return poutine.trace(ZOO[name].model).get_trace(**_kwargs(name))


def _stein_z(name, step):
    """z-scores of the mean unconstrained gradient of log p over every ``step``-th draw."""
    entry, kw = ZOO[name], _kwargs(name)
    proto = _trace(name)
    lat = {k: v[::step] for k, v in _latents(name).items()}
    # shapes first, on 2 draws: a model that fails to broadcast would blow up the big batches
    batched_log_joint(entry.model, kw, proto, {k: v[:2] for k, v in lat.items()})
    S = next(iter(lat.values())).shape[0]
    numel = max(v.numel() for v in kw.values() if torch.is_tensor(v))
    chunk = max(16, min(S, int(4e6 / numel)))
    grads = []
    for i in range(0, S, chunk):
        part = {k: v[i : i + chunk] for k, v in lat.items()}
        total, leaves = batched_log_joint(entry.model, kw, proto, part, unconstrained=True)
        gs = torch.autograd.grad(total.sum(), list(leaves.values()))
        n = total.shape[0]
        grads.append(torch.cat([g.reshape(n, -1) for g in gs], -1))
    G = torch.cat(grads)
    assert torch.isfinite(G).all()
    return G.mean(0) / (G.std(0) / math.sqrt(G.shape[0]))


# ------------------------------------------------------------------ loader


def test_posteriordb_path_resolution(tmp_path, monkeypatch):
    db = tmp_path / "shared" / "posteriordb"
    db.mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.delenv(ENV_VAR, raising=False)
    # explicit argument first
    assert posteriordb_path(other) == other.resolve()
    # then the environment variable
    monkeypatch.setenv(ENV_VAR, str(other))
    assert posteriordb_path() == other.resolve()
    assert posteriordb_path(db) == db.resolve()
    # then ../shared/posteriordb relative to the current directory
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.chdir(work)
    assert posteriordb_path() == db.resolve()


def test_posteriordb_path_errors_name_what_was_tried(tmp_path, monkeypatch):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope.*given as `path`"):
        posteriordb_path(missing)
    monkeypatch.setenv(ENV_VAR, str(missing))
    with pytest.raises(FileNotFoundError, match=ENV_VAR):
        posteriordb_path()
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(zoo.posteriordb, "_REPO_ROOT", tmp_path / "repo")
    with pytest.raises(FileNotFoundError, match="current directory.*repository root"):
        posteriordb_path()


def test_group_draws_orders_indices_numerically():
    flat = {f"b[{i}]": np.full((2, 3), float(i)) for i in (10, 2, 1, 3, 4, 5, 6, 7, 8, 9)}
    flat["s"] = np.zeros((2, 3))
    flat.update({f"L[{i},{j}]": np.full((2, 3), 10.0 * i + j) for i in (1, 2) for j in (1, 2)})
    g = group_draws(flat)
    assert g["b"].shape == (2, 3, 10)
    np.testing.assert_array_equal(g["b"][0, 0], np.arange(1.0, 11.0))
    assert g["s"].shape == (2, 3)
    np.testing.assert_array_equal(g["L"][1, 2], [[11.0, 12.0], [21.0, 22.0]])


@needs_db
def test_folder_names_and_aliases():
    assert posterior_folder("kilpisjarvi").name == "kilpisjarvi_mod-kilpisjarvi"
    assert posterior_folder("garch11").name == "garch-garch11"
    assert posterior_folder("eight_schools").name == "eight_schools-eight_schools_noncentered"
    with pytest.raises(KeyError, match="no posterior"):
        posterior_folder("no_such_model")
    for alias in (
        "eight_schools",
        "eight_schools_noncentered",
        "EIGHT_SCHOOLS-eight_schools_noncentered",
    ):
        assert get_entry(alias) is ZOO["eight_schools"]
    assert get_entry("ark") is ZOO["arK"]
    assert get_entry("kidscore_momiq") is ZOO["kidiq"]
    with pytest.raises(KeyError, match="known"):
        get_entry("no_such_model")


@needs_db
def test_load_data_types_and_values():
    d = load_data("eight_schools")
    assert d["J"] == 8 and isinstance(d["J"], int)
    assert d["y"].dtype == torch.long  # integers in the JSON
    assert d["y"].tolist() == [28, 8, -3, 7, -1, 1, 18, 12]
    k = load_data("kidiq")
    assert k["mom_iq"].dtype == F64 and k["mom_iq"].shape == (434,)
    assert k["mom_iq"][0].item() == pytest.approx(121.117528602603, abs=1e-12)
    assert load_data("kidiq", dtype=torch.float32)["mom_iq"].dtype == torch.float32
    assert load_data("sblrc")["X"].shape == (100, 5)
    assert load_data("garch")["sigma1"] == 0.5
    # the registry casts reals to floating point
    _, kw = get_model("eight_schools_noncentered", dtype=torch.float32)
    assert kw["y"].dtype == torch.float32 and kw["y"][0].item() == 28.0


@needs_db
def test_reference_draws_regroup_in_index_order():
    draws = load_reference_draws("gp_pois_regr")
    assert draws["f"].shape == (10, 1000, 11) and draws["rho"].shape == (10, 1000)
    with zipfile.ZipFile(posterior_folder("gp_pois_regr") / "reference_draws.json.zip") as z:
        raw = json.loads(z.read(z.namelist()[0]))
    np.testing.assert_array_equal(draws["f"][3, :, 9], raw[3]["f[10]"])
    np.testing.assert_array_equal(draws["f"][0, :, 1], raw[0]["f[2]"])
    np.testing.assert_array_equal(draws["alpha"][9], raw[9]["alpha"])


@needs_db
@pytest.mark.parametrize("name", NAMES)
def test_reference_params_match_posterior_info(name):
    entry = ZOO[name]
    dims = load_posterior_info(entry.posterior)["dimensions"]
    draws = _draws(name)
    assert set(entry.params) == set(dims) == set(draws)
    for p in entry.params:
        assert draws[p].shape[:2] == (10, 1000)
        assert int(np.prod(draws[p].shape[2:])) == dims[p]


# ------------------------------------------------------------------ models


@needs_db
@pytest.mark.parametrize("name", NAMES)
def test_model_traces_with_data(name):
    entry = ZOO[name]
    tr = prune_subsample_sites(_trace(name))
    tr.compute_log_prob()
    latent = [
        n
        for n, s in tr.nodes.items()
        if s["type"] == "sample" and not s["is_observed"] and not s["infer"].get("_deterministic")
    ]
    assert sorted(latent) == sorted(entry.latents)
    for n in latent:
        assert torch.isfinite(tr.nodes[n]["log_prob"]).all(), n
    observed = [n for n in tr.observation_nodes if not tr.nodes[n]["infer"].get("_deterministic")]
    assert observed and all(tr.nodes[n]["is_observed"] for n in observed)
    assert math.isfinite(tr.log_prob_sum().item())
    # every reference parameter is a site of the trace, with the reference's shape
    for p in entry.params:
        assert tuple(tr.nodes[p]["value"].shape) == _draws(name)[p].shape[2:], p


@needs_db
@pytest.mark.parametrize("name", NAMES)
def test_vectorized_elbo_with_autonormal(name):
    model, kw = ZOO[name].model, _kwargs(name)
    guide = AutoNormal(model)
    elbo = pyro.infer.Trace_ELBO(num_particles=8, vectorize_particles=True)
    loss = elbo.differentiable_loss(model, guide, **kw)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    params = [p for _, p in pyro.get_param_store().named_parameters()]
    assert params and all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    # With a point-mass guide all particles are equal, so the vectorized loss must equal the
    # one-particle loss exactly; a model that does not broadcast (e.g. X * beta[..., None, :])
    # would count each observation once per pair of particles.
    pyro.clear_param_store()
    delta = AutoDelta(model)
    one = pyro.infer.Trace_ELBO().loss(model, delta, **kw)
    many = elbo.loss(model, delta, **kw)
    assert math.isfinite(one)
    assert many == pytest.approx(one, rel=1e-10)


@needs_db
@pytest.mark.parametrize("name", NAMES)
def test_batched_log_joint_equals_loop(name):
    """The model broadcasts over a left batch dimension: batch and loop agree per draw."""
    entry, kw = ZOO[name], _kwargs(name)
    proto = _trace(name)
    vals = {k: v[[0, 4321, 9999]] for k, v in _latents(name).items()}
    batched, _ = batched_log_joint(entry.model, kw, proto, vals)
    looped = []
    for s in range(3):
        d = {k: v[s].reshape(proto.nodes[k]["value"].shape) for k, v in vals.items()}
        looped.append(poutine.trace(poutine.condition(entry.model, data=d)).get_trace(**kw))
    looped = torch.stack([t.log_prob_sum() for t in looped])
    assert torch.isfinite(batched).all()
    torch.testing.assert_close(batched, looped, rtol=1e-10, atol=1e-8)
    assert (batched[0] - batched[1]).abs() > 1e-6  # the draws differ


@needs_db
@pytest.mark.parametrize("name", NAMES)
def test_reference_latents_reproduce_reference_params(name):
    """Model run at the latents derived from the reference gives back the reference draws."""
    entry, kw = ZOO[name], _kwargs(name)
    proto = _trace(name)
    idx = torch.arange(0, 10000, 500)
    vals = {k: v[idx] for k, v in _latents(name).items()}
    m = _plate_nesting(proto)
    data = {}
    for k, v in vals.items():
        fn = proto.nodes[k]["fn"]
        b, e = tuple(fn.batch_shape), tuple(fn.event_shape)
        data[k] = v.reshape((len(idx),) + (1,) * (m - len(b)) + b + e)
    with pyro.plate("_draws", len(idx), dim=-(m + 1)):
        tr = poutine.trace(poutine.condition(entry.model, data=data)).get_trace(**kw)
    for p in entry.params:
        ref = torch.as_tensor(_flat(_draws(name)[p]))[idx]
        got = tr.nodes[p]["value"].reshape(ref.shape)
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-9)


@needs_db
@pytest.mark.parametrize("name", NAMES)
def test_log_joint_at_reference_mean(name):
    """Finite at the reference mean of the latents, and above the median over the draws.

    These posteriors are unimodal and close to Gaussian in the latents, so their mean is near
    the mode, where the density is higher than at a typical draw (a Gaussian in d dimensions
    has log p(mode) - median log p(draw) near d/2).
    """
    entry, kw = ZOO[name], _kwargs(name)
    proto = _trace(name)
    step = 10 if name != "diamonds" else 100  # diamonds: keep (draws, 5000, 24) small
    lat = {k: v[::step] for k, v in _latents(name).items()}
    mean = {k: v.mean(0, keepdim=True) for k, v in lat.items()}
    lp_mean, _ = batched_log_joint(entry.model, kw, proto, mean)
    d = {k: v[0].reshape(proto.nodes[k]["value"].shape) for k, v in mean.items()}
    lp_cond = poutine.trace(poutine.condition(entry.model, data=d)).get_trace(**kw)
    assert math.isfinite(lp_cond.log_prob_sum().item())
    torch.testing.assert_close(lp_mean[0], lp_cond.log_prob_sum())
    lp_draws, _ = batched_log_joint(entry.model, kw, proto, lat)
    assert lp_mean.item() > lp_draws.median().item()


# Every `step`-th reference draw is used by the fast Stein test: all 10,000 where cheap, fewer
# where the data are large. 10,000 draws detect a model whose posterior mean is off by about
# 0.05 sd in some direction; the power falls as 1 / sqrt(draws).
STEIN_STEP = {"kidiq": 5, "earnings": 5, "nes2000": 5, "low_dim_gauss_mix": 5, "diamonds": 40}


@needs_db
@pytest.mark.parametrize("name", NAMES)
def test_stein_identity_at_reference_draws(name):
    """Mean unconstrained score over the reference draws is 0 within 5 standard errors."""
    z = _stein_z(name, STEIN_STEP.get(name, 1))
    assert z.abs().max().item() < 5.0, z


@pytest.mark.slow
@needs_db
@pytest.mark.parametrize("name", sorted(STEIN_STEP))
def test_stein_identity_at_all_reference_draws(name):
    """As above with all 10,000 draws (diamonds: 1,000, as its batches are large)."""
    z = _stein_z(name, 1 if name != "diamonds" else 10)
    assert z.abs().max().item() < 5.0, z


# ------------------------------------------------------------------ closed forms


def _design(name, d):
    """Design matrix and response built from the raw data, as in the README's formulas."""
    one = torch.ones(d["N"])
    if name == "kidiq":
        return torch.stack([one, d["mom_iq"]], -1), d["kid_score"].double()
    if name == "earnings":
        return torch.stack([one, d["height"].double()], -1), torch.log(d["earn"].double())
    if name == "mesquite":
        v = torch.log(d["diam1"] * d["diam2"] * d["canopy_height"])
        return torch.stack([one, v], -1), torch.log(d["weight"])
    if name == "nes2000":
        age = d["age_discrete"]
        cols = [one, d["real_ideo"], d["race_adj"], age == 2, age == 3, age == 4]
        cols += [d["educ1"], d["gender"], d["income"]]
        return torch.stack([c.double() for c in cols], -1), d["partyid7"].double()
    if name == "sblrc":
        return d["X"], d["y"]
    raise KeyError(name)


@needs_db
@pytest.mark.parametrize("name", ["kidiq", "earnings", "mesquite", "nes2000", "sblrc"])
def test_least_squares_matches_reference_mean(name):
    """Flat (or nearly flat) priors: the posterior mean of beta is the least-squares fit.

    Tolerance 0.1 reference sd; the reference's own Monte Carlo error is about 0.01 sd.
    """
    X, y = _design(name, load_data(ZOO[name].posterior))
    ols = torch.linalg.lstsq(X, y[:, None]).solution[:, 0].numpy()
    beta = _flat(_draws(name)["beta"])
    err = (ols - beta.mean(0)) / beta.std(0)
    assert np.abs(err).max() < 0.1, err


@needs_db
@pytest.mark.parametrize("name", ["earnings", "mesquite", "nes2000"])
def test_flat_prior_sigma_matches_closed_form(name):
    """With p(beta, sigma) flat, sigma^2 | y ~ InvGamma((n - k - 1) / 2, RSS / 2), so
    E[sigma | y] = sqrt(RSS / 2) Gamma(a - 1/2) / Gamma(a). Tolerance 0.1 reference sd."""
    X, y = _design(name, load_data(ZOO[name].posterior))
    n, k = X.shape
    beta = torch.linalg.lstsq(X, y[:, None]).solution[:, 0]
    rss = ((y - X @ beta) ** 2).sum().item()
    a = (n - k - 1) / 2
    expected = math.sqrt(rss / 2) * math.exp(math.lgamma(a - 0.5) - math.lgamma(a))
    sigma = _draws(name)["sigma"]
    assert abs(expected - sigma.mean()) / sigma.std() < 0.1


def test_garch_variance_matches_recursion():
    torch.manual_seed(0)
    y = torch.randn(60) * 2 + 5
    sigma1 = 0.5
    for beta1 in (torch.tensor(0.4), torch.tensor(1e-20), torch.rand(4, 1)):
        mu = torch.full(beta1.shape, 5.1)
        alpha0 = torch.full(beta1.shape, 1.3)
        alpha1 = 0.6 * (1 - beta1)
        got = garch11_variance(y, sigma1, mu, alpha0, alpha1, beta1).exp()
        s2 = [torch.full(beta1.shape, sigma1**2)]
        for t in range(1, 60):
            s2.append(alpha0 + alpha1 * (y[t - 1] - mu) ** 2 + beta1 * s2[-1])
        want = torch.cat(s2, -1) if beta1.dim() else torch.stack(s2)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-10, atol=0)


def test_garch_beta1_jacobian_makes_the_prior_flat_on_the_triangle():
    """p(alpha1, beta1) must be constant: the model's prior log density, with the log-Jacobian
    of beta1_raw -> beta1 = (1 - alpha1) beta1_raw subtracted, is the same at all points."""
    y = torch.zeros(3)
    vals = []
    for a1, b1 in ((0.1, 0.2), (0.7, 0.25), (0.05, 0.9)):
        raw = b1 / (1 - a1)
        data = {"mu": 0.0, "alpha0": 1.0, "alpha1": a1, "beta1_raw": raw}
        data = {k: torch.tensor(v) for k, v in data.items()}
        tr = poutine.trace(poutine.condition(zoo.garch11, data=data)).get_trace(y, 0.5)
        tr.compute_log_prob()
        prior = sum(
            s["log_prob"].sum()
            for n, s in tr.nodes.items()
            if n in ("alpha1", "beta1_raw", "beta1_jacobian")
        )
        vals.append(prior.item() - math.log(1 - a1))  # density of beta1, not beta1_raw
    assert max(vals) - min(vals) < 1e-12


def test_ordered_normal_density_and_samples():
    d = OrderedNormal(0.5, 1.3, size=2, validate_args=False)
    g = torch.linspace(-9, 10, 801)
    h = (g[1] - g[0]).item()
    z = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1)
    inside = z[..., 0] < z[..., 1]
    dens = torch.where(inside, d.log_prob(z).exp(), 0.0)
    mass = dens.sum().item() * h * h  # the diagonal strip costs O(h)
    assert abs(mass - 1) < 0.01
    x = OrderedNormal(torch.zeros(3), 1.0, size=2).sample((20000,))
    assert x.shape == (20000, 3, 2) and (x[..., 0] < x[..., 1]).all()
    # E[min of two iid N(0, 1)] = -1 / sqrt(pi); 4 standard errors
    se = x[..., 0].std().item() / math.sqrt(x[..., 0].numel())
    assert abs(x[..., 0].mean().item() + 1 / math.sqrt(math.pi)) < 4 * se


def test_docstring_examples():
    mods = (zoo.models, zoo.registry, zoo.posteriordb, zoo)
    for mod in mods:
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, mod.__name__
    assert doctest.testmod(zoo.models).attempted > 30


# ------------------------------------------------------------------ NUTS


@pytest.mark.slow
@needs_db
def test_nuts_eight_schools_matches_reference():
    """Pyro NUTS (1 chain, 500 warmup + 500 draws, fixed seed) on eight schools.

    Tolerance for the posterior means of mu and tau: the larger of 4 Monte Carlo standard
    errors (Pyro's chain, from its effective sample size, combined with the reference's) and
    0.3 reference sd.
    """
    from pyro.infer import MCMC, NUTS
    from pyro.ops.stats import effective_sample_size

    model, kw = get_model("eight_schools")
    pyro.set_rng_seed(1)
    mcmc = MCMC(NUTS(model), warmup_steps=500, num_samples=500, disable_progbar=True)
    mcmc.run(**kw)
    samples = mcmc.get_samples()
    ref = _draws("eight_schools")
    for p in ("mu", "tau"):
        x = samples[p]
        ess = effective_sample_size(x[None], chain_dim=0, sample_dim=1).item()
        r = ref[p].ravel()
        mcse = math.sqrt(x.var().item() / ess + r.var() / r.size)
        tol = max(4 * mcse, 0.3 * r.std())
        assert abs(x.mean().item() - r.mean()) < tol, (p, x.mean().item(), r.mean(), tol)
