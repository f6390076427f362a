"""Every f-divergence of the talk's table (and pyrodiv's catalogue) fitted as a loss.

D_f(P||Q) = E_Q[f(p/q)], the estimate of ``pyrodiv.FDivergence(name, **params)``: Q =
N(loc, L^2) is fitted to the bimodal target from a narrow N(1, 1) and a broad N(1, 25) start,
every generator and start at once as one batch of independent fits, and each fit is printed
next to the exact local optimum by quadrature and the verdict (mode-seeking or mass-covering)
of the exact optimum (pyrodiv.demo.fdiv_table). From the narrow start Q sees p/q ~ 0 only, so
mass-covering generators can collapse there.

Every deck_*.py script is this one call into the demo (pyrodiv.demo.run_example) and takes
the same options: --quick (the demo's quick settings), --smoke (seconds), --seed N,
--set KEY=VALUE (any setting of the experiment) and --out DIR (figures and results.json;
nothing is written without it). For example:

    python examples/deck_fdivergences.py --quick
    python examples/deck_fdivergences.py --set "names=['squared_hellinger', 'pearson']"
"""

from pyrodiv.demo import run_example


def main(argv=None):
    return run_example("fdiv_table", argv, __doc__)


if __name__ == "__main__":
    main()
