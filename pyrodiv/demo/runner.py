r"""Run every experiment of the talk and write figures, ``results.json`` and ``report.md``.

Example::

    >>> from pyrodiv.demo.runner import run_demo
    >>> results = run_demo("out/demo", quick=True)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from .beyond import beyond_the_talk
from .bimodal import bimodal_fits
from .docs_figures import figure_numbers
from .emd import earth_movers
from .fdiv_table import fdiv_table
from .landscapes import landscapes
from .mixtures import mixture_visuals
from .mle import mle_equivalences
from .normal import learn_normal
from .progress import Tracker
from .reparam import reparam_catalogue

#: Experiment name -> function(out_dir, **settings). Run in this order (the landscapes draw
#: the paths of the bimodal fits and of the f-divergence table).
EXPERIMENTS = {
    "normal": learn_normal,
    "mixtures": mixture_visuals,
    "bimodal": bimodal_fits,
    "fdiv_table": fdiv_table,
    "landscapes": landscapes,
    "reparam": reparam_catalogue,
    "emd": earth_movers,
    "mle": mle_equivalences,
}
#: Experiments beyond the talk (``run_demo(beyond=True)``, ``pyrodiv demo --beyond``), run
#: after the talk's.
BEYOND = {"beyond": beyond_the_talk}

#: The talk's settings (the defaults of each experiment function, spelled out).
FULL = {
    "normal": {"steps": 4000, "lr": 0.01, "particles": 64, "quad_n": 16001},
    "mixtures": {},
    "bimodal": {
        "steps": 4000,
        "lr": 0.01,
        "particles": 64,
        "long_steps": 16000,
        "high_lr": 0.05,
        "basin_seeds": 5,
        "quad_n": 16001,
    },
    "fdiv_table": {"steps": 4000, "lr": 0.03, "particles": 256, "quad_n": 16001},
    "landscapes": {"grid": 100, "estimates": 10, "samples": 128, "quad_n": 16001},
    "reparam": {"n": 200_000, "gumbel_steps": 2000},
    "emd": {"steps": 3000, "lr": 0.01, "samples": 512, "quantile_n": 20000},
    "mle": {"n": 201},
    "beyond": {},
}

#: Fewer steps, draws and grid points; the same outputs. The bimodal fits keep the talk's
#: learning rate (a larger one changes which JSD optimum is reached).
QUICK = {
    "normal": {"steps": 1500, "lr": 0.05, "particles": 64, "quad_n": 4001},
    "mixtures": {"n_grid": 2001},
    "bimodal": {
        "steps": 1200,
        "lr": 0.01,
        "particles": 64,
        "long_steps": 3000,
        "high_lr": 0.05,
        "basin_seeds": 1,
        "quad_n": 4001,
    },
    "fdiv_table": {"steps": 250, "lr": 0.05, "particles": 64, "quad_n": 4001},
    "landscapes": {"grid": 40, "estimates": 2, "samples": 128, "quad_n": 4001},
    "reparam": {"n": 20_000, "gumbel_steps": 300},
    "emd": {"steps": 400, "lr": 0.05, "samples": 256, "quantile_n": 4000},
    "mle": {"n": 101},
    "beyond": {
        "em_points": 500,
        "em_steps": 800,
        "gibbs_points": 50,
        "gibbs_samples": 200,
        "gan_steps": 1000,
        "gan_particles": 128,
        "flow_steps": 600,
    },
}


def demo_settings(quick: bool = False) -> dict:
    """The keyword arguments of each experiment, for the full run or ``--quick``.

    Example::

        >>> demo_settings()["bimodal"]["steps"]
        4000
    """
    base = QUICK if quick else FULL
    return {name: dict(base[name]) for name in {**EXPERIMENTS, **BEYOND}}


#: Measured wall time of each experiment (seconds, one thread, an idle machine): the weights
#: of the progress bar, so that its estimate of the time left is the measured one.
COST = {
    "full": {
        "normal": 3.9,
        "mixtures": 0.2,
        "bimodal": 89.1,
        "fdiv_table": 17.9,
        "landscapes": 3.8,
        "reparam": 4.1,
        "emd": 4.5,
        "mle": 2.4,
        "beyond": 115.0,
    },
    "quick": {
        "normal": 2.3,
        "mixtures": 0.2,
        "bimodal": 15.6,
        "fdiv_table": 3.4,
        "landscapes": 2.1,
        "reparam": 1.9,
        "emd": 0.9,
        "mle": 2.5,
        "beyond": 61.0,
    },
}


def progress_units(name: str, settings: dict) -> int:
    """How many units of progress experiment ``name`` reports with ``settings`` (its SVI
    steps, or its landscapes)."""
    if name == "normal" or name == "fdiv_table" or name == "emd":
        return settings["steps"]
    if name == "bimodal":
        steps = settings["steps"]
        basins = steps if settings.get("basin_seeds", 0) > 1 else 0
        return settings["long_steps"] + steps + 6 * steps + basins
    if name == "landscapes":
        return 1 + len(settings.get("names") or ("",) * 7)
    return 1


def _paths_for_landscapes(results: dict) -> dict:
    paths = {}
    runs = results.get("bimodal", {}).get("runs", {})
    labels = {
        "forward_kl": ("forward_kl", "forward KL from N(0, 1)"),
        "reverse_kl_left": ("reverse_kl", "reverse KL from N(-1, 1)"),
        "reverse_kl_right": ("reverse_kl", "reverse KL from N(1, 1)"),
        "jsd_0": ("jsd", "JSD from N(0, 1)"),
        "jsd_right": ("jsd", "JSD from N(1, 1)"),
        "jsd_left": ("jsd", "JSD from N(-1, 1)"),
        "jsd_right_exp": ("jsd", "JSD from N(1, 1), exp scale"),
    }
    for run, (landscape, label) in labels.items():
        if run in runs:
            paths.setdefault(landscape, []).append((label, runs[run]["trajectory"]))
    rows = results.get("fdiv_table", {}).get("rows", {})
    for name in ("squared_hellinger", "total_variation", "pearson", "neyman"):
        if name in rows:
            for start in ("narrow", "broad"):
                r = rows[name].get(start)
                if r and r.get("trajectory"):
                    s = r["start"]
                    label = f"{name} from N({s[0]:g}, {s[1]:g})"
                    paths.setdefault(name, []).append((label, r["trajectory"]))
    return paths


def to_json(obj):
    """``obj`` with numpy and torch values made JSON-friendly; non-finite floats become the
    strings ``"inf"``, ``"-inf"`` and ``"nan"``.

    Example::

        >>> to_json({"a": float("inf"), "b": np.float64(1.5)})
        {'a': 'inf', 'b': 1.5}
    """
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_json(v) for v in obj]
    if isinstance(obj, np.ndarray | torch.Tensor):
        return to_json(obj.tolist())
    if isinstance(obj, np.generic):
        return to_json(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def run_demo(
    out_dir="out/demo",
    *,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    threads: int = 1,
    only=None,
    beyond: bool = False,
) -> dict:
    r"""Run the experiments of :data:`EXPERIMENTS` (``only``: a subset, in order) with
    :func:`demo_settings`, and write their figures, ``results.json`` (every number),
    ``landscapes.npz`` (the landscape surfaces) and ``report.md`` into ``out_dir``.

    ``threads`` is passed to ``torch.set_num_threads`` for the run (and restored): the fits
    use tensors of a few hundred numbers, for which one thread is fastest, and extra threads
    only contend with other work on the machine. ``beyond=True`` also runs :data:`BEYOND`
    (EM, Gibbs, MCMC kernels, adversarial training and flows, :mod:`pyrodiv.demo.beyond`)
    after the talk's experiments. Returns the results dictionary.

    Example::

        >>> res = run_demo("out/demo", quick=True, progress=False)  # doctest: +SKIP
        >>> sorted(res)[:3]  # doctest: +SKIP
        ['bimodal', 'emd', 'fdiv_table']
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(EXPERIMENTS) if only is None else [n for n in EXPERIMENTS if n in only]
    names += list(BEYOND) if beyond else []
    settings = demo_settings(quick)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    results = {}
    meta = {
        "mode": "quick" if quick else "full",
        "seed": seed,
        "threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "settings": {n: settings[n] for n in names},
        "wall_s": {},
        "cpu_s": {},
    }
    start = time.perf_counter()
    mode = "quick" if quick else "full"
    tracker = Tracker({n: COST[mode][n] for n in names}, enabled=progress)
    try:
        for name in names:
            kwargs = dict(settings[name], seed=seed) if name != "mixtures" else {}
            if name == "landscapes":
                kwargs["paths"] = _paths_for_landscapes(results)
            if name != "mixtures":
                kwargs["progress"] = tracker
            tracker.start(name, progress_units(name, settings[name]))
            t0, c0 = time.perf_counter(), time.process_time()
            results[name] = {**EXPERIMENTS, **BEYOND}[name](out, **kwargs)
            meta["wall_s"][name] = time.perf_counter() - t0
            meta["cpu_s"][name] = time.process_time() - c0
            tracker.finish(name, meta["wall_s"][name])
    finally:
        tracker.close()
        torch.set_num_threads(old_threads)
    meta["wall_s"]["total"] = time.perf_counter() - start
    meta["cpu_s"]["total"] = sum(meta["cpu_s"].values())
    if "landscapes" in results:
        surfaces = results["landscapes"].pop("surfaces")
        np.savez_compressed(out / "landscapes.npz", **surfaces)
    results = {"meta": meta, **results}
    results["docs_figures"] = figure_numbers(to_json(results))
    (out / "results.json").write_text(json.dumps(to_json(results), indent=1))
    from .report import write_report

    write_report(results, out / "report.md")
    return results
