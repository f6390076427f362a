"""Learning a Normal by forward KL (the talk's first experiment).

The target is P = N(-7.3, 3.2) (mean, variance) and Q = N(loc, L^2) starts at N(0, 1), with
the talk's settings: Adam, lr 0.01, 4000 steps, 64 draws of P a step, and the scale a plain
learnable factor L. The talk's run reached N(-7.2829, 3.2358); the optimum is P itself.

    python examples/deck_normal.py --num-steps 4000
"""

import argparse

import pyro
import pyro.distributions as dist
import torch

import pyrodiv


def model():
    pyro.sample("x", dist.Normal(-7.3, 3.2**0.5))


def guide():
    loc = pyro.param("loc", torch.tensor(0.0))
    L = pyro.param("L", torch.tensor(1.0))
    pyro.sample("x", dist.Normal(loc, L.abs()))


def main(args):
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    loss = pyrodiv.ForwardKL(
        num_particles=args.num_particles, vectorize_particles=True, max_plate_nesting=0
    )
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": args.learning_rate}), loss=loss)
    for step in range(1, args.num_steps + 1):
        value = svi.step()
        if step % max(1, args.num_steps // 10) == 0:
            print(f"step {step:5d}  KL(P||Q) ~ {value:8.4f}")
    loc, var = pyro.param("loc").item(), pyro.param("L").item() ** 2
    print(f"fitted Q = N({loc:.4f}, {var:.4f});  talk: N(-7.2829, 3.2358);  exact: N(-7.3, 3.2)")
    return loc, var


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Forward KL: learning a Normal")
    parser.add_argument("-n", "--num-steps", default=4000, type=int)
    parser.add_argument("-lr", "--learning-rate", default=0.01, type=float)
    parser.add_argument("--num-particles", default=64, type=int)
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--smoke", action="store_true", help="a few steps, for tests")
    args = parser.parse_args()
    if args.smoke:
        args.num_steps = 20
    main(args)
