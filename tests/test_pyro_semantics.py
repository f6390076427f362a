"""Pyro semantics in every loss: plates (nested, subsampled), pyro.factor, obs_mask,
poutine.scale and mask, enumeration, point-mass guides, non-finite data, huge log-weights,
sequential vs vectorized particles, dtype and device.

Per-particle log-densities are compared with hand computations at the guide's own draws
(recorded by the guide), to 1e-10. Statistical checks state their tolerance in standard
errors estimated from repeated seeds.
"""

import math
from contextlib import contextmanager

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer.autoguide import (
    AutoDelta,
    AutoGuideList,
    AutoLaplaceApproximation,
    AutoNormal,
)
from torch.distributions import constraints

import pyrodiv
from pyrodiv.divergences.site_checks import point_mass_sites

#: Every loss on a posterior target (CrossEntropy refuses those), by its name for
#: :func:`pyrodiv.get_loss`: the named losses, then f-divergences of each kind (power family:
#: Hellinger, Neyman, both KLs as generators; not: total variation).
POSTERIOR_LOSSES = [
    "reverse_kl",
    "forward_kl",
    "jensen_shannon",
    "squared_hellinger",
    "total_variation",
    "neyman",
    "kl_forward",
    "kl_reverse",
]
#: ... and on a prior target.
PRIOR_LOSSES = [*POSTERIOR_LOSSES, "cross_entropy"]


