r"""Held-out accuracy of :func:`pyrodiv.approximate` on posteriordb posteriors outside the zoo.

The zoo's twelve posteriors (``../shared/posteriordb``) are the ones the pipeline was tuned on.
This script checks it on other posteriordb posteriors with gold-standard reference draws
(fourteen; none of them in the zoo), whose Pyro models are written from their Stan programs in
``benchmarks/unseen_models.py`` (its docstring lists them, what each tests, and how Stan's flat
priors are replaced by wide proper ones).

Data and reference draws are read at run time from a posteriordb source tree given by
``--posteriordb``: a checkout of ``stan-dev/posteriordb`` or its bare git directory (files are
then read from ``HEAD`` with ``git show``); nothing is copied into this repository.

Each model is fitted with ``approximate(model, divergence=d)`` (default settings) for the
divergences of ``benchmarks/approximate.py`` and scored by the same functions: 1000 guide
draws and 1000 PSIS-resampled draws against the reference (10 chains thinned to 5000 draws),
worst-variable W1 and sd ratios in reference sds, k-hat, wall time; a fit passes when its W1
max <= 0.25 and every sd ratio is in [0.8, 1.25] (and its divergence stage did not fail).
``--nuts-models`` names the models whose NUTS (1 chain, 1000 warmup + 1000 draws) is run and
timed as a baseline; ``--append`` keeps the rows of the models not run, and the NUTS rows
of the models run without NUTS this time. The report's *Regenerate* line names every model in
the results and every model with a NUTS row (the command that rebuilds the whole file at
once); the command of the last run, if it differs, is given after it.

Writes ``unseen_posteriors.csv``, ``unseen_posteriors_variables.csv`` and
``unseen_posteriors.md`` to ``--out``::

    OMP_NUM_THREADS=1 python benchmarks/unseen_posteriors.py \
        --posteriordb /path/to/posteriordb [--models arma11,gp_regr] [--nuts-models ''] \\
        [--append] [--render]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import subprocess
import time
import zipfile
from pathlib import Path

import pandas as pd
import torch
from approximate import (
    DIVERGENCES,
    W1_LIMIT,
    _summary,
    _warm_up,
    fit_and_resample,
    nuts_reference,
)
from unseen_models import DEFAULT_MODELS, NUTS_MODELS, UNSEEN, Unseen

import pyrodiv
from pyrodiv.inference.inference_data import samples_to_inference_data
from pyrodiv.inference.output import num, table
from pyrodiv.zoo.comparison import REFERENCE_DRAWS_PER_CHAIN
from pyrodiv.zoo.posteriordb import group_draws

OUT = Path(__file__).resolve().parent / "results"
#: The full posteriordb repository (a checkout or its git directory): $POSTERIORDB_REPO, else a
#: ``posteriordb`` checkout beside this one.
BESIDE = Path(__file__).resolve().parents[2] / "posteriordb"
MIRROR = os.environ.get("POSTERIORDB_REPO", str(BESIDE))
DB = "posterior_database"


# ---- posteriordb source ---------------------------------------------------------------------


class Source:
    """A posteriordb source tree: a checkout, or a bare git directory read at ``HEAD``."""

    def __init__(self, path: str):
        self.path = Path(path).expanduser()
        self.checkout = (self.path / DB).is_dir()
        if not self.checkout and not (self.path / "HEAD").is_file():
            raise FileNotFoundError(
                f"--posteriordb {str(self.path)!r} is neither a posteriordb checkout (with a "
                f"{DB}/ folder) nor its git directory"
            )

    def _git(self, *args: str) -> bytes:
        where = ["-C", str(self.path)] if self.checkout else ["--git-dir", str(self.path)]
        return subprocess.run(["git", *where, *args], check=True, capture_output=True).stdout

    def commit(self) -> str:
        try:
            return self._git("rev-parse", "HEAD").decode().strip()
        except (subprocess.CalledProcessError, FileNotFoundError):
            return "unknown (not a git tree)"

    def read(self, relative: str) -> bytes:
        if self.checkout:
            return (self.path / relative).read_bytes()
        try:
            return self._git("show", f"HEAD:{relative}")
        except subprocess.CalledProcessError as error:
            raise FileNotFoundError(f"{relative} not in {self.path} at HEAD") from error

    def json_zip(self, relative: str):
        raw = self.read(relative)
        if raw.startswith(b"version https://git-lfs"):
            raise ValueError(f"{relative} is a Git LFS pointer, not the file")
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            return json.loads(z.read(z.namelist()[0]))

    def posterior(self, name: str) -> dict:
        return json.loads(self.read(f"{DB}/posteriors/{name}.json"))

    def data(self, name: str) -> dict:
        data_name = self.posterior(name)["data_name"]
        return self.json_zip(f"{DB}/data/data/{data_name}.json.zip")

    def reference(self, name: str) -> dict[str, torch.Tensor]:
        chains = self.json_zip(f"{DB}/reference_posteriors/draws/draws/{name}.json.zip")
        flat = {k: [c[k] for c in chains] for k in chains[0]}
        return {k: torch.as_tensor(v) for k, v in group_draws(flat).items()}


def reference_idata(entry: Unseen, source: Source, kwargs: dict):
    """The reference draws (10 chains, every ``draws // 400``-th draw: 500 of 1000) as
    InferenceData."""
    draws = source.reference(entry.posterior)
    step = max(1, next(iter(draws.values())).shape[1] // REFERENCE_DRAWS_PER_CHAIN)
    latents = {k: v[:, ::step] for k, v in draws.items()}
    attrs = {"source": "posteriordb", "posterior": entry.posterior, "thinned_every": step}
    return samples_to_inference_data(entry.model, latents, attrs=attrs, **kwargs)


# ---- runs -----------------------------------------------------------------------------------


def run_model(entry: Unseen, source: Source, divergences, nuts: bool):
    """Fit every divergence to one posterior; the per-variable table and the per-fit rows."""
    kwargs = entry.data_to_kwargs(source.data(entry.posterior))
    idatas = {"posteriordb": reference_idata(entry, source, kwargs)}
    extra = []
    if nuts:
        idatas["nuts"], row = nuts_reference(entry.name, entry.model, kwargs)
        extra.append(row)
    for divergence in divergences:
        began = time.perf_counter()
        try:
            fitted, rows = fit_and_resample(entry.name, entry.model, kwargs, divergence)
        except Exception as error:  # a crash is a result here, recorded and reported
            reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"
            print(f"  {entry.name} {divergence}: FAILED {reason}", flush=True)
            for method in (divergence, f"{divergence}+psis"):
                seconds = time.perf_counter() - began if method == divergence else 0
                extra.append(
                    {"model": entry.name, "method": method, "stages": f"failed: {reason}",
                     "error": reason, "fit_seconds": seconds}
                )  # fmt: skip
            continue
        idatas.update(fitted)
        extra.extend(rows)
    comparison = pyrodiv.compare_posteriors(idatas, reference="posteriordb")
    comparison.insert(0, "model", entry.name)
    return comparison[comparison["method"] != "posteriordb"], extra


def summarize(variables: pd.DataFrame, extra: pd.DataFrame) -> pd.DataFrame:
    """``benchmarks/approximate.py``'s summary (pass rule included), plus the failed fits."""
    for column in (
        "nuts_same_run_s",
        "khat_fit",
        "gradient_evaluations",
        "warnings",
        "error",
        "fit_seconds",
        "model_seconds",
    ):
        if column not in extra.columns:
            extra[column] = math.nan
    summary = _summary(variables, extra, {})
    crashed = extra[extra["error"].notna()][["model", "method", "stages", "error"]]
    summary = pd.concat([summary, crashed], ignore_index=True)
    summary["passes"] = summary["passes"].fillna(False).astype(bool)
    return summary


def _run_times(summary: pd.DataFrame, extra: pd.DataFrame) -> list[str]:
    """Per model: NUTS time, the five fits' time, the whole model's time (fits, draws,
    scoring, NUTS)."""
    rows = []
    for model, group in summary.groupby("model", sort=False):
        fits = group[~group["method"].str.endswith("+psis") & (group["method"] != "nuts")]
        nuts = group.loc[group["method"] == "nuts", "wall_time_s"]
        total = extra.loc[extra["model"] == model, "model_seconds"].dropna()
        rows.append(
            [
                model,
                num(nuts.iloc[0], 1) if len(nuts) else "not run",
                num(fits["wall_time_s"].sum(), 1),
                num(total.iloc[0], 0) if len(total) else "-",
            ]
        )
    header = ["model", "NUTS 1000 + 1000 (s)", "5 fits (s)", "whole model (s)"]
    return [table(header, rows)]


def _pyrodiv_version() -> str:
    """The commit of the pyrodiv source in use, and its uncommitted files, if any."""
    root = Path(pyrodiv.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True
        ).stdout.decode()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "pyrodiv"],
            check=True,
            capture_output=True,
        ).stdout.decode()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown (not a git tree)"
    changed = [line[3:] for line in dirty.splitlines()]
    return f"`{commit.strip()}`" + (
        f" (uncommitted changes in {', '.join(changed)})" if changed else ""
    )


