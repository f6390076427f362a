r"""Divergences as drop-in ``pyro.infer.ELBO`` losses.

Each loss joins a trace layer (:mod:`pyrodiv.divergences.traces`) to an estimator
(:mod:`pyrodiv.divergences.estimators`) and is used like any Pyro loss::

    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}),
                         loss=pyrodiv.ForwardKL(num_particles=256, vectorize_particles=True))

Every loss offers ``loss`` (a float estimate of the divergence), ``differentiable_loss`` (a
tensor with the same value whose gradient is the gradient estimator) and ``loss_and_grads``
(backward on it, return the float), from one pass over the traces. ``num_particles`` works
sequentially or, with ``vectorize_particles=True``, under one outer plate.

**Targets** (:mod:`pyrodiv.divergences.targets`). The model is the target :math:`P`. A model with
no
observed sites and no ``pyro.factor`` is a *prior* target: normalized and sampleable, so every
divergence is estimated without bias. A model with observed sites or factors is a *posterior*
target: only the unnormalized :math:`\tilde p(x, z)` is known and :math:`P` cannot be sampled,
so losses that need :math:`x\sim P` or a normalized :math:`\log p` use self-normalized
importance sampling over :math:`Q`'s particles (biased by :math:`O(1/K)`, consistent),
Markovian score climbing (``ForwardKL(estimator="msc")``), or given draws (``draws=``, e.g.
MCMC draws). A :class:`~pyrodiv.divergences.targets.SampleTarget` is a *sample* target: draws of
:math:`P`
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

import warnings

from . import estimators, transport
from .bound_watch import BoundWatch, watched
from .bounds import CUBO, RenyiBound
from .enumeration import is_enumerated
from .generators import GENERATOR_NAMES, Generator, get_generator
from .loss_base import LOSS_OPTIONS, DivergenceLoss, Plan, TakesDraws
from .rao_blackwell import reverse_kl_surrogate
from .trace_pair import paired_latents
from .traces import Order

_KL_REVERSE = get_generator("kl_reverse")
_JSD = get_generator("jensen_shannon")


def _q_draws_f(f):
    """The estimator of E_Q[f(p/q)] over Q's draws (unbiased, score terms for discrete sites)."""
    return lambda loss, run: estimators.f_divergence(f(loss), run.log_p, run.log_q, run.score)


def _reverse_kl(loss, run):
    """E_Q[log q - log p]; with the traces of a tracked run (a guide with score-function
    sites), TraceGraph_ELBO's Rao-Blackwellized score terms."""
    if run.traces and not is_enumerated(run.traces[0][0]):
        value = (run.log_q - run.log_p).mean()
        return reverse_kl_surrogate(run.traces, run.log_q.numel(), value)
    return estimators.f_divergence(_KL_REVERSE, run.log_p, run.log_q, run.score)


def _kl_forward(loss, run):
    r""":func:`~pyrodiv.divergences.estimators.kl_forward` at P's draws, its surrogate built
    as :math:`\frac1K\sum_k (\mathrm{sg}(\log p_k) - \log q_k)`: the same value (the same
    sum) and the same gradient :math:`-\frac1K\sum_k\nabla\log q_k`, in three tensor
    operations instead of nine (the fixed cost of a step on a small model)."""
    surrogate = (run.log_p.detach() - run.log_q).mean()
    return estimators.Estimate(surrogate.detach(), surrogate)


def _cross_entropy(loss, run):
    return estimators.cross_entropy(run.log_q)


def _self_normalized_kl_forward(loss, run):
    if run.log_p.numel() == 1 and not getattr(loss, "_warned_one_particle", False):
        loss._warned_one_particle = True
        warnings.warn(
            f"{loss.divergence} with one particle on a posterior target: the one "
            "self-normalized weight is 1, so the fit learns nothing; use tens of particles",
            UserWarning,
            stacklevel=2,
        )
    return estimators.self_normalized_kl_forward(run.log_p, run.log_q)


class ReverseKL(DivergenceLoss):
    r"""Reverse (exclusive) KL, :math:`\mathrm{KL}(Q\|P) = \mathbb{E}_Q[\log q - \log p]`.

    Zero-forcing and mode-seeking. Draws :math:`x_k\sim Q`; the gradient is pathwise for
    reparameterized sites and uses the score function for the others, Rao-Blackwellized per
    site and plate slice as in :class:`pyro.infer.TraceGraph_ELBO`
    (:mod:`~pyrodiv.divergences.rao_blackwell`; with a given ``max_plate_nesting``, from the
    second step on, once the guide's score-function sites are known). On a posterior target
    the value is the negative ELBO,
    :math:`\mathrm{KL}(Q\|P) - \log Z`, and the gradient is that of
    :class:`pyro.infer.Trace_ELBO`. Unbiased, in value and gradient (also under plate
    subsampling, whose scaling Pyro applies to :math:`\log p`).

    Example::

        >>> svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}),
        ...                      loss=ReverseKL(num_particles=64, vectorize_particles=True))
    """

    divergence = "reverse KL"
    PLANS = {
        "prior": Plan(Order.GUIDE_FIRST, _reverse_kl, rao_blackwell=True),
        "posterior": Plan(Order.GUIDE_FIRST, _reverse_kl, rao_blackwell=True),
    }


