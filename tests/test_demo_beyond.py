"""The demo's part beyond the talk, at its --quick settings: EM and gradient maximum likelihood
reach the same log-likelihood, Gibbs recovers the assignments the data were drawn with, the
kernels and divergences reach the mixture's quadrature posterior and eight schools'
posteriordb draws, the adversarial fits find the talk's N(-7.3, 3.2), and a spline flow trained
with forward KL or Jensen-Shannon covers both modes of the talk's bimodal (exact KL by
quadrature)."""

import math

import pytest

from pyrodiv.demo.beyond import beyond_the_talk
from pyrodiv.demo.runner import demo_settings


@pytest.mark.slow
def test_beyond_the_talk_at_quick_settings(tmp_path):
    res = beyond_the_talk(tmp_path, **demo_settings(quick=True)["beyond"])
    assert (tmp_path / "em_vs_gradient.png").exists()
    assert res["figures"] == ["em_vs_gradient.png", "adversarial_fits.png", "flow_fits.png"]
    assert (tmp_path / "adversarial_fits.png").exists()
    assert (tmp_path / "flow_fits.png").exists()
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
    # 1000 steps of 128 draws, one Adam (betas 0.5, 0.9), the mean of the last quarter of the
    # iterates. Measured (mean, variance), float64, seed 0: GAN -7.298, 3.151; LSGAN -7.299,
    # 3.191; f-GAN KL -7.290, 3.171; WGAN -7.322, 2.972 (seeds 0-5, WGAN: 2.97 to 3.30).
    # Tolerances: 0.3 in the mean (P's sd is 1.79) and 20% in the variance.
    assert list(res["gan"]) == ["GAN", "LSGAN", "f-GAN KL", "WGAN", "target"]
    for name in ("GAN", "LSGAN", "f-GAN KL", "WGAN"):
        fit = res["gan"][name]
        assert abs(fit["loc"] - target["loc"]) < 0.3, name
        assert abs(fit["variance"] / target["variance"] - 1) < 0.2, name
    # The spline flow on 0.5 N(-7, 1.4) + 0.5 N(7, 1.4), 600 steps at --quick (2000 in the full
    # run). Measured KL(P||Q): forward KL 0.028, JSD 0.027 (0.012 and 0.016 at 2000 steps);
    # Q's mass within 2 of each mode 0.43-0.46 (P: 0.455). Reverse KL is reported, not
    # asserted (0.15 nats at seed 0, masses 0.24 and 0.66).
    flows = res["flows"]["fits"]
    assert list(flows) == ["forward KL", "reverse KL", "JSD"]
    for name, fit in flows.items():
        assert abs(fit["mass"] - 1) < 1e-3, name  # the grid holds all of Q
        assert fit["forward_kl"] >= 0 and fit["reverse_kl"] >= 0, name
    for name in ("forward KL", "JSD"):
        assert flows[name]["forward_kl"] < 0.1, name
        assert min(flows[name]["mass_left"], flows[name]["mass_right"]) > 0.35, name
