r"""Experiment 4: Monte Carlo loss landscapes over a grid of Normals :math:`Q = N(\mu, v)`.

As in the talk, each grid point averages ``estimates`` Monte Carlo estimates of ``samples``
draws each, and the plot shows :math:`\log(1 + \hat D - \min \hat D)`. The estimates are the
ones the losses use (:mod:`pyrodiv.estimators`), applied to the whole grid at once with
``torch.vmap``:

* forward KL: :math:`\frac1K\sum_k \log p(x_k) - \log q(x_k)`, :math:`x_k \sim P`;
* JSD: the two-sample estimate with :math:`x_k \sim P` and :math:`y_k \sim Q`;
* reverse KL and every f-divergence: :math:`\frac1K\sum_k f(p(y_k)/q(y_k))`,
  :math:`y_k \sim Q`.

Draws are shared across the grid (common random numbers: :math:`y_k = \mu + \sqrt v\,
\epsilon_k`), so the surface is smooth and its differences are those the optimizer sees.
Where :math:`Q` is narrow and far from :math:`P`'s mass, the :math:`x\sim Q` estimates see only
density ratios near 0 and are blind to :math:`P`'s other mode: their landscape can have a
minimum where the exact divergence is huge or infinite. The report gives the exact value there.
"""

from __future__ import annotations

import math

import numpy as np
import pyro
import torch

from ..output import new_figure, save_figure
from .batched import Row, fit_rows
from .common import (
    bimodal,
    exact_divergence,
    exact_optimum,
    fmt_normal,
    log_prob_fn,
)

#: name -> (title, quadrature generator, how the estimate draws: "p", "q" or "pq")
LANDSCAPES = {
    "forward_kl": ("Forward KL", "kl_forward", "p"),
    "reverse_kl": ("Reverse KL", "kl_reverse", "q"),
    "jsd": ("Jensen-Shannon", "jensen_shannon", "pq"),
    "squared_hellinger": ("Squared Hellinger", "squared_hellinger", "q"),
    "total_variation": ("Total variation", "total_variation", "q"),
    "pearson": ("Pearson chi-square", "pearson", "q"),
    "neyman": ("Neyman chi-square", "neyman", "q"),
}

#: Starts (mu, variance) of the quadrature searches and of the short f-divergence fits.
STARTS = {"narrow": (1.0, 1.0), "broad": (1.0, 25.0)}


def _vmap_grid(fn):
    """Map ``fn`` over tensors shaped (estimates, samples, grid): vectors of ``samples``
    draws go in, an (estimates, grid) tensor of values comes out."""
    return torch.vmap(torch.vmap(fn, in_dims=-1), in_dims=0)


def mc_landscape(
    name: str,
    mus,
    variances,
    *,
    estimates: int = 10,
    samples: int = 128,
    seed: int = 0,
    chunk: int = 2500,
) -> dict:
    r"""The Monte Carlo estimate :math:`\hat D(P\|N(\mu, v))` of divergence ``name`` (a key of
    :data:`LANDSCAPES`) on the grid ``variances x mus`` for the bimodal target, as the mean of
    ``estimates`` estimates of ``samples`` draws each (float64).

    Returns ``{"Z", "se"}``: arrays of shape ``(len(variances), len(mus))`` with the mean and
    its standard error across the estimates. :func:`mc_landscapes` gives the same for several
    names at once, from the same draws.

    Example::

        >>> res = mc_landscape("reverse_kl", [7.0], [1.4], estimates=2, samples=64)
        >>> bool(abs(res["Z"][0, 0] - math.log(2)) < 1e-9)  # q = a component: log q/p = log 2
        True
    """
    return mc_landscapes(
        [name], mus, variances, estimates=estimates, samples=samples, seed=seed, chunk=chunk
    )[name]