def _normal(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - math.log(scale) - 0.5 * math.log(2 * math.pi)


def _store_params():
    return [p.unconstrained() for p in pyro.get_param_store().values()]


def _value_and_grads(loss, model, guide, *args):
    surrogate = loss.differentiable_loss(model, guide, *args)
    return surrogate.detach(), torch.autograd.grad(surrogate, _store_params(), allow_unused=True)


def _repeat(loss, model, guide, args, reps, seed0=0):
    """Mean and standard error over ``reps`` seeds of the value and the flat gradient."""
    values, grads = [], []
    for seed in range(seed0, seed0 + reps):
        pyro.set_rng_seed(seed)
        value, grad = _value_and_grads(loss, model, guide, *args)
        values.append(value)
        grads.append(torch.cat([g.reshape(-1) for g in grad]))
    values, grads = torch.stack(values), torch.stack(grads)
    return values.mean(), values.std() / reps**0.5, grads.mean(0), grads.std(0) / reps**0.5


def _particles_with_draws(model, make_guide, args, vectorize, max_plate_nesting, widths):
    """Five ReverseKL particles ``(log p, log q, score)`` and the guide's recorded draws, one
    row per particle: draw ``i`` flattened to ``widths[i]`` columns (``None``: a scalar)."""
    draws = []
    guide = make_guide(draws)
    loss = pyrodiv.ReverseKL(
        num_particles=5, vectorize_particles=vectorize, max_plate_nesting=max_plate_nesting
    )
    lp, lq, score = loss.particles(model, guide, args, {})
    if vectorize:  # the first vectorized run is followed by its one-particle check
        del draws[1:]
    columns = [
        torch.cat([d[i].reshape(-1) if w is None else d[i].reshape(-1, w) for d in draws])
        for i, w in enumerate(widths)
    ]
    assert all(c.shape[0] == 5 for c in columns)
    return lp, lq, score, columns


# ---- nested plates ----------------------------------------------------------------------

Y_NESTED = torch.tensor(
    [[0.3, -1.2, 0.8, 2.0], [1.1, -0.4, 0.2, 1.5], [0.6, -0.9, 1.4, 1.7]], dtype=torch.float64
)


def nested_model(y):
    mu = pyro.sample("mu", dist.Normal(y.new_tensor(0.0), 1.0))
    with pyro.plate("groups", 4, dim=-1):
        g = pyro.sample("g", dist.Normal(mu, 0.5))
        with pyro.plate("items", 3, dim=-2):
            pyro.sample("y", dist.Normal(g, 1.0), obs=y)


def make_nested_guide(draws):
    def guide(y):
        mu_loc = pyro.param("mu_loc", torch.tensor(0.4))
        g_loc = pyro.param("g_loc", torch.tensor([0.1, -0.5, 0.7, 1.2]))
        mu = pyro.sample("mu", dist.Normal(mu_loc, 0.7))
        with pyro.plate("groups", 4, dim=-1):
            g = pyro.sample("g", dist.Normal(g_loc, 0.3))
        draws.append((mu.detach(), g.detach()))

    return guide


@pytest.mark.parametrize("vectorize", [False, True])
def test_nested_plates_sum_every_site_per_particle(vectorize):
    pyro.set_rng_seed(0)
    lp, lq, score, (mu, g) = _particles_with_draws(
        nested_model, make_nested_guide, (Y_NESTED,), vectorize, 2, (None, 4)
    )
    hand_lp = (
        _normal(mu, 0.0, 1.0)
        + _normal(g, mu[:, None], 0.5).sum(-1)
        + _normal(Y_NESTED, g[:, None, :], 1.0).sum((-1, -2))
    )
    mu_loc, g_loc = (p.detach() for p in pyro.get_param_store().values())
    hand_lq = _normal(mu, mu_loc, 0.7) + _normal(g, g_loc, 0.3).sum(-1)
    assert torch.allclose(lp, hand_lp, rtol=1e-10) and torch.allclose(lq, hand_lq, rtol=1e-10)
    assert score is None  # everything is reparameterized


# ---- plate subsampling ------------------------------------------------------------------

N_DATA, N_SUB = 40, 8
Y_FULL = 1.0 + torch.linspace(-2.0, 2.0, N_DATA, dtype=torch.float64) ** 3


def subsampled_model(y, subsample_size=None, indices=None):
    z = pyro.sample("z", dist.Normal(y.new_tensor(0.0), 3.0))
    with pyro.plate("data", y.shape[0], subsample_size=subsample_size) as idx:
        if indices is not None:
            indices.append(idx)
        pyro.sample("y", dist.Normal(z, 1.5), obs=y[idx])


def normal_guide(y, *args, **kwargs):
    loc = pyro.param("loc", torch.tensor(0.5))
    scale = pyro.param("scale", torch.tensor(0.4), constraint=constraints.positive)
    return pyro.sample("z", dist.Normal(loc, scale))


def fixed_draw_guide(y, *args, **kwargs):
    """The same draws of z at every call (its own seed), whatever the model's subsample."""
    with torch.random.fork_rng():
        torch.manual_seed(123)
        return normal_guide(y)


def test_subsampled_log_p_is_scaled_by_n_over_subsample_size():
    indices, draws = [], []

    def guide(y, *args, **kwargs):
        draws.append(normal_guide(y).detach())

    loss = pyrodiv.ReverseKL(num_particles=6, vectorize_particles=True, max_plate_nesting=1)
    pyro.set_rng_seed(1)
    lp, _, _ = loss.particles(subsampled_model, guide, (Y_FULL, N_SUB, indices), {})
    # the vectorized run comes first; its one-particle check reuses the same subsample
    assert all(torch.equal(i, indices[0]) for i in indices)
    (idx,), z = indices[:1], draws[0].reshape(-1)
    assert idx.shape == (N_SUB,) and len(set(idx.tolist())) == N_SUB
    hand = _normal(z, 0.0, 3.0) + N_DATA / N_SUB * _normal(Y_FULL[idx], z[:, None], 1.5).sum(-1)
    assert torch.allclose(lp, hand, rtol=1e-10)


@pytest.mark.parametrize("vectorize", [False, True])
def test_subsampled_reverse_kl_is_unbiased_for_the_full_data_loss(vectorize):
    # The guide's draws are fixed, so the only randomness is the subsample: its average over
    # many subsamples must match the full-data loss and gradient within 4 standard errors
    # (estimated from the subsample draws).
    loss = pyrodiv.ReverseKL(num_particles=2, vectorize_particles=vectorize, max_plate_nesting=1)
    full_value, full_grads = _value_and_grads(loss, subsampled_model, fixed_draw_guide, Y_FULL)
    full_grad = torch.stack(full_grads)
    value, value_se, grad, grad_se = _repeat(
        loss, subsampled_model, fixed_draw_guide, (Y_FULL, N_SUB), reps=300
    )
    assert value_se > 0.1  # the subsample does move the estimate
    assert abs(value - full_value) < 4 * value_se
    assert (abs(grad - full_grad) < 4 * grad_se).all()


def local_model(y, subsample_size=None):
    z = pyro.sample("z", dist.Normal(y.new_tensor(0.0), 3.0))
    with pyro.plate("data", y.shape[0], subsample_size=subsample_size) as idx:
        x = pyro.sample("x", dist.Normal(z, 1.0))
        pyro.sample("y", dist.Normal(x, 1.0), obs=y[idx])


def local_guide(y, subsample_size=None):
    normal_guide(y)
    x_loc = pyro.param("x_loc", torch.zeros(y.shape[0]))
    with pyro.plate("data", y.shape[0], subsample_size=subsample_size) as idx:
        pyro.sample("x", dist.Normal(x_loc[idx], 0.8))


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("name", POSTERIOR_LOSSES)
def test_every_loss_runs_on_subsampled_local_latents(name, vectorize):
    # Self-normalized losses (all but reverse KL) are biased under subsampling: their
    # log-weights are themselves scaled estimates, and they enter nonlinearly. They must still
    # run and give finite values and gradients.
    loss = pyrodiv.get_loss(name, num_particles=8, vectorize_particles=vectorize)
    pyro.set_rng_seed(2)
    value, grads = _value_and_grads(loss, local_model, local_guide, Y_FULL, N_SUB)
    assert torch.isfinite(value)
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # Only the subsampled entries of the local parameter get a gradient: one subsample per
    # vectorized batch, one per particle sequentially.
    x_grad = grads[list(pyro.get_param_store().keys()).index("x_loc")]
    assert 0 < (x_grad != 0).sum() <= (N_SUB if vectorize else 8 * N_SUB)


# ---- pyro.factor, obs_mask, poutine.scale, poutine.mask ----------------------------------

Y_MASKED = torch.tensor([0.1, 0.5, -0.3, 1.2], dtype=torch.float64)
OBS_MASK = torch.tensor([True, False, True, False])


def scaled_model(y):
    z = pyro.sample("z", dist.Normal(y.new_tensor(0.0), 1.0))
    with pyro.plate("data", 4):
        pyro.sample("y", dist.Normal(z, 1.0), obs=y, obs_mask=OBS_MASK)
    with poutine.scale(scale=0.5):
        pyro.sample("w", dist.Normal(z, 2.0), obs=y.new_tensor(0.7))
        pyro.factor("penalty", -0.3 * z**2)
    with poutine.mask(mask=False):
        pyro.sample("ignored", dist.Normal(z, 1.0), obs=y.new_tensor(5.0))
    pyro.factor("bonus", 0.25 * z)


def make_scaled_guide(draws):
    def guide(y):
        z = pyro.sample("z", dist.Normal(pyro.param("z_loc", torch.tensor(0.2)), 0.9))
        with pyro.plate("data", 4):
            y_missing = pyro.sample(
                "y_unobserved",
                dist.Normal(pyro.param("y_loc", torch.zeros(4)), 0.5).mask(~OBS_MASK),
            )
        draws.append((z.detach(), y_missing.detach()))

    return guide


@pytest.mark.parametrize("vectorize", [False, True])
def test_factor_obs_mask_scale_and_mask_enter_log_p_exactly(vectorize):
    pyro.set_rng_seed(3)
    lp, lq, _, (z, y_missing) = _particles_with_draws(
        scaled_model, make_scaled_guide, (Y_MASKED,), vectorize, 1, (None, 4)
    )
    filled = torch.where(OBS_MASK, Y_MASKED, y_missing)
    hand_lp = (
        _normal(z, 0.0, 1.0)
        + _normal(filled, z[:, None], 1.0).sum(-1)  # observed entries and imputed ones
        + 0.5 * (_normal(0.7, z, 2.0) - 0.3 * z**2)  # poutine.scale on a site and a factor
        + 0.25 * z  # the masked site contributes nothing
    )
    z_loc, y_loc = (p.detach() for p in pyro.get_param_store().values())
    hand_lq = _normal(z, z_loc, 0.9) + torch.where(
        OBS_MASK, 0.0, _normal(y_missing, y_loc, 0.5)
    ).sum(-1)
    assert torch.allclose(lp, hand_lp, rtol=1e-10) and torch.allclose(lq, hand_lq, rtol=1e-10)


def factor_only_model():
    z = pyro.sample("z", dist.Normal(torch.tensor(0.0), 1.0))
    pyro.factor("likelihood", -0.5 * (z - 1.0) ** 2)


def test_a_model_with_only_a_factor_is_a_posterior_target():
    assert pyrodiv.ForwardKL().target_kind(factor_only_model, (), {}) == "posterior"
    with pytest.raises(ValueError, match="posterior target"):
        pyrodiv.CrossEntropy().loss(factor_only_model, lambda: normal_guide(None))


# ---- point-mass guides -------------------------------------------------------------------


def two_site_model():
    a = pyro.sample("a", dist.Normal(torch.tensor(0.0), 1.0))
    pyro.sample("b", dist.LogNormal(a, 0.5))


def two_site_posterior():
    two_site_model()
    pyro.sample("obs", dist.Normal(torch.tensor(0.0), 1.0), obs=torch.tensor(0.3))


def delta_guide():
    pyro.sample("a", dist.Normal(pyro.param("a_loc", torch.tensor(0.0)), 1.0))
    pyro.sample("b", dist.Delta(pyro.param("b_map", torch.tensor(1.0))))


def _autodelta(model):
    return AutoDelta(model)


def _list_with_autodelta(model):
    guide = AutoGuideList(model)
    guide.append(AutoNormal(poutine.block(model, expose=["a"])))
    guide.append(AutoDelta(poutine.block(model, hide=["a"])))
    return guide


@pytest.mark.parametrize("model", [two_site_model, two_site_posterior], ids=["prior", "post"])
@pytest.mark.parametrize(
    "make_guide,site",
    [
        (_autodelta, "a"),
        (_list_with_autodelta, "b"),
        (lambda m: delta_guide, "b"),
        (AutoLaplaceApproximation, "_AutoLaplaceApproximation_latent"),
    ],
    ids=["AutoDelta", "AutoGuideList", "hand-written", "AutoLaplaceApproximation"],
)
@pytest.mark.parametrize("vectorize", [False, True])
def test_point_mass_guides_are_refused_naming_the_site(model, make_guide, site, vectorize):
    guide = make_guide(model)
    guide()
    losses = PRIOR_LOSSES if model is two_site_model else POSTERIOR_LOSSES
    for name in losses:
        loss = pyrodiv.get_loss(name, num_particles=4, vectorize_particles=vectorize)
        with pytest.raises(ValueError, match=f"guide site '{site}' is a point mass"):
            loss.loss(model, guide)


def test_deltas_with_a_density_are_not_point_masses():
    # AutoNormal's sites are Deltas carrying the density of their auxiliary draws; a
    # hand-written guide following the same pattern; a Delta on a discrete site.
    guide = AutoNormal(two_site_model)
    assert point_mass_sites(guide, poutine.trace(guide).get_trace()) == []

    def transformed_guide():
        u = pyro.sample("u", dist.Normal(torch.tensor(0.0), 1.0), infer={"is_auxiliary": True})
        pyro.sample("a", dist.Delta(u))

    assert point_mass_sites(transformed_guide, poutine.trace(transformed_guide).get_trace()) == []

    def discrete_model():
        pyro.sample("k", dist.Categorical(torch.ones(3)))

    def discrete_delta():
        pyro.sample("k", dist.Delta(torch.tensor(1.0)))

    model_trace = poutine.trace(discrete_model).get_trace()
    guide_trace = poutine.trace(discrete_delta).get_trace()
    assert point_mass_sites(discrete_delta, guide_trace, model_trace) == []
    assert point_mass_sites(discrete_delta, guide_trace) == ["k"]


def test_an_implicit_guide_with_auxiliary_noise_is_a_point_mass():
    # z = net(eps) with eps of 2 entries and z of 1: the map has no density, whatever the
    # is_auxiliary flag says; a simplex Delta of 3 entries fed by 2 auxiliary entries (its
    # unconstrained size) keeps its density.
    net = torch.nn.Linear(2, 1)

    def implicit():
        eps = pyro.sample(
            "eps", dist.Normal(torch.zeros(2), 1.0).to_event(1), infer={"is_auxiliary": True}
        )
        pyro.sample("z", dist.Delta(net(eps)[..., 0]))

    def model():
        pyro.sample("z", dist.Normal(0.0, 1.0))

    guide_trace = poutine.trace(implicit).get_trace()
    assert point_mass_sites(implicit, guide_trace, poutine.trace(model).get_trace()) == ["z"]
    with pytest.raises(ValueError, match="guide site 'z' is a point mass"):
        pyrodiv.ReverseKL(num_particles=4).loss(model, implicit)

    def simplex_model():
        pyro.sample("w", dist.Dirichlet(torch.ones(3)))

    def stick_breaking():
        u = pyro.sample(
            "u", dist.Normal(torch.zeros(2), 1.0).to_event(1), infer={"is_auxiliary": True}
        )
        transform = dist.transforms.StickBreakingTransform()
        w = transform(u)
        pyro.sample("w", dist.Delta(w, -transform.log_abs_det_jacobian(u, w), event_dim=1))

    guide_trace = poutine.trace(stick_breaking).get_trace()
    model_trace = poutine.trace(simplex_model).get_trace()
    assert point_mass_sites(stick_breaking, guide_trace, model_trace) == []


# ---- enumeration -------------------------------------------------------------------------

Y_SWITCH = torch.tensor([0.9, 1.4, 0.2], dtype=torch.float64)


def switch_model(y, enumerate_k=False):
    infer = {"enumerate": "parallel"} if enumerate_k else {}
    k = pyro.sample("k", dist.Bernoulli(y.new_tensor(0.3)), infer=infer)
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Normal(2.0 * k - 1.0, 1.0), obs=y)


