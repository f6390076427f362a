r"""``approximate``: fit a guide to a Pyro posterior with any divergence, so that the divergence,
not the optimizer, decides the answer.

The pipeline (each step timed and counted in the ``stages`` of the
:class:`~pyrodiv.inference.approximation.Approximation`):

1. **Warm start** (:func:`pyrodiv.inference.warm_start.laplace`): the mode :math:`m` of the
   unconstrained log density :math:`\log\pi(z)` by L-BFGS and Newton steps, and the Laplace
   approximation :math:`N(m, LL^\top)`, :math:`LL^\top = (-\nabla^2\log\pi(m))^{-1}`.
2. **Affine preconditioning**: the guide is :math:`N(m + La, (LB)(LB)^\top)`
   (:class:`~pyrodiv.inference.warm_start.AutoWhitenedNormal`), trained in the whitened coordinates
   :math:`u = L^{-1}(z - m)`, where the posterior is near :math:`N(0, I)` whatever the units
   of the model. It starts at the Laplace approximation (:math:`a = 0`, :math:`B = I`).
3. **Reverse-KL stage**: the ELBO, whose gradient has no self-normalized weights, corrects the
   Laplace approximation for skewness and curvature away from the mode, before a
   self-normalized divergence; skipped when the warm start's importance weights already have
   an ESS fraction of ``skip_reverse_kl_ess`` or more (and then run after the divergence if
   that fails, so that the guide returned with the warning is the reverse-KL fit).
4. **The chosen divergence**, with :math:`K` particles set from the effective sample size of
   the self-normalized weights of the current guide,
   :math:`K = \lceil \mathrm{ESS}_{target} / (\mathrm{ESS}/S) \rceil` (rounded up to a power of
   2, clipped), since the self-normalized estimates (forward KL, Jensen-Shannon, the
   f-divergences) see :math:`P` only through :math:`\mathrm{ESS}` of their :math:`K` weights.
   Both training stages use Adam with a learning rate decayed by a factor per window of steps,
   stop when the window means of the parameters move less than ``tolerance`` (posterior-sd
   units in the whitened coordinates), and return the last window's mean (Polyak averaging);
   the off-diagonal of a full-rank guide is trained at ``lr`` over :math:`\sqrt D`
   (:mod:`~pyrodiv.inference.approximate_stages`).
5. **Checks**: a guide whose sd along some direction falls below ``collapse_ratio`` of the
   Laplace sd, whose mean runs more than ``runaway_sds`` Laplace sds away, or whose loss is
   not finite, is reset to the previous stage's fit with an :class:`ApproximationWarning`
   (an error with ``on_failure="raise"``) naming the divergence and what to try.
6. **Diagnostics**: the PSIS :math:`\hat k` of the fitted guide (:func:`pyrodiv.psis_khat`'s
   convention; above 0.7 a warning); where :math:`\hat k \le 0.7`, the guide's marginal
   means and sds against their PSIS-weighted values
   (:func:`~pyrodiv.inference.approximate_stages.moment_check`; a warning when an sd ratio
   leaves :math:`[1/f, f]`, ``f`` = ``moment_sd_factor``, or a mean moves more than
   ``moment_mean_shift`` weighted sds: a guide wider than the posterior has a good k-hat
   and wrong marginals); and PSIS importance resampling in
   :meth:`Approximation.to_inference_data`.
7. **Escalation** (``guide="auto"``): where that k-hat is above ``escalate_khat``, or the
   moments disagree, a spline
   flow refines the Gaussian until the fit has taken ``escalate_budget`` of an estimate of
   NUTS's time (:func:`~pyrodiv.inference.approximate_stages.nuts_seconds`), and is kept
   unless its k-hat is worse (:func:`~pyrodiv.inference.approximate_stages.flow_stage`).

Example::

    >>> import pyrodiv
    >>> fit = pyrodiv.approximate(model, x, divergence="jensen_shannon", model_kwargs={"y": y})
    >>> fit.khat, fit.seconds, fit.num_gradient_evaluations                  # doctest: +SKIP
    >>> idata = fit.to_inference_data(num_samples=1000, resample="psis")     # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
import warnings

import pyro.infer.autoguide as autoguides
import pyro.poutine as poutine
import torch
from pyro.infer.autoguide.initialization import init_to_median, init_to_value

import pyrodiv

from ..divergences.traces import guess_max_plate_nesting
from ..validation import seeded
from .approximate_stages import divergence_name, flow_stage, khat_stage, nuts_seconds, rounds
from .approximation import ApproximateSettings, Approximation, ApproximationWarning, Stage, _warn
from .inference_data import guide_log_weights
from .warm_start import AutoWhitenedNormal, laplace

__all__ = ["Approximation", "ApproximateSettings", "ApproximationWarning", "approximate"]

#: Autoguide names trained as whitened Gaussians (same family, preconditioned).
WHITENED = {"AutoMultivariateNormal": True, "AutoNormal": False, "AutoDiagonalNormal": False}


def _make_guide(model, guide, settings, args, kwargs):
    init_loc_fn = (
        init_to_value(values=settings.init_values, fallback=init_to_median)
        if settings.init_values
        else init_to_median
    )
    if guide in ("auto", "flow") or guide in WHITENED:
        full_rank = WHITENED.get(guide, True)
        made = AutoWhitenedNormal(model, full_rank=full_rank, init_loc_fn=init_loc_fn)
        made._setup_prototype(*args, **kwargs)
        if guide == "auto" and made.latent_dim > settings.full_rank_max_dim:
            made = AutoWhitenedNormal(model, full_rank=False, init_loc_fn=init_loc_fn)
            made._setup_prototype(*args, **kwargs)
        return made
    if isinstance(guide, str):
        if not hasattr(autoguides, guide) or not guide.startswith("Auto"):
            raise ValueError(
                f"unknown guide {guide!r}: 'auto', an autoguide class name "
                f"({', '.join(WHITENED)}, ...) or a guide object"
            )
        return getattr(autoguides, guide)
    if not callable(guide):
        raise TypeError(f"guide must be a name or a callable guide, got {type(guide).__name__}")
    return guide


def _ess_particles(model, guide, args, kwargs, settings, seed, power) -> tuple[int, float]:
    r"""Particles for ``target_ess``, from the ESS fraction of the weights :math:`w^\alpha`
    (:math:`\alpha` = ``power``: 1 for forward KL and Jensen-Shannon, the power of a
    power-family f-divergence, 2 for Pearson, whose gradient weighs particles by
    :math:`w^2 / \sum w^2`)."""
    log_w = guide_log_weights(
        model, guide, *args, num_samples=settings.probe_draws, seed=seed, **kwargs
    )
    log_w = power * log_w[torch.isfinite(log_w)]
    if log_w.numel() == 0:
        return settings.max_particles, 0.0
    w = (log_w - log_w.max()).exp()
    fraction = float(w.sum() ** 2 / (w.pow(2).sum() * settings.probe_draws))
    wanted = settings.target_ess / max(fraction, 1e-12)
    particles = 2 ** math.ceil(math.log2(max(wanted, 1.0)))
    return int(min(settings.max_particles, max(settings.min_particles, particles))), fraction


def approximate(
    model,
    *args,
    divergence="forward_kl",
    guide="auto",
    seed: int = 0,
    progress: bool = True,
    model_kwargs: dict | None = None,
    settings: ApproximateSettings | None = None,
    **options,
) -> Approximation:
    r"""Fit a guide to ``model``'s posterior by minimizing ``divergence`` (see the module doc
    for the pipeline).

    :param model: a Pyro model with continuous latent sites; ``*args`` and ``model_kwargs``
        are its arguments.
    :param divergence: a name :func:`pyrodiv.get_loss` knows (``"forward_kl"``,
        ``"reverse_kl"``, ``"jensen_shannon"``, ``"squared_hellinger"``, ``"pearson"``, ...)
        or a loss object (used as given, with its own particles).
    :param guide: ``"auto"`` (a whitened full-rank Gaussian, diagonal above
        ``full_rank_max_dim`` latent dimensions), ``"AutoMultivariateNormal"``,
        ``"AutoNormal"`` / ``"AutoDiagonalNormal"`` (the same families, whitened), ``"flow"``
        (the ``"auto"`` fit, then refined by identity-initialized spline layers for
        ``flow_steps``: :class:`~pyrodiv.inference.flow_guide.AutoWhitenedFlow`), another
        autoguide class name (started at the Laplace mode, not whitened), or a guide object
        (trained as given).
    :param seed: seeds every stage.
    :param progress: progress bars.
    :param settings: an :class:`ApproximateSettings`; its fields may also be given as
        keywords (``max_steps=500``).
    :returns: an :class:`Approximation`.
    """
    settings = (settings or ApproximateSettings()).replace(**options)
    kwargs = dict(model_kwargs or {})
    if isinstance(divergence, str):
        pyrodiv.get_loss(divergence)  # unknown names fail before any work
        name = divergence
    else:
        name = divergence_name(divergence)
    began = time.perf_counter()
    with seeded(seed):
        made = _make_guide(model, guide, settings, args, kwargs)
        result = Approximation(model, made, args, kwargs, name)
        start = None
        if isinstance(made, AutoWhitenedNormal) or isinstance(made, type):
            helper = made if isinstance(made, AutoWhitenedNormal) else AutoWhitenedNormal(model)
            if settings.warm_start or isinstance(made, type):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    start = laplace(
                        model,
                        helper,
                        args,
                        kwargs,
                        num_starts=settings.num_starts,
                        seed=seed,
                        elbo=_elbo_scorer(model, helper, args, kwargs, settings, seed),
                        path_points=settings.path_points,
                    )
                result.laplace = start
                result.stages.append(
                    Stage(
                        "laplace",
                        num_gradient_evaluations=start.num_gradient_evaluations,
                        seconds=start.seconds,
                    )
                )
                helper.set_whitening(start.mode, start.scale_tril)
                if len(start.optima) > 1:
                    _several_modes(result, start.optima, settings.num_starts, name)
            if isinstance(made, type):
                values = {
                    site["name"]: value.detach()
                    for site, value in _constrained(helper, start.mode)
                }
                made = made(model, init_loc_fn=init_to_value(values=values))
                result.guide = made
        prototype = poutine.trace(model).get_trace(*args, **kwargs)
        nesting = guess_max_plate_nesting(prototype)
        loss_options = {"vectorize_particles": True, "max_plate_nesting": nesting}
        is_reverse = name == "reverse_kl" or isinstance(divergence, pyrodiv.ReverseKL)
        run_reverse = not is_reverse and settings.reverse_kl_steps > 0
        if run_reverse and isinstance(made, AutoWhitenedNormal) and settings.skip_reverse_kl_ess:
            _, fraction = _ess_particles(model, made, args, kwargs, settings, seed, 1.0)
            if fraction >= settings.skip_reverse_kl_ess:
                run_reverse = False
                result.stages.append(Stage("reverse_kl stage", status="skipped"))
        if run_reverse:
            _reverse_kl_stage(result, model, made, args, kwargs, settings, loss_options, progress)
        if isinstance(divergence, str):
            if is_reverse:
                k = settings.num_particles or settings.reverse_kl_particles
            elif settings.num_particles:
                k = settings.num_particles
            else:
                power = getattr(
                    getattr(pyrodiv.get_loss(divergence), "generator", None), "power", None
                )
                k, _ = _ess_particles(
                    model, made, args, kwargs, settings, seed, max(1.0, power or 1.0)
                )
            loss = pyrodiv.get_loss(divergence, num_particles=k, **loss_options)
        else:
            loss, k = divergence, divergence.num_particles
        failed = rounds(
            name, result, model, made, args, kwargs, loss, k, settings, settings.max_steps,
            progress, divergence_name(loss),
        )  # fmt: skip
        skipped = any(s.status == "skipped" for s in result.stages)
        if failed and skipped and isinstance(made, AutoWhitenedNormal):
            # the guide is back at the warm start: give it the reverse-KL fit instead
            _reverse_kl_stage(
                result, model, made, args, kwargs, settings, loss_options, progress, "fallback"
            )
        baseline = None
        if settings.khat_draws:
            result.khat, *baseline = khat_stage(result, model, made, args, kwargs, settings, seed)
        if guide == "flow" or _escalates(guide, made, result, settings):
            deadline = None
            if guide != "flow":
                budget = settings.escalate_budget * nuts_seconds(
                    model, made, args, kwargs, result.laplace
                )
                deadline = began + budget
            if deadline is None or deadline - time.perf_counter() > 1.0:  # else too short
                made = flow_stage(
                    result, model, made, args, kwargs, loss, k, settings, progress, seed,
                    deadline, baseline,
                )  # fmt: skip
        if not result.khat <= 0.7 and settings.khat_draws:
            message = (
                f"{name}: the fitted guide has PSIS k-hat = {result.khat:.2f} > 0.7; "
                "its draws may miss part of the posterior (try another divergence, "
                "a richer guide, or check to_inference_data(resample='psis'))"
            )
            result.messages.append(message)
            _warn(message)
        elif _moments_disagree(result, settings):
            message = (
                f"{name}: the fitted guide's marginals disagree with their PSIS-weighted "
                f"values (k-hat = {result.khat:.2f} <= 0.7, so the weights can be trusted): "
                f"{_moments_disagree(result, settings)}. The guide's family does not reach "
                "this posterior under this divergence: use to_inference_data(resample='psis') "
                "(resample='auto' does where this check disagrees), or a richer guide "
                "(guide='flow')"
            )
            result.messages.append(message)
            result.recommended_resample = "psis"
            _warn(message)
    result.seconds = time.perf_counter() - began
    return result


def _reverse_kl_stage(
    result, model, guide, args, kwargs, settings, loss_options, progress, role="stage"
):
    """The reverse-KL stage (``role`` "stage": before the divergence; "fallback": after the
    divergence failed, when the stage had been skipped)."""
    k = settings.reverse_kl_particles
    loss = pyrodiv.ReverseKL(num_particles=k, **loss_options)
    label = "reverse KL (the warm-up stage)" if role == "stage" else "reverse KL (the fallback)"
    rounds(
        f"reverse_kl {role}", result, model, guide, args, kwargs, loss, k, settings,
        settings.reverse_kl_steps, progress, label,
    )  # fmt: skip


def _escalates(guide, made, result, settings) -> bool:
    """Whether ``guide="auto"`` escalates to a flow: its Gaussian fit has a k-hat above
    ``escalate_khat``, or marginal moments that disagree with their PSIS-weighted values
    (either way the Gaussian family does not reach the posterior), and a Laplace start (for
    the time budget)."""
    return (
        guide == "auto"
        and settings.escalate_khat is not None
        and isinstance(made, AutoWhitenedNormal)
        and result.laplace is not None
        and (result.khat > settings.escalate_khat or bool(_moments_disagree(result, settings)))
    )


def _moments_disagree(result, settings) -> str:
    """The moment check's sentence
    (:meth:`~pyrodiv.inference.approximation.MomentCheck.disagrees`), ``""`` when it agrees
    or was not run."""
    if result.moment_check is None or not settings.moment_sd_factor:
        return ""
    return result.moment_check.disagrees(settings.moment_sd_factor, settings.moment_mean_shift)


def _several_modes(result, optima, num_starts, name) -> None:
    """Warn that the mode search ended at several local maxima: a fit around one of them may
    miss the mass of the others, and k-hat, which compares Q with P where Q has mass, cannot
    see that."""
    values = ", ".join(f"{v:.1f}" for v in optima[:4])
    message = (
        f"{name}: the mode search from {num_starts} starts ended at {len(optima)} different "
        f"local maxima of the log density ({values}); the fit starts from the highest. A "
        "posterior with several modes can hold mass a single fit misses, and k-hat cannot "
        "tell: compare with NUTS (pyrodiv.run_nuts), or fit from another start "
        "(init_values=, num_starts=)"
    )
    result.messages.append(message)
    _warn(message)


def _elbo_scorer(model, helper, args, kwargs, settings, seed):
    """``(center, scale_tril) -> (ELBO estimate, draws)`` of the whitened Gaussian there."""
    if not settings.path_points:
        return None

    def score(center, scale_tril):
        helper.set_whitening(center, scale_tril)
        try:
            log_w = guide_log_weights(
                model, helper, *args, num_samples=settings.path_draws, seed=seed, **kwargs
            )
        except (ValueError, RuntimeError):
            return -math.inf, settings.path_draws
        value = float(log_w.mean())
        return (value if math.isfinite(value) else -math.inf), settings.path_draws

    return score


def _constrained(guide: AutoWhitenedNormal, z: torch.Tensor):
    from pyro.distributions.transforms import biject_to

    for site, unconstrained in guide._unpack_latent(z):
        yield site, biject_to(site["fn"].support)(unconstrained)