def _commands(summary: pd.DataFrame, extra: pd.DataFrame, posteriordb: str) -> list[str]:
    """The *Regenerate* line: the command that reruns every model in the results and every
    NUTS baseline in them; then the commands of the runs whose rows the results hold."""
    present = set(summary["model"])
    models = [n for n in UNSEEN if n in present] + sorted(present - set(UNSEEN))
    nuts = [n for n in models if ((summary["model"] == n) & (summary["method"] == "nuts")).any()]
    full = (
        "OMP_NUM_THREADS=1 python benchmarks/unseen_posteriors.py "
        f"--posteriordb {posteriordb} --models {','.join(models)} --nuts-models '{','.join(nuts)}'"
    )
    lines = [f"Regenerate: `{full}`", ""]
    runs = list(extra.get("command", pd.Series(dtype=object)).dropna().unique())
    if runs and runs != [full]:
        lines += [
            "These results were assembled with `--append` by: "
            + "; ".join(f"`{r}`" for r in runs)
            + " (and, for rows without a recorded command, earlier runs of the same script).",
            "",
        ]
    return lines


def _markdown(
    summary: pd.DataFrame, extra: pd.DataFrame, posteriordb: str, commit: str, version: str
) -> str:
    models = list(dict.fromkeys(summary["model"]))
    lines = [
        "# `pyrodiv.approximate` on posteriordb posteriors outside the zoo",
        "",
        *_commands(summary, extra, posteriordb),
        f"posteriordb commit: `{commit}`; pyrodiv: {version}. Models written in "
        "`benchmarks/unseen_models.py` "
        f"from the Stan programs: {', '.join(models)}. None of them was used to tune "
        "`approximate`. Default settings of `approximate`, seed 0, float64, one torch thread, "
        "on a shared 2-core machine (under load from other work, so times are rough). "
        "Scored as `benchmarks/approximate.py`: 1000 guide draws "
        "(`method`) or 1000 draws PSIS-resampled from 2000 (`method+psis`) against the "
        "reference (10 chains of 1000, every 2nd draw: 5000 draws); a fit *passes* when its "
        f"worst-variable W1 <= {W1_LIMIT} reference sds, every sd ratio is in [0.8, 1.25], "
        "and the divergence's own stage did not collapse, run away or fail. NUTS: 1 chain, "
        "1000 warmup + 1000 draws, same run, where it was run (with `--append`, the NUTS "
        "rows of models not in `--nuts-models` are kept from the earlier run). k-hat: the "
        "fit's own "
        "(`fit.khat`, 1000 draws).",
        "",
        "## Per divergence",
        "",
    ]
    rows = []
    fits = summary[summary["method"] != "nuts"]
    for method, group in fits.groupby("method", sort=False):
        timed = group[group["nuts_s"].notna()]
        rows.append(
            [
                method,
                f"{int(group['passes'].sum())} of {len(group)}",
                num(group["w1_max"].median(), 3),
                num(group["w1_max"].max(), 3),
                num(group["wall_time_s"].sum(), 1),
                num(timed["wall_time_s"].sum() / timed["nuts_s"].sum(), 3) if len(timed) else "-",
                num(timed["time_fraction"].max(), 3) if len(timed) else "-",
            ]
        )
    header = [
        "method",
        "passes",
        "W1 max (median)",
        "W1 max (worst)",
        "time (s, summed)",
        "time / NUTS, summed",
        "worst fraction",
    ]
    lines += [table(header, rows), "", "## Per model", ""]
    rows = []
    for r in summary.itertuples():
        failed = isinstance(getattr(r, "error", None), str)
        rows.append(
            [
                r.model,
                r.method,
                "yes" if r.passes else "no",
                "crashed" if failed else num(r.w1_max, 3),
                "-" if failed else f"{num(r.sd_ratio_min, 2)} / {num(r.sd_ratio_max, 2)}",
                num(r.khat_fit, 2),
                num(r.wall_time_s, 1),
                num(r.time_fraction, 3),
                "-" if pd.isna(r.gradient_evaluations) else str(int(r.gradient_evaluations)),
            ]
        )
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
    ]
    lines += [table(header, rows), "", "## Run time", ""]
    lines += _run_times(summary, extra) + ["", "## Stages and warnings", ""]
    for r in summary.itertuples():
        if r.method.endswith("+psis") or r.method == "nuts":
            continue
        lines.append(f"- {r.model}, {r.method}: {r.stages}")
        if isinstance(r.warnings, str) and r.warnings:
            lines.append(f"  - warned: {r.warnings}")
    return "\n".join(lines) + "\n"


