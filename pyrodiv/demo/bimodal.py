r"""Experiment 3: fitting one Normal to the bimodal target with forward KL, reverse KL and JSD.

The target is :math:`P = \tfrac12 N(-7, 1.4) + \tfrac12 N(7, 1.4)` and
:math:`Q = N(\mu, L^2)` with the talk's settings (Adam, lr 0.01, 4000 steps, 64 draws a step,
:math:`\sigma = |L|`). The exact local optima, by quadrature from the same start, are:

* forward KL: moment matching, :math:`N(0, 49 + 1.4) = N(0, 50.4)`;
* reverse KL: one mode, :math:`N(\pm 7, 1.4)` (with :math:`\mathrm{KL} = \log 2`);
* JSD: two local optima, the mode :math:`N(\pm 7, 1.4)` (sd 1.183, 0.2158 nats) and a broad
  cover :math:`N(0, 7.06^2)` (0.2940 nats). Which one a fit reaches depends on the start and on
  how :math:`\sigma` is parameterized: with the talk's plain :math:`L`, JSD from
  :math:`N(1, 1)` walks to the mode at +7; with :math:`\sigma = e^s` the scale grows faster
  than the mean moves and the fit lands in the broad cover.
"""

from __future__ import annotations

from .. import ForwardKL, JensenShannon, ReverseKL
from ..output import new_figure, save_figure
from .batched import Row, fit_rows
from .common import (
    COLORS,
    bimodal,
    exact_optimum,
    fit_normal,
    fmt_normal,
    log_prob_fn,
    plot_densities,
    plot_trajectory,
    target_model,
)

#: The talk's raw outputs (mean, variance), from its notebook.
DECK = {
    "forward_kl": {"loc": 0.0777, "variance": 36.7569},
    "reverse_kl_left": {"loc": -7.0209, "variance": 1.4058},
    "reverse_kl_right": {"loc": 7.0092, "variance": 1.4596},
    "jsd_0": {"loc": -0.0410, "variance": 48.2019},
    "jsd_right": {"loc": 6.9926, "variance": 1.4257},
    "jsd_left": {"loc": -6.9843, "variance": 1.3760},
}

#: The runs: name -> (divergence, generator for quadrature, start (mu, variance), scale).
RUNS = {
    "forward_kl": ("forward KL", "kl_forward", (0.0, 1.0), "L"),
    "reverse_kl_left": ("reverse KL", "kl_reverse", (-1.0, 1.0), "L"),
    "reverse_kl_right": ("reverse KL", "kl_reverse", (1.0, 1.0), "L"),
    "jsd_0": ("JSD", "jensen_shannon", (0.0, 1.0), "L"),
    "jsd_right": ("JSD", "jensen_shannon", (1.0, 1.0), "L"),
    "jsd_left": ("JSD", "jensen_shannon", (-1.0, 1.0), "L"),
    "jsd_right_exp": ("JSD", "jensen_shannon", (1.0, 1.0), "exp"),
}

#: The two local optima of the JSD landscape quoted in the talk's notes (loc, sd, nats).
JSD_OPTIMA_NOTES = {
    "mode": {"loc": 7.0, "sd": 1.183, "divergence": 0.2158},
    "broad": {"loc": 0.0, "sd": 7.06, "divergence": 0.2940},
}


def make_loss(divergence: str, particles: int = 64):
    """The pyrodiv loss for ``"forward KL"``, ``"reverse KL"`` or ``"JSD"``, vectorized over
    ``particles`` draws (the model has no plates, so ``max_plate_nesting=0``).

    Example::

        >>> make_loss("JSD").num_particles
        64
    """
    cls = {"forward KL": ForwardKL, "reverse KL": ReverseKL, "JSD": JensenShannon}[divergence]
    return cls(num_particles=particles, vectorize_particles=True, max_plate_nesting=0)


