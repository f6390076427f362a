"""Each generator against 1-D quadrature of E_Q[f(p/q)], and its log-space stability."""

import math

import pyro.distributions as dist
import pytest
import torch

import pyrodiv
from pyrodiv import GENERATOR_NAMES, get_generator
from pyrodiv.divergences.quadrature import divergence

PARAMS = {"amari_alpha": {"alpha": 0.5}, "t_power": {"power": 2.0}}
ALL = [(name, PARAMS.get(name, {})) for name in GENERATOR_NAMES] + [
    ("amari_alpha", {"alpha": 2.0}),
    ("amari_alpha", {"alpha": -0.5}),
    ("t_power", {"power": 0.5}),
]


def _cases():
    # Q's variance lies within (0.75, 1.5) of P's (component) variance, so that every f here,
    # including t^2 and 1/t, has a finite Monte Carlo variance under Q.
    normal_p = dist.Normal(torch.tensor(0.0), torch.tensor(1.0))
    normal_q = dist.Normal(torch.tensor(0.3), torch.tensor(1.1))
    mixture_p = dist.MixtureSameFamily(
        dist.Categorical(torch.tensor([0.5, 0.5])),
        dist.Normal(torch.tensor([-1.0, 1.0]), torch.tensor([1.0, 1.0])),
    )
    mixture_q = dist.Normal(torch.tensor(0.2), torch.tensor(1.4))
    return {"two normals": (normal_p, normal_q), "normal vs mixture": (mixture_p, mixture_q)}


@pytest.mark.parametrize("case", ["two normals", "normal vs mixture"])
@pytest.mark.parametrize("name,params", ALL, ids=lambda x: str(x))
def test_monte_carlo_matches_quadrature(name, params, case):
    p, q = _cases()[case]
    f = get_generator(name, **params)
    exact = divergence(f, p.log_prob, q.log_prob)
    torch.manual_seed(0)
    x = q.sample((100_000,))
    values = f(p.log_prob(x) - q.log_prob(x))
    estimate = values.mean()
    standard_error = values.std() / math.sqrt(values.numel())
    # An unbiased estimate: within 4 standard errors (two-sided p ~ 6e-5 per test).
    assert abs(estimate - exact) < 4 * standard_error + 1e-12


@pytest.mark.parametrize("name,params", ALL, ids=lambda x: str(x))
def test_generator_is_zero_at_one_and_finite_in_log_space(name, params):
    f = get_generator(name, **params)
    assert float(f(torch.tensor(0.0))) == pytest.approx(0.0, abs=1e-15)
    extremes = f(torch.tensor([-1e4, -700.0, 700.0, 1e4]))
    assert not torch.isnan(extremes).any()
    # -inf only where f itself is unbounded below (concave powers 0 < alpha < 1 as t -> inf).
    assert not torch.isneginf(extremes[:3]).any()
    # Strict convexity around t = 1: f(t) > f(1) + f'(1)(t - 1) for t != 1.
    logu = torch.tensor([-0.5, 0.5], requires_grad=True)
    values = f(logu)
    t = logu.detach().exp()
    g0 = torch.zeros(1, requires_grad=True)
    (d_logu,) = torch.autograd.grad(f(g0).sum(), g0)  # f'(1) since dt/dlogu = 1 at t = 1
    assert (values.detach() > d_logu * (t - 1)).all()


def test_closed_forms_of_named_generators():
    logu = torch.tensor(math.log(3.0))
    expected = {
        "kl_forward": 3 * math.log(3),
        "kl_reverse": -math.log(3),
        "squared_hellinger": (math.sqrt(3) - 1) ** 2,
        "total_variation": 1.0,
        "pearson": 4.0,
        "neyman": 1 / 3 - 1,
        "jeffreys": 2 * math.log(3),
        "triangular": 1.0,
        "log1p_abs": 2.0,
        "arithmetic_geometric": 4 * math.log(4 / (2 * math.sqrt(3))),
        "jensen_shannon": 0.5 * (3 * math.log(6 / 4) + math.log(2 / 4)),
    }
    for name, value in expected.items():
        assert float(get_generator(name)(logu)) == pytest.approx(value, rel=1e-12), name
    assert float(get_generator("amari_alpha", alpha=2.0)(logu)) == pytest.approx(4.0)
    assert float(get_generator("t_power", power=0.5)(logu)) == pytest.approx(1 - math.sqrt(3))


