r"""Lowering: a static model and a Gaussian autoguide as pure tensor functions of the guide's
parameters, the guide's standard-normal noise and the data.

For a guide in the Gaussian family (``AutoNormal``, ``AutoDiagonalNormal``,
``AutoMultivariateNormal``, ``AutoLowRankMultivariateNormal`` and any ``AutoContinuous`` whose
posterior is one of those distributions, such as ``AutoWhitenedNormal``, or a distribution with
``rsample_and_log_prob``, such as the flow guide's), the guide's draw of
:math:`K` particles is a deterministic function of standard-normal noise :math:`\varepsilon`,
:math:`u = \mu + S\varepsilon`, and every latent site is :math:`x_j = T_j(u_j)` with
:math:`T_j` = ``biject_to`` of its support. :class:`Lowered` computes, batched over particles,

.. math::

    \log p_k = \log p(\text{data}, T(u_k)), \qquad
    \log q_k = \log N(u_k; \mu, S S^\top) - \log|\det \partial T(u_k)/\partial u_k|,

exactly the per-particle ``log_p`` and ``log_q`` that the eager runner
(:mod:`pyrodiv.divergences.traces`) reads from the traces of the guide-first orders: the
guide's auxiliary site, its ``Delta`` sites carrying the Jacobian, and the model's sites with
Pyro's plate scaling and masks (``Trace.compute_log_prob``). The noise is drawn outside, in
the order and shapes in which the eager guide run draws it (the torch distributions'
``_standard_normal``), so that the same seed gives the same draws.

Nothing here is traced or cached: :mod:`pyrodiv.divergences.compiled` records
:meth:`Lowered.densities` with ``torch.jit.trace``. :func:`lower` raises
:class:`NotLowerable` with a one-line reason for what it cannot lower: another guide, a
subsampled plate, an enumerated or discrete site, a model latent the guide does not draw, a
model that does not broadcast over the particle plate.

Example::

    >>> lowered = lower(loss, model, guide, (), {"y": y})                   # doctest: +SKIP
    >>> noise = lowered.noise()                                             # doctest: +SKIP
    >>> log_p, log_q = lowered.densities(noise, (), {"y": y})               # doctest: +SKIP
"""

from __future__ import annotations

import contextlib

import pyro
import torch
import torch.distributions.lowrank_multivariate_normal as _lowrank_module
import torch.distributions.multivariate_normal as _mvn_module
import torch.distributions.normal as _normal_module
from pyro import poutine
from pyro.distributions.util import sum_rightmost
from pyro.infer.autoguide import AutoContinuous, AutoNormal
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import biject_to

from .densities import trace_log_density
from .replay import SetValues
from .trace_pair import Order

__all__ = ["Lowered", "NotLowerable", "lower"]

#: The particle plate's name (the runner's, so that the programs see the same plate).
PARTICLE_PLATE = "num_particles_vectorized"
#: The distributions whose reparameterized draw is ``loc + (scale) @ standard normal noise``.
GAUSSIANS = (
    torch.distributions.Normal,
    torch.distributions.MultivariateNormal,
    torch.distributions.LowRankMultivariateNormal,
)
_NOISE_MODULES = (_normal_module, _mvn_module, _lowrank_module)


class NotLowerable(ValueError):
    """A program that :func:`~pyrodiv.divergences.lowering.lower` cannot turn into tensor
    functions; the message says why.
    ``traceable=False``: not even a recorded trace of the whole program would be right (its
    structure depends on the values drawn)."""

    def __init__(self, message: str, traceable: bool = True):
        super().__init__(message)
        self.traceable = traceable


