"""The flow guide: identity-initialized splines on the whitened Gaussian, and
``approximate(guide="flow")`` on a conjugate model (exact answer) and on a banana (moments by
construction).
"""

import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrodiv.inference.approximate import approximate
from pyrodiv.inference.flow_guide import (
    AutoWhitenedFlow,
    identity_spline,
    identity_spline_coupling,
    rational_quadratic_spline,
)
from pyrodiv.inference.warm_start import AutoWhitenedNormal


def three_sites():
    pyro.sample("a", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    pyro.sample("s", dist.LogNormal(0.0, 1.0))


@pytest.mark.parametrize("layer", [identity_spline, identity_spline_coupling])
def test_the_layers_start_at_the_identity(layer):
    """Exactly inside the inner bins (|x| < 3 of the bound 4, 8 bins); in the edge bins,
    where Pyro fixes the outer knots' derivative at 0.999, within 1e-3."""
    transform = layer(3)
    inner = torch.linspace(-2.9, 2.9, 30).reshape(10, 3)
    y = transform(inner)
    assert torch.allclose(y, inner, atol=1e-12)
    assert float(transform.log_abs_det_jacobian(inner, y).detach().abs().max()) < 1e-10
    edge = torch.linspace(3.0, 3.99, 30).reshape(10, 3)
    assert torch.allclose(transform(edge), edge, atol=1e-3)


@pytest.mark.parametrize("full_rank", [True, False])
def test_the_flow_guide_starts_as_its_gaussian(full_rank):
    """Same whitening and Gaussian parameters: the same log-density at points inside the
    splines' interval (the edge bins' derivative is Pyro's fixed 0.999, so far points
    differ by up to 1e-3)."""
    flow, gaussian = (
        AutoWhitenedFlow(three_sites, full_rank),
        AutoWhitenedNormal(three_sites, full_rank),
    )
    scale_tril = torch.tensor([[1.0, 0.0, 0.0], [0.5, 2.0, 0.0], [0.1, 0.2, 0.3]])
    for guide in (flow, gaussian):
        guide._setup_prototype()
        guide.set_whitening(torch.tensor([1.0, 2.0, 3.0]), scale_tril)
        with torch.no_grad():
            guide.loc.copy_(torch.tensor([0.3, -0.2, 0.1]))
    posterior = gaussian.get_posterior()
    # whitened draws inside the splines' interval [-4, 4], from a fixed generator
    eps = torch.randn(50, 3, generator=torch.Generator().manual_seed(0)).clamp(-3.5, 3.5)
    if full_rank:
        z = posterior.loc + (posterior.scale_tril @ eps[..., None])[..., 0]
    else:
        z = posterior.base_dist.loc + posterior.base_dist.scale * eps
    expected = posterior.log_prob(z)
    assert torch.allclose(flow.get_posterior().log_prob(z), expected, atol=1e-3)


def normal_normal(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu, 2.0), obs=y)


def test_a_flow_on_a_gaussian_posterior_stays_exact():
    """200 flow steps after the Gaussian stages: 4000 draws have the exact posterior mean
    within 4 Monte Carlo standard errors plus 0.1 sd, and its sd within 10%."""
    torch.manual_seed(1)
    y = 3.0 + 2.0 * torch.randn(20)
    precision = 1 / 10.0**2 + len(y) / 2.0**2
    mean, sd = float(y.sum() / 2.0**2 / precision), precision**-0.5
    fit = approximate(
        normal_normal, y, divergence="reverse_kl", guide="flow", flow_steps=200,
        khat_draws=200, progress=False,
    )  # fmt: skip
    assert isinstance(fit.guide, AutoWhitenedFlow)
    assert [s.name for s in fit.stages][-3:] == ["khat", "flow", "khat (flow)"]
    draws = fit.to_inference_data(num_samples=4000).posterior["mu"].values.ravel()
    assert abs(draws.mean() - mean) < 4 * sd / math.sqrt(4000) + 0.1 * sd
    assert abs(draws.std() / sd - 1) < 0.1
    assert fit.khat < 0.5


def banana():
    """z1 ~ N(0, 1), z2 | z1 ~ N(z1^2, 0.5^2), written as a posterior (priors cancelled by a
    factor): E z2 = 1, sd(z2) = sqrt(2 + 0.25) = 1.5."""
    z1 = pyro.sample("z1", dist.Normal(0.0, 3.0))
    z2 = pyro.sample("z2", dist.Normal(0.0, 10.0))
    log_target = dist.Normal(0.0, 1.0).log_prob(z1) + dist.Normal(z1**2, 0.5).log_prob(z2)
    log_prior = dist.Normal(0.0, 3.0).log_prob(z1) + dist.Normal(0.0, 10.0).log_prob(z2)
    pyro.factor("banana", log_target - log_prior)


