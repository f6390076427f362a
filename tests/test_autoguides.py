"""Every loss with the common autoguides and a hand-written guide: it runs (sequential and
vectorized) with finite gradients, the guide is evaluated at P's draws with its own density,
and each family reaches the known optimum of a conjugate model."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer.autoguide import (
    AutoDiagonalNormal,
    AutoGuideList,
    AutoIAFNormal,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)
from torch.distributions import constraints

import pyrodiv

#: Loss names for :func:`pyrodiv.get_loss`: the named losses and two f-divergences (one of the
#: power family, trained on a Renyi bound, and total variation).
LOSSES = [
    "reverse_kl",
    "forward_kl",
    "jensen_shannon",
    "squared_hellinger",
    "total_variation",
    "cross_entropy",
]


def prior_target(draws=None):
    a = pyro.sample("a", dist.Normal(torch.tensor(1.0), 2.0))
    s = pyro.sample("s", dist.LogNormal(torch.tensor(0.5), 0.4))
    v = pyro.sample("v", dist.Normal(torch.tensor([0.0, -1.0]), 1.5).to_event(1))
    if draws is not None:
        draws.append((a.detach(), s.detach(), v.detach()))


def posterior_target(draws=None):
    prior_target()
    pyro.sample("obs", dist.Normal(torch.tensor(0.4), 1.0), obs=torch.tensor(0.9))


def hand_written_guide(draws=None):
    a_loc = pyro.param("a_loc", torch.tensor(0.3))
    s_loc = pyro.param("s_loc", torch.tensor(0.2))
    v_loc = pyro.param("v_loc", torch.tensor([0.5, -0.5]))
    v_scale = pyro.param("v_scale", torch.tensor([0.8, 1.1]), constraint=constraints.positive)
    pyro.sample("a", dist.Normal(a_loc, 1.3))
    pyro.sample("s", dist.LogNormal(s_loc, 0.5))
    pyro.sample("v", dist.Normal(v_loc, v_scale).to_event(1))


def _guide_list(model):
    guide = AutoGuideList(model)
    guide.append(AutoNormal(poutine.block(model, expose=["a"])))
    guide.append(AutoDiagonalNormal(poutine.block(model, hide=["a"])))
    return guide


GUIDES = {
    "AutoNormal": AutoNormal,
    "AutoDiagonalNormal": AutoDiagonalNormal,
    "AutoMultivariateNormal": AutoMultivariateNormal,
    "AutoLowRankMultivariateNormal": lambda m: AutoLowRankMultivariateNormal(m, rank=1),
    "AutoIAFNormal": lambda m: AutoIAFNormal(m, hidden_dim=[6]),
    "AutoGuideList": _guide_list,
    "hand-written": lambda m: hand_written_guide,
}


def _make_guide(name, model):
    guide = GUIDES[name](model)
    pyro.set_rng_seed(0)
    guide()
    # Move every parameter off its initial value, so that nothing is checked at a special point.
    with torch.no_grad():
        for param in pyro.get_param_store().values():
            unconstrained = param.unconstrained()
            unconstrained.add_(0.1 * torch.randn_like(unconstrained))
    return guide


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("target", ["prior", "posterior"])
@pytest.mark.parametrize("guide_name", list(GUIDES))
def test_every_loss_runs_with_finite_gradients(guide_name, target, vectorize):
    model = prior_target if target == "prior" else posterior_target
    guide = _make_guide(guide_name, model)
    params = [p.unconstrained() for p in pyro.get_param_store().values()]
    for name in LOSSES:
        if name == "cross_entropy" and target == "posterior":
            continue
        pyro.set_rng_seed(1)
        loss = pyrodiv.get_loss(
            name, num_particles=6, vectorize_particles=vectorize, max_plate_nesting=0
        )
        surrogate = loss.differentiable_loss(model, guide)
        grads = torch.autograd.grad(surrogate, params, allow_unused=True)
        assert torch.isfinite(surrogate), name
        used = [g for g in grads if g is not None]
        assert used and all(torch.isfinite(g).all() for g in used), name
        assert any((g != 0).any() for g in used), name


def _unconstrained(a, s, v):
    """P's draws on the guide's unconstrained scale, packed as AutoContinuous packs them, and
    the log-Jacobian log|dx/du| = log s of the constrained site."""
    return torch.cat([a.reshape(-1, 1), s.log().reshape(-1, 1), v.reshape(-1, 2)], -1), s.log()


def _own_density(name, guide, a, s, v):
    """log q at (a, s, v) from the guide's own distribution objects."""
    u, log_jacobian = _unconstrained(a, s, v)
    if name == "hand-written":
        store = pyro.get_param_store()
        return (
            dist.Normal(store["a_loc"], 1.3).log_prob(u[:, 0])
            + dist.LogNormal(store["s_loc"], 0.5).log_prob(u[:, 1].exp())
            + dist.Normal(store["v_loc"], store["v_scale"]).log_prob(u[:, 2:]).sum(-1)
        )
    if name == "AutoNormal":
        locs = torch.cat([guide.locs.a.reshape(1), guide.locs.s.reshape(1), guide.locs.v])
        scales = torch.cat([guide.scales.a.reshape(1), guide.scales.s.reshape(1), guide.scales.v])
        return dist.Normal(locs, scales).log_prob(u).sum(-1) - log_jacobian
    if name == "AutoGuideList":
        first, rest = guide[0], guide[1]
        log_q_a = dist.Normal(first.locs.a, first.scales.a).log_prob(u[:, 0])
        return log_q_a + rest.get_posterior().log_prob(u[:, 1:]) - log_jacobian
    return guide.get_posterior().log_prob(u) - log_jacobian


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("guide_name", list(GUIDES))
def test_forward_kl_evaluates_each_guide_with_its_own_density_at_p_draws(guide_name, vectorize):
    guide = _make_guide(guide_name, prior_target)
    draws = []
    loss = pyrodiv.ForwardKL(num_particles=5, vectorize_particles=vectorize, max_plate_nesting=0)
    pyro.set_rng_seed(2)
    lp, lq, _ = loss.particles(prior_target, guide, (draws,), {}, "model_first")
    if vectorize:  # the first vectorized run is followed by its one-particle check
        draws = draws[:1]
    a = torch.cat([d[0].reshape(-1) for d in draws])
    s = torch.cat([d[1].reshape(-1) for d in draws])
    v = torch.cat([d[2].reshape(-1, 2) for d in draws])
    assert a.shape == (5,)
    exact_lp = (
        dist.Normal(1.0, 2.0).log_prob(a)
        + dist.LogNormal(0.5, 0.4).log_prob(s)
        + dist.Normal(torch.tensor([0.0, -1.0]), 1.5).log_prob(v).sum(-1)
    )
    with torch.no_grad():
        exact_lq = _own_density(guide_name, guide, a, s, v)
    assert torch.allclose(lp, exact_lp, rtol=1e-10)
    assert torch.allclose(lq.detach(), exact_lq, rtol=1e-8, atol=1e-10)


