"""A spline flow guide trained with forward KL covers both modes of the talk's bimodal target,
scored exactly by quadrature (benchmarks/bimodal_flows.py)."""

import math
import sys
from pathlib import Path

import pyro
import pytest
import torch
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bimodal_flows  # noqa: E402


def test_quadrature_is_exact_for_known_gaussians():
    """Before training the spline guide is exactly N(0, 4^2): the quadrature gives its mass
    near each mode and KL(P||Q) in closed form (up to P's entropy, itself by quadrature)."""
    pyro.set_rng_seed(0)
    guide = bimodal_flows.spline_guide()
    guide()
    scores = bimodal_flows.quadrature(guide)
    s = 4.0
    expected_near = norm.cdf(9.0 / s) - norm.cdf(5.0 / s)
    assert scores["mass"] == pytest.approx(1.0, abs=1e-6)
    assert scores["mass_left"] == pytest.approx(expected_near, abs=1e-6)
    assert scores["mass_right"] == pytest.approx(expected_near, abs=1e-6)
    # KL(P||N(0, s^2)) = -H(P) + E_P[x^2]/(2 s^2) + log(s sqrt(2 pi)); E_P x^2 = 49 + 1.4.
    x = bimodal_flows.grid()
    log_p = bimodal_flows.target().log_prob(x)
    neg_entropy = float(torch.trapezoid(log_p.exp() * log_p, x))
    closed = neg_entropy + (49.0 + 1.4) / (2 * s**2) + math.log(s * math.sqrt(2 * math.pi))
    assert scores["forward_kl"] == pytest.approx(closed, abs=1e-6)


def test_forward_kl_spline_flow_covers_both_modes():
    """Seed 0, 600 steps: the exact KL(P||Q) falls under 0.05 nats (0.026-0.028 for seeds
    0-2), and Q puts between 0.4 and 0.6 of its mass within 2 of each mode (P puts 0.455
    there; seeds 0-2 give 0.433-0.450)."""
    guide, row = bimodal_flows.fit("spline", "forward KL", steps=600, seed=0)
    assert "error" not in row
    assert row["mass"] == pytest.approx(1.0, abs=1e-4)
    assert row["forward_kl"] < 0.05
    assert 0.4 <= row["mass_left"] <= 0.6
    assert 0.4 <= row["mass_right"] <= 0.6


def test_planar_forward_kl_is_reported_not_trainable():
    """Forward KL on a prior target needs log q at P's draws; Pyro's Planar has no inverse."""
    guide, row = bimodal_flows.fit("planar", "forward KL", steps=2, seed=0)
    assert guide is None
    assert "no inverse" in row["error"]
