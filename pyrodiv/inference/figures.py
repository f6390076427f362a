r"""Figures that compare approximate posteriors with a reference (NUTS or gold-standard draws).

Every function takes plain inputs (``{method: InferenceData}``, a
:func:`~pyrodiv.inference.comparison.compare_posteriors` table, ``{method: FitResult}``), draws on
a
matplotlib ``Figure`` of its own (Agg canvas, no pyplot state), saves it when ``path`` is given
and returns it. A method keeps one colour in every figure (:func:`method_colors`); the reference
is black.

- :func:`plot_marginals`: the marginal density of every scalar variable, one panel each, every
  method over the reference;
- :func:`plot_pairs`: pairwise scatter plots of a few variables (``az.plot_pair``);
- :func:`plot_forest`: 94% HDI and interquartile range of every variable (``az.plot_forest``);
- :func:`plot_khat`: the PSIS :math:`\hat k` of each method with the 0.5 and 0.7 thresholds;
- :func:`plot_loss_curves`: the loss of every SVI step, one panel per method;
- :func:`plot_accuracy_vs_time`: error against the reference versus wall-clock time.

Example::

    >>> fig = plot_marginals({"nuts": idata_nuts, "forward_kl": idata_fkl},
    ...                      reference="nuts", path="densities.png")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from scipy.stats import gaussian_kde

from . import arviz_adapter
from .comparison import _scalar_columns
from .output import new_figure, save_figure

__all__ = [
    "KHAT_THRESHOLDS",
    "REFERENCE_COLOR",
    "method_colors",
    "plot_accuracy_vs_time",
    "plot_forest",
    "plot_khat",
    "plot_loss_curves",
    "plot_marginals",
    "plot_pairs",
]

#: Yao et al. (2018): below 0.5 good, 0.5 to 0.7 usable, above 0.7 unreliable.
KHAT_THRESHOLDS = (0.5, 0.7)
REFERENCE_COLOR = "black"
_PALETTE = [f"C{i}" for i in range(10)]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
_DASHES = ["--", "-.", ":", (0, (5, 1, 1, 1, 1, 1))]


def method_colors(methods: Sequence[str], reference: str | None = None) -> dict[str, str]:
    """One matplotlib colour per method, in order (``C0``, ``C1``, ...); the reference is black.

    Example::

        >>> method_colors(["nuts", "reverse_kl", "forward_kl"], reference="nuts")
        {'nuts': 'black', 'reverse_kl': 'C0', 'forward_kl': 'C1'}
    """
    colors, i = {}, 0
    for method in methods:
        if method == reference:
            colors[method] = REFERENCE_COLOR
        else:
            colors[method] = _PALETTE[i % len(_PALETTE)]
            i += 1
    return colors


def _save(fig, path) -> None:
    if path is not None:
        path = Path(path)
        save_figure(fig, path.parent, path.name)


def _check_idatas(idatas, what: str) -> dict:
    if not isinstance(idatas, Mapping) or not idatas:
        raise TypeError(f"{what}: idatas must be a non-empty dict {{method: InferenceData}}")
    return dict(idatas)


def _with_reference(idatas: dict, reference, what: str) -> tuple[dict, str | None]:
    """``idatas`` with the reference first; a reference InferenceData is labelled 'reference'."""
    if reference is None:
        return idatas, None
    if isinstance(reference, str):
        if reference not in idatas:
            raise ValueError(f"{what}: reference {reference!r} is not one of {sorted(idatas)}")
        return {reference: idatas[reference], **idatas}, reference
    return {"reference": reference, **idatas}, "reference"


def _panel_grid(count: int, ncols: int) -> tuple[int, int]:
    ncols = max(1, min(ncols, count))
    return math.ceil(count / ncols), ncols


def _hide_unused(axes, used: int) -> None:
    for ax in axes.ravel()[used:]:
        ax.set_visible(False)


def _marker(color: str, marker: str, label: str) -> Line2D:
    """A legend entry for a scatter series, drawn on no axes."""
    return Line2D([], [], color=color, marker=marker, ls="", markersize=6, label=label)


def _kde_line(ax, draws: np.ndarray, grid: np.ndarray, **style) -> None:
    """A Gaussian kernel density of ``draws`` on ``grid`` (a vertical line if constant)."""
    if draws.size > 1 and float(draws.std()) > 0:
        ax.plot(grid, gaussian_kde(draws)(grid), **style)
    else:
        ax.axvline(float(draws.mean()), **style)


def plot_marginals(
    idatas: Mapping,
    reference=None,
    var_names: Sequence[str] | None = None,
    max_panels: int = 24,
    ncols: int = 4,
    title: str | None = None,
    path=None,
):
    r"""Marginal densities, one panel per scalar variable, every method over the reference.

    Each curve is a Gaussian kernel density estimate (Scott's bandwidth) of one method's draws of
    one scalar (``beta[0]``, ``tau``, ...); the x range spans the 0.5% to 99.5% quantiles of all
    curves of the panel. The reference (a name in ``idatas`` or an InferenceData) is a thick
    black line; a panel whose tallest curve is over four times the reference's peak is clipped
    at three times that peak (and marked "clipped"), so that the reference stays readable.

    :param var_names: scalar names to draw (default: those of the reference, or of the first
        method, up to ``max_panels``).
    :returns: the matplotlib ``Figure``; written to ``path`` when given.

    Example::

        >>> import torch
        >>> from pyrodiv.inference.arviz_adapter import to_inference_data
        >>> a = to_inference_data({"mu": torch.randn(1, 300), "tau": torch.rand(1, 300)})
        >>> b = to_inference_data({"mu": torch.randn(1, 300), "tau": torch.rand(1, 300)})
        >>> fig = plot_marginals({"nuts": a, "guide": b}, reference="nuts")
        >>> [ax.get_title() for ax in fig.axes]
        ['mu', 'tau']
    """
    idatas = _check_idatas(idatas, "plot_marginals")
    idatas, ref_name = _with_reference(idatas, reference, "plot_marginals")
    columns = {method: _scalar_columns(idata) for method, idata in idatas.items()}
    first = columns[ref_name] if ref_name is not None else next(iter(columns.values()))
    names = list(var_names) if var_names is not None else list(first)[:max_panels]
    missing = [n for n in names if not any(n in c for c in columns.values())]
    if missing:
        raise ValueError(f"plot_marginals: no method has the variables {missing}")
    colors = method_colors(list(idatas), ref_name)
    nrows, ncols = _panel_grid(len(names), ncols)
    fig, axes = new_figure(nrows, ncols, size=(3.2 * ncols, 2.4 * nrows + 0.6), squeeze=False)
    for ax, name in zip(axes.ravel(), names, strict=False):
        present = {m: c[name] for m, c in columns.items() if name in c}
        pooled = np.concatenate(list(present.values()))
        lo, hi = np.quantile(pooled, [0.005, 0.995])
        pad = 0.05 * (hi - lo) if hi > lo else 1.0
        grid = np.linspace(lo - pad, hi + pad, 400)
        for method, draws in present.items():
            is_ref = method == ref_name
            label = f"{method} (reference)" if is_ref else method
            style = {"color": colors[method], "lw": 2.5 if is_ref else 1.6, "label": label}
            # Dashes as well as colours, so that neighbouring colours stay apart.
            style["ls"] = "-" if is_ref else _DASHES[list(idatas).index(method) % len(_DASHES)]
            _kde_line(ax, draws, grid, **style)
        if ref_name in present and np.asarray(ax.lines[0].get_xdata()).size > 2:
            # A curve far narrower than the reference would flatten it: clip that one instead.
            peak = float(np.max(ax.lines[0].get_ydata()))
            if peak > 0 and ax.get_ylim()[1] > 4 * peak:
                ax.set_ylim(0, 3 * peak)
                ax.text(
                    0.98,
                    0.95,
                    "clipped",
                    transform=ax.transAxes,
                    ha="right",
                    va="top",
                    fontsize="small",
                    color="gray",
                )
        ax.set_title(name)
        ax.set_xlabel("value")
        ax.set_yticks([])
    for ax in axes[:, 0]:
        ax.set_ylabel("density")
    _hide_unused(axes, len(names))
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5))
    fig.suptitle(title or "Marginal posterior densities")
    _save(fig, path)
    return fig


def plot_pairs(
    idatas: Mapping,
    reference=None,
    var_names: Sequence[str] | None = None,
    max_vars: int = 3,
    max_points: int = 300,
    title: str | None = None,
    path=None,
):
    """Pairwise scatter plots of a few scalar variables (``az.plot_pair``), methods overlaid.

    Shows ``var_names`` (default: the first ``max_vars`` scalars of the reference or of the
    first method) in a lower-triangular grid; each method contributes at most ``max_points``
    evenly spaced draws in its own colour, the reference in black.

    :returns: the matplotlib ``Figure``; written to ``path`` when given.

    Example::

        >>> import torch
        >>> from pyrodiv.inference.arviz_adapter import to_inference_data
        >>> a = to_inference_data({"mu": torch.randn(1, 300), "tau": torch.rand(1, 300)})
        >>> fig = plot_pairs({"nuts": a, "guide": a}, reference="nuts")
        >>> fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()
        ('mu', 'tau')
    """
    idatas = _check_idatas(idatas, "plot_pairs")
    idatas, ref_name = _with_reference(idatas, reference, "plot_pairs")
    columns = {method: _scalar_columns(idata) for method, idata in idatas.items()}
    first = columns[ref_name] if ref_name is not None else next(iter(columns.values()))
    names = list(var_names) if var_names is not None else list(first)[:max_vars]
    if len(names) < 2:
        raise ValueError(f"plot_pairs: needs at least two scalar variables, got {names}")
    colors = method_colors(list(idatas), ref_name)
    size = len(names) - 1
    fig, axes = new_figure(size, size, size=(3.0 * size + 1.0, 3.0 * size + 0.6), squeeze=False)
    handles = []
    for method, cols in columns.items():
        if not all(n in cols for n in names):
            continue
        count = len(cols[names[0]])
        keep = np.linspace(0, count - 1, min(count, max_points)).astype(int)
        # Column labels such as "theta[0]" become plain variable names of a one-chain posterior.
        subset = arviz_adapter.to_inference_data({n: cols[n][keep][None] for n in names})
        is_ref = method == ref_name
        style = {"color": colors[method], "alpha": 0.6 if is_ref else 0.45, "s": 8}
        arviz_adapter.plot_pair(subset, ax=axes, kind="scatter", scatter_kwargs=style)
        label = f"{method} (reference)" if is_ref else method
        handles.append(_marker(colors[method], "o", label))
    for i in range(size):
        for j in range(i + 1, size):
            axes[i, j].set_visible(False)
    for ax in axes.ravel():
        ax.xaxis.label.set_size(10)
        ax.yaxis.label.set_size(10)
        ax.tick_params(labelsize=9)
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3))
    fig.suptitle(title or "Pairwise posterior draws")
    _save(fig, path)
    return fig


def plot_forest(
    idatas: Mapping,
    reference=None,
    var_names: Sequence[str] | None = None,
    hdi_prob: float = 0.94,
    title: str | None = None,
    path=None,
):
    """Forest plot (``az.plot_forest``): per variable, one interval per method.

    The thin line is the ``hdi_prob`` highest-density interval, the thick one the interquartile
    range, the dot the median; methods keep their colours of :func:`method_colors`.

    :returns: the matplotlib ``Figure``; written to ``path`` when given.

    Example::

        >>> import torch
        >>> from pyrodiv.inference.arviz_adapter import to_inference_data
        >>> a = to_inference_data({"mu": torch.randn(1, 300)})
        >>> fig = plot_forest({"nuts": a, "guide": a}, reference="nuts")
        >>> fig.axes[0].get_xlabel()
        'value'
    """
    idatas = _check_idatas(idatas, "plot_forest")
    idatas, ref_name = _with_reference(idatas, reference, "plot_forest")
    colors = method_colors(list(idatas), ref_name)
    scalars = _scalar_columns(next(iter(idatas.values())))
    rows = (
        len(scalars) if var_names is None else sum(n.split("[")[0] in var_names for n in scalars)
    )
    height = min(2.0 + 0.18 * rows * len(idatas), 24.0)
    fig, ax = new_figure(size=(7.5, height))
    arviz_adapter.plot_forest(
        idatas,
        var_names=var_names,
        hdi_prob=hdi_prob,
        colors=[colors[m] for m in idatas],
        ax=ax,
    )
    ax.set_xlabel("value")
    ax.set_title(title or f"{hdi_prob:.0%} HDI (thin), interquartile range (thick), median")
    _save(fig, path)
    return fig


def _khat_by_method(khats) -> dict[str, float]:
    if hasattr(khats, "groupby"):  # a compare_posteriors table
        if not {"method", "khat"} <= set(khats.columns):
            raise ValueError("plot_khat: the table needs the columns 'method' and 'khat'")
        return {
            str(m): float(k)
            for m, k in khats.groupby("method", sort=False)["khat"].first().items()
        }
    if isinstance(khats, Mapping):
        return {str(m): float(k) for m, k in khats.items()}
    raise TypeError("plot_khat: khats must be a dict {method: khat} or a compare_posteriors table")


def plot_khat(khats, title: str | None = None, path=None):
    r"""Bar chart of the PSIS :math:`\hat k` of each method, with the 0.5 and 0.7 thresholds.

    :param khats: ``{method: khat}`` or a :func:`~pyrodiv.inference.comparison.compare_posteriors`
        table. Methods without importance weights (NaN, e.g. NUTS) are marked "n/a";
        infinite values are drawn at the top of the axis and marked "inf".

    Bars are green below 0.5 (good), orange up to 0.7 (usable), red above (unreliable),
    following Yao et al. (2018).

    :returns: the matplotlib ``Figure``; written to ``path`` when given.

    Example::

        >>> fig = plot_khat({"reverse_kl": 0.45, "forward_kl": 0.62, "nuts": float("nan")})
        >>> [t.get_text() for t in fig.axes[0].get_xticklabels()]
        ['reverse_kl', 'forward_kl', 'nuts']
    """
    khats = _khat_by_method(khats)
    if not khats:
        raise ValueError("plot_khat: no method given")
    good, bad = KHAT_THRESHOLDS
    finite = [k for k in khats.values() if math.isfinite(k)]
    top = max([1.0, *[k + 0.15 for k in finite]])
    bottom = min([0.0, *[k - 0.1 for k in finite]])
    fig, ax = new_figure(size=(1.1 * len(khats) + 3.0, 3.8))
    x = np.arange(len(khats))
    for i, k in enumerate(khats.values()):
        if math.isnan(k):
            ax.text(i, 0.02, "n/a", ha="center", va="bottom")
            continue
        height = min(k, top) if k > 0 else max(k, bottom)
        color = "tab:green" if k < good else ("tab:orange" if k <= bad else "tab:red")
        ax.bar(i, height, color=color, width=0.6)
        text = "inf" if math.isinf(k) else f"{k:.2f}"
        ax.text(i, max(height, 0.0) + 0.02, text, ha="center", va="bottom")
    ax.axhline(good, color="tab:orange", ls="--", lw=1.2, label=f"{good}: good below")
    ax.axhline(bad, color="tab:red", ls="--", lw=1.2, label=f"{bad}: unreliable above")
    ax.set_xticks(x, list(khats), rotation=20, ha="right")
    ax.set_ylim(bottom, top + 0.1)
    ax.set_ylabel(r"PSIS $\hat k$")
    ax.set_xlabel("method")
    ax.legend(loc="upper left")
    ax.set_title(title or r"Pareto $\hat k$ of the importance weights $p/q$")
    _save(fig, path)
    return fig


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    window = max(1, min(window, len(values)))
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    return (cumulative[window:] - cumulative[:-window]) / window


def plot_loss_curves(
    fits: Mapping, window: int = 50, ncols: int = 3, colors=None, title=None, path=None
):
    """Loss of every SVI step, one panel per method (the divergences have different scales).

    :param fits: ``{method: FitResult}`` (from :func:`pyrodiv.inference.fit.fit`) or
        ``{method: losses}``.
    :param window: width of the running mean drawn over the raw losses.
    :param colors: ``{method: colour}`` (default :func:`method_colors` of the methods), to match
        the other figures of a comparison.
    :returns: the matplotlib ``Figure`` (two lines per panel: raw and running mean).

    Example::

        >>> fig = plot_loss_curves({"reverse_kl": [3.0, 2.0, 1.5, 1.4]}, window=2)
        >>> len(fig.axes[0].lines), fig.axes[0].get_xlabel()
        (2, 'SVI step')
    """
    if not isinstance(fits, Mapping) or not fits:
        raise TypeError("plot_loss_curves: fits must be a non-empty dict {method: FitResult}")
    histories = {}
    for method, fit in fits.items():
        losses = np.asarray(getattr(fit, "losses", fit), dtype=float)
        if losses.ndim != 1 or losses.size == 0:
            raise ValueError(f"plot_loss_curves: {method!r} has no loss history")
        histories[method] = losses
    colors = {**method_colors(list(histories)), **dict(colors or {})}
    nrows, ncols = _panel_grid(len(histories), ncols)
    fig, axes = new_figure(nrows, ncols, size=(3.6 * ncols, 2.7 * nrows + 0.5), squeeze=False)
    for ax, (method, losses) in zip(axes.ravel(), histories.items(), strict=False):
        steps = np.arange(1, losses.size + 1)
        ax.plot(steps, losses, color=colors[method], alpha=0.3, lw=0.8, label="per step")
        smooth = _running_mean(losses, window)
        ax.plot(
            steps[steps.size - smooth.size :],
            smooth,
            color=colors[method],
            lw=1.8,
            label=f"mean of {min(window, losses.size)}",
        )
        finite = losses[np.isfinite(losses)]
        if finite.size:  # the first steps can be orders of magnitude above the rest
            lo, hi = np.quantile(finite, [0.0, 0.98])
            if hi > lo:
                ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        ax.set_title(method)
        ax.set_xlabel("SVI step")
        ax.set_ylabel("loss")
        ax.legend(loc="upper right", fontsize="small")
    _hide_unused(axes, len(histories))
    fig.suptitle(title or "Training loss")
    _save(fig, path)
    return fig


def plot_accuracy_vs_time(
    table,
    error: str = "w1_max",
    time: str = "wall_time_s",
    group: str | None = "model",
    ncols: int = 4,
    title=None,
    path=None,
):
    """Error against the reference versus wall-clock time, one marker per method.

    :param table: a DataFrame with the columns ``method``, ``error`` and ``time`` (for
        example :func:`pyrodiv.zoo.comparison.summarize_by_method`), and ``group`` when given.
    :param group: one panel per value of this column (``None``: one panel for all rows).

    Both axes are logarithmic; lower left is better (accurate and fast).

    :returns: the matplotlib ``Figure``; written to ``path`` when given.

    Example::

        >>> import pandas as pd
        >>> t = pd.DataFrame({"method": ["nuts", "reverse_kl"], "w1_max": [0.05, 0.3],
        ...                   "wall_time_s": [20.0, 4.0]})
        >>> fig = plot_accuracy_vs_time(t, group=None)
        >>> fig.axes[0].get_xscale(), len(fig.axes[0].collections)
        ('log', 2)
    """
    needed = {"method", error, time} | ({group} if group else set())
    if not needed <= set(table.columns):
        raise ValueError(f"plot_accuracy_vs_time: the table needs the columns {sorted(needed)}")
    methods = list(dict.fromkeys(table["method"]))
    colors = method_colors(methods)
    markers = {m: _MARKERS[i % len(_MARKERS)] for i, m in enumerate(methods)}
    groups = list(dict.fromkeys(table[group])) if group else [None]
    nrows, ncols = _panel_grid(len(groups), ncols)
    fig, axes = new_figure(nrows, ncols, size=(3.6 * ncols, 3.2 * nrows + 0.7), squeeze=False)
    for ax, name in zip(axes.ravel(), groups, strict=False):
        rows = table if name is None else table[table[group] == name]
        for method in methods:
            sel = rows[rows["method"] == method]
            x, y = sel[time].to_numpy(float), sel[error].to_numpy(float)
            ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
            if ok.any():
                ax.scatter(
                    x[ok], y[ok], color=colors[method], marker=markers[method], s=40, label=method
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        # plain labels at 1, 2, 5 x 10^k, so that a span under a decade is still labelled
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel(error)
        ax.grid(True, which="major", alpha=0.3)
        if name is not None:
            ax.set_title(str(name))
    _hide_unused(axes, len(groups))
    proxies = [_marker(colors[m], markers[m], m) for m in methods]
    fig.legend(handles=proxies, loc="outside lower center", ncols=min(len(methods), 6))
    fig.suptitle(title or "Accuracy against wall time (lower left is better)")
    _save(fig, path)
    return fig
