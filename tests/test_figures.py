"""Figures: each function returns a Figure with the expected panels, labels and lines."""

import doctest
import math

import numpy as np
import pandas as pd
import pytest
import torch

from pyrodiv import figures
from pyrodiv.inference.arviz_adapter import to_inference_data
from pyrodiv.inference.fit import FitResult


def _idata(seed: int, shift: float = 0.0):
    generator = torch.Generator().manual_seed(seed)
    return to_inference_data(
        {
            "mu": torch.randn(1, 300, generator=generator) + shift,
            "tau": torch.rand(1, 300, generator=generator),
            "beta": torch.randn(1, 300, 2, generator=generator),
        }
    )


@pytest.fixture
def idatas():
    return {"nuts": _idata(0), "reverse_kl": _idata(1, 0.5), "forward_kl": _idata(2, -0.5)}


def test_marginals_one_panel_per_scalar_and_one_line_per_method(idatas, tmp_path):
    path = tmp_path / "sub" / "densities.png"
    fig = figures.plot_marginals(idatas, reference="nuts", ncols=2, path=path)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["mu", "tau", "beta[0]", "beta[1]"]
    for ax in visible:
        assert len(ax.lines) == 3
        assert ax.get_xlabel() == "value"
    # The reference is the thick black line, drawn first.
    assert visible[0].lines[0].get_color() == "black"
    assert visible[0].lines[0].get_linewidth() > visible[0].lines[1].get_linewidth()
    # Every method differs from the others in colour and in dashes.
    styles = [(line.get_color(), line.get_linestyle()) for line in visible[0].lines]
    assert len({c for c, _ in styles}) == len({d for _, d in styles}) == 3
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["nuts (reference)", "reverse_kl", "forward_kl"]
    assert path.stat().st_size > 10_000


def test_marginals_density_integrates_to_one(idatas):
    # The KDE of N(0, 1) draws over the 0.5%-99.5% quantile range holds ~99% of the mass; the
    # trapezoid sum is within 0.02 of it (KDE bandwidth smoothing widens the tails slightly).
    fig = figures.plot_marginals({"only": _idata(3)}, var_names=["mu"])
    x, y = fig.axes[0].lines[0].get_data()
    assert 0.95 < np.trapezoid(y, x) < 1.0


def test_marginals_reference_idata_and_constant_draws():
    constant = to_inference_data({"c": torch.full((1, 50), 2.0)})
    fig = figures.plot_marginals({"m": constant}, reference=constant)
    (ax,) = fig.axes
    # A constant column is a vertical line at its value, for the reference and the method.
    assert [line.get_xdata()[0] for line in ax.lines] == [2.0, 2.0]


def test_marginals_bad_input(idatas):
    with pytest.raises(ValueError, match="reference 'hmc' is not one of"):
        figures.plot_marginals(idatas, reference="hmc")
    with pytest.raises(ValueError, match=r"no method has the variables \['sigma'\]"):
        figures.plot_marginals(idatas, var_names=["sigma"])
    with pytest.raises(TypeError, match="non-empty dict"):
        figures.plot_marginals({})


def test_pairs_lower_triangle_with_every_method(idatas):
    fig = figures.plot_pairs(idatas, reference="nuts", var_names=["mu", "tau", "beta[1]"])
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3  # (mu, tau), (mu, beta[1]), (tau, beta[1])
    for ax in visible:
        assert len(ax.collections) == 3  # one scatter per method
    assert visible[0].get_ylabel() == "tau"
    assert visible[-1].get_xlabel() == "tau"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["nuts (reference)", "reverse_kl", "forward_kl"]
    with pytest.raises(ValueError, match="at least two"):
        figures.plot_pairs(idatas, var_names=["mu"])


