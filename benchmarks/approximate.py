r"""Accuracy, wall time and gradient evaluations of :func:`pyrodiv.approximate` on the zoo's
posteriordb posteriors, for each divergence, with and without PSIS resampling.

For every model and divergence, one ``approximate(model, divergence=...)`` fit with the default
settings (automatic budgets), then 1000 draws of the guide and 1000 PSIS-resampled draws
(from 2000 guide draws), scored against posteriordb's reference draws with
:func:`pyrodiv.compare_posteriors` (W1 and the sd ratio per scalar variable, in reference-sd
units). The fit's wall time and gradient evaluations (a Hessian counts D, an SVI step of K
particles counts K) are recorded with its k-hat and the pipeline's stages.

A method passes on a model when its worst-variable W1 <= 0.25 and every sd ratio is in
[0.8, 1.25]. The NUTS wall times are those of ``posteriordb.csv`` (one chain of 500 warmup +
500 draws, the same machine), doubled for 1000 + 1000.

Writes ``approximate.csv`` (one row per model and method), ``approximate_variables.csv``,
``approximate.md`` and ``approximate_accuracy.png`` (worst-variable W1 against wall time per
model, NUTS included) to ``--out``; ``--render`` only rewrites the report and figure::

    python benchmarks/approximate.py [--models kidiq,earnings] [--render]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import pandas as pd
import torch

import pyrodiv
from pyrodiv.inference.approximate import approximate
from pyrodiv.inference.figures import plot_accuracy_vs_time
from pyrodiv.inference.output import num, table
from pyrodiv.zoo import ZOO
from pyrodiv.zoo.comparison import (
    REFERENCE_DRAWS_PER_CHAIN,
    _posteriordb_idata,
    resolve_model,
    summarize_by_method,
)

OUT = Path(__file__).resolve().parent / "results"
DIVERGENCES = ["forward_kl", "reverse_kl", "jensen_shannon", "squared_hellinger", "pearson"]
W1_LIMIT, SD_LOW, SD_HIGH = 0.25, 0.8, 1.25


def _nuts_seconds(out: Path) -> dict:
    table_ = pd.read_csv(out / "posteriordb.csv")
    nuts = table_[table_["method"] == "nuts"]
    return {r.model: 2 * r.wall_time_s for r in nuts.itertuples()}


def _warm_up() -> None:
    """One tiny fit, so that the first model does not pay for imports and first calls."""
    import pyro
    import pyro.distributions as dist

    def model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    approximate(model, torch.zeros(3), divergence="forward_kl", progress=False)


def nuts_reference(name: str, model, kwargs: dict) -> tuple:
    """One NUTS chain of 1000 warmup + 1000 draws, timed: its InferenceData and table row."""
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = pyrodiv.run_nuts(model, num_samples=1000, warmup_steps=1000, seed=0, **kwargs)
    seconds = time.perf_counter() - began
    idata.attrs["wall_time_s"] = seconds
    print(f"  {name} nuts 1000 + 1000: {seconds:.1f} s", flush=True)
    return idata, {"model": name, "method": "nuts", "nuts_same_run_s": seconds}


def fit_and_resample(name: str, model, kwargs: dict, divergence: str) -> tuple[dict, list]:
    """One ``approximate`` fit: ``{method: InferenceData}`` for its 1000 guide draws and its
    1000 PSIS-resampled draws, and their table rows (k-hat, gradient evaluations, stages,
    warnings, fitting seconds)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = approximate(model, divergence=divergence, model_kwargs=kwargs, progress=False)
        idata = fit.to_inference_data(1000)
        began = time.perf_counter()
        resampled = fit.to_inference_data(1000, resample="psis")
        resample_s = time.perf_counter() - began
    messages = [str(w.message) for w in caught if "Approximation" in w.category.__name__]
    stages = "; ".join(
        f"{s.name} {s.steps}x{s.particles} {s.status} {s.seconds:.1f}s"
        for s in fit.stages
        if s.name != "khat"
    )
    idatas, rows = {}, []
    for method, data, seconds in (
        (divergence, idata, fit.seconds),
        (f"{divergence}+psis", resampled, fit.seconds + resample_s),
    ):
        data.attrs["wall_time_s"] = seconds
        idatas[method] = data
        rows.append(
            {
                "model": name,
                "method": method,
                "khat_fit": fit.khat,
                "gradient_evaluations": fit.num_gradient_evaluations,
                "stages": stages,
                "warnings": " | ".join(m[:160] for m in messages),
                "flagged": any(_flags(m) for m in messages),
                "recommended": fit.recommended_resample or "",
                "fit_seconds": fit.seconds if method == divergence else 0.0,
            }
        )
    print(f"  {name} {divergence}: {fit.seconds:.1f} s, k-hat {fit.khat:.2f}, {stages}")
    return idatas, rows