# ---- the conjugate optimum of each family ------------------------------------------------

N_OBS = 4
SIGMA = (1.0, 0.5)
Y_A = torch.tensor([0.8, 1.6, 0.3, 1.1], dtype=torch.float64)
Y_B = torch.tensor([-0.4, -1.0, -0.2, -0.7], dtype=torch.float64)


def conjugate(y_a, y_b):
    """a, b ~ N(0, 1) independently; y_a ~ N(a, 1), y_b ~ N(b, 0.5^2). The posterior is a
    product of Normals, in every family here, so both KLs are minimized exactly there."""
    a = pyro.sample("a", dist.Normal(y_a.new_tensor(0.0), 1.0))
    b = pyro.sample("b", dist.Normal(y_b.new_tensor(0.0), 1.0))
    with pyro.plate("data", N_OBS):
        pyro.sample("y_a", dist.Normal(a, SIGMA[0]), obs=y_a)
        pyro.sample("y_b", dist.Normal(b, SIGMA[1]), obs=y_b)


def conjugate_guide(y_a, y_b):
    loc = pyro.param("loc", torch.zeros(2))
    scale = pyro.param("scale", torch.ones(2), constraint=constraints.positive)
    pyro.sample("a", dist.Normal(loc[0], scale[0]))
    pyro.sample("b", dist.Normal(loc[1], scale[1]))


