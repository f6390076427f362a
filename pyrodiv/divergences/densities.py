r"""Per-particle log-densities of a (model, guide) trace pair: the sums the divergences read.

For particle :math:`k`, ``log_p`` :math:`= \sum_{\text{model sites}} \log p` (observed sites
and ``pyro.factor`` included, with the plate scaling of subsampling, ``poutine.scale`` and masks
applied by Pyro's ``Trace.compute_log_prob``), ``log_q`` :math:`= \sum_{\text{guide sites}}
\log q`, and ``score`` the part of ``log_q`` from sites that were not reparameterized.

Example::

    >>> sum_to_particles(torch.ones(4, 1, 3), particle_dim=-3)
    tensor([3., 3., 3., 3.])
"""

from __future__ import annotations

import torch

from .enumeration import is_enumerated, marginal_log_density
from .site_checks import check_densities, check_enumeration


class LogDensities(tuple):
    """``(log_p, log_q, score)`` per particle; unpacks like a tuple."""

    def __new__(cls, log_p, log_q, score=None):
        return super().__new__(cls, (log_p, log_q, score))

    log_p = property(lambda self: self[0])
    log_q = property(lambda self: self[1])
    score = property(lambda self: self[2])


class NotVectorizable(ValueError):
    """A program does not broadcast over the particle plate."""


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
    if log_prob.dim() == -particle_dim:  # the particle dim leads: one flat sum per particle
        return log_prob.flatten(1).sum(1) if log_prob.dim() > 1 else log_prob
    dims = [d for d in range(-log_prob.dim(), 0) if d != particle_dim]
    return log_prob.sum(dims)


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
    """Per-particle sum of a trace's ``log_prob`` entries (computed beforehand).

    Under vectorized particles a site whose log-prob has dimensions left of the particle plate
    raises :class:`NotVectorizable` naming it (e.g. ``z[..., 0:1]`` where ``z[..., 0]`` was
    meant): summing those would give every particle the same total.
    """
    total = None
    for name, site in trace.nodes.items():
        if site["type"] == "sample":
            log_prob = site["log_prob"]
            if particle_dim is not None and log_prob.dim() > -particle_dim:
                raise NotVectorizable(
                    f"{kind} site {name!r}: its log-prob has shape {tuple(log_prob.shape)}, with "
                    f"dimensions left of the vectorized particle plate (dim {particle_dim})"
                )
            term = sum_to_particles(log_prob, particle_dim)
            total = term if total is None else total + term
    if total is None:
        raise ValueError(f"the {kind} has no sample sites")
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


def log_densities(
    model_trace, guide_trace, particle_dim: int | None, particle_plate: str | None = None
) -> LogDensities:
    """Reduce a (model, guide) trace pair with computed log-probs to :class:`LogDensities`,
    refusing point-mass guide sites and model sites marked for enumeration that were not
    enumerated (:mod:`pyrodiv.divergences.site_checks`), and naming a site whose log-density is
    NaN. The log p of an enumerated model is its marginal
    (:func:`~pyrodiv.divergences.enumeration.marginal_log_density`; ``particle_plate`` names
    the vectorized particle plate)."""
    check_densities(guide_trace)
    check_enumeration(model_trace, guide_trace)
    if is_enumerated(model_trace):
        log_p = marginal_log_density(model_trace, guide_trace, particle_dim, particle_plate)
    else:
        log_p = trace_log_density(model_trace, particle_dim, "model")
    log_q = trace_log_density(guide_trace, particle_dim, "guide")
    # One check for both traces; the per-site search only runs when it fails.
    if not torch.isfinite(log_p - log_q).all():
        _check_finite(model_trace, "model", log_p)
        _check_finite(guide_trace, "guide", log_q)
    score = trace_score(guide_trace, particle_dim)
    if log_p.shape != log_q.shape:
        shape = torch.broadcast_shapes(log_p.shape, log_q.shape)
        log_p, log_q = log_p.expand(shape), log_q.expand(shape)
    return LogDensities(log_p, log_q, score)
