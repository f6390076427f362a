"""Monte Carlo loss landscapes over a grid of Normals Q = N(mu, variance).

As in the talk: a 100 x 100 grid, each point the mean of 10 estimates of 128 draws, shown as
log1p(Z - min Z), for forward KL, reverse KL, JSD and four f-divergences. The estimators are
pyrodiv's, mapped over the grid with ``torch.vmap``, and the landscapes share their draws
(pyrodiv.demo.landscapes). The report gives the grid minimum, the exact value there and the
exact local optima.

Every deck_*.py script is this one call into the demo (pyrodiv.demo.run_example) and takes
the same options: --quick (the demo's quick settings), --smoke (seconds), --seed N,
--set KEY=VALUE (any setting of the experiment) and --out DIR (figures and results.json;
nothing is written without it). For example:

    python examples/deck_landscape.py --quick
    python examples/deck_landscape.py --set "names=['jsd']" --out figures
"""

from pyrodiv.demo import run_example


def main(argv=None):
    return run_example("landscapes", argv, __doc__)


if __name__ == "__main__":
    main()
