r"""Your own model and guide, trained with several pyrodiv divergences in Pyro's SVI loop.

The model is the conjugate Normal-Normal model: an unknown mean with a Normal prior and
``N`` observations with a known noise scale, written with a ``pyro.plate`` over the data,

    mu ~ N(mu_0, tau_0^2),        y_i | mu ~ N(mu, sigma^2),   i = 1..N.

Its posterior is Normal in closed form:

    1 / tau_N^2 = 1 / tau_0^2 + N / sigma^2,
    mu_N        = tau_N^2 (mu_0 / tau_0^2 + sum_i y_i / sigma^2).

The guide is written by hand, with ``pyro.param`` and a positivity constraint on its scale:
Q = N(loc, scale^2). Because the posterior is itself Normal, *every* divergence is minimized at
Q = posterior, so each loss must recover (mu_N, tau_N):

* ``pyrodiv.ReverseKL``: KL(Q || P), the negative ELBO up to log p(y);
* ``pyrodiv.ForwardKL``: KL(P || Q), estimated by self-normalized importance sampling over Q's
  particles, since the model has an observed site (a posterior target);
* ``pyrodiv.JensenShannon``: the same importance weights for its x ~ P half;
* ``pyrodiv.FDivergence("squared_hellinger")``: E_Q[(sqrt(p/q) - 1)^2].

Each is passed as ``loss=`` to the ordinary ``pyro.infer.SVI``. The fitted (loc, scale)
averages the last quarter of the steps (Polyak averaging), which removes most of Adam's
jitter; the script prints each fit beside the closed form, and the error in posterior sds.

    python examples/own_model_guide.py --num-steps 2000
"""

import argparse
import math
from functools import partial

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

import pyrodiv

#: Prior N(mu_0, tau_0^2) and the known noise scale sigma.
PRIOR_LOC, PRIOR_SCALE, NOISE_SCALE = 0.0, 2.0, 1.5

#: The losses compared: name -> a function of the number of particles.
LOSSES = {
    "ReverseKL": pyrodiv.ReverseKL,
    "ForwardKL": pyrodiv.ForwardKL,
    "JensenShannon": pyrodiv.JensenShannon,
    "FDivergence(squared_hellinger)": partial(pyrodiv.FDivergence, "squared_hellinger"),
}


def model(y):
    mu = pyro.sample("mu", dist.Normal(PRIOR_LOC, PRIOR_SCALE))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu, NOISE_SCALE), obs=y)


def guide(y):
    loc = pyro.param("loc", torch.tensor(0.0))
    scale = pyro.param("scale", torch.tensor(1.0), constraint=constraints.positive)
    pyro.sample("mu", dist.Normal(loc, scale))


def exact_posterior(y):
    """(mu_N, tau_N) of the conjugate posterior."""
    precision = 1.0 / PRIOR_SCALE**2 + len(y) / NOISE_SCALE**2
    loc = (PRIOR_LOC / PRIOR_SCALE**2 + float(y.sum()) / NOISE_SCALE**2) / precision
    return loc, 1.0 / math.sqrt(precision)


def train(loss, y, num_steps, lr, seed):
    """``pyrodiv.fit`` (Pyro's ``SVI`` loop with Adam) with ``loss``; returns (loc, scale)
    averaged over the last quarter of the steps."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    tail = []

    def record(steps_done, _loss):
        if steps_done > 3 * num_steps // 4:
            tail.append((pyro.param("loc").item(), pyro.param("scale").item()))

    pyrodiv.fit(model, guide, y, loss=loss, num_steps=num_steps, lr=lr, progress=False,
                callback=record)  # fmt: skip
    return tuple(sum(values) / len(tail) for values in zip(*tail, strict=True))


def main(args):
    pyro.set_rng_seed(args.seed)
    y = 1.7 + NOISE_SCALE * torch.randn(args.num_data)
    post_loc, post_scale = exact_posterior(y)
    print(f"{args.num_data} observations, mean {y.mean():.4f}")
    print(f"{'loss':32s} {'loc':>9s} {'scale':>9s}   (loc error, scale error) in posterior sds")
    print(f"{'closed-form posterior':32s} {post_loc:9.4f} {post_scale:9.4f}")
    fits = {}
    for name, make in LOSSES.items():
        loss = make(
            num_particles=args.num_particles, vectorize_particles=True, max_plate_nesting=1
        )
        loc, scale = train(loss, y, args.num_steps, args.learning_rate, args.seed)
        fits[name] = (loc, scale)
        err_loc, err_scale = (loc - post_loc) / post_scale, (scale - post_scale) / post_scale
        print(f"{name:32s} {loc:9.4f} {scale:9.4f}   ({err_loc:+.3f}, {err_scale:+.3f})")
    return {"posterior": (post_loc, post_scale), "fits": fits}


def parse_args(argv=None):
    """The command-line options; ``--smoke`` shortens the run to a few seconds."""
    parser = argparse.ArgumentParser(description="Your own model and guide with pyrodiv losses")
    parser.add_argument("-n", "--num-steps", default=2000, type=int)
    parser.add_argument("-lr", "--learning-rate", default=0.02, type=float)
    parser.add_argument("--num-particles", default=64, type=int)
    parser.add_argument("--num-data", default=20, type=int)
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--smoke", action="store_true", help="a short run, for tests")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_steps = 300
    return args


if __name__ == "__main__":
    main(parse_args())
