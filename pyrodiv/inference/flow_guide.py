r"""A normalizing-flow guide that starts as the whitened Gaussian it refines.

:class:`AutoWhitenedFlow` is the whitened Gaussian of :mod:`pyrodiv.inference.warm_start`
with rational-quadratic spline layers (Durkan et al. 2019; Pyro's ``Spline`` and
``SplineCoupling``) in front of its affine map:

.. math::

    z = m + L\,(a + B\,T_\phi(\varepsilon)), \qquad \varepsilon \sim N(0, I),

where :math:`(m, L)` is the fixed whitening, :math:`(a, B)` the Gaussian's parameters in
whitened coordinates, and :math:`T_\phi` alternates an element-wise spline with spline
couplings under fixed permutations. Each spline is *initialized at the identity*: equal bin
widths and heights, and knot derivatives of 1 (the coupling's hyper-network has a zero last
layer whose bias gives those values). At the start the guide is therefore exactly the Gaussian
it was built from, and training moves it only where the divergence asks for more than a
Gaussian (a skewed or funnel-shaped posterior). Outside :math:`[-B_s, B_s]` (``bound``) each
spline is the identity, so the tails stay Gaussian.

**The inverse, guarded.** A loss that evaluates :math:`\log q` at given draws (forward KL, the
self-normalized divergences, whose draws are detached) inverts every spline. Pyro inverts a
quadratic spline bin by the root of a quadratic and asserts that its discriminant is
non-negative; in floating point a draw on a bin edge can give a slightly negative one (or a
bin mismatch), and the whole step fails. Where that assertion fails, the splines here invert
by bisection on the forward map (monotone) to machine precision, then one Newton step with
gradients, :math:`x = x_* - (T(x_*) - y)/T'(x_*)`, whose derivative in the spline's parameters is
the implicit-function one, :math:`\partial x/\partial\phi = -\partial_\phi T / T'`; the
log-Jacobian is :math:`-\log T'(x)`.

Example::

    >>> guide = AutoWhitenedFlow(model)
    >>> guide._setup_prototype()
    >>> guide.set_whitening(center, scale_tril)      # e.g. from a fitted AutoWhitenedNormal
"""

from __future__ import annotations

import functools
import math

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import (
    ComposeTransformModule,
    ConditionalSpline,
    Permute,
    Spline,
    SplineCoupling,
)
from pyro.distributions.transforms.spline import ConditionedSpline
from pyro.nn import DenseNN

from .warm_start import AutoWhitenedNormal

__all__ = [
    "AutoWhitenedFlow",
    "WhitenedFlowPosterior",
    "identity_spline",
    "identity_spline_coupling",
    "rational_quadratic_spline",
]

#: Pyro's splines add this to every knot derivative.
_MIN_DERIVATIVE = 1e-3
#: ... and give every bin this fraction of the width and height at least.
_MIN_BIN = 1e-3
#: The softplus input that gives a knot derivative of exactly 1.
_UNIT_DERIVATIVE = math.log(math.expm1(1.0 - _MIN_DERIVATIVE))


class _GuardedInverse:
    """``spline_op`` with the bisection-and-Newton inverse where Pyro's assertion fails (see
    the module doc)."""

    def spline_op(self, x, inverse: bool = False, **kwargs):
        if not inverse:
            return super().spline_op(x, **kwargs)
        try:
            return super().spline_op(x, inverse=True, **kwargs)
        except AssertionError:
            return self.bisection_inverse(x)

    def bisection_inverse(self, y: torch.Tensor, iterations: int = 64):
        """``(x, log|dx/dy|)`` with :math:`T(x) = y`, by bisection and one Newton step."""
        with torch.no_grad():
            target = y.detach()
            low = torch.minimum(target, target.new_tensor(-self.bound)) - 1.0
            high = torch.maximum(target, target.new_tensor(self.bound)) + 1.0
            for _ in range(iterations):
                middle = (low + high) / 2
                above = super().spline_op(middle)[0] > target
                high = torch.where(above, middle, high)
                low = torch.where(above, low, middle)
            root = (low + high) / 2
        value, log_derivative = super().spline_op(root)
        x = root - (value - y) / log_derivative.exp()
        return x, -super().spline_op(x)[1]


