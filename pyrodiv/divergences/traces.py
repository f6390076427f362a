r"""The one runner of Pyro programs: run a model and a guide over :math:`K` particles in an
explicit :class:`Order`, and reduce the traces to per-particle log-densities.

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
* **the nesting guess** (:func:`guess_max_plate_nesting`), from one run in the requested order;
* **subsample pinning** (:class:`PinSubsamples`): given subsamples are reused, and with
  ``pin=True`` the first subsample drawn is reused by every particle;
* **the vectorization check**: the first vectorized run of a model and guide is compared
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

import enum
import math
import warnings
from dataclasses import dataclass, field

import pyro
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoGuide, AutoGuideList
from pyro.infer.util import is_validation_enabled
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from pyro.util import check_model_guide_match, check_site_shape

from .densities import (
    LogDensities,
    NotVectorizable,
    _check_finite,
    log_densities,
    trace_log_density,
)
from .replay import DetachSamples, SetValues, is_guide_messenger, replay_guide_at
from .site_checks import is_delta, mark_point_masses

#: The name of the vectorized particle plate (Pyro's own, so that autoguides recognise it).
PARTICLE_PLATE = "num_particles_vectorized"


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
    """The outcome of one :class:`Runner` call over all particles."""

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

    def _pyro_sample(self, msg):
        if site_is_subsample(msg) and msg["value"] is None and msg["name"] in self.values:
            msg["value"] = self.values[msg["name"]]
            msg["done"] = True

    def _pyro_post_sample(self, msg):
        if site_is_subsample(msg):
            self.drawn.setdefault(msg["name"], msg["value"])
            if self.reuse:
                self.values.setdefault(msg["name"], msg["value"])


# ---- one run (one particle, or one vectorized batch) -------------------------------------


def _finish(model_trace, guide_trace, nesting):
    if is_validation_enabled():
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


def _traces(model, guide, args, kwargs, order: Order, nesting, handler, set_draws):
    """One (model trace, guide trace) pair in ``order``; ``guide`` may be ``None`` for the
    orders that run the model first (then only the model trace is returned, log-probs done).
    ``handler`` is entered around the guide's draws (inside their detaching)."""
    if order in (Order.MODEL_FIRST, Order.GIVEN_DRAWS):
        if set_draws is not None:
            model = set_draws(model)
        model_trace = poutine.trace(model).get_trace(*args, **kwargs)
        if guide is None:
            model_trace = prune_subsample_sites(model_trace)
            model_trace.compute_log_prob()
            return model_trace, None
        guide_trace = replay_guide_at(guide, model_trace, args, kwargs)
    else:
        detach = order is not Order.GUIDE_FIRST
        with DetachSamples() if detach else Messenger(), handler or Messenger():
            if is_guide_messenger(guide):  # it runs the model itself and records both traces
                guide(*args, **kwargs)
                model_trace, guide_trace = poutine.unwrap(guide).get_traces()
            else:
                guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        if not is_guide_messenger(guide):
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
                *args, **kwargs
            )
    model_trace, guide_trace = _finish(model_trace, guide_trace, nesting)
    return model_trace, mark_point_masses(guide, guide_trace, model_trace)


def _latent_rows(trace, rows: int) -> dict[str, torch.Tensor]:
    """The latent values of a trace (no auxiliary, deterministic or subsample sites), each
    flattened to ``(rows, -1)``: one row per particle."""
    out = {}
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site["infer"].get("is_auxiliary"):
            continue
        if site["infer"].get("_deterministic") or site_is_subsample(site):
            continue
        value = site["value"]
        if rows > 1:
            value = value.expand(site["fn"].batch_shape + site["fn"].event_shape)
        out[name] = value.reshape(rows, -1)
    return out


