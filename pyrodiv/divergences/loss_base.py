r"""The base of every divergence loss: a ``pyro.infer.ELBO`` whose estimate is a table lookup.

A loss is declared by a table :attr:`DivergenceLoss.PLANS` from the kind of target
(``"prior"``, ``"posterior"``, ``"sample"``, or ``"draws"`` when draws of :math:`P` are given)
to a :class:`Plan`: the :class:`~pyrodiv.divergences.traces.Order` (s) in which the
:class:`~pyrodiv.divergences.traces.Runner` runs the model and the guide, and the estimator
that turns the runs into an :class:`~pyrodiv.divergences.estimators.Estimate`. Everything
else is derived from the table: which targets the loss accepts, whether a posterior's missing
``x ~ P`` is replaced by self-normalized importance sampling, and the "use this instead"
message, which lists the registered losses that do have a plan for the target.

Example (a new divergence: one estimator, one table entry)::

    >>> class Pearson(DivergenceLoss):
    ...     divergence = "Pearson chi^2"
    ...     PLANS = {"prior": Plan(Order.GUIDE_FIRST, lambda loss, run: estimators.f_divergence(
    ...         get_generator("pearson"), run.log_p, run.log_q, run.score))}
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pyro.infer.elbo import ELBO

from ..validation import check_int
from . import estimators
from .score_climbing import Chain
from .targets import GIVES, SetDraws, is_sample_target, require
from .traces import Order, Runner, observes

#: The target kinds a loss accepts in ``target=``.
TARGET_OPTIONS = ("auto", "prior", "posterior", "sample")
#: Keyword options every loss takes (those of :class:`DivergenceLoss`, and ``draws`` where a
#: loss can use draws of P); the rest of :class:`~pyrodiv.divergences.losses.FDivergence`'s
#: keywords go to its generator.
LOSS_OPTIONS = (
    "num_particles",
    "max_plate_nesting",
    "vectorize_particles",
    "target",
    "retain_graph",
    "draws",
)
_ORDER_NAMES = {
    "guide_first": Order.GUIDE_FIRST,
    "guide_first_detached": Order.GUIDE_FIRST_DETACHED,
    "model_first": Order.MODEL_FIRST,
    "draws": Order.GIVEN_DRAWS,
}


@dataclass(frozen=True)
class Plan:
    """How a loss estimates its divergence on one kind of target: run the programs in each
    of ``orders`` (all runs of one estimate share the first run's plate subsamples when
    there are several), then ``estimator(loss, *runs)``. ``densities=False`` runs only the
    program that draws (for losses that need draws, not densities). ``rao_blackwell=True``
    runs a guide with non-reparameterized sites (seen in an earlier run) under Pyro's
    provenance tracking and keeps its traces, for per-site score terms
    (:mod:`~pyrodiv.divergences.rao_blackwell`)."""

    orders: Order | tuple[Order, ...]
    estimator: Callable[..., estimators.Estimate]
    densities: bool = True
    rao_blackwell: bool = False

    @property
    def order_list(self) -> tuple[Order, ...]:
        return self.orders if isinstance(self.orders, tuple) else (self.orders,)


class DivergenceLoss(ELBO):
    r"""Base class: a divergence :math:`D(P\|Q)` between a model and a guide, as an ELBO.

    :param int num_particles: Monte Carlo particles per estimate.
    :param max_plate_nesting: as in :class:`pyro.infer.ELBO` (guessed when left infinite).
    :param bool vectorize_particles: draw all particles at once under an outer plate (a
        program that does not broadcast falls back to a loop, with one warning).
    :param str target: ``"auto"`` (read from the model: a
        :class:`~pyrodiv.divergences.targets.SampleTarget` is a sample target, observed sites or
        factors make
        a posterior, else a prior), ``"prior"``, ``"posterior"`` or ``"sample"``.

    Subclasses set :attr:`divergence`, :attr:`needs` (the talk's ingredients of :math:`P`)
    and :attr:`PLANS` (or override :meth:`plans`).
    """

    #: Human-readable name used in messages and tables.
    divergence = "divergence"
    #: What the divergence needs of the target P (the talk's table): ``"log p"``, ``"x ~ P"``.
    needs: frozenset = frozenset({"log p"})
    #: Target kind -> :class:`Plan`.
    PLANS: dict = {}

    def __init__(
        self,
        num_particles: int = 1,
        max_plate_nesting: float = float("inf"),
        vectorize_particles: bool = False,
        target: str = "auto",
        retain_graph: bool | None = None,
    ):
        name = type(self).__name__
        check_int(num_particles, f"{name}: num_particles")
        if max_plate_nesting != math.inf:
            check_int(max_plate_nesting, f"{name}: max_plate_nesting", 0)
        if target not in TARGET_OPTIONS:
            raise ValueError(f"{name}: target must be one of {TARGET_OPTIONS}, got {target!r}")
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=bool(vectorize_particles),
            retain_graph=retain_graph,
        )
        self.runner = Runner(num_particles, bool(vectorize_particles), max_plate_nesting)
        self.target = target
        self.draws = None
        self.chain = Chain()
        self._params = {}
        self._kinds = {}
        self._zero_gradient_steps = 0  # consecutive steps with a gradient of exactly 0
        self._score_programs = set()  # (model, guide) whose guide has score-function sites

    # ---- the table and what follows from it ----------------------------------------------

    def plans(self) -> dict:
        """Target kind -> :class:`Plan` (the class's :attr:`PLANS` by default)."""
        return self.PLANS

    @property
    def self_normalizes(self) -> bool:
        """Whether a posterior target's missing ``x ~ P`` is replaced by importance
        sampling over Q's particles (a posterior plan for a divergence that needs x ~ P)."""
        return "posterior" in self.plans() and "x ~ P" in self.needs

    def instead(self, kind: str) -> str:
        """What to use instead on a target of ``kind``: the registered losses with a plan
        for it, and ``draws=`` where this loss can use them."""
        from .losses import LOSSES

        others = [
            cls.__name__
            for cls in LOSSES.values()
            if cls is not type(self) and kind in getattr(cls, "PLANS", {})
        ]
        hint = f"use {' or '.join(others)}, which work on a {kind} target" if others else ""
        if "draws" in self.plans() and kind == "posterior":
            hint = "pass draws= (e.g. MCMC draws from pyrodiv.run_nuts), or " + hint
        return hint

    # ---- targets -------------------------------------------------------------------------

    def target_kind(self, model, args, kwargs) -> str:
        """``"prior"``, ``"posterior"`` or ``"sample"``: the override; ``"sample"`` for a
        :class:`~pyrodiv.divergences.targets.SampleTarget`; else read once per model and argument
        pattern
        (observed sites or ``pyro.factor`` make a posterior), without moving the seed."""
        if self.target != "auto":
            return self.target
        if is_sample_target(model):
            return "sample"
        key = (model, tuple(a is None for a in args), tuple(sorted(kwargs)))
        if key not in self._kinds:
            self._kinds[key] = "posterior" if observes(model, args, kwargs) else "prior"
        return self._kinds[key]

    def check_target(self, model, args, kwargs) -> str:
        """The key of :attr:`PLANS` to use, after checking that the target gives what the
        divergence needs (a ``ValueError`` naming the divergence and the ingredient)."""
        kind = self.target_kind(model, args, kwargs)
        plans = self.plans()
        if self.draws is not None and "draws" in plans:
            return "draws"
        if kind not in plans:
            needs = set(self.needs) if set(self.needs) - GIVES[kind] else {"x ~ P"}
            require(self.divergence, needs, kind, self.draws is not None, self.instead(kind))
            raise ValueError(f"{self.divergence} has no estimator for a {kind} target")
        return kind

    # ---- runs ----------------------------------------------------------------------------

    def _guess_max_plate_nesting(self, model, guide, args, kwargs):
        """Pyro's guess (the model's nesting, plus one for the particle plate), from the
        runner's one guess, without moving the random state."""
        nesting, _ = self.runner.nesting(model, guide, args, kwargs, Order.GUIDE_FIRST)
        self.max_plate_nesting = nesting + (self.vectorize_particles and self.num_particles > 1)

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("pyrodiv losses run programs through traces.Runner")

    def run(self, model, guide, args, kwargs, order: Order, **options):
        """One :class:`~pyrodiv.divergences.traces.Run` of ``num_particles`` particles, with the
        parameters the programs used remembered for the gradient check."""
        self.runner.num_particles = self.num_particles
        self.runner.vectorize = self.vectorize_particles
        run = self.runner(model, guide, args, kwargs, order, **options)
        if self.max_plate_nesting == math.inf:  # Pyro's convention: the particle plate counts
            vectorized = self.vectorize_particles and self.num_particles > 1
            self.max_plate_nesting = self.runner.last_nesting + vectorized
        self._params.update(run.params)
        return run

    def _has_score_sites(self, model, guide, args, kwargs) -> bool:
        """Whether the guide has score-function sites: from the runner's nesting guess, or
        (nesting given) from an earlier run."""
        if (model, guide) in self._score_programs:
            return True
        return bool(self.runner.has_score_sites(model, guide, args, kwargs))

    def particles(self, model, guide, args, kwargs, order=Order.GUIDE_FIRST):
        """Per-particle ``(log_p, log_q, score)`` of one run in ``order`` (an
        :class:`~pyrodiv.divergences.traces.Order`, or its name: ``"guide_first"``,
        ``"guide_first_detached"``, ``"model_first"``, ``"draws"``)."""
        if isinstance(order, str):
            if order not in _ORDER_NAMES:
                raise ValueError(f"unknown order {order!r}; known: {', '.join(_ORDER_NAMES)}")
            order = _ORDER_NAMES[order]
        return self.run(model, guide, args, kwargs, order, draws=self.draws).densities

    def _estimate(self, model, guide, args, kwargs) -> estimators.Estimate:
        plan = self.plans()[self.check_target(model, args, kwargs)]
        runs, pin = [], None
        for order in plan.order_list:
            if order is Order.RETAINED:
                self.chain.follow(model, guide)
            if len(plan.order_list) > 1:
                pin = True if not runs else runs[0].subsamples
            tracked = plan.rao_blackwell and self._has_score_sites(model, guide, args, kwargs)
            run = self.run(
                model,
                guide,
                args,
                kwargs,
                order,
                draws=self.draws if order is Order.GIVEN_DRAWS else None,
                chain=self.chain if order is Order.RETAINED else None,
                pin=pin,
                densities=plan.densities,
                provenance=tracked,
                keep_traces=tracked,
            )
            if plan.rao_blackwell and run.score is not None and run.score.requires_grad:
                self._score_programs.add((model, guide))
            runs.append(run)
        return plan.estimator(self, *runs)

    # ---- the ELBO interface --------------------------------------------------------------

    def estimate(self, model, guide, *args, **kwargs) -> estimators.Estimate:
        """The divergence estimate and its surrogate for one set of particles.

        Raises a ``ValueError`` naming the divergence instead of returning a NaN or infinite
        estimate, so that no optimizer step is taken with NaN gradients.
        """
        return self._checked_estimate(model, guide, args, kwargs)[0]

    def _checked_estimate(self, model, guide, args, kwargs):
        """:meth:`estimate` and its value as a float (read once, for the finite check)."""
        self.check_target(model, args, kwargs)
        try:
            est = self._estimate(model, guide, args, kwargs)
        except ValueError as error:
            if str(error).startswith(f"{self.divergence}:"):
                raise
            raise ValueError(f"{self.divergence}: {error}") from error
        except KeyError as error:
            if "intermediates cache" not in str(error):
                raise
            # a transform with no inverse (Pyro's Planar, Radial, BlockAutoregressive) can
            # score only the draws it made itself
            raise ValueError(
                f"{self.divergence}: the guide has a transform with no inverse ({error}), so "
                "its log q can be computed only at its own draws, not at draws of P. Use a "
                "loss that needs log q at Q's draws only (ReverseKL, an FDivergence, the Renyi "
                "bound), or an invertible flow (spline coupling, affine autoregressive)"
            ) from error
        value = float(est.value)
        self.check_finite(value)
        return est, value

    def check_finite(self, value: float) -> None:
        """A ``ValueError`` naming the divergence for a NaN or infinite estimate."""
        if not math.isfinite(value):
            raise ValueError(
                f"{self.divergence}: the estimate is {value}; at some particle the "
                "density ratio p/q is beyond the floating-point range (Q is far too narrow or "
                "misplaced for P). Start Q wider or nearer P (pyrodiv.approximate does), or "
                "train with ReverseKL first"
            )

    def loss(self, model, guide, *args, **kwargs) -> float:
        """A float estimate of the divergence (see the class docstring for the target)."""
        with torch.no_grad():
            return float(self.estimate(model, guide, *args, **kwargs).value)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The estimate as a tensor whose gradient is the gradient estimator."""
        return self.estimate(model, guide, *args, **kwargs).surrogate

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """Backpropagate the surrogate and return the float estimate.

        A NaN or infinite gradient raises a ``ValueError`` naming the parameter (its gradient
        cleared), so that the optimizer never steps to NaN parameters.
        """
        est, value = self._checked_estimate(model, guide, args, kwargs)
        if est.surrogate.requires_grad:
            est.surrogate.backward(retain_graph=self.retain_graph)
            self._check_gradients(value)
        return value

    #: Consecutive steps with a gradient of exactly 0 after which a fit is called saturated.
    SATURATED_STEPS = 10

    def _check_gradients(self, value: float):
        named = [(name, p) for name, p in self._params.items() if p.grad is not None]
        if not named:
            return
        # one reduction: the norms sum to 0 when every gradient is 0, and to inf or NaN
        # when any is not finite
        total = float(torch.stack(torch._foreach_norm([p.grad for _, p in named])).sum())
        if total == 0.0:
            self._zero_gradient_steps += 1
            if self._zero_gradient_steps == self.SATURATED_STEPS:
                warnings.warn(
                    f"{self.divergence}: the gradient has been exactly 0 for "
                    f"{self.SATURATED_STEPS} steps (value {value:.6g}): the divergence is "
                    "saturated, P and Q so far apart that every density ratio is past where "
                    "f changes, and Q will not move. Start Q nearer P or wider "
                    "(pyrodiv.approximate does), or fit ForwardKL or ReverseKL first",
                    RuntimeWarning,
                    stacklevel=4,  # the caller of SVI.step
                )
        else:
            self._zero_gradient_steps = 0
        if math.isfinite(total):
            return
        bad = [name for name, p in named if not torch.isfinite(p.grad).all()]
        for _, p in named:
            p.grad = None
        raise ValueError(
            f"{self.divergence}: the gradient of parameter(s) {bad} is NaN or inf (a density "
            "ratio beyond the floating-point range, or a non-differentiable point); start Q "
            "nearer P or use more particles"
        )

    def __repr__(self):
        return (
            f"{type(self).__name__}(num_particles={self.num_particles}, "
            f"vectorize_particles={self.vectorize_particles}, target={self.target!r})"
        )


class TakesDraws(DivergenceLoss):
    """A loss that can use given draws of :math:`P` (``draws=``) instead of running it."""

    def __init__(self, *, draws=None, **options):
        super().__init__(**options)
        if draws is not None:
            draws = SetDraws(draws).draws  # validates them
        self.draws = draws
