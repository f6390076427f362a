r"""Divergences as drop-in ``pyro.infer.ELBO`` losses.

Each loss joins a trace layer (:mod:`pyrodiv.traces`) to an estimator
(:mod:`pyrodiv.estimators`) and is used like any Pyro loss::

    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}),
                         loss=pyrodiv.ForwardKL(num_particles=256, vectorize_particles=True))

Every loss offers ``loss`` (a float estimate of the divergence), ``differentiable_loss`` (a
tensor with the same value whose gradient is the gradient estimator) and ``loss_and_grads``
(backward on it, return the float), from one pass over the traces. ``num_particles`` works
sequentially or, with ``vectorize_particles=True``, under one outer plate.

**Targets** (:mod:`pyrodiv.targets`). The model is the target :math:`P`. A model with no
observed sites and no ``pyro.factor`` is a *prior* target: normalized and sampleable, so every
divergence is estimated without bias. A model with observed sites or factors is a *posterior*
target: only the unnormalized :math:`\tilde p(x, z)` is known and :math:`P` cannot be sampled,
so losses that need :math:`x\sim P` or a normalized :math:`\log p` use self-normalized
importance sampling over :math:`Q`'s particles (biased by :math:`O(1/K)`, consistent),
Markovian score climbing (``ForwardKL(estimator="msc")``), or given draws (``draws=``, e.g.
MCMC draws). A :class:`~pyrodiv.targets.SampleTarget` is a *sample* target: draws of :math:`P`
and nothing else. The kind is read from the model; ``target=`` overrides it.

What each divergence needs; a target that cannot give it is refused with a ``ValueError``
naming the divergence, the missing ingredient and what to use instead:

=====================  =========  =========  =========  =========  ==========================
divergence              log p      x ~ P      log q      x ~ Q     targets
=====================  =========  =========  =========  =========  ==========================
cross-entropy                      yes        yes                  prior, sample, draws
forward KL              yes        yes        yes                  prior, posterior
reverse KL              yes                   yes        yes       prior, posterior
Jensen-Shannon          yes        yes        yes        yes       prior, posterior
f-divergence            yes                   yes        yes       prior, posterior
Renyi, CUBO             yes                   yes        yes       prior, posterior
Wasserstein                        yes                   yes       prior, sample, draws
=====================  =========  =========  =========  =========  ==========================

(On a posterior target, ``x ~ P`` comes from importance sampling over :math:`Q`'s particles
for forward KL and Jensen-Shannon, and from ``draws=`` for cross-entropy and Wasserstein.)
"""

from __future__ import annotations

import torch
from pyro import poutine
from pyro.infer.autoguide import AutoGuide, AutoGuideList
from pyro.infer.elbo import ELBO

from . import estimators, transport
from .generators import GENERATOR_NAMES, Generator, get_generator
from .score_climbing import RetainParticle, next_state_index, select_particle
from .targets import SetDraws, is_sample_target, require
from .traces import (
    DetachSamples,
    LogDensities,
    guide_first,
    log_densities,
    model_first,
    stack_particles,
)

TARGET_KINDS = ("auto", "prior", "posterior", "sample")
#: Keyword options every loss takes (those of :class:`DivergenceLoss`, and ``draws`` where a
#: loss can use draws of P); the rest of :class:`FDivergence`'s keywords go to its generator.
LOSS_OPTIONS = (
    "num_particles",
    "max_plate_nesting",
    "vectorize_particles",
    "target",
    "retain_graph",
    "draws",
)


