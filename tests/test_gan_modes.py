"""The mode metrics of benchmarks/gan_modes.py, on constructed draws with known answers."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import gan_modes  # noqa: E402


def test_ring_and_grid_geometry():
    ring = gan_modes.ring_locs()
    assert ring.shape == (8, 2)
    assert torch.allclose(ring.norm(dim=-1), torch.full((8,), 2.0, dtype=ring.dtype), atol=1e-6)
    grid = gan_modes.grid_locs()
    assert grid.shape == (25, 2)
    assert set(grid[:, 0].tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}


def test_all_modes_covered_by_target_draws():
    for locs, sd in gan_modes.TARGETS.values():
        draws = gan_modes.target_draws(locs, sd, 2000, seed=0)
        out = gan_modes.mode_metrics(draws, locs, sd)
        assert out["modes"] == locs.shape[0]
        # P(chi_2 <= 3) = 1 - exp(-9/2) = 0.98889; binomial se at n = 2000 is 0.0023
        assert abs(out["quality"] - 0.98889) < 4 * 0.0023


def test_collapse_to_one_mode_and_off_mode_draws():
    locs, sd = gan_modes.TARGETS["ring"]
    n = 2000
    draws = torch.zeros(n, 2, dtype=locs.dtype)
    right, up = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=locs.dtype)
    draws[:1000] = locs[3]  # half on mode 3
    draws[1000:1019] = locs[5] + 2.9 * sd * right  # 19 draws: under 1%
    draws[1019:1039] = locs[6] + 2.9 * sd * up  # 20 draws: exactly 1%
    draws[1039:] = 0.0  # the centre, far from every mode
    draws[-1] = float("nan")  # non-finite: low quality
    out = gan_modes.mode_metrics(draws, locs, sd)
    assert out["modes"] == 2
    assert out["counts"].tolist() == [0, 0, 0, 1000, 0, 19, 20, 0]
    assert out["quality"] == pytest.approx(1039 / n)


def test_metric_rejects_wrong_shape():
    locs, sd = gan_modes.TARGETS["grid"]
    with pytest.raises(ValueError, match="shape"):
        gan_modes.mode_metrics(torch.zeros(10, 3), locs, sd)


def test_prior_target_density_is_the_mixture():
    locs, sd = gan_modes.TARGETS["grid"]
    mix = gan_modes.mixture(locs, sd)
    x = locs[7] + torch.tensor([0.01, -0.02], dtype=locs.dtype)
    log_25 = torch.log(torch.tensor(25.0, dtype=locs.dtype))
    expected = torch.distributions.Normal(locs[7], sd).log_prob(x).sum() - log_25
    assert float(mix.log_prob(x)) == pytest.approx(float(expected), abs=1e-5)
