r"""Eight schools: SVI with reverse and forward KL against NUTS, compared in ArviZ.

The non-centred eight schools model (``pyrodiv.zoo``, posteriordb
``eight_schools-eight_schools_noncentered``),

    mu ~ N(0, 5),  tau ~ HalfCauchy(5),  theta~_j ~ N(0, 1),  theta_j = mu + tau theta~_j,
    y_j ~ N(theta_j, sigma_j),   j = 1..8,

is fitted three ways:

* ``AutoNormal`` trained by ``pyrodiv.ReverseKL`` (the negative ELBO, mode-seeking),
* ``AutoNormal`` trained by ``pyrodiv.ForwardKL`` (KL(P || Q), mass-covering; the posterior
  cannot be sampled, so x ~ P is replaced by self-normalized importance sampling over Q's
  particles, biased by O(1/K)),
* NUTS (``pyrodiv.run_nuts``).

Each becomes an ``arviz.InferenceData`` (``pyrodiv.guide_to_inference_data`` for the guides)
and is compared with posteriordb's gold-standard draws by ``pyrodiv.compare_posteriors``: for
each scalar variable the error of the mean and the ratio of the sds in reference-sd units, and
W1 between the draws, also in reference-sd units. The PSIS k-hat of each guide
(``pyrodiv.psis_khat``, from log w = log p(y, z) - log q(z)) says whether importance sampling
could correct it: below 0.5 good, above 0.7 unreliable. A forest plot of mu, tau and theta is
drawn through ``pyrodiv.arviz_adapter`` (the one module that imports ArviZ).

    python examples/eight_schools_svi_vs_nuts.py --num-steps 2000 --out eight_schools.png
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402
from pyro.infer.autoguide import AutoNormal  # noqa: E402

import pyrodiv  # noqa: E402
from pyrodiv import arviz_adapter, zoo  # noqa: E402
from pyrodiv.inference.inference_data import samples_to_inference_data  # noqa: E402

#: The losses compared with NUTS.
LOSSES = {"ReverseKL": pyrodiv.ReverseKL, "ForwardKL": pyrodiv.ForwardKL}
#: The variables shown in the printed table and the figure.
SHOWN = ["mu", "tau", "theta[0]", "theta[6]"]


def fit_guide(model, data, loss_cls, args):
    """An ``AutoNormal`` guide trained by ``loss_cls`` with a decaying Adam step size."""
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    guide = AutoNormal(model)
    loss = loss_cls(
        num_particles=args.num_particles, vectorize_particles=True, max_plate_nesting=1
    )
    decay = 0.1 ** (1.0 / args.num_steps)  # the step size falls tenfold over the run
    optim = pyro.optim.ClippedAdam({"lr": args.learning_rate, "lrd": decay})
    result = pyrodiv.fit(
        model, guide, loss=loss, num_steps=args.num_steps, optim=optim, progress=False, **data
    )
    return guide, result


def main(args):
    torch.set_num_threads(1)
    model, data = zoo.get_model("eight_schools")
    reference = samples_to_inference_data(model, zoo.reference_latents("eight_schools"), **data)
    idatas, khats = {}, {}
    for name, loss_cls in LOSSES.items():
        guide, result = fit_guide(model, data, loss_cls, args)
        idata = pyrodiv.guide_to_inference_data(
            model, guide, num_samples=args.num_draws, seed=args.seed, **data
        )
        idata.attrs["wall_time_s"] = result.seconds
        idatas[name] = idata
        khats[name] = pyrodiv.psis_khat(
            model, guide, num_samples=args.num_draws, seed=args.seed, **data
        )
        print(
            f"{name}: {len(result.losses)} steps in {result.seconds:.1f} s, "
            f"k-hat {khats[name]:.2f}"
        )
    idatas["NUTS"] = pyrodiv.run_nuts(
        model, num_samples=args.num_samples, warmup_steps=args.num_warmup, seed=args.seed, **data
    )
    print(f"NUTS: {args.num_warmup} warmup + {args.num_samples} draws")

    table = pyrodiv.compare_posteriors(idatas, reference=reference)
    shown = table[table["variable"].isin(SHOWN)]
    columns = ["method", "variable", "mean", "sd", "mean_error", "sd_ratio", "w1", "khat"]
    with pd.option_context("display.width", 120, "display.precision", 3):
        print("\nagainst posteriordb's reference draws (errors in reference sds):")
        print(shown[columns].to_string(index=False))
        summary = table.groupby("method", sort=False)[["mean_error", "sd_ratio", "w1"]].mean()
        print("\nmean over all 18 scalar variables:")
        print(summary.to_string())

    if args.out:
        axes = arviz_adapter.plot_forest(
            {"reference": reference, **idatas}, var_names=["mu", "tau", "theta"], figsize=(8, 8)
        )
        ax = axes.ravel()[0]
        ax.set_title(
            "Eight schools, 94% HDI: AutoNormal by ReverseKL and ForwardKL, NUTS,\n"
            "and posteriordb's reference draws",
            fontsize=11,
        )
        ax.figure.savefig(args.out, dpi=110, bbox_inches="tight")
        print(f"wrote {args.out}")
    return {"table": table, "khat": khats}


def parse_args(argv=None):
    """The command-line options; ``--smoke`` shortens the run to a few seconds."""
    parser = argparse.ArgumentParser(description="Eight schools: SVI vs NUTS")
    parser.add_argument("-n", "--num-steps", default=2000, type=int)
    parser.add_argument("-lr", "--learning-rate", default=0.02, type=float)
    parser.add_argument("--num-particles", default=64, type=int)
    parser.add_argument("--num-draws", default=1000, type=int, help="draws of each guide")
    parser.add_argument("--num-samples", default=1000, type=int, help="NUTS draws")
    parser.add_argument("--num-warmup", default=1000, type=int, help="NUTS warmup steps")
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--out", default="eight_schools_svi_vs_nuts.png", help="PNG to write")
    parser.add_argument("--smoke", action="store_true", help="a short run, for tests")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_steps, args.num_draws, args.num_samples, args.num_warmup = 100, 200, 30, 30
    return args


if __name__ == "__main__":
    main(parse_args())
