"""Learning a Normal by forward KL (the talk's first experiment).

The target is P = N(-7.3, 3.2) (mean, variance) and Q = N(loc, L^2) starts at N(0, 1), with
the talk's settings: Adam, lr 0.01, 4000 steps, 64 draws of P a step, and the scale a plain
learnable factor L. Minimizing KL(P || Q) = E_P[log p - log q] over a Normal family that
contains P recovers P itself. The talk's run reached N(-7.2829, 3.2358).

The model, guide and SVI loop are the demo's (:mod:`pyrodiv.demo.common`): ``target_model``
wraps P as a Pyro model with one site ``"x"``, ``normal_guide`` is the talk's Q and
``fit_normal`` runs ``pyro.infer.SVI`` with ``pyrodiv.ForwardKL``.

    python examples/deck_normal.py --num-steps 4000
"""

import argparse

import pyrodiv
from pyrodiv.demo.common import (
    NORMAL_TARGET,
    exact_optimum,
    fit_normal,
    fmt_normal,
    log_prob_fn,
    normal,
    target_model,
)
from pyrodiv.demo.normal import DECK


def main(args):
    loss = pyrodiv.ForwardKL(
        num_particles=args.num_particles, vectorize_particles=True, max_plate_nesting=0
    )
    fit = fit_normal(
        target_model(normal(*NORMAL_TARGET)),
        loss,
        start=(0.0, 1.0),
        steps=args.num_steps,
        lr=args.learning_rate,
        seed=args.seed,
        progress=True,
        desc="forward KL",
    )
    exact = exact_optimum("kl_forward", log_prob_fn(lambda dtype: normal(*NORMAL_TARGET, dtype)))
    print(f"fitted Q = {fmt_normal(fit['loc'], fit['variance'], 4)}")
    print(f"talk     = {fmt_normal(DECK['loc'], DECK['variance'], 4)}")
    print(f"exact    = {fmt_normal(exact['loc'], exact['variance'], 4)}")
    return fit


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