def mc_landscapes(
    names,
    mus,
    variances,
    *,
    estimates: int = 10,
    samples: int = 128,
    seed: int = 0,
    chunk: int = 2500,
) -> dict:
    r""":func:`mc_landscape` for each of ``names``, computed together: every landscape uses the
    same draws (:math:`x_k \sim P` and :math:`y_k = \mu + \sqrt v\,\varepsilon_k`, from
    ``seed``), so the log-densities at them are computed once per grid cell and shared; each
    landscape is what :func:`mc_landscape` gives for it alone.

    Returns ``{name: {"Z", "se"}}``.
    """
    from .. import estimators, get_generator

    names = list(names)
    p = bimodal(torch.float64)
    mu = torch.as_tensor(mus, dtype=torch.float64)
    var = torch.as_tensor(variances, dtype=torch.float64)
    grid_mu = mu.expand(len(var), len(mu)).reshape(-1)
    grid_sd = var.sqrt().unsqueeze(-1).expand(len(var), len(mu)).reshape(-1)
    pyro.set_rng_seed(seed)
    x_p = p.sample((estimates, samples, 1))  # x ~ P, shared across the grid
    eps = torch.randn(estimates, samples, 1, dtype=torch.float64)  # y = mu + sd * eps ~ Q
    lp_at_p = p.log_prob(x_p)
    draws = {name: LANDSCAPES[name][2] for name in names}

    fns = {}
    for name in names:
        if draws[name] == "p":
            fns[name] = _vmap_grid(lambda lp, lq: estimators.kl_forward(lp, lq).value)
        elif draws[name] == "q":
            f = get_generator(LANDSCAPES[name][1])
            fns[name] = _vmap_grid(lambda lp, lq, f=f: estimators.f_divergence(f, lp, lq).value)
        else:
            fns[name] = _vmap_grid(lambda a, b, c, d: estimators.jensen_shannon(a, b, c, d).value)

    out = {name: [] for name in names}
    with torch.no_grad():
        for start in range(0, grid_mu.numel(), chunk):
            m, s = grid_mu[start : start + chunk], grid_sd[start : start + chunk]
            q = torch.distributions.Normal(m, s)
            if {"p", "pq"} & set(draws.values()):
                lq_at_p = q.log_prob(x_p)
                lp_p = lp_at_p.expand_as(lq_at_p)
            if {"q", "pq"} & set(draws.values()):
                y = m + s * eps
                lp_at_q, lq_at_q = p.log_prob(y), q.log_prob(y)
            for name in names:
                if draws[name] == "p":
                    values = fns[name](lp_p, lq_at_p)
                elif draws[name] == "q":
                    values = fns[name](lp_at_q, lq_at_q)
                else:
                    values = fns[name](lp_p, lq_at_p, lp_at_q, lq_at_q)
                out[name].append(values)
    result = {}
    for name in names:
        values = torch.cat(out[name], -1).reshape(estimates, len(var), len(mu)).numpy()
        with np.errstate(over="ignore", invalid="ignore"):
            se = values.std(0, ddof=1) / math.sqrt(estimates) if estimates > 1 else 0 * values[0]
        result[name] = {"Z": values.mean(0), "se": se}
    return result


def short_fit_paths(name: str, *, steps: int, lr: float, particles: int = 256, seed: int = 0):
    """Short fits of the talk's guide by the estimate of ``FDivergence`` from both
    :data:`STARTS` (one batch of independent fits, :func:`~pyrodiv.demo.batched.fit_rows`),
    for drawing on the landscape of f-divergence ``name``. Returns
    ``[(label, trajectory), ...]``."""
    gen = LANDSCAPES[name][1]
    fits = fit_rows(
        bimodal(),
        [Row(gen, start=start) for start in STARTS.values()],
        steps=steps,
        lr=lr,
        particles=particles,
        seed=seed,
    )
    return [
        (f"{gen} from {fmt_normal(*start, 0)}", fit["trajectory"])
        for start, fit in zip(STARTS.values(), fits, strict=True)
    ]