@pytest.mark.slow
def test_a_flow_bends_to_a_banana_where_the_gaussian_cannot():
    """Reverse KL: the full-rank Gaussian is too narrow (sds 0.46 and 0.48 against the exact
    1 and 1.5); 1000 flow steps widen it to 0.81 to 0.83 and 0.90 to 0.92 (seeds 0 and 1).
    Asserted: both sds are closer to the exact ones than the Gaussian's, by 0.2 or more. (The
    k-hat is not asserted: it stays above 0.7 under reverse KL, whose flow still misses the
    banana's tails; see docs/approximate.md.)"""
    sds = {}
    for guide in ("auto", "flow"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = approximate(
                banana, divergence="reverse_kl", guide=guide, flow_steps=1000, flow_lr=0.01,
                khat_draws=0, progress=False,
            )  # fmt: skip
        post = fit.to_inference_data(num_samples=4000).posterior
        sds[guide] = (post["z1"].values.std(), post["z2"].values.std())
    for exact, gaussian, flow in zip((1.0, 1.5), sds["auto"], sds["flow"], strict=True):
        assert abs(flow - exact) < abs(gaussian - exact) - 0.2


def test_a_flow_without_an_inverse_is_named_where_p_draws_need_its_log_q():
    import functools

    import pyro.distributions.transforms as T
    from pyro.infer.autoguide import AutoNormalizingFlow

    import pyrodiv

    def model():
        pyro.sample("x", dist.Normal(0.0, 3.0))

    guide = AutoNormalizingFlow(model, functools.partial(T.iterated, 2, T.planar))
    with pytest.raises(ValueError, match="forward KL: the guide has a transform with no inverse"):
        pyrodiv.ForwardKL(num_particles=4, vectorize_particles=True).loss(model, guide)
    # reverse KL scores Q's own draws: it trains
    assert math.isfinite(pyrodiv.ReverseKL(num_particles=4).loss(model, guide))


def test_the_guarded_inverse_matches_the_splines_inverse_and_its_gradients(monkeypatch):
    """Where Pyro's quadratic inverse asserts (a negative discriminant in rounding), the
    bisection-and-Newton inverse takes over: on a random spline it equals the analytic inverse
    and log-Jacobian to 1e-12, and so do their gradients in every spline parameter."""
    import importlib

    spline_module = importlib.import_module("pyro.distributions.transforms.spline")
    torch.manual_seed(0)
    spline = identity_spline(3)
    with torch.no_grad():
        for p in spline.parameters():
            p.add_(torch.randn_like(p))
    y = 3.0 * torch.randn(50, 3)  # inside and outside the bound 4
    expected = spline.spline_op(y, inverse=True)
    original = spline_module._monotonic_rational_spline

    def asserting(inputs, *args, inverse=False, **kwargs):
        assert not inverse
        return original(inputs, *args, inverse=inverse, **kwargs)

    monkeypatch.setattr(spline_module, "_monotonic_rational_spline", asserting)
    guarded = spline.spline_op(y, inverse=True)
    for a, b in zip(expected, guarded, strict=True):
        assert torch.allclose(a, b, atol=1e-12)
        for p in spline.parameters():
            ga = torch.autograd.grad(a.sum(), p, retain_graph=True)[0]
            gb = torch.autograd.grad(b.sum(), p, retain_graph=True)[0]
            assert torch.allclose(ga, gb, atol=1e-10)


def _moved_spline(dim, seed=0):
    """An element-wise spline and a spline coupling away from the identity."""
    generator = torch.Generator().manual_seed(seed)
    layers = [identity_spline(dim), identity_spline_coupling(dim)]
    with torch.no_grad():
        for layer in layers:
            for p in layer.parameters():
                p.add_(0.5 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return layers


def test_the_where_spline_is_pyros_spline_inside_and_outside_its_bound():
    spline, coupling = _moved_spline(3)
    x = torch.tensor([[-6.0, -3.99, 0.3], [0.0, 2.5, 4.5], [-1.2, 3.999, 7.0]])
    for layer, inputs in ((spline, x), (coupling.upper_spline.condition(x[:, :1]), x[:, 1:])):
        want_y, want_log = layer.spline_op(inputs)
        y, log_derivative = rational_quadratic_spline(layer, inputs)
        assert torch.allclose(y, want_y, atol=1e-6)
        assert torch.allclose(log_derivative, want_log, atol=1e-5)
    assert (y[:, -1][x[:, -1].abs() > 4] == x[:, -1][x[:, -1].abs() > 4]).all()  # identity


@pytest.mark.parametrize("full_rank", [True, False])
def test_log_q_at_its_own_detached_draw_is_the_inverse_flows_with_its_gradient(full_rank):
    """The Newton step from the known root gives Pyro's log q(z) (which inverts every
    spline by the quadratic formula) and its gradient in the parameters at fixed z."""
    guide = AutoWhitenedFlow(three_sites, full_rank=full_rank)
    guide._setup_prototype()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in guide.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    params = list(guide.parameters())
    pyro.set_rng_seed(2)
    z, log_q = guide.get_posterior().expand((32,)).rsample_and_log_prob(detached=True)
    assert not z.requires_grad
    want = guide.get_posterior().log_prob(z)
    assert torch.allclose(log_q, want, rtol=1e-10, atol=1e-8)
    got = torch.autograd.grad(log_q.sum(), params, materialize_grads=True, allow_unused=True)
    wanted = torch.autograd.grad(want.sum(), params, materialize_grads=True, allow_unused=True)
    for a, b in zip(got, wanted, strict=True):
        assert torch.allclose(a, b, rtol=1e-7, atol=1e-8)
    pyro.set_rng_seed(2)
    z_path, log_q_path = guide.get_posterior().expand((32,)).rsample_and_log_prob()
    assert torch.equal(z_path.detach(), z) and z_path.requires_grad
    assert torch.allclose(log_q_path, want, rtol=1e-10, atol=1e-8)
