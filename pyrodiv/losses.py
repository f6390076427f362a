r"""Divergences as drop-in ``pyro.infer.ELBO`` losses.

Each loss joins a trace layer (:mod:`pyrodiv.traces`) to an estimator
(:mod:`pyrodiv.estimators`) and is used like any Pyro loss::

    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}),
                         loss=pyrodiv.ForwardKL(num_particles=256, vectorize_particles=True))

Every loss offers ``loss`` (a float estimate of the divergence), ``differentiable_loss`` (a
tensor with the same value whose gradient is the gradient estimator) and ``loss_and_grads``
(backward on it, return the float), from one pass over the traces. ``num_particles`` works
sequentially or, with ``vectorize_particles=True``, under one outer plate.

**Targets.** The model is the target :math:`P`. A model with no observed sites and no
``pyro.factor`` is a *prior* target: normalized and sampleable, so every divergence is
estimated without bias. A model with observed sites or factors is a *posterior* target: only
the unnormalized :math:`\tilde p(x, z)` is known and :math:`P` cannot be sampled, so losses
that need :math:`x\sim P` or a normalized :math:`\log p` use self-normalized importance sampling
over :math:`Q`'s particles (biased by :math:`O(1/K)`, consistent). The kind is read from the
model's trace; pass ``target="prior"`` or ``target="posterior"`` to override it.

What each divergence needs:

=====================  =========  =========  =========  =========
divergence              log p      x ~ P      log q      x ~ Q
=====================  =========  =========  =========  =========
cross-entropy                      yes        yes
forward KL              yes        yes        yes
reverse KL              yes                   yes        yes
Jensen-Shannon          yes        yes        yes        yes
f-divergence            yes                   yes        yes
=====================  =========  =========  =========  =========
"""

from __future__ import annotations

import torch
from pyro import poutine
from pyro.infer.elbo import ELBO

from . import estimators
from .generators import GENERATOR_NAMES, Generator, get_generator
from .traces import LogDensities, guide_first, log_densities, model_first, stack_particles

TARGET_KINDS = ("auto", "prior", "posterior")