def landscapes(
    out_dir=None,
    *,
    grid: int = 100,
    mu_range=(-15.0, 15.0),
    var_range=(0.1, 50.0),
    estimates: int = 10,
    samples: int = 128,
    seed: int = 0,
    paths=None,
    path_steps: int = 1500,
    path_lr: float = 0.03,
    quad_n: int = 16001,
    names=None,
    progress: bool = False,
) -> dict:
    r"""Landscapes of :data:`LANDSCAPES` on a ``grid x grid`` grid of :math:`(\mu, v)` (the
    talk's: 100 x 100, :math:`\mu\in[-15, 15]`, :math:`v\in[0.1, 50]`, 10 estimates of 128
    draws), with optimizer paths drawn on them.

    ``paths`` maps a landscape name to ``[(label, trajectory), ...]`` (trajectories as
    returned by :func:`~pyrodiv.demo.common.fit_normal`); f-divergences without paths get
    short fits (:func:`short_fit_paths`, ``path_steps`` steps at ``path_lr``) from
    :data:`STARTS`.

    For each landscape it reports the grid minimum, the exact divergence there, and the exact
    local optima (quadrature from :data:`STARTS` and from the grid minimum). The full surfaces
    are returned under ``"surfaces"`` (numpy arrays, not for JSON).

    Writes ``landscape_<name>.png`` per landscape and ``landscapes_all.png``.

    Example::

        >>> res = landscapes(grid=12, estimates=2, samples=32, names=["reverse_kl"],
        ...                  quad_n=2001)
        >>> res["landscapes"]["reverse_kl"]["best_exact"]["divergence"] < 0.7  # log 2
        True
    """
    log_p = log_prob_fn(bimodal)
    mus = np.linspace(*mu_range, grid)
    variances = np.linspace(*var_range, grid)
    names = list(LANDSCAPES) if names is None else list(names)
    paths = dict(paths or {})
    result = {
        "settings": {
            "grid": grid,
            "mu_range": list(mu_range),
            "var_range": list(var_range),
            "estimates": estimates,
            "samples": samples,
            "seed": seed,
        },
        "landscapes": {},
        "surfaces": {"mu": mus, "variance": variances},
        "figures": [],
    }
    surfaces = mc_landscapes(
        names, mus, variances, estimates=estimates, samples=samples, seed=seed
    )
    tracker = progress if hasattr(progress, "advance") else None
    if tracker is not None:
        tracker.advance(1)
    for name in names:
        title, gen, _ = LANDSCAPES[name]
        surf = surfaces[name]
        Z = surf["Z"]
        finite = np.isfinite(Z)
        i, j = np.unravel_index(np.argmin(np.where(finite, Z, np.inf)), Z.shape)
        g_loc, g_var = float(mus[j]), float(variances[i])
        exact_at_min = exact_divergence(gen, log_p, g_loc, g_var, n=quad_n)
        optima = {}
        starts = dict(STARTS)
        if math.isfinite(exact_at_min):
            starts["grid_min"] = (g_loc, g_var)
        for label, start in starts.items():
            if not math.isfinite(exact_divergence(gen, log_p, *start, n=quad_n)):
                continue
            optima[label] = {
                **exact_optimum(gen, log_p, start=start, n=quad_n),
                "start": list(start),
            }
        best = min(optima.values(), key=lambda o: o["divergence"]) if optima else None
        if name not in paths and gen not in ("kl_forward", "kl_reverse", "jensen_shannon"):
            paths[name] = short_fit_paths(name, steps=path_steps, lr=path_lr, seed=seed)
        result["landscapes"][name] = {
            "title": title,
            "grid_min": {
                "loc": g_loc,
                "variance": g_var,
                "mc_value": float(Z[i, j]),
                "mc_se": float(surf["se"][i, j]),
            },
            "exact_at_grid_min": exact_at_min,
            "exact_optima": optima,
            "best_exact": best,
            "mc_min_to_max": [float(np.nanmin(Z[finite])), float(np.nanmax(Z[finite]))],
            "nonfinite_cells": int((~finite).sum()),
            "mean_se": float(np.nanmean(surf["se"][finite])),
        }
        result["surfaces"][name] = Z
        if out_dir is not None:
            fig, ax = new_figure(1, 1, size=(7.5, 6.0))
            _draw(
                ax, fig, mus, variances, Z, result["landscapes"][name], paths.get(name, []), title
            )
            result["figures"].append(save_figure(fig, out_dir, f"landscape_{name}.png"))
        if tracker is not None:
            tracker.advance(1)
    if out_dir is not None and len(names) > 1:
        ncols = 4
        nrows = math.ceil(len(names) / ncols)
        fig, axes = new_figure(nrows, ncols, size=(4.2 * ncols, 3.4 * nrows), squeeze=False)
        for ax, name in zip(axes.flat, names, strict=False):
            _draw(
                ax,
                fig,
                mus,
                variances,
                result["surfaces"][name],
                result["landscapes"][name],
                paths.get(name, []),
                LANDSCAPES[name][0],
                small=True,
            )
        spare = list(axes.flat)[len(names) :]
        for ax in spare:
            ax.set_axis_off()
        handles = _legend_handles(paths, names)
        if spare:
            spare[0].legend(handles=handles, loc="center", fontsize=9, title="markers and paths")
        else:
            fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=9)
        fig.suptitle(
            "Monte Carlo loss landscapes over Q = N(mu, v) for the bimodal target "
            "(colour: log(1 + D - min D), darker is lower)",
            fontsize=11,
        )
        result["figures"].append(save_figure(fig, out_dir, "landscapes_all.png"))
    return result


