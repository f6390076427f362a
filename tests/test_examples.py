"""Run each example script with ``--smoke`` (a few steps) and check a number it computes.

The talk's scripts (``deck_*.py``) run in a fresh interpreter, as a user runs them, and write
their ``results.json`` into ``--out``; each is checked against a closed form, a quadrature
reference or the talk's value (``--json``: the results without the figures, which the demo's
own tests draw). The gallery examples that can check a number cheaply are
imported and run in-process with ``--smoke``.
"""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _normal(r):
    assert r["exact"]["loc"] == pytest.approx(-7.3, abs=2e-3)
    assert r["exact"]["variance"] == pytest.approx(3.2, abs=2e-3)
    assert r["deck"] == {"loc": -7.2829, "variance": 3.2358}


def _mixtures(r):
    assert r["two_even"]["integral"] == pytest.approx(1.0, abs=1e-6)
    assert r["two_even"]["variance"] == pytest.approx(50.4, abs=1e-3)  # 49 + 1.4
    assert r["three_uneven"]["mean"] == pytest.approx(0.3, abs=1e-4)


def _bimodal(r):
    assert r["runs"]["forward_kl"]["exact"]["variance"] == pytest.approx(50.4, abs=1e-2)
    assert r["runs"]["reverse_kl_right"]["exact"]["divergence"] == pytest.approx(
        math.log(2), abs=1e-3
    )
    assert r["jsd_optima"]["mode"]["divergence"] == pytest.approx(0.2158, abs=1e-3)
    assert r["jsd_optima"]["broad"]["divergence"] == pytest.approx(0.2940, abs=1e-3)
    assert len(r["jsd_basins"]["L"]["runs"]) == 2  # the main run and one batched run


def _fdiv_table(r):
    rows = r["rows"]
    assert len(rows) == 15
    assert rows["kl_reverse"]["verdict"] == "mode-seeking"
    assert rows["kl_forward"]["verdict"] == "mass-covering"
    assert rows["kl_forward"]["best_exact"]["variance"] == pytest.approx(50.4, abs=0.05)


def _landscapes(r):
    scapes = r["landscapes"]
    assert scapes["reverse_kl"]["best_exact"]["divergence"] == pytest.approx(math.log(2), abs=1e-3)
    assert scapes["jsd"]["best_exact"]["divergence"] == pytest.approx(0.2158, abs=1e-3)


def _reparam(r):
    assert len(r["rows"]) == 18
    assert max(abs(row["z"]) for row in r["rows"]) < 4.5  # gradients within s.e. of exact


def _emd(r):
    assert r["histograms"]["value"] == pytest.approx(0.7062374245472838, abs=1e-12)
    assert r["w1_fit"]["optimum"]["loc"] == pytest.approx(0.0, abs=1e-2)


def _mle(r):
    assert max(c["max_abs_diff"] for c in r["cases"].values()) < 1e-3


#: Each deck script and the check of its results.
DECK = {
    "deck_normal": _normal,
    "deck_mixtures": _mixtures,
    "deck_bimodal": _bimodal,
    "deck_fdivergences": _fdiv_table,
    "deck_landscape": _landscapes,
    "deck_reparam": _reparam,
    "deck_emd": _emd,
    "deck_mle": _mle,
}


def test_every_deck_script_is_checked():
    assert {p.stem for p in EXAMPLES.glob("deck_*.py")} == set(DECK)


@pytest.mark.parametrize("name", sorted(DECK))
def test_deck_script(name, tmp_path):
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--smoke", "--json", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    DECK[name](json.loads(out.read_text()))
    assert list(tmp_path.iterdir()) == [out]  # no figures without --out


def test_deck_scripts_write_nothing_without_out(tmp_path):
    """Without --out a script writes no file (into the current folder or elsewhere)."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "deck_mixtures.py"), "--smoke"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []
    assert "50.4000" in result.stdout  # the printed report: the closed-form variance


def test_deck_scripts_share_one_command_line(capsys):
    """Each script is one call into the demo; a bad --set is a usage error naming the
    experiment's settings."""
    from pyrodiv.demo import run_example

    for path in EXAMPLES.glob("deck_*.py"):
        text = path.read_text()
        assert "argparse" not in text and "run_example(" in text, path.name
    with pytest.raises(SystemExit) as exit_info:
        run_example("emd", ["--smoke", "--set", "stepz=3"])
    assert exit_info.value.code == 2
    assert "emd has no setting 'stepz'" in capsys.readouterr().err


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
