"""Learning a Normal by forward KL (the talk's first experiment).

The target is P = N(-7.3, 3.2) (mean, variance) and Q = N(loc, L^2) starts at N(0, 1), with
the talk's settings: Adam, lr 0.01, 4000 steps, 64 draws of P a step, and the scale a plain
learnable factor L. Minimizing KL(P || Q) = E_P[log p - log q] over a Normal family that
contains P recovers P itself. The talk's run reached N(-7.2829, 3.2358); the script prints
ours and the exact optimum by quadrature (pyrodiv.demo.learn_normal, pyrodiv.ForwardKL in
pyrodiv.fit).

Every deck_*.py script is this one call into the demo (pyrodiv.demo.run_example) and takes
the same options: --quick (the demo's quick settings), --smoke (seconds), --seed N,
--set KEY=VALUE (any setting of the experiment) and --out DIR (figures and results.json;
nothing is written without it). For example:

    python examples/deck_normal.py --quick
    python examples/deck_normal.py --set steps=8000 --out figures
"""

from pyrodiv.demo import run_example


def main(argv=None):
    return run_example("normal", argv, __doc__)


if __name__ == "__main__":
    main()
