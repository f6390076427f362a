"""Any f-divergence of the talk's table (and pyrodiv's catalogue) as an SVI loss.

D_f(P||Q) = E_Q[f(p/q)]: ``pyrodiv.FDivergence(name, **params)``. Fits Q = N(loc, L^2) to the
bimodal target and prints the fit next to the exact local optimum by quadrature from the same
start (:func:`pyrodiv.demo.fdiv_table.fit_generator`, which the demo's f-divergence table runs
for every generator). Mass-covering generators need a start that covers P
(``--start-variance 25``): from a narrow Q every draw has p/q close to 0 and the estimate
cannot see the other mode.

    python examples/deck_fdivergences.py --f squared_hellinger --start-variance 25
    python examples/deck_fdivergences.py --f amari_alpha --alpha 2 --start-variance 25
"""

import argparse

import pyrodiv
from pyrodiv.demo.common import fmt_normal
from pyrodiv.demo.fdiv_table import fit_generator, spec_label


def main(args):
    params = {}
    if args.f == "amari_alpha":
        params["alpha"] = args.alpha
    if args.f == "t_power":
        params["power"] = args.power
    row = fit_generator(
        args.f,
        params,
        (args.start, args.start_variance),
        steps=args.num_steps,
        lr=args.learning_rate,
        particles=args.num_particles,
        seed=args.seed,
        quad_n=8001,
    )
    label = spec_label(args.f, params)
    if row["error"]:
        print(f"{label}: the fit failed: {row['error']}")
        return row
    fitted, exact = row["fitted"], row["exact"]
    print(
        f"{label}: fitted Q = {fmt_normal(fitted['loc'], fitted['variance'], 3)} (mean of the "
        f"last quarter), exact D there {row['exact_at_fit']:.4f}"
    )
    if exact is None:
        print("no exact optimum: the exact divergence is not finite at the start")
    else:
        print(
            "exact local optimum from the start "
            f"{fmt_normal(exact['loc'], exact['variance'], 3)}, D = {exact['divergence']:.4f}; "
            f"reached: {row['reached']}"
        )
    return row


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
