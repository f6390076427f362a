"""The ``pyrodiv`` command line.

One function adds each subcommand's parser and another runs it::

    pyrodiv demo [--out DIR] [--quick] [--seed N] [--only bimodal,emd]
    pyrodiv compare MODEL [--losses reverse_kl,forward_kl,...] [--nuts] [--out DIR] [--quick]
    pyrodiv compare --list        (or: pyrodiv models)

Example::

    >>> main(["demo", "--help"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import os

# Nothing at module level imports torch, pyro or the rest of pyrodiv: building the parser and
# printing --help stay instant. Each command imports what it runs.

#: The losses ``pyrodiv compare`` fits by default (``pyrodiv.zoo.comparison.DEFAULT_LOSSES``,
#: repeated here so that --help can show it without importing torch; a test keeps them equal).
DEFAULT_LOSSES = ("reverse_kl", "forward_kl", "jensen_shannon", "squared_hellinger")
#: The autoguides ``pyrodiv compare`` can fit (``pyrodiv.zoo.comparison.GUIDES``).
GUIDES = (
    "AutoNormal",
    "AutoDiagonalNormal",
    "AutoMultivariateNormal",
    "AutoLowRankMultivariateNormal",
    "auto",
    "flow",
)


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (flags and options whose help already says
    it excepted)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (
            "%(default)" in text
            or "default:" in text
            or action.default in (None, argparse.SUPPRESS)
        ):
            return text
        if isinstance(action, argparse._StoreTrueAction | argparse._HelpAction):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)"
        return text


# ---- argument types: every value is checked when the command line is read ----------------


def _integer(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _number(low: float, high: float | None = None, *, closed_high: bool = True):
    """A float ``x`` with ``low < x`` (and ``x <= high`` or ``x < high``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        above = value > low
        below = high is None or (value <= high if closed_high else value < high)
        if not (above and below):  # also refuses nan
            bound = "" if high is None else f" and {'<=' if closed_high else '<'} {high:g}"
            raise argparse.ArgumentTypeError(f"must be > {low:g}{bound}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def _out_dir(text: str) -> str:
    """An output folder: it may exist (files in it are replaced), but not as a file."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the output folder must not be empty")
    path = os.path.expanduser(text)
    if os.path.exists(path) and not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a folder")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"cannot make folder {text!r}: {parent!r} is a file")
    return text


def _existing_dir(text: str) -> str:
    if not os.path.isdir(os.path.expanduser(text)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder")
    return text


positive_int = _integer(1)
nonnegative_int = _integer(0)
positive_number = _number(0.0)


# ---- pyrodiv demo ------------------------------------------------------------------------


def add_demo_parser(subparsers) -> None:
    """``pyrodiv demo``: reproduce every figure and number of the talk."""
    parser = subparsers.add_parser(
        "demo",
        help="reproduce every figure and number of the talk (about 2 minutes; --quick: 30 s)",
        formatter_class=_HelpFormatter,
        description=(
            "Run every experiment of the talk 'Introduction to Differentiable Probabilistic "
            "Models' and write PNG figures, results.json (every number) and report.md (the "
            "talk's numbers beside ours beside the exact optimum by quadrature). About 2 "
            "minutes on one core with the talk's settings; --quick takes under 30 s."
        ),
    )
    parser.add_argument("--out", default="out/demo", type=_out_dir, help="output folder")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer steps, draws and grid points (under 30 s); the same outputs, the exact "
        "optima and the talk's closed-form numbers unchanged",
    )
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="random seed")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads")
    parser.add_argument(
        "--only",
        default=None,
        type=_experiment_names,
        help="comma-separated experiments to run (of normal, mixtures, bimodal, fdiv_table, "
        "landscapes, reparam, emd, mle; default: all)",
    )
    parser.add_argument(
        "--beyond",
        action="store_true",
        help="also run the experiments beyond the talk (EM, Gibbs, MCMC kernels, GAN, LSGAN, "
        "f-GAN, WGAN and normalizing flows; about 115 s, 60 s with --quick)",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress display (else a bar on a terminal, plain lines otherwise)",
    )
    parser.set_defaults(func=run_demo_command)


#: The experiments of ``pyrodiv demo`` (``pyrodiv.demo.runner.EXPERIMENTS``), in order.
EXPERIMENT_NAMES = tuple("normal mixtures bimodal fdiv_table landscapes reparam emd mle".split())


def _experiment_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXPERIMENT_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown experiment(s) {unknown or text!r}; known: {', '.join(EXPERIMENT_NAMES)}"
        )
    return names


def run_demo_command(args) -> int:
    """Run ``pyrodiv demo`` with parsed ``args``; print where the outputs went."""
    from .demo.runner import run_demo

    results = run_demo(
        args.out,
        quick=args.quick,
        seed=args.seed,
        progress=not args.no_progress,
        threads=args.threads,
        only=args.only,
        beyond=args.beyond,
    )
    wall = results["meta"]["wall_s"]
    by_experiment = ", ".join(f"{k} {v:.1f} s" for k, v in wall.items() if k != "total")
    print(
        f"pyrodiv demo ({results['meta']['mode']}): {wall['total']:.1f} s ({by_experiment}); "
        f"wrote {args.out}/report.md, {args.out}/results.json and the figures"
    )
    return 0


# ---- pyrodiv compare and pyrodiv models --------------------------------------------------

_QUICK = {
    "num_steps": 300,
    "num_particles": 16,
    "num_draws": 500,
    "nuts_draws": 200,
    "nuts_warmup": 200,
    "nuts_chains": 1,
}


def add_compare_parser(subparsers) -> None:
    """``pyrodiv compare``: several divergences (and NUTS) on one zoo posterior."""
    parser = subparsers.add_parser(
        "compare",
        help="fit a zoo posterior with several divergences and compare with NUTS or the "
        "posteriordb reference",
        formatter_class=_HelpFormatter,
        description=(
            "Fit an autoguide to a posteriordb model of the zoo with each loss, optionally run "
            "NUTS, and compare every method with the reference (NUTS with --nuts, else the "
            "posteriordb gold-standard draws): mean error and W1 in reference-sd units, sd "
            "ratio, PSIS k-hat and wall time. Writes one netCDF file per method, "
            "comparison.csv, summary.csv, comparison.md and the figures, and prints the "
            "summary table. `pyrodiv compare --list` (or `pyrodiv models`) lists the models."
        ),
    )
    parser.add_argument(
        "model",
        nargs="?",
        help="zoo model: a short name (eight_schools, kidiq, arK, garch, ...), its posteriordb "
        "name or its model function's name (eight_schools_noncentered); see --list",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the zoo models and exit (no model needed)"
    )
    parser.add_argument(
        "--losses",
        default=",".join(DEFAULT_LOSSES),
        help="comma-separated loss names of pyrodiv.get_loss",
    )
    parser.add_argument("--nuts", action="store_true", help="run NUTS and use it as reference")
    parser.add_argument(
        "--out",
        default=None,
        type=_out_dir,
        help="output folder (default: out/compare/MODEL, MODEL as given)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="seconds, not minutes: at most "
        + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in _QUICK.items()),
    )
    parser.add_argument(
        "--method",
        default="approximate",
        choices=("approximate", "svi"),
        help="approximate: pyrodiv.approximate (warm start, whitening, automatic particles and "
        "steps; --particles, --lr, --lr-decay and --init-scale unused); svi: plain SVI with "
        "the options below",
    )
    parser.add_argument(
        "--num-steps",
        type=positive_int,
        default=2000,
        help="SVI steps per loss (with --method approximate: per stage, at most)",
    )
    parser.add_argument("--particles", type=positive_int, default=32, help="particles per step")
    parser.add_argument(
        "--draws", type=positive_int, default=2000, help="draws from each fitted guide"
    )
    parser.add_argument(
        "--lr", type=positive_number, default=0.05, help="Adam's initial learning rate"
    )
    parser.add_argument(
        "--lr-decay",
        type=_number(0.0, 1.0),
        default=0.02,
        help="factor by which the learning rate decays over the run, in (0, 1]",
    )
    parser.add_argument(
        "--guide",
        default=None,
        choices=GUIDES,
        metavar="GUIDE",
        help=f"the guide: {', '.join(GUIDES)} (auto and flow: --method approximate only; "
        "default: auto with --method approximate, else AutoNormal)",
    )
    parser.add_argument(
        "--init-scale",
        type=positive_number,
        default=1.0,
        help="the autoguide's initial scale; wide, so that mass-covering divergences do not "
        "collapse from the start",
    )
    parser.add_argument(
        "--nuts-draws", type=positive_int, default=500, help="NUTS draws per chain"
    )
    parser.add_argument(
        "--nuts-warmup", type=nonnegative_int, default=500, help="NUTS warmup steps"
    )
    parser.add_argument("--nuts-chains", type=positive_int, default=2, help="NUTS chains")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="random seed")
    parser.add_argument(
        "--posteriordb",
        default=None,
        type=_existing_dir,
        help="posteriordb folder (default: $PYRODIV_POSTERIORDB, else ../shared/posteriordb)",
    )
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_compare_command, parser=parser)


def add_models_parser(subparsers) -> None:
    """``pyrodiv models``: the zoo's models (as ``pyrodiv compare --list``)."""
    parser = subparsers.add_parser(
        "models",
        help="list the zoo models that `pyrodiv compare` fits",
        formatter_class=_HelpFormatter,
        description="List the zoo's posteriors: short name, posteriordb name, model function "
        "and latent sites, and whether the local posteriordb copy has its data.",
    )
    parser.add_argument(
        "--posteriordb",
        default=None,
        type=_existing_dir,
        help="posteriordb folder (default: $PYRODIV_POSTERIORDB, else ../shared/posteriordb)",
    )
    parser.set_defaults(func=run_models_command)


def models_table(posteriordb=None) -> str:
    """The zoo's models as a Markdown table (what ``pyrodiv models`` prints)."""
    from .zoo import ZOO
    from .zoo.posteriordb import posterior_folder

    rows = []
    for entry in ZOO.values():
        try:
            posterior_folder(entry.posterior, posteriordb)
            here = "yes"
        except (KeyError, FileNotFoundError):
            here = "no"
        rows.append(
            f"| {entry.name} | {entry.posterior} | {entry.model.__name__} | "
            f"{', '.join(entry.latents)} | {here} |"
        )
    header = [
        "| name | posteriordb posterior | model function | latent sites | data here |",
        "|---|---|---|---|---|",
    ]
    return "\n".join(header + rows)


def run_models_command(args) -> int:
    """Print the zoo's models."""
    print(models_table(args.posteriordb))
    print("\nAny of the three names works: pyrodiv compare NAME [--nuts]")
    return 0


def _compare_command(args, model: str, losses: list[str], out: str) -> str:
    """The ``pyrodiv compare`` command line that reproduces a run, every option spelled out."""
    parts = ["pyrodiv compare", model, "--losses", ",".join(losses), "--out", out]
    parts += ["--quick"] if args.quick else []
    parts += ["--nuts"] if args.nuts else []
    options = ("method", "num_steps", "particles", "draws", "lr", "lr_decay", "guide")
    options += ("init_scale",)
    for option in (*options, "seed"):
        parts += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    if args.nuts:
        for option in ("nuts_draws", "nuts_warmup", "nuts_chains"):
            parts += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    if args.posteriordb:
        parts += ["--posteriordb", args.posteriordb]
    return " ".join(parts)


def run_compare_command(args) -> int:
    """Run ``pyrodiv compare`` with parsed ``args``; print the summary table.

    Every argument is checked before any work starts: an unknown model or loss name is a
    usage error (exit 2) that lists the known names. The model is reported under the name it
    was given (an alias such as ``eight_schools_noncentered`` included).
    """
    if args.list:
        print(models_table(args.posteriordb))
        return 0
    if args.model is None:
        args.parser.error("the model is required (see `pyrodiv compare --list`)")
    import torch

    from .zoo.comparison import (
        check_loss_names,
        resolve_model,
        run_zoo_comparison,
        summary_markdown,
    )

    try:
        entry = resolve_model(args.model)
        losses = check_loss_names([n.strip() for n in args.losses.split(",") if n.strip()])
    except ValueError as error:
        args.parser.error(str(error))
    if args.guide is None:
        args.guide = "auto" if args.method == "approximate" else "AutoNormal"
    if args.guide in ("auto", "flow") and args.method != "approximate":
        args.parser.error(f"argument --guide: {args.guide} needs --method approximate")
    options = {
        "num_steps": args.num_steps,
        "num_particles": args.particles,
        "num_draws": args.draws,
        "nuts_draws": args.nuts_draws,
        "nuts_warmup": args.nuts_warmup,
        "nuts_chains": args.nuts_chains,
    }
    if args.quick:
        options = {k: min(v, _QUICK[k]) for k, v in options.items()}
    out = args.out or f"out/compare/{args.model}"
    try:
        _out_dir(out)
    except argparse.ArgumentTypeError as error:
        args.parser.error(f"argument --out: {error}")
    torch.set_num_threads(args.threads)
    if not args.no_progress:
        steps = f"{options['num_steps']} steps"
        if args.method == "approximate":
            steps = f"pyrodiv.approximate, guide {args.guide}, at most {steps} a stage"
        plan = f"{len(losses)} fit(s) ({steps}): {', '.join(losses)}"
        if args.nuts:
            plan = (
                f"NUTS first ({options['nuts_chains']} chain(s) of {options['nuts_warmup']} "
                f"warmup + {options['nuts_draws']} draws, minutes), then {plan}"
            )
        print(f"pyrodiv compare {args.model}: {plan}", flush=True)
    result = run_zoo_comparison(
        args.model,
        losses,
        nuts=args.nuts,
        method=args.method,
        lr=args.lr,
        lr_decay=args.lr_decay,
        guide=args.guide,
        init_scale=args.init_scale,
        seed=args.seed,
        out=out,
        figures=not args.no_figures,
        posteriordb=args.posteriordb,
        progress=not args.no_progress,
        command=_compare_command(args, args.model, losses, out),
        **options,
    )
    name = args.model if args.model == entry.name else f"{args.model} (zoo: {entry.name})"
    print(
        f"{name}, posterior {entry.posterior}, reference: {result.reference}; errors in "
        "reference-sd units over the scalar variables"
    )
    print(summary_markdown(result.summary.drop(columns=["model", "reference"])))
    print(
        f"wrote {out}/comparison.md, comparison.csv, summary.csv, the netCDF files"
        + ("" if args.no_figures else " and the figures")
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``pyrodiv`` parser, with one subparser per subcommand."""
    parser = argparse.ArgumentParser(
        prog="pyrodiv",
        description="pyrodiv: fit probability distributions with any divergence, as Pyro SVI "
        "losses.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_demo_parser(subparsers)
    add_compare_parser(subparsers)
    add_models_parser(subparsers)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``pyrodiv`` console script.

    Example::

        >>> main([])  # prints the help  # doctest: +SKIP
        0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    return args.func(args)
