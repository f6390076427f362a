"""The earth mover's distance (Wasserstein-1), exactly and as a fitting loss.

1. The talk's two 10-bin histograms, cost |i - j|: the EMD as a linear programme (POT), the
   talk's 0.7062374, checked against the 1-D closed form sum_k |A_k - B_k|.
2. A Normal fitted to the bimodal target by ``pyrodiv.Wasserstein`` (the W1 between sorted
   draws) against the W1-optimal Normal by quantile quadrature (pyrodiv.demo.earth_movers).

Every deck_*.py script is this one call into the demo (pyrodiv.demo.run_example) and takes
the same options: --quick (the demo's quick settings), --smoke (seconds), --seed N,
--set KEY=VALUE (any setting of the experiment) and --out DIR (figures and results.json;
nothing is written without it). For example:

    python examples/deck_emd.py --quick
    python examples/deck_emd.py --set steps=6000 --out figures
"""

from pyrodiv.demo import run_example


def main(argv=None):
    return run_example("emd", argv, __doc__)


if __name__ == "__main__":
    main()
