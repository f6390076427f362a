r"""Forward KL on a posterior: mode covering where reverse KL seeks one mode.

The data come from a symmetric two-component mixture whose sign is not identified,

    mu ~ N(0, 5^2),     y_i | mu ~ 1/2 N(mu, 1) + 1/2 N(-mu, 1),   i = 1..N,

so the posterior p(mu | y) is exactly symmetric about 0 with two modes near +-|mu|. The model
has an observed site, so it is a *posterior* target: only the unnormalized p(y, mu) is known
and the posterior cannot be sampled. A hand-written Normal guide Q = N(loc, scale^2) is fitted
with

* ``pyrodiv.ReverseKL``: KL(Q || P) = E_Q[log q - log p], the negative ELBO up to log p(y).
  Its local optima over Normals sit on one mode (mode seeking);
* ``pyrodiv.ForwardKL``: KL(P || Q) = E_P[log p - log q]. With no draws of P it uses
  self-normalized importance sampling over Q's K particles z_k:
  w_k proportional to p(y, z_k) / q(z_k), gradient -sum_k w_k grad log q(z_k) (biased by O(1/K),
  consistent). Its optimum over Normals matches the posterior's moments:
  N(E[mu | y], Var[mu | y]) = N(0, E[mu^2 | y]) (mode covering).

The references come from quadrature on a fine grid of the exact log posterior (normalized
numerically): the posterior mean and variance, and each divergence's exact optimum over
Normals (``pyrodiv.quadrature.optimal_normal``). The script prints the fits beside them and
draws the posterior with both fitted Normals.

    python examples/posterior_forward_kl.py --num-steps 1000 --out posterior_forward_kl.png
"""

import argparse
import math

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

import pyrodiv
from pyrodiv.demo.common import (
    COLORS,
    plot_densities,
)
from pyrodiv.divergences.quadrature import optimal_normal
from pyrodiv.inference.output import new_figure, save_figure

#: The prior scale of mu, the true |mu| and the quadrature grid (lo, hi, points).
PRIOR_SCALE, TRUE_MU, GRID = 5.0, 2.0, (-12.0, 12.0, 4801)
#: The losses compared, and the generator of each for the quadrature reference.
LOSSES = {
    "ReverseKL": (pyrodiv.ReverseKL, "kl_reverse"),
    "ForwardKL": (pyrodiv.ForwardKL, "kl_forward"),
}


