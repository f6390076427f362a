"""The ``pyrodiv`` command line: help without heavy imports, every default shown, bad values
refused before any work (argparse errors, exit 2), the zoo listed, aliases kept."""

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pyrodiv import cli

CLI = Path(cli.__file__)


def test_help_imports_neither_torch_nor_pyro():
    """The parser module alone (what ``--help`` needs) imports no torch, pyro or numpy."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('cli_alone', {str(CLI)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "for argv in (['--help'], ['demo', '--help'], ['compare', '--help'], "
        "['models', '--help']):\n"
        "    try:\n"
        "        m.main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
        "heavy = [n for n in ('torch', 'pyro', 'numpy', 'pandas') if n in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def _subparser(name):
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


@pytest.mark.parametrize("command", ["demo", "compare", "models"])
def test_help_shows_every_default(command):
    parser = _subparser(command)
    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._StoreTrueAction | argparse._HelpAction):
            continue
        if not action.option_strings:
            continue
        assert "default" in (action.help or "") or action.default is not None, action.dest
        if action.default is not None:
            flat = "".join(text.split())  # argparse wraps long defaults mid-word
            assert f"(default:{action.default})".replace(" ", "") in flat, action.dest
    if command == "compare":
        assert "(default: 2000)" in text and "reverse_kl,forward_kl" in text.replace("\n", "")


def test_cli_constants_match_the_library():
    from pyrodiv.demo import EXPERIMENTS
    from pyrodiv.zoo.comparison import DEFAULT_LOSSES, GUIDES

    assert cli.DEFAULT_LOSSES == tuple(DEFAULT_LOSSES)
    assert cli.GUIDES == tuple(GUIDES)
    assert cli.EXPERIMENT_NAMES == tuple(EXPERIMENTS)


@pytest.fixture
def no_work(monkeypatch):
    """Make any comparison or demo run fail loudly: the checks must come first."""
    import pyrodiv.demo.runner
    import pyrodiv.zoo.comparison

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(pyrodiv.zoo.comparison, "run_zoo_comparison", refuse)
    monkeypatch.setattr(pyrodiv.demo.runner, "run_demo", refuse)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["compare", "eight_schools", "--num-steps", "-5"], "--num-steps: must be an integer"),
        (["compare", "eight_schools", "--num-steps", "ten"], "expected an integer"),
        (["compare", "eight_schools", "--particles", "0"], "--particles"),
        (["compare", "eight_schools", "--lr", "0"], "--lr: must be > 0"),
        (["compare", "eight_schools", "--lr", "nan"], "--lr"),
        (["compare", "eight_schools", "--lr-decay", "1.5"], "--lr-decay"),
        (["compare", "eight_schools", "--init-scale", "-1"], "--init-scale"),
        (["compare", "eight_schools", "--nuts-chains", "0"], "--nuts-chains"),
        (["compare", "eight_schools", "--guide", "AutoBogus"], "--guide"),
        (["compare", "eight_schools", "--method", "svi", "--guide", "flow"], "--method approx"),
        (["compare", "eight_schools", "--method", "mcmc"], "--method"),
        (["compare", "eight_schools", "--posteriordb", "/no/such/folder"], "--posteriordb"),
        (["compare", "no_such_model"], "unknown zoo model"),
        (["compare", "eight_schools", "--losses", "forward_kl,bogus"], "unknown loss names"),
        (["compare"], "the model is required"),
        (["demo", "--threads", "0"], "--threads"),
        (["demo", "--only", "bimodal,bogus"], "unknown experiment"),
    ],
)
def test_bad_values_are_usage_errors_before_any_work(no_work, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", [["compare", "eight_schools"], ["demo"]])
def test_out_pointing_at_a_file_is_refused_before_any_work(no_work, capsys, tmp_path, command):
    existing = tmp_path / "results.txt"
    existing.write_text("keep me")
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*command, "--out", str(existing)])
    assert exit_info.value.code == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert existing.read_text() == "keep me"


@pytest.mark.parametrize("argv", [["compare", "--list"], ["models"]])
def test_the_zoo_models_are_listed(capsys, argv):
    from pyrodiv.zoo import ZOO

    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    for entry in ZOO.values():
        assert f"| {entry.name} | {entry.posterior} | {entry.model.__name__} |" in out
    assert len(ZOO) >= 12


def test_an_alias_is_reported_under_the_name_given(monkeypatch, capsys, tmp_path):
    import pyrodiv.zoo.comparison as comparison

    calls = {}

    class Result:
        reference = "posteriordb"
        summary = pd.DataFrame(
            {
                "model": ["eight_schools"],
                "method": ["reverse_kl"],
                "reference": ["posteriordb"],
                "variables": [18],
                "mean_error_max": [0.1],
                "mean_error_median": [0.05],
                "sd_ratio_min": [0.9],
                "sd_ratio_median": [1.0],
                "sd_ratio_max": [1.1],
                "w1_max": [0.2],
                "w1_median": [0.1],
                "khat": [0.4],
                "wall_time_s": [1.0],
            }
        )

    def fake(model, losses, **kwargs):
        calls.update(model=model, losses=losses, **kwargs)
        return Result()

    monkeypatch.setattr(comparison, "run_zoo_comparison", fake)
    monkeypatch.chdir(tmp_path)
    argv = ["compare", "eight_schools_noncentered", "--losses", "reverse_kl", "--quick"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert calls["model"] == "eight_schools_noncentered"
    assert calls["out"] == "out/compare/eight_schools_noncentered"
    assert calls["command"].startswith(
        "pyrodiv compare eight_schools_noncentered --losses reverse_kl "
        "--out out/compare/eight_schools_noncentered --quick"
    )
    assert calls["num_steps"] == 300  # --quick
    assert calls["method"] == "approximate" and calls["guide"] == "auto"  # the defaults
    assert "--method approximate" in calls["command"] and "--guide auto" in calls["command"]
    assert out.startswith(
        "pyrodiv compare eight_schools_noncentered: 1 fit(s) (pyrodiv.approximate, guide auto, "
        "at most 300 steps a stage)"
    )
    assert "\neight_schools_noncentered (zoo: eight_schools), posterior" in out
