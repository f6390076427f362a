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

Both mark the guide sites that are point masses (:func:`point_mass_sites`: ``AutoDelta``, a
hand-written ``dist.Delta``). :func:`log_densities` refuses those, and model sites marked for
enumeration that the guide does not sample (:func:`check_enumeration`), with a ``ValueError``
naming the site: ``log q`` does not exist at a point mass, and no loss here sums out an
enumerated site.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from pyro import poutine
from pyro.distributions import Delta, ExpandedDistribution, MaskedDistribution
from pyro.infer.autoguide import AutoContinuous, AutoDelta, AutoGuide, AutoGuideList, AutoNormal
from pyro.infer.enum import get_importance_trace
from pyro.infer.util import is_validation_enabled
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_model_guide_match, check_site_shape
from torch.distributions import Independent, biject_to


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
    if log_prob.dim() == -particle_dim:  # the particle dim leads: one flat sum per particle
        return log_prob.flatten(1).sum(1) if log_prob.dim() > 1 else log_prob
    dims = [d for d in range(-log_prob.dim(), 0) if d != particle_dim]
    return log_prob.sum(dims)


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


def trace_log_density(
    trace, particle_dim: int | None, kind: str = "model", check_finite: bool = True
) -> torch.Tensor:
    """Per-particle sum of a trace's ``log_prob`` entries (computed beforehand).

    Under vectorized particles a site whose log-prob has dimensions left of the particle plate
    is refused with a ValueError naming it: the program is not vectorizable (e.g. it indexed
    ``z[..., 0:1]`` where ``z[..., 0]`` was meant), and summing such dimensions would give every
    particle the same total. With ``check_finite`` a NaN or infinite sum raises a ValueError
    naming the site.
    """
    total = None
    for name, site in trace.nodes.items():
        if site["type"] == "sample":
            log_prob = site["log_prob"]
            if particle_dim is not None and log_prob.dim() > -particle_dim:
                raise ValueError(
                    f"{kind} site {name!r}: its log-prob has shape {tuple(log_prob.shape)}, with "
                    f"dimensions left of the vectorized particle plate (dim {particle_dim}); the "
                    "program is not vectorizable: index batched latents from the right "
                    "(z[..., 0], not z[..., 0:1]; (X * beta).sum(-1), not X @ beta) or set "
                    "max_plate_nesting"
                )
            term = sum_to_particles(log_prob, particle_dim)
            total = term if total is None else total + term
    if total is None:
        raise ValueError(f"the {kind} has no sample sites")
    if check_finite:
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
    """Reduce a (model, guide) trace pair with computed log-probs to :class:`LogDensities`.

    Raises a ``ValueError`` naming the site for a guide site marked as a point mass by
    :func:`guide_first` / :func:`model_first` (see :func:`point_mass_sites`) and for a model
    site marked for enumeration that the guide does not sample (:func:`check_enumeration`).
    """
    check_densities(guide_trace)
    check_enumeration(model_trace, guide_trace)
    log_p = trace_log_density(model_trace, particle_dim, "model", check_finite=False)
    log_q = trace_log_density(guide_trace, particle_dim, "guide", check_finite=False)
    # One check for both traces (inf - inf and nan propagate); the per-site search only
    # runs when it fails.
    if not torch.isfinite(log_p - log_q).all():
        _check_finite(model_trace, "model", log_p)
        _check_finite(guide_trace, "guide", log_q)
    score = trace_score(guide_trace, particle_dim)
    if log_p.shape != log_q.shape:
        shape = torch.broadcast_shapes(log_p.shape, log_q.shape)
        log_p, log_q = log_p.expand(shape), log_q.expand(shape)
    return LogDensities(log_p, log_q, score)


def guide_first(model, guide, args, kwargs, max_plate_nesting, detach: bool = False, outer=None):
    r"""Draw :math:`x \sim Q` from the guide and replay the model at :math:`x`.

    Returns ``(model_trace, guide_trace)`` with ``log_prob`` computed on both and
    ``score_parts`` on the guide. With ``detach=True`` the guide's draws carry no gradient.
    ``outer`` is a handler entered around the guide's run, outside its trace (inside the
    detaching), so that the values it sets are the ones recorded.
    """
    if outer is not None:
        detach = True
    if not detach:
        model_trace, guide_trace = get_importance_trace(
            "flat", max_plate_nesting, model, guide, args, kwargs
        )
        return model_trace, mark_point_masses(guide, guide_trace, model_trace)
    if is_guide_messenger(guide):  # it runs the model itself and records both traces
        with DetachSamples(), outer or Messenger():
            guide(*args, **kwargs)
        model_trace, guide_trace = poutine.unwrap(guide).get_traces()
    else:
        with DetachSamples(), outer or Messenger():
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    model_trace, guide_trace = _finish(model_trace, guide_trace, max_plate_nesting)
    return model_trace, mark_point_masses(guide, guide_trace, model_trace)