class _GuardedSpline(_GuardedInverse, Spline):
    pass


class _GuardedConditionedSpline(_GuardedInverse, ConditionedSpline):
    pass


class _GuardedConditionalSpline(ConditionalSpline):
    def condition(self, context):
        return _GuardedConditionedSpline(
            functools.partial(self._params, context), bound=self.bound, order=self.order
        )


def identity_spline(dim: int, count_bins: int = 8, bound: float = 4.0) -> Spline:
    """An element-wise rational-quadratic spline of ``dim`` dimensions that is the identity."""
    spline = _GuardedSpline(dim, count_bins=count_bins, bound=bound, order="quadratic")
    with torch.no_grad():
        spline.unnormalized_widths.zero_()
        spline.unnormalized_heights.zero_()
        spline.unnormalized_derivatives.fill_(_UNIT_DERIVATIVE)
    return spline


def identity_spline_coupling(
    dim: int, hidden: int | None = None, count_bins: int = 8, bound: float = 4.0
) -> SplineCoupling:
    """A spline coupling layer (the second half of ``dim`` conditioned on the first by a
    one-hidden-layer network) that is the identity: its network's last layer is zero, with the
    bias of equal bins and unit derivatives."""
    split = dim // 2
    rest = dim - split
    param_dims = [rest * count_bins, rest * count_bins, rest * (count_bins - 1)]
    net = DenseNN(split, [hidden or 10 * dim], param_dims=param_dims)
    coupling = SplineCoupling(
        dim, split, net, count_bins=count_bins, bound=bound, order="quadratic"
    )
    coupling.lower_spline = identity_spline(split, count_bins, bound)
    coupling.upper_spline = _GuardedConditionalSpline(
        net, rest, count_bins, bound=bound, order="quadratic"
    )
    last = net.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[2 * rest * count_bins :] = _UNIT_DERIVATIVE
    return coupling


def rational_quadratic_spline(spline, x: torch.Tensor):
    r"""``(T(x), log T'(x))`` of one of Pyro's rational-quadratic splines (``Spline`` or a
    conditioned one), element-wise: in the bin :math:`k` of :math:`x`, with
    :math:`\theta = (x - x_k)/w_k`, :math:`s_k = h_k/w_k` and knot derivatives
    :math:`d_k, d_{k+1}`,

    .. math::

        T(x) = y_k + \frac{h_k\,(s_k\theta^2 + d_k\theta(1-\theta))}
                         {s_k + (d_k + d_{k+1} - 2s_k)\,\theta(1-\theta)},

    and :math:`T(x) = x` outside :math:`[-B, B]`. Pyro's ``spline_op`` computes the same
    with boolean-mask assignments, whose shapes depend on the values; here the identity
    outside is a ``torch.where`` (the spline's branch is evaluated at the clamped input, so
    its gradient there is finite and not selected), which a recorded graph replays at any
    draw."""
    from pyro.distributions.transforms.spline import (
        _calculate_knots,
        _searchsorted,
        _select_bins,
    )

    widths, heights, derivatives, _ = (
        spline._params() if callable(spline._params) else (spline._params)
    )
    bound, bins = spline.bound, widths.shape[-1]
    widths = _MIN_BIN + (1.0 - _MIN_BIN * bins) * widths
    heights = _MIN_BIN + (1.0 - _MIN_BIN * bins) * heights
    derivatives = torch.nn.functional.pad(
        _MIN_DERIVATIVE + derivatives, pad=(1, 1), value=1.0 - _MIN_DERIVATIVE
    )
    widths, cumwidths = _calculate_knots(widths, -bound, bound)
    heights, cumheights = _calculate_knots(heights, -bound, bound)
    inside = (x >= -bound) & (x <= bound)
    x_in = x.clamp(-bound, bound)
    index = _searchsorted(cumwidths + 1e-6, x_in).unsqueeze(-1)
    width, left = _select_bins(widths, index), _select_bins(cumwidths, index)
    height, bottom = _select_bins(heights, index), _select_bins(cumheights, index)
    slope = _select_bins(heights / widths, index)
    d0, d1 = _select_bins(derivatives, index), _select_bins(derivatives[..., 1:], index)
    theta = (x_in - left) / width
    mixed = theta * (1 - theta)
    denominator = slope + (d0 + d1 - 2 * slope) * mixed
    y = bottom + height * (slope * theta.pow(2) + d0 * mixed) / denominator
    log_derivative = torch.log(
        slope.pow(2) * (d1 * theta.pow(2) + 2 * slope * mixed + d0 * (1 - theta).pow(2))
    ) - 2 * torch.log(denominator)
    return torch.where(inside, y, x), torch.where(inside, log_derivative, 0.0)


