"""The talk's reparameterization tricks, checked by gradients, and the Gumbel-softmax.

Each sampler writes x = T_theta(eps) with parameter-free noise eps, so autograd through the
draws estimates grad E[g(x)]; each Monte Carlo gradient is compared with its closed form in
standard errors, for the talk's formula and Pyro's rsample. Then learnable logits of a relaxed
categorical are fitted by ``pyrodiv.ReverseKL`` through the Gumbel-softmax draws
(pyrodiv.demo.reparam_catalogue).

Every deck_*.py script is this one call into the demo (pyrodiv.demo.run_example) and takes
the same options: --quick (the demo's quick settings), --smoke (seconds), --seed N,
--set KEY=VALUE (any setting of the experiment) and --out DIR (figures and results.json;
nothing is written without it). For example:

    python examples/deck_reparam.py --quick
    python examples/deck_reparam.py --set n=1000000
"""

from pyrodiv.demo import run_example


def main(argv=None):
    return run_example("reparam", argv, __doc__)


if __name__ == "__main__":
    main()
