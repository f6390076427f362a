r"""Checks of guide and model sites that no divergence can use: point masses in the guide
(no :math:`\log q`) and enumerated model sites that the guide does not sample.

Example::

    >>> is_delta(dist.Delta(torch.tensor(0.0)).to_event(0))
    True
"""

from __future__ import annotations

import math

from pyro import poutine
from pyro.distributions import Delta
from pyro.distributions.transforms import biject_to
from pyro.infer.autoguide import AutoDelta, AutoGuide, AutoGuideList


def is_delta(fn) -> bool:
    """Whether a site's distribution is a ``Delta``, possibly wrapped (``to_event``, masks,
    ``expand``, transforms)."""
    while not isinstance(fn, Delta):
        fn = getattr(fn, "base_dist", None)
        if fn is None:
            return False
    return True


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


def _unconstrained_size(site, model_trace, name) -> int:
    """Entries of a guide site's value in the unconstrained space of its model site (a
    simplex of K entries has K - 1); its own entries when the model site is unknown."""
    shape = site["value"].shape
    if model_trace is not None and name in model_trace.nodes:
        try:
            shape = biject_to(model_trace.nodes[name]["fn"].support).inverse_shape(shape)
        except (NotImplementedError, AttributeError, ValueError):
            pass
    return math.prod(shape)


def point_mass_sites(guide, guide_trace, model_trace=None) -> list[str]:
    r"""Names of the latent guide sites that are point masses, where :math:`\log q` has no
    density.

    A latent guide site whose distribution is a ``dist.Delta`` is a point mass unless it is a
    reparameterized transform of an auxiliary draw with a density (then its ``Delta`` carries
    that density and the Jacobian, as in ``AutoNormal`` and the ``AutoContinuous`` family).
    So the point masses are: the sites of an ``AutoDelta`` (also as a part of an
    ``AutoGuideList``), auxiliary sites that are themselves ``Delta``
    (``AutoLaplaceApproximation`` before its Laplace step), and, in a guide that is no
    autoguide, ``Delta`` sites when the guide draws no auxiliary site with a density, or when
    their values hold a different number of entries than the auxiliary draws: a map
    :math:`x = g(u)` from :math:`\mathbb R^m` to :math:`\mathbb R^n` with :math:`n \ne m` has
    no density :math:`q(x) = q(u) / |\det \partial g / \partial u|` (an implicit guide, a
    network of noise). With equal numbers the ``Delta`` is trusted to carry
    :math:`-\log|\det \partial g / \partial u|` as its ``log_density``. A
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
    auxiliary_sizes = [
        site["value"].numel()
        for site in guide_trace.nodes.values()
        if site["type"] == "sample"
        and site["infer"].get("is_auxiliary")
        and not is_delta(site["fn"])
    ]
    has_auxiliary_density = bool(auxiliary_sizes)
    names, transformed = [], []
    for name, site in guide_trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or not is_delta(site["fn"]):
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
        else:
            transformed.append(name)
    sizes = sum(
        _unconstrained_size(guide_trace.nodes[name], model_trace, name) for name in transformed
    )
    if transformed and sizes != sum(auxiliary_sizes):  # no bijection: an implicit guide
        names.extend(transformed)
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
                "guide), or a loss that needs only draws of Q (an implicit guide, a network of "
                "noise, is such a Delta): Wasserstein, or the adversarial GAN, LSGAN, WGAN and "
                "AdversarialFDivergence, which train a critic. For a point estimate, use "
                "pyro.infer.Trace_ELBO with AutoDelta (MAP)"
            )


def check_enumeration(model_trace, guide_trace) -> None:
    """Raise a ValueError naming a latent model site marked for enumeration
    (``infer={"enumerate": ...}``, ``config_enumerate``) that the guide does not sample and
    that was drawn instead of summed out (:mod:`pyrodiv.divergences.enumeration` sums such
    sites out wherever the runner runs the model itself).

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
        if not how or site["infer"].get("_enumerate_dim") is not None:
            continue
        if name not in guide_trace.nodes or guide_trace.nodes[name]["type"] != "sample":
            raise ValueError(
                f"model site {name!r} is marked for enumeration (infer={{'enumerate': {how!r}}}) "
                "but was drawn, not summed out: the guide does not sample it, and this guide "
                "runs the model itself (an AutoGuideMessenger). Sample "
                f"{name!r} in the guide, use a guide that does not run the model, or sum it "
                "out in the model by hand (a MixtureSameFamily, or a logsumexp in a pyro.factor)"
            )
