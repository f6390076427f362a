"""Maximum likelihood is forward KL: ``pyrodiv.CrossEntropy`` against the usual losses.

P is the point mass at the observed data set (``dist.Delta``); Q is the likelihood. Then
H(P, Q) = -log q(data), the negative log-likelihood: least squares for a Normal likelihood,
the median for a Laplace, logistic regression for a Bernoulli, softmax regression for a
Categorical, each checked against the usual loss (pyrodiv.demo.mle_equivalences).

Every deck_*.py script is this one call into the demo (pyrodiv.demo.run_example) and takes
the same options: --quick (the demo's quick settings), --smoke (seconds), --seed N,
--set KEY=VALUE (any setting of the experiment) and --out DIR (figures and results.json;
nothing is written without it). For example:

    python examples/deck_mle.py --quick
    python examples/deck_mle.py --set n=1001
"""

from pyrodiv.demo import run_example


def main(argv=None):
    return run_example("mle", argv, __doc__)


if __name__ == "__main__":
    main()