def _flags(message: str) -> bool:
    """Whether a warning of ``approximate`` says that the guide misses the posterior (k-hat
    above 0.7, marginals that disagree with their PSIS-weighted values, a stage reset)."""
    return any(text in message for text in ("> 0.7; its draws", "PSIS-weighted", "was reset"))


def run_model(
    name: str, divergences, posteriordb=None, run_nuts=False
) -> tuple[pd.DataFrame, list[dict]]:
    entry = resolve_model(name)
    kwargs = entry.kwargs(posteriordb, torch.float64)
    idatas = {
        "posteriordb": _posteriordb_idata(
            entry, entry.model, kwargs, posteriordb, REFERENCE_DRAWS_PER_CHAIN
        )
    }
    extra = []
    if run_nuts:
        idatas["nuts"], row = nuts_reference(entry.name, entry.model, kwargs)
        extra.append(row)
    for divergence in divergences:
        fitted, rows = fit_and_resample(entry.name, entry.model, kwargs, divergence)
        idatas.update(fitted)
        extra.extend(rows)
    comparison = pyrodiv.compare_posteriors(idatas, reference="posteriordb")
    comparison.insert(0, "model", entry.name)
    comparison = comparison[comparison["method"] != "posteriordb"]
    return comparison, extra


def _own_stage_failed(stages: str) -> bool:
    """Whether a stage of the divergence collapsed, ran away or failed (and was reset). An
    escalation's flow stage that fails is not counted: the fit is then the divergence's
    Gaussian, as if no flow had run."""
    return any(
        status in stage
        for stage in stages.split("; ")
        if not stage.startswith("flow")
        for status in ("collapsed", "ran away", "failed")
    )


def _summary(variables: pd.DataFrame, extra: pd.DataFrame, nuts: dict) -> pd.DataFrame:
    summary = summarize_by_method(variables).drop(columns="khat")
    summary = summary.merge(extra, on=["model", "method"], how="left")
    same_run = pd.Series(dtype=float)
    if "nuts_same_run_s" in extra:
        same_run = extra[extra["method"] == "nuts"].set_index("model")["nuts_same_run_s"]
    summary["nuts_source"] = [
        "same run" if m in same_run.index else "posteriordb.csv x 2" for m in summary["model"]
    ]
    summary["nuts_s"] = [same_run.get(m, nuts.get(m)) for m in summary["model"]]
    summary["time_fraction"] = summary["wall_time_s"] / summary["nuts_s"]
    failed = summary["stages"].fillna("").map(_own_stage_failed)
    summary["divergence_failed"] = failed
    summary["passes"] = (
        ~failed
        & (summary["w1_max"] <= W1_LIMIT)
        & (summary["sd_ratio_min"] >= SD_LOW)
        & (summary["sd_ratio_max"] <= SD_HIGH)
    )
    return summary


