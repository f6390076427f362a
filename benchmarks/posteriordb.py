r"""Accuracy and wall time of NUTS and of each divergence on the zoo's posteriordb posteriors.

For every model of :mod:`pyrodiv.zoo` (or those of ``--models``), NUTS and an AutoNormal fitted
with each main loss (reverse KL, forward KL, Jensen-Shannon, and the f-divergences squared
Hellinger and Pearson chi-square) are scored against posteriordb's gold-standard reference
draws with :func:`pyrodiv.zoo_comparison.run_zoo_comparison`. Per scalar variable: the mean
error and the 1-D Wasserstein distance W1, both in reference-sd units, and the sd ratio; they
are aggregated per model and method (max and median over the variables), with the PSIS k-hat
of each fitted guide and the wall time (SVI fit or NUTS sampling, one torch thread).

Writes ``posteriordb.md`` (the command to regenerate it at the top), ``posteriordb.csv`` (one
row per model and method), ``posteriordb_variables.csv`` (one row per scalar variable) and
``posteriordb_accuracy.png`` (worst-variable W1 against wall time, one panel per model) and
``posteriordb_failures.csv`` to ``--out``, and prints the tables. ``--append`` keeps the rows of
the other models already there (results are written after each model); ``--render`` only
rewrites the report, summary and figure from the csv files there::

    python benchmarks/posteriordb.py [--models eight_schools,kidiq] [--quick] [--all]
        [--append] [--render] [--out benchmarks/results] [--posteriordb PATH]

Wall times come from one process on a shared machine and are not interleaved; read them as
orders of magnitude.
"""

from __future__ import annotations

import argparse
import math
import shlex
import time
import warnings
from pathlib import Path

import pandas as pd
import torch