def switch_guide(y, enumerate_k=False):
    logit = pyro.param("logit", torch.tensor(0.2))
    pyro.sample("k", dist.Bernoulli(logits=logit))


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("name", POSTERIOR_LOSSES)
def test_enumeration_marks_on_sampled_sites_change_nothing(name, vectorize):
    # The guide samples k: marks on the model's site and config_enumerate on the guide leave
    # the draws, the value and the gradient exactly as without them.
    switch_guide(Y_SWITCH)
    loss = pyrodiv.get_loss(name, num_particles=6, vectorize_particles=vectorize)
    pyro.set_rng_seed(4)
    plain = _value_and_grads(loss, switch_model, switch_guide, Y_SWITCH)
    pyro.set_rng_seed(4)
    marked = _value_and_grads(
        loss, switch_model, pyro.infer.config_enumerate(switch_guide), Y_SWITCH, True
    )
    assert torch.allclose(plain[0], marked[0], rtol=1e-12)
    assert torch.allclose(plain[1][0], marked[1][0], rtol=1e-10)


# ---- non-finite data and log-densities ---------------------------------------------------


def data_model(y):
    z = pyro.sample("z", dist.Normal(y.new_tensor(0.0), 1.0))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Normal(z, 1.0), obs=y)


def bounded_model(y):
    z = pyro.sample("z", dist.Normal(y.new_tensor(0.0), 1.0))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Uniform(z - 1.0, z + 1.0), obs=y)


