"""compare_posteriors against closed forms on synthetic draws."""

import math

import pytest
import torch

from pyrodiv import arviz_adapter
from pyrodiv.inference.comparison import compare_posteriors


def _idata(loc, scale, seed, log_weight=None, wall=None):
    g = torch.Generator().manual_seed(seed)
    draws = {
        "mu": loc + scale * torch.randn(2, 4000, generator=g, dtype=torch.float64),
        "beta": loc + scale * torch.randn(2, 4000, 2, generator=g, dtype=torch.float64),
    }
    stats = {"log_weight": log_weight} if log_weight is not None else None
    attrs = {"wall_time_s": wall} if wall is not None else None
    return arviz_adapter.to_inference_data(draws, sample_stats=stats, attrs=attrs)


def test_errors_in_reference_sd_units():
    reference = _idata(0.0, 1.0, seed=0, wall=3.0)
    shifted = _idata(0.5, 2.0, seed=1, log_weight=torch.zeros(2, 4000))
    table = compare_posteriors({"nuts": reference, "wide": shifted}, reference="nuts")
    assert set(table["variable"]) == {"mu", "beta[0]", "beta[1]"}
    own = table[table.method == "nuts"]
    assert (own.mean_error == 0).all()
    assert own.sd_ratio.to_numpy() == pytest.approx([1.0] * 3)
    assert (own.wall_time_s == 3.0).all() and own.khat.isna().all()
    wide = table[table.method == "wide"]
    # 8000 draws each: mean and sd errors are ~0.03 (3 standard errors: 3 * 2 / sqrt(8000)).
    assert wide.mean_error.to_numpy() == pytest.approx([0.5] * 3, abs=0.07)
    assert wide.sd_ratio.to_numpy() == pytest.approx([2.0] * 3, abs=0.07)
    # W1 between N(0, 1) and N(0.5, 2^2) is the integral over u of the quantile gap
    # |0.5 + (2 - 1) Phi^-1(u)|, i.e. E|0.5 + Z| with Z ~ N(0, 1).
    expected = 0.5 * math.erf(0.5 / math.sqrt(2)) + 2 * math.exp(-0.125) / math.sqrt(2 * math.pi)
    assert wide.w1.to_numpy() == pytest.approx([expected] * 3, abs=0.07)
    assert (wide.khat < 0.5).all()  # equal weights: perfect importance sampling


def test_reference_may_be_given_draws_and_bad_names_are_refused():
    reference = _idata(0.0, 1.0, seed=0)
    table = compare_posteriors({"a": _idata(0.0, 1.0, seed=2)}, reference=reference)
    assert (table.mean_error < 0.07).all()
    with pytest.raises(ValueError, match="reference 'nuts'"):
        compare_posteriors({"a": reference}, reference="nuts")
    with pytest.raises(TypeError, match="non-empty dict"):
        compare_posteriors({}, reference=reference)
