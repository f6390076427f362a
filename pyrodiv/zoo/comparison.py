r"""One zoo posterior, several divergences, one reference: fit, compare, write tables and figures.

:func:`run_zoo_comparison` is the everyday loop on a posteriordb model of :mod:`pyrodiv.zoo`:

1. for each loss name (``"reverse_kl"``, ``"forward_kl"``, ``"jensen_shannon"``,
   ``"squared_hellinger"``, any name of :func:`pyrodiv.divergences.losses.get_loss`), fit an
   autoguide
   (``AutoNormal`` by default) with :func:`pyrodiv.inference.fit.fit` and Adam with a
   learning-rate decay,
   :math:`\mathrm{lr}_t = \mathrm{lr}\cdot\rho^{t/T}` from ``lr`` down to ``lr * lr_decay``
   (badly conditioned posteriors need the late steps well under the posterior sd);
2. draw from each fitted guide with :func:`pyrodiv.guide_to_inference_data`, which also gives
   the importance log weights :math:`\log p(x, z) - \log q(z)`, hence the PSIS :math:`\hat k`;
3. take as reference either a NUTS run (:func:`pyrodiv.run_nuts`, ``nuts=True``) or the
   posteriordb gold-standard draws; the ``reference`` column of the tables says which;
4. compare every method with :func:`pyrodiv.compare_posteriors` (per scalar variable: mean
   error and W1 in reference-sd units, sd ratio, :math:`\hat k`, wall time) and summarize per
   method (:func:`summarize_by_method`);
5. write to ``out``: one netCDF file per method, ``comparison.csv`` (per variable),
   ``summary.csv`` (per method), ``comparison.md`` (both tables and the settings) and the
   figures of :mod:`pyrodiv.inference.figures` (``densities.png``, ``pairs.png``, ``forest.png``,
   ``khat.png``, ``losses.png``).

Everything runs in float64 under fixed seeds: the same arguments give the same tables.

Example::

    >>> result = run_zoo_comparison("eight_schools", ["reverse_kl", "forward_kl"],
    ...                             nuts=True, out="out/compare")         # doctest: +SKIP
    >>> result.summary[["method", "reference", "mean_error_max", "khat"]]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import math
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
from ..inference import arviz_adapter
from ..inference import figures as plots
from ..inference.baselines import run_nuts
from ..inference.comparison import compare_posteriors
from ..inference.fit import FitResult, fit
from ..inference.inference_data import guide_to_inference_data, samples_to_inference_data
from ..inference.output import num, table
from . import ZOO, get_entry

__all__ = [
    "DEFAULT_LOSSES",
    "GUIDES",
    "ZooComparison",
    "check_loss_names",
    "resolve_model",
    "run_zoo_comparison",
    "summarize_by_method",
    "summary_markdown",
]

#: Four divergences with four behaviours: mode-seeking, mass-covering, bounded, power family.
DEFAULT_LOSSES = ("reverse_kl", "forward_kl", "jensen_shannon", "squared_hellinger")
#: Autoguides selectable by name.
GUIDES = (
    "AutoNormal",
    "AutoDiagonalNormal",
    "AutoMultivariateNormal",
    "AutoLowRankMultivariateNormal",
)
#: Reference draws kept per chain of the posteriordb reference (10 chains of 1000 stored).
REFERENCE_DRAWS_PER_CHAIN = 400


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


def summary_markdown(summary: pd.DataFrame) -> str:
    """A :func:`summarize_by_method` table as Markdown, numbers rounded for reading.

    One row per method (and model, when the table has that column): errors max and median,
    the sd ratio as min / median / max, W1 max and median, k-hat ("n/a" for MCMC and stored
    draws) and wall time in seconds.

    Example::

        >>> t = pd.DataFrame({"method": ["a"], "variable": ["x"], "mean_error": [0.1],
        ...                   "sd_ratio": [0.9], "w1": [0.2], "khat": [0.3],
        ...                   "wall_time_s": [2.0]})
        >>> print(summary_markdown(summarize_by_method(t)).splitlines()[2])
        | a | 1 | 0.100 | 0.100 | 0.90 / 0.90 / 0.90 | 0.200 | 0.200 | 0.30 | 2.0 |
    """
    keys = [c for c in ("model", "method", "reference") if c in summary.columns]
    header = keys + ["vars", "mean err max", "mean err median", "sd ratio", "W1 max"]
    header += ["W1 median", "k-hat", "time (s)"]
    rows = [
        [getattr(r, k) for k in keys]
        + [
            r.variables,
            num(r.mean_error_max, 3),
            num(r.mean_error_median, 3),
            f"{num(r.sd_ratio_min, 2)} / {num(r.sd_ratio_median, 2)} / {num(r.sd_ratio_max, 2)}",
            num(r.w1_max, 3),
            num(r.w1_median, 3),
            "n/a" if math.isnan(r.khat) else num(r.khat, 2),
            "n/a" if math.isnan(r.wall_time_s) else num(r.wall_time_s, 1),
        ]
        for r in summary.itertuples()
    ]
    return table(header, rows)


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


def _fit_guide(model, kwargs, loss_name, settings, label) -> tuple[Callable, FitResult]:
    pyro.clear_param_store()
    pyro.set_rng_seed(settings["seed"])
    guide = _make_guide(settings["guide"], model, settings["init_scale"])
    loss = get_loss(
        loss_name,
        num_particles=settings["num_particles"],
        vectorize_particles=True,
    )
    steps = settings["num_steps"]
    optim = pyro.optim.ClippedAdam(
        {"lr": settings["lr"], "lrd": settings["lr_decay"] ** (1 / steps)}
    )
    result = fit(
        model,
        guide,
        loss=loss,
        num_steps=steps,
        optim=optim,
        progress=settings["progress"],
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


def _markdown(result: ZooComparison) -> str:
    s = result.settings
    lines = [
        f"# {s['model']}: {', '.join(s['losses'])} against {result.reference}",
        "",
        f"Reproduce: `{s['command']}`",
        "",
        f"Reference: **{result.reference}**"
        + (
            f" (NUTS, {s['nuts_chains']} chain(s) of {s['nuts_warmup']} warmup + "
            f"{s['nuts_draws']} draws)"
            if result.reference == "nuts"
            else " (posteriordb gold-standard draws)"
        )
        + f". Guide {s['guide']}, {s['num_steps']} steps, {s['num_particles']} particles, "
        f"Adam lr {s['lr']} decayed by {s['lr_decay']}, {s['num_draws']} guide draws, "
        f"seed {s['seed']}.",
        "",
        "Per method: errors in reference-sd units over the scalar variables (max and median), "
        "sd ratio (min / median / max), W1 in reference-sd units, PSIS k-hat (good < 0.5, "
        "unreliable > 0.7; n/a for MCMC) and wall time (fit or sampling).",
        "",
    ]
    lines += [summary_markdown(result.summary)]

    lines += [f"Failed: **{name}** ({error})." for name, error in result.failures.items()]
    lines += ["", "## Per variable", ""]
    columns = ["method", "variable", "mean", "sd", "mean_error", "sd_ratio", "w1", "khat"]
    rows = [
        [r[0], r[1]] + [num(v, 3) for v in r[2:]]
        for r in result.table[columns].itertuples(index=False)
    ]
    lines += [table(columns, rows), ""]
    figures_md = [
        f"![{k.split(':', 1)[1]}]({Path(v).name})"
        for k, v in result.files.items()
        if k.startswith("figure:")
    ]
    if figures_md:
        lines += ["## Figures", "", *figures_md, ""]
    return "\n".join(lines)


def _write(result: ZooComparison, out: Path, make_figures: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for method, idata in result.idatas.items():
        path = out / f"{method}.nc"
        arviz_adapter.to_netcdf(idata, path)
        result.files[f"netcdf:{method}"] = str(path)
    result.table.to_csv(out / "comparison.csv", index=False)
    result.summary.to_csv(out / "summary.csv", index=False)
    result.files["csv"] = str(out / "comparison.csv")
    result.files["summary_csv"] = str(out / "summary.csv")
    if make_figures:
        model = result.settings["model"]
        colors = plots.method_colors(list(result.idatas), result.reference)
        drawers = {
            "densities": lambda p: plots.plot_marginals(
                result.idatas, result.reference, title=f"{model}: marginal densities", path=p
            ),
            "pairs": lambda p: plots.plot_pairs(
                result.idatas, result.reference, title=f"{model}: pairwise draws", path=p
            ),
            "forest": lambda p: plots.plot_forest(result.idatas, result.reference, path=p),
            "khat": lambda p: plots.plot_khat(
                result.table[result.table["method"].isin(result.fits)],
                title=f"{model}: Pareto k-hat of each fitted guide",
                path=p,
            ),
            "losses": lambda p: plots.plot_loss_curves(
                result.fits, colors=colors, title=f"{model}: training loss", path=p
            ),
        }
        for name, draw in drawers.items():
            path = out / f"{name}.png"
            draw(path)
            result.files[f"figure:{name}"] = str(path)
    path = out / "comparison.md"
    result.files["markdown"] = str(path)
    path.write_text(_markdown(result))
    (out / "settings.json").write_text(json.dumps(result.settings, indent=2) + "\n")
    result.files["settings"] = str(out / "settings.json")


def run_zoo_comparison(
    model: str,
    losses: Sequence[str] = DEFAULT_LOSSES,
    *,
    nuts: bool = False,
    reference: str = "auto",
    num_steps: int = 2000,
    num_particles: int = 32,
    num_draws: int = 2000,
    lr: float = 0.05,
    lr_decay: float = 0.02,
    guide="AutoNormal",
    init_scale: float = 1.0,
    nuts_draws: int = 500,
    nuts_warmup: int = 500,
    nuts_chains: int = 2,
    nuts_chain_method: str = "sequential",
    seed: int = 0,
    out=None,
    figures: bool = True,
    posteriordb=None,
    progress: bool = False,
    command: str | None = None,
) -> ZooComparison:
    r"""Fit ``guide`` to a zoo posterior with each loss and compare with a reference.

    :param model: a zoo name (``"eight_schools"``, ``"eight_schools_noncentered"``, a
        posteriordb name, ...); ``ValueError`` lists the known ones.
    :param losses: loss names for :func:`pyrodiv.get_loss` (the table's method names).
    :param nuts: also run NUTS (``nuts_chains`` chains of ``nuts_warmup`` + ``nuts_draws``,
        one after another unless ``nuts_chain_method="parallel"``, which needs a script
        guarded by ``if __name__ == "__main__":``; see :func:`pyrodiv.run_nuts`).
    :param reference: ``"nuts"``, ``"posteriordb"`` or ``"auto"`` (NUTS when it is run, else
        the posteriordb draws). The other one, when available, is compared like a method.
    :param num_steps: SVI steps.
    :param num_particles: vectorized particles per step.
    :param lr: Adam's learning rate, multiplied by ``lr_decay`` over the run
        (``pyro.optim.ClippedAdam`` with ``lrd = lr_decay ** (1 / num_steps)``).
    :param lr_decay: the factor of the learning rate over the whole run.
    :param guide: an autoguide name of :data:`GUIDES`, or ``model -> guide``.
    :param init_scale: the autoguide's initial scale (unconstrained). Wide (1.0) by default:
        estimates over :math:`Q`'s own draws cannot see a collapse, so mass-covering
        divergences started narrow (Pyro's default 0.1) can collapse onto a point.
    :param num_draws: draws from each fitted guide (for the table and :math:`\hat k`).
    :param seed: every fit, guide draw and chain starts from this seed.
    :param out: folder for the netCDF, csv, markdown and figure files (``None``: write nothing).
    :param figures: draw the figures (when ``out`` is given).
    :param posteriordb: the posteriordb folder (default: ``$PYRODIV_POSTERIORDB`` or
        ``../shared/posteriordb``).
    :returns: :class:`ZooComparison` (``.table`` per variable, ``.summary`` per method).

    Example::

        >>> r = run_zoo_comparison("eight_schools", ["reverse_kl"], num_steps=200,
        ...                        num_draws=200)                          # doctest: +SKIP
        >>> sorted(r.idatas)                                               # doctest: +SKIP
        ['posteriordb', 'reverse_kl']
    """
    entry = resolve_model(model)
    losses = check_loss_names(losses)
    if reference not in ("auto", "nuts", "posteriordb"):
        raise ValueError(f"reference must be 'auto', 'nuts' or 'posteriordb', got {reference!r}")
    if reference == "auto":
        reference = "nuts" if nuts else "posteriordb"
    if reference == "nuts" and not nuts:
        raise ValueError("reference='nuts' needs nuts=True")
    for name, value in (
        ("num_steps", num_steps),
        ("num_particles", num_particles),
        ("num_draws", num_draws),
        ("nuts_draws", nuts_draws),
        ("nuts_chains", nuts_chains),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not init_scale > 0:
        raise ValueError(f"init_scale must be positive, got {init_scale!r}")
    if not (lr > 0 and 0 < lr_decay <= 1):
        raise ValueError(f"need lr > 0 and 0 < lr_decay <= 1, got lr={lr}, lr_decay={lr_decay}")
    if not isinstance(guide, str) or guide not in GUIDES:
        if isinstance(guide, str) or not callable(guide):
            raise ValueError(f"unknown guide {guide!r}; known: {', '.join(GUIDES)}")
    settings = {
        "model": model if isinstance(model, str) else entry.name,
        "zoo_name": entry.name,
        "posterior": entry.posterior,
        "losses": losses,
        "reference": reference,
        "nuts": bool(nuts),
        "num_steps": num_steps,
        "num_particles": num_particles,
        "num_draws": num_draws,
        "lr": lr,
        "lr_decay": lr_decay,
        "guide": guide if isinstance(guide, str) else getattr(guide, "__name__", str(guide)),
        "init_scale": init_scale,
        "nuts_draws": nuts_draws,
        "nuts_warmup": nuts_warmup,
        "nuts_chains": nuts_chains,
        "seed": seed,
        "progress": progress,
        "command": command or f"run_zoo_comparison({entry.name!r}, {losses!r}, nuts={nuts})",
    }
    with _float64():
        pyro_model = entry.model
        kwargs = entry.kwargs(posteriordb, torch.float64)
        idatas, fits = {}, {}
        if nuts:
            idatas["nuts"] = run_nuts(
                pyro_model,
                num_samples=nuts_draws,
                warmup_steps=nuts_warmup,
                num_chains=nuts_chains,
                chain_method=nuts_chain_method,
                seed=seed,
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
                guide_fn, fits[name] = _fit_guide(pyro_model, kwargs, name, settings, label)
                idata = guide_to_inference_data(
                    pyro_model, guide_fn, num_samples=num_draws, seed=seed, **kwargs
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
        settings=settings,
        failures=failures,
    )
    if out is not None:
        _write(result, Path(out), figures)
    return result
