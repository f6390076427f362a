r"""The training stages of :func:`pyrodiv.approximate`: Adam on a whitened guide with a
convergence stop, learning-rate decay, Polyak averaging and the collapse and runaway checks
(:func:`train`), re-whitening rounds (:func:`rounds`), and the flow stage (:func:`flow_stage`).

**Learning rates.** The whitened guide :math:`N(m + La, (LB)(LB)^\top)` with
:math:`B = \operatorname{diag}(e^s) + \operatorname{tril}(R, -1)` is trained by Adam, whose
step moves every parameter by about the learning rate :math:`\eta` whatever the size of its
gradient. Where the gradient is mostly noise (a self-normalized divergence near its optimum
in many dimensions) each step is a random step of size :math:`\eta` in each of the
:math:`D(D-1)/2` entries of :math:`R`, and the singular values of :math:`B = I + E`, with
:math:`E` a :math:`D \times D` noise matrix of entries of size :math:`\eta`, spread by about
:math:`\eta\sqrt D` (the edge of the Marchenko-Pastur law). So :math:`R` is trained at
:math:`\eta/\sqrt D`: a noisy step then moves :math:`B`'s singular values (the guide's sds, in
posterior sds) by about :math:`\eta`, as a step of :math:`s` does, in any dimension.

Example::

    >>> stage, losses, detail = train("fit", model, guide, (), {}, loss, 16, settings, 500,
    ...                               progress=False)                      # doctest: +SKIP
"""

from __future__ import annotations

import math
import time

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer.autoguide.initialization import init_to_median

import pyrodiv

from ..divergences.compiled import program
from ..divergences.loss_base import DivergenceLoss
from ..divergences.lowering import NotLowerable
from . import arviz_adapter
from .approximation import _FAILED, ApproximateSettings, MomentCheck, Stage, _warn
from .flow_guide import AutoWhitenedFlow
from .inference_data import _guide_draws_seeded
from .warm_start import AutoWhitenedNormal, log_density_fn

__all__ = [
    "KHAT_NOISE",
    "divergence_name",
    "flow_stage",
    "khat_stage",
    "moment_check",
    "nuts_seconds",
    "record",
    "rounds",
    "train",
]


def divergence_name(loss) -> str:
    return getattr(loss, "divergence", type(loss).__name__)