#: The colour of an optimizer path, by its start (the same start has the same colour in
#: every panel).
PATH_COLORS = (
    ("from N(1, 1), exp", "magenta", "from N(1, 1), sigma = exp(s)"),
    ("from N(0, 1)", "tab:red", "from N(0, 1)"),
    ("from N(-1, 1)", "white", "from N(-1, 1)"),
    ("from N(1, 1)", "tab:orange", "from N(1, 1)"),
    ("from N(1, 25)", "cyan", "from N(1, 25)"),
)


def path_color(label: str) -> str:
    """The colour of a path labelled ``"... from N(m, v)..."`` (:data:`PATH_COLORS`).

    Example::

        >>> path_color("reverse KL from N(-1, 1)")
        'white'
    """
    for key, color, _ in PATH_COLORS:
        if key in label:
            return color
    return "yellow"


def _legend_handles(paths, names):
    from matplotlib.lines import Line2D

    used = {path_color(label) for name in names for label, _ in paths.get(name, [])}
    handles = [
        Line2D([], [], color=color, lw=2, label=f"optimizer path {text}")
        for _, color, text in PATH_COLORS
        if color in used
    ]
    handles += [
        Line2D([], [], ls="", marker="o", color="0.6", mec="k", label="start of a path"),
        Line2D([], [], ls="", marker="s", color="0.6", mec="k", label="end of a path"),
        Line2D([], [], ls="", marker="X", ms=9, color="white", mec="k", label="grid minimum"),
        Line2D(
            [], [], ls="", marker="*", ms=12, color="gold", mec="k", label="exact local optima"
        ),
    ]
    for h in handles:
        if h.get_color() == "white":
            h.set_path_effects(_outline())
    return handles


def _outline():
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=3, foreground="0.3")]


def _draw(ax, fig, mus, variances, Z, info, paths, title, small=False):
    finite = np.isfinite(Z)
    shown = np.log1p(np.where(finite, Z, np.nanmax(Z[finite])) - np.nanmin(Z[finite]))
    mesh = ax.pcolormesh(mus, variances, shown, cmap="viridis", shading="auto")
    cbar = fig.colorbar(mesh, ax=ax)
    cbar.set_label(r"$\log(1 + \hat D - \min \hat D)$", fontsize=8 if small else 10)
    for label, traj in paths:
        c = path_color(label)
        effects = _outline() if c == "white" else None
        ax.plot(traj["loc"], traj["variance"], color=c, lw=1.3, label=label, path_effects=effects)
        ax.plot(traj["loc"][0], traj["variance"][0], "o", color=c, ms=4, mec="k", mew=0.5)
        ax.plot(traj["loc"][-1], traj["variance"][-1], "s", color=c, ms=5, mec="k", mew=0.5)
    gm = info["grid_min"]
    ax.plot(
        gm["loc"],
        gm["variance"],
        "X",
        color="white",
        ms=10,
        mec="k",
        mew=0.8,
        label="grid minimum",
        clip_on=False,
        zorder=6,
    )
    for k, opt in enumerate(info["exact_optima"].values()):
        ax.plot(
            opt["loc"],
            opt["variance"],
            "*",
            color="gold",
            ms=12,
            mec="k",
            mew=0.6,
            label=None if k else "exact local optima",
            clip_on=False,
            zorder=5,
        )
    ax.set_xlim(mus[0], mus[-1])
    ax.set_ylim(variances[0], variances[-1])
    ax.set_xlabel(r"mean $\mu$ of Q")
    ax.set_ylabel("variance of Q")
    ax.set_title(
        title if small else f"Loss landscape: {title} (bimodal target)", fontsize=10, pad=9
    )
    if not small:
        ax.legend(
            fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, frameon=False
        )
