"""The one command line of the talk's example scripts (``examples/deck_*.py``).

Each script is a thin call, ``run_example("bimodal", argv, __doc__)``: it runs that experiment
of the demo (:data:`~pyrodiv.demo.runner.EXPERIMENTS`) with the demo's own settings, prints the
experiment's section of the demo's report, and returns the results. The options are the same
for every script::

    python examples/deck_bimodal.py                      # the talk's settings
    python examples/deck_bimodal.py --quick              # the demo's --quick settings
    python examples/deck_bimodal.py --set steps=8000 --set lr=0.02 --out figures/
    python examples/deck_bimodal.py --smoke              # seconds (for tests)

Nothing is written unless ``--out`` is given; then the experiment's figures and its
``results.json`` go there (``--json FILE`` writes the results alone).

Example::

    >>> res = run_example("emd", ["--smoke"])  # doctest: +SKIP
    >>> round(res["histograms"]["value"], 7)  # doctest: +SKIP
    0.7062374
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
from pathlib import Path

#: Settings that make each experiment take seconds: ``--smoke`` (on top of the quick ones).
SMOKE = {
    "normal": {"steps": 100, "lr": 0.05, "quad_n": 2001},
    "mixtures": {"n_grid": 401},
    "bimodal": {"steps": 60, "long_steps": 60, "basin_seeds": 2, "quad_n": 4001},
    "fdiv_table": {"steps": 40, "particles": 32, "quad_n": 2001},
    "landscapes": {
        "grid": 12,
        "estimates": 2,
        "samples": 32,
        "quad_n": 2001,
        "path_steps": 40,
        "path_lr": 0.05,
    },
    "reparam": {"n": 5000, "gumbel_steps": 40},
    "emd": {"steps": 30, "samples": 64, "quantile_n": 2000},
    "mle": {"n": 51},
}


def _setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value
    return key.strip(), parsed


def example_parser(experiment: str, description: str | None = None) -> argparse.ArgumentParser:
    """The parser shared by the example scripts (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=description or f"The talk's {experiment} experiment (pyrodiv demo).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default=None, help="folder for the figures and results.json")
    parser.add_argument(
        "--json", default=None, help="write the results (JSON) to this file, without figures"
    )
    parser.add_argument("--quick", action="store_true", help="the demo's --quick settings")
    parser.add_argument("--smoke", action="store_true", help="seconds, for tests")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--set",
        dest="overrides",
        type=_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one setting of the experiment (repeatable); the settings are printed",
    )
    return parser


def example_settings(experiment: str, *, quick=False, smoke=False, overrides=()) -> dict:
    """The keyword arguments of one experiment: the demo's full or quick settings, then the
    :data:`SMOKE` ones, then ``overrides`` (``(key, value)`` pairs, checked against the
    experiment function's parameters).

    Example::

        >>> example_settings("emd", overrides=[("steps", 10)])["steps"]
        10
    """
    from .runner import EXPERIMENTS, demo_settings

    settings = demo_settings(quick or smoke)[experiment]
    if smoke:
        settings.update(SMOKE[experiment])
    known = inspect.signature(EXPERIMENTS[experiment]).parameters
    for key, value in overrides:
        if key not in known or key in ("out_dir", "progress"):
            options = ", ".join(k for k in known if k not in ("out_dir", "progress"))
            raise ValueError(f"{experiment} has no setting {key!r}; settings: {options}")
        settings[key] = value
    return settings


def run_example(experiment: str, argv=None, description: str | None = None) -> dict:
    """Parse ``argv`` (:func:`example_parser`), run ``experiment`` with
    :func:`example_settings`, print its settings and its section of the demo's report, write
    the figures and ``results.json`` into ``--out`` (if given), and return the results."""
    from .progress import Tracker
    from .report import SECTIONS
    from .runner import COST, EXPERIMENTS, progress_units, to_json

    parser = example_parser(experiment, description)
    args = parser.parse_args(argv)
    try:
        settings = example_settings(
            experiment, quick=args.quick, smoke=args.smoke, overrides=args.overrides
        )
    except ValueError as error:
        parser.error(str(error))
    params = inspect.signature(EXPERIMENTS[experiment]).parameters
    if "seed" in params:
        settings["seed"] = args.seed
    print(f"{experiment}: " + ", ".join(f"{k}={v!r}" for k, v in settings.items()))
    tracker = Tracker({experiment: COST["full"][experiment]}, label=experiment)
    if "progress" in params:
        settings["progress"] = tracker
    tracker.start(experiment, progress_units(experiment, settings))
    try:
        results = EXPERIMENTS[experiment](args.out, **settings)
    finally:
        tracker.close()
    results.pop("surfaces", None)  # the landscapes' arrays are not for printing or JSON
    print(SECTIONS[experiment](results))
    if args.json is not None:
        Path(args.json).write_text(json.dumps(to_json(results), indent=1))
    if args.out is not None:
        (Path(args.out) / "results.json").write_text(json.dumps(to_json(results), indent=1))
        print(
            f"wrote {', '.join(f for f in results.get('figures', []) if f)} and results.json "
            f"into {args.out}"
        )
    return results