def _score_climbing(loss, run):
    loss.chain.advance(run.handlers, run.log_p - run.log_q)
    return estimators.self_normalized_kl_forward(run.log_p, run.log_q)


class ForwardKL(TakesDraws):
    r"""Forward (inclusive) KL, :math:`\mathrm{KL}(P\|Q) = \mathbb{E}_P[\log p - \log q]`.

    Zero-avoiding and mass-covering: minimizing it over :math:`Q` is maximum likelihood on
    :math:`P`'s draws. No reparameterization is needed, so discrete guide sites train too.

    * **Prior target**: the draws come from running the model; value and gradient unbiased.
    * **Posterior target**, ``estimator="snis"`` (default): self-normalized importance sampling
      over :math:`Q`'s particles, the wake-phase estimator
      (:func:`~pyrodiv.divergences.estimators.self_normalized_kl_forward`); consistent, biased by
      :math:`O(1/K)` at :math:`K` particles, more when the weights vary much.
    * **Posterior target**, ``estimator="msc"``: Markovian score climbing
      (:mod:`pyrodiv.divergences.score_climbing`): one particle is a Markov chain state kept
      between
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
    ESTIMATORS = ("snis", "msc")
    PLANS = {
        "prior": Plan(Order.MODEL_FIRST, _kl_forward),
        "posterior": Plan(Order.GUIDE_FIRST_DETACHED, _self_normalized_kl_forward),
        "draws": Plan(Order.GIVEN_DRAWS, _cross_entropy),
    }
    MSC_PLANS = {**PLANS, "posterior": Plan(Order.RETAINED, _score_climbing)}

    def __init__(self, *, estimator="snis", **options):
        super().__init__(**options)
        if estimator not in self.ESTIMATORS:
            raise ValueError(
                f"ForwardKL: estimator must be one of {self.ESTIMATORS}, got {estimator!r}"
            )
        self.estimator = estimator
        if self.draws is not None:  # the value is H(P, Q), not the KL: say so
            self.divergence = "forward KL (valued as the cross-entropy -E_P[log q] at the draws)"
        self._msc_ignored_told = False

    def plans(self):
        return self.MSC_PLANS if self.estimator == "msc" else self.PLANS

    def check_target(self, model, args, kwargs) -> str:
        kind = super().check_target(model, args, kwargs)
        if self.estimator == "msc" and kind != "posterior" and not self._msc_ignored_told:
            self._msc_ignored_told = True
            warnings.warn(
                f"ForwardKL: estimator='msc' applies to posterior targets; on this {kind} "
                "target the draws of P are used directly (unbiased), with no Markov chain",
                UserWarning,
                stacklevel=4,
            )
        return kind

    def reset_state(self):
        """Forget the Markov chain state of ``estimator="msc"``."""
        self.chain.reset()

    def __repr__(self):
        return super().__repr__()[:-1] + f", estimator={self.estimator!r})"


def _jensen_shannon_pairs(loss, at_p, at_q):
    return estimators.jensen_shannon(at_p.log_p, at_p.log_q, at_q.log_p, at_q.log_q, at_q.score)


def _self_normalized(f):
    return lambda loss, run: estimators.self_normalized_f_divergence(
        f(loss), run.log_p, run.log_q, run.score
    )


class JensenShannon(DivergenceLoss):
    r"""Jensen-Shannon divergence in nats,
    :math:`\tfrac12\mathrm{KL}(P\|M) + \tfrac12\mathrm{KL}(Q\|M)`, :math:`M = \tfrac12(P + Q)`.

    On a prior target each particle is a pair, one draw from :math:`P` and one from :math:`Q`
    (:func:`~pyrodiv.divergences.estimators.jensen_shannon`, unbiased). On a posterior target it
    is the
    f-divergence estimate with :math:`P` normalized by the particles' own
    :math:`\hat Z` (:func:`~pyrodiv.divergences.estimators.self_normalized_f_divergence`,
    :math:`O(1/K)`
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
    PLANS = {
        "prior": Plan((Order.MODEL_FIRST, Order.GUIDE_FIRST), _jensen_shannon_pairs),
        "posterior": Plan(Order.GUIDE_FIRST, _self_normalized(lambda loss: _JSD)),
    }


def _report(f, run, objective):
    """The self-normalized value of ``f`` with the gradient of ``objective``."""
    value = estimators.self_normalized_f_divergence(f, run.log_p, run.log_q, run.score).value
    return estimators.Estimate(value, value + (objective - objective.detach()))


def _power_forward(loss, run):  # alpha = 1: self-normalized importance sampling
    objective = estimators.self_normalized_kl_forward(run.log_p, run.log_q).surrogate
    return _report(loss.generator, run, objective)


def _power_reverse(loss, run):  # alpha = 0: the ELBO
    return _report(loss.generator, run, estimators.mean_under_q(run.log_q - run.log_p, run.score))


def _power_renyi(loss, run):  # the scaled Renyi bound
    alpha = loss.generator.power
    bound = estimators.renyi_bound(alpha, run.log_p, run.log_q, run.score)
    bound = watched(loss.watch, bound, run)
    return _report(loss.generator, run, bound.surrogate / alpha)


class FDivergence(DivergenceLoss):
    r"""Any f-divergence :math:`D_f(P\|Q) = \mathbb{E}_Q[f(p/q)]` with :math:`x_k \sim Q`.

    :param f: a generator name from :mod:`pyrodiv.divergences.generators` (``"kl_forward"``,
        ``"squared_hellinger"``, ``"amari_alpha"``, ...), a
        :class:`~pyrodiv.divergences.generators.Generator`, or a callable ``f(logu)``.
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

    def __init__(self, f, **options):
        params = {k: options.pop(k) for k in list(options) if k not in LOSS_OPTIONS}
        super().__init__(**options)
        self.generator: Generator = get_generator(f, **params)
        self.divergence = f"f-divergence {self.generator.name}"
        power = self.generator.power
        # Above order 1 the posterior objective is a Renyi bound, which can run away.
        self.watch = None
        if power is not None and power > 1:
            name = f"{self.divergence} (its Renyi bound of order {power:g})"
            self.watch = BoundWatch(name, power / (power - 1))

    PLANS = {
        "prior": Plan(Order.GUIDE_FIRST, _q_draws_f(lambda loss: loss.generator)),
        "posterior": Plan(Order.GUIDE_FIRST, _self_normalized(lambda loss: loss.generator)),
    }
    POWER_PLANS = {
        1.0: Plan(Order.GUIDE_FIRST_DETACHED, _power_forward),
        0.0: Plan(Order.GUIDE_FIRST, _power_reverse),
    }

    def plans(self):
        power = self.generator.power
        if power is None:
            return self.PLANS
        posterior = self.POWER_PLANS.get(power, Plan(Order.GUIDE_FIRST, _power_renyi))
        return {**self.PLANS, "posterior": posterior}


class CrossEntropy(TakesDraws):
    r"""Cross-entropy :math:`H(P, Q) = -\mathbb{E}_P[\log q(x)]`: maximum likelihood on
    :math:`P`'s draws. It differs from :math:`\mathrm{KL}(P\|Q)` by the entropy of :math:`P`,
    so it has the same minimizer and needs no :math:`\log p`.

    The draws come from running the model (a prior target, or a
    :class:`~pyrodiv.divergences.targets.SampleTarget` holding a data set), or from ``draws=``
    (e.g. MCMC
    draws of a posterior). Unbiased.

    Example::

        >>> data = pyrodiv.SampleTarget({"x": torch.randn(1000)})
        >>> loss = CrossEntropy(num_particles=128, vectorize_particles=True)
    """

    divergence = "cross-entropy"
    needs = frozenset({"x ~ P"})
    PLANS = {
        "prior": Plan(Order.MODEL_FIRST, _cross_entropy),
        "sample": Plan(Order.MODEL_FIRST, _cross_entropy),
        "draws": Plan(Order.GIVEN_DRAWS, _cross_entropy),
    }


def _wasserstein(loss, at_q, at_p):
    """W_p between Q's and P's draws of the model's latent sites, in P's site order."""
    x_q, x_p = paired_latents(at_q, at_p, "the gradient of W_p")
    value = transport.wasserstein(x_q, x_p, loss.p, loss.method, loss.num_projections, loss.reg)
    return estimators.Estimate(value.detach(), value)


class Wasserstein(TakesDraws):
    r"""The Wasserstein distance :math:`W_p(Q, P)` between the guide's and the target's draws
    of the model's latent sites (flattened and joined into one vector per draw).

    Each step draws :math:`K` = ``num_particles`` values from :math:`Q` (reparameterized: the
    gradient is pathwise) and :math:`K` from :math:`P`: by running a prior target or a
    :class:`~pyrodiv.divergences.targets.SampleTarget`, or from ``draws=``. A posterior target
    cannot be
    sampled, so it needs ``draws=``. The distance between the two samples
    (:func:`pyrodiv.divergences.transport.wasserstein`: sorted draws in 1-D, sliced or Sinkhorn or
    the exact
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
    PLANS = {
        kind: Plan((Order.GUIDE_FIRST, order), _wasserstein, densities=False)
        for kind, order in (
            ("prior", Order.MODEL_FIRST),
            ("sample", Order.MODEL_FIRST),
            ("draws", Order.GIVEN_DRAWS),
        )
    }

    def __init__(self, p=1.0, method="auto", num_projections=100, reg=0.05, **options):
        super().__init__(**options)
        if method not in transport.METHODS:
            raise ValueError(
                f"Wasserstein: method must be one of {transport.METHODS}, got {method!r}"
            )
        if not p >= 1.0:
            raise ValueError(f"Wasserstein: p must be >= 1, got {p!r}")
        self.p, self.method, self.num_projections, self.reg = p, method, num_projections, reg


#: Loss names understood by :func:`get_loss` besides the generator names of
#: :data:`pyrodiv.divergences.generators.GENERATOR_NAMES` (which build an :class:`FDivergence`).
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
