"""The earth mover's distance (Wasserstein-1), exactly and as a fitting loss.

1. Two 10-bin histograms, cost |i - j|: the EMD as a linear programme (POT's ``ot.emd``),
   checked against the 1-D closed form sum_k |A_k - B_k|.
2. A Normal fitted to the talk's bimodal target by the sample W1 between sorted draws,
   mean |sort(x_p) - sort(x_q)|, with x_q = mu + |L| eps reparameterized, and torch Adam.

    python examples/deck_emd.py --num-steps 3000
"""

import argparse

import numpy as np
import ot
import pyro.distributions as dist
import torch
from scipy.stats import binom


def emd_example():
    i = np.arange(10)
    a = binom.pmf(i, 9, 0.45)
    b = 0.5 * binom.pmf(i, 9, 0.25) + 0.5 * binom.pmf(i, 9, 0.7)
    a, b = a / a.sum(), b / b.sum()
    cost = np.abs(i[:, None] - i[None, :]).astype(float)
    plan = ot.emd(a, b, cost)
    value = (plan * cost).sum()
    closed = np.abs(np.cumsum(a) - np.cumsum(b))[:-1].sum()
    print(f"EMD by LP {value:.6f}, closed form {closed:.6f}, difference {abs(value - closed):.1e}")


def w1_fit(num_steps, lr, samples):
    p = dist.MixtureSameFamily(
        dist.Categorical(torch.tensor([0.5, 0.5])),
        dist.Normal(torch.tensor([-7.0, 7.0]), torch.tensor([1.4, 1.4]).sqrt()),
    )
    loc = torch.tensor(1.0, requires_grad=True)
    L = torch.tensor(1.0, requires_grad=True)
    opt = torch.optim.Adam([loc, L], lr=lr)
    for step in range(1, num_steps + 1):
        x_p = p.sample((samples,)).sort().values
        x_q = (loc + L.abs() * torch.randn(samples)).sort().values
        loss = (x_p - x_q).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % max(1, num_steps // 5) == 0:
            print(f"step {step:5d}  W1 ~ {loss.item():.4f}")
    print(
        f"W1 fit: Q = N({loc.item():.3f}, {L.item() ** 2:.3f}) "
        "(the W1-optimal Normal is about N(0, 44.3))"
    )


def main(args):
    torch.manual_seed(args.seed)
    emd_example()
    w1_fit(args.num_steps, args.learning_rate, args.num_samples)


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
