"""The result of :func:`pyrodiv.approximate`: its options, its stages and the fitted
approximation, with PSIS importance resampling of its draws.

Example::

    >>> settings = ApproximateSettings(max_steps=500)
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field

import pyro.poutine as poutine
import torch

from ..validation import seeded
from . import arviz_adapter
from .inference_data import guide_to_inference_data, samples_to_inference_data
from .warm_start import LaplaceStart


class ApproximationWarning(UserWarning):
    """A fit that collapsed, ran away or has an unreliable k-hat."""


@dataclass(frozen=True)
class ApproximateSettings:
    r"""Budgets and rules of :func:`~pyrodiv.inference.approximate.approximate` (all automatic by
    default).

    :param max_steps: the most SVI steps of each training stage.
    :param reverse_kl_steps: the most steps of the reverse-KL stage (0: no such stage).
    :param window: steps per window (convergence check, learning-rate decay, averaging).
    :param tolerance: stop when the window means of the parameters move less than this (in
        whitened units: posterior sds for the mean).
    :param lr: Adam's initial learning rate; ``lr_decay`` multiplies it after each window
        whose mean loss did not fall below the previous window's by more than ``drift``
        standard errors (once noise, not travel, dominates), down to ``min_lr``.
    :param target_ess: effective sample size wanted per step of a self-normalized divergence;
        the particle count is ``target_ess`` over the ESS fraction of ``probe_draws`` draws,
        within ``[min_particles, max_particles]``; ``num_particles`` fixes it instead.
    :param reverse_kl_particles: particles of the reverse-KL stage and of a reverse-KL fit.
    :param khat_draws: draws for the final k-hat (0: skip it).
    :param collapse_ratio: the collapse limit (a whitened guide's sd over the warm start's).
    :param runaway_sds: the runaway limit (warm-start sds travelled by the mean).
    :param on_failure: ``"warn"`` (reset to the previous stage and warn) or ``"raise"``.
    :param warm_start: run the Laplace warm start (else: prior medians, unit scales).
    :param full_rank_max_dim: the largest dimension given a full-rank guide by ``"auto"``.
    :param init_values: ``{site: value}`` used as the first start of the mode search.
    :param skip_reverse_kl_ess: skip the reverse-KL stage when the warm start's importance
        weights already have an ESS fraction at least this (0: never skip).
    :param rounds: each training stage runs up to ``rounds`` rounds; after a
        round a whitened guide becomes the new whitening (re-preconditioning), and another
        round runs if that round moved its mean or log sds by more than ``rewhiten_above``.
    :param rewhiten_above: see ``rounds``.
    :param num_starts: starts of the mode search (the first, then uniform draws on [-2, 2]).
    :param path_points: Gaussians along the L-BFGS path that compete with the Laplace
        approximation (0: the mode only).
    :param path_draws: draws of the ELBO that scores them.
    :param flow_steps: steps of the flow stage of ``guide="flow"`` (its whole budget: a flow's
        many parameters have no convergence rule in posterior sds), at learning rate
        ``flow_lr`` for reverse KL and ``flow_lr_self_normalized`` for the self-normalized
        divergences, decayed as above (forward KL's flow ran away on eight schools at 0.02: W1
        5.9 reference sds, k-hat 2.1 after 300 steps; at 0.01 and 0.005 it improved the fit).
    :param escalate_khat: ``guide="auto"`` escalates to the flow stage when the Gaussian
        fit's PSIS k-hat is above this (``None``: never), and keeps the flow unless its k-hat
        is worse; the flow stage then stops at ``flow_steps`` or when the whole fit has taken
        ``escalate_budget`` times a rough estimate of NUTS's time on the posterior
        (:func:`~pyrodiv.inference.approximate_stages.nuts_seconds`), whichever comes first.
    :param escalate_budget: see ``escalate_khat``.
    :param flow_min_steps: an escalation's flow stopped by the time budget before this many
        steps is dropped (the Gaussian fit is kept).
    :param moment_sd_factor: the moment check (where k-hat <= 0.7) warns, and ``"auto"``
        escalates, when the guide's sd of some scalar variable is outside
        ``[1/moment_sd_factor, moment_sd_factor]`` times its PSIS-weighted sd (``None``: no
        check) ...
    :param moment_mean_shift: ... or its mean is more than this many weighted sds from the
        weighted mean. On the twelve posteriordb posteriors the weighted sds track the
        reference's within 0.1 where k-hat <= 0.7.
    """

    max_steps: int = 2000
    reverse_kl_steps: int = 1000
    window: int = 25
    tolerance: float = 0.05
    lr: float = 0.05
    drift: float = 2.0
    lr_decay: float = 0.7
    min_lr: float = 0.002
    target_ess: float = 32.0
    min_particles: int = 16
    max_particles: int = 512
    num_particles: int | None = None
    probe_draws: int = 256
    reverse_kl_particles: int = 16
    khat_draws: int = 1000
    collapse_ratio: float = 0.05
    runaway_sds: float = 25.0
    on_failure: str = "warn"
    warm_start: bool = True
    full_rank_max_dim: int = 300
    init_values: dict | None = None
    num_starts: int = 5
    rounds: int = 3
    skip_reverse_kl_ess: float = 0.5
    rewhiten_above: float = 0.5
    path_points: int = 6
    path_draws: int = 64
    flow_steps: int = 2000
    flow_lr: float = 0.02
    flow_lr_self_normalized: float = 0.005
    escalate_khat: float | None = 0.7
    escalate_budget: float = 0.25
    flow_min_steps: int = 200
    moment_sd_factor: float | None = 1.25
    moment_mean_shift: float = 0.25

    def __post_init__(self):
        if self.on_failure not in ("warn", "raise"):
            raise ValueError(f"on_failure must be 'warn' or 'raise', got {self.on_failure!r}")
        names = ("max_steps", "window", "min_particles", "max_particles", "probe_draws")
        for name in (*names, "flow_steps", "flow_min_steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        rates = (
            self.lr > 0
            and self.flow_lr > 0
            and self.flow_lr_self_normalized > 0
            and 0 < self.lr_decay <= 1
        )
        if not (rates and self.tolerance > 0):
            raise ValueError("need lr > 0, flow_lr > 0, 0 < lr_decay <= 1 and tolerance > 0")

    def replace(self, **changes) -> ApproximateSettings:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            known = ", ".join(f.name for f in dataclasses.fields(self))
            raise TypeError(f"approximate: unknown options {sorted(unknown)}; known: {known}")
        return dataclasses.replace(self, **changes)


@dataclass
class Stage:
    """One measured step of the pipeline: its name, SVI steps, particles per step, gradient
    evaluations of :math:`\\log p` (a step of K particles counts K), seconds, and how it
    ended (``"converged"``, ``"max_steps"``, ``"collapsed"``, ``"ran away"``, ...)."""

    name: str
    steps: int = 0
    particles: int = 0
    num_gradient_evaluations: int = 0
    seconds: float = 0.0
    status: str = "done"


@dataclass
class MomentCheck:
    """The worst disagreement between a guide's marginal moments and their PSIS-weighted
    values (:func:`~pyrodiv.inference.approximate_stages.moment_check`): the smallest and
    largest sd ratio (guide over weighted), the largest mean shift (in weighted sds), and the
    site of each."""

    sd_ratio_min: float = math.inf
    sd_ratio_max: float = -math.inf
    mean_shift_max: float = 0.0
    sites: dict = field(default_factory=dict)

    def merge(self, name: str, ratio: torch.Tensor, shift: torch.Tensor) -> MomentCheck:
        low, high, far = float(ratio.min()), float(ratio.max()), float(shift.max())
        sites = dict(self.sites)
        if low < self.sd_ratio_min:
            sites["sd_ratio_min"] = name
        if high > self.sd_ratio_max:
            sites["sd_ratio_max"] = name
        if far > self.mean_shift_max:
            sites["mean_shift_max"] = name
        return MomentCheck(
            min(low, self.sd_ratio_min), max(high, self.sd_ratio_max),
            max(far, self.mean_shift_max), sites,
        )  # fmt: skip

    @property
    def severity(self) -> float:
        r"""The worst disagreement as one number: the largest of :math:`|\log r|` over the sd
        ratios :math:`r` and the mean shift (in weighted sds)."""
        if not self.sites:  # nothing was compared
            return 0.0
        return max(math.log(self.sd_ratio_max), -math.log(self.sd_ratio_min), self.mean_shift_max)

    def disagrees(self, sd_factor: float, mean_shift: float) -> str:
        """A sentence naming the worst disagreement beyond ``sd_factor`` (an sd ratio outside
        ``[1/sd_factor, sd_factor]``) or ``mean_shift`` weighted sds; ``""`` if none."""
        found = []
        if self.sd_ratio_max > sd_factor:
            found.append(
                f"an sd {self.sd_ratio_max:.2f}x its weighted value "
                f"(site {self.sites['sd_ratio_max']!r})"
            )
        if self.sd_ratio_min < 1 / sd_factor:
            found.append(
                f"an sd {self.sd_ratio_min:.2f}x its weighted value "
                f"(site {self.sites['sd_ratio_min']!r})"
            )
        if self.mean_shift_max > mean_shift:
            found.append(
                f"a mean {self.mean_shift_max:.2f} weighted sds from its weighted value "
                f"(site {self.sites['mean_shift_max']!r})"
            )
        return "; ".join(found)


@dataclass
class Approximation:
    """The outcome of :func:`~pyrodiv.inference.approximate.approximate`.

    :param guide: the fitted guide.
    :param divergence: the divergence's name.
    :param losses: the loss of every SVI step, all stages in order.
    :param stages: one :class:`~pyrodiv.inference.approximation.Stage` per step of the pipeline.
    :param seconds: wall time of the whole fit (k-hat included).
    :param khat: the PSIS k-hat of the fitted guide (NaN if not computed).
    :param laplace: the warm start (``None`` if skipped).
    :param messages: the warnings given.
    :param recommended_resample: ``"psis"`` where k-hat is at most 0.7 and the moment check
        disagrees (the weights are usable and the guide's marginals are not the
        posterior's), else ``None``: what ``to_inference_data(resample="auto")`` uses.
    :param moment_check: the guide's marginal moments against their PSIS-weighted values
        (a :class:`~pyrodiv.inference.approximation.MomentCheck`; ``None`` if k-hat was
        not computed).
    """

    model: object
    guide: object
    args: tuple
    kwargs: dict
    divergence: str
    losses: list = field(default_factory=list)
    stages: list = field(default_factory=list)
    seconds: float = 0.0
    khat: float = math.nan
    laplace: LaplaceStart | None = None
    messages: list = field(default_factory=list)
    moment_check: MomentCheck | None = None
    recommended_resample: str | None = None

    @property
    def num_gradient_evaluations(self) -> int:
        return sum(stage.num_gradient_evaluations for stage in self.stages)

    def to_inference_data(self, num_samples=1000, resample=None, seed=0, oversample=2):
        r"""``num_samples`` draws of the guide as InferenceData
        (:func:`pyrodiv.guide_to_inference_data`), or with ``resample="psis"``, draws
        resampled (with replacement) from ``oversample * num_samples`` guide draws by their
        Pareto-smoothed importance weights :math:`\tilde w_s \propto p(x, z_s)/q(z_s)`, which
        corrects the guide towards the posterior when :math:`\hat k \le 0.7`. Warns when
        :math:`\hat k > 0.7` (the resampled draws are then not to be trusted either); the
        k-hat is in ``idata.attrs["khat"]``. ``resample="auto"`` resamples where the
        diagnostics recommend it (``recommended_resample``), and draws from the guide
        otherwise."""
        if resample == "auto":
            resample = self.recommended_resample
        if resample is None:
            return guide_to_inference_data(
                self.model,
                self.guide,
                *self.args,
                num_samples=num_samples,
                seed=seed,
                **self.kwargs,
            )
        if resample != "psis":
            raise ValueError(f"resample must be None, 'psis' or 'auto', got {resample!r}")
        proposals = guide_to_inference_data(
            self.model,
            self.guide,
            *self.args,
            num_samples=oversample * num_samples,
            seed=seed,
            **self.kwargs,
        )
        log_w = arviz_adapter.get_draws(proposals, "log_weight", "sample_stats").reshape(-1)
        smoothed, khat = arviz_adapter.psis(log_w)
        if khat > 0.7:
            _warn(
                f"PSIS resampling of the {self.divergence} fit: k-hat = {khat:.2f} > 0.7, "
                "the importance weights are unreliable and so are the resampled draws"
            )
        with seeded(seed):
            index = torch.multinomial(smoothed.exp(), num_samples, replacement=True)
        latent = [n for n in self.guide_sites() if n in arviz_adapter.var_names(proposals)]
        draws = {
            n: arviz_adapter.get_draws(proposals, n).flatten(0, 1)[index][None] for n in latent
        }
        attrs = {"source": "guide, PSIS resampled", "khat": khat, "divergence": self.divergence}
        return samples_to_inference_data(self.model, draws, *self.args, attrs=attrs, **self.kwargs)

    def guide_sites(self) -> list[str]:
        """The latent sites the guide samples."""
        with poutine.block(), torch.no_grad():
            trace = poutine.trace(self.guide).get_trace(*self.args, **self.kwargs)
        return [
            n
            for n, s in trace.nodes.items()
            if s["type"] == "sample" and not s["infer"].get("is_auxiliary")
        ]


_FAILED = ("collapsed", "ran away", "failed")


def _warn(message: str) -> None:
    warnings.warn(message, ApproximationWarning, stacklevel=3)