def _figure(summary: pd.DataFrame, results: Path, out: Path) -> None:
    """``approximate_accuracy.png``: worst-variable W1 against wall time per model, the fits
    (without PSIS) and NUTS (run here, or from ``posteriordb.csv``: its W1 and twice
    its 500 + 500 time)."""
    rows = summary[["model", "method", "w1_max", "wall_time_s"]]
    rows = rows[~rows["method"].str.endswith("+psis")]  # near their fits; the tables have them
    earlier = pd.read_csv(results / "posteriordb.csv")
    earlier = earlier[(earlier["method"] == "nuts") & ~earlier["model"].isin(rows["model"][
        rows["method"] == "nuts"])]  # fmt: skip
    earlier = earlier[earlier["model"].isin(rows["model"])]
    earlier = earlier.assign(wall_time_s=2 * earlier["wall_time_s"])
    rows = pd.concat([rows, earlier[["model", "method", "w1_max", "wall_time_s"]]])
    plot_accuracy_vs_time(
        rows,
        error="w1_max",
        group="model",
        title="approximate: worst-variable W1 (reference sds) against wall time; NUTS 1000 + 1000",
        path=out / "approximate_accuracy.png",
    )


def _auto_passes(method: str, summary: pd.DataFrame) -> str:
    """``"p of n"``: passes of ``to_inference_data(resample="auto")``, which is the PSIS row
    where the fit recommends it (its moment check disagreed under a k-hat of at most 0.7)
    and the guide's row otherwise; ``"-"`` for the PSIS rows."""
    if method.endswith("+psis") or "recommended" not in summary:
        return "-"
    raw = summary[summary["method"] == method].set_index("model")
    psis = summary[summary["method"] == f"{method}+psis"].set_index("model")
    recommended = raw["recommended"].fillna("").eq("psis")
    passes = [psis.loc[m, "passes"] if recommended[m] else raw.loc[m, "passes"] for m in raw.index]
    return f"{int(sum(passes))} of {len(passes)}"


def _misses_warned(group: pd.DataFrame) -> str:
    """``"w of m"``: of the m fits that miss, w warned that the guide misses (a PSIS row
    counts its fit's warnings)."""
    misses = group[~group["passes"]]
    if "flagged" not in misses:
        return "-"
    return f"{int(misses['flagged'].fillna(False).astype(bool).sum())} of {len(misses)}"


def _markdown(summary: pd.DataFrame) -> str:
    models = list(dict.fromkeys(summary["model"]))
    lines = [
        "# `pyrodiv.approximate` against posteriordb reference draws",
        "",
        f"Regenerate: `python benchmarks/approximate.py --models {','.join(models)}`",
        "",
        "Default settings of `approximate` (automatic budgets), seed 0, float64, one torch "
        "thread, on a shared 2-core machine. Per fit: 1000 guide draws (`method`), or 1000 "
        "draws PSIS-resampled from 2000 guide draws (`method+psis`). Reference: posteriordb (10"
        " chains thinned to 4000 draws). A fit *passes* when its worst-variable W1 <= 0.25 "
        "reference sds and every sd ratio is in [0.8, 1.25], and the divergence's own stage did"
        " not collapse, run away or fail (an escalation's flow stage that fails leaves the "
        "Gaussian fit and counts as none; a divergence stage that fails is reset to the "
        "reverse-KL stage's guide, or fitted by reverse KL where that stage had been skipped, "
        "with a warning, and is not counted). Where the Gaussian fit's k-hat is above 0.7, or "
        "its marginal means and sds disagree with their PSIS-weighted values (an sd ratio "
        "outside [0.8, 1.25] or a mean 0.25 weighted sds off), `guide='auto'` trains a flow "
        "stage until the fit has taken 1/4 of an estimate of NUTS's time (none when that leaves"
        " under a second), and keeps it unless its k-hat is worse (and, for reverse KL, its "
        "ELBO), the budget stopped it before 200 steps, or its marginals are further from their"
        " PSIS-weighted values than the Gaussian's. NUTS time (1 chain, 1000 warmup + 1000 "
        "draws): run and timed in this run for the models marked `same run`; for the others, "
        "whose NUTS runs for many minutes, twice the 500 + 500 time of `posteriordb.csv` (same "
        "machine, an earlier run, before `run_nuts` was compiled with `jit_compile`, so these "
        "NUTS times are long and their fractions small). Gradient evaluations: L-BFGS and "
        "Newton evaluations, a Hessian counts D, the path ELBOs count their draws, an SVI step "
        "of K particles counts K. *Misses warned*: of the fits that miss, those whose fit "
        "warned that the guide misses (k-hat above 0.7, the moment check, a reset stage). "
        "*resample='auto'*: the PSIS row where the fit recommends it (its moment check "
        "disagreed under a k-hat of at most 0.7), the guide's row otherwise.",
        "",
        "![accuracy against wall time](approximate_accuracy.png)",
        "",
        "## Per divergence",
        "",
    ]
    rows = []
    fits = summary[summary["method"] != "nuts"]
    for method, group in fits.groupby("method", sort=False):
        rows.append(
            [
                method,
                f"{int(group['passes'].sum())} of {len(group)}",
                num(group["w1_max"].median(), 3),
                f"{num(group['wall_time_s'].sum(), 0)} / {num(group['nuts_s'].sum(), 0)}",
                num(group["wall_time_s"].sum() / group["nuts_s"].sum(), 3),
                num(group["time_fraction"].max(), 3),
                f"{int(group['gradient_evaluations'].median())}",
                _misses_warned(group),
                _auto_passes(method, summary),
            ]
        )
    header = [
        "method",
        "passes",
        "W1 max (median)",
        "time / NUTS time (s)",
        "sum fraction",
        "worst fraction",
        "gradient evals (median)",
        "misses warned",
        "passes, resample='auto'",
    ]
    lines += [table(header, rows), "", "## Per model", ""]
    rows = [
        [
            r.model,
            r.method,
            "yes" if r.passes else "no",
            num(r.w1_max, 3),
            f"{num(r.sd_ratio_min, 2)} / {num(r.sd_ratio_max, 2)}",
            num(r.khat_fit, 2),
            num(r.wall_time_s, 1),
            num(r.time_fraction, 3),
            "-" if pd.isna(r.gradient_evaluations) else str(int(r.gradient_evaluations)),
            r.nuts_source,
        ]
        for r in summary.itertuples()
    ]
    header = [
        "model",
        "method",
        "passes",
        "W1 max",
        "sd ratio min / max",
        "k-hat",
        "time (s)",
        "x NUTS",
        "gradient evals",
        "NUTS time from",
    ]
    lines += [table(header, rows), "", "## Stages and warnings", ""]
    for r in summary.itertuples():
        if r.method.endswith("+psis") or r.method == "nuts":
            continue
        lines.append(f"- {r.model}, {r.method}: {r.stages}")
        if isinstance(r.warnings, str) and r.warnings:
            lines.append(f"  - warned: {r.warnings}")
    return "\n".join(lines) + "\n"


