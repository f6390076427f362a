"""Run each example script with ``--smoke`` (a few steps).

The talk's scripts (``deck_*.py``) run in a fresh interpreter. The gallery examples that can
check a number cheaply are imported and run in-process with ``--smoke``, and their results are
checked against the closed forms or quadrature references they print.
"""

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: Glob patterns (relative to ``examples/``) of the scripts run in a subprocess.
PATTERNS = ["deck_*.py"]

SCRIPTS = sorted({path for pattern in PATTERNS for path in EXAMPLES.glob(pattern)})


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_example_smoke(script, tmp_path):
    result = subprocess.run(
        [sys.executable, str(script), "--smoke"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{script.name} failed:\n{result.stdout}\n{result.stderr}"


def run_example(name, *argv):
    """Import ``examples/<name>.py`` and run its ``main`` on ``--smoke`` plus ``argv``."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(module.parse_args(["--smoke", *argv]))


def test_own_model_guide_recovers_the_conjugate_posterior():
    res = run_example("own_model_guide")
    loc, scale = res["posterior"]
    # the closed form, recomputed: 1/tau_N^2 = 1/2^2 + 20/1.5^2
    assert scale == pytest.approx((1 / 4 + 20 / 2.25) ** -0.5, rel=1e-12)
    assert len(res["fits"]) == 4
    # the Gaussian posterior is in the guide's family, so every divergence is minimized there;
    # the fits average the last 75 of 300 Adam steps, whose stationary jitter at these settings
    # is at most 0.07 posterior sd: 0.2 sd is about three times that
    for name, (fit_loc, fit_scale) in res["fits"].items():
        assert abs(fit_loc - loc) < 0.2 * scale, name
        assert abs(fit_scale - scale) < 0.2 * scale, name


def test_posterior_forward_kl_covers_and_reverse_kl_seeks_a_mode(tmp_path):
    res = run_example("posterior_forward_kl", "--out", str(tmp_path / "fig.png"))
    assert (tmp_path / "fig.png").exists()
    post = res["posterior"]
    assert post["mean"] == pytest.approx(0.0, abs=1e-9)  # the posterior is symmetric
    fkl, rkl = res["ForwardKL"], res["ReverseKL"]
    # forward KL's exact optimum over Normals is moment matching (quadrature, two ways)
    assert fkl["exact"]["variance"] == pytest.approx(post["variance"], rel=1e-4)
    assert abs(fkl["exact"]["loc"]) < 1e-3
    # reverse KL's exact optimum sits on the mode the start N(0.5, 1) leads to
    assert rkl["exact"]["loc"] > 1.5 and rkl["exact"]["variance"] < 0.2
    # the fits (last quarter of 250 steps; their jitter is a few hundredths in loc and a few
    # percent in variance, the tolerances are several times that): forward KL covers both
    # modes, reverse KL seeks one
    assert abs(fkl["loc"]) < 0.3
    assert fkl["variance"] == pytest.approx(fkl["exact"]["variance"], rel=0.15)
    assert rkl["loc"] == pytest.approx(rkl["exact"]["loc"], abs=0.1)
    assert rkl["variance"] == pytest.approx(rkl["exact"]["variance"], rel=0.2)


def test_eight_schools_example_compares_svi_and_nuts(tmp_path):
    res = run_example("eight_schools_svi_vs_nuts", "--out", str(tmp_path / "forest.png"))
    assert (tmp_path / "forest.png").exists()
    table = res["table"]
    assert set(table["method"]) == {"ReverseKL", "ForwardKL", "NUTS"}
    # mu, tau, theta_trans[0..7] and theta[0..7]: 18 scalar variables a method
    assert (table.groupby("method").size() == 18).all()
    for name, khat in res["khat"].items():
        assert math.isfinite(khat), name
        # compare_posteriors reads the same log weights (same draws, same seed)
        rows = table[table["method"] == name]
        assert rows["khat"].iloc[0] == pytest.approx(khat, abs=1e-9)
