"""The demo's part beyond the talk, at its --quick settings: EM and gradient maximum likelihood
reach the same log-likelihood, Gibbs recovers the assignments the data were drawn with, the
kernels and divergences reach the mixture's quadrature posterior and eight schools'
posteriordb draws, and the adversarial fits find the talk's N(-7.3, 3.2)."""

import math

import pytest

from pyrodiv.demo.beyond import beyond_the_talk
from pyrodiv.demo.runner import demo_settings


@pytest.mark.slow
def test_beyond_the_talk_at_quick_settings(tmp_path):
    res = beyond_the_talk(tmp_path, **demo_settings(quick=True)["beyond"])
    assert (tmp_path / "em_vs_gradient.png").exists()
    assert res["figures"] == ["em_vs_gradient.png", "adversarial_fits.png"]
    assert (tmp_path / "adversarial_fits.png").exists()
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
    # Kernels next to divergences (one chain of 100 + 100 draws; seeded, so the numbers are
    # reproducible; measured W1 in reference sds in brackets). On the mixture the posterior is
    # nearly Gaussian: the Gaussian guides are close (forward KL 0.036, JSD 0.040, reverse KL
    # 0.111), NUTS and Gibbs within their Monte Carlo error of 100 draws (0.17, 0.30).
    mixture = {r["method"]: r for r in res["kernels"]["mixture"]["rows"]}
    assert list(mixture) == [
        "gibbs", "nuts", "hmc", "rwmh", "reverse_kl", "forward_kl", "jensen_shannon"
    ]  # fmt: skip
    for method, bound in (("gibbs", 0.5), ("nuts", 0.4), ("forward_kl", 0.1)):
        assert mixture[method]["w1_max"] < bound, method
    for method in ("jensen_shannon", "reverse_kl"):
        assert mixture[method]["w1_max"] < 0.2, method
        assert 0.9 < mixture[method]["sd_ratio_min"] <= mixture[method]["sd_ratio_max"] < 1.1
    ref = res["kernels"]["mixture"]["reference"]
    assert ref["mean"]["locs"][0] < -6 and ref["mean"]["locs"][1] > 6  # the ordered labels
    schools = res["kernels"]["eight_schools"]
    if "skipped" not in schools:  # needs posteriordb's draws
        rows = {r["method"]: r for r in schools["rows"]}
        assert rows["nuts"]["w1_max"] < 0.35  # 0.19
        assert rows["jensen_shannon"]["w1_max"] < 0.2  # 0.11
        assert all(r["ess_per_s"] > 0 for r in rows.values())
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
