"""Any f-divergence of the talk's table (and pyrodiv's catalogue) as an SVI loss.

D_f(P||Q) = E_Q[f(p/q)]: ``pyrodiv.FDivergence(name, **params)``. Fits Q = N(loc, L^2) to the
bimodal target and prints the fit next to the exact local optimum by quadrature from the same
start. Mass-covering generators need a start that covers P (``--start-variance 25``): from a
narrow Q every draw has p/q close to 0 and the estimate cannot see the other mode.

    python examples/deck_fdivergences.py --f squared_hellinger --start-variance 25
    python examples/deck_fdivergences.py --f amari_alpha --alpha 2 --start-variance 25
"""

import argparse
import math

import pyro
import pyro.distributions as dist
import torch

import pyrodiv
from pyrodiv.quadrature import optimal_normal


def model():
    mix = dist.Categorical(torch.tensor([0.5, 0.5]))
    comp = dist.Normal(torch.tensor([-7.0, 7.0]), torch.tensor([1.4, 1.4]).sqrt())
    pyro.sample("x", dist.MixtureSameFamily(mix, comp))


def log_p(x):  # float64, for quadrature
    comp = dist.Normal(
        torch.tensor([-7.0, 7.0], dtype=x.dtype), torch.tensor([1.4, 1.4], dtype=x.dtype).sqrt()
    )
    return torch.logsumexp(comp.log_prob(x.unsqueeze(-1)), -1) - math.log(2)


def main(args):
    params = {}
    if args.f == "amari_alpha":
        params["alpha"] = args.alpha
    if args.f == "t_power":
        params["power"] = args.power

    def guide():
        loc = pyro.param("loc", torch.tensor(args.start))
        L = pyro.param("L", torch.tensor(args.start_variance**0.5))
        pyro.sample("x", dist.Normal(loc, L.abs()))

    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    loss = pyrodiv.FDivergence(
        args.f,
        num_particles=args.num_particles,
        vectorize_particles=True,
        max_plate_nesting=0,
        **params,
    )
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": args.learning_rate}), loss=loss)
    for step in range(1, args.num_steps + 1):
        value = svi.step()
        if step % max(1, args.num_steps // 10) == 0:
            print(f"step {step:5d}  D_f ~ {value:10.4f}  loc {pyro.param('loc').item():7.3f}")
    loc, var = pyro.param("loc").item(), pyro.param("L").item() ** 2
    exact = optimal_normal(
        pyrodiv.get_generator(args.f, **params),
        log_p,
        start=(args.start, args.start_variance**0.5),
        n=8001,
    )
    print(
        f"{loss.divergence}: fitted Q = N({loc:.3f}, {var:.3f}); exact local optimum "
        f"N({exact['loc']:.3f}, {exact['variance']:.3f}), D = {exact['divergence']:.4f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Fit a Normal with any f-divergence")
    parser.add_argument("--f", default="squared_hellinger", choices=pyrodiv.GENERATOR_NAMES)
    parser.add_argument("--alpha", default=0.5, type=float, help="for amari_alpha")
    parser.add_argument("--power", default=2.0, type=float, help="for t_power")
    parser.add_argument("--start", default=1.0, type=float)
    parser.add_argument("--start-variance", default=25.0, type=float)
    parser.add_argument("-n", "--num-steps", default=4000, type=int)
    parser.add_argument("-lr", "--learning-rate", default=0.03, type=float)
    parser.add_argument("--num-particles", default=256, type=int)
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--smoke", action="store_true", help="a few steps, for tests")
    args = parser.parse_args()
    if args.smoke:
        args.num_steps = 20
    main(args)