def model_first(model, guide, args, kwargs, max_plate_nesting):
    r"""Draw :math:`x \sim P` by running the model, and evaluate the guide at :math:`x`."""
    model_trace = poutine.trace(model).get_trace(*args, **kwargs)
    guide_trace = replay_guide_at(guide, model_trace, args, kwargs)
    model_trace, guide_trace = _finish(model_trace, guide_trace, max_plate_nesting)
    return model_trace, mark_point_masses(guide, guide_trace, model_trace)


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


def is_guide_messenger(guide) -> bool:
    """Whether ``guide`` is a :class:`pyro.poutine.guide.GuideMessenger` (``AutoNormalMessenger``
    and the other ``AutoMessenger`` guides), which runs the model inside itself."""
    return isinstance(poutine.unwrap(guide), Messenger)


class SetValues(Messenger):
    """Set the values of latent sites as they are drawn, keeping everything else of the site
    (its distribution and ``infer`` flags), unlike ``poutine.replay``.

    Example::

        >>> with SetValues({"z": torch.tensor(2.0)}):
        ...     z = pyro.sample("z", dist.Normal(0.0, 1.0))
        >>> float(z)
        2.0
    """

    def __init__(self, values: dict):
        super().__init__()
        self.values = values

    def _pyro_sample(self, msg):
        if msg["name"] in self.values and not msg["is_observed"]:
            msg["value"] = self.values[msg["name"]]
            msg["done"] = True


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
    if is_guide_messenger(guide):  # an AutoMessenger: fix its sites' values as they are drawn
        latents = {
            name: site["value"]
            for name, site in model_trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"]
        }
        with DetachSamples(), SetValues(latents):
            guide(*args, **kwargs)
        return poutine.unwrap(guide).get_traces()[1]
    auxiliary, covered = auxiliary_values(guide, model_trace)
    replay_trace = model_trace.copy()
    for name in covered:  # the guide recomputes these from their auxiliary latents
        replay_trace.remove_node(name)
    for name, value in auxiliary.items():
        replay_trace.add_node(
            name, type="sample", value=value, is_observed=False, infer={"is_auxiliary": True}
        )
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
    particles = _particle_frame(model_trace)
    pieces = []
    for name, value in unconstrained.items():
        if particles is None:
            event_shape = guide._unconstrained_shapes[name]
            batch_shape = value.shape[: value.dim() - len(event_shape)]
            pieces.append(value.reshape(batch_shape + (-1,)))
        else:  # one row per particle, whatever the site's plates
            pieces.append(
                value.expand_as(model_trace.nodes[name]["value"]).reshape(particles.size, -1)
            )
    batch_shape = torch.broadcast_shapes(*(p.shape[:-1] for p in pieces))
    latent = torch.cat([p.expand(batch_shape + p.shape[-1:]) for p in pieces], -1)
    if particles is not None:  # the latent's batch shape under the particle plate
        latent = latent.reshape(
            (particles.size,) + (1,) * (-particles.dim - 1) + latent.shape[-1:]
        )
    return {f"_{guide._pyro_name}_latent": latent}, set(unconstrained)


def _particle_frame(trace):
    """The frame of the vectorized particle plate (``num_particles_vectorized``), or ``None``."""
    for site in trace.nodes.values():
        for frame in site.get("cond_indep_stack", ()):
            if frame.name == "num_particles_vectorized":
                return frame
    return None


def observed_sites(model_trace) -> list[str]:
    """Names of the observed sites (``obs=`` data and ``pyro.factor``) of a model trace."""
    return [
        name
        for name, site in model_trace.nodes.items()
        if site["type"] == "sample" and site["is_observed"]
    ]


def _is_delta(fn) -> bool:
    """Whether a site's distribution is a ``Delta``, possibly wrapped (``to_event``, masks,
    ``expand``)."""
    while isinstance(fn, Independent | MaskedDistribution | ExpandedDistribution):
        fn = fn.base_dist
    return isinstance(fn, Delta)


def _is_discrete(site) -> bool:
    try:
        return bool(site["fn"].support.is_discrete)
    except (AttributeError, NotImplementedError):
        return False


def _density_sites(guide) -> set | None:
    """Model sites that the autoguide parts of ``guide`` draw with a density (every autoguide
    but ``AutoDelta``, also inside an ``AutoGuideList``); ``None`` when ``guide`` is no
    autoguide."""
    guide = poutine.unwrap(guide)
    if isinstance(guide, AutoGuideList):
        return set().union(*(_density_sites(part) or set() for part in guide))
    if not isinstance(guide, AutoGuide):
        return None
    if isinstance(guide, AutoDelta) or getattr(guide, "prototype_trace", None) is None:
        return set()
    return {name for name, _ in guide.prototype_trace.iter_stochastic_nodes()}