def _implicit_inverse(spline, y: torch.Tensor, root: torch.Tensor):
    r"""``(x, log T'(x))`` for the spline :math:`T` with :math:`T(x) = y`, where ``root`` is
    that solution's value (the draw's own layer input, detached): one Newton step from the
    root, :math:`x = r - (T(r) - y)/T'(r)`, equal to :math:`r` in value, with the
    implicit-function derivatives :math:`\partial x/\partial y = 1/T'` and
    :math:`\partial x/\partial\phi = -\partial_\phi T / T'`."""
    value, log_derivative = rational_quadratic_spline(spline, root)
    x = root - (value - y) / log_derivative.exp()
    return x, rational_quadratic_spline(spline, x)[1]


class WhitenedFlowPosterior(dist.TransformedDistribution):
    r"""The flow guide's distribution: :math:`N(0, I)` pushed through the spline layers and the
    affine map, with :meth:`rsample_and_log_prob`, which gives :math:`\log q` at a fresh draw
    without inverting a spline.

    At a draw held fixed (the self-normalized losses evaluate :math:`\log q_\phi(z)` at
    detached draws and differentiate in :math:`\phi` only), the inverse of each spline is
    one Newton step from its known root (:func:`_implicit_inverse`): two forward spline
    evaluations per layer, no root-finding, and a graph that ``torch.jit`` can record (the
    compiled path lowers this guide).

    Example::

        >>> z, log_q = guide.get_posterior().rsample_and_log_prob(detached=True)  # doctest: +SKIP
    """

    def _layers(self) -> list:
        layers = []
        for transform in self.transforms:
            layers.extend(getattr(transform, "parts", [transform]))
        return layers

    def rsample_and_log_prob(self, detached: bool = False):
        r"""``(z, log q(z))`` at one reparameterized draw of the batch shape; with
        ``detached``, ``z`` is detached and :math:`\log q` is differentiable in the
        parameters at that fixed ``z``."""
        eps = self.base_dist.rsample()
        *layers, affine = self._layers()
        if not detached:
            x, log_det = eps, 0.0
            for layer in layers:
                x, step = _forward(layer, x)
                log_det = log_det + step
            z = affine(x)
            return z, self.base_dist.log_prob(eps) - log_det - affine.log_abs_det_jacobian(x, z)
        with torch.no_grad():  # the draw; detached too, as torch.jit does not record no_grad
            roots, x = [], eps.detach()
            for layer in layers:
                roots.append(x.detach())
                x, _ = _forward(layer, x)
            z = affine(x).detach()
        x = affine.inv(z)
        log_det = affine.log_abs_det_jacobian(x, z)
        for layer, root in zip(reversed(layers), reversed(roots), strict=True):
            x, step = _known_root_inverse(layer, x, root)
            log_det = log_det + step
        return z, self.base_dist.log_prob(x) - log_det