def _params(*traces) -> dict[str, torch.Tensor]:
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
        self._sequential = set()  # (model, guide) that did not vectorize
        self._checked = set()  # (model, guide) whose vectorized runs were checked
        self.last_nesting = None  # the model's nesting in the latest call

    def nesting(self, model, guide, args, kwargs, order, set_draws=None) -> int:
        """The model's plate nesting: given, or guessed from one unvectorized run (without
        moving the random state)."""
        if self.max_plate_nesting != math.inf:
            return int(self.max_plate_nesting)
        key = (model, guide, order in (Order.MODEL_FIRST, Order.GIVEN_DRAWS))
        if key not in self._nesting:
            with torch.random.fork_rng(), poutine.block():
                traces = _traces(model, guide, args, kwargs, order, math.inf, None, set_draws)
            self._nesting[key] = guess_max_plate_nesting(*traces)
        return self._nesting[key]

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
        """
        if order in (Order.MODEL_FIRST, Order.GIVEN_DRAWS):
            initialize_autoguide(guide, args, kwargs)
        call = _Call(self, model, guide, args, kwargs, order, draws, rows, chain, densities)
        nesting = self.nesting(model, guide, args, kwargs, order, call.set_draws(1, 0, None))
        pinning = PinSubsamples(pin if isinstance(pin, dict) else None, reuse=pin is not None)
        self.last_nesting = nesting
        key = (model, guide)
        run = None
        with pinning:
            if self.vectorize and self.num_particles > 1 and key not in self._sequential:
                try:
                    run = call.vectorized(nesting)
                    if key not in self._checked and densities:
                        self._check(call, nesting, run, dict(pinning.drawn))
                except Exception as error:  # noqa: BLE001 - retried one particle at a time
                    if key in self._checked:
                        raise
                    run = call.sequential(nesting)  # a real error raises here again
                    self._sequential.add(key)
                    _warn_sequential(model, error, self.num_particles)
                else:
                    self._checked.add(key)
            if run is None:
                run = call.sequential(nesting)
        run.subsamples = pinning.drawn
        if not keep_traces:
            run.traces = []
        return run

    def _check(self, call: _Call, nesting: int, run: Run, subsamples: dict):
        """Recompute particles 0 and K-1 of a vectorized run one at a time; raise
        :class:`NotVectorizable` if their log-densities differ."""
        model, guide, args, kwargs = call.model, call.guide, call.args, call.kwargs
        model_trace, guide_trace = run.traces[0]
        with torch.no_grad(), torch.random.fork_rng(), poutine.block():
            with PinSubsamples(subsamples):
                proto_model, proto_guide = _traces(
                    model,
                    guide,
                    args,
                    kwargs,
                    call.order,
                    nesting,
                    None,
                    call.set_draws(1, 0, None),
                )
            for k in sorted({0, self.num_particles - 1}):
                latents = {
                    n: v[k].reshape(proto_model.nodes[n]["value"].shape)
                    for n, v in run.latents.items()
                }
                with PinSubsamples(subsamples), SetValues(latents):
                    single = poutine.trace(model).get_trace(*args, **kwargs)
                single = prune_subsample_sites(single)
                single.compute_log_prob()
                pairs = [("log p", run.log_p[k], trace_log_density(single, None))]
                if guide_trace is not None and not is_guide_messenger(guide):
                    if call.order in (Order.MODEL_FIRST, Order.GIVEN_DRAWS):
                        single_q = replay_guide_at(guide, single, args, kwargs)
                    else:
                        values = _guide_values(guide_trace, proto_guide, k, -nesting - 1)
                        with PinSubsamples(subsamples), SetValues(values):
                            single_q = poutine.trace(guide).get_trace(*args, **kwargs)
                    single_q = prune_subsample_sites(single_q)
                    single_q.compute_log_prob()
                    pairs.append(("log q", run.log_q[k], trace_log_density(single_q, None)))
                for label, a, b in pairs:
                    a, b = a.detach(), b.detach()
                    tol = math.sqrt(torch.finfo(a.dtype).eps)
                    scale = max(1.0, float(b.abs())) if torch.isfinite(b) else 1.0
                    if not torch.allclose(a, b, rtol=tol, atol=tol * scale, equal_nan=True):
                        raise NotVectorizable(
                            f"{label} of particle {k} differs between the vectorized and "
                            f"one-particle runs ({float(a):.6g} vs {float(b):.6g})"
                        )


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
                return Run(None, None, None, _latent_rows(trace, rows), {}, {}, [(trace, None)])
            detach = self.order is not Order.GUIDE_FIRST
            with DetachSamples() if detach else Messenger():
                trace = poutine.trace(guide).get_trace(*args, **kwargs)
            rough = [
                name
                for name, site in trace.nodes.items()
                if site["type"] == "sample"
                and not site["is_observed"]
                and not site_is_subsample(site)
                and not (site["fn"].has_rsample or is_delta(site["fn"]))
            ]
            latents = _latent_rows(trace, rows)
            return Run(None, None, None, latents, _params(trace), {}, [(None, trace)], [], rough)
        model_trace, guide_trace = _traces(
            model,
            guide,
            args,
            kwargs,
            self.order,
            nesting + (dim is not None),
            handler,
            set_draws,
        )
        if guide_trace is None:
            lp, lq, score = trace_log_density(model_trace, dim, "model"), None, None
            _check_finite(model_trace, "model", lp)
        else:
            lp, lq, score = log_densities(model_trace, guide_trace, dim)
        return Run(
            lp,
            lq,
            score,
            _latent_rows(model_trace, rows),
            _params(model_trace, guide_trace),
            {},
            [(model_trace, guide_trace)],
            [handler] if handler is not None else [],
        )


def _guide_values(guide_trace, proto_guide, k: int, dim: int) -> dict:
    """Particle ``k``'s values of the guide's random (non-Delta) sample sites, shaped as in
    the one-particle ``proto_guide``."""
    values = {}
    for name, site in guide_trace.nodes.items():
        if site["type"] != "sample" or is_delta(site["fn"]) or site_is_subsample(site):
            continue
        value = site["value"]
        axis = value.dim() - site["fn"].event_dim + dim
        if axis >= 0 and value.shape[axis] > 1:
            value = value.select(axis, k)
        values[name] = value.detach().reshape(proto_guide.nodes[name]["value"].shape)
    return values


def _stack(parts: list[Run]) -> Run:
    """Join sequential particles (scalars) into one :class:`Run`."""

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


def _warn_sequential(model, error: Exception, num_particles: int) -> None:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    name = getattr(model, "__name__", type(model).__name__)
    warnings.warn(
        f"{name} (or its guide) does not vectorize over particles ({reason}); running the "
        f"{num_particles} particles one at a time from now on, which is slower. Write it to "
        "broadcast over a batch dimension on the left of its plates (for example "
        "(X * w).sum(-1), not X @ w; z[..., 0], not z[..., 0:1]).",
        RuntimeWarning,
        stacklevel=4,
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
