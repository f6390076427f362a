"""The demo's part beyond the talk, at its --quick settings: EM and gradient maximum likelihood
reach the same log-likelihood, Gibbs recovers the assignments the data were drawn with, and
the adversarial fits find the talk's N(-7.3, 3.2)."""

import math

import pytest

from pyrodiv.demo.beyond import beyond_the_talk
from pyrodiv.demo.runner import demo_settings


@pytest.mark.slow
def test_beyond_the_talk_at_quick_settings(tmp_path):
    res = beyond_the_talk(tmp_path, **demo_settings(quick=True)["beyond"])
    assert (tmp_path / "em_vs_gradient.png").exists()
    for name, r in res["em"].items():  # the same optimum, to 1e-6 per point
        gap = r["em_log_likelihood_per_point"] - r["gradient_log_likelihood_per_point"]
        assert abs(gap) < 1e-6, name
    g = res["gibbs"]
    # 50 points two modes 14 apart (sd 1.18): every assignment is clear; the weight's
    # posterior sd is about sqrt(0.25 / 50) = 0.07
    assert g["assignments_agreeing"] == 1.0
    assert abs(g["w_mean"] - g["w_drawn"]) < 3 * math.sqrt(0.25 / g["num_points"])
    for fitted, drawn in zip(g["locs_mean"], (-7.0, 7.0), strict=True):
        assert abs(fitted - drawn) < 1.0
    target = res["gan"]["target"]
    for name in ("GAN", "WGAN"):
        fit = res["gan"][name]
        assert abs(fit["loc"] - target["loc"]) < 0.5, name
        # 600 steps: WGAN's variance within 25% (3.03 measured); the GAN's is known to
        # shrink (1.62 measured), so only its sign of error is asserted
        if name == "WGAN":
            assert abs(fit["variance"] / target["variance"] - 1) < 0.25
        else:
            assert fit["variance"] < target["variance"]
