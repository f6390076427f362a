"""The talk's reparameterization tricks, checked by gradients, and the Gumbel-softmax.

Each sampler writes x = T_theta(eps) with parameter-free noise eps, so autograd through the
draws estimates grad E[g(x)]. For Normal, Uniform, Exponential and Laplace, g(x) = x^2; for
the Cauchy (no moments), g(x) = 1/(1 + x^2), whose expectation is
(1 + gamma) / ((1 + gamma)^2 + mu^2).

    python examples/deck_reparam.py --num-samples 200000
"""

import argparse
import math

import pyro
import pyro.distributions as dist
import torch

import pyrodiv


def normal_check(n):
    mu = torch.tensor(1.5, requires_grad=True)
    sigma = torch.tensor(2.0, requires_grad=True)
    x = mu + sigma * torch.randn(n)  # the talk's N(mu, sigma) = mu + sigma N(0, 1)
    (x**2).mean().backward()  # E[x^2] = mu^2 + sigma^2
    return {"d/dmu": (mu.grad.item(), 2 * 1.5), "d/dsigma": (sigma.grad.item(), 2 * 2.0)}


def laplace_check(n):
    mu = torch.tensor(1.0, requires_grad=True)
    b = torch.tensor(0.8, requires_grad=True)
    u = 2 * torch.rand(n) - 1
    x = mu - b * torch.sign(u) * torch.log1p(-u.abs())  # the talk's Laplace(mu, b)
    (x**2).mean().backward()  # E[x^2] = mu^2 + 2 b^2
    return {"d/dmu": (mu.grad.item(), 2 * 1.0), "d/db": (b.grad.item(), 4 * 0.8)}


def cauchy_check(n):
    mu = torch.tensor(0.5, requires_grad=True)
    gamma = torch.tensor(1.5, requires_grad=True)
    x = mu + gamma * torch.tan(math.pi * (torch.rand(n) - 0.5))  # mu + gamma Cauchy(0, 1)
    (1 / (1 + x**2)).mean().backward()
    s, d = 2.5, 2.5**2 + 0.5**2
    return {
        "d/dmu": (mu.grad.item(), -2 * 0.5 * s / d**2),
        "d/dgamma": (gamma.grad.item(), (0.5**2 - s**2) / d**2),
    }


def gumbel_softmax(num_steps, temperature=0.5):
    target = torch.tensor([0.05, 0.15, 0.2, 0.25, 0.35])
    temp = torch.tensor(temperature)

    def model():
        pyro.sample("y", dist.RelaxedOneHotCategorical(temp, probs=target))

    def guide():
        logits = pyro.param("logits", torch.zeros(5))
        pyro.sample("y", dist.RelaxedOneHotCategorical(temp, logits=logits))

    pyro.clear_param_store()
    loss = pyrodiv.ReverseKL(num_particles=256, vectorize_particles=True, max_plate_nesting=0)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.02}), loss=loss)
    for _ in range(num_steps):
        svi.step()
    fitted = torch.softmax(pyro.param("logits").detach(), -1)
    print(
        f"Gumbel-softmax: target {target.tolist()}\n                fitted "
        f"{[round(p, 3) for p in fitted.tolist()]}"
    )


def main(args):
    pyro.set_rng_seed(args.seed)
    for name, check in [
        ("Normal", normal_check),
        ("Laplace", laplace_check),
        ("Cauchy", cauchy_check),
    ]:
        for param, (mc, exact) in check(args.num_samples).items():
            print(f"{name:8s} {param:9s} MC {mc:+.4f}   exact {exact:+.4f}")
    gumbel_softmax(args.num_steps)


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
