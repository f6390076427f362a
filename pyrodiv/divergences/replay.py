r"""Running a guide at given values: detach draws as they are made, fix latent values, and
evaluate a guide (autoguides included) at draws of the model.

For an autoguide whose latents are a transform :math:`x = T(u)` of an auxiliary draw
:math:`u` (``AutoNormal``, the ``AutoContinuous`` family), the guide is evaluated at
:math:`x` by inverting :math:`T`: :math:`u = \mathrm{pack}(T^{-1}(x))`, so that
:math:`\log q(x) = \log q_u(u) - \log|\det J_T(u)|`. :mod:`pyrodiv.divergences.traces` uses
these for its model-first and given-draws orders.

Example::

    >>> with SetValues({"z": torch.tensor(2.0)}):
    ...     z = pyro.sample("z", dist.Normal(0.0, 1.0))
    >>> float(z)
    2.0
"""

from __future__ import annotations

import torch
from pyro import poutine
from pyro.infer.autoguide import AutoContinuous, AutoGuideList, AutoNormal
from pyro.poutine.messenger import Messenger
from torch.distributions import biject_to


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
    replay_trace = model_trace
    if auxiliary or covered:  # replay reads the trace; a copy only to swap sites in it
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