class DivergenceLoss(ELBO):
    r"""Base class: a divergence :math:`D(P\|Q)` between a model and a guide, as an ELBO.

    :param int num_particles: Monte Carlo particles per estimate.
    :param max_plate_nesting: as in :class:`pyro.infer.ELBO` (guessed when left infinite).
    :param bool vectorize_particles: draw all particles at once under an outer plate.
    :param str target: ``"auto"`` (read from the model's trace), ``"prior"`` or
        ``"posterior"``.

    Subclasses implement :meth:`estimate`.
    """

    #: Human-readable name used in messages and tables.
    divergence = "divergence"

    def __init__(
        self,
        num_particles: int = 1,
        max_plate_nesting: float = float("inf"),
        vectorize_particles: bool = False,
        target: str = "auto",
        retain_graph: bool | None = None,
    ):
        if not isinstance(num_particles, int) or num_particles < 1:
            raise ValueError(f"{type(self).__name__}: num_particles must be an integer >= 1")
        if target not in TARGET_KINDS:
            raise ValueError(
                f"{type(self).__name__}: target must be one of {TARGET_KINDS}, got {target!r}"
            )
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=vectorize_particles,
            retain_graph=retain_graph,
        )
        self.target = target
        self._kind_key = None
        self._kind = None
        self._order = None

    # ---- targets -------------------------------------------------------------------------

    def target_kind(self, model, args, kwargs) -> str:
        """``"prior"`` or ``"posterior"``: the override, or read once per model and argument
        pattern from a trace of the model (observed sites or ``pyro.factor`` make a posterior).
        The random state is restored afterwards, so detection does not move the seed."""
        if self.target != "auto":
            return self.target
        key = (
            model,
            tuple(a is None for a in args),
            tuple(sorted((k, v is None) for k, v in kwargs.items())),
        )
        if key != self._kind_key:
            with torch.random.fork_rng(), poutine.block():
                trace = poutine.trace(model).get_trace(*args, **kwargs)
            observed = any(
                site["type"] == "sample" and site["is_observed"] for site in trace.nodes.values()
            )
            self._kind = "posterior" if observed else "prior"
            self._kind_key = key
        return self._kind

    def _guess_max_plate_nesting(self, model, guide, args, kwargs):
        """Pyro's guess, run without moving the random state."""
        with torch.random.fork_rng():
            super()._guess_max_plate_nesting(model, guide, args, kwargs)

    # ---- traces --------------------------------------------------------------------------

    def _particle_dim(self):
        if self.vectorize_particles and self.num_particles > 1:
            return -self.max_plate_nesting
        return None

    def _get_trace(self, model, guide, args, kwargs):
        """One run (one particle, or one vectorized batch) in the order set by
        :meth:`particles`, reduced to :class:`~pyrodiv.traces.LogDensities`."""
        dim = self._particle_dim()
        if self._order == "model_first":
            return log_densities(
                *model_first(model, guide, args, kwargs, self.max_plate_nesting), dim
            )
        detach = self._order == "guide_first_detached"
        traces = guide_first(model, guide, args, kwargs, self.max_plate_nesting, detach)
        return log_densities(*traces, dim)

    def particles(self, model, guide, args, kwargs, order: str = "guide_first") -> LogDensities:
        """Per-particle log-densities of ``num_particles`` runs.

        ``order`` is ``"guide_first"`` (:math:`x\\sim Q`), ``"guide_first_detached"`` (the same,
        with draws detached) or ``"model_first"`` (:math:`x \\sim P`, prior targets only).
        """
        self._order = order
        try:
            return stack_particles(list(self._get_traces(model, guide, args, kwargs)))
        finally:
            self._order = None

    # ---- the ELBO interface --------------------------------------------------------------

    def estimate(self, model, guide, *args, **kwargs) -> estimators.Estimate:
        """The divergence estimate and its surrogate for one set of particles.

        Raises a ``ValueError`` instead of returning a NaN or infinite estimate, so that no
        optimizer step is taken with NaN gradients.
        """
        est = self._estimate(model, guide, args, kwargs)
        if not torch.isfinite(est.value):
            raise ValueError(
                f"{self.divergence}: the estimate is {float(est.value)}; at some particle the "
                "density ratio p/q is beyond the floating-point range (Q is far too narrow or "
                "misplaced for P). Start Q wider or nearer P, or use a bounded divergence "
                "(JensenShannon, FDivergence('total_variation')) or ReverseKL first"
            )
        return est

    def _estimate(self, model, guide, args, kwargs) -> estimators.Estimate:
        raise NotImplementedError

    def loss(self, model, guide, *args, **kwargs) -> float:
        """A float estimate of the divergence (see the class docstring for the target)."""
        with torch.no_grad():
            return float(self.estimate(model, guide, *args, **kwargs).value)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The estimate as a tensor whose gradient is the gradient estimator."""
        return self.estimate(model, guide, *args, **kwargs).surrogate

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """Backpropagate the surrogate and return the float estimate."""
        est = self.estimate(model, guide, *args, **kwargs)
        if est.surrogate.requires_grad:
            est.surrogate.backward(retain_graph=self.retain_graph)
        return float(est.value)

    def __repr__(self):
        return (
            f"{type(self).__name__}(num_particles={self.num_particles}, "
            f"vectorize_particles={self.vectorize_particles}, target={self.target!r})"
        )


class ReverseKL(DivergenceLoss):
    r"""Reverse (exclusive) KL, :math:`\mathrm{KL}(Q\|P) = \mathbb{E}_Q[\log q - \log p]`.

    Zero-forcing and mode-seeking. Draws :math:`x_k\sim Q`; the gradient is pathwise for
    reparameterized sites and uses the score function (with a leave-one-out baseline) for the
    others. On a posterior target the value is the negative ELBO,
    :math:`\mathrm{KL}(Q\|P) - \log Z`, and the gradient is that of
    :class:`pyro.infer.Trace_ELBO`. Unbiased.

    Example::

        >>> svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}),
        ...                      loss=ReverseKL(num_particles=64, vectorize_particles=True))
    """

    divergence = "reverse KL"

    def _estimate(self, model, guide, args, kwargs):
        lp, lq, score = self.particles(model, guide, args, kwargs)
        return estimators.f_divergence(get_generator("kl_reverse"), lp, lq, score)


class ForwardKL(DivergenceLoss):
    r"""Forward (inclusive) KL, :math:`\mathrm{KL}(P\|Q) = \mathbb{E}_P[\log p - \log q]`.

    Zero-avoiding and mass-covering: minimizing it over :math:`Q` is maximum likelihood on
    :math:`P`'s draws. On a prior target the draws come from running the model, and the
    estimate is unbiased. On a posterior target it uses self-normalized importance sampling
    over :math:`Q`'s particles (the wake-phase estimator,
    :func:`~pyrodiv.estimators.self_normalized_kl_forward`), biased by :math:`O(1/K)`. No
    reparameterization is needed, so discrete guide sites train too.

    Example::

        >>> loss = ForwardKL(num_particles=256, vectorize_particles=True)
    """

    divergence = "forward KL"

    def _estimate(self, model, guide, args, kwargs):
        if self.target_kind(model, args, kwargs) == "prior":
            lp, lq, _ = self.particles(model, guide, args, kwargs, "model_first")
            return estimators.kl_forward(lp, lq)
        lp, lq, _ = self.particles(model, guide, args, kwargs, "guide_first_detached")
        return estimators.self_normalized_kl_forward(lp, lq)


class JensenShannon(DivergenceLoss):
    r"""Jensen-Shannon divergence in nats,
    :math:`\tfrac12\mathrm{KL}(P\|M) + \tfrac12\mathrm{KL}(Q\|M)`, :math:`M = \tfrac12(P + Q)`.

    On a prior target each particle is a pair, one draw from :math:`P` and one from :math:`Q`
    (:func:`~pyrodiv.estimators.jensen_shannon`, unbiased). On a posterior target it is the
    f-divergence estimate with :math:`P` normalized by the particles' own
    :math:`\hat Z` (:func:`~pyrodiv.estimators.self_normalized_f_divergence`, :math:`O(1/K)`
    bias). Bounded by :math:`\log 2`; it has two local optima on the talk's bimodal target.

    Example::

        >>> loss = JensenShannon(num_particles=64, vectorize_particles=True)
    """

    divergence = "Jensen-Shannon"

    def _estimate(self, model, guide, args, kwargs):
        if self.target_kind(model, args, kwargs) == "prior":
            at_p = self.particles(model, guide, args, kwargs, "model_first")
            at_q = self.particles(model, guide, args, kwargs)
            return estimators.jensen_shannon(
                at_p.log_p, at_p.log_q, at_q.log_p, at_q.log_q, at_q.score
            )
        lp, lq, score = self.particles(model, guide, args, kwargs)
        return estimators.self_normalized_f_divergence(
            get_generator("jensen_shannon"), lp, lq, score
        )


class FDivergence(DivergenceLoss):
    r"""Any f-divergence :math:`D_f(P\|Q) = \mathbb{E}_Q[f(p/q)]` with :math:`x_k \sim Q`.

    :param f: a generator name from :mod:`pyrodiv.generators` (``"kl_forward"``,
        ``"squared_hellinger"``, ``"amari_alpha"``, ...), a
        :class:`~pyrodiv.generators.Generator`, or a callable ``f(logu)``.
    :param params: generator parameters, e.g. ``alpha=0.5`` for ``"amari_alpha"``.

    On a prior target the estimate :math:`\frac1K\sum_k f(p_k/q_k)` is unbiased. On a
    posterior target the reported value normalizes :math:`P` by the particles' own
    :math:`\hat Z` (:math:`O(1/K)` bias); members of the power family (whose minimizer ignores
    :math:`Z`) are trained on the equivalent log-space objective
    :math:`\log\frac1K\sum_k w_k^\alpha / (\alpha(\alpha-1))` (a scaled Renyi bound, which
    cannot overflow), :math:`\alpha = 1` by self-normalized importance sampling and
    :math:`\alpha = 0` by the ELBO; the others by the self-normalized estimate itself.

    Example::

        >>> loss = FDivergence("amari_alpha", alpha=0.5, num_particles=64)
        >>> loss.generator.power
        0.5
    """

    def __init__(
        self,
        f,
        num_particles=1,
        max_plate_nesting=float("inf"),
        vectorize_particles=False,
        target="auto",
        retain_graph=None,
        **params,
    ):
        super().__init__(
            num_particles, max_plate_nesting, vectorize_particles, target, retain_graph
        )
        self.generator: Generator = get_generator(f, **params)
        self.divergence = f"f-divergence {self.generator.name}"

    def _estimate(self, model, guide, args, kwargs):
        f = self.generator
        if self.target_kind(model, args, kwargs) == "prior":
            lp, lq, score = self.particles(model, guide, args, kwargs)
            return estimators.f_divergence(f, lp, lq, score)
        if f.power == 1.0:
            lp, lq, _ = self.particles(model, guide, args, kwargs, "guide_first_detached")
            objective = estimators.self_normalized_kl_forward(lp, lq).surrogate
            return estimators.Estimate(*_report(f, lp, lq, None, objective))
        lp, lq, score = self.particles(model, guide, args, kwargs)
        if f.power is None:
            return estimators.self_normalized_f_divergence(f, lp, lq, score)
        if f.power == 0.0:
            objective = estimators.mean_under_q(lq - lp, score)
        else:
            objective = estimators.renyi_bound(f.power, lp, lq, score).surrogate / f.power
        return estimators.Estimate(*_report(f, lp, lq, score, objective))


def _report(f, lp, lq, score, objective):
    """The self-normalized value of ``f`` with the gradient of ``objective``."""
    value = estimators.self_normalized_f_divergence(f, lp, lq, score).value
    return value, value + (objective - objective.detach())


class CrossEntropy(DivergenceLoss):
    r"""Cross-entropy :math:`H(P, Q) = -\mathbb{E}_P[\log q(x)]`: maximum likelihood on
    :math:`P`'s draws. It differs from :math:`\mathrm{KL}(P\|Q)` by the entropy of :math:`P`,
    so it has the same minimizer and needs no :math:`\log p`.

    Example::

        >>> loss = CrossEntropy(num_particles=128, vectorize_particles=True)
    """

    divergence = "cross-entropy"

    def _estimate(self, model, guide, args, kwargs):
        if self.target_kind(model, args, kwargs) != "prior":
            raise ValueError(
                "CrossEntropy needs draws x ~ P, which a posterior target cannot give; use "
                "ForwardKL (self-normalized importance sampling) instead"
            )
        _, lq, _ = self.particles(model, guide, args, kwargs, "model_first")
        return estimators.cross_entropy(lq)


#: Loss names understood by :func:`get_loss` besides the generator names of
#: :data:`pyrodiv.generators.GENERATOR_NAMES` (which build an :class:`FDivergence`).
LOSSES = {
    "reverse_kl": ReverseKL,
    "forward_kl": ForwardKL,
    "jensen_shannon": JensenShannon,
    "cross_entropy": CrossEntropy,
}


def get_loss(name: str, **kwargs) -> DivergenceLoss:
    """A loss by name: a key of :data:`LOSSES`, else a generator name for :class:`FDivergence`.

    :param name: e.g. ``"forward_kl"``, ``"reverse_kl"``, ``"jensen_shannon"``,
        ``"squared_hellinger"``, ``"amari_alpha"`` (with ``alpha=...``).
    :param kwargs: passed to the loss (``num_particles``, ``vectorize_particles``, ...).

    Example::

        >>> get_loss("squared_hellinger", num_particles=8).divergence
        'f-divergence squared_hellinger'
    """
    if not isinstance(name, str):
        raise TypeError(f"a loss name must be a string, got {type(name).__name__}")
    if name in LOSSES:
        return LOSSES[name](**kwargs)
    if name in GENERATOR_NAMES:
        return FDivergence(name, **kwargs)
    known = ", ".join(list(LOSSES) + list(GENERATOR_NAMES))
    raise ValueError(f"unknown loss {name!r}; known: {known}")
