r"""Adversarial divergences: a guide trained against a critic, inside the ordinary SVI loop.

Every f-divergence has a variational (dual) form (Nguyen, Wainwright and Jordan 2010; f-GAN,
Nowozin et al. 2016). With :math:`f^*(t) = \sup_u\,[tu - f(u)]` the convex conjugate of the
generator,

.. math::

    D_f(P\|Q) = \int q\, f\!\left(\frac pq\right)
              \;\ge\; \sup_T\; \mathbb{E}_{x\sim P}[T(x)] - \mathbb{E}_{x\sim Q}[f^*(T(x))],

with equality at :math:`T^*(x) = f'(p(x)/q(x))`. The right-hand side needs only draws of
:math:`P` and of :math:`Q`, so these losses train on a prior target (draws by running the
model), a :class:`~pyrodiv.divergences.targets.SampleTarget` or given draws (``draws=``), and
accept *implicit* guides, ``pyro.sample(name, dist.Delta(net(eps)))`` with no density (draw
``eps`` with ``pyro.sample``, so that the particle plate vectorizes it). The critic is a
``torch.nn.Module`` (registered with ``pyro.module``) from ``(K, D)`` draws (the model's latent
sites flattened and joined in its site order) to ``(K,)`` outputs :math:`v`; the activation
:math:`T = g_f(v)` keeps :math:`T` in the domain of :math:`f^*` (:data:`CONJUGATES`).

**One optimizer: gradient reversal.** ``SVI.step`` has one loss and one optimizer and steps
every parameter down its gradient, but the critic must ascend. So the critic's parameters
enter as :math:`\tilde\theta = \bar\theta - (\theta - \bar\theta)` (:math:`\bar\theta`
detached): the value :math:`\theta`, the Jacobian :math:`-I`. The surrogate, the critic's
objective :math:`C(\tilde\theta, x_Q)`, gives the guide :math:`+\partial C/\partial x_Q`
(it descends the bound) and the critic :math:`-\partial C/\partial\theta` (it ascends): one
backward pass, simultaneous descent-ascent, no second optimizer or alternating loop, so the
losses drop into ``SVI`` and :func:`pyrodiv.fit`. Built from tensors, the reversal carries the
second derivatives of WGAN's penalty. Where the guide has its own objective :math:`G`
(non-saturating GAN, LSGAN) the surrogate is :math:`C(\tilde\theta, \bar x_Q) +
G(\bar\theta, x_Q)`. A faster critic (two timescales) is a per-parameter learning rate of the
one optimizer: ``pyro.optim.Adam(lambda name: {"lr": 0.01 if name.startswith("critic.") else
0.003})``.

The reported value is the bound at the current critic: the divergence from below, tight at
the optimal critic. Training is a saddle-point search; its loss trace is not monotone.

Example::

    >>> critic = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.Tanh(),
    ...                              torch.nn.Linear(32, 1))
    >>> loss = AdversarialFDivergence("kl_forward", critic, num_particles=256,
    ...                               vectorize_particles=True)
    >>> svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), loss=loss)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import torch
import torch.nn.functional as F
from torch.func import functional_call

from . import estimators
from .generators import Generator, get_generator
from .loss_base import Plan, TakesDraws
from .trace_pair import paired_latents
from .traces import Order

LOG2 = math.log(2.0)


# ---- conjugates --------------------------------------------------------------------------


@dataclass(frozen=True)
class Conjugate:
    r"""The conjugate :math:`f^*` of a generator and the f-GAN output activation :math:`g_f`
    that maps a critic's raw output :math:`v\in\mathbb{R}` into the domain of :math:`f^*`.

    Example::

        >>> c = conjugate("pearson")
        >>> float(c.conjugate(c.activation(torch.tensor(2.0))))  # t^2/4 + t at t = 2
        3.0
    """

    activation: Callable[[torch.Tensor], torch.Tensor]
    conjugate: Callable[[torch.Tensor], torch.Tensor]
    activation_formula: str
    conjugate_formula: str


def _neg_exp(v):
    return -torch.exp(-v)


def _one_minus_exp(v):
    return -torch.expm1(-v)


#: Generator name -> :class:`Conjugate`, for :math:`f` as written in
#: :mod:`~pyrodiv.divergences.generators` (so the Jensen-Shannon entry is Nowozin et al.'s with
#: :math:`f` halved: :math:`f^*(t) = \tfrac12 f_{\rm N}^*(2t)`, :math:`g = \tfrac12 g_{\rm N}`;
#: and Neyman's :math:`1/u - 1` is theirs less :math:`u - 1`: :math:`f^*(t) = f_{\rm N}^*(t+1)-1`).
CONJUGATES = {
    "kl_forward": Conjugate(lambda v: v, lambda t: torch.exp(t - 1.0), "v", "exp(t - 1)"),
    "kl_reverse": Conjugate(_neg_exp, lambda t: -1.0 - torch.log(-t), "-exp(-v)", "-1 - log(-t)"),
    "pearson": Conjugate(lambda v: v, lambda t: 0.25 * t**2 + t, "v", "t^2/4 + t"),
    "neyman": Conjugate(
        _neg_exp, lambda t: 1.0 - 2.0 * torch.sqrt(-t), "-exp(-v)", "1 - 2 sqrt(-t)"
    ),
    "squared_hellinger": Conjugate(
        _one_minus_exp, lambda t: t / (1.0 - t), "1 - exp(-v)", "t / (1 - t)"
    ),
    "jensen_shannon": Conjugate(
        lambda v: 0.5 * (LOG2 - F.softplus(-v)),
        lambda t: -0.5 * torch.log(2.0 - torch.exp(2.0 * t)),
        "(log 2 - log(1 + exp(-v))) / 2",
        "-log(2 - exp(2t)) / 2",
    ),
    "total_variation": Conjugate(lambda v: 0.5 * torch.tanh(v), lambda t: t, "tanh(v) / 2", "t"),
    "triangular": Conjugate(
        lambda v: 1.0 - 4.0 * torch.sigmoid(-v),
        lambda t: 4.0 - t - 4.0 * torch.sqrt(1.0 - t),
        "1 - 4 sigmoid(-v)",
        "4 - t - 4 sqrt(1 - t)",
    ),
    "log1p_abs": Conjugate(
        _one_minus_exp,
        lambda t: torch.where(t < -1.0, 1.0 - 2.0 * torch.sqrt(-t.clamp(max=-1.0)), t),
        "1 - exp(-v)",
        "t for t >= -1, 1 - 2 sqrt(-t) below",
    ),
}


def _amari(alpha: float) -> Conjugate:
    r""":math:`f(u) = (u^\alpha - 1)/(\alpha(\alpha-1))`: :math:`f^*(t) = ((\alpha-1)t)^{
    \alpha/(\alpha-1)}/\alpha + 1/(\alpha(\alpha-1))` where :math:`(\alpha-1)t > 0`."""
    if alpha == 1.0:
        return CONJUGATES["kl_forward"]
    if alpha == 0.0:
        return CONJUGATES["kl_reverse"]
    a, power, const = alpha - 1.0, alpha / (alpha - 1.0), 1.0 / (alpha * (alpha - 1.0))
    act, act_formula = (F.softplus, "log(1 + exp(v))") if a > 0 else (_neg_exp, "-exp(-v)")
    return Conjugate(
        act,
        lambda t: (a * t) ** power / alpha + const,
        act_formula,
        f"(({a:g}) t)^{power:g} / {alpha:g} + {const:g}",
    )


def conjugate(generator) -> Conjugate:
    r"""The :class:`Conjugate` of a catalogue generator (a name or a
    :class:`~pyrodiv.divergences.generators.Generator`). A positive multiple :math:`c f` has
    :math:`(cf)^*(t) = c f^*(t/c)` and activation :math:`c\, g_f` (``t_power``).

    Example::

        >>> conjugate("kl_forward").conjugate_formula
        'exp(t - 1)'
    """
    gen = get_generator(generator) if isinstance(generator, str) else generator
    if not isinstance(gen, Generator):
        raise TypeError(f"generator must be a name or a Generator, got {type(gen).__name__}")
    if gen.name in CONJUGATES:
        return CONJUGATES[gen.name]
    if gen.name == "amari_alpha":
        return _amari(gen.params["alpha"])
    if gen.name == "t_power":
        a = gen.params["power"]
        c, base = abs(a * (a - 1.0)), _amari(a)
        return Conjugate(
            lambda v: c * base.activation(v),
            lambda t: c * base.conjugate(t / c),
            f"{c:g} ({base.activation_formula})",
            f"{c:g} f_alpha*(t / {c:g})",
        )
    have = ", ".join(list(CONJUGATES) + ["amari_alpha", "t_power"])
    raise ValueError(
        f"generator {gen.name!r} has no closed-form conjugate here; the adversarial f-divergence "
        f"is available for {have}"
    )


# ---- the critic --------------------------------------------------------------------------


def reverse_gradient(x: torch.Tensor) -> torch.Tensor:
    r"""``x`` in value, with gradient :math:`-1`: :math:`\bar x - (x - \bar x)`, twice
    differentiable.

    Example::

        >>> w = torch.tensor(2.0, requires_grad=True)
        >>> (3.0 * reverse_gradient(w)).backward(); float(w.grad)
        -3.0
    """
    fixed = x.detach()
    return fixed - (x - fixed)


def _draws(at_q, at_p) -> tuple[torch.Tensor, torch.Tensor]:
    """Q's and P's draws of the model's latent sites as ``(K, D)`` tensors, P's site order
    (P's detached)."""
    x_q, x_p = paired_latents(at_q, at_p, "the guide's gradient through the critic")
    return x_q, x_p.detach().to(x_q)


class _Critic:
    """The registered critic, called with reversed or detached parameters."""

    def __init__(self, loss):
        module = pyro.module(loss.critic_name, loss.critic)
        self.module = module
        self.params = dict(module.named_parameters())
        if not self.params:
            raise ValueError(f"{loss.divergence}: the critic has no parameters to train")
        for name, p in self.params.items():
            loss._params[f"{loss.critic_name}$$${name}"] = p
        self.dtype = next(iter(self.params.values())).dtype

    def __call__(self, x: torch.Tensor, mode: str = "reversed") -> torch.Tensor:
        if mode == "reversed":
            params = {n: reverse_gradient(p) for n, p in self.params.items()}
        else:
            params = {n: p.detach() for n, p in self.params.items()}
        out = functional_call(self.module, params, (x.to(self.dtype),))
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the critic must return a tensor, got {type(out).__name__}")
        if out.dim() == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.shape != x.shape[:1]:
            raise ValueError(
                f"the critic must map draws of shape {tuple(x.shape)} to scores of shape "
                f"({x.shape[0]},), got {tuple(out.shape)}"
            )
        return out.to(x.dtype)


def _adversarial(loss, at_q, at_p):
    x_q, x_p = _draws(at_q, at_p)
    critic = _Critic(loss)
    if loss.own_guide_objective:
        value, objective = loss.objective(critic, x_p, x_q.detach())
        surrogate = objective + loss.guide_objective(lambda x: critic(x, "detached"), x_q)
    else:
        value, surrogate = loss.objective(critic, x_p, x_q)
    loss.watch(float(value.detach()))
    return estimators.Estimate(value.detach(), value.detach() + (surrogate - surrogate.detach()))


class _AdversarialLoss(TakesDraws):
    """Common parts: the critic, the plans (draws of P and of Q only), the watch. A subclass
    defines ``objective(critic, x_p, x_q) -> (value, critic's objective)`` and, with
    :attr:`own_guide_objective`, ``guide_objective(critic, x_q)``."""

    needs = frozenset({"x ~ P"})
    PLANS = {
        kind: Plan((Order.GUIDE_FIRST, order), _adversarial, densities=False)
        for kind, order in (
            ("prior", Order.MODEL_FIRST),
            ("sample", Order.MODEL_FIRST),
            ("draws", Order.GIVEN_DRAWS),
        )
    }
    #: Whether the guide descends :meth:`guide_objective` instead of the critic's objective.
    own_guide_objective = False

    def __init__(self, critic, critic_name: str = "critic", **options):
        if not isinstance(critic, torch.nn.Module):
            raise TypeError(
                f"{type(self).__name__}: critic must be a torch.nn.Module mapping (K, D) draws "
                f"to (K,) scores, got {type(critic).__name__}"
            )
        if not isinstance(critic_name, str) or not critic_name:
            raise ValueError(f"{type(self).__name__}: critic_name must be a non-empty string")
        super().__init__(**options)
        self.critic, self.critic_name = critic, critic_name
        self._watched = 0

    def watch(self, value: float):
        """Hook for warnings about the run of the minimax (a no-op by default)."""


class AdversarialFDivergence(_AdversarialLoss):
    r"""The f-GAN loss: :math:`\sup_T \mathbb{E}_P[T] - \mathbb{E}_Q[f^*(T)]`, a lower bound of
    :math:`D_f(P\|Q)`, with the critic :math:`T = g_f(V(x))` (:data:`CONJUGATES`).

    At the optimal critic, :math:`T^* = f'(p/q)`, the value is :math:`D_f(P\|Q)`; the guide
    descends it. Draws of :math:`P` come from running a prior target, from a
    :class:`~pyrodiv.divergences.targets.SampleTarget` or from ``draws=``; the guide needs
    reparameterized (or implicit ``Delta``) sites.

    :param generator: a catalogue name with a conjugate (``"kl_forward"``, ``"kl_reverse"``,
        ``"pearson"``, ``"neyman"``, ``"squared_hellinger"``, ``"jensen_shannon"``,
        ``"total_variation"``, ``"triangular"``, ``"log1p_abs"``, ``"amari_alpha"``,
        ``"t_power"``) or a :class:`~pyrodiv.divergences.generators.Generator`.
    :param critic: a ``torch.nn.Module``, ``(K, D)`` draws to ``(K,)`` raw outputs :math:`V`.
    :param critic_name: its name in Pyro's param store.
    :param options: ``num_particles``, ``vectorize_particles``, ``target``, ``draws``, ...,
        and the generator's parameters (``alpha=``, ``power=``).

    Example::

        >>> loss = AdversarialFDivergence("kl_forward", critic, num_particles=256)
    """

    def __init__(self, generator, critic, critic_name: str = "critic", **options):
        params = {k: options.pop(k) for k in ("alpha", "power") if k in options}
        if isinstance(generator, str):
            generator = get_generator(generator, **params)
        self.generator = generator
        self.conjugate = conjugate(generator)
        self.divergence = f"adversarial {generator.name}"
        super().__init__(critic, critic_name, **options)

    def objective(self, critic, x_p, x_q):
        g, fstar = self.conjugate.activation, self.conjugate.conjugate
        value = g(critic(x_p)).mean() - fstar(g(critic(x_q))).mean()
        return value, value


class GAN(_AdversarialLoss):
    r"""The original GAN (Goodfellow et al. 2014): a discriminator :math:`D = \sigma(V(x))`
    and

    .. math::

        V_{\rm GAN} = \mathbb{E}_P[\log D] + \mathbb{E}_Q[\log(1 - D)]
        \;\le\; 2\,\mathrm{JSD}(P, Q) - \log 4,

    with equality at :math:`D^* = p/(p+q)`. The reported value is
    :math:`(V_{\rm GAN} + \log 4)/2`, the Jensen-Shannon divergence in nats (the scale of
    :class:`~pyrodiv.JensenShannon`, at most :math:`\log 2`); it is the f-GAN bound of the
    ``"jensen_shannon"`` generator. The critic ascends it; the guide descends it, or, with
    ``non_saturating=True``, descends :math:`-\mathbb{E}_Q[\log D]` (the same fixed point,
    stronger gradients while the discriminator wins).

    Example::

        >>> loss = GAN(critic, num_particles=256, non_saturating=True)
    """

    divergence = "GAN (Jensen-Shannon)"

    def __init__(self, critic, critic_name="critic", non_saturating=False, **options):
        super().__init__(critic, critic_name, **options)
        self.non_saturating = self.own_guide_objective = bool(non_saturating)

    def objective(self, critic, x_p, x_q):
        gan = F.logsigmoid(critic(x_p)).mean() + F.logsigmoid(-critic(x_q)).mean()
        value = 0.5 * gan + LOG2
        return value, value

    def guide_objective(self, critic, x_q):
        return -0.5 * F.logsigmoid(critic(x_q)).mean()

    #: Steps at which the estimate stays within 1% of log 2 before the fit is called stuck.
    SATURATED_STEPS = 100

    def watch(self, value: float):
        self._watched = self._watched + 1 if value > 0.99 * LOG2 else 0
        if self._watched == self.SATURATED_STEPS:
            warnings.warn(
                f"{self.divergence}: the estimate has stayed at log 2 for "
                f"{self.SATURATED_STEPS} steps: the critic separates P and Q completely and "
                "the guide's gradient vanishes. Use non_saturating=True, WGAN, a smaller critic, "
                "or start Q nearer P",
                RuntimeWarning,
                stacklevel=7,
            )


class LSGAN(_AdversarialLoss):
    r"""Least-squares GAN (Mao et al. 2017) with targets :math:`a = -1` (Q) and :math:`b = 1`
    (P) for the critic and :math:`c` (``guide_target``) for the guide: the critic ascends
    :math:`C(D) = -\tfrac12\mathbb{E}_P[(D - 1)^2] - \tfrac12\mathbb{E}_Q[(D + 1)^2]` and the
    guide descends :math:`\tfrac12\mathbb{E}_Q[(D - c)^2]`. With :math:`c = 0` and
    :math:`D^* = (p - q)/(p + q)` the guide's objective is, up to a constant, half Mao's
    Pearson :math:`\chi^2(P + Q\,\|\,2Q)`, which is the triangular discrimination
    :math:`\int (p - q)^2/(p + q)` of the catalogue. The default :math:`c = 1` (Mao et al.'s
    other choice, :math:`c = b`) has the same fixed point :math:`Q = P` (there :math:`D^* = 0`
    and the guide's gradient vanishes) and stronger gradients on the way: with :math:`c = 0` the
    gradient :math:`D\,\nabla D` fades as :math:`D \to 0`, and a 1-D fit from 2 sd away is
    still short of :math:`P` after 800 steps. The
    reported value is :math:`2 + 2C(D)`, the f-GAN bound of ``"triangular"`` with
    :math:`T = 2D - D^2`, equal to that divergence at :math:`D^*` and below it elsewhere.

    Example::

        >>> loss = LSGAN(critic, num_particles=256)
    """

    divergence = "LSGAN (Pearson chi^2 of P+Q from 2Q)"
    own_guide_objective = True

    def objective(self, critic, x_p, x_q):
        d_p, d_q = critic(x_p), critic(x_q)
        c = -0.5 * ((d_p - 1.0) ** 2).mean() - 0.5 * ((d_q + 1.0) ** 2).mean()
        return 2.0 + 2.0 * c, c

    def __init__(self, critic, critic_name="critic", guide_target=1.0, **options):
        super().__init__(critic, critic_name, **options)
        self.guide_target = float(guide_target)

    def guide_objective(self, critic, x_q):
        return 0.5 * ((critic(x_q) - self.guide_target) ** 2).mean()


class WGAN(_AdversarialLoss):
    r"""Wasserstein GAN with gradient penalty (Gulrajani et al. 2017). By Kantorovich-Rubinstein
    duality :math:`W_1(P, Q) = \sup_{\|T\|_L\le 1} \mathbb{E}_P[T] - \mathbb{E}_Q[T]`; the
    critic ascends

    .. math::

        \mathbb{E}_P[T] - \mathbb{E}_Q[T]
        - \lambda\, \mathbb{E}_{\hat x}\big[(\|\nabla T(\hat x)\| - 1)^2\big],\qquad
        \hat x = \epsilon x_P + (1 - \epsilon) x_Q,\ \epsilon\sim U(0, 1),

    and the guide descends :math:`\mathbb{E}_P[T] - \mathbb{E}_Q[T]` (the reported value, an
    estimate of :math:`W_1`). The penalty is soft: in 1-D the penalized optimum has slope
    :math:`1 + (F_Q - F_P)/(2\lambda\rho)` (:math:`\rho` the density of :math:`\hat x`), so the
    value exceeds :math:`W_1` by :math:`\int (F_Q - F_P)^2/(2\lambda\rho)`, small for
    :math:`\lambda = 10`. :class:`~pyrodiv.Wasserstein` computes :math:`W_p` between the
    draws directly (exact in 1-D, sliced in several dimensions), with no critic.

    :param gradient_penalty: :math:`\lambda \ge 0`.
    :param one_sided: penalize only :math:`\|\nabla T\| > 1`,
        :math:`\max(0, \|\nabla T\| - 1)^2` (Petzka et al. 2018; the default), or, with
        ``False``, Gulrajani et al.'s two-sided :math:`(\|\nabla T\| - 1)^2`. In one dimension the
        two-sided penalty's maximum at :math:`T' = 0` keeps a critic that starts with its slope
        reversed from turning round (a local optimum of the critic's objective), while the
        guide, descending that critic, runs away from :math:`P`; the one-sided penalty has no
        such barrier. A negative estimate for :attr:`REVERSED_STEPS` steps warns.

    Example::

        >>> loss = WGAN(critic, gradient_penalty=10.0, num_particles=256)
    """

    divergence = "WGAN-GP (Wasserstein-1)"

    def __init__(
        self, critic, gradient_penalty=10.0, one_sided=True, critic_name="critic", **options
    ):
        if isinstance(gradient_penalty, bool) or not isinstance(gradient_penalty, int | float):
            raise TypeError(f"WGAN: gradient_penalty must be a number, got {gradient_penalty!r}")
        if not (math.isfinite(gradient_penalty) and gradient_penalty >= 0):
            raise ValueError(f"WGAN: gradient_penalty must be >= 0, got {gradient_penalty!r}")
        super().__init__(critic, critic_name, **options)
        self.gradient_penalty = float(gradient_penalty)
        self.one_sided = bool(one_sided)

    def objective(self, critic, x_p, x_q):
        value = critic(x_p).mean() - critic(x_q).mean()
        if self.gradient_penalty == 0.0 or not torch.is_grad_enabled():  # loss(): no surrogate
            return value, value
        eps = torch.rand(x_p.shape[0], 1, dtype=x_p.dtype, device=x_p.device)
        x_hat = (eps * x_p + (1.0 - eps) * x_q.detach()).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
        excess = grad.norm(dim=-1) - 1.0
        penalty = (excess.clamp(min=0.0) if self.one_sided else excess).pow(2).mean()
        return value, value - self.gradient_penalty * penalty

    #: Steps with a negative estimate after which the critic is called stuck.
    REVERSED_STEPS = 100

    def watch(self, value: float):
        self._watched = self._watched + 1 if value < 0.0 else 0
        if self._watched == self.REVERSED_STEPS and not self.one_sided:
            warnings.warn(
                f"{self.divergence}: the estimate has been negative for {self.REVERSED_STEPS} "
                "steps: the critic is stuck with its slope reversed (the two-sided penalty "
                "has a barrier at |grad T| = 0, which traps a 1-D critic) and the guide runs "
                "away from P. Use one_sided=True, or a wider critic",
                RuntimeWarning,
                stacklevel=7,
            )


__all__ = [
    "AdversarialFDivergence",
    "CONJUGATES",
    "Conjugate",
    "GAN",
    "LSGAN",
    "WGAN",
    "conjugate",
    "reverse_gradient",
]
