"""One Normal fitted to the talk's bimodal target by forward KL, reverse KL or JSD.

P = {N(-7, 1.4), N(7, 1.4)} (variances), even weights. Q = N(loc, sigma^2) with sigma = |L|
(the talk's parameterization) or sigma = exp(s). The talk's settings: Adam lr 0.01, 4000
steps, 64 draws a step.

* forward KL from N(0, 1): the optimum is moment matching, N(0, 50.4); the talk stopped at
  variance 36.76 (try ``--num-steps 16000``);
* reverse KL from N(1, 1) or N(-1, 1): one mode, N(+-7, 1.4);
* JSD from N(1, 1): the mode at +7 with sigma = |L|, the broad cover N(0, 7.06^2) with
  ``--scale exp``.

    python examples/deck_bimodal.py --divergence jsd --start 1 --scale exp
"""

import argparse

import pyro
import pyro.distributions as dist
import torch

import pyrodiv

LOSSES = {
    "forward_kl": pyrodiv.ForwardKL,
    "reverse_kl": pyrodiv.ReverseKL,
    "jsd": pyrodiv.JensenShannon,
}


def model():
    mix = dist.Categorical(torch.tensor([0.5, 0.5]))
    comp = dist.Normal(torch.tensor([-7.0, 7.0]), torch.tensor([1.4, 1.4]).sqrt())
    pyro.sample("x", dist.MixtureSameFamily(mix, comp))


def make_guide(start, scale):
    def guide():
        loc = pyro.param("loc", torch.tensor(start))
        if scale == "L":
            sigma = pyro.param("L", torch.tensor(1.0)).abs()
        else:
            sigma = pyro.param("log_scale", torch.tensor(0.0)).exp()
        pyro.sample("x", dist.Normal(loc, sigma))

    return guide


def main(args):
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    guide = make_guide(args.start, args.scale)
    loss = LOSSES[args.divergence](
        num_particles=args.num_particles, vectorize_particles=True, max_plate_nesting=0
    )
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": args.learning_rate}), loss=loss)
    for step in range(1, args.num_steps + 1):
        value = svi.step()
        if step % max(1, args.num_steps // 10) == 0:
            loc = pyro.param("loc").item()
            print(f"step {step:5d}  loss {value:8.4f}  loc {loc:7.3f}")
    loc = pyro.param("loc").item()
    if args.scale == "L":
        var = pyro.param("L").item() ** 2
    else:
        var = pyro.param("log_scale").exp().item() ** 2
    print(
        f"{args.divergence} from N({args.start:g}, 1), scale {args.scale}: "
        f"Q = N({loc:.4f}, {var:.4f})"
    )
    return loc, var


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Fit a Normal to a bimodal target")
    parser.add_argument("--divergence", default="reverse_kl", choices=list(LOSSES))
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