@contextlib.contextmanager
def given_noise(noise):
    """Make the Gaussian distributions' ``rsample`` take their standard-normal noise from the
    iterator ``noise`` instead of the random generator; with ``noise=None``, record the shapes
    and dtypes drawn (yielded as a list) and draw as usual."""
    record = []

    def standard_normal(shape, dtype, device):
        if noise is None:
            record.append((torch.Size(shape), dtype, device))
            return torch.empty(shape, dtype=dtype, device=device).normal_()
        eps = next(noise)
        if eps.shape != torch.Size(shape):
            raise NotLowerable(f"the guide drew noise of shape {tuple(shape)} where "
                               f"{tuple(eps.shape)} was recorded")  # fmt: skip
        return eps

    saved = [module._standard_normal for module in _NOISE_MODULES]
    for module in _NOISE_MODULES:
        module._standard_normal = standard_normal
    try:
        yield record
    finally:
        for module, original in zip(_NOISE_MODULES, saved, strict=True):
            module._standard_normal = original


def _sum_to_particles(value: torch.Tensor, particles: int | None) -> torch.Tensor:
    """One total per particle: shape ``(K,)`` (or ``(1,)`` for an unplated single run)."""
    if particles is None:
        return value.sum().reshape(1)
    return value.reshape(particles, -1).sum(-1)


def _guide_kind(guide) -> str:
    """``"normal"`` (``AutoNormal``) or ``"continuous"`` (a Gaussian ``AutoContinuous``), or
    raise :class:`NotLowerable` naming the guide."""
    name = type(guide).__name__
    if isinstance(guide, AutoNormal) and type(guide).forward is AutoNormal.forward:
        return "normal"
    if (
        isinstance(guide, AutoContinuous)
        and type(guide).forward is AutoContinuous.forward
        and type(guide).sample_latent is AutoContinuous.sample_latent
    ):
        return "continuous"
    raise NotLowerable(f"the guide {name} is not a Gaussian autoguide")


def _posterior_family(posterior) -> None:
    if hasattr(posterior, "rsample_and_log_prob"):  # a flow that gives log q with its draw
        return
    base = posterior.base_dist if isinstance(posterior, torch.distributions.Independent) else None
    if not isinstance(base if base is not None else posterior, GAUSSIANS):
        raise NotLowerable(f"the guide's posterior is a {type(posterior).__name__}, not Gaussian")


