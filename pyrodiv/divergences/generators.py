r"""Generators of f-divergences, written in log space.

An f-divergence between a target :math:`P` and an approximation :math:`Q` is

.. math::

    D_f(P \,\|\, Q) = \int q(x)\, f\!\left(\frac{p(x)}{q(x)}\right) dx
                   = \mathbb{E}_{x\sim Q}\left[f(t)\right], \qquad t = p(x)/q(x),

for a convex generator :math:`f` with :math:`f(1) = 0` (the convention of the talk this
library grew from, and of ``tfp.vi``). Every generator here takes ``logu = log p - log q``
rather than :math:`t`, and is evaluated with ``expm1``, ``softplus`` and friends so that it
returns no NaN for :math:`|\log u|` up to :math:`10^4` (it returns ``+inf`` only where the
true value exceeds the floating-point range).

Each generator records whether the minimizer of :math:`D_f(P\|Q)` over :math:`Q` ignores the
normalizing constant of :math:`P`. That holds for the *power family*,

.. math::

    D_\alpha(P\|Q) = \frac{\mathbb{E}_Q[t^\alpha] - 1}{\alpha(\alpha - 1)},

whose members (forward KL at :math:`\alpha = 1`, reverse KL at :math:`\alpha = 0`, squared
Hellinger, Pearson and Neyman chi-square, Amari alpha, t-power) are increasing functions of
:math:`\mathrm{sign}(\alpha(\alpha-1)) \log \mathbb{E}_Q[t^\alpha]` (or of
:math:`\mathbb{E}_Q[\log t]` at :math:`\alpha = 0`): scaling :math:`p` by a constant leaves
their minimizer where it was. Total variation, Jensen-Shannon, Jeffreys, triangular
discrimination, ``log1p_abs`` and the arithmetic-geometric divergence do not have this property.

Example::

    >>> import torch
    >>> from pyrodiv.divergences.generators import get_generator
    >>> hellinger = get_generator("squared_hellinger")
    >>> hellinger(torch.tensor([0.0, 1e4, -1e4]))
    tensor([0., inf, 1.])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

LOG2 = math.log(2.0)


@dataclass(frozen=True)
class Generator:
    r"""A convex function :math:`f` with :math:`f(1) = 0`, evaluated at ``logu = log t``.

    :param name: registry name, e.g. ``"kl_forward"``.
    :param formula: :math:`f(t)` in words, for tables and error messages.
    :param fn: the log-space evaluation ``fn(logu) -> f(exp(logu))``.
    :param power: the exponent :math:`\alpha` when the divergence is a positive multiple of the
        Amari-alpha divergence :math:`D_\alpha` (the power family), else ``None``.
    :param params: parameters the generator was built with (e.g. ``{"alpha": 0.5}``).

    Example::

        >>> g = get_generator("pearson")
        >>> float(g(torch.tensor(math.log(3.0))))  # (3 - 1)^2
        4.0
    """

    name: str
    formula: str
    fn: Callable[[torch.Tensor], torch.Tensor] = field(repr=False)
    power: float | None = None
    params: dict = field(default_factory=dict)

    def __call__(self, logu: torch.Tensor) -> torch.Tensor:
        return self.fn(logu)


def _xexpx(logu):
    """``t * log t`` in log space, with the limit 0 at ``t = 0``."""
    value = torch.exp(logu) * logu
    return torch.where(torch.isneginf(logu), torch.zeros_like(value), value)


def kl_forward(logu):
    r""":math:`f(t) = t \log t`: :math:`D_f = \mathrm{KL}(P\|Q)` (mass-covering)."""
    return _xexpx(logu)


def kl_reverse(logu):
    r""":math:`f(t) = -\log t`: :math:`D_f = \mathrm{KL}(Q\|P)` (mode-seeking)."""
    return -logu


def jensen_shannon(logu):
    r"""The talk's Jensen-Shannon divergence, in nats.

    .. math::

        \mathrm{JSD} = \tfrac12 \mathrm{KL}(P\|M) + \tfrac12 \mathrm{KL}(Q\|M),\quad
        M = \tfrac12 (P + Q),\qquad
        f(t) = \tfrac12\left[t \log\frac{2t}{1+t} + \log\frac{2}{1+t}\right].

    Bounded by :math:`\log 2`.
    """
    t = torch.exp(logu)
    term_p = torch.where(
        torch.isneginf(logu), torch.zeros_like(logu), t * (LOG2 - F.softplus(-logu))
    )
    return 0.5 * (term_p + LOG2 - F.softplus(logu))


def squared_hellinger(logu):
    r""":math:`f(t) = (\sqrt t - 1)^2`: :math:`D_f = \int (\sqrt p - \sqrt q)^2`."""
    return torch.expm1(0.5 * logu) ** 2


def total_variation(logu):
    r""":math:`f(t) = \tfrac12 |t - 1|`: :math:`D_f = \tfrac12 \int |p - q|`."""
    return 0.5 * torch.expm1(logu).abs()


def pearson(logu):
    r""":math:`f(t) = (t - 1)^2`: Pearson :math:`\chi^2(P\|Q) = \int (p - q)^2 / q`."""
    return torch.expm1(logu) ** 2


def neyman(logu):
    r""":math:`f(t) = 1/t - 1`: Neyman :math:`\chi^2 = \int (p - q)^2 / p` (reverse Pearson).

    Equal in expectation to :math:`(1 - t)^2 / t` whenever :math:`\mathbb{E}_Q[t] = 1`.
    """
    return torch.expm1(-logu)


def jeffreys(logu):
    r""":math:`f(t) = (t - 1)\log t`: :math:`\mathrm{KL}(P\|Q) + \mathrm{KL}(Q\|P)`."""
    return torch.expm1(logu) * logu


def triangular(logu):
    r""":math:`f(t) = (t - 1)^2 / (1 + t)`: triangular discrimination, :math:`\int (p-q)^2/(p+q)`.

    Computed as :math:`(t - 1) \tanh(\tfrac12 \log t)`, which never forms :math:`\infty/\infty`.
    """
    return torch.expm1(logu) * torch.tanh(0.5 * logu)


def log1p_abs(logu):
    r""":math:`f(t) = t^{\mathrm{sign}(t - 1)} - 1 = \exp|\log t| - 1`."""
    return torch.expm1(logu.abs())


def arithmetic_geometric(logu):
    r""":math:`f(t) = (1 + t)\log\dfrac{1 + t}{2\sqrt t}`: the arithmetic-geometric divergence.

    Uses :math:`\log(1 + t) - \tfrac12 \log t = \tfrac12|\log t| + \mathrm{softplus}(-|\log t|)`.
    """
    half_abs = 0.5 * logu.abs()
    return torch.exp(F.softplus(logu)) * (half_abs + F.softplus(-2.0 * half_abs) - LOG2)


def _real(value, generator: str, name: str) -> float:
    """``value`` as a finite float, else a ``ValueError`` naming the generator's parameter."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(
            f"generator {generator}: {name} must be a finite real number, got {value!r}"
        )
    return float(value)