def main(args) -> None:
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    out = Path(args.out)
    nuts = _nuts_seconds(OUT)
    if not args.render:
        models = [m.strip() for m in args.models.split(",")] if args.models else list(ZOO)
        divergences = args.divergences.split(",")
        _warm_up()
        variables, extra = [], []
        for name in models:
            began = time.perf_counter()
            table_, rows = run_model(
                name, divergences, args.posteriordb, name in args.nuts_models.split(",")
            )
            variables.append(table_)
            extra += rows
            print(f"{name}: {time.perf_counter() - began:.0f} s", flush=True)
            pd.concat(variables).to_csv(out / "approximate_variables.csv", index=False)
            pd.DataFrame(extra).to_csv(out / "approximate_extra.csv", index=False)
    variables = pd.read_csv(out / "approximate_variables.csv")
    extra = pd.read_csv(out / "approximate_extra.csv")
    summary = _summary(variables, extra, nuts)
    summary.to_csv(out / "approximate.csv", index=False)
    text = _markdown(summary)
    (out / "approximate.md").write_text(text)
    _figure(summary, OUT, out)
    print(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="", help="comma-separated zoo names (default: all)")
    parser.add_argument("--divergences", default=",".join(DIVERGENCES))
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--render", action="store_true", help="only rewrite the report")
    parser.add_argument(
        "--nuts-models",
        default="mesquite,low_dim_gauss_mix,garch,sblrc,nes2000,eight_schools,arK,kidiq,earnings,"
        "gp_pois_regr",
        help="models whose NUTS (1000 warmup + 1000 draws) is run and timed in this run; "
        "the others use 2 x the 500 + 500 time of posteriordb.csv",
    )
    parser.add_argument("--posteriordb", default=None)
    main(parser.parse_args())