def _posterior():
    precision = torch.tensor([1 + N_OBS / SIGMA[0] ** 2, 1 + N_OBS / SIGMA[1] ** 2])
    loc = torch.stack([Y_A.sum() / SIGMA[0] ** 2, Y_B.sum() / SIGMA[1] ** 2]) / precision
    return loc, precision.rsqrt()


def _moments(name, guide):
    """The guide's (loc, sd) of (a, b)."""
    store = pyro.get_param_store()
    if name == "hand-written":
        return store["loc"].detach(), store["scale"].detach()
    if name == "AutoNormal":
        locs = torch.stack([guide.locs.a, guide.locs.b])
        return locs.detach(), torch.stack([guide.scales.a, guide.scales.b]).detach()
    if name == "AutoGuideList":
        first, rest = guide[0], guide[1]
        posterior = rest.get_posterior()
        loc = torch.stack([first.locs.a, posterior.mean[0]])
        sd = torch.stack([first.scales.a, posterior.stddev[0]])
        return loc.detach(), sd.detach()
    posterior = guide.get_posterior()
    return posterior.mean.detach(), posterior.variance.sqrt().detach()


CONJUGATE_GUIDES = {
    **{k: v for k, v in GUIDES.items() if k not in ("AutoIAFNormal", "AutoGuideList")},
    "AutoGuideList": lambda m: _conjugate_list(m),
    "hand-written": lambda m: conjugate_guide,
}


def _conjugate_list(model):
    guide = AutoGuideList(model)
    guide.append(AutoNormal(poutine.block(model, expose=["a"])))
    guide.append(AutoDiagonalNormal(poutine.block(model, expose=["b"])))
    return guide


@pytest.mark.slow
@pytest.mark.parametrize("loss_name", ["reverse_kl", "forward_kl"])
@pytest.mark.parametrize("guide_name", list(CONJUGATE_GUIDES))
def test_each_family_reaches_the_conjugate_posterior(guide_name, loss_name):
    post_loc, post_sd = _posterior()
    pyro.set_rng_seed(3)
    guide = CONJUGATE_GUIDES[guide_name](conjugate)
    steps = 500
    optim = pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.05 ** (1 / steps)})
    loss = pyrodiv.get_loss(
        loss_name, num_particles=64, vectorize_particles=True, max_plate_nesting=1
    )
    svi = pyro.infer.SVI(conjugate, guide, optim, loss=loss)
    locs, sds = [], []
    for step in range(steps):
        svi.step(Y_A, Y_B)
        if step >= steps - 150:
            loc, sd = _moments(guide_name, guide)
            locs.append(loc)
            sds.append(sd)
    loc, sd = torch.stack(locs).mean(0), torch.stack(sds).mean(0)
    # Averaged over the last 150 steps of a decaying learning rate; the tolerance (0.1
    # posterior sd for the mean, 8% for the sd) covers the optimizer's jitter and, for the
    # self-normalized forward KL, its O(1/K) bias at K = 64.
    assert (abs(loc - post_loc) < 0.1 * post_sd).all(), (loc, post_loc)
    assert (abs(sd / post_sd - 1) < 0.08).all(), (sd, post_sd)