def amari_alpha(alpha: float = 0.5):
    r"""Amari's alpha divergence, :math:`f(t) = \dfrac{t^\alpha - 1}{\alpha(\alpha - 1)}`.

    The limits are :math:`t\log t` (forward KL) at :math:`\alpha = 1` and :math:`-\log t`
    (reverse KL) at :math:`\alpha = 0`. :math:`\alpha = 1/2` gives twice the squared Hellinger
    distance and :math:`\alpha = 2` half the Pearson chi-square.

    Example::

        >>> g = amari_alpha(2.0)
        >>> float(g(torch.tensor(math.log(3.0))))  # (9 - 1) / 2
        4.0
    """
    alpha = _real(alpha, "amari_alpha", "alpha")
    if alpha == 1.0:
        return Generator("amari_alpha", "t log t (alpha = 1)", kl_forward, 1.0, {"alpha": alpha})
    if alpha == 0.0:
        return Generator("amari_alpha", "-log t (alpha = 0)", kl_reverse, 0.0, {"alpha": alpha})
    scale = 1.0 / (alpha * (alpha - 1.0))
    return Generator(
        "amari_alpha",
        f"(t^{alpha:g} - 1) / ({alpha:g} ({alpha:g} - 1))",
        lambda logu: torch.expm1(alpha * logu) * scale,
        alpha,
        {"alpha": alpha},
    )


def t_power(power: float = 2.0):
    r"""The t-power divergence, :math:`f(t) = s\,(t^{a} - 1)` with :math:`s = -1` for
    :math:`0 < a < 1` and :math:`s = +1` otherwise (``tfp.vi.t_power``).

    It equals :math:`|a(a - 1)|\, D_a`, a positive multiple of the Amari-alpha divergence.

    Example::

        >>> g = t_power(2.0)
        >>> float(g(torch.tensor(math.log(3.0))))  # 3^2 - 1
        8.0
    """
    power = _real(power, "t_power", "power")
    if power in (0.0, 1.0):
        raise ValueError(f"t_power: power={power} gives f = 0; use 0 < power < 1 or power > 1")
    sign = -1.0 if 0.0 < power < 1.0 else 1.0
    return Generator(
        "t_power",
        f"{'-' if sign < 0 else ''}(t^{power:g} - 1)",
        lambda logu: sign * torch.expm1(power * logu),
        power,
        {"power": power},
    )


_FIXED = {
    "kl_forward": Generator("kl_forward", "t log t", kl_forward, 1.0),
    "kl_reverse": Generator("kl_reverse", "-log t", kl_reverse, 0.0),
    "jensen_shannon": Generator(
        "jensen_shannon", "1/2 [t log(2t/(1+t)) + log(2/(1+t))]", jensen_shannon
    ),
    "squared_hellinger": Generator("squared_hellinger", "(sqrt t - 1)^2", squared_hellinger, 0.5),
    "total_variation": Generator("total_variation", "1/2 |t - 1|", total_variation),
    "pearson": Generator("pearson", "(t - 1)^2", pearson, 2.0),
    "neyman": Generator("neyman", "1/t - 1", neyman, -1.0),
    "jeffreys": Generator("jeffreys", "(t - 1) log t", jeffreys),
    "triangular": Generator("triangular", "(t - 1)^2 / (1 + t)", triangular),
    "log1p_abs": Generator("log1p_abs", "exp|log t| - 1", log1p_abs),
    "arithmetic_geometric": Generator(
        "arithmetic_geometric", "(1 + t) log((1 + t) / (2 sqrt t))", arithmetic_geometric
    ),
}