class DivergenceLoss(ELBO):
    r"""Base class: a divergence :math:`D(P\|Q)` between a model and a guide, as an ELBO.

    :param int num_particles: Monte Carlo particles per estimate.
    :param max_plate_nesting: as in :class:`pyro.infer.ELBO` (guessed when left infinite).
    :param bool vectorize_particles: draw all particles at once under an outer plate.
    :param str target: ``"auto"`` (read from the model: a
        :class:`~pyrodiv.targets.SampleTarget` is a sample target, observed sites or factors make
        a posterior, else a prior), ``"prior"``, ``"posterior"`` or ``"sample"``.

    Subclasses set :attr:`needs` (the ingredients of :math:`P` from the talk's table) and
    implement :meth:`_estimate`. A target that cannot give an ingredient is refused with a
    ``ValueError`` naming the divergence, the ingredient and :attr:`instead`.
    """

    #: Human-readable name used in messages and tables.
    divergence = "divergence"
    #: What the divergence needs of the target P: ``"log p"`` and/or ``"x ~ P"``.
    needs: frozenset = frozenset({"log p"})
    #: Whether a posterior target's missing ``x ~ P`` is replaced by importance sampling.
    self_normalizes = False
    #: What to use instead when the target lacks an ingredient.
    instead = "use CrossEntropy or Wasserstein on a sample target"

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
        self.draws = None
        self._params = {}
        self._kind_key = None
        self._kind = None
        self._order = None

    # ---- targets -------------------------------------------------------------------------

    def target_kind(self, model, args, kwargs) -> str:
        """``"prior"``, ``"posterior"`` or ``"sample"``: the override; ``"sample"`` for a
        :class:`~pyrodiv.targets.SampleTarget`; else read once per model and argument pattern
        from a trace of the model (observed sites or ``pyro.factor`` make a posterior). The
        random state is restored afterwards, so detection does not move the seed."""
        if self.target != "auto":
            return self.target
        if is_sample_target(model):
            return "sample"
        key = (
            model,
            tuple(a is None for a in args),
            tuple(sorted((k, v is None) for k, v in kwargs.items())),
        )
        if key != self._kind_key:
            with torch.random.fork_rng(), poutine.block():
                trace = poutine.trace(model).get_trace(*args, **kwargs)
            observed = any(
                site["type"] == "sample"
                and site["is_observed"]
                and not site["infer"].get("_deterministic")
                for site in trace.nodes.values()
            )
            self._kind = "posterior" if observed else "prior"
            self._kind_key = key
        return self._kind

    def check_target(self, model, args, kwargs) -> str:
        """The target's kind, after checking that it gives what the divergence needs."""
        kind = self.target_kind(model, args, kwargs)
        needs = set(self.needs)
        if kind == "posterior" and self.self_normalizes:
            needs.discard("x ~ P")
        require(self.divergence, needs, kind, self.draws is not None, self.instead)
        return kind

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
        if self._order == "draws":
            model = SetDraws(self.draws, self.num_particles if dim else 1, dim)(model)
        if self._order in ("model_first", "draws"):
            traces = model_first(model, guide, args, kwargs, self.max_plate_nesting)
        else:
            detach = self._order == "guide_first_detached"
            traces = guide_first(model, guide, args, kwargs, self.max_plate_nesting, detach)
        self._note_params(*traces)
        return log_densities(*traces, dim)

    def _note_params(self, *traces):
        """Remember the parameters the programs use, whose gradients :meth:`loss_and_grads`
        checks (kept across calls, so that a compiled loss keeps them too)."""
        for trace in traces:
            for name, site in trace.nodes.items():
                if site["type"] == "param":
                    self._params[name] = site["value"].unconstrained()

    def particles(self, model, guide, args, kwargs, order: str = "guide_first") -> LogDensities:
        """Per-particle log-densities of ``num_particles`` runs.

        ``order`` is ``"guide_first"`` (:math:`x\\sim Q`), ``"guide_first_detached"`` (the same,
        with draws detached), ``"model_first"`` (:math:`x \\sim P` by running the model: prior
        and sample targets) or ``"draws"`` (:math:`x` from the given draws of :math:`P`).
        """
        if order in ("model_first", "draws"):
            _initialize_autoguide(guide, args, kwargs)
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
        self.check_target(model, args, kwargs)
        try:
            est = self._estimate(model, guide, args, kwargs)
        except ValueError as error:
            if str(error).startswith(f"{self.divergence}:"):
                raise
            raise ValueError(f"{self.divergence}: {error}") from error
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
        """Backpropagate the surrogate and return the float estimate.

        A NaN or infinite gradient raises a ``ValueError`` naming the parameter (its gradient
        cleared), so that the optimizer never steps to NaN parameters.
        """
        est = self.estimate(model, guide, *args, **kwargs)
        if est.surrogate.requires_grad:
            est.surrogate.backward(retain_graph=self.retain_graph)
            self._check_gradients()
        return float(est.value)

    def _check_gradients(self):
        named = [(name, p) for name, p in self._params.items() if p.grad is not None]
        norms = torch._foreach_norm([p.grad for _, p in named]) if named else []
        if not named or torch.isfinite(torch.stack(norms)).all():
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


def _initialize_autoguide(guide, args, kwargs):
    """Run an autoguide that has not been run yet once (RNG-neutral, outside any trace), so
    that it can be evaluated at the target's draws before its first SVI step."""
    parts = poutine.unwrap(guide)
    parts = list(parts) if isinstance(parts, AutoGuideList) else [parts]
    if any(isinstance(g, AutoGuide) and g.prototype_trace is None for g in parts):
        with torch.random.fork_rng(), poutine.block():
            guide(*args, **kwargs)


