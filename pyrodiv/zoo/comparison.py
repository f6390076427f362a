r"""One zoo posterior, several divergences, one reference: fit, compare, write tables and figures.

:func:`run_zoo_comparison` is the everyday loop on a posteriordb model of :mod:`pyrodiv.zoo`:

1. for each loss name (``"reverse_kl"``, ``"forward_kl"``, ``"jensen_shannon"``,
   ``"squared_hellinger"``, any name of :func:`pyrodiv.divergences.losses.get_loss`), fit an
   autoguide (``AutoNormal`` by default) with :func:`pyrodiv.inference.fit.fit` and Adam with
   a learning-rate decay, :math:`\mathrm{lr}_t = \mathrm{lr}\cdot\rho^{t/T}` from ``lr``
   down to ``lr * lr_decay``, or with :func:`pyrodiv.approximate` (``method="approximate"``);
   the options are one :class:`ComparisonSettings`;
2. draw from each fitted guide with :func:`pyrodiv.guide_to_inference_data`, which also gives
   the importance log weights :math:`\log p(x, z) - \log q(z)`, hence the PSIS :math:`\hat k`;
3. take as reference either a NUTS run (:func:`pyrodiv.run_nuts`, ``nuts=True``) or the
   posteriordb gold-standard draws; the ``reference`` column of the tables says which;
4. compare every method with :func:`pyrodiv.compare_posteriors` (per scalar variable: mean
   error and W1 in reference-sd units, sd ratio, :math:`\hat k`, wall time) and summarize per
   method (:func:`summarize_by_method`);
5. write the tables, netCDF files and figures to ``out``
   (:mod:`pyrodiv.zoo.comparison_files`).

Everything runs in float64 under fixed seeds: the same arguments give the same tables.

Example::

    >>> result = run_zoo_comparison("eight_schools", ["reverse_kl", "forward_kl"],
    ...                             nuts=True, out="out/compare")         # doctest: +SKIP
    >>> result.summary[["method", "reference", "mean_error_max", "khat"]]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyro
import torch
from pyro.infer import autoguide

from ..divergences.generators import GENERATOR_NAMES
from ..divergences.losses import LOSSES, get_loss
from ..inference.baselines import run_nuts
from ..inference.comparison import compare_posteriors
from ..inference.fit import FitResult, fit
from ..inference.inference_data import guide_to_inference_data, samples_to_inference_data
from ..validation import check_int
from . import ZOO, get_entry
from .comparison_files import summary_markdown, write_comparison

__all__ = [
    "DEFAULT_LOSSES",
    "GUIDES",
    "ComparisonSettings",
    "ZooComparison",
    "check_loss_names",
    "resolve_model",
    "run_zoo_comparison",
    "summarize_by_method",
    "summary_markdown",
]

#: Four divergences with four behaviours: mode-seeking, mass-covering, bounded, power family.
DEFAULT_LOSSES = ("reverse_kl", "forward_kl", "jensen_shannon", "squared_hellinger")
#: Autoguides selectable by name (``"auto"`` and ``"flow"``: ``method="approximate"`` only).
GUIDES = (
    "AutoNormal",
    "AutoDiagonalNormal",
    "AutoMultivariateNormal",
    "AutoLowRankMultivariateNormal",
    "auto",
    "flow",
)
#: Reference draws kept per chain of the posteriordb reference (10 chains of 1000 stored).
REFERENCE_DRAWS_PER_CHAIN = 400


@dataclass(frozen=True)
class ComparisonSettings:
    r"""The options of :func:`run_zoo_comparison`, checked when made.

    :param nuts: also run NUTS (``nuts_chains`` chains of ``nuts_warmup`` + ``nuts_draws``,
        one after another unless ``nuts_chain_method="parallel"``, which needs a script
        guarded by ``if __name__ == "__main__":``; see :func:`pyrodiv.run_nuts`).
    :param reference: ``"nuts"``, ``"posteriordb"`` or ``"auto"`` (NUTS when it is run, else
        the posteriordb draws). The other one, when available, is compared like a method.
    :param method: ``"svi"`` (:func:`pyrodiv.fit` with the settings below) or
        ``"approximate"`` (:func:`pyrodiv.approximate`: warm start, automatic steps and
        particles; ``num_steps`` caps each stage's steps, and ``num_particles``, ``lr``,
        ``lr_decay`` and ``init_scale`` are not used).
    :param num_steps: SVI steps.
    :param num_particles: vectorized particles per step.
    :param lr: Adam's learning rate, multiplied by ``lr_decay`` over the run
        (``pyro.optim.ClippedAdam`` with ``lrd = lr_decay ** (1 / num_steps)``): badly
        conditioned posteriors need the late steps well under the posterior sd.
    :param lr_decay: the factor of the learning rate over the whole run.
    :param guide: an autoguide name of :data:`GUIDES` (with ``method="approximate"`` also
        ``"auto"``, a whitened full-rank Gaussian, or ``"flow"``), or ``model -> guide``.
    :param init_scale: the autoguide's initial scale (unconstrained). Wide (1.0) by default:
        estimates over :math:`Q`'s own draws cannot see a collapse, so mass-covering
        divergences started narrow (Pyro's default 0.1) can collapse onto a point.
    :param num_draws: draws from each fitted guide (for the table and :math:`\hat k`).
    :param seed: every fit, guide draw and chain starts from this seed.

    Example::

        >>> ComparisonSettings(num_steps=500).replace(seed=1).seed
        1
        >>> ComparisonSettings(num_steps=0)
        Traceback (most recent call last):
        ...
        ValueError: num_steps must be an integer >= 1, got 0
    """

    nuts: bool = False
    reference: str = "auto"
    method: str = "svi"
    num_steps: int = 2000
    num_particles: int = 32
    num_draws: int = 2000
    lr: float = 0.05
    lr_decay: float = 0.02
    guide: object = "AutoNormal"
    init_scale: float = 1.0
    nuts_draws: int = 500
    nuts_warmup: int = 500
    nuts_chains: int = 2
    nuts_chain_method: str = "sequential"
    seed: int = 0

    def __post_init__(self):
        if self.reference not in ("auto", "nuts", "posteriordb"):
            raise ValueError(
                f"reference must be 'auto', 'nuts' or 'posteriordb', got {self.reference!r}"
            )
        if self.reference == "nuts" and not self.nuts:
            raise ValueError("reference='nuts' needs nuts=True")
        if self.method not in ("svi", "approximate"):
            raise ValueError(f"method must be 'svi' or 'approximate', got {self.method!r}")
        for name in ("num_steps", "num_particles", "num_draws", "nuts_draws", "nuts_chains"):
            check_int(getattr(self, name), name)
        check_int(self.nuts_warmup, "nuts_warmup", 0)
        check_int(self.seed, "seed", 0)
        if not self.init_scale > 0:
            raise ValueError(f"init_scale must be positive, got {self.init_scale!r}")
        if not (self.lr > 0 and 0 < self.lr_decay <= 1):
            raise ValueError(
                f"need lr > 0 and 0 < lr_decay <= 1, got lr={self.lr}, lr_decay={self.lr_decay}"
            )
        if isinstance(self.guide, str) and self.guide not in GUIDES:
            raise ValueError(f"unknown guide {self.guide!r}; known: {', '.join(GUIDES)}")
        if self.guide in ("auto", "flow") and self.method != "approximate":
            raise ValueError(f"guide {self.guide!r} needs method='approximate'")
        if not isinstance(self.guide, str) and not callable(self.guide):
            raise ValueError(f"unknown guide {self.guide!r}; known: {', '.join(GUIDES)}")

    def replace(self, **changes) -> ComparisonSettings:
        """A copy with ``changes``; an unknown name is a ``TypeError`` listing the known ones."""
        known = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise TypeError(f"unknown comparison settings {unknown}; known: {', '.join(known)}")
        return dataclasses.replace(self, **changes)

    @property
    def reference_name(self) -> str:
        """The reference actually used: ``"nuts"`` or ``"posteriordb"``."""
        if self.reference == "auto":
            return "nuts" if self.nuts else "posteriordb"
        return self.reference


@dataclass
class ZooComparison:
    """The outcome of :func:`run_zoo_comparison`.

    :param table: :func:`~pyrodiv.compare_posteriors`'s per-variable table with the columns
        ``model`` and ``reference`` added.
    :param summary: :func:`summarize_by_method` of ``table``.
    :param idatas: ``{method: InferenceData}``, the reference included.
    :param fits: ``{loss name: FitResult}``.
    :param reference: the reference's name in ``idatas`` (``"nuts"`` or ``"posteriordb"``).
    :param files: every file written, by kind (``"netcdf:nuts"``, ``"csv"``,
        ``"figure:khat"``...).
    :param settings: the arguments of the run, as written to ``comparison.md``.
    :param failures: ``{loss name: error}`` for the fits that raised (left out of the tables).
    """

    table: pd.DataFrame
    summary: pd.DataFrame
    idatas: dict
    fits: dict[str, FitResult]
    reference: str
    files: dict[str, str] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def resolve_model(name: str):
    """The :class:`~pyrodiv.zoo.ZooEntry` of a zoo name; ``ValueError`` listing the known ones.

    Example::

        >>> resolve_model("eight_schools_noncentered").name
        'eight_schools'
    """
    if not isinstance(name, str):
        raise TypeError(f"a zoo model name must be a string, got {type(name).__name__}")
    try:
        return get_entry(name)
    except KeyError:
        known = ", ".join(f"{e.name} ({e.posterior})" for e in ZOO.values())
        raise ValueError(f"unknown zoo model {name!r}; known: {known}") from None


def check_loss_names(losses: Sequence[str]) -> list[str]:
    """The loss names, checked against :func:`pyrodiv.get_loss`'s and with duplicates removed.

    Example::

        >>> check_loss_names(["forward_kl", "squared_hellinger", "forward_kl"])
        ['forward_kl', 'squared_hellinger']
    """
    if isinstance(losses, str) or not isinstance(losses, Sequence) or not losses:
        raise ValueError(f"losses must be a non-empty list of loss names, got {losses!r}")
    if "nuts" in losses or "posteriordb" in losses:
        raise ValueError("'nuts' and 'posteriordb' are reference names, not losses")
    known = list(dict.fromkeys(list(LOSSES) + list(GENERATOR_NAMES)))
    unknown = [name for name in losses if name not in known]
    if unknown:
        raise ValueError(f"unknown loss names {unknown}; known: {', '.join(known)}")
    return list(dict.fromkeys(losses))


def summarize_by_method(table: pd.DataFrame) -> pd.DataFrame:
    """One row per method of a :func:`~pyrodiv.compare_posteriors` table.

    Columns: ``method``, ``variables`` (the count), ``mean_error_max`` and
    ``mean_error_median`` (:math:`|\\bar x - \\bar r| / \\mathrm{sd}(r)` over the scalar
    variables), ``sd_ratio_min``, ``sd_ratio_median``, ``sd_ratio_max``, ``w1_max``,
    ``w1_median`` (W1 in reference-sd units), ``khat`` and ``wall_time_s``; ``model`` and
    ``reference`` are carried over when the table has them.

    Example::

        >>> t = pd.DataFrame({"method": ["a", "a"], "variable": ["x", "y"],
        ...                   "mean_error": [0.1, 0.3], "sd_ratio": [0.9, 1.1],
        ...                   "w1": [0.2, 0.4], "khat": [0.3, 0.3], "wall_time_s": [2.0, 2.0]})
        >>> summarize_by_method(t)[["mean_error_max", "sd_ratio_min", "w1_median"]].values
        array([[0.3, 0.9, 0.3]])
    """
    keys = [c for c in ("model", "method", "reference") if c in table.columns]
    grouped = table.groupby(keys, sort=False)
    summary = grouped.agg(
        variables=("variable", "size"),
        mean_error_max=("mean_error", "max"),
        mean_error_median=("mean_error", "median"),
        sd_ratio_min=("sd_ratio", "min"),
        sd_ratio_median=("sd_ratio", "median"),
        sd_ratio_max=("sd_ratio", "max"),
        w1_max=("w1", "max"),
        w1_median=("w1", "median"),
        khat=("khat", "first"),
        wall_time_s=("wall_time_s", "first"),
    )
    return summary.reset_index()


def _make_guide(guide, model, init_scale: float) -> Callable:
    if callable(guide) and not isinstance(guide, str):
        return guide(model)
    if guide not in GUIDES:
        raise ValueError(f"unknown guide {guide!r}; known: {', '.join(GUIDES)}")
    return getattr(autoguide, guide)(model, init_scale=init_scale)


@contextlib.contextmanager
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _fit_guide(model, kwargs, loss_name, settings: ComparisonSettings, progress, label):
    """One fit of ``settings.guide`` with ``loss_name``: the guide and a result with
    ``.losses``, ``.seconds`` and ``.num_steps``."""
    pyro.clear_param_store()
    pyro.set_rng_seed(settings.seed)
    if settings.method == "approximate":
        from ..inference.approximate import approximate

        made = approximate(
            model, divergence=loss_name, guide=settings.guide, seed=settings.seed,
            progress=progress, model_kwargs=kwargs, khat_draws=0, max_steps=settings.num_steps,
        )  # fmt: skip
        result = FitResult(losses=list(made.losses), seconds=made.seconds)
        return made.guide, result
    guide = _make_guide(settings.guide, model, settings.init_scale)
    loss = get_loss(loss_name, num_particles=settings.num_particles, vectorize_particles=True)
    steps = settings.num_steps
    optim = pyro.optim.ClippedAdam({"lr": settings.lr, "lrd": settings.lr_decay ** (1 / steps)})
    result = fit(
        model,
        guide,
        loss=loss,
        num_steps=steps,
        optim=optim,
        progress=progress,
        desc=label,
        **kwargs,
    )
    return guide, result


def _posteriordb_idata(entry, model, kwargs, path, draws_per_chain: int):
    """The gold-standard draws as InferenceData (the model run on them gives theta etc.)."""
    latents = entry.reference_latents(path, torch.float64)
    chain_draws = next(iter(latents.values())).shape[1]
    step = max(1, chain_draws // draws_per_chain)
    latents = {k: v[:, ::step] for k, v in latents.items()}
    attrs = {"source": "posteriordb", "posterior": entry.posterior, "thinned_every": step}
    return samples_to_inference_data(model, latents, attrs=attrs, **kwargs)


def run_zoo_comparison(
    model: str,
    losses: Sequence[str] = DEFAULT_LOSSES,
    settings: ComparisonSettings | None = None,
    *,
    out=None,
    figures: bool = True,
    posteriordb=None,
    progress: bool = False,
    command: str | None = None,
    **options,
) -> ZooComparison:
    r"""Fit a guide to a zoo posterior with each loss and compare with a reference.

    :param model: a zoo name (``"eight_schools"``, ``"eight_schools_noncentered"``, a
        posteriordb name, ...); ``ValueError`` lists the known ones.
    :param losses: loss names for :func:`pyrodiv.get_loss` (the table's method names).
    :param settings: a :class:`ComparisonSettings`; its fields may also be given as keywords
        (``num_steps=500``), which replace the ones of ``settings``.
    :param out: folder for the netCDF, csv, markdown and figure files (``None``: write nothing;
        see :func:`~pyrodiv.zoo.comparison_files.write_comparison`).
    :param figures: draw the figures (when ``out`` is given).
    :param posteriordb: the posteriordb folder (default: ``$PYRODIV_POSTERIORDB`` or
        ``../shared/posteriordb``).
    :param progress: progress bars for NUTS and the fits.
    :param command: the command line written as "Reproduce:" in ``comparison.md``.
    :returns: :class:`ZooComparison` (``.table`` per variable, ``.summary`` per method).

    Example::

        >>> r = run_zoo_comparison("eight_schools", ["reverse_kl"], num_steps=200,
        ...                        num_draws=200)                          # doctest: +SKIP
        >>> sorted(r.idatas)                                               # doctest: +SKIP
        ['posteriordb', 'reverse_kl']
    """
    entry = resolve_model(model)
    losses = check_loss_names(losses)
    settings = (settings or ComparisonSettings()).replace(**options)
    reference = settings.reference_name
    record = {
        "model": model if isinstance(model, str) else entry.name,
        "zoo_name": entry.name,
        "posterior": entry.posterior,
        "losses": losses,
        **dataclasses.asdict(settings),
        "reference": reference,
        "guide": settings.guide
        if isinstance(settings.guide, str)
        else getattr(settings.guide, "__name__", str(settings.guide)),
        "progress": progress,
        "command": command
        or f"run_zoo_comparison({entry.name!r}, {losses!r}, nuts={settings.nuts})",
    }
    with _float64():
        pyro_model = entry.model
        kwargs = entry.kwargs(posteriordb, torch.float64)
        idatas, fits = {}, {}
        if settings.nuts:
            idatas["nuts"] = run_nuts(
                pyro_model,
                num_samples=settings.nuts_draws,
                warmup_steps=settings.nuts_warmup,
                num_chains=settings.nuts_chains,
                chain_method=settings.nuts_chain_method,
                seed=settings.seed,
                progress_bar=progress,
                **kwargs,
            )
        try:
            idatas["posteriordb"] = _posteriordb_idata(
                entry, pyro_model, kwargs, posteriordb, REFERENCE_DRAWS_PER_CHAIN
            )
        except FileNotFoundError:
            if reference == "posteriordb":
                raise
        failures = {}
        for index, name in enumerate(losses, 1):
            label = f"{name} (fit {index}/{len(losses)})"
            try:
                guide_fn, fits[name] = _fit_guide(
                    pyro_model, kwargs, name, settings, progress, label
                )
                idata = guide_to_inference_data(
                    pyro_model,
                    guide_fn,
                    num_samples=settings.num_draws,
                    seed=settings.seed,
                    **kwargs,
                )
            except (ValueError, RuntimeError) as error:  # e.g. a fit that diverged to nan
                reason = (str(error).strip().splitlines() or [""])[0]
                failures[name] = f"{type(error).__name__}: {reason}"
                warnings.warn(
                    f"{entry.name}: {name} failed ({failures[name]})", RuntimeWarning, stacklevel=2
                )
                continue
            idata.attrs.update(
                wall_time_s=fits[name].seconds,
                loss=name,
                num_steps=fits[name].num_steps,
                final_loss=fits[name].losses[-1],
            )
            idatas[name] = idata
        pyro.clear_param_store()
    ordered = {reference: idatas[reference], **idatas}
    comparison = compare_posteriors(ordered, reference=reference)
    comparison.insert(0, "model", entry.name)
    comparison.insert(2, "reference", reference)
    result = ZooComparison(
        table=comparison,
        summary=summarize_by_method(comparison),
        idatas=ordered,
        fits=fits,
        reference=reference,
        settings=record,
        failures=failures,
    )
    if out is not None:
        write_comparison(result, Path(out), figures)
    return result