def test_power_family_and_normalizer_flags():
    power = {"kl_forward": 1.0, "kl_reverse": 0.0, "squared_hellinger": 0.5, "pearson": 2.0}
    for name, alpha in power.items():
        assert get_generator(name).power == alpha
        assert get_generator(name).power is not None
    assert get_generator("neyman").power == -1.0
    for name in ["total_variation", "jensen_shannon", "jeffreys", "triangular", "log1p_abs"]:
        assert get_generator(name).power is None


def test_amari_alpha_limits_and_identities():
    logu = torch.linspace(-3, 3, 13)
    assert torch.allclose(get_generator("amari_alpha", alpha=1.0)(logu), logu.exp() * logu)
    assert torch.allclose(get_generator("amari_alpha", alpha=0.0)(logu), -logu)
    eps = 1e-5
    near_one = get_generator("amari_alpha", alpha=1 + eps)(logu)
    # (t^a - 1) / (a (a - 1)) = (t - 1) / (a (a - 1)) + t log t + O(a - 1): the first term has
    # zero expectation under Q, so the divergence tends to forward KL.
    limit = near_one - torch.expm1(logu) / ((1 + eps) * eps)
    assert torch.allclose(limit, logu.exp() * logu, atol=1e-3)


def test_user_callable_and_bad_input():
    quartic = get_generator(lambda logu: torch.expm1(logu) ** 4)
    assert float(quartic(torch.tensor(math.log(2.0)))) == pytest.approx(1.0)
    assert quartic.power is None
    with pytest.raises(ValueError, match="unknown generator 'kl'"):
        get_generator("kl")
    with pytest.raises(TypeError, match="takes no parameters"):
        get_generator("pearson", alpha=2)
    with pytest.raises(TypeError, match="amari_alpha"):
        get_generator("amari_alpha", beta=2)
    with pytest.raises(ValueError, match="power"):
        get_generator("t_power", power=1.0)
    with pytest.raises(TypeError, match="callable"):
        get_generator(3.0)


def test_optimal_normal_refuses_a_start_where_the_quadrature_overflows():
    from pyrodiv.divergences.quadrature import normal_log_prob, optimal_normal

    # Pearson at N(1, 1) against N(7, 1.4): the integral is finite, but exp(log q) * f(p/q)
    # forms 0 * inf in Q's far tail on the grid.
    with pytest.raises(ValueError, match="not finite"):
        optimal_normal("pearson", normal_log_prob(7.0, 1.4**0.5), start=(1.0, 1.0))


@pytest.mark.parametrize(
    "f, message",
    [
        (lambda logu: torch.zeros_like(logu), "affine in t"),  # D_f = 0: trains nothing
        (lambda logu: 3.0 * torch.expm1(logu), "affine in t"),
        (lambda logu: torch.expm1(logu) ** 2 + 1.0, r"f\(1\) must be 0"),
        (lambda logu: -(torch.expm1(logu) ** 2), "not convex in t"),
        (lambda logu: torch.log(logu), "not finite at t = 0.05"),  # NaN below t = 1
        (lambda logu: float(logu.sum()), "must return a tensor of logu's shape"),
        (lambda logu: logu.sum(), "must return a tensor of logu's shape"),
        (lambda logu: 1 / 0, "raised ZeroDivisionError"),
    ],
)
def test_a_user_generator_is_checked_where_it_is_given(f, message):
    with pytest.raises(ValueError, match=f"generator <lambda>: .*{message}"):
        get_generator(f)
    with pytest.raises(ValueError, match=message):
        pyrodiv.FDivergence(f)


@pytest.mark.parametrize("alpha", ["x", float("nan"), float("inf"), True, None])
def test_generator_parameters_are_named(alpha):
    with pytest.raises(ValueError, match="generator amari_alpha: alpha must be a finite real"):
        pyrodiv.FDivergence("amari_alpha", alpha=alpha)
    with pytest.raises(ValueError, match="generator t_power: power must be a finite real"):
        get_generator("t_power", power=alpha)
