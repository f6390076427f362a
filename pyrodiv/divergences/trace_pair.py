r"""One run of a model and a guide: the pair of traces that every particle of the
:class:`~pyrodiv.divergences.traces.Runner` is made of.

:func:`trace_pair` runs the two programs in an explicit :class:`Order` (guide first, as Pyro's
``get_importance_trace``; guide first with detached draws; model first; at given draws of
:math:`P`; with a retained particle for score climbing), prunes the subsample sites, computes
the log-probabilities and score parts with Pyro's ``Trace`` methods and checks that the model
and the guide match. :class:`PinSubsamples` reuses plate subsamples across runs;
:func:`guess_max_plate_nesting` is the package's one nesting guess.

Example::

    >>> model_trace, guide_trace = trace_pair(model, guide, (), {}, Order.GUIDE_FIRST, 0,
    ...                                       None, None)               # doctest: +SKIP
"""

from __future__ import annotations

import enum
import math
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from pyro import poutine
from pyro.infer.autoguide import AutoGuide, AutoGuideList
from pyro.infer.util import is_validation_enabled
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from pyro.util import check_model_guide_match, check_site_shape

from .densities import LogDensities
from .enumeration import enumerate_model
from .replay import DetachSamples, is_guide_messenger, replay_guide_at
from .site_checks import mark_point_masses

__all__ = [
    "Order",
    "PinSubsamples",
    "Run",
    "guess_max_plate_nesting",
    "initialize_autoguide",
    "latent_rows",
    "observes",
    "paired_latents",
    "param_values",
    "trace_pair",
]


class Order(enum.Enum):
    """The order in which the model and the guide run, and where the draws come from."""

    #: :math:`x \sim Q`, the model replayed at :math:`x` (Pyro's ``get_importance_trace``).
    GUIDE_FIRST = "guide first"
    #: The same, the draws detached as they are made: :math:`\log q_\theta(x)` at fixed x.
    GUIDE_FIRST_DETACHED = "guide first, detached"
    #: :math:`x \sim P` by running the model, the guide evaluated at :math:`x`.
    MODEL_FIRST = "model first"
    #: :math:`x` from given draws of :math:`P` (``draws=``), the guide evaluated at :math:`x`.
    GIVEN_DRAWS = "given draws"
    #: :math:`x \sim Q` with particle 0 replaced by a retained chain state (score climbing).
    RETAINED = "retained particle"


@dataclass
class Run:
    """The outcome of one :class:`~pyrodiv.divergences.traces.Runner` call over all particles."""

    log_p: torch.Tensor | None
    log_q: torch.Tensor | None
    score: torch.Tensor | None
    latents: dict[str, torch.Tensor]
    params: dict[str, torch.Tensor]
    subsamples: dict[str, torch.Tensor]
    traces: list = field(default_factory=list)
    handlers: list = field(default_factory=list)
    #: Guide sites drawn without a reparameterized sampler (draws-only guide runs).
    not_reparameterized: list = field(default_factory=list)

    @property
    def densities(self) -> LogDensities:
        return LogDensities(self.log_p, self.log_q, self.score)


# ---- handlers ----------------------------------------------------------------------------


class PinSubsamples(Messenger):
    """Reuse plate subsamples: those in ``values``, and with ``reuse=True`` also the first
    one drawn of each plate, for every later run under this handler. Records every subsample
    in ``drawn``.

    Example::

        >>> pin = PinSubsamples(reuse=True)
        >>> with pin:
        ...     with pyro.plate("data", 100, subsample_size=5) as first:
        ...         pass
        ...     with pyro.plate("data", 100, subsample_size=5) as second:
        ...         pass
        >>> torch.equal(first, second)
        True
    """

    def __init__(self, values: dict | None = None, reuse: bool = False):
        super().__init__()
        self.values = dict(values or {})
        self.reuse = reuse
        self.drawn: dict[str, torch.Tensor] = {}
        self.partial = False  # was any plate subsampled (fewer indices than its size)?

    def _pyro_sample(self, msg):
        if site_is_subsample(msg) and msg["value"] is None and msg["name"] in self.values:
            msg["value"] = self.values[msg["name"]]
            msg["done"] = True

    def _pyro_post_sample(self, msg):
        if site_is_subsample(msg):
            self.partial = self.partial or msg["value"].numel() < msg["fn"].size
            self.drawn.setdefault(msg["name"], msg["value"])
            if self.reuse:
                self.values.setdefault(msg["name"], msg["value"])


# ---- one run (one particle, or one vectorized batch) -------------------------------------


def _finish(model_trace, guide_trace, nesting):
    # the nesting guess (infinite nesting) runs without enumeration: matched in the real runs
    if is_validation_enabled() and nesting != math.inf:
        check_model_guide_match(model_trace, guide_trace, nesting)
    model_trace = prune_subsample_sites(model_trace)
    guide_trace = prune_subsample_sites(guide_trace)
    model_trace.compute_log_prob()
    guide_trace.compute_score_parts()
    if is_validation_enabled():
        for trace in (model_trace, guide_trace):
            for site in trace.nodes.values():
                if site["type"] == "sample":
                    check_site_shape(site, nesting)
    return model_trace, guide_trace


