r"""Markovian score climbing: a conditional importance sampling kernel over the guide's draws.

Naesseth, Lindsten and Blei (2020) minimize the inclusive :math:`\mathrm{KL}(P\|Q)` to an
unnormalized posterior :math:`\tilde p` with a Markov chain whose state :math:`z^\ast` is kept
between optimizer steps. Each step draws :math:`z_2, \dots, z_K \sim Q`, sets
:math:`z_1 = z^\ast`, weights every particle by :math:`w_k = \tilde p(z_k) / q(z_k)` under the
current :math:`Q`, moves the state to :math:`z_J` with :math:`J \sim \mathrm{Categorical}(\bar w)`,
and follows the Rao-Blackwellized score
:math:`\hat g = \sum_k \bar w_k \nabla_\theta \log q_\theta(z_k)`. The kernel leaves the posterior
invariant, so the bias of self-normalized importance sampling at a fixed :math:`K` vanishes as
the chain mixes, and the iterates converge to a stationary point of the inclusive KL.

:class:`RetainParticle` is the Pyro side: it puts the state into particle 0 of each guide draw
(every guide sample site, auxiliary ones included, so that autoguides reproduce the same
latents) and records the draws, from which :func:`select_particle` reads the next state. Under
plate subsampling the state is dropped when the subsample changes (it is a draw for other data
points); that step is then plain self-normalized importance sampling.

Example::

    >>> retain = RetainParticle(state=None, particle_dim=None)
    >>> with retain:
    ...     x = pyro.sample("x", dist.Normal(0.0, 1.0))
    >>> sorted(retain.values)
    ['x']
"""

from __future__ import annotations

import torch
from pyro.poutine.messenger import Messenger


class RetainParticle(Messenger):
    """Replace particle 0 of every latent draw by ``state`` and record the draws.

    :param state: ``{site: value of one particle}`` or ``None`` (nothing to retain yet).
    :param particle_dim: the vectorized particle plate's dim (negative), or ``None`` when each
        run is one particle; then ``state`` replaces the whole draw.
    :param subsamples: the plate subsamples (``{plate name: indices}``) the state was drawn
        with; a run whose subsample differs drops the state.

    After a run, ``values`` holds every latent draw (detached, state included) and ``axes``
    each draw's particle axis (``None`` when sequential).
    """

    def __init__(self, state: dict | None, particle_dim: int | None, subsamples=None):
        super().__init__()
        self.state = state
        self.particle_dim = particle_dim
        self.state_subsamples = subsamples or {}
        self.values: dict[str, torch.Tensor] = {}
        self.axes: dict[str, int | None] = {}
        self.subsamples: dict[str, torch.Tensor] = {}
        self.state_lost = False

    def _pyro_post_sample(self, msg):
        if type(msg["fn"]).__name__ == "_Subsample":  # the state holds for its subsample only
            self.subsamples[msg["name"]] = msg["value"]
            kept = self.state_subsamples.get(msg["name"])
            if self.state is not None and (kept is None or not torch.equal(kept, msg["value"])):
                self.state, self.state_lost = None, True
            return
        if msg["is_observed"]:
            return
        name, value = msg["name"], msg["value"].detach()
        axis = None
        if self.particle_dim is not None:
            axis = value.dim() - msg["fn"].event_dim + self.particle_dim
        kept = None if self.state is None else self.state.get(name)
        one = value if axis is None else value.select(axis, 0)
        if kept is not None and kept.shape == one.shape:
            if axis is not None:
                rest = value.narrow(axis, 1, value.shape[axis] - 1)
                kept = torch.cat([kept.unsqueeze(axis), rest], axis)
            value = msg["value"] = kept
        elif kept is not None:
            self.state_lost = True  # the site changed shape (e.g. a new subsample)
        self.values[name] = value
        self.axes[name] = axis


def select_particle(values: dict, axes: dict, index: int) -> dict:
    """The draws of particle ``index`` from the ``values`` a :class:`RetainParticle` recorded
    (vectorized runs), by the particle ``axes`` it recorded.

    Example::

        >>> select_particle({"x": torch.arange(3.0)}, {"x": 0}, 2)
        {'x': tensor(2.)}
    """
    return {name: v.select(axes[name], index).clone() for name, v in values.items()}


class Chain:
    """The Markov chain of score climbing, kept between optimizer steps: its state (one
    particle's draws of every guide site), the plate subsamples it was drawn with, and the
    model and guide it belongs to (a new pair resets it).

    Example::

        >>> chain = Chain()
        >>> chain.state is None
        True
    """

    def __init__(self):
        self.reset()

    def reset(self):
        """Forget the state."""
        self.state, self.subsamples, self.owner = None, None, None

    def follow(self, model, guide):
        """Reset the chain if it belongs to another model and guide."""
        if self.owner != (model, guide):
            self.reset()
            self.owner = (model, guide)

    def handler(self, particle_dim: int | None, first: bool = True) -> RetainParticle:
        """The :class:`RetainParticle` of one run: the state enters the first particle."""
        return RetainParticle(self.state if first else None, particle_dim, self.subsamples)

    def advance(self, handlers: list[RetainParticle], log_weights: torch.Tensor):
        """Move the state to particle :math:`J \\sim \\mathrm{Categorical}(\\bar w)` of
        the runs recorded by ``handlers`` (one vectorized run, or one per particle)."""
        j = next_state_index(log_weights)
        if len(handlers) > 1:
            self.state, self.subsamples = dict(handlers[j].values), handlers[j].subsamples
        else:
            run = handlers[0]
            self.state, self.subsamples = select_particle(run.values, run.axes, j), run.subsamples


def next_state_index(log_weights: torch.Tensor) -> int:
    r"""Draw :math:`J \sim \mathrm{Categorical}(\mathrm{softmax}(\log w))`, the new state's
    particle, from torch's random state."""
    return int(torch.distributions.Categorical(logits=log_weights.detach()).sample())