def inf_factor_model(y):
    data_model(y)
    pyro.factor("bad", y.new_tensor(float("-inf")))


@pytest.mark.parametrize("validation", [True, False])
@pytest.mark.parametrize(
    "model,y,site",
    [
        (data_model, torch.tensor([0.1, float("nan"), 0.3]), "y"),
        (data_model, torch.tensor([0.1, float("inf"), 0.3]), "y"),
        (bounded_model, torch.tensor([0.1, 40.0, 0.3]), "y"),
        (inf_factor_model, torch.tensor([0.1, 0.2, 0.3]), "bad"),
    ],
    ids=["nan-data", "inf-data", "outside-support", "inf-factor"],
)
@pytest.mark.parametrize("name", ["reverse_kl", "forward_kl", "jensen_shannon", "neyman"])
def test_non_finite_data_stops_before_any_parameter_moves(name, model, y, site, validation):
    pyro.enable_validation(validation)
    y = y.to(torch.float64)
    normal_guide(y)
    before = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    loss = pyrodiv.get_loss(name, num_particles=4, vectorize_particles=True)
    svi = pyro.infer.SVI(model, normal_guide, pyro.optim.Adam({"lr": 0.1}), loss=loss)
    with pytest.raises(ValueError, match=f"site '{site}'"):
        svi.step(y)
    for key, value in pyro.get_param_store().items():
        assert torch.equal(value.detach(), before[key])


