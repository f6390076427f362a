"""The earth mover's distance (Wasserstein-1), exactly and as a fitting loss.

1. The talk's two 10-bin histograms, cost |i - j|: the EMD as a linear programme (POT's
   ``ot.emd``), checked against the 1-D closed form sum_k |A_k - B_k| and the talk's 0.7062.
2. A Normal fitted to the talk's bimodal target by the sample W1 between sorted draws,
   mean |sort(x_p) - sort(x_q)|, with x_q = mu + |L| eps reparameterized, and torch Adam,
   against the W1-optimal Normal by quantile quadrature.

Both are the demo's functions (:mod:`pyrodiv.demo.emd`).

    python examples/deck_emd.py --num-steps 3000
"""

import argparse

from pyrodiv.demo.common import fmt_normal
from pyrodiv.demo.emd import DECK_EMD, emd_1d, histograms, w1_fit, w1_optimal_normal


def main(args):
    emd = emd_1d(*histograms())
    print(
        f"EMD by LP {emd['value']:.6f}, closed form {emd['closed_form']:.6f}, talk {DECK_EMD:.6f}"
    )
    fit = w1_fit(
        steps=args.num_steps, lr=args.learning_rate, samples=args.num_samples, seed=args.seed
    )
    optimum = w1_optimal_normal(n=4000)
    print(
        f"W1 fit: Q = {fmt_normal(fit['loc'], fit['variance'], 3)} (mean of the last quarter); "
        f"W1-optimal Normal {fmt_normal(optimum['loc'], optimum['variance'], 3)}, "
        f"W1 = {optimum['w1']:.4f}"
    )
    return emd, fit


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Earth mover's distance")
    parser.add_argument("-n", "--num-steps", default=3000, type=int)
    parser.add_argument("-lr", "--learning-rate", default=0.01, type=float)
    parser.add_argument("--num-samples", default=512, type=int)
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--smoke", action="store_true", help="a few steps, for tests")
    args = parser.parse_args()
    if args.smoke:
        args.num_steps = 10
    main(args)
