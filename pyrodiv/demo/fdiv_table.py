r"""Experiment 5: the f-divergence table, fitted.

For every generator in :data:`pyrodiv.GENERATOR_NAMES` (``amari_alpha`` at
:math:`\alpha = 0.5, 2` and ``t_power`` at powers 0.5 and 2), fit :math:`Q = N(\mu, L^2)` to
the bimodal target with ``pyrodiv.FDivergence`` (:math:`D_f(P\|Q) = \mathbb{E}_Q[f(p/q)]`,
draws :math:`x\sim Q`) from two starts, a narrow :math:`N(1, 1)` (the talk's) and a broad
:math:`N(1, 25)`, and compare with the exact local optimum by quadrature from the same start.

The verdict ("mode-seeking" or "mass-covering") is read from the *exact* global optimum over
Normals, the better of the local optima found from the two starts. The fits show something
else too: from the narrow start, :math:`Q` sees density ratios :math:`p/q \approx 0` only, so
the estimate is blind to :math:`P`'s mass away from :math:`Q`, and mass-covering generators
whose :math:`f` is finite at 0 shrink :math:`Q` instead of widening it; generators whose
:math:`f` grows without bound (Neyman, ``log1p_abs``) have heavy-tailed gradients. Each row
says whether the fit reached the exact optimum from its start and, when not, by how much the
exact divergence at the fit exceeds it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import FDivergence
from ..generators import GENERATOR_NAMES, get_generator
from ..output import new_figure, save_figure
from .bimodal import basin
from .common import (
    COLORS,
    bimodal,
    exact_divergence,
    exact_optimum,
    fit_normal,
    fmt_normal,
    log_prob_fn,
    plot_densities,
    target_model,
)

#: Parameter values tried for the parametric generators.
PARAMETRIC = {
    "amari_alpha": [{"alpha": 0.5}, {"alpha": 2.0}],
    "t_power": [{"power": 0.5}, {"power": 2.0}],
}
#: The two starts, (mu, variance).
STARTS = {"narrow": (1.0, 1.0), "broad": (1.0, 25.0)}


def generator_specs(names=None) -> list[tuple[str, dict]]:
    """``(name, params)`` for every registered generator, parametric ones expanded with
    :data:`PARAMETRIC`.

    Example::

        >>> ("amari_alpha", {"alpha": 2.0}) in generator_specs()
        True
    """
    specs = []
    for name in GENERATOR_NAMES if names is None else names:
        for params in PARAMETRIC.get(name, [{}]):
            specs.append((name, params))
    return specs


def spec_label(name: str, params: dict) -> str:
    """``"amari_alpha(alpha=0.5)"`` or ``"pearson"``."""
    if not params:
        return name
    return f"{name}({', '.join(f'{k}={v:g}' for k, v in params.items())})"


def fit_generator(
    name: str,
    params: dict,
    start,
    *,
    steps: int = 4000,
    lr: float = 0.03,
    particles: int = 256,
    seed: int = 0,
    quad_n: int = 16001,
) -> dict:
    r"""Fit :math:`N(\mu, L^2)` from ``start = (mu, variance)`` to the bimodal target by
    :math:`D_f` (``FDivergence(name, **params)``), and compare with the exact local optimum by
    quadrature from the same start.

    The fitted Normal is the average of the trajectory over the last quarter of the steps
    (Polyak averaging; the raw final state is kept too). Returns a dict with ``fitted``,
    ``final``, ``exact_at_fit`` (the exact :math:`D_f` at the fit), ``exact_at_start``,
    ``exact`` (the optimum, or ``None`` where the exact divergence at the start is infinite),
    ``reached`` and ``error`` (the loss's message if the fit failed).

    Example::

        >>> row = fit_generator("kl_reverse", {}, (1.0, 1.0), steps=300, lr=0.05,
        ...                     particles=64, quad_n=2001)
        >>> row["reached"]
        True
    """
    log_p = log_prob_fn(bimodal)
    gen = get_generator(name, **params)
    row = {"start": list(start), "steps": steps, "lr": lr, "particles": particles, "error": None}
    loss = FDivergence(
        name, num_particles=particles, vectorize_particles=True, max_plate_nesting=0, **params
    )
    try:
        fit = fit_normal(target_model(bimodal()), loss, start=start, steps=steps, lr=lr, seed=seed)
    except ValueError as err:
        fit = None
        row["error"] = str(err).split(";")[0]
    if fit is not None:
        t = fit["trajectory"]
        tail = [k for k, s in enumerate(t["step"]) if s > 0.75 * steps] or [len(t["step"]) - 1]
        loc = float(np.mean([t["loc"][k] for k in tail]))
        var = float(np.mean([t["variance"][k] for k in tail]))
        row["fitted"] = {"loc": loc, "variance": var}
        row["final"] = {"loc": fit["loc"], "variance": fit["variance"]}
        row["trajectory"] = {"step": t["step"], "loc": t["loc"], "variance": t["variance"]}
        row["exact_at_fit"] = exact_divergence(gen, log_p, loc, var, n=quad_n)
    else:
        row["fitted"] = row["final"] = row["trajectory"] = None
        row["exact_at_fit"] = None
    row["exact_at_start"] = exact_divergence(gen, log_p, *start, n=quad_n)
    row["exact"] = (
        exact_optimum(gen, log_p, start=start, n=quad_n)
        if math.isfinite(row["exact_at_start"])
        else None
    )
    row["reached"] = _reached(row["fitted"], row["exact"], row["exact_at_fit"])
    row["fit_basin"] = basin(**row["fitted"]) if row["fitted"] else None
    row["exact_basin"] = (
        basin(row["exact"]["loc"], row["exact"]["variance"]) if row["exact"] else None
    )
    return row


def _reached(fitted, exact, exact_at_fit) -> bool | None:
    """Whether a fit reached the exact optimum: its exact divergence is within
    max(0.005, 1%) of the optimum's, or its mean and variance are close to the optimum's
    (0.5 and 15%). ``None`` when there is no exact optimum to compare with."""
    if exact is None:
        return None
    if fitted is None:
        return False
    d_opt = exact["divergence"]
    if exact_at_fit is not None and exact_at_fit - d_opt <= max(0.005, 0.01 * abs(d_opt)):
        return True
    close_loc = abs(fitted["loc"] - exact["loc"]) <= 0.5
    close_var = abs(fitted["variance"] - exact["variance"]) <= max(0.3, 0.15 * exact["variance"])
    return bool(close_loc and close_var)


def verdict(rows: dict) -> tuple[str, dict | None]:
    """The verdict from the exact optima of both starts: the basin of the better one
    (``"mode-seeking"``, ``"mass-covering"`` or ``"in between"``), and that optimum.

    Example::

        >>> verdict({"narrow": {"exact": {"loc": 7, "variance": 1.4, "divergence": 0.2}},
        ...          "broad": {"exact": {"loc": 0, "variance": 50, "divergence": 0.3}}})[0]
        'mode-seeking'
    """
    optima = [r["exact"] for r in rows.values() if r.get("exact")]
    if not optima:
        return "unknown", None
    best = min(optima, key=lambda o: o["divergence"])
    kind = basin(best["loc"], best["variance"])
    return {"mode": "mode-seeking", "broad": "mass-covering"}.get(kind, "in between"), best


def fdiv_table(
    out_dir=None,
    *,
    steps: int = 4000,
    lr: float = 0.03,
    particles: int = 256,
    seed: int = 0,
    quad_n: int = 16001,
    names=None,
    progress: bool = False,
) -> dict:
    r"""Fit every generator (:func:`generator_specs`) from both :data:`STARTS` with
    :func:`fit_generator` and tabulate the fits, the exact optima and a verdict
    (:func:`verdict`). ``names`` restricts the generators.

    Writes ``fdiv_table.png`` (the fitted densities, one panel per generator).

    Example::

        >>> res = fdiv_table(steps=200, lr=0.05, particles=64, quad_n=2001,
        ...                  names=["kl_reverse"])
        >>> res["rows"]["kl_reverse"]["verdict"]
        'mode-seeking'
    """
    from tqdm.auto import tqdm

    specs = generator_specs(names)
    result = {
        "settings": {
            "steps": steps,
            "lr": lr,
            "particles": particles,
            "seed": seed,
            "starts": {k: list(v) for k, v in STARTS.items()},
            "fitted": "average over the last quarter of the steps",
        },
        "rows": {},
        "figures": [],
    }
    jobs = [(spec, start_name) for spec in specs for start_name in STARTS]
    rows = {}
    for (name, params), start_name in tqdm(
        jobs, desc="f-divergence table", leave=False, disable=not progress
    ):
        label = spec_label(name, params)
        rows.setdefault(
            label,
            {"name": name, "params": params, "formula": get_generator(name, **params).formula},
        )
        rows[label][start_name] = fit_generator(
            name,
            params,
            STARTS[start_name],
            steps=steps,
            lr=lr,
            particles=particles,
            seed=seed,
            quad_n=quad_n,
        )
    for row in rows.values():
        row["verdict"], row["best_exact"] = verdict({k: row[k] for k in STARTS if k in row})
    result["rows"] = rows
    if out_dir is not None:
        result["figures"].append(_figure(out_dir, rows))
    return result


def _figure(out_dir, rows):
    log_p = log_prob_fn(bimodal)
    n = len(rows)
    ncols = 5 if n > 8 else min(n, 4)
    nrows = math.ceil(n / ncols)
    fig, axes = new_figure(nrows, ncols, size=(3.6 * ncols, 2.9 * nrows), squeeze=False)
    xs = torch.linspace(-20, 20, 801, dtype=torch.float64)
    for ax, (label, row) in zip(axes.flat, rows.items(), strict=False):
        curves = []
        for start_name, color in (("narrow", COLORS["fitted"]), ("broad", "tab:purple")):
            r = row.get(start_name)
            if r and r["fitted"]:
                curves.append(
                    (
                        f"fit from {fmt_normal(*r['start'], 0)}",
                        r["fitted"]["loc"],
                        r["fitted"]["variance"],
                        color,
                        "-",
                    )
                )
        best = row["best_exact"]
        if best:
            curves.append(("exact optimum", best["loc"], best["variance"], COLORS["exact"], ":"))
        plot_densities(ax, log_p, curves, xs=xs, target_label="P")
        ax.set_title(f"{label}\n{row['verdict']}", fontsize=9)
        ax.legend(fontsize=6, loc="upper left")
        top = ax.get_ylim()[1]
        ax.set_ylim(0, min(top, 0.5))
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    fig.suptitle(
        "FDivergence fits of N(mu, L^2) to the bimodal target from N(1, 1) and N(1, 25); "
        "verdict from the exact optimum (dotted)",
        fontsize=11,
    )
    return save_figure(fig, out_dir, "fdiv_table.png")
