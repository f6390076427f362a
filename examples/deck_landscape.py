"""A Monte Carlo loss landscape over a grid of Normals Q = N(mu, variance).

As in the talk: each grid point averages ``--estimates`` estimates of ``--samples`` draws, and
the plot shows log1p(Z - min Z). The whole grid is one batched computation: the grid of
Normals is a batched torch distribution and pyrodiv's estimators are mapped over it with
``torch.vmap`` (:func:`pyrodiv.demo.landscapes.mc_landscape`).

    python examples/deck_landscape.py --divergence jsd --out landscape_jsd.png
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pyrodiv.demo.landscapes import LANDSCAPES, mc_landscape  # noqa: E402


def main(args):
    torch.set_num_threads(1)
    mus = np.linspace(-15, 15, args.grid)
    variances = np.linspace(0.1, 50, args.grid)
    res = mc_landscape(
        args.divergence,
        mus,
        variances,
        estimates=args.estimates,
        samples=args.samples,
        seed=args.seed,
    )
    Z = res["Z"]
    i, j = np.unravel_index(np.nanargmin(Z), Z.shape)
    print(
        f"{LANDSCAPES[args.divergence][0]}: grid minimum at N({mus[j]:.2f}, "
        f"{variances[i]:.2f}), value {Z[i, j]:.4f} +- {res['se'][i, j]:.4f}"
    )
    if args.out:
        fig, ax = plt.subplots(figsize=(7, 5), layout="constrained")
        finite = np.isfinite(Z)
        shown = np.log1p(np.where(finite, Z, Z[finite].max()) - Z[finite].min())
        mesh = ax.pcolormesh(mus, variances, shown, shading="auto")
        fig.colorbar(mesh, label="log(1 + Z - min Z)")
        ax.plot(mus[j], variances[i], "wx", ms=10, mew=2, label="grid minimum")
        ax.set(
            xlabel="mean of Q",
            ylabel="variance of Q",
            title=f"{LANDSCAPES[args.divergence][0]} landscape",
        )
        ax.legend()
        fig.savefig(args.out, dpi=110)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Monte Carlo loss landscape")
    parser.add_argument("--divergence", default="jsd", choices=list(LANDSCAPES))
    parser.add_argument("--grid", default=100, type=int)
    parser.add_argument("--estimates", default=10, type=int)
    parser.add_argument("--samples", default=128, type=int)
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--out", default=None, help="PNG file to write")
    parser.add_argument("--smoke", action="store_true", help="a small grid, for tests")
    args = parser.parse_args()
    if args.smoke:
        args.grid, args.estimates = 10, 2
    main(args)