class ReverseKL(DivergenceLoss):
    r"""Reverse (exclusive) KL, :math:`\mathrm{KL}(Q\|P) = \mathbb{E}_Q[\log q - \log p]`.

    Zero-forcing and mode-seeking. Draws :math:`x_k\sim Q`; the gradient is pathwise for
    reparameterized sites and uses the score function (with a leave-one-out baseline) for the
    others. On a posterior target the value is the negative ELBO,
    :math:`\mathrm{KL}(Q\|P) - \log Z`, and the gradient is that of
    :class:`pyro.infer.Trace_ELBO`. Unbiased, in value and gradient (also under plate
    subsampling, whose scaling Pyro applies to :math:`\log p`).

    Example::

        >>> svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}),
        ...                      loss=ReverseKL(num_particles=64, vectorize_particles=True))
    """

    divergence = "reverse KL"
    instead = "use CrossEntropy or Wasserstein, which need only draws of P"

    def _estimate(self, model, guide, args, kwargs):
        lp, lq, score = self.particles(model, guide, args, kwargs)
        return estimators.f_divergence(get_generator("kl_reverse"), lp, lq, score)


class _TakesDraws(DivergenceLoss):
    """A loss that can use given draws of :math:`P` (``draws=``) instead of running it."""

    def __init__(self, *, draws=None, **options):
        super().__init__(**options)
        if draws is not None:
            draws = SetDraws(draws).draws  # validates them
        self.draws = draws


class ForwardKL(_TakesDraws):
    r"""Forward (inclusive) KL, :math:`\mathrm{KL}(P\|Q) = \mathbb{E}_P[\log p - \log q]`.

    Zero-avoiding and mass-covering: minimizing it over :math:`Q` is maximum likelihood on
    :math:`P`'s draws. No reparameterization is needed, so discrete guide sites train too.

    * **Prior target**: the draws come from running the model; value and gradient unbiased.
    * **Posterior target**, ``estimator="snis"`` (default): self-normalized importance sampling
      over :math:`Q`'s particles, the wake-phase estimator
      (:func:`~pyrodiv.estimators.self_normalized_kl_forward`); consistent, biased by
      :math:`O(1/K)` at :math:`K` particles, more when the weights vary much.
    * **Posterior target**, ``estimator="msc"``: Markovian score climbing
      (:mod:`pyrodiv.score_climbing`): one particle is a Markov chain state kept between
      steps, so the bias of the fixed-:math:`K` estimate vanishes over iterations. The state
      is reset by :meth:`reset_state`.
    * **Given draws** (``draws={site: tensor (N, *shape)}``, or the InferenceData of
      :func:`pyrodiv.run_nuts`): each particle is one draw of :math:`P`; the gradient is
      unbiased, and the value is the cross-entropy :math:`-\frac1K\sum_k \log q(x_k)`, which
      differs from the KL by :math:`P`'s entropy (unknown on a posterior).

    :param estimator: ``"snis"`` or ``"msc"`` (posterior targets).
    :param draws: draws of :math:`P`'s latent sites, used instead of the model's.

    Example::

        >>> loss = ForwardKL(num_particles=256, vectorize_particles=True)
        >>> loss = ForwardKL(num_particles=16, estimator="msc")
    """

    divergence = "forward KL"
    needs = frozenset({"log p", "x ~ P"})
    self_normalizes = True
    instead = (
        "use CrossEntropy, which has the same minimizer and needs only draws of P, or pass "
        "draws= with a model that has log p"
    )
    ESTIMATORS = ("snis", "msc")

    def __init__(self, *, estimator="snis", **options):
        super().__init__(**options)
        if estimator not in self.ESTIMATORS:
            raise ValueError(
                f"ForwardKL: estimator must be one of {self.ESTIMATORS}, got {estimator!r}"
            )
        self.estimator = estimator
        self.reset_state()

    def reset_state(self):
        """Forget the Markov chain state of ``estimator="msc"``."""
        self._state, self._state_of, self._state_subsamples = None, None, None

    def _estimate(self, model, guide, args, kwargs):
        if self.draws is not None:
            _, lq, _ = self.particles(model, guide, args, kwargs, "draws")
            return estimators.cross_entropy(lq)
        if self.target_kind(model, args, kwargs) == "prior":
            lp, lq, _ = self.particles(model, guide, args, kwargs, "model_first")
            return estimators.kl_forward(lp, lq)
        if self.estimator == "msc":
            return self._score_climbing(model, guide, args, kwargs)
        lp, lq, _ = self.particles(model, guide, args, kwargs, "guide_first_detached")
        return estimators.self_normalized_kl_forward(lp, lq)

    def _score_climbing(self, model, guide, args, kwargs):
        if self._state_of != (model, guide):  # a chain belongs to one model and guide
            self.reset_state()
            self._state_of = (model, guide)
        if self.vectorize_particles and self.max_plate_nesting == float("inf"):
            self._guess_max_plate_nesting(model, guide, args, kwargs)
        dim = self._particle_dim()
        if dim is not None:
            model = self._vectorized_num_particles(model)
            guide = self._vectorized_num_particles(guide)
        runs, parts = [], []
        for k in range(1 if dim is not None else self.num_particles):
            state = self._state if k == 0 else None
            runs.append(RetainParticle(state, dim, self._state_subsamples))
            traces = guide_first(
                model, guide, args, kwargs, self.max_plate_nesting, outer=runs[-1]
            )
            self._note_params(*traces)
            parts.append(log_densities(*traces, dim))
        lp, lq, _ = stack_particles(parts)
        j = next_state_index(lp - lq)
        if dim is None:
            self._state, self._state_subsamples = dict(runs[j].values), runs[j].subsamples
        else:
            self._state = select_particle(runs[0].values, runs[0].axes, j)
            self._state_subsamples = runs[0].subsamples
        return estimators.self_normalized_kl_forward(lp, lq)

    def __repr__(self):
        return super().__repr__()[:-1] + f", estimator={self.estimator!r})"


