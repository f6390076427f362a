"""Gaussian mixture models (the talk's mixture visuals).

A K-component mixture draws z ~ Categorical(pi) and x | z = k ~ N(mu_k, v_k); its log-density
marginalizes z: log p(x) = log sum_k pi_k N(x; mu_k, v_k), ``dist.MixtureSameFamily`` in Pyro.
The script checks that both of the talk's mixtures integrate to 1 with the closed-form mean
and variance (pyrodiv.demo.mixture_visuals), and draws them with --out.

Every deck_*.py script is this one call into the demo (pyrodiv.demo.run_example) and takes
the same options: --quick (the demo's quick settings), --smoke (seconds), --seed N,
--set KEY=VALUE (any setting of the experiment) and --out DIR (figures and results.json;
nothing is written without it). For example:

    python examples/deck_mixtures.py --quick
    python examples/deck_mixtures.py --out figures
"""

from pyrodiv.demo import run_example


def main(argv=None):
    return run_example("mixtures", argv, __doc__)


if __name__ == "__main__":
    main()