def _forward(layer, x):
    """``(y, log|det J|)`` of one flow layer at ``x`` (summed over the last dimension)."""
    if isinstance(layer, Permute):
        return layer(x), 0.0
    if isinstance(layer, SplineCoupling):
        x1, x2 = x[..., : layer.split_dim], x[..., layer.split_dim :]
        y1, log1 = rational_quadratic_spline(layer.lower_spline, x1)
        y2, log2 = rational_quadratic_spline(layer.upper_spline.condition(x1), x2)
        return torch.cat([y1, y2], -1), log1.sum(-1) + log2.sum(-1)
    y, log_derivative = rational_quadratic_spline(layer, x)
    return y, log_derivative.sum(-1)


def _known_root_inverse(layer, y, root):
    """``(x, log|det J(x)|)`` of one flow layer with ``layer(x) = y``, ``root`` the value of
    ``x`` (see :func:`_implicit_inverse`)."""
    if isinstance(layer, Permute):
        return y[..., layer.inv_permutation], 0.0
    if isinstance(layer, SplineCoupling):
        split = layer.split_dim
        x1, log1 = _implicit_inverse(layer.lower_spline, y[..., :split], root[..., :split])
        upper = layer.upper_spline.condition(x1)
        x2, log2 = _implicit_inverse(upper, y[..., split:], root[..., split:])
        return torch.cat([x1, x2], -1), log1.sum(-1) + log2.sum(-1)
    x, log_derivative = _implicit_inverse(layer, y, root)
    return x, log_derivative.sum(-1)


class AutoWhitenedFlow(AutoWhitenedNormal):
    r"""The whitened Gaussian :math:`N(m + La, (LB)(LB)^\top)` pushed through identity-initialized
    spline layers in whitened coordinates (see the module doc).

    :param model: the Pyro model.
    :param full_rank: a full-rank :math:`B` (and :math:`L`); else both diagonal.
    :param int num_couplings: spline couplings after the element-wise spline (none in one
        dimension).
    :param int count_bins: spline bins.
    :param float bound: the splines act on :math:`[-\text{bound}, \text{bound}]`.
    """

    def __init__(
        self,
        model,
        full_rank: bool = True,
        num_couplings: int = 2,
        count_bins: int = 8,
        bound: float = 4.0,
        **kwargs,
    ):
        super().__init__(model, full_rank=full_rank, **kwargs)
        self.num_couplings = int(num_couplings)
        self.count_bins = int(count_bins)
        self.bound = float(bound)

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        dim = self.latent_dim
        layers = [identity_spline(dim, self.count_bins, self.bound)]
        generator = torch.Generator().manual_seed(0)
        for _ in range(self.num_couplings if dim > 1 else 0):
            layers.append(identity_spline_coupling(dim, None, self.count_bins, self.bound))
            layers.append(Permute(torch.randperm(dim, generator=generator)))
        self.flow = ComposeTransformModule(layers).to(self.center.dtype)

    def get_posterior(self, *args, **kwargs):
        zeros = self.center.new_zeros(self.latent_dim)
        base = dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)
        if self.full_rank:
            affine = dist.transforms.LowerCholeskyAffine(
                self.center + self.factor @ self.loc, self.factor @ self.whitened_tril()
            )
        else:
            affine = dist.transforms.AffineTransform(
                self.center + self.factor * self.loc,
                self.factor * self.log_scale.exp(),
                event_dim=1,
            )
        return WhitenedFlowPosterior(base, [self.flow, affine])

    def _loc_scale(self, *args, **kwargs):
        raise NotImplementedError("a flow guide has no closed-form loc and scale; draw from it")

    def rewhiten(self) -> float:
        raise NotImplementedError("a flow guide is not re-whitened; it refines the whitening")