def model(y):
    mu = pyro.sample("mu", dist.Normal(0.0, PRIOR_SCALE))
    locs = torch.stack([mu, -mu], -1)  # broadcasts over a leading particle dimension
    mixture = dist.MixtureSameFamily(dist.Categorical(torch.ones(2)), dist.Normal(locs, 1.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", mixture, obs=y)


def make_guide(start):
    def guide(y):
        loc = pyro.param("loc", torch.tensor(start[0]))
        scale = pyro.param("scale", torch.tensor(start[1]), constraint=constraints.positive)
        pyro.sample("mu", dist.Normal(loc, scale))

    return guide


def log_posterior(y):
    """The exact log p(mu | y) as a float64 function of mu, normalized on the grid."""
    y = y.double()

    def unnormalized(mu):
        mu = mu.unsqueeze(-1)
        log_lik = torch.logaddexp(
            torch.distributions.Normal(mu, 1.0).log_prob(y),
            torch.distributions.Normal(-mu, 1.0).log_prob(y),
        ) - math.log(2)
        prior = torch.distributions.Normal(0.0, PRIOR_SCALE).log_prob(mu.squeeze(-1))
        return prior + log_lik.sum(-1)

    lo, hi, n = GRID
    mus = torch.linspace(lo, hi, n, dtype=torch.float64)
    log_z = torch.logsumexp(unnormalized(mus), 0) + math.log((hi - lo) / (n - 1))
    return lambda mu: unnormalized(mu) - log_z


def posterior_moments(log_p):
    """(mean, variance) of the posterior by the rectangle rule on the grid."""
    lo, hi, n = GRID
    mus = torch.linspace(lo, hi, n, dtype=torch.float64)
    density = log_p(mus).exp() * (hi - lo) / (n - 1)
    mean = float((mus * density).sum())
    return mean, float(((mus - mean) ** 2 * density).sum())


def fit(loss, y, args):
    """``pyrodiv.fit`` (Pyro's ``SVI`` loop with Adam) from N(start, 1); returns (loc,
    variance) averaged over the last quarter of the steps, and the trajectory of (loc,
    variance)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    guide = make_guide((args.start, 1.0))
    trajectory = []

    def record(_steps_done, _loss):
        trajectory.append((pyro.param("loc").item(), pyro.param("scale").item() ** 2))

    pyrodiv.fit(model, guide, y, loss=loss, num_steps=args.num_steps, lr=args.learning_rate,
                progress=False, callback=record)  # fmt: skip
    tail = trajectory[3 * args.num_steps // 4 :]
    return tuple(sum(v) / len(tail) for v in zip(*tail, strict=True)), trajectory


def main(args):
    torch.set_num_threads(1)
    pyro.set_rng_seed(args.seed)
    signs = 2.0 * torch.randint(0, 2, (args.num_data,)) - 1.0
    y = TRUE_MU * signs + torch.randn(args.num_data)
    log_p = log_posterior(y)
    mean, variance = posterior_moments(log_p)
    print(f"posterior by quadrature: mean {mean:+.4f}, variance {variance:.4f} (symmetric)")
    lo, hi, n = GRID
    results = {"posterior": {"mean": mean, "variance": variance}}
    for name, (loss_cls, generator) in LOSSES.items():
        loss = loss_cls(
            num_particles=args.num_particles, vectorize_particles=True, max_plate_nesting=1
        )
        (loc, var), trajectory = fit(loss, y, args)
        exact = optimal_normal(generator, log_p, start=(args.start, 1.0), lo=lo, hi=hi, n=n)
        results[name] = {"loc": loc, "variance": var, "exact": exact, "trajectory": trajectory}
        print(
            f"{name:9s} fitted Q = N({loc:+.4f}, {var:.4f});  exact optimum over Normals "
            f"N({exact['loc']:+.4f}, {exact['variance']:.4f})"
        )
    print(
        "ForwardKL covers both modes (its optimum is the posterior's moments); ReverseKL sits "
        f"on the mode its start N({args.start:g}, 1) leads to."
    )
    if args.out:
        figure(log_p, results, args)
        print(f"wrote {args.out}")
    return results


def figure(log_p, results, args):
    fig, axes = new_figure(1, 2, size=(12.0, 4.2), width_ratios=[1.4, 1])
    curves = [(f"initial Q = N({args.start:g}, 1)", args.start, 1.0, COLORS["initial"], "--")]
    for name, color in (("ReverseKL", COLORS["fitted"]), ("ForwardKL", "tab:purple")):
        r = results[name]
        label = f"{name}: N({r['loc']:.2f}, {r['variance']:.2f})"
        curves.append((label, r["loc"], r["variance"], color, "-"))
    post = results["posterior"]
    moments = f"moment matching N({post['mean']:.2f}, {post['variance']:.2f})"
    curves.append((moments, post["mean"], post["variance"], COLORS["exact"], ":"))
    xs = torch.linspace(-6.0, 6.0, 1201, dtype=torch.float64)
    title = f"Posterior p(mu | y) of the sign-symmetric mixture, {args.num_data} points"
    plot_densities(axes[0], log_p, curves, xs=xs, title=title, target_label="posterior")
    axes[0].set_xlabel("mu")
    for name, color in (("ReverseKL", COLORS["fitted"]), ("ForwardKL", "tab:purple")):
        variances = [v for _, v in results[name]["trajectory"]]
        axes[1].plot(range(1, len(variances) + 1), variances, color=color, label=name)
        axes[1].axhline(results[name]["exact"]["variance"], color=color, ls=":", lw=1)
    axes[1].set_yscale("log")
    axes[1].set_xlabel("SVI step")
    axes[1].set_ylabel("variance of Q (dotted: exact optimum)")
    axes[1].set_title("variance of Q vs step", fontsize=10)
    axes[1].legend(fontsize=8)
    save_figure(fig, ".", args.out)


def parse_args(argv=None):
    """The command-line options; ``--smoke`` shortens the run to a few seconds."""
    parser = argparse.ArgumentParser(description="Forward vs reverse KL on a bimodal posterior")
    parser.add_argument("-n", "--num-steps", default=1000, type=int)
    parser.add_argument("-lr", "--learning-rate", default=0.05, type=float)
    parser.add_argument("--num-particles", default=256, type=int)
    parser.add_argument("--num-data", default=10, type=int)
    parser.add_argument("--start", default=0.5, type=float, help="initial mean of Q")
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--out", default="posterior_forward_kl.png", help="PNG to write")
    parser.add_argument("--smoke", action="store_true", help="a short run, for tests")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_steps, args.num_particles = 250, 128
    return args


if __name__ == "__main__":
    main(parse_args())
