"""Gaussian mixture models (the talk's mixture visuals).

A K-component mixture draws z ~ Categorical(pi) and x | z = k ~ N(mu_k, v_k); its log-density
marginalizes z: log p(x) = log sum_k pi_k N(x; mu_k, v_k). In Pyro that is
``dist.MixtureSameFamily``. This script draws both of the talk's mixtures with their
components dashed.

    python examples/deck_mixtures.py --out mixtures.png
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import torch  # noqa: E402

MIXTURES = {
    "2 components, even weights": ([-7.0, 7.0], [1.4, 1.4], [0.5, 0.5]),
    "3 components, uneven weights": ([-6.0, 0.0, 5.0], [1.0, 2.5, 0.8], [0.2, 0.5, 0.3]),
}


def mixture(means, variances, weights):
    return dist.MixtureSameFamily(
        dist.Categorical(probs=torch.tensor(weights)),
        dist.Normal(torch.tensor(means), torch.tensor(variances).sqrt()),
    )


def main(args):
    xs = torch.linspace(-14, 14, args.num_points)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
    for ax, (title, (means, variances, weights)) in zip(axes, MIXTURES.items(), strict=True):
        p = mixture(means, variances, weights)
        draws = p.sample((10_000,))
        print(f"{title}: mean of 10000 draws {draws.mean():.3f}, exact {p.mean:.3f}")
        ax.plot(xs, p.log_prob(xs).exp(), "k", lw=2, label="mixture")
        for m, v, w in zip(means, variances, weights, strict=True):
            ax.plot(
                xs, w * dist.Normal(m, v**0.5).log_prob(xs).exp(), "--", label=f"{w} x N({m}, {v})"
            )
        ax.set(title=title, xlabel="x", ylabel="density")
        ax.legend(fontsize=8)
    if args.out:
        fig.savefig(args.out, dpi=110)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Gaussian mixture visuals")
    parser.add_argument("--num-points", default=1201, type=int)
    parser.add_argument("--out", default=None, help="PNG file to write")
    parser.add_argument("--smoke", action="store_true", help="a coarse grid, for tests")
    args = parser.parse_args()
    if args.smoke:
        args.num_points = 50
    main(args)