def _names(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [n for n in names if n not in UNSEEN]
    if unknown:
        raise ValueError(f"unknown models {unknown}; known: {', '.join(UNSEEN)}")
    return names


def main(args) -> None:
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    out = Path(args.out)
    source = Source(args.posteriordb)
    names, nuts_models = _names(args.models), _names(args.nuts_models)
    files = {k: out / f"unseen_posteriors_{k}.csv" for k in ("variables", "extra")}
    if not args.render:
        version = _pyrodiv_version()
        command = (
            "OMP_NUM_THREADS=1 python benchmarks/unseen_posteriors.py "
            f"--posteriordb {args.posteriordb} --models {args.models} "
            f"--nuts-models '{args.nuts_models}'" + (" --append" if args.append else "")
        )
        variables, extra = [], []
        if args.append:  # keep the other models' rows, and NUTS's where it is not rerun

            def kept(table_):
                rerun = table_["model"].isin(names)
                old_nuts = (table_["method"] == "nuts") & ~table_["model"].isin(nuts_models)
                return table_[~rerun | old_nuts]

            variables = [kept(pd.read_csv(files["variables"]))]
            extra = kept(pd.read_csv(files["extra"])).to_dict("records")
        _warm_up()
        for name in names:
            began = time.perf_counter()
            table_, rows = run_model(
                UNSEEN[name], source, args.divergences.split(","), name in nuts_models
            )
            seconds = time.perf_counter() - began
            for row in rows:
                row["model_seconds"] = seconds
                row["pyrodiv"] = version
                row["command"] = command
            variables.append(table_)
            extra += rows
            print(f"{name}: {seconds:.0f} s", flush=True)
            pd.concat(variables).to_csv(files["variables"], index=False)
            pd.DataFrame(extra).to_csv(files["extra"], index=False)
    variables = pd.read_csv(files["variables"])
    extra = pd.read_csv(files["extra"])
    summary = summarize(variables, extra)
    summary.to_csv(out / "unseen_posteriors.csv", index=False)
    version = "; ".join(str(v) for v in extra.get("pyrodiv", pd.Series()).dropna().unique())
    text = _markdown(summary, extra, args.posteriordb, source.commit(), version or "unknown")
    (out / "unseen_posteriors.md").write_text(text)
    print(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posteriordb", default=MIRROR, help="posteriordb checkout or git dir")
    parser.add_argument("--models", default=DEFAULT_MODELS, help=f"of: {', '.join(UNSEEN)}")
    parser.add_argument("--divergences", default=",".join(DIVERGENCES))
    parser.add_argument(
        "--nuts-models",
        default=NUTS_MODELS,
        help="models whose NUTS (1 chain, 1000 warmup + 1000 draws) is run and timed as a "
        "baseline ('' for none; hmm_drive_0's takes over half an hour on one thread)",
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep other models' rows, and the NUTS rows of models not in --nuts-models",
    )
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--render", action="store_true", help="only rewrite the report")
    main(parser.parse_args())