class JensenShannon(DivergenceLoss):
    r"""Jensen-Shannon divergence in nats,
    :math:`\tfrac12\mathrm{KL}(P\|M) + \tfrac12\mathrm{KL}(Q\|M)`, :math:`M = \tfrac12(P + Q)`.

    On a prior target each particle is a pair, one draw from :math:`P` and one from :math:`Q`
    (:func:`~pyrodiv.estimators.jensen_shannon`, unbiased). On a posterior target it is the
    f-divergence estimate with :math:`P` normalized by the particles' own
    :math:`\hat Z` (:func:`~pyrodiv.estimators.self_normalized_f_divergence`, :math:`O(1/K)`
    bias). Bounded by :math:`\log 2`; it has two local optima on the talk's bimodal target.

    On a posterior target the estimate sees :math:`P` only at :math:`Q`'s particles: a
    collapsed :math:`Q` (every weight equal) has estimate 0 although the divergence is near
    :math:`\log 2`, so a fit started narrow can collapse (eight schools from
    ``AutoNormal(init_scale=0.1)``). Start :math:`Q` wide (``init_scale=1.0``) and check k-hat.

    Example::

        >>> loss = JensenShannon(num_particles=64, vectorize_particles=True)
    """

    divergence = "Jensen-Shannon"
    needs = frozenset({"log p", "x ~ P"})
    self_normalizes = True
    instead = "use Wasserstein, which needs only draws of P"

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
    cannot overflow; biased by :math:`O(1/K)` as the log of a mean), :math:`\alpha = 1` by
    self-normalized importance sampling and :math:`\alpha = 0` by the ELBO (unbiased); the
    others by the self-normalized estimate itself. Non-reparameterized guide sites get a
    score-function gradient. On a posterior target these estimates see :math:`P` only at
    :math:`Q`'s particles, so a narrow :math:`Q` looks better than it is, and for
    :math:`\alpha > 1` (Pearson) the Monte Carlo bound decreases as :math:`Q` collapses although
    the divergence grows: start :math:`Q` wide and check k-hat.

    Example::

        >>> loss = FDivergence("amari_alpha", alpha=0.5, num_particles=64)
        >>> loss.generator.power
        0.5
    """

    instead = "use CrossEntropy or Wasserstein, which need only draws of P"

    def __init__(self, f, **options):
        params = {k: options.pop(k) for k in list(options) if k not in LOSS_OPTIONS}
        super().__init__(**options)
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


class RenyiBound(DivergenceLoss):
    r"""The Renyi divergence bound of order :math:`\alpha \ne 1` (Li and Turner 2016),

    .. math::

        R_\alpha = \frac{1}{\alpha - 1}\log\frac1K\sum_k \left(\frac{\tilde p(x_k)}{q(x_k)}
        \right)^{\alpha} \approx D^R_\alpha(P\|Q) + \frac{\alpha}{\alpha - 1}\log Z,
        \qquad x_k \sim Q,

    minimized over :math:`Q` (:func:`~pyrodiv.estimators.renyi_bound`). Its minimizer is that
    of :math:`D^R_\alpha`, whatever :math:`Z`: :math:`\alpha \to 0` approaches the ELBO,
    :math:`\alpha = 1/2` is Hellinger's, :math:`\alpha = 2` the :math:`\chi^2` (CUBO) bound. The
    value is the log of a mean: biased by :math:`O(1/K)`. With :math:`\alpha = 1 - \beta` it is
    :math:`(1-\beta)/\beta` times the loss of ``pyro.infer.RenyiELBO(alpha=beta)``.

    :param float alpha: the order, not 1 (use :class:`ForwardKL` there).

    Example::

        >>> loss = RenyiBound(alpha=0.5, num_particles=64, vectorize_particles=True)
    """

    instead = "use CrossEntropy or Wasserstein, which need only draws of P"

    def __init__(self, alpha=0.5, **options):
        super().__init__(**options)
        if not isinstance(alpha, int | float) or alpha == 1.0:
            raise ValueError(
                f"RenyiBound: alpha must be a number other than 1 (the inclusive KL: use "
                f"ForwardKL), got {alpha!r}"
            )
        self.alpha = float(alpha)
        self.divergence = f"Renyi bound (alpha={self.alpha:g})"

    def _estimate(self, model, guide, args, kwargs):
        lp, lq, score = self.particles(model, guide, args, kwargs)
        return estimators.renyi_bound(self.alpha, lp, lq, score)


class CUBO(RenyiBound):
    r"""The :math:`\chi` upper bound :math:`\mathrm{CUBO}_n = \frac1n\log\frac1K\sum_k
    (\tilde p(x_k)/q(x_k))^n \ge \log Z` (Dieng et al. 2017), :math:`x_k\sim Q`, minimized over
    :math:`Q` (:func:`~pyrodiv.estimators.cubo`). It equals :math:`\frac{n-1}{n} R_n`, so its
    minimizer is that of the :math:`\chi^n` divergence (:math:`n = 2`: Pearson). Mass-covering;
    the log of a mean, biased low by :math:`O(1/K)`, and its gradient has high variance when
    :math:`Q` is narrower than :math:`P`.

    :param float n: the order, greater than 1.

    Example::

        >>> loss = CUBO(n=2, num_particles=64, vectorize_particles=True)
    """

    def __init__(self, n=2.0, **options):
        if not isinstance(n, int | float) or not n > 1.0:
            raise ValueError(f"CUBO: n must be a number greater than 1, got {n!r}")
        super().__init__(n, **options)
        self.n = float(n)
        self.divergence = f"CUBO (n={self.n:g})"

    def _estimate(self, model, guide, args, kwargs):
        lp, lq, score = self.particles(model, guide, args, kwargs)
        return estimators.cubo(self.n, lp, lq, score)


class CrossEntropy(_TakesDraws):
    r"""Cross-entropy :math:`H(P, Q) = -\mathbb{E}_P[\log q(x)]`: maximum likelihood on
    :math:`P`'s draws. It differs from :math:`\mathrm{KL}(P\|Q)` by the entropy of :math:`P`,
    so it has the same minimizer and needs no :math:`\log p`.

    The draws come from running the model (a prior target, or a
    :class:`~pyrodiv.targets.SampleTarget` holding a data set), or from ``draws=`` (e.g. MCMC
    draws of a posterior). Unbiased.

    Example::

        >>> data = pyrodiv.SampleTarget({"x": torch.randn(1000)})
        >>> loss = CrossEntropy(num_particles=128, vectorize_particles=True)
    """

    divergence = "cross-entropy"
    needs = frozenset({"x ~ P"})
    instead = (
        "pass draws= (e.g. MCMC draws from pyrodiv.run_nuts), or use ForwardKL, which "
        "self-normalizes importance weights over Q's particles"
    )

    def _estimate(self, model, guide, args, kwargs):
        order = "draws" if self.draws is not None else "model_first"
        _, lq, _ = self.particles(model, guide, args, kwargs, order)
        return estimators.cross_entropy(lq)


class Wasserstein(_TakesDraws):
    r"""The Wasserstein distance :math:`W_p(Q, P)` between the guide's and the target's draws
    of the model's latent sites (flattened and joined into one vector per draw).

    Each step draws :math:`K` = ``num_particles`` values from :math:`Q` (reparameterized: the
    gradient is pathwise) and :math:`K` from :math:`P`: by running a prior target or a
    :class:`~pyrodiv.targets.SampleTarget`, or from ``draws=``. A posterior target cannot be
    sampled, so it needs ``draws=``. The distance between the two samples
    (:func:`pyrodiv.transport.wasserstein`: sorted draws in 1-D, sliced or Sinkhorn or the exact
    linear program in several dimensions) is biased upward as an estimate of :math:`W_p(Q, P)`,
    by :math:`O(K^{-1/2})` in 1-D; use many particles.

    :param p: the order (1: earth mover's distance).
    :param method: ``"auto"``, ``"exact"``, ``"sliced"`` or ``"sinkhorn"``.
    :param num_projections: directions of the sliced distance.
    :param reg: Sinkhorn's entropic regularization, relative to the mean cost.
    :param draws: draws of :math:`P`'s latent sites (a dict of tensors, or an InferenceData).

    Example::

        >>> loss = Wasserstein(num_particles=256, vectorize_particles=True)
    """

    divergence = "Wasserstein"
    needs = frozenset({"x ~ P"})
    instead = (
        "pass draws= (e.g. MCMC draws from pyrodiv.run_nuts), or use a divergence that "
        "needs only log p (ReverseKL, ForwardKL, JensenShannon, FDivergence)"
    )

    def __init__(self, p=1.0, method="auto", num_projections=100, reg=0.05, **options):
        super().__init__(**options)
        if method not in transport.METHODS:
            raise ValueError(
                f"Wasserstein: method must be one of {transport.METHODS}, got {method!r}"
            )
        if not p >= 1.0:
            raise ValueError(f"Wasserstein: p must be >= 1, got {p!r}")
        self.p, self.method, self.num_projections, self.reg = p, method, num_projections, reg

    def _get_trace(self, model, guide, args, kwargs):
        """One run's draws of the latent sites: ``(x ~ P, x ~ Q)``, each ``(particles, D)``."""
        dim = self._particle_dim()
        if self.draws is not None:
            model = SetDraws(self.draws, self.num_particles if dim else 1, dim)(model)
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        self._note_params(guide_trace)
        subsamples = guide_trace.copy()  # the model's plates subsample as the guide's did
        for name, site in guide_trace.nodes.items():
            if site["type"] != "sample" or type(site["fn"]).__name__ != "_Subsample":
                subsamples.remove_node(name)
        with DetachSamples():
            model_trace = poutine.trace(poutine.replay(model, trace=subsamples)).get_trace(
                *args, **kwargs
            )
        rows = 1 if dim is None else self.num_particles
        at_p, at_q = [], []
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or site["is_observed"]:
                continue
            if type(site["fn"]).__name__ == "_Subsample":
                continue
            if name not in guide_trace.nodes:
                raise ValueError(f"Wasserstein: model site {name!r} is not in the guide")
            q_site = guide_trace.nodes[name]
            if not (q_site["fn"].has_rsample or type(q_site["fn"]).__name__ == "Delta"):
                raise ValueError(
                    f"Wasserstein: guide site {name!r} is not reparameterizable "
                    f"({type(q_site['fn']).__name__}); the gradient of W_p is pathwise"
                )
            at_p.append(site["value"].reshape(rows, -1))
            at_q.append(q_site["value"].reshape(rows, -1))
        if not at_p:
            raise ValueError("Wasserstein: the model has no latent sites")
        return torch.cat(at_p, -1), torch.cat(at_q, -1)

    def _estimate(self, model, guide, args, kwargs):
        runs = list(self._get_traces(model, guide, args, kwargs))
        at_p = torch.cat([r[0] for r in runs])
        at_q = torch.cat([r[1] for r in runs])
        value = transport.wasserstein(
            at_q, at_p, self.p, self.method, self.num_projections, self.reg
        )
        return estimators.Estimate(value.detach(), value)


#: Loss names understood by :func:`get_loss` besides the generator names of
#: :data:`pyrodiv.generators.GENERATOR_NAMES` (which build an :class:`FDivergence`).
LOSSES = {
    "reverse_kl": ReverseKL,
    "forward_kl": ForwardKL,
    "jensen_shannon": JensenShannon,
    "cross_entropy": CrossEntropy,
    "renyi": RenyiBound,
    "cubo": CUBO,
    "wasserstein": Wasserstein,
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
