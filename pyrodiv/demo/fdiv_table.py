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
exact divergence at the fit exceeds it; a fit whose estimate stops being finite is reported as
failed, with the step and the reason, in the table and on the figure.

The 30 fits are trained together as one batch of independent fits
(:func:`~pyrodiv.demo.batched.fit_rows`): each row gets the estimate of ``FDivergence`` on its
own particles and its own Adam step, as 30 separate fits would (one row alone is
``pyrodiv.FDivergence`` in :func:`pyrodiv.fit`, bit for bit), at about the cost of one.
"""

from __future__ import annotations

import math

import torch

from .. import GENERATOR_NAMES, get_generator
from ..output import new_figure, save_figure
from .batched import Row, fit_rows, tail_mean
from .bimodal import basin
from .common import (
    COLORS,
    bimodal,
    exact_divergence,
    exact_optimum,
    fmt_normal,
    log_prob_fn,
    normal,
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
    :math:`D_f` (the estimate of ``FDivergence(name, **params)``), and compare with the exact
    local optimum by quadrature from the same start: :func:`fit_rows` with one row, which is
    ``pyrodiv.FDivergence`` in :func:`pyrodiv.fit`, bit for bit.

    The fitted Normal is the average of the trajectory over the last quarter of the steps
    (Polyak averaging; the raw final state is kept too). Returns a dict with ``fitted``,
    ``final``, ``exact_at_fit`` (the exact :math:`D_f` at the fit), ``exact_at_start``,
    ``exact`` (the optimum, or ``None`` where the exact divergence at the start is infinite),
    ``reached`` and ``error`` (why the fit stopped, if it did).

    Example::

        >>> row = fit_generator("kl_reverse", {}, (1.0, 1.0), steps=300, lr=0.05,
        ...                     particles=64, quad_n=2001)
        >>> row["reached"]
        True
    """
    return fit_rows_table(
        [(name, params, tuple(start))],
        steps=steps,
        lr=lr,
        particles=particles,
        seed=seed,
        quad_n=quad_n,
    )[0]


def fit_rows_table(
    jobs,
    *,
    steps: int = 4000,
    lr: float = 0.03,
    particles: int = 256,
    seed: int = 0,
    quad_n: int = 16001,
    progress=False,
) -> list[dict]:
    """Fit every ``(name, params, start)`` of ``jobs`` at once (:func:`fit_rows`: one batch of
    independent fits) and compare each with its exact local optimum (see
    :func:`fit_generator`, which is this with one job)."""
    log_p = log_prob_fn(bimodal)
    fits = fit_rows(
        bimodal(),
        [Row(name, dict(params), start=tuple(start)) for name, params, start in jobs],
        steps=steps,
        lr=lr,
        particles=particles,
        seed=seed,
        progress=progress,
    )
    return [
        _row(name, params, start, fit, steps, lr, particles, quad_n, log_p)
        for (name, params, start), fit in zip(jobs, fits, strict=True)
    ]


