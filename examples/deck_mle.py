"""Maximum likelihood is forward KL: least squares with ``pyrodiv.CrossEntropy``.

P is the point mass at the observed data set, a Pyro model whose site draws the data exactly
(``dist.Delta``); Q is the likelihood N(y; Xw, sigma^2). Then H(P, Q) = -log q(data), the
negative log-likelihood, and minimizing it gives the least-squares weights. The other cases
of the talk work the same way (Laplace: the median; Bernoulli: logistic regression;
Categorical: softmax regression); see ``pyrodiv.demo.mle``.

    python examples/deck_mle.py --num-steps 2000
"""

import argparse

import pyro
import pyro.distributions as dist
import torch

import pyrodiv


def main(args):
    pyro.set_rng_seed(args.seed)
    n = args.num_data
    X = torch.cat([torch.ones(n, 1), torch.randn(n, 2)], -1)
    y = X @ torch.tensor([0.5, -1.0, 2.0]) + 0.7 * torch.randn(n)

    def model():
        with pyro.plate("data", n):
            pyro.sample("y", dist.Delta(y))  # P: the data, exactly

    def guide():
        w = pyro.param("w", torch.zeros(3))
        sigma = pyro.param("sigma", torch.tensor(1.0), constraint=dist.constraints.positive)
        with pyro.plate("data", n):
            pyro.sample("y", dist.Normal((X * w).sum(-1), sigma))  # Q: the likelihood

    pyro.clear_param_store()
    optim = pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.01 ** (1 / max(1, args.num_steps))})
    svi = pyro.infer.SVI(model, guide, optim, loss=pyrodiv.CrossEntropy(max_plate_nesting=1))
    for _ in range(args.num_steps):
        svi.step()
    w_ls = torch.linalg.lstsq(X, y.unsqueeze(-1)).solution.squeeze(-1)
    w_fit = pyro.param("w").detach()
    print(f"CrossEntropy fit {[round(v, 4) for v in w_fit.tolist()]}")
    print(f"least squares    {[round(v, 4) for v in w_ls.tolist()]}")
    print(f"max abs difference {(w_fit - w_ls).abs().max().item():.2e}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="MLE as forward KL")
    parser.add_argument("-n", "--num-steps", default=2000, type=int)
    parser.add_argument("--num-data", default=200, type=int)
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--smoke", action="store_true", help="a few steps, for tests")
    args = parser.parse_args()
    if args.smoke:
        args.num_steps = 10
    main(args)
