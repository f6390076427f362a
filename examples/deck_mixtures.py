"""Gaussian mixture models (the talk's mixture visuals).

A K-component mixture draws z ~ Categorical(pi) and x | z = k ~ N(mu_k, v_k); its log-density
marginalizes z: log p(x) = log sum_k pi_k N(x; mu_k, v_k). In Pyro that is
``dist.MixtureSameFamily`` (:func:`pyrodiv.demo.common.mixture`). This script draws both of
the talk's mixtures with their weighted components dashed
(:func:`pyrodiv.demo.mixtures.mixture_visuals`), and checks the mean of draws against the
closed form sum_k pi_k mu_k.

    python examples/deck_mixtures.py --out-dir mixtures
"""

import argparse

import pyro

from pyrodiv.demo.common import mixture
from pyrodiv.demo.mixtures import MIXTURES, mixture_visuals


def main(args):
    pyro.set_rng_seed(args.seed)
    res = mixture_visuals(args.out_dir, n_grid=args.num_points)
    for name, spec in MIXTURES.items():
        draws = mixture(spec["means"], spec["variances"], spec["weights"]).sample((10_000,))
        m = res[name]
        print(
            f"{name}: integral {m['integral']:.6f}; mean {m['mean']:.4f} (closed form "
            f"{m['mean_closed_form']:.4f}, 10000 draws {draws.mean():.3f}); variance "
            f"{m['variance']:.4f} (closed form {m['variance_closed_form']:.4f})"
        )
    if args.out_dir:
        print(f"wrote {', '.join(res['figures'])} in {args.out_dir}")
    return res


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Gaussian mixture visuals")
    parser.add_argument("--num-points", default=4001, type=int, help="quadrature grid")
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--out-dir", default=".", help="folder for mixtures.png")
    parser.add_argument("--smoke", action="store_true", help="a coarse grid, for tests")
    args = parser.parse_args()
    if args.smoke:
        args.num_points = 401
    main(args)