def trace_pair(
    model, guide, args, kwargs, order: Order, nesting, handler, set_draws, enumerate=False
):
    """One (model trace, guide trace) pair in ``order``; ``guide`` may be ``None`` for the
    orders that run the model first (then only the model trace is returned, log-probs done).
    ``handler`` is entered around the guide's draws (inside their detaching). With
    ``enumerate``, the model's sites marked for parallel enumeration are summed out
    (:mod:`~pyrodiv.divergences.enumeration`; drawn first, then enumerated, when the model
    runs first)."""
    if order in (Order.MODEL_FIRST, Order.GIVEN_DRAWS):
        if set_draws is not None:
            model = set_draws(model)
        model_trace = poutine.trace(model).get_trace(*args, **kwargs)
        if enumerate:
            model = enumerate_model(model, nesting, trace=model_trace)
            model_trace = poutine.trace(model).get_trace(*args, **kwargs)
        if guide is None:
            model_trace = prune_subsample_sites(model_trace)
            model_trace.compute_log_prob()
            return model_trace, None
        guide_trace = replay_guide_at(guide, model_trace, args, kwargs)
    else:
        detach = order is not Order.GUIDE_FIRST
        with DetachSamples() if detach else nullcontext(), handler or nullcontext():
            if is_guide_messenger(guide):  # it runs the model itself and records both traces
                guide(*args, **kwargs)
                model_trace, guide_trace = poutine.unwrap(guide).get_traces()
            else:
                guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        if not is_guide_messenger(guide):
            if enumerate:
                model = enumerate_model(model, nesting)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
                *args, **kwargs
            )
    model_trace, guide_trace = _finish(model_trace, guide_trace, nesting)
    return model_trace, mark_point_masses(guide, guide_trace, model_trace)


def latent_rows(trace, rows: int) -> dict[str, torch.Tensor]:
    """The latent values of a trace (no auxiliary, deterministic, subsample or enumerated
    sites), each flattened to ``(rows, -1)``: one row per particle."""
    out = {}
    # enumeration dims (left of every plate) are not the values' own dims
    enum_dims = [
        site["infer"]["_enumerate_dim"]
        for site in trace.nodes.values()
        if site["type"] == "sample" and site["infer"].get("_enumerate_dim") is not None
    ]
    plate_dims = -max(enum_dims) - 1 if enum_dims else None
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site["infer"].get("is_auxiliary"):
            continue
        if site["infer"].get("_deterministic") or site_is_subsample(site):
            continue
        if site["infer"].get("_enumerate_dim") is not None:  # summed out
            continue
        value = site["value"]
        if rows > 1:
            batch_shape = site["fn"].batch_shape
            if plate_dims is not None:
                batch_shape = batch_shape[max(len(batch_shape) - plate_dims, 0) :]
            value = value.expand(batch_shape + site["fn"].event_shape)
        out[name] = value.reshape(rows, -1)
    return out


def paired_latents(at_q: Run, at_p: Run, gradient: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Q's and P's draws of the model's latent sites as ``(K, D)`` tensors, in P's site order;
    a ValueError names a site the guide lacks, or one it cannot reparameterize (``gradient``
    says what needs the pathwise gradient)."""
    names = list(at_p.latents)
    missing = [n for n in names if n not in at_q.latents]
    if missing:
        raise ValueError(f"model site {missing[0]!r} is not in the guide")
    if not names:
        raise ValueError("the model has no latent sites")
    if at_q.not_reparameterized:
        raise ValueError(
            f"guide site {at_q.not_reparameterized[0]!r} is not reparameterizable; {gradient} "
            "is pathwise"
        )
    x_q = torch.cat([at_q.latents[n] for n in names], -1)
    return x_q, torch.cat([at_p.latents[n] for n in names], -1)


def param_values(*traces) -> dict[str, torch.Tensor]:
    out = {}
    for trace in traces:
        if trace is not None:
            for name, site in trace.nodes.items():
                if site["type"] == "param":
                    out[name] = site["value"].unconstrained()
    return out


def guess_max_plate_nesting(*traces) -> int:
    """The deepest vectorized plate of the sample sites of ``traces`` (0 without plates): the
    one nesting guess of the package, read from one unvectorized run.

    Example::

        >>> def model():
        ...     with pyro.plate("a", 2, dim=-2):
        ...         pyro.sample("x", dist.Normal(0.0, 1.0))
        >>> guess_max_plate_nesting(poutine.trace(model).get_trace())
        2
    """
    dims = [
        frame.dim
        for trace in traces
        if trace is not None
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized and frame.dim is not None
    ]
    return -min(dims) if dims else 0


def initialize_autoguide(guide, args, kwargs):
    """Run an autoguide that has not been run yet once (RNG-neutral, outside any trace), so
    that it can be evaluated at the target's draws before its first SVI step."""
    if guide is None:
        return
    parts = poutine.unwrap(guide)
    parts = list(parts) if isinstance(parts, AutoGuideList) else [parts]
    if any(isinstance(g, AutoGuide) and g.prototype_trace is None for g in parts):
        with torch.random.fork_rng(), poutine.block():
            guide(*args, **kwargs)


def observes(model, args, kwargs) -> bool:
    """Whether one run of ``model`` has an observed site or a ``pyro.factor`` (a posterior
    target), read without moving the random state; ``pyro.deterministic`` sites do not
    count."""
    with torch.random.fork_rng(), poutine.block():
        trace = poutine.trace(model).get_trace(*args, **kwargs)
    return any(
        site["type"] == "sample"
        and site["is_observed"]
        and not site["infer"].get("_deterministic")
        for site in trace.nodes.values()
    )
