"""Compare guides trained with forward and reverse KL with a NUTS baseline in ArviZ."""

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoNormal

import pyrodiv


def model(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    sigma = pyro.sample("sigma", dist.HalfNormal(5.0))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Normal(mu, sigma), obs=y)


def main(num_steps=1500, num_draws=500, seed=0):
    y = 3.0 + 2.0 * torch.randn(30, generator=torch.Generator().manual_seed(seed))
    idatas = {"nuts": pyrodiv.run_nuts(model, y, num_samples=num_draws, warmup_steps=num_draws)}
    khats = {}
    for name, loss in {
        "forward_kl": pyrodiv.ForwardKL(num_particles=64, vectorize_particles=True),
        "reverse_kl": pyrodiv.ReverseKL(num_particles=16, vectorize_particles=True),
    }.items():
        pyro.set_rng_seed(seed)
        pyro.clear_param_store()
        guide = AutoNormal(model)
        optim = pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.1 ** (1 / num_steps)})
        pyrodiv.fit(model, guide, y, loss=loss, num_steps=num_steps, optim=optim, progress=False)
        idatas[name] = pyrodiv.guide_to_inference_data(model, guide, y, num_samples=2000)
        khats[name] = pyrodiv.psis_khat(model, guide, y, num_samples=2000)
    table = pyrodiv.compare_posteriors(idatas, reference="nuts")
    return table, khats


if __name__ == "__main__":
    table, khats = main()
    print(table[["method", "variable", "mean", "sd", "mean_error", "sd_ratio", "w1", "khat"]])
    print(khats)