def basin(loc: float, variance: float) -> str:
    """Which optimum a fitted Normal sits in: ``"mode"`` (centred on one mode, narrow),
    ``"broad"`` (centred between the modes, wide) or ``"neither"``.

    Example::

        >>> basin(6.99, 1.4), basin(0.1, 49.0), basin(3.0, 12.0)
        ('mode', 'broad', 'neither')
    """
    if abs(loc) > 3.5 and variance < 10.0:
        return "mode"
    if abs(loc) < 3.5 and variance > 25.0:
        return "broad"
    return "neither"


def bimodal_fits(
    out_dir=None,
    *,
    steps: int = 4000,
    lr: float = 0.01,
    particles: int = 64,
    long_steps: int = 16000,
    high_lr: float = 0.05,
    basin_seeds: int = 5,
    seed: int = 0,
    quad_n: int = 16001,
    runs=None,
    progress: bool = False,
) -> dict:
    r"""Run the talk's bimodal fits (see the module docstring), each against the talk's raw
    output and the exact local optimum by quadrature from the same start.

    Also: forward KL run ``long_steps`` steps (its state at ``steps`` is the talk's run) and
    at ``high_lr``, to show that it reaches :math:`N(0, 50.4)`; and JSD from :math:`N(1, 1)`
    in ``basin_seeds`` runs for both scale parameterizations, counting which optimum each
    run reaches (:func:`basin`): the main run (``seed``) and ``basin_seeds - 1`` more, trained
    together as one batch of independent fits (:func:`~pyrodiv.demo.batched.fit_rows`, seed
    ``seed + 1``). ``runs`` restricts the main runs to a subset of
    :data:`RUNS`.

    Writes one figure per run (``bimodal_<run>.png``: densities and trajectory),
    ``bimodal_forward_kl_convergence.png`` and ``bimodal_jsd_basins.png``.

    Example::

        >>> res = bimodal_fits(steps=400, lr=0.05, long_steps=400, basin_seeds=1,
        ...                    runs=["reverse_kl_right"])
        >>> res["runs"]["reverse_kl_right"]["ours"]["loc"] > 5
        True
    """
    log_p = log_prob_fn(bimodal)
    model = target_model(bimodal())
    names = list(RUNS) if runs is None else list(runs)
    result = {
        "target": {"means": [-7.0, 7.0], "variance": 1.4, "weights": [0.5, 0.5]},
        "settings": {
            "steps": steps,
            "lr": lr,
            "particles": particles,
            "seed": seed,
            "long_steps": long_steps,
            "high_lr": high_lr,
            "basin_seeds": basin_seeds,
        },
        "runs": {},
        "figures": [],
    }
    exact_cache = {}

    def exact(gen, start):
        key = (gen, start)
        if key not in exact_cache:
            exact_cache[key] = exact_optimum(gen, log_p, start=start, n=quad_n)
        return dict(exact_cache[key])

    for name in names:
        divergence, gen, start, scale = RUNS[name]
        run_steps = long_steps if name == "forward_kl" else steps
        fit = fit_normal(
            model,
            make_loss(divergence, particles),
            start=start,
            scale=scale,
            steps=run_steps,
            lr=lr,
            seed=seed,
            checkpoints=(steps,),
            progress=progress,
            desc=f"{divergence} from {fmt_normal(*start, 0)}",
        )
        ours = fit["checkpoints"].get(str(steps), {"loc": fit["loc"], "variance": fit["variance"]})
        entry = {
            "divergence": divergence,
            "start": {"loc": start[0], "variance": start[1]},
            "scale": scale,
            "deck": DECK.get(name),
            "ours": ours,
            "exact": exact(gen, start),
            "basin": basin(ours["loc"], ours["variance"]),
            "trajectory": fit["trajectory"],
        }
        # a fit can leave the basin that the quadrature search from its start finds (JSD with
        # an exp scale): then the exact optimum of the basin it reached is searched from it
        entry["exact_of_fit_basin"] = None
        if entry["basin"] not in (
            "neither",
            basin(entry["exact"]["loc"], entry["exact"]["variance"]),
        ):
            entry["exact_of_fit_basin"] = exact_optimum(
                gen, log_p, start=(ours["loc"], ours["variance"]), n=quad_n
            )
        if name == "forward_kl":
            entry["long"] = {"steps": run_steps, "loc": fit["loc"], "variance": fit["variance"]}
            tail = [
                v
                for s, v in zip(
                    fit["trajectory"]["step"], fit["trajectory"]["variance"], strict=True
                )
                if s > 0.75 * run_steps
            ]
            entry["long"]["variance_mean_last_quarter"] = float(sum(tail) / max(1, len(tail)))
            high = fit_normal(
                model,
                make_loss(divergence, particles),
                start=start,
                steps=steps,
                lr=high_lr,
                seed=seed,
                progress=progress,
                desc=f"forward KL, lr {high_lr}",
            )
            entry["high_lr"] = {
                "lr": high_lr,
                "steps": steps,
                "loc": high["loc"],
                "variance": high["variance"],
                "trajectory": high["trajectory"],
            }
        result["runs"][name] = entry

    # the two optima of the JSD landscape, by quadrature
    result["jsd_optima"] = {
        "mode": exact("jensen_shannon", (1.0, 1.0)),
        "broad": exact("jensen_shannon", (0.0, 1.0)),
        "notes": JSD_OPTIMA_NOTES,
    }
    for opt in result["jsd_optima"].values():
        if "variance" in opt:
            opt["sd"] = opt["variance"] ** 0.5

    # which optimum JSD from N(1, 1) reaches, over runs, for both scale parameterizations:
    # run 0 is the main run of each scale; the others are trained together as one batch of
    # independent fits (pyrodiv.demo.batched), with the next seed
    extra = [
        Row("jensen_shannon", start=(1.0, 1.0), scale=scale, two_sample=True)
        for scale in ("L", "exp")
        for _ in range(1, basin_seeds)
    ]
    more = (
        fit_rows(
            model,
            extra,
            steps=steps,
            lr=lr,
            particles=particles,
            seed=seed + 1,
            progress=progress,
        )
        if extra
        else []
    )
    basins = {}
    for scale in ("L", "exp"):
        finals = []
        main = result["runs"].get("jsd_right" if scale == "L" else "jsd_right_exp")
        if basin_seeds > 0 and main is not None:
            finals.append(_basin_run(0, seed, main["ours"], main["trajectory"]))
        elif basin_seeds > 0:
            fit = fit_normal(
                model,
                make_loss("JSD", particles),
                start=(1.0, 1.0),
                scale=scale,
                steps=steps,
                lr=lr,
                seed=seed,
                progress=progress,
            )
            finals.append(_basin_run(0, seed, fit, fit["trajectory"]))
        for row, fit in zip(extra, more, strict=True):
            if row.scale == scale:
                finals.append(_basin_run(len(finals), seed + 1, fit, fit["trajectory"]))
        counts = {b: sum(f["basin"] == b for f in finals) for b in ("mode", "broad", "neither")}
        basins[scale] = {"runs": finals, "counts": counts}
    result["jsd_basins"] = basins

    if out_dir is not None:
        result["figures"] += _figures(out_dir, result, log_p, steps)
    return result


