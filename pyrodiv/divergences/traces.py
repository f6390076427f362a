r"""The one runner of Pyro programs: run a model and a guide over :math:`K` particles in an
explicit :class:`~pyrodiv.divergences.trace_pair.Order`, and reduce the traces to per-particle
log-densities (each particle's traces come from
:func:`~pyrodiv.divergences.trace_pair.trace_pair`).

Training (every loss), evaluation (:func:`pyrodiv.guide_to_inference_data`,
:func:`pyrodiv.psis_khat`) and Wasserstein all call :class:`Runner`, so a diagnostic reads the
same log-weights that training uses. For particle :math:`k` a :class:`Run` holds

* ``log_p`` :math:`= \sum_{\text{model sites}} \log p` (observed sites and ``pyro.factor``
  included, with plate subsampling scale, ``poutine.scale`` and masks applied by Pyro's
  ``Trace.compute_log_prob``),
* ``log_q`` :math:`= \sum_{\text{guide sites}} \log q` (auxiliary sites of autoguides
  included),
* ``score``: the part of ``log_q`` from sites that were not reparameterized (Pyro's
  ``Trace.compute_score_parts``), or ``None``,
* ``latents``: the model's latent draws, one row per particle; ``params``: the parameters the
  programs used; ``subsamples``: the plate subsamples drawn.

The runner owns, with one policy each:

* **the particle plate**: Pyro's outer ``num_particles_vectorized`` plate, left of the
  model's plates, or a sequential loop;
* **the nesting guess** (:func:`~pyrodiv.divergences.trace_pair.guess_max_plate_nesting`),
  from one run in the requested order;
* **subsample pinning** (:class:`~pyrodiv.divergences.trace_pair.PinSubsamples`): given
  subsamples are reused, and with ``pin=True`` the first subsample drawn is reused by every
  particle;
* **the vectorization check** (:mod:`pyrodiv.divergences.vectorization`): the first
  vectorized run of a model and guide is compared
  with particles 0 and :math:`K-1` recomputed one at a time. A program that raises under the
  particle plate, or whose log-densities differ (``X @ w`` for a batched ``w``, ``.sum()``
  without a dim), runs sequentially from then on, with one ``RuntimeWarning``.

Example::

    >>> runner = Runner(num_particles=8, vectorize=True)
    >>> run = runner(model, guide, (), {}, Order.GUIDE_FIRST)
    >>> run.log_p.shape
    torch.Size([8])
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from pyro.infer.tracegraph_elbo import TrackNonReparam
from pyro.poutine.util import site_is_subsample

from .densities import (
    LogDensities,
    NotVectorizable,
    _check_finite,
    log_densities,
    trace_log_density,
)
from .enumeration import enumerated_sites
from .replay import DetachSamples
from .site_checks import is_delta
from .trace_pair import (
    Order,
    PinSubsamples,
    Run,
    guess_max_plate_nesting,
    initialize_autoguide,
    latent_rows,
    observes,
    param_values,
    trace_pair,
)
from .vectorization import check_vectorized, warn_sequential

#: The name of the vectorized particle plate (Pyro's own, so that autoguides recognise it).
PARTICLE_PLATE = "num_particles_vectorized"


# ---- the runner --------------------------------------------------------------------------


class Runner:
    r"""Run a model and a guide over ``num_particles`` particles (see the module docstring).

    :param int num_particles: particles per call.
    :param bool vectorize: one run under the particle plate (checked once, with a sequential
        fallback) instead of a loop.
    :param max_plate_nesting: the model's own plate nesting (without the particle plate);
        guessed once per model and guide when infinite.

    Example::

        >>> run = Runner(4)(model, guide, (), {}, Order.MODEL_FIRST)
        >>> sorted(run.latents)
        ['z']
    """

    def __init__(self, num_particles=1, vectorize=False, max_plate_nesting=math.inf):
        self.num_particles = num_particles
        self.vectorize = vectorize
        self.max_plate_nesting = max_plate_nesting
        self._nesting = {}  # (model, guide, model first?) -> guessed nesting
        self._enumerate = {}  # (model, guide, model first?) -> sites to sum out?
        self._unsubsampled = set()  # (model, guide) seen to subsample no plate
        self._score_sites = {}  # (model, guide) -> has the guide non-reparameterized sites?
        self._sequential = set()  # (model, guide) that did not vectorize
        self._checked = set()  # (model, guide) whose vectorized runs were checked
        self.last_nesting = None  # the model's nesting in the latest call

    def nesting(self, model, guide, args, kwargs, order, set_draws=None):
        """The model's plate nesting (given, or guessed from one unvectorized run per model
        and guide, without moving the random state) and whether it has sites to sum out
        (:func:`~pyrodiv.divergences.enumeration.enumerated_sites`): read from the guess, or
        ``None`` until the first run when the nesting is given."""
        key = (model, guide, order in (Order.MODEL_FIRST, Order.GIVEN_DRAWS))
        if self.max_plate_nesting != math.inf:
            return int(self.max_plate_nesting), self._enumerate.get(key)
        if key not in self._nesting:
            subsamples = PinSubsamples()
            with torch.random.fork_rng(), poutine.block(), subsamples:
                traces = trace_pair(model, guide, args, kwargs, order, math.inf, None, set_draws)
            self._nesting[key] = guess_max_plate_nesting(*traces)
            self._enumerate[key] = bool(enumerated_sites(*traces))
            self._score_sites[key[:2]] = bool(score_sites(traces[1]))
            if not subsamples.partial:
                self._unsubsampled.add(key[:2])
        return self._nesting[key], self._enumerate[key]

    def has_score_sites(self, model, guide, args, kwargs) -> bool | None:
        """Whether the guide draws a site without a reparameterized sampler (from the
        nesting guess; ``None`` when the nesting is given and no guess was run)."""
        if self.max_plate_nesting == math.inf:
            self.nesting(model, guide, args, kwargs, Order.GUIDE_FIRST)
        return self._score_sites.get((model, guide))

    def __call__(
        self,
        model,
        guide,
        args,
        kwargs,
        order: Order = Order.GUIDE_FIRST,
        *,
        draws=None,
        rows=None,
        chain=None,
        pin=None,
        densities: bool = True,
        keep_traces: bool = False,
        provenance: bool = False,
    ) -> Run:
        r"""Run ``num_particles`` particles in ``order`` and return a :class:`Run`.

        :param draws: draws of :math:`P`, ``{site: tensor (N, *shape)}`` (``Order.GIVEN_DRAWS``).
        :param rows: which rows of ``draws`` the particles take (default: random rows).
        :param chain: a :class:`~pyrodiv.divergences.score_climbing.Chain`
            (``Order.RETAINED``): its state enters particle 0.
        :param pin: subsamples to reuse (a dict), or ``True`` to draw one and reuse it for
            every particle.
        :param densities: reduce the traces to log-densities (else only ``latents``).
        :param keep_traces: keep the (model, guide) trace pairs in the result.
        :param provenance: run under Pyro's ``TrackNonReparam`` (the values of
            non-reparameterized sites carry their provenance into every log-prob).
        """
        if order in (Order.MODEL_FIRST, Order.GIVEN_DRAWS):
            initialize_autoguide(guide, args, kwargs)
        call = _Call(self, model, guide, args, kwargs, order, draws, rows, chain, densities)
        nesting, call.enumerate = self.nesting(
            model, guide, args, kwargs, order, call.set_draws(1, 0, None)
        )
        self.last_nesting = nesting
        key = (model, guide)
        if pin is None and key in self._unsubsampled:  # nothing to pin: no messenger
            pinning = _NO_SUBSAMPLES
        else:
            pinning = PinSubsamples(pin if isinstance(pin, dict) else None, reuse=pin is not None)
        run = None
        with pinning, TrackNonReparam() if provenance else nullcontext():
            if self.vectorize and self.num_particles > 1 and key not in self._sequential:
                try:
                    run = call.vectorized(nesting)
                    if key not in self._checked and densities:
                        check_vectorized(call, nesting, run, dict(pinning.drawn))
                except Exception as error:  # noqa: BLE001 - retried one particle at a time
                    if key in self._checked:
                        raise
                    run = call.sequential(nesting)  # a real error raises here again
                    self._sequential.add(key)
                    warn_sequential(model, error, self.num_particles)
                else:
                    self._checked.add(key)
            if run is None:
                run = call.sequential(nesting)
        run.subsamples = dict(pinning.drawn)
        if not keep_traces:
            run.traces = []
        return run


def score_sites(guide_trace) -> list[str]:
    """The guide's latent sites drawn without a reparameterized sampler (score-function
    sites), or ``[]`` for no trace."""
    if guide_trace is None:
        return []
    return [
        name
        for name, site in guide_trace.nodes.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and not site_is_subsample(site)
        and not (site["fn"].has_rsample or is_delta(site["fn"]))
    ]


class _NoSubsamples(nullcontext):
    """In place of :class:`PinSubsamples` for programs without subsampled plates."""

    drawn: dict = {}


_NO_SUBSAMPLES = _NoSubsamples()


@dataclass
class _Call:
    """One :class:`Runner` call's programs and options."""

    runner: Runner
    model: object
    guide: object
    args: tuple
    kwargs: dict
    order: Order
    draws: dict | None
    rows: torch.Tensor | None
    chain: object
    densities: bool
    enumerate: bool | None = False  # sum out the model's enumerated sites (None: not known)

    def set_draws(self, count: int, offset: int, dim: int | None):
        """The handler that sets the model's latents to rows of the given draws, or None."""
        if self.draws is None:
            return None
        from .targets import SetDraws

        part = None if self.rows is None else self.rows[offset : offset + count]
        return SetDraws(self.draws, count, dim, rows=part)

    def sequential(self, nesting: int) -> Run:
        return _stack([self.once(nesting, k) for k in range(self.runner.num_particles)])

    def vectorized(self, nesting: int) -> Run:
        K, dim = self.runner.num_particles, -nesting - 1
        plate = pyro.plate(PARTICLE_PLATE, K, dim=dim)
        return self.once(nesting, 0, plate, dim, K)

    def once(self, nesting, k, plate=None, dim=None, rows=1) -> Run:
        """One run: particle ``k``, or all ``rows`` particles under ``plate``."""
        model = plate(self.model) if plate is not None else self.model
        guide = plate(self.guide) if plate is not None and self.guide is not None else self.guide
        set_draws = self.set_draws(rows, k, dim)
        handler = self.chain.handler(dim, first=k == 0) if self.chain is not None else None
        args, kwargs = self.args, self.kwargs
        if not self.densities:
            if self.order in (Order.MODEL_FIRST, Order.GIVEN_DRAWS):
                program = set_draws(model) if set_draws is not None else model
                with DetachSamples():
                    trace = poutine.trace(program).get_trace(*args, **kwargs)
                latents = latent_rows(trace, rows)
                if self.enumerate is not False:  # drawn here, summed out in the densities
                    for name in enumerated_sites(trace, None):
                        latents.pop(name, None)
                return Run(None, None, None, latents, {}, {}, [(trace, None)])
            detach = self.order is not Order.GUIDE_FIRST
            with DetachSamples() if detach else nullcontext():
                trace = poutine.trace(guide).get_trace(*args, **kwargs)
            rough = score_sites(trace)
            latents = latent_rows(trace, rows)
            return Run(
                None, None, None, latents, param_values(trace), {}, [(None, trace)], [], rough
            )
        pair = (model, guide, args, kwargs, self.order, nesting + (dim is not None), handler)
        rng = torch.get_rng_state() if self.enumerate is None else None
        model_trace, guide_trace = trace_pair(*pair, set_draws, bool(self.enumerate))
        if self.enumerate is None:  # the first run of a given nesting tells
            self.enumerate = bool(enumerated_sites(model_trace, guide_trace))
            key = (self.model, self.guide, self.order in (Order.MODEL_FIRST, Order.GIVEN_DRAWS))
            self.runner._enumerate[key] = self.enumerate
            if self.enumerate:  # run again from the same draws, summed out
                torch.set_rng_state(rng)
                model_trace, guide_trace = trace_pair(*pair, set_draws, True)
        if guide_trace is None:
            lp, lq, score = trace_log_density(model_trace, dim, "model"), None, None
            _check_finite(model_trace, "model", lp)
        else:
            lp, lq, score = log_densities(model_trace, guide_trace, dim, PARTICLE_PLATE)
        return Run(
            lp,
            lq,
            score,
            latent_rows(model_trace, rows),
            param_values(model_trace, guide_trace),
            {},
            [(model_trace, guide_trace)],
            [handler] if handler is not None else [],
        )


