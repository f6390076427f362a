"""Files of a zoo comparison: netCDF per method, CSV tables, ``comparison.md`` and figures.

:func:`write_comparison` writes a :class:`~pyrodiv.zoo.comparison.ZooComparison` to a folder:
one netCDF file per method, ``comparison.csv`` (per variable), ``summary.csv`` (per method),
``comparison.md`` (both tables and the settings), ``settings.json`` and the figures of
:mod:`pyrodiv.inference.figures` (``densities.png``, ``pairs.png``, ``forest.png``,
``khat.png``, ``losses.png``).

Example::

    >>> result = run_zoo_comparison("eight_schools", ["reverse_kl"])   # doctest: +SKIP
    >>> write_comparison(result, Path("out/compare"))                  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from ..inference import arviz_adapter
from ..inference import figures as plots
from ..inference.output import num, table

__all__ = ["comparison_markdown", "summary_markdown", "write_comparison"]


def summary_markdown(summary: pd.DataFrame) -> str:
    """A :func:`~pyrodiv.zoo.comparison.summarize_by_method` table as Markdown, rounded to read.

    One row per method (and model, when the table has that column): errors max and median,
    the sd ratio as min / median / max, W1 max and median, k-hat ("n/a" for MCMC and stored
    draws) and wall time in seconds.

    Example::

        >>> from pyrodiv.zoo.comparison import summarize_by_method
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


def comparison_markdown(result) -> str:
    """The Markdown report of a comparison: the settings, the summary and per-variable tables
    and links to the figures."""
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
        + f". Guide {s['guide']}, "
        + (
            "pyrodiv.approximate (automatic steps and particles)"
            if s.get("method") == "approximate"
            else f"{s['num_steps']} steps, {s['num_particles']} particles, "
            f"Adam lr {s['lr']} decayed by {s['lr_decay']}"
        )
        + f", {s['num_draws']} guide draws, seed {s['seed']}.",
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


def write_comparison(result, out: Path, make_figures: bool = True) -> None:
    """Write every file of ``result`` to ``out`` (created); ``result.files`` records each one
    by kind (``"netcdf:nuts"``, ``"csv"``, ``"figure:khat"``...)."""
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
    path.write_text(comparison_markdown(result))
    (out / "settings.json").write_text(json.dumps(result.settings, indent=2) + "\n")
    result.files["settings"] = str(out / "settings.json")