def _basin_run(run: int, seed: int, state: dict, trajectory: dict) -> dict:
    return {
        "run": run,
        "seed": seed,
        "batched": run > 0,
        "loc": state["loc"],
        "variance": state["variance"],
        "basin": basin(state["loc"], state["variance"]),
        "trajectory": {"step": trajectory["step"], "loc": trajectory["loc"]},
    }


def _figures(out_dir, result, log_p, steps):
    files = []
    for name, run in result["runs"].items():
        fig, axes = new_figure(1, 3, size=(13.0, 3.8), width_ratios=[1.6, 1, 1])
        start, ours, exact = run["start"], run["ours"], run["exact"]
        scale_note = "" if run["scale"] == "L" else r", $\sigma = e^s$"
        curves = [
            (
                f"initial Q = {fmt_normal(start['loc'], start['variance'], 0)}",
                start["loc"],
                start["variance"],
                COLORS["initial"],
                "--",
            ),
            (
                f"fitted Q = {fmt_normal(ours['loc'], ours['variance'])} (step {steps})",
                ours["loc"],
                ours["variance"],
                COLORS["fitted"],
                "-",
            ),
            (
                f"exact optimum from the start {fmt_normal(exact['loc'], exact['variance'])}",
                exact["loc"],
                exact["variance"],
                COLORS["exact"],
                ":",
            ),
        ]
        reached = run.get("exact_of_fit_basin")
        if reached:
            curves.append(
                (
                    "exact optimum of the basin reached "
                    f"{fmt_normal(reached['loc'], reached['variance'])}",
                    reached["loc"],
                    reached["variance"],
                    "tab:green",
                    "-.",
                )
            )
        plot_densities(
            axes[0],
            log_p,
            curves,
            title=f"{run['divergence'][0].upper()}{run['divergence'][1:]}{scale_note}: bimodal "
            "target P",
            target_label="P = {N(-7, 1.4), N(7, 1.4)}",
        )
        traj = run["trajectory"]
        if reached:
            plot_trajectory(
                axes[1:],
                traj,
                exact=reached,
                deck=run["deck"],
                exact_label="exact optimum, basin reached",
            )
        else:
            plot_trajectory(axes[1:], traj, exact=exact, deck=run["deck"])
        if name == "forward_kl":
            for ax in axes[1:]:
                ax.axvline(steps, color="0.5", lw=0.8)
        files.append(save_figure(fig, out_dir, f"bimodal_{name}.png"))

    fkl = result["runs"].get("forward_kl")
    if fkl is not None:
        fig, ax = new_figure(1, 1, size=(7.5, 4.2))
        t = fkl["trajectory"]
        ax.plot(
            t["step"],
            t["variance"],
            color=COLORS["fitted"],
            label=f"lr {result['settings']['lr']} (the talk's), {fkl['long']['steps']} steps",
        )
        h = fkl["high_lr"]
        ax.plot(
            h["trajectory"]["step"],
            h["trajectory"]["variance"],
            color="tab:purple",
            label=f"lr {h['lr']}, {h['steps']} steps",
        )
        ax.axhline(
            fkl["exact"]["variance"],
            color=COLORS["exact"],
            ls="--",
            label=f"exact optimum {fkl['exact']['variance']:.1f}",
        )
        ax.axhline(
            fkl["deck"]["variance"],
            color="tab:green",
            ls=":",
            label=f"talk's run (step 4000): {fkl['deck']['variance']:.2f}",
        )
        ax.axvline(steps, color="0.5", lw=0.8)
        ax.set_xlabel("SVI step")
        ax.set_ylabel("variance of Q")
        ax.set_title(
            f"Forward KL on the bimodal target: the variance is still rising at step {steps}",
            fontsize=10,
        )
        ax.legend(fontsize=8)
        files.append(save_figure(fig, out_dir, "bimodal_forward_kl_convergence.png"))

    basins = result["jsd_basins"]
    fig, axes = new_figure(1, 2, size=(12.0, 4.0), sharey=True)
    titles = {
        "L": r"JSD from N(1, 1), $\sigma = |L|$ (the talk's)",
        "exp": r"JSD from N(1, 1), $\sigma = e^s$",
    }
    for ax, scale in zip(axes, ("L", "exp"), strict=True):
        for run in basins[scale]["runs"]:
            color = {"mode": "tab:red", "broad": "tab:blue", "neither": "0.5"}[run["basin"]]
            ax.plot(
                run["trajectory"]["step"], run["trajectory"]["loc"], color=color, lw=1, alpha=0.8
            )
        ax.axhline(7.0, color="tab:red", ls=":", lw=1, label="mode optimum (loc 7)")
        ax.axhline(0.0, color="tab:blue", ls=":", lw=1, label="broad optimum (loc 0)")
        c = basins[scale]["counts"]
        ax.set_title(
            f"{titles[scale]}\n{c['mode']} runs to the mode, {c['broad']} to the broad cover",
            fontsize=10,
        )
        ax.set_xlabel("SVI step")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("mean of Q")
    files.append(save_figure(fig, out_dir, "bimodal_jsd_basins.png"))
    return files