class Lowered:
    r"""A model and a Gaussian autoguide as tensor functions (see the module docstring).

    :param model: the Pyro model.
    :param guide: the autoguide (set up).
    :param particles: :math:`K` under the vectorized particle plate, or ``None`` for one
        particle and no plate (the eager runner's single-particle run).
    :param nesting: the model's own plate nesting (the particle plate goes left of it).
    :param detached: the draws are detached as they are made (the guide-first detached
        order: :math:`\log q_\theta` at fixed draws, no pathwise gradient).
    """

    def __init__(self, model, guide, particles: int | None, nesting: int, detached=False):
        self.model, self.guide = model, guide
        self.particles, self.nesting, self.detached = particles, nesting, detached
        self.kind = _guide_kind(guide)
        self.batch = () if particles is None else (particles,) + (1,) * nesting
        self.shapes = None  # the noise (shape, dtype, device), in drawing order

    # ---- the guide -------------------------------------------------------------------------

    def param_names(self, args, kwargs) -> list[str]:
        """The names of the guide's parameters in the param store, in a fixed order."""
        with torch.random.fork_rng(), poutine.block(), poutine.trace(param_only=True) as capture:
            with given_noise(None):
                self.guide_draw(args, kwargs)
        return list(capture.trace.nodes)

    def tensor_attributes(self) -> list[str]:
        """The guide's plain tensor attributes (``AutoWhitenedNormal``'s whitening): inputs
        of the recorded graph, so that a new value is used rather than a frozen constant."""
        return sorted(
            name
            for name, value in vars(self.guide).items()
            if isinstance(value, torch.Tensor) and not value.requires_grad
        )

    def _site_distributions(self, args, kwargs):
        """``[(site, distribution of the unconstrained draw u)]`` for ``AutoNormal`` (one per
        site), or ``[(None, the packed posterior)]`` for an ``AutoContinuous`` guide, each
        expanded to the particle batch."""
        import pyro.distributions as dist

        if self.kind == "normal":
            out = []
            for name, site in self.guide.prototype_trace.iter_stochastic_nodes():
                loc, scale = self.guide._get_loc_and_scale(name)
                fn = dist.Normal(loc, scale).to_event(self.guide._event_dims[name])
                out.append((site, self._expand(fn)))
            return out
        posterior = self.guide.get_posterior(*args, **kwargs)
        _posterior_family(posterior)
        return [(None, self._expand(posterior))]

    def _expand(self, fn):
        if not self.batch:
            return fn
        return fn.expand(torch.broadcast_shapes(self.batch, fn.batch_shape))

    def guide_draw(self, args, kwargs):
        r"""``(values, log_q)``: the constrained latent values by site and the per-particle
        :math:`\log q` (auxiliary draw minus the Jacobian), drawing the noise through
        ``_standard_normal`` (patched by the caller)."""
        log_q, unpacked = 0.0, []
        with self.guide._pyro_context:  # as the guide's own call: the param store's tensors
            distributions = self._site_distributions(args, kwargs)
        for site, fn in distributions:
            if hasattr(fn, "rsample_and_log_prob"):
                u, log_q_u = fn.rsample_and_log_prob(detached=self.detached)
            else:
                u = fn.rsample()
                if self.detached:
                    u = u.detach()
                log_q_u = fn.log_prob(u)
            log_q = log_q + _sum_to_particles(log_q_u, self.particles)
            if site is not None:
                unpacked.append((site, u))
            else:
                unpacked.extend(self.guide._unpack_latent(u))
        values = {}
        for site, u in unpacked:
            transform = biject_to(site["fn"].support)
            value = transform(u)
            log_det = transform.inv.log_abs_det_jacobian(value, u)
            log_det = sum_rightmost(log_det, log_det.dim() - value.dim() + site["fn"].event_dim)
            log_q = log_q + _sum_to_particles(log_det, self.particles)
            values[site["name"]] = value
        return values, log_q

    def noise(self) -> list[torch.Tensor]:
        """Fresh standard-normal noise for one draw, from the global generator, in the shapes
        and order of the eager guide run (so the same seed gives the same draws)."""
        return [torch.empty(s, dtype=d, device=v).normal_() for s, d, v in self.shapes]

    # ---- the model -------------------------------------------------------------------------

    def run_model(self, values, args, kwargs):
        """The model's trace at ``values`` under the particle plate (other sites drawn)."""
        model = self.model
        if self.particles is not None:
            dim = -self.nesting - 1
            model = pyro.plate(PARTICLE_PLATE, self.particles, dim=dim)(model)
        with poutine.block():
            return poutine.trace(SetValues(values)(model)).get_trace(*args, **kwargs)

    def model_trace(self, values, args, kwargs):
        """The model run at ``values`` under the particle plate, log-probs computed."""
        trace = prune_subsample_sites(self.run_model(values, args, kwargs))
        trace.compute_log_prob()
        return trace

    def densities(self, noise, args, kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-particle ``(log_p, log_q)``, shape ``(K,)``, at the draw made from ``noise``."""
        with given_noise(iter(noise)):
            values, log_q = self.guide_draw(args, kwargs)
        trace = self.model_trace(values, args, kwargs)
        dim = None if self.particles is None else -self.nesting - 1
        log_p = trace_log_density(trace, dim, "model")
        return log_p.reshape(-1), log_q

    # ---- checks ----------------------------------------------------------------------------

    def check_model(self, args, kwargs) -> None:
        """Raise :class:`NotLowerable` for what the tensor functions cannot express: a
        subsampled plate, an enumerated site, a model latent that the guide does not draw."""
        with torch.random.fork_rng():
            with given_noise(None) as self.shapes:
                values, _ = self.guide_draw(args, kwargs)
            trace = self.run_model(values, args, kwargs)
        for name, site in trace.nodes.items():
            if site["type"] != "sample":
                continue
            fn = site["fn"]
            if type(fn).__name__ == "_Subsample":
                if fn.subsample_size is not None and fn.subsample_size < fn.size:
                    raise NotLowerable(f"plate {name!r} is subsampled")
                continue
            if site["infer"].get("enumerate"):
                raise NotLowerable(f"model site {name!r} is enumerated")
            if not site["is_observed"] and name not in values:
                raise NotLowerable(f"model site {name!r} is not drawn by the guide")


def lower(loss, model, guide, args, kwargs) -> Lowered:
    """The :class:`Lowered` programs of one estimate of ``loss`` (a
    :class:`~pyrodiv.divergences.loss_base.DivergenceLoss`), or :class:`NotLowerable` with the
    reason: a target that is not a prior or posterior, a plan that draws from the model or
    from given draws, a non-Gaussian guide, a dynamic or non-broadcasting model."""
    kind = loss.check_target(model, args, kwargs)
    if kind not in ("prior", "posterior"):
        raise NotLowerable(f"a {kind} target")
    plan = loss.plans()[kind]
    orders = plan.order_list
    if len(orders) != 1 or orders[0] not in (Order.GUIDE_FIRST, Order.GUIDE_FIRST_DETACHED):
        what = " and ".join(o.value for o in orders)
        raise NotLowerable(f"its {kind}-target estimator runs the programs {what}")
    if not plan.densities:
        raise NotLowerable("its estimator needs draws, not densities")
    _guide_kind(guide)
    nesting, enumerated = loss.runner.nesting(model, guide, args, kwargs, Order.GUIDE_FIRST)
    if enumerated:
        raise NotLowerable("the model has enumerated sites")
    if guide.prototype_trace is None:
        with torch.random.fork_rng(), poutine.block():
            guide(*args, **kwargs)
    vectorized = loss.vectorize_particles and loss.num_particles > 1
    if loss.num_particles > 1 and not vectorized:
        raise NotLowerable("its particles are sequential (vectorize_particles=False)")
    if (model, guide) in loss.runner._sequential:
        raise NotLowerable("the model does not broadcast over the particle plate")
    detached = orders[0] is Order.GUIDE_FIRST_DETACHED
    lowered = Lowered(model, guide, loss.num_particles if vectorized else None, nesting, detached)
    lowered.check_model(args, kwargs)
    if vectorized:
        _check_broadcasts(lowered, args, kwargs)
    return lowered


def _check_broadcasts(lowered: Lowered, args, kwargs) -> None:
    """Compare the vectorized ``log_p`` and ``log_q`` of particles 0 and K-1 with single
    unplated runs at the same draws (as the eager runner's first vectorized run is checked)."""
    single = Lowered(lowered.model, lowered.guide, None, lowered.nesting, lowered.detached)
    with torch.random.fork_rng(), torch.no_grad():
        with given_noise(None) as single.shapes:
            single.guide_draw(args, kwargs)
        noise = lowered.noise()
        try:
            together = lowered.densities(noise, args, kwargs)
            for k in (0, lowered.particles - 1):
                alone = single.densities(
                    [
                        eps[k].reshape(s)
                        for eps, (s, _, _) in zip(noise, single.shapes, strict=True)
                    ],
                    args,
                    kwargs,
                )
                for a, b in zip(together, alone, strict=True):
                    if not torch.allclose(
                        a[k], b[0], rtol=1e-5, atol=1e-5 * max(1.0, float(b.abs()))
                    ):
                        raise NotLowerable("the model does not broadcast over the particle plate")
        except NotLowerable:
            raise
        except Exception as error:  # noqa: BLE001 - any failure under the plate
            raise NotLowerable(
                f"the model fails under the particle plate ({type(error).__name__}: {error})"
            ) from None
