r"""Pyro plumbing: run a model and a guide, and reduce their traces to per-particle
log-densities.

For a target (model) :math:`P` and an approximation (guide) :math:`Q`, each function here
returns a :class:`LogDensities` with, per particle :math:`k`,

* ``log_p`` :math:`= \sum_{\text{model sites}} \log p` (observed sites and ``pyro.factor``
  included, with plate subsampling scale, ``poutine.scale`` and masks applied by Pyro's
  ``Trace.compute_log_prob``),
* ``log_q`` :math:`= \sum_{\text{guide sites}} \log q` (auxiliary sites of autoguides
  included),
* ``score``: the part of ``log_q`` from sites that were not reparameterized, from Pyro's
  ``Trace.compute_score_parts``, or ``None``.

Particles are either sequential (each trace holds one particle and sums to a scalar) or
vectorized under Pyro's outer ``num_particles_vectorized`` plate, in which case everything
except the particle dimension is summed out.

Two orders of execution are offered:

* :func:`guide_first`: :math:`x\sim Q`, the model replayed at :math:`x` (Pyro's
  ``get_importance_trace``). With ``detach=True`` the guide's draws are detached *as they are
  made* (:class:`DetachSamples`), so that ``log_q`` is :math:`\log q_\theta(x)` at fixed
  :math:`x`, also for autoguides whose sites are deterministic functions of an auxiliary draw.
* :func:`model_first`: :math:`x\sim P` by running the model, and the guide evaluated at
  :math:`x` (:func:`replay_guide_at`), for prior targets.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from pyro import poutine
from pyro.infer.autoguide import AutoContinuous, AutoGuideList, AutoNormal
from pyro.infer.enum import get_importance_trace
from pyro.infer.util import is_validation_enabled
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_model_guide_match, check_site_shape
from torch.distributions import biject_to


class LogDensities(NamedTuple):
    """Per-particle log-densities of one run of a model and a guide."""

    log_p: torch.Tensor
    log_q: torch.Tensor
    score: torch.Tensor | None = None


def stack_particles(parts: list[LogDensities]) -> LogDensities:
    """Join sequential particles (scalars) or pass one vectorized batch through.

    Example::

        >>> z = torch.tensor(0.0)
        >>> stack_particles([LogDensities(z, z), LogDensities(z, z)]).log_p.shape
        torch.Size([2])
    """
    if len(parts) == 1 and parts[0].log_p.dim() == 1:
        return parts[0]
    scores = [p.score for p in parts]
    if all(s is None for s in scores):
        score = None
    else:
        score = torch.stack(
            [
                s if s is not None else torch.zeros_like(p.log_q)
                for s, p in zip(scores, parts, strict=True)
            ]
        )
    return LogDensities(
        torch.stack([p.log_p for p in parts]), torch.stack([p.log_q for p in parts]), score
    )


def sum_to_particles(log_prob: torch.Tensor, particle_dim: int | None) -> torch.Tensor:
    """Sum a site's log-prob over every dimension but the particle dimension.

    ``particle_dim`` is the (negative) dim of the vectorized particle plate, or ``None`` for a
    single particle (everything is summed).

    Example::

        >>> sum_to_particles(torch.ones(4, 1, 3), particle_dim=-3)
        tensor([3., 3., 3., 3.])
    """
    if particle_dim is None or log_prob.dim() < -particle_dim:
        return log_prob.sum()
    dims = [d for d in range(-log_prob.dim(), 0) if d != particle_dim]
    return log_prob.sum(dims) if dims else log_prob


class DetachSamples(Messenger):
    """Detach every latent draw as it is made, before the program (or a trace) sees it.

    Enter it *outside* ``poutine.trace`` so that the trace records the detached value.

    Example::

        >>> loc = torch.tensor(0.0, requires_grad=True)
        >>> with DetachSamples():
        ...     x = pyro.sample("x", dist.Normal(loc, 1.0))
        >>> x.requires_grad
        False
    """

    def _pyro_post_sample(self, msg):
        if not msg["is_observed"] and isinstance(msg["value"], torch.Tensor):
            msg["value"] = msg["value"].detach()


def _check_finite(trace, kind: str, total: torch.Tensor):
    """Raise a ValueError naming the first site whose log-density is NaN or infinite."""
    if torch.isfinite(total).all():
        return
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and not torch.isfinite(site["log_prob"]).all():
            value = site["value"]
            bad_value = isinstance(value, torch.Tensor) and not torch.isfinite(value).all()
            what = "its value" if bad_value else "its log-density"
            raise ValueError(
                f"{kind} site {name!r}: {what} contains NaN or inf "
                f"({'observed data' if site['is_observed'] else 'latent draw'}); "
                "check the data and the distribution's support and parameters"
            )
    raise ValueError(f"the {kind} log-density is NaN or inf")


def trace_log_density(trace, particle_dim: int | None, kind: str = "model") -> torch.Tensor:
    """Per-particle sum of a trace's ``log_prob`` entries (computed beforehand)."""
    total = 0.0
    for site in trace.nodes.values():
        if site["type"] == "sample":
            total = total + sum_to_particles(site["log_prob"], particle_dim)
    if not isinstance(total, torch.Tensor):
        raise ValueError(f"the {kind} has no sample sites")
    _check_finite(trace, kind, total)
    return total


def trace_score(guide_trace, particle_dim: int | None) -> torch.Tensor | None:
    """Per-particle score-function term of the non-reparameterized guide sites, or ``None``."""
    total = None
    for site in guide_trace.nodes.values():
        if site["type"] == "sample":
            term = site["score_parts"].score_function
            if isinstance(term, torch.Tensor):
                term = sum_to_particles(term, particle_dim)
                total = term if total is None else total + term
    return total