def point_mass_sites(guide, guide_trace, model_trace=None) -> list[str]:
    r"""Names of the latent guide sites that are point masses, where :math:`\log q` has no
    density.

    A latent guide site whose distribution is a ``dist.Delta`` is a point mass unless it is a
    reparameterized transform of an auxiliary draw with a density (then its ``Delta`` carries
    that density and the Jacobian, as in ``AutoNormal`` and the ``AutoContinuous`` family).
    So the point masses are: the sites of an ``AutoDelta`` (also as a part of an
    ``AutoGuideList``), auxiliary sites that are themselves ``Delta``
    (``AutoLaplaceApproximation`` before its Laplace step), and, in a guide that is no
    autoguide, ``Delta`` sites when the guide draws no auxiliary site with a density. A
    ``Delta`` on a site that is discrete in the model (``model_trace``) is a probability mass
    with :math:`\log q = 0` at its value, not a point mass.

    Example::

        >>> def model():
        ...     pyro.sample("z", dist.Normal(0.0, 1.0))
        >>> def guide():
        ...     pyro.sample("z", dist.Delta(pyro.param("z_map", torch.tensor(0.0))))
        >>> point_mass_sites(guide, poutine.trace(guide).get_trace())
        ['z']
    """
    covered = _density_sites(guide)
    has_auxiliary_density = any(
        site["type"] == "sample"
        and site["infer"].get("is_auxiliary")
        and not _is_delta(site["fn"])
        for site in guide_trace.nodes.values()
    )
    names = []
    for name, site in guide_trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or not _is_delta(site["fn"]):
            continue
        if model_trace is not None and name in model_trace.nodes:
            if _is_discrete(model_trace.nodes[name]):
                continue
        if site["infer"].get("is_auxiliary"):
            names.append(name)
        elif covered is not None:
            if name not in covered:
                names.append(name)
        elif not has_auxiliary_density:
            names.append(name)
    return names


def mark_point_masses(guide, guide_trace, model_trace=None):
    """Mark the sites of :func:`point_mass_sites` with ``infer["point_mass"] = True`` (for
    :func:`check_densities`) and return ``guide_trace``.

    Example (``guide`` as in :func:`point_mass_sites`)::

        >>> trace = mark_point_masses(guide, poutine.trace(guide).get_trace())
        >>> trace.nodes["z"]["infer"]["point_mass"]
        True
    """
    for name in point_mass_sites(guide, guide_trace, model_trace):
        site = guide_trace.nodes[name]
        site["infer"] = {**site["infer"], "point_mass": True}
    return guide_trace


def check_densities(guide_trace) -> None:
    """Raise a ValueError naming the first guide site marked as a point mass by
    :func:`mark_point_masses`: every divergence here needs :math:`\\log q`, which a point mass
    does not have.

    Example (``guide`` as in :func:`point_mass_sites`)::

        >>> check_densities(mark_point_masses(guide, poutine.trace(guide).get_trace()))
        Traceback (most recent call last):
        ...
        ValueError: guide site 'z' is a point mass (Delta) and has no density; ...
    """
    for name, site in guide_trace.nodes.items():
        if site["type"] == "sample" and site["infer"].get("point_mass"):
            raise ValueError(
                f"guide site {name!r} is a point mass (Delta) and has no density; the "
                "divergence losses need log q. Use a guide with a density (AutoNormal, "
                "AutoDiagonalNormal, AutoMultivariateNormal, or a Normal in a hand-written "
                "guide) or a sample-based loss; for a point estimate, use pyro.infer.Trace_ELBO "
                "with AutoDelta (MAP)"
            )


def check_enumeration(model_trace, guide_trace) -> None:
    """Raise a ValueError naming a latent model site marked for enumeration
    (``infer={"enumerate": ...}``, ``config_enumerate``) that the guide does not sample.

    The losses draw every latent site from the guide and sum out none, so such a site would be
    drawn from the model's prior and missing from :math:`\\log q`. Guide sites marked for
    enumeration are drawn like any other (a discrete one trains by the score function).

    Example::

        >>> def model():
        ...     pyro.sample("k", dist.Bernoulli(0.3), infer={"enumerate": "parallel"})
        >>> empty_guide_trace = poutine.trace(lambda: None).get_trace()
        >>> check_enumeration(poutine.trace(model).get_trace(), empty_guide_trace)
        Traceback (most recent call last):
        ...
        ValueError: model site 'k' is marked for enumeration ...
    """
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        how = site["infer"].get("enumerate")
        if how and (name not in guide_trace.nodes or guide_trace.nodes[name]["type"] != "sample"):
            raise ValueError(
                f"model site {name!r} is marked for enumeration (infer={{'enumerate': {how!r}}}) "
                "but the guide does not sample it; the divergence losses draw every latent site "
                f"from the guide and sum out none. Sample {name!r} in the guide (a discrete "
                "guide site trains by the score function), or sum it out in the model by hand "
                "(a MixtureSameFamily, or a logsumexp in a pyro.factor)"
            )
