"""One Normal fitted to the talk's bimodal target by forward KL, reverse KL or JSD.

P = {N(-7, 1.4), N(7, 1.4)} (variances), even weights. Q = N(loc, sigma^2) with sigma = |L|
(the talk's parameterization) or sigma = exp(s). The talk's settings: Adam lr 0.01, 4000
steps, 64 draws a step.

* forward KL from N(0, 1): the optimum is moment matching, N(0, 50.4); the talk stopped at
  variance 36.76 (try ``--num-steps 16000``);
* reverse KL from N(1, 1) or N(-1, 1): one mode, N(+-7, 1.4);
* JSD from N(1, 1): the mode at +7 with sigma = |L|, the broad cover N(0, 7.06^2) with
  ``--scale exp``.

The fit is the demo's (:func:`pyrodiv.demo.common.fit_normal`, ``pyro.infer.SVI`` with the
loss of :func:`pyrodiv.demo.bimodal.make_loss`); the exact local optimum from the same start
is found by quadrature (:func:`pyrodiv.demo.common.exact_optimum`).

    python examples/deck_bimodal.py --divergence JSD --start 1 --scale exp
"""

import argparse

from pyrodiv.demo.bimodal import RUNS, make_loss
from pyrodiv.demo.common import (
    bimodal,
    exact_optimum,
    fit_normal,
    fmt_normal,
    log_prob_fn,
    target_model,
)

#: The loss names of the demo and the generator of each for the quadrature reference.
GENERATORS = {divergence: gen for divergence, gen, _, _ in RUNS.values()}


def main(args):
    start = (args.start, 1.0)
    fit = fit_normal(
        target_model(bimodal()),
        make_loss(args.divergence, args.num_particles),
        start=start,
        scale=args.scale,
        steps=args.num_steps,
        lr=args.learning_rate,
        seed=args.seed,
        progress=True,
        desc=args.divergence,
    )
    exact = exact_optimum(GENERATORS[args.divergence], log_prob_fn(bimodal), start=start)
    print(
        f"{args.divergence} from N({args.start:g}, 1), scale {args.scale}: fitted Q = "
        f"{fmt_normal(fit['loc'], fit['variance'], 4)}; exact local optimum from the start "
        f"{fmt_normal(exact['loc'], exact['variance'], 4)} (D = {exact['divergence']:.4f})"
    )
    return fit


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Fit a Normal to a bimodal target")
    parser.add_argument("--divergence", default="reverse KL", choices=list(GENERATORS))
    parser.add_argument("--start", default=1.0, type=float, help="initial mean of Q")
    parser.add_argument("--scale", default="L", choices=["L", "exp"])
    parser.add_argument("-n", "--num-steps", default=4000, type=int)
    parser.add_argument("-lr", "--learning-rate", default=0.01, type=float)
    parser.add_argument("--num-particles", default=64, type=int)
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--smoke", action="store_true", help="a few steps, for tests")
    args = parser.parse_args()
    if args.smoke:
        args.num_steps = 20
    main(args)
