"""The talk's reparameterization tricks, checked by gradients, and the Gumbel-softmax.

Each sampler writes x = T_theta(eps) with parameter-free noise eps, so autograd through the
draws estimates grad E[g(x)]. For Normal, Uniform, Exponential and Laplace, g(x) = x^2; for
the Cauchy (no moments), g(x) = 1/(1 + x^2), whose expectation is
(1 + gamma) / ((1 + gamma)^2 + mu^2). Each Monte Carlo gradient is printed with its standard
error, the closed form and z = (MC - exact) / s.e. (:func:`pyrodiv.demo.reparam.mc_gradient`
over :data:`pyrodiv.demo.reparam.CATALOGUE`). Then learnable logits of a relaxed categorical
(Gumbel-softmax) are fitted by ``pyrodiv.ReverseKL`` through the relaxed draws
(:func:`pyrodiv.demo.reparam.gumbel_softmax_fit`).

    python examples/deck_reparam.py --num-samples 200000
"""

import argparse

from pyrodiv.demo.reparam import CATALOGUE, gumbel_softmax_fit, mc_gradient


def main(args):
    for family, entry in CATALOGUE.items():
        grads = mc_gradient(family, "deck", n=args.num_samples, seed=args.seed)
        grads.pop("max_abs_diff_to_pyro_draws")
        for param, r in grads.items():
            print(
                f"{family:12s} {entry[0]:44s} d/d{param:6s} MC {r['mc']:+.4f} "
                f"+- {r['se']:.4f}  exact {r['exact']:+.4f}  z {r['z']:+.2f}"
            )
    gumbel = gumbel_softmax_fit(steps=args.num_steps, seed=args.seed)
    print(f"Gumbel-softmax: target {[round(p, 3) for p in gumbel['target']]}")
    print(f"                fitted {[round(p, 3) for p in gumbel['fitted']]}")
    return gumbel


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Reparameterization checks")
    parser.add_argument("--num-samples", default=200_000, type=int)
    parser.add_argument("-n", "--num-steps", default=2000, type=int)
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--smoke", action="store_true", help="fewer draws and steps, for tests")
    args = parser.parse_args()
    if args.smoke:
        args.num_samples, args.num_steps = 1000, 10
    main(args)