def _row(name, params, start, fit, steps, lr, particles, quad_n, log_p) -> dict:
    row = {
        "start": list(start),
        "steps": steps,
        "lr": lr,
        "particles": particles,
        "error": fit["error"],
        "failed_at": fit["failed_at"],
    }
    t = fit["trajectory"]
    if fit["error"] is None:
        loc, var = tail_mean(t, steps)
        row["fitted"] = {"loc": loc, "variance": var}
        row["final"] = {"loc": fit["loc"], "variance": fit["variance"]}
        row["exact_at_fit"] = exact_divergence(name, log_p, loc, var, n=quad_n, **params)
    else:
        row["fitted"] = row["final"] = row["exact_at_fit"] = None
        row["last_finite"] = {"loc": fit["loc"], "variance": fit["variance"]}
    row["trajectory"] = {"step": t["step"], "loc": t["loc"], "variance": t["variance"]}
    row["exact_at_start"] = exact_divergence(name, log_p, *start, n=quad_n, **params)
    row["exact"] = (
        exact_optimum(name, log_p, start=start, n=quad_n, **params)
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
    specs = generator_specs(names)
    result = {
        "settings": {
            "steps": steps,
            "lr": lr,
            "particles": particles,
            "seed": seed,
            "starts": {k: list(v) for k, v in STARTS.items()},
            "fitted": "average over the last quarter of the steps",
            "batched": "all rows trained together as independent fits (pyrodiv.demo.batched)",
        },
        "rows": {},
        "figures": [],
    }
    jobs = [(spec, start_name) for spec in specs for start_name in STARTS]
    fitted = fit_rows_table(
        [(name, params, STARTS[start_name]) for (name, params), start_name in jobs],
        steps=steps,
        lr=lr,
        particles=particles,
        seed=seed,
        quad_n=quad_n,
        progress=progress,
    )
    rows = {}
    for ((name, params), start_name), fit in zip(jobs, fitted, strict=True):
        label = spec_label(name, params)
        rows.setdefault(
            label,
            {"name": name, "params": params, "formula": get_generator(name, **params).formula},
        )
        rows[label][start_name] = fit
    for row in rows.values():
        row["verdict"], row["best_exact"] = verdict({k: row[k] for k in STARTS if k in row})
    result["rows"] = rows
    if out_dir is not None:
        result["figures"].append(_figure(out_dir, rows))
    return result


#: The colours and labels of the two starts in the figure.
_START_STYLE = {"narrow": ("tab:red", "from N(1, 1)"), "broad": ("tab:purple", "from N(1, 25)")}
#: Curves are cut at this density (a spike above it is marked with its peak); the band above
#: it holds each panel's notes.
_Y_CLIP = 0.40
_Y_TOP = 0.66


def _figure(out_dir, rows):
    """``fdiv_table.png``: one panel per generator, 3 across, with one legend for all; each
    panel states its fits (and says which failed or collapsed), and a spike taller than the
    panel is marked with its peak instead of being cut off silently."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    log_p = log_prob_fn(bimodal)
    n = len(rows)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig, axes = new_figure(
        nrows, ncols, size=(5.2 * ncols, 3.3 * nrows + 1.2), squeeze=False, sharex=True
    )
    xs = torch.linspace(-20, 20, 801, dtype=torch.float64)
    for ax, (label, row) in zip(axes.flat, rows.items(), strict=False):
        ax.fill_between(xs, log_p(xs).exp(), color="0.85")
        ax.plot(xs, log_p(xs).exp(), color="black", lw=1.0)
        best = row["best_exact"]
        if best:
            q = normal(best["loc"], best["variance"], torch.float64).log_prob(xs).exp()
            ax.plot(xs, q, color=COLORS["exact"], ls=":", lw=2.0)
        notes = []
        for start_name, (color, text) in _START_STYLE.items():
            r = row.get(start_name)
            if r is None:
                continue
            if not r["fitted"]:
                notes.append((f"{text}: FAILED ({_reason(r)}), no curve", color))
                continue
            loc, var = r["fitted"]["loc"], r["fitted"]["variance"]
            q = normal(loc, var, torch.float64).log_prob(xs).exp()
            ax.plot(xs, q.clamp(max=_Y_CLIP), color=color, lw=1.8)
            peak = 1.0 / math.sqrt(2 * math.pi * var)
            if peak > _Y_CLIP:  # a spike taller than the panel: mark its top and its height
                ax.plot(loc, _Y_CLIP, marker="^", color=color, ms=7, zorder=5)
                ax.annotate(
                    f"peak {peak:.3g}",
                    (loc, _Y_CLIP),
                    xytext=(6 if loc < 10 else -6, -10),
                    textcoords="offset points",
                    ha="left" if loc < 10 else "right",
                    fontsize=8,
                    color=color,
                )
            tag = _tag(r, row["verdict"])
            notes.append((f"{text}: {fmt_normal(loc, var)}{tag}", color))
        if best:
            notes.append((f"exact optimum: {fmt_normal(best['loc'], best['variance'])}", "black"))
        for k, (text, color) in enumerate(notes):
            ax.text(
                0.02,
                0.97 - 0.085 * k,
                text,
                transform=ax.transAxes,
                fontsize=8,
                color=color,
                va="top",
                bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 0.6},
                zorder=6,
            )
        ax.set_title(f"{label}: {row['verdict']}", fontsize=11)
        ax.set_xlim(-20, 20)
        ax.set_ylim(0, _Y_TOP)
        ax.set_yticks([0.0, 0.1, 0.2, 0.3, 0.4])
        ax.axhline(_Y_CLIP, color="0.8", lw=0.6, zorder=0)
        ax.set_ylabel("density", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("x")
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    handles = [
        Patch(facecolor="0.85", edgecolor="black", label="target P = {N(-7, 1.4), N(7, 1.4)}"),
        Line2D([], [], color=_START_STYLE["narrow"][0], lw=1.8, label="fit from N(1, 1)"),
        Line2D([], [], color=_START_STYLE["broad"][0], lw=1.8, label="fit from N(1, 25)"),
        Line2D([], [], color=COLORS["exact"], ls=":", lw=2.0, label="exact optimum over Normals"),
        Line2D([], [], color="0.3", marker="^", ls="", label="spike taller than the panel"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=5, fontsize=10, frameon=False)
    fig.suptitle(
        "f-divergence fits of N(mu, L^2) to the bimodal target from a narrow and a broad start; "
        "each heading is the verdict of the exact optimum\n"
        "Fitted = mean of the last quarter of the steps. From the narrow start N(1, 1), Q sees "
        "p/q ~ 0 only (blind to P's mass), so mass-covering generators can collapse there; "
        "a fit that failed is named in its panel.",
        fontsize=10.5,
    )
    return save_figure(fig, out_dir, "fdiv_table.png")


def _reason(r) -> str:
    error = r.get("error") or "failed"
    return error.split(": ", 1)[-1]


def _tag(r, verdict: str) -> str:
    if r["reached"]:
        return ", reached the exact optimum from its start"
    if r["fitted"]["variance"] < 0.5 and verdict == "mass-covering":
        return ", collapsed (blind to P's mass)"
    if r["fitted"]["variance"] < 0.5:
        return ", collapsed"
    return ", not at the optimum"