def log_densities(model_trace, guide_trace, particle_dim: int | None) -> LogDensities:
    """Reduce a (model, guide) trace pair with computed log-probs to :class:`LogDensities`."""
    log_p = trace_log_density(model_trace, particle_dim, "model")
    log_q = trace_log_density(guide_trace, particle_dim, "guide")
    score = trace_score(guide_trace, particle_dim)
    shape = torch.broadcast_shapes(log_p.shape, log_q.shape)
    return LogDensities(log_p.expand(shape), log_q.expand(shape), score)


def guide_first(model, guide, args, kwargs, max_plate_nesting, detach: bool = False):
    r"""Draw :math:`x \sim Q` from the guide and replay the model at :math:`x`.

    Returns ``(model_trace, guide_trace)`` with ``log_prob`` computed on both and
    ``score_parts`` on the guide. With ``detach=True`` the guide's draws carry no gradient.
    """
    if not detach:
        return get_importance_trace("flat", max_plate_nesting, model, guide, args, kwargs)
    with DetachSamples():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
        *args, **kwargs
    )
    return _finish(model_trace, guide_trace, max_plate_nesting)


def model_first(model, guide, args, kwargs, max_plate_nesting):
    r"""Draw :math:`x \sim P` by running the model, and evaluate the guide at :math:`x`."""
    model_trace = poutine.trace(model).get_trace(*args, **kwargs)
    guide_trace = replay_guide_at(guide, model_trace, args, kwargs)
    return _finish(model_trace, guide_trace, max_plate_nesting)


def _finish(model_trace, guide_trace, max_plate_nesting):
    if is_validation_enabled():
        check_model_guide_match(model_trace, guide_trace, max_plate_nesting)
    model_trace = prune_subsample_sites(model_trace)
    guide_trace = prune_subsample_sites(guide_trace)
    model_trace.compute_log_prob()
    guide_trace.compute_score_parts()
    if is_validation_enabled():
        for trace in (model_trace, guide_trace):
            for site in trace.nodes.values():
                if site["type"] == "sample":
                    check_site_shape(site, max_plate_nesting)
    return model_trace, guide_trace


def replay_guide_at(guide, model_trace, args, kwargs):
    r"""Run the guide with its latent sites fixed to the values in ``model_trace``.

    Autoguides that draw auxiliary latents and transform them (``AutoNormal``, and the
    ``AutoContinuous`` family: ``AutoDiagonalNormal``, ``AutoMultivariateNormal``,
    ``AutoLowRankMultivariateNormal``, ``AutoIAFNormal``, ...) are handled by inverting their
    transform: the auxiliary value is :math:`u = \mathrm{pack}(T^{-1}(x))`, so ``log_q``
    includes the Jacobian term
    :math:`\log q(x) = \log q_u(u) - \log|\det J_T(u)|`. The returned trace has no gradient
    through :math:`x`.
    """
    auxiliary, covered = auxiliary_values(guide, model_trace)
    replay_trace = model_trace.copy()
    for name in covered:  # the guide recomputes these from their auxiliary latents
        replay_trace.remove_node(name)
    for name, value in auxiliary.items():
        replay_trace.add_node(name, type="sample", value=value, is_observed=False, infer={})
    with DetachSamples():
        return poutine.trace(poutine.replay(guide, trace=replay_trace)).get_trace(*args, **kwargs)


def auxiliary_values(guide, model_trace) -> tuple[dict, set]:
    """Values of the auxiliary latents of autoguide parts of ``guide`` (``AutoNormal``'s
    ``<site>_unconstrained`` draws, ``AutoContinuous``'s packed latent) that reproduce the
    latent values in ``model_trace``, and the names of the model sites they cover."""
    guide = poutine.unwrap(guide)
    if isinstance(guide, AutoGuideList):
        values, covered = {}, set()
        for part in guide:
            part_values, part_covered = auxiliary_values(part, model_trace)
            values.update(part_values)
            covered |= part_covered
        return values, covered
    if not isinstance(guide, AutoNormal | AutoContinuous):
        return {}, set()
    if guide.prototype_trace is None:
        raise ValueError(
            f"{type(guide).__name__} has not been initialized; call it once with the model's "
            "arguments (or run one SVI step) before evaluating it at the target's draws"
        )
    unconstrained = {
        name: biject_to(site["fn"].support).inv(model_trace.nodes[name]["value"].detach())
        for name, site in guide.prototype_trace.iter_stochastic_nodes()
    }
    if isinstance(guide, AutoNormal):
        return {f"{name}_unconstrained": v for name, v in unconstrained.items()}, set(
            unconstrained
        )
    pieces = []
    for name, value in unconstrained.items():
        event_shape = guide._unconstrained_shapes[name]
        batch_shape = value.shape[: value.dim() - len(event_shape)]
        pieces.append(value.reshape(batch_shape + (-1,)))
    batch_shape = torch.broadcast_shapes(*(p.shape[:-1] for p in pieces))
    latent = torch.cat([p.expand(batch_shape + p.shape[-1:]) for p in pieces], -1)
    return {f"_{guide._pyro_name}_latent": latent}, set(unconstrained)


def observed_sites(model_trace) -> list[str]:
    """Names of the observed sites (``obs=`` data and ``pyro.factor``) of a model trace."""
    return [
        name
        for name, site in model_trace.nodes.items()
        if site["type"] == "sample" and site["is_observed"]
    ]