_PARAMETRIC = {"amari_alpha": amari_alpha, "t_power": t_power}

#: Every registered generator name.
GENERATOR_NAMES = tuple(_FIXED) + tuple(_PARAMETRIC)


def get_generator(f, **params) -> Generator:
    r"""Look up a generator by name, or wrap a user-supplied callable.

    :param f: a registry name (see :data:`GENERATOR_NAMES`), a :class:`Generator`, or a callable
        ``f(logu) -> tensor`` computing :math:`f(e^{\log u})` elementwise. A callable is assumed
        *not* to ignore P's normalizing constant.
    :param params: parameters of a parametric generator (``alpha`` for ``amari_alpha``,
        ``power`` for ``t_power``).

    Example::

        >>> get_generator("amari_alpha", alpha=0.5).power
        0.5
        >>> get_generator(lambda logu: torch.expm1(logu) ** 4).name
        '<lambda>'
    """
    if isinstance(f, Generator):
        if params:
            raise TypeError(f"parameters {sorted(params)} given with a ready-made Generator")
        return f
    if isinstance(f, str):
        if f in _FIXED:
            if params:
                raise TypeError(f"generator {f!r} takes no parameters, got {sorted(params)}")
            return _FIXED[f]
        if f in _PARAMETRIC:
            try:
                return _PARAMETRIC[f](**params)
            except TypeError as err:
                raise TypeError(f"generator {f!r}: {err}") from None
        raise ValueError(f"unknown generator {f!r}; known: {', '.join(GENERATOR_NAMES)}")
    if callable(f):
        if params:
            raise TypeError(f"parameters {sorted(params)} given with a callable generator")
        name = getattr(f, "__name__", type(f).__name__)
        check_generator(f, name)
        return Generator(name, f"user-supplied {name}(logu)", f)
    raise TypeError(f"f must be a generator name or a callable f(logu), got {type(f).__name__}")


def check_generator(f, name: str) -> None:
    r"""Check a user-supplied ``f(logu)`` on a grid of :math:`t = e^{\log u}` in
    :math:`[0.05, 5]` (float64): finite values of the input's shape, :math:`f(1) = 0`, convex
    (second differences on an even grid of :math:`t` at least :math:`-10^{-6}` of the
    values' scale) and not affine (an affine :math:`f` gives :math:`D_f \equiv 0`, which
    trains nothing). ``ValueError`` naming ``name`` and what failed.

    Example::

        >>> check_generator(lambda logu: torch.expm1(logu) ** 2, "pearson-like")
        >>> check_generator(lambda logu: torch.zeros_like(logu), "zero")
        Traceback (most recent call last):
        ...
        ValueError: generator zero: f is affine in t, so D_f(P||Q) is 0 for every Q ...
    """
    t = torch.linspace(0.05, 5.0, 100, dtype=torch.float64)
    one = torch.zeros(1, dtype=torch.float64)
    try:
        values, at_one = f(t.log()), f(one)
    except Exception as error:  # noqa: BLE001 - named below, whatever the callable raised
        raise ValueError(
            f"generator {name}: f(logu) raised {type(error).__name__}: {error}"
        ) from error
    for what, value, shape in (("values", values, t.shape), ("f(1)", at_one, one.shape)):
        if not isinstance(value, torch.Tensor) or value.shape != shape:
            raise ValueError(
                f"generator {name}: f(logu) must return a tensor of logu's shape (elementwise); "
                f"got {type(value).__name__} {getattr(value, 'shape', '')} for its {what}"
            )
    if not torch.isfinite(values).all():
        bad = float(t[~torch.isfinite(values)][0])
        raise ValueError(f"generator {name}: f is not finite at t = {bad:.3g} (logu = log t)")
    scale = 1.0 + float(values.abs().max())
    if abs(float(at_one)) > 1e-6 * scale:
        raise ValueError(
            f"generator {name}: f(1) must be 0 (an f-divergence of P with itself), got "
            f"{float(at_one):.6g}; subtract it"
        )
    second = values[2:] - 2 * values[1:-1] + values[:-2]
    if float(second.min()) < -1e-6 * scale:
        bad = float(t[1:-1][second.argmin()])
        raise ValueError(f"generator {name}: f is not convex in t (near t = {bad:.3g})")
    if float(second.abs().max()) <= 1e-9 * scale:
        raise ValueError(
            f"generator {name}: f is affine in t, so D_f(P||Q) is 0 for every Q and trains "
            "nothing; give a strictly convex f"
        )