def test_iaf_guide_trains_with_finite_gradients():
    pyro.set_rng_seed(4)
    guide = AutoIAFNormal(conjugate, hidden_dim=[6])
    for make in (pyrodiv.ReverseKL, pyrodiv.ForwardKL):
        loss = make(num_particles=16, vectorize_particles=True, max_plate_nesting=1)
        svi = pyro.infer.SVI(conjugate, guide, pyro.optim.Adam({"lr": 0.01}), loss=loss)
        before = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
        values = [svi.step(Y_A, Y_B) for _ in range(5)]
        assert all(math.isfinite(v) for v in values)
        for key, value in pyro.get_param_store().items():
            assert torch.isfinite(value).all()
            if key in before:
                assert not torch.equal(value.detach(), before[key])


@pytest.mark.parametrize("vectorize", [True, False])
def test_guide_messengers_are_evaluated_at_p_draws_with_their_own_density(vectorize):
    # AutoNormalMessenger runs the model inside itself; at the prior's draws x_k its density is
    # LogNormal(loc_s, scale_s) x Normal(loc_z, scale_z), so the cross-entropy is exactly
    # -mean_k log q(x_k) over the same draws (same seed).
    from pyro.infer.autoguide import AutoNormalMessenger

    def model():
        pyro.sample("s", dist.LogNormal(0.0, 1.0))
        pyro.sample("z", dist.Normal(1.0, 2.0))

    guide = AutoNormalMessenger(model)
    guide()
    num = 16
    pyro.set_rng_seed(0)
    loss = pyrodiv.CrossEntropy(num_particles=num, vectorize_particles=vectorize)
    value = loss.loss(model, guide)
    pyro.set_rng_seed(0)
    if vectorize:
        loss._guess_max_plate_nesting(model, guide, (), {})
        with pyro.plate("num_particles_vectorized", num, dim=-loss.max_plate_nesting):
            trace = poutine.trace(model).get_trace()
        draws = {k: trace.nodes[k]["value"].reshape(-1) for k in ("s", "z")}
    else:
        traces = [poutine.trace(model).get_trace() for _ in range(num)]
        draws = {k: torch.stack([t.nodes[k]["value"] for t in traces]) for k in ("s", "z")}
    store = pyro.get_param_store()
    loc = {k: store[f"locs.{k}"] for k in ("s", "z")}
    scale = {k: store[f"scales.{k}"] for k in ("s", "z")}
    log_q = dist.LogNormal(loc["s"], scale["s"]).log_prob(draws["s"]) + dist.Normal(
        loc["z"], scale["z"]
    ).log_prob(draws["z"])
    assert math.isclose(value, float(-log_q.detach().mean()), rel_tol=1e-10)
    for name in ("forward_kl", "reverse_kl", "jensen_shannon", "squared_hellinger"):
        assert math.isfinite(pyrodiv.get_loss(name, num_particles=8).loss(model, guide))


@pytest.mark.parametrize("guide_class", [AutoDiagonalNormal, AutoMultivariateNormal])
def test_packed_guides_at_vectorized_p_draws_of_unplated_and_plated_sites(guide_class):
    # A scalar site (value (K, 1)) beside a plated one (value (K, 3)) packs into one latent row
    # per particle; the cross-entropy is then exactly -mean log q over the same draws, with
    # q = the packed Normal over (log s, z) and the Jacobian -log s of s = exp(u).
    def model():
        s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
        with pyro.plate("groups", 3):
            pyro.sample("z", dist.Normal(0.0, s))

    guide = guide_class(model)
    guide()
    num = 16
    loss = pyrodiv.CrossEntropy(num_particles=num, vectorize_particles=True)
    pyro.set_rng_seed(0)
    value = loss.loss(model, guide)
    pyro.set_rng_seed(0)
    with pyro.plate("num_particles_vectorized", num, dim=-loss.max_plate_nesting):
        trace = poutine.trace(model).get_trace()
    s = trace.nodes["s"]["value"].reshape(-1)
    z = trace.nodes["z"]["value"].reshape(num, 3)
    log_q = guide.get_posterior().log_prob(torch.cat([s.log()[:, None], z], -1)) - s.log()
    assert math.isclose(value, float(-log_q.detach().mean()), rel_tol=1e-10)
