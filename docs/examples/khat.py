"""Pareto k-hat of Normal guides N(0, s^2) to the target N(0, 1).

For s < 1 the importance weights w = p/q grow like exp(x^2 (1/s^2 - 1) / 2), and their tail is
Pareto with shape k = 1 - s^2: s = 0.3 is unreliable (k = 0.91), s = 0.6 usable (k = 0.64),
s = 0.8 good (k = 0.36). A guide wider than the target (s > 1) has bounded weights.
"""

import pyro
import pyro.distributions as dist

import pyrodiv


def model():
    pyro.sample("z", dist.Normal(0.0, 1.0))


def normal_guide(scale):
    def guide():
        pyro.sample("z", dist.Normal(0.0, scale))

    return guide


def khat(scale, seed=0, num_samples=4000):
    return pyrodiv.psis_khat(model, normal_guide(scale), num_samples=num_samples, seed=seed)


if __name__ == "__main__":
    for scale in (0.3, 0.6, 0.8, 1.2):
        print(f"s = {scale}: k-hat = {khat(scale):.2f}, tail shape 1 - s^2 = {1 - scale**2:.2f}")