def test_forest_one_row_per_variable_and_a_legend(idatas):
    fig = figures.plot_forest(idatas, reference="nuts", var_names=["mu", "tau"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["tau", "mu"]
    assert ax.get_xlabel() == "value" and "HDI" in ax.get_title()
    assert {t.get_text() for t in ax.get_legend().get_texts()} == set(idatas)


def test_khat_bars_thresholds_and_labels():
    table = pd.DataFrame(
        {
            "method": ["nuts", "nuts", "reverse_kl", "reverse_kl", "forward_kl", "jsd"],
            "variable": ["a", "b", "a", "b", "a", "a"],
            "khat": [math.nan, math.nan, 0.42, 0.42, 0.91, math.inf],
        }
    )
    fig = figures.plot_khat(table)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "nuts",
        "reverse_kl",
        "forward_kl",
        "jsd",
    ]
    assert len(ax.patches) == 3  # NUTS has no weights: no bar, an "n/a" label
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["n/a", "0.42", "0.91", "inf"]
    assert [line.get_ydata()[0] for line in ax.lines] == [0.5, 0.7]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["0.5: good below", "0.7: unreliable above"]
    colors = [p.get_facecolor() for p in ax.patches]
    assert colors[0] != colors[1]  # green below 0.5, red above 0.7
    with pytest.raises(TypeError, match="khats must be"):
        figures.plot_khat([0.5])


def test_loss_curves_two_lines_per_panel():
    fits = {"reverse_kl": FitResult(losses=[5.0, 4.0, 3.0, 2.5, 2.4]), "forward_kl": [1.0, 0.5]}
    fig = figures.plot_loss_curves(fits, window=2)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["reverse_kl", "forward_kl"]
    raw, smooth = visible[0].lines
    assert list(raw.get_ydata()) == [5.0, 4.0, 3.0, 2.5, 2.4]
    np.testing.assert_allclose(smooth.get_ydata(), [4.5, 3.5, 2.75, 2.45])
    assert visible[0].get_xlabel() == "SVI step" and visible[0].get_ylabel() == "loss"
    with pytest.raises(ValueError, match="'x' has no loss history"):
        figures.plot_loss_curves({"x": []})


def test_accuracy_vs_time_one_marker_per_method_and_panel():
    table = pd.DataFrame(
        {
            "model": ["a", "a", "b", "b"],
            "method": ["nuts", "reverse_kl", "nuts", "reverse_kl"],
            "w1_max": [0.05, 0.3, 0.1, math.nan],
            "wall_time_s": [20.0, 4.0, 30.0, 5.0],
        }
    )
    fig = figures.plot_accuracy_vs_time(table)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["a", "b"]
    assert [len(ax.collections) for ax in visible] == [2, 1]  # the NaN error is left out
    assert visible[0].get_xscale() == "log" and visible[0].get_xlabel() == "wall time (s)"
    with pytest.raises(ValueError, match="needs the columns"):
        figures.plot_accuracy_vs_time(table.drop(columns="w1_max"))


def test_method_colors_and_docstring_examples():
    assert figures.method_colors(["a", "b"]) == {"a": "C0", "b": "C1"}
    assert doctest.testmod(figures).failed == 0


def test_marginals_clip_a_collapsed_curve_at_three_reference_peaks():
    generator = torch.Generator().manual_seed(4)
    wide = to_inference_data({"x": torch.randn(1, 400, generator=generator)})
    narrow = to_inference_data({"x": 0.01 * torch.randn(1, 400, generator=generator)})
    fig = figures.plot_marginals({"ref": wide, "collapsed": narrow}, reference="ref")
    ax = fig.axes[0]
    reference_peak = ax.lines[0].get_ydata().max()
    # N(0, 1) peaks near 0.4 (the KDE a little lower); the collapsed curve near 40.
    assert 0.3 < reference_peak < 0.45 and ax.lines[1].get_ydata().max() > 20
    assert ax.get_ylim() == pytest.approx((0.0, 3 * reference_peak))
    assert [t.get_text() for t in ax.texts] == ["clipped"]
