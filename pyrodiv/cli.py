"""The ``pyrodiv`` command line.

One function adds each subcommand's parser and another runs it::

    pyrodiv demo [--out DIR] [--quick] [--seed N]

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


def build_parser() -> argparse.ArgumentParser:
    """The ``pyrodiv`` parser, with one subparser per subcommand."""
    parser = argparse.ArgumentParser(
        prog="pyrodiv",
        description="pyrodiv: fit probability distributions with any divergence, as Pyro SVI "
        "losses.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_demo_parser(subparsers)
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