def test_non_finite_guide_log_density_is_named():
    pyro.enable_validation(False)

    def bad_guide(y):
        pyro.sample("z", dist.Normal(pyro.param("loc", torch.tensor(0.0)), -1.0))

    for name in POSTERIOR_LOSSES:
        with pytest.raises(ValueError, match="guide site 'z'"):
            pyrodiv.get_loss(name, num_particles=4).loss(data_model, bad_guide, Y_SWITCH)


def test_unvectorizable_models_fall_back_to_a_loop_with_one_warning():
    def model(y):
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        with pyro.plate("data", y.shape[0]):
            pyro.sample("y", dist.Normal(z[..., 0:1] + z[..., 1:2], 1.0), obs=y)

    guide = AutoNormal(model)
    guide(Y_SWITCH)
    loss = pyrodiv.ReverseKL(num_particles=8, vectorize_particles=True, max_plate_nesting=1)
    with pytest.warns(RuntimeWarning, match=r"does not vectorize over particles \(model site 'y'"):
        loss.loss(model, guide, Y_SWITCH)
    # From then on the particles run one at a time: the same value as a sequential loss.
    pyro.set_rng_seed(3)
    fallen_back = loss.loss(model, guide, Y_SWITCH)
    pyro.set_rng_seed(3)
    sequential = pyrodiv.ReverseKL(num_particles=8, max_plate_nesting=1).loss(
        model, guide, Y_SWITCH
    )
    assert fallen_back == sequential


