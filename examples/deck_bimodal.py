"""One Normal fitted to the talk's bimodal target by forward KL, reverse KL and JSD.

P = {N(-7, 1.4), N(7, 1.4)} (variances), even weights; Q = N(loc, L^2) with the talk's
settings (Adam lr 0.01, 4000 steps, 64 draws a step). Forward KL from N(0, 1) moves towards
moment matching, N(0, 50.4), and had not converged at step 4000 in the talk; reverse KL from
N(+-1, 1) finds one mode, N(+-7, 1.4); JSD from N(1, 1) walks to the mode with sigma = |L| and
lands in the broad cover N(0, 7.06^2) with sigma = exp(s). Each run is printed beside the
talk's number and the exact local optimum by quadrature (pyrodiv.demo.bimodal_fits).

Every deck_*.py script is this one call into the demo (pyrodiv.demo.run_example) and takes
the same options: --quick (the demo's quick settings), --smoke (seconds), --seed N,
--set KEY=VALUE (any setting of the experiment) and --out DIR (figures and results.json;
nothing is written without it). For example:

    python examples/deck_bimodal.py --quick
    python examples/deck_bimodal.py --set long_steps=32000 --set basin_seeds=10
"""

from pyrodiv.demo import run_example


def main(argv=None):
    return run_example("bimodal", argv, __doc__)


if __name__ == "__main__":
    main()