from pyrodiv.inference.figures import plot_accuracy_vs_time
from pyrodiv.inference.output import num, table
from pyrodiv.zoo import ZOO
from pyrodiv.zoo.comparison import (
    resolve_model,
    run_zoo_comparison,
    summarize_by_method,
    summary_markdown,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
LOSSES = ["reverse_kl", "forward_kl", "jensen_shannon", "squared_hellinger", "pearson"]
#: The eight models run by default (``--all`` runs all twelve).
REQUIRED = [
    "eight_schools",
    "kidiq",
    "earnings",
    "sblrc",
    "arK",
    "garch",
    "gp_pois_regr",
    "low_dim_gauss_mix",
]
FULL = {
    "num_steps": 2000,
    "num_particles": 32,
    "num_draws": 2000,
    "nuts_draws": 500,
    "nuts_warmup": 500,
    "nuts_chains": 1,
    "init_scale": 0.1,
}
QUICK = {
    "num_steps": 300,
    "num_particles": 16,
    "num_draws": 500,
    "nuts_draws": 150,
    "nuts_warmup": 150,
    "nuts_chains": 1,
    "init_scale": 0.1,
}


def _model_names(args) -> list[str]:
    if args.all:
        return list(ZOO)
    if args.models:
        return [resolve_model(name.strip()).name for name in args.models.split(",")]
    return REQUIRED


def _pooled(summary: pd.DataFrame) -> pd.DataFrame:
    """Per method, across models: medians of the worst-variable errors, k-hat counts, time."""
    rows = []
    for method, group in summary.groupby("method", sort=False):
        khat = group["khat"]
        rows.append(
            {
                "method": method,
                "models": len(group),
                "mean_error_max_median": group["mean_error_max"].median(),
                "w1_max_median": group["w1_max"].median(),
                "sd_ratio_median": group["sd_ratio_median"].median(),
                # -inf (equal weights) here means a guide collapsed to a point: not usable.
                "khat_usable": int(((khat > -math.inf) & (khat < 0.7)).sum())
                if khat.notna().any()
                else math.nan,
                "wall_time_s_median": group["wall_time_s"].median(),
            }
        )
    return pd.DataFrame(rows)


def _markdown(summary, pooled, failures, settings, command) -> str:
    lines = [
        "# Divergences and NUTS against posteriordb reference draws",
        "",
        f"Regenerate: `{command}`",
        "",
        f"Settings: AutoNormal (init_scale {settings['init_scale']}), "
        f"{settings['num_steps']} SVI steps of {settings['num_particles']} "
        f"vectorized particles, Adam lr 0.05 decayed by 0.02 over the run (ClippedAdam), "
        f"{settings['num_draws']} guide draws; NUTS {settings['nuts_chains']} chain of "
        f"{settings['nuts_warmup']} warmup + {settings['nuts_draws']} draws; seed 0, float64, "
        f"one torch thread. Reference: posteriordb (10 chains thinned to 4000 draws). Sum of "
        f"the wall times below: {summary['wall_time_s'].sum() / 60:.1f} min.",
        "",
        "Columns: errors in reference-sd units over the scalar variables of each model "
        "(`mean err` = |mean - ref mean| / ref sd, W1 = Wasserstein-1 / ref sd; max and "
        "median), sd ratio (min / median / max), PSIS k-hat of the guide (good < 0.5, "
        "unreliable > 0.7), wall time of the fit or of NUTS sampling. Timings are from one "
        "process on a shared 2-core machine, not interleaved: orders of magnitude only.",
        "",
        "Badly conditioned posteriors (kidiq: mom_iq near 100; earnings: height near 66) need "
        "the learning-rate decay: the late steps must be well under the posterior sd, and the "
        "optimizer and its init matter as much as the divergence. With the settings here the "
        "intercept of kidiq is not reached in 2000 steps by any loss (a mean error of several "
        "reference sds is the optimizer, not the divergence).",
        "",
        "A k-hat of -inf means equal importance weights: with an sd ratio of 0 it is a guide "
        "collapsed to a point, not an exact one; it is not counted as usable below. A loss that "
        "raised (parameters became nan) is listed under Failures and has no row.",
        "",
        "## Pooled over models (medians of the per-model numbers)",
        "",
    ]
    header = ["method", "models", "mean err max", "W1 max", "sd ratio", "k-hat < 0.7", "time (s)"]
    rows = [
        [
            r.method,
            r.models,
            num(r.mean_error_max_median, 3),
            num(r.w1_max_median, 3),
            num(r.sd_ratio_median, 2),
            "n/a" if math.isnan(r.khat_usable) else f"{int(r.khat_usable)} of {r.models}",
            num(r.wall_time_s_median, 1),
        ]
        for r in pooled.itertuples()
    ]
    lines += [table(header, rows), ""]
    lines += ["## Best divergence per model (smallest worst-variable W1)", ""]
    rows = []
    for model, group in summary.groupby("model", sort=False):
        fitted = group[group["method"] != "nuts"].dropna(subset=["w1_max"])
        nuts = group.loc[group["method"] == "nuts", "w1_max"]
        if fitted.empty:
            continue
        best = fitted.loc[fitted["w1_max"].idxmin()]
        rows.append(
            [
                model,
                best["method"],
                num(best["w1_max"], 3),
                "n/a" if math.isnan(best["khat"]) else num(best["khat"], 2),
                num(nuts.iloc[0], 3) if len(nuts) else "-",
            ]
        )
    header = ["model", "best divergence", "its W1 max", "its k-hat", "NUTS W1 max"]
    lines += [table(header, rows), "", "## Per model", ""]
    lines += [summary_markdown(summary.drop(columns="reference")), ""]
    if failures:
        lines += ["## Failures", ""]
        lines += [f"- {model}, {method}: {error}" for (model, method), error in failures.items()]
        lines += [""]
    lines += ["![accuracy against wall time](posteriordb_accuracy.png)", ""]
    return "\n".join(lines)


def _command(models: list[str], args) -> str:
    """The command that regenerates every row of the results (the runs are seeded)."""
    parts = ["python benchmarks/posteriordb.py", "--models", ",".join(models)]
    parts += ["--quick"] if args.quick else []
    if Path(args.out).resolve() != DEFAULT_OUT:
        parts += ["--out", shlex.quote(str(args.out))]
    return " ".join(parts)


def _previous(out: Path, models: list[str]) -> tuple[list[pd.DataFrame], dict]:
    """Rows of earlier runs in ``out`` for the models not run now (``--append``)."""
    tables, failures = [], {}
    path = out / "posteriordb_variables.csv"
    if path.is_file():
        table = pd.read_csv(path)
        tables.append(table[~table["model"].isin(models)])
    path = out / "posteriordb_failures.csv"
    if path.is_file():
        for row in pd.read_csv(path).itertuples():
            if row.model not in models:
                failures[(row.model, row.method)] = row.error
    return tables, failures


def _write_results(out: Path, tables: list, failures: dict, settings: dict, args) -> str:
    """Write the csv files, the Markdown report and the figure; return the report."""
    variables = pd.concat(tables, ignore_index=True)
    summary = summarize_by_method(variables)
    variables.to_csv(out / "posteriordb_variables.csv", index=False)
    summary.to_csv(out / "posteriordb.csv", index=False)
    rows = [{"model": m, "method": k, "error": e} for (m, k), e in failures.items()]
    pd.DataFrame(rows, columns=["model", "method", "error"]).to_csv(
        out / "posteriordb_failures.csv", index=False
    )
    command = _command(list(dict.fromkeys(summary["model"])), args)
    text = _markdown(summary, _pooled(summary), failures, settings, command)
    (out / "posteriordb.md").write_text(text)
    plot_accuracy_vs_time(
        summary,
        error="w1_max",
        group="model",
        title="Worst-variable W1 (reference-sd units) against wall time; lower left is better",
        path=out / "posteriordb_accuracy.png",
    )
    return text


def main(args) -> None:
    torch.set_num_threads(1)
    settings = QUICK if args.quick else FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.render:
        tables, failures = _previous(out, [])
        if not tables:
            raise SystemExit(f"--render: no posteriordb_variables.csv in {out}")
        print(_write_results(out, tables, failures, settings, args))
        return
    models = _model_names(args)
    tables, failures = _previous(out, models) if args.append else ([], {})
    text = ""
    for model in models:
        began = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            result = run_zoo_comparison(
                model,
                LOSSES,
                nuts=True,
                reference="posteriordb",
                figures=False,
                posteriordb=args.posteriordb,
                progress=False,
                seed=0,
                **settings,
            )
        failures.update({(model, m): e for m, e in result.failures.items()})
        model_table = result.table[result.table["method"] != "posteriordb"]
        tables.append(model_table)
        summary = summarize_by_method(model_table)
        print(f"{model}: {time.perf_counter() - began:.0f} s", flush=True)
        print(summary.drop(columns=["model", "reference"]).to_string(index=False), flush=True)
        # Write after every model, so that a long run leaves its results so far.
        text = _write_results(out, tables, failures, settings, args)
    print(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="", help="comma-separated zoo names")
    parser.add_argument("--all", action="store_true", help="all twelve zoo models")
    parser.add_argument("--quick", action="store_true", help="few steps and draws")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder")
    parser.add_argument(
        "--render",
        action="store_true",
        help="only rewrite the report and figure from the csv files in the output folder",
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the rows of other models already in the output folder",
    )
    parser.add_argument(
        "--posteriordb", default=None, help="posteriordb folder (default: $PYRODIV_POSTERIORDB)"
    )
    main(parser.parse_args())
