r"""Writing results: matplotlib figures without pyplot, and Markdown tables.

Figures are drawn on the Agg canvas (no pyplot, no global state), so that they can be made
from any thread or process and saved without a display.

Example::

    >>> fig, ax = new_figure()
    >>> print(table(["a", "b"], [[num(1.0, 2), num(float("inf"))]]))
    | a | b |
    |---|---|
    | 1.00 | inf |
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(nrows: int = 1, ncols: int = 1, size=(7.0, 4.0), **kwargs):
    """A matplotlib ``Figure`` on the Agg canvas (no pyplot, no global state) and its axes.

    Example::

        >>> fig, ax = new_figure()
        >>> type(fig.canvas).__name__
        'FigureCanvasAgg'
    """
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, **kwargs)
    return fig, axes


def save_figure(fig, out_dir, name: str) -> str | None:
    """Write ``fig`` as ``out_dir/name`` (PNG, 110 dpi) and return the file name, or do
    nothing and return ``None`` when ``out_dir`` is ``None``."""
    if out_dir is None:
        return None
    path = Path(out_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return name


def num(x, digits: int = 4) -> str:
    """A number for a table: fixed or scientific, ``inf``, or ``-`` for ``None``."""
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, bool):
        return "yes" if x else "no"
    if not math.isfinite(x):
        return "inf" if x > 0 else ("-inf" if x < 0 else "nan")
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 10 ** (-digits)):
        return f"{x:.2e}"
    return f"{x:.{digits}f}"


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table."""

    def esc(c):
        return str(c).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