def _stack(parts: list[Run]) -> Run:
    """Join sequential particles (scalars) into one :class:`Run`."""
    if len(parts) == 1:  # one particle: no copies
        (run,) = parts
        run.log_p, run.log_q, run.score = (
            None if v is None else v.unsqueeze(0) for v in (run.log_p, run.log_q, run.score)
        )
        run.not_reparameterized = sorted(set(run.not_reparameterized))
        return run

    def stack(name):
        values = [getattr(p, name) for p in parts]
        if all(v is None for v in values):
            return None
        like = parts[0].log_q if parts[0].log_q is not None else parts[0].log_p
        return torch.stack([v if v is not None else torch.zeros_like(like) for v in values])

    latents = {n: torch.cat([p.latents[n] for p in parts]) for n in parts[0].latents}
    params = {}
    for p in parts:
        params.update(p.params)
    return Run(
        stack("log_p"),
        stack("log_q"),
        stack("score"),
        latents,
        params,
        {},
        [t for p in parts for t in p.traces],
        [h for p in parts for h in p.handlers],
        sorted({n for p in parts for n in p.not_reparameterized}),
    )


__all__ = [
    "LogDensities",
    "NotVectorizable",
    "Order",
    "PARTICLE_PLATE",
    "PinSubsamples",
    "Run",
    "Runner",
    "guess_max_plate_nesting",
    "initialize_autoguide",
    "log_densities",
    "observes",
]
