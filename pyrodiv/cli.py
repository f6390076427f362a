"""The ``pyrodiv`` command line.

One function adds each subcommand's parser and another runs it::

    pyrodiv demo [--out DIR] [--quick] [--seed N]
    pyrodiv compare MODEL [--losses reverse_kl,forward_kl,...] [--nuts] [--out DIR] [--quick]

Example::

    >>> main(["demo", "--help"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse


def add_demo_parser(subparsers) -> None:
    """``pyrodiv demo``: reproduce every figure and number of the talk."""
    parser = subparsers.add_parser(
        "demo",
        help="reproduce every figure and number of the talk",
        description=(
            "Run every experiment of the talk 'Introduction to Differentiable Probabilistic "
            "Models' and write PNG figures, results.json (every number) and report.md (the "
            "talk's numbers beside ours beside the exact optimum by quadrature)."
        ),
    )
    parser.add_argument(
        "--out", default="out/demo", help="output directory (default: %(default)s)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer steps, draws and grid points (under a minute); the same outputs",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default: %(default)s)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_demo_command)


def run_demo_command(args) -> int:
    """Run ``pyrodiv demo`` with parsed ``args``; print where the outputs went."""
    from .demo.runner import run_demo

    results = run_demo(
        args.out,
        quick=args.quick,
        seed=args.seed,
        progress=not args.no_progress,
        threads=args.threads,
    )
    total = results["meta"]["wall_s"]["total"]
    print(
        f"pyrodiv demo ({results['meta']['mode']}): {total:.1f} s; wrote {args.out}/report.md, "
        f"{args.out}/results.json and the figures"
    )
    return 0


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
        description=(
            "Fit an autoguide to a posteriordb model of the zoo with each loss, optionally run "
            "NUTS, and compare every method with the reference (NUTS with --nuts, else the "
            "posteriordb gold-standard draws): mean error and W1 in reference-sd units, sd "
            "ratio, PSIS k-hat and wall time. Writes one netCDF file per method, "
            "comparison.csv, summary.csv, comparison.md and the figures, and prints the "
            "summary table."
        ),
    )
    parser.add_argument(
        "model", help="zoo model, e.g. eight_schools_noncentered, kidiq, arK, garch11"
    )
    parser.add_argument(
        "--losses",
        default=None,
        help="comma-separated loss names, from pyrodiv.get_loss (default: reverse_kl, "
        "forward_kl, jensen_shannon, squared_hellinger)",
    )
    parser.add_argument("--nuts", action="store_true", help="run NUTS and use it as reference")
    parser.add_argument(
        "--out", default=None, help="output directory (default: out/compare/MODEL)"
    )
    parser.add_argument("--quick", action="store_true", help="few steps and draws (seconds)")
    parser.add_argument("--num-steps", type=int, default=2000, help="SVI steps per loss")
    parser.add_argument("--particles", type=int, default=32, help="particles per SVI step")
    parser.add_argument("--draws", type=int, default=2000, help="draws from each fitted guide")
    parser.add_argument("--lr", type=float, default=0.05, help="Adam's initial learning rate")
    parser.add_argument(
        "--lr-decay",
        type=float,
        default=0.02,
        help="factor by which the learning rate decays over the run (default: %(default)s)",
    )
    parser.add_argument(
        "--guide",
        default="AutoNormal",
        help="AutoNormal, AutoDiagonalNormal, AutoMultivariateNormal or "
        "AutoLowRankMultivariateNormal (default: %(default)s)",
    )
    parser.add_argument(
        "--init-scale",
        type=float,
        default=1.0,
        help="the autoguide's initial scale; wide, so that mass-covering divergences do not "
        "collapse from the start (default: %(default)s)",
    )
    parser.add_argument("--nuts-draws", type=int, default=500, help="NUTS draws per chain")
    parser.add_argument("--nuts-warmup", type=int, default=500, help="NUTS warmup steps")
    parser.add_argument("--nuts-chains", type=int, default=2, help="NUTS chains")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--posteriordb", default=None, help="posteriordb folder")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default: %(default)s)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_compare_command, parser=parser)


def _compare_command(args, model: str, losses: list[str], out: str) -> str:
    """The ``pyrodiv compare`` command line that reproduces a run, every option spelled out."""
    parts = ["pyrodiv compare", model, "--losses", ",".join(losses), "--out", out]
    parts += ["--quick"] if args.quick else []
    parts += ["--nuts"] if args.nuts else []
    for option in ("num_steps", "particles", "draws", "lr", "lr_decay", "guide", "seed"):
        parts += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    if args.nuts:
        for option in ("nuts_draws", "nuts_warmup", "nuts_chains"):
            parts += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    return " ".join(parts)


def run_compare_command(args) -> int:
    """Run ``pyrodiv compare`` with parsed ``args``; print the summary table.

    An unknown model or loss name is reported (with the known names) as a usage error.
    """
    import torch

    from .zoo_comparison import (
        DEFAULT_LOSSES,
        GUIDES,
        check_loss_names,
        resolve_model,
        run_zoo_comparison,
        summary_markdown,
    )

    try:
        entry = resolve_model(args.model)
        names = DEFAULT_LOSSES if args.losses is None else args.losses.split(",")
        losses = check_loss_names([n.strip() for n in names if n.strip()])
        if args.guide not in GUIDES:
            raise ValueError(f"unknown guide {args.guide!r}; known: {', '.join(GUIDES)}")
    except ValueError as error:
        args.parser.error(str(error))
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
    out = args.out or f"out/compare/{entry.name}"
    torch.set_num_threads(args.threads)
    result = run_zoo_comparison(
        entry.name,
        losses,
        nuts=args.nuts,
        lr=args.lr,
        lr_decay=args.lr_decay,
        guide=args.guide,
        init_scale=args.init_scale,
        seed=args.seed,
        out=out,
        figures=not args.no_figures,
        posteriordb=args.posteriordb,
        progress=not args.no_progress,
        command=_compare_command(args, entry.name, losses, out),
        **options,
    )
    print(
        f"{entry.name} ({entry.posterior}), reference: {result.reference}; errors in "
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