class _Monitor:
    """The stage callback: window means of the parameters, learning-rate decay, the
    convergence stop and the collapse and runaway checks."""

    def __init__(
        self, params: list, optim, settings: ApproximateSettings, guide, lr, converge, deadline
    ):
        self.params, self.optim, self.s, self.guide = params, optim, settings, guide
        self.lr, self.converge, self.deadline = lr, converge, deadline
        self.total = None
        self.previous = None
        self.average = None
        self.window_losses, self.previous_loss = [], None
        self.status = "max_steps"
        self.detail = ""

    def flat(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    def __call__(self, step: int, loss: float) -> bool:
        if not math.isfinite(loss):
            self.status, self.detail = "failed", f"its loss became {loss} at step {step}"
            return True
        if self.deadline is not None and time.perf_counter() > self.deadline:
            self.status = "time budget"
            return True
        flat = self.flat()
        self.total = flat.clone() if self.total is None else self.total + flat
        self.window_losses.append(loss)
        if step % self.s.window:
            return False
        mean, self.total = self.total / self.s.window, None
        losses = torch.tensor(self.window_losses, dtype=torch.float64)
        self.window_losses = []
        loss_mean, loss_se = float(losses.mean()), float(losses.std() / len(losses) ** 0.5)
        if not torch.isfinite(mean).all():
            self.status, self.detail = "failed", f"its parameters became nan at step {step}"
            return True
        if isinstance(self.guide, AutoWhitenedNormal) and self._broken(step):
            return True
        self.average = mean
        previous, self.previous = self.previous, mean
        previous_loss, self.previous_loss = self.previous_loss, (loss_mean, loss_se)
        if previous is None:
            return False
        change = float((mean - previous).abs().max())
        if self.converge and change < self.s.tolerance:
            self.status = "converged"
            return True
        gain = previous_loss[0] - loss_mean
        if gain > self.s.drift * math.hypot(loss_se, previous_loss[1]):
            return False  # the loss still falls beyond its noise: keep the learning rate
        previous, self.lr = self.lr, max(self.s.min_lr, self.lr * self.s.lr_decay)
        for optimizer in self.optim.optim_objs.values():
            for group in optimizer.param_groups:  # each keeps its share of the rate
                group["lr"] = self.lr * group.setdefault("lr_scale", group["lr"] / previous)
        return False

    def _broken(self, step: int) -> bool:
        a, sds = self.guide.whitened_moments()
        if sds.min() < self.s.collapse_ratio:
            self.status = "collapsed"
            self.detail = (
                f"the guide's sd along one direction fell to {float(sds.min()):.3g} "
                f"of the Laplace sd by step {step}"
            )
        elif a.abs().max() > self.s.runaway_sds or sds.max() > self.s.runaway_sds:
            self.status = "ran away"
            self.detail = (
                f"the guide moved {float(a.abs().max()):.3g} Laplace sds away and its "
                f"widest sd is {float(sds.max()):.3g} Laplace sds by step {step}"
            )
        else:
            return False
        return True


def _guide_params(guide, args, kwargs) -> list:
    with poutine.block(), poutine.trace(param_only=True) as tr:
        guide(*args, **kwargs)
    store = pyro.get_param_store()
    return [store._params[name] for name in tr.trace.param_nodes]


def _learning_rates(guide, lr: float):
    r"""Adam's per-parameter arguments: ``lr``, and ``lr`` over :math:`\sqrt D` for the
    off-diagonal :math:`R` of a whitened full-rank guide (see the module doc)."""
    dim = getattr(guide, "latent_dim", 1) if isinstance(guide, AutoWhitenedNormal) else 1
    off_diagonal = 1.0 / math.sqrt(max(dim, 1))

    def arguments(name: str) -> dict:
        scale = off_diagonal if name.split(".")[-1] == "tril" else 1.0
        return {"lr": lr * scale}

    return arguments


def train(
    name,
    model,
    guide,
    args,
    kwargs,
    loss,
    particles,
    settings,
    max_steps,
    progress,
    flow=False,
    deadline=None,
):
    """One training stage through :func:`pyrodiv.fit` with a :class:`_Monitor` (for a flow:
    its learning rate and no convergence stop); it stops at ``deadline`` (a
    ``time.perf_counter`` time) if given."""
    stage = Stage(name, particles=particles)
    params = _guide_params(guide, args, kwargs)
    before = [p.detach().clone() for p in params]
    lr = settings.lr
    if flow:
        reverse = isinstance(loss, pyrodiv.ReverseKL)
        lr = settings.flow_lr if reverse else settings.flow_lr_self_normalized
    optim = pyro.optim.Adam(_learning_rates(guide, lr))
    monitor = _Monitor(params, optim, settings, guide, lr, not flow, deadline)
    began = time.perf_counter()
    try:
        result = pyrodiv.fit(
            model,
            guide,
            *args,
            loss=loss,
            optim=optim,
            num_steps=max_steps,
            progress=progress,
            desc=name,
            callback=monitor,
            compile=_compile_option(loss, model, guide, args, kwargs, deadline),
            **kwargs,
        )
        losses = result.losses
    except (ValueError, RuntimeError, AssertionError) as error:  # nan, Cholesky, a flow
        monitor.status, monitor.detail = "failed", f"it raised {type(error).__name__}: {error}"
        losses = []
    stage.steps = len(losses)
    stage.num_gradient_evaluations = stage.steps * particles
    stage.status = monitor.status
    with torch.no_grad():
        if monitor.status in ("collapsed", "ran away", "failed"):
            for p, value in zip(params, before, strict=True):
                p.copy_(value)
        elif monitor.average is not None:  # Polyak averaging over the last window
            sizes = [p.numel() for p in params]
            for p, value in zip(params, monitor.average.split(sizes), strict=True):
                p.copy_(value.reshape(p.shape))
    stage.seconds = time.perf_counter() - began
    return stage, losses, monitor.detail


#: How much lower a flow's k-hat must be than the Gaussian's, both above 0.7, for the flow to
#: replace it: about the sampling noise of k-hat from 1000 draws (on gp_pois_regr a
#: Jensen-Shannon flow with k-hat 0.86 against 0.88 had sds at 0.18 of the reference's).
KHAT_NOISE = 0.1


def _compile_option(loss, model, guide, args, kwargs, deadline=None) -> str | bool:
    """``pyrodiv.fit``'s ``compile`` for a stage: the compiled path with the torch.jit
    backend where the program lowers (never inductor: its compilation, about 10 s, pays back
    over the full ``max_steps``, but a stage stops at convergence, often within 200 steps),
    else the plain ``SVI`` loop. The flow guide lowers too
    (:class:`~pyrodiv.inference.flow_guide.WhitenedFlowPosterior`); a stage with a
    ``deadline`` keeps the forward graph and autograd (recording the joint graph, seconds for
    a flow, would eat into its time)."""
    if not isinstance(loss, DivergenceLoss):
        return False
    try:
        found = program(loss, model, guide, args, kwargs, "jit", gradient=True)
    except NotLowerable:
        return False
    if deadline is not None:
        found.keep_forward_graph()
    return "jit"


def flow_stage(
    result, model, gaussian, args, kwargs, loss, k, settings, progress, seed=0, deadline=None,
    baseline=None,
):  # fmt: skip
    """Refine the fitted whitened Gaussian with an identity-initialized spline flow
    (:class:`~pyrodiv.inference.flow_guide.AutoWhitenedFlow`) for ``flow_steps`` steps (or
    until ``deadline``). The flow replaces the Gaussian unless the stage failed, or (with
    ``khat_draws``) its PSIS k-hat is above 0.7 and not :data:`KHAT_NOISE` below the
    Gaussian's ``result.khat``; a reverse-KL flow is also kept where its ELBO, reverse KL's
    own objective, is above the Gaussian's ``baseline`` ``(elbo, standard error)`` by two
    standard errors (a mass-covering divergence's flow is not judged by the ELBO, which
    rewards narrowing: on gp_pois_regr a Jensen-Shannon flow with a higher ELBO had an sd
    ratio of 0.2). The flow
    is dropped where the time budget stopped it before ``flow_min_steps`` steps (a few dozen
    steps of a flow can undo the Gaussian's fit: reverse KL's, 46 steps on eight schools, sd
    ratio 0.69 to 0.45), and, in an escalation, where both k-hats are at most 0.7 and the
    flow's moment check is worse than the Gaussian's
    (:attr:`~pyrodiv.inference.approximation.MomentCheck.severity`). ``result.khat`` and
    ``result.moment_check`` become the kept guide's."""
    gaussian.rewhiten()
    flow = AutoWhitenedFlow(model, full_rank=gaussian.full_rank, init_loc_fn=init_to_median)
    flow._setup_prototype(*args, **kwargs)
    flow.set_whitening(gaussian.center, gaussian.factor)
    name = "flow" if deadline is None else "flow (escalation)"
    stage, losses, detail = train(
        name, model, flow, args, kwargs, loss, k, settings, settings.flow_steps, progress, True,
        deadline,
    )  # fmt: skip
    record(result, stage, losses, detail, f"{divergence_name(loss)} (flow)", settings)
    if stage.status in _FAILED:
        return gaussian
    name = divergence_name(loss)
    if stage.status == "time budget" and stage.steps < settings.flow_min_steps:
        return _keep_gaussian(
            result, gaussian, f"{name}: the time budget allowed {stage.steps} flow steps, "
            f"fewer than flow_min_steps = {settings.flow_min_steps}; the Gaussian fit is kept",
        )  # fmt: skip
    gaussian_check, gaussian_khat = result.moment_check, result.khat
    if settings.khat_draws:
        khat, elbo, se = khat_stage(result, model, flow, args, kwargs, settings, seed, "flow")
        gain = elbo - baseline[0] if baseline else math.inf
        noise = 2 * math.hypot(se, baseline[1]) if baseline else 0.0
        own_objective = isinstance(loss, pyrodiv.ReverseKL) and gain > noise
        better = khat <= 0.7 or khat <= gaussian_khat - KHAT_NOISE
        if not (better or own_objective):
            return _keep_gaussian(
                result, gaussian, f"{name}: the flow stage ended with PSIS k-hat = "
                f"{khat:.2f}, above 0.7 and not {KHAT_NOISE} below the Gaussian's "
                f"{gaussian_khat:.2f}, and an ELBO {gain:+.3g} from the Gaussian's (noise "
                f"{noise:.2g}); the Gaussian fit is kept",
                gaussian_check, gaussian_khat,
            )  # fmt: skip
        flow_check = result.moment_check
        usable = max(khat, gaussian_khat) <= 0.7 and gaussian_check is not None
        if deadline is not None and usable and flow_check.severity > gaussian_check.severity:
            return _keep_gaussian(
                result, gaussian, f"{name}: the flow's marginals are further from their "
                f"PSIS-weighted values than the Gaussian's (k-hat {khat:.2f} and "
                f"{gaussian_khat:.2f}); the Gaussian fit is kept",
                gaussian_check, gaussian_khat,
            )  # fmt: skip
        result.khat = khat
    result.guide = flow
    return flow


def _keep_gaussian(result, gaussian, message, check=None, khat=None):
    """Note why the flow stage's guide is dropped, and restore the Gaussian's diagnostics."""
    result.messages.append(message)
    _warn(message)
    if check is not None:
        result.moment_check, result.khat = check, khat
    return gaussian


def khat_stage(result, model, guide, args, kwargs, settings, seed, of="") -> tuple:
    """The PSIS k-hat of ``guide`` and its ELBO with its standard error, from ``khat_draws``
    draws, timed as a stage (``khat``, or ``khat (of)``); the same draws give
    ``result.moment_check`` (:func:`moment_check`)."""
    began = time.perf_counter()
    draws, _ = _guide_draws_seeded(
        model, guide, settings.khat_draws, seed, args, kwargs, vectorize=True
    )
    log_w = draws.log_joint - draws.log_q
    smoothed, khat = arviz_adapter.psis(log_w)
    result.moment_check = moment_check({**draws.latent, **draws.deterministic}, smoothed)
    finite = log_w[torch.isfinite(log_w)]
    elbo = float(finite.mean()) if finite.numel() else -math.inf
    se = float(finite.std() / math.sqrt(finite.numel())) if finite.numel() > 1 else math.inf
    name = f"khat ({of})" if of else "khat"
    result.stages.append(Stage(name, seconds=time.perf_counter() - began))
    return float(khat), elbo, se


def moment_check(values: dict, log_weights: torch.Tensor) -> MomentCheck:
    r"""The guide's marginal means and sds against their importance-weighted values.

    For each scalar variable :math:`x` (every element of every latent and deterministic site,
    constrained) with guide draws :math:`x_s` and self-normalized PSIS weights
    :math:`\tilde w_s`: :math:`\hat\mu = \sum_s \tilde w_s x_s`,
    :math:`\hat\sigma^2 = \sum_s \tilde w_s (x_s - \hat\mu)^2`, the guide's own
    :math:`\bar x` and :math:`s_x`, the sd ratio :math:`s_x / \hat\sigma` and the mean shift
    :math:`|\bar x - \hat\mu| / \hat\sigma`. Where :math:`\hat k \le 0.7` the weighted
    moments estimate the posterior's, so a ratio far from 1 or a large shift says that the
    guide's family does not reach the posterior, even though its k-hat is fine (a guide wider
    than the posterior is a good importance proposal and a poor posterior).

    Example::

        >>> import torch
        >>> x = torch.randn(4000, dtype=torch.float64)
        >>> check = moment_check({"x": 2 * x}, -1.5 * x.pow(2))   # log p - log q at 2x
        >>> round(check.sd_ratio_max, 1)     # q = N(0, 4) against p = N(0, 1): about 2
        2.0
    """
    weights = torch.softmax(log_weights, 0)
    worst = MomentCheck()
    for name, value in values.items():
        x = value.reshape(value.shape[0], -1).to(weights.dtype)
        finite = torch.isfinite(x).all(0)
        if not finite.any():
            continue
        x = x[:, finite]
        mean = (weights[:, None] * x).sum(0)
        sd = ((weights[:, None] * (x - mean).pow(2)).sum(0)).sqrt()
        own_mean, own_sd = x.mean(0), x.std(0)
        usable = sd > 0
        ratio = own_sd[usable] / sd[usable]
        shift = (own_mean[usable] - mean[usable]).abs() / sd[usable]
        if ratio.numel():
            worst = worst.merge(name, ratio, shift)
    return worst


def nuts_seconds(model, guide, args, kwargs, start) -> float:
    r"""A rough wall time of NUTS (one chain, 1000 warmup + 1000 draws) on this posterior:
    :math:`2000 \max(3, \sqrt\kappa)\, t_g`, with :math:`t_g` the time of one gradient of
    the log density at the mode and :math:`\kappa` the condition number of the Laplace
    correlation matrix (with a diagonal mass matrix, the leapfrog step is set by the
    narrowest direction and the trajectory by the widest, :math:`\sqrt\kappa` steps apart).
    On the twelve posteriordb posteriors it is within a factor of 2.5 of the measured time,
    mostly below it."""
    covariance = start.scale_tril @ start.scale_tril.T
    sds = covariance.diagonal().sqrt()
    eigenvalues = torch.linalg.eigvalsh(covariance / sds[:, None] / sds[None])
    kappa = float(eigenvalues.max() / eigenvalues.min().clamp(min=1e-300))
    log_density = log_density_fn(model, guide, args, kwargs)
    z = start.mode.detach().clone().requires_grad_(True)
    torch.autograd.grad(log_density(z), z)
    began, count = time.perf_counter(), 10
    for _ in range(count):
        torch.autograd.grad(log_density(z), z)
    gradient_seconds = (time.perf_counter() - began) / count
    return 2000 * max(3.0, math.sqrt(kappa)) * gradient_seconds


def rounds(name, result, model, guide, args, kwargs, loss, k, settings, steps, progress, label):
    """Train in rounds; a whitened guide is re-whitened at its fit after each round, and
    another round runs while the last one moved it by more than ``rewhiten_above``. A round
    that fails resets the guide to its state before the first round; returns whether one
    failed."""
    whitened = isinstance(guide, AutoWhitenedNormal)
    before = (guide.center.clone(), guide.factor.clone()) if whitened else None
    for round_ in range(settings.rounds):
        label_round = name if round_ == 0 else f"{name} (round {round_ + 1})"
        stage, losses, detail = train(
            label_round, model, guide, args, kwargs, loss, k, settings, steps, progress
        )
        if stage.status in _FAILED and whitened and round_ > 0:
            guide.set_whitening(*before)  # the parameters were reset to 0 by train
        record(result, stage, losses, detail, label, settings)
        if stage.status in _FAILED:
            return True
        if not whitened or guide.rewhiten() < settings.rewhiten_above:
            return False
    return False


def record(result, stage, losses, detail, divergence, settings) -> None:
    result.stages.append(stage)
    result.losses.extend(losses)
    if stage.status in ("collapsed", "ran away", "failed"):
        message = (
            f"approximate: {divergence} {stage.status} ({detail}); the guide was reset to its "
            "state before this stage. Try more particles (target_ess=, num_particles=), a "
            "smaller lr, reverse_kl or forward_kl, or check the k-hat of "
            "to_inference_data(resample='psis')."
        )
        result.messages.append(message)
        if settings.on_failure == "raise":
            raise RuntimeError(message)
        _warn(message)