# ---- huge log-weights --------------------------------------------------------------------


def shifted_model(y, offset=0.0):
    data_model(y)
    if offset:
        pyro.factor("big", y.new_tensor(offset))


@pytest.mark.parametrize("offset", [1e4, -1e4])
@pytest.mark.parametrize("name", POSTERIOR_LOSSES)
def test_log_weights_of_magnitude_1e4_shift_nothing_but_the_reverse_kl_value(name, offset):
    normal_guide(Y_SWITCH)
    loss = pyrodiv.get_loss(name, num_particles=16, vectorize_particles=True)
    pyro.set_rng_seed(5)
    base_value, base_grads = _value_and_grads(loss, shifted_model, normal_guide, Y_SWITCH)
    pyro.set_rng_seed(5)
    value, grads = _value_and_grads(loss, shifted_model, normal_guide, Y_SWITCH, offset)
    assert torch.isfinite(value) and all(torch.isfinite(g).all() for g in grads)
    # The reverse KL is the negative ELBO, linear in log p: its value moves by -offset. Every
    # other loss is self-normalized and moves by nothing beyond rounding of 1e4-sized sums.
    shift = -offset if name == "reverse_kl" else 0.0
    assert float(value) == pytest.approx(float(base_value) + shift, abs=1e-8)
    for a, b in zip(base_grads, grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-9)


# ---- sequential and vectorized particles on a posterior target ---------------------------


@pytest.mark.parametrize("name", POSTERIOR_LOSSES)
def test_sequential_and_vectorized_particles_agree_on_a_posterior(name):
    normal_guide(Y_SWITCH)
    results = []
    for vectorize in [False, True]:
        loss = pyrodiv.get_loss(name, num_particles=8, vectorize_particles=vectorize)
        results.append(_repeat(loss, data_model, normal_guide, (Y_SWITCH,), reps=40))
    (v1, s1, g1, gs1), (v2, s2, g2, gs2) = results
    # The same estimator (same K, so the same O(1/K) bias) drawn two ways: the difference of
    # the means is within 4 combined standard errors (estimated from 40 seeds each).
    assert abs(v1 - v2) < 4 * math.hypot(s1, s2)
    assert (abs(g1 - g2) < 4 * (gs1**2 + gs2**2).sqrt()).all()


# ---- dtype and device --------------------------------------------------------------------


@contextmanager
def default_dtype(dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _device_models(device):
    y = torch.tensor([0.3, 1.1, 0.8], device=device)

    def prior():
        pyro.sample("z", dist.Normal(torch.tensor(0.5, device=device), 1.5))

    def posterior():
        z = pyro.sample("z", dist.Normal(torch.tensor(0.0, device=device), 1.0))
        with pyro.plate("data", 3, device=device):
            pyro.sample("y", dist.Normal(z, 1.0), obs=y)

    def guide():
        loc = pyro.param("loc", torch.tensor(0.2, device=device))
        scale = pyro.param(
            "scale", torch.tensor(1.2, device=device), constraint=constraints.positive
        )
        pyro.sample("z", dist.Normal(loc, scale))

    return prior, posterior, guide


def _check_losses_follow_the_program(device, dtype):
    prior, posterior, guide = _device_models(device)
    for model, losses in [(prior, PRIOR_LOSSES), (posterior, POSTERIOR_LOSSES)]:
        for vectorize in [False, True]:
            for name in losses:
                pyro.set_rng_seed(6)
                loss = pyrodiv.get_loss(name, num_particles=8, vectorize_particles=vectorize)
                value, grads = _value_and_grads(loss, model, guide)
                assert value.dtype == dtype and value.device.type == device
                assert torch.isfinite(value)
                for g in grads:
                    assert g.dtype == dtype and g.device.type == device
                    assert torch.isfinite(g).all()


def test_float32_programs_give_float32_estimates():
    with default_dtype(torch.float32):
        _check_losses_follow_the_program("cpu", torch.float32)


@pytest.mark.cuda
def test_cuda_programs_give_cuda_estimates():
    _check_losses_follow_the_program("cuda", torch.float64)
