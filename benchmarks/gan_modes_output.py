"""The output of ``gan_modes.py``: its stored results, its figure and its Markdown report.

* stored results, beside the report: every fit's metrics and the runs that made them
  (``gan_modes.json``; without it, the per-fit table of an earlier ``gan_modes.md``), and seed
  0's draws of each fitted guide (``gan_modes.npz``, float16);
* the figure (``gan_modes.png``): per target, a scatter of the target's draws and of each
  method's draws;
* the report (``gan_modes.md``): the runs, the machine and the set-up, the table per method
  (modes covered, high-quality fraction, seconds) and the table of every fit.

The targets, methods, fits, metrics and the command line are in ``gan_modes.py``, whose
``main`` imports this module; this module reads the experiment's settings from it (both run
from the ``benchmarks`` folder, as plain modules).
"""

from __future__ import annotations

import json
import math
import platform
import re
from pathlib import Path

import numpy as np
import pyro
import torch
from gan_modes import (
    ADVERSARIAL,
    ANNEAL_FRACTION,
    ANNEALED,
    COVER_FRACTION,
    FLOW,
    METHODS,
    NOISE_END,
    NOISE_START,
    NUM_EVAL,
    QUALITY_SD,
    TARGETS,
    WARM,
    WARM_FRACTION,
    _ordered,
    target_draws,
)

# ---- stored results ----------------------------------------------------------------------


def load_fits(json_path: Path, md_path: Path) -> list[dict]:
    """Every stored fit: from ``json_path`` (written by ``gan_modes.main``), else from the per-fit
    table of an earlier ``md_path`` (the file's steps read from its text). Empty when neither
    exists."""
    if json_path.exists():
        return json.loads(json_path.read_text())["fits"]
    if not md_path.exists():
        return []
    text = md_path.read_text()
    gan = re.search(r"critic \(2-64-64-1, ReLU\), (\d+) SVI steps", text)
    flow = re.search(r"identity at the start\), (\d+) SVI steps", text)
    fits = []
    for line in text.split("## Every fit", 1)[-1].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 8 or cells[0] not in TARGETS or cells[1] not in METHODS:
            continue
        target, method, seed, modes, quality, counts, seconds, note = cells
        steps = gan if method in ADVERSARIAL else flow
        fits.append(
            {
                "method": method,
                "target": target,
                "seed": int(seed),
                "modes": int(modes),
                "quality": float(quality),
                "counts": [] if counts == "none" else [int(c) for c in counts.split()],
                "seconds": float(seconds),
                "stopped": note or None,
                "steps": int(steps.group(1)) if steps else None,
            }
        )
    return fits


def save_fits(json_path: Path, fits: list[dict], runs: list[dict]) -> None:
    """Write every fit's metrics (and the runs that made them) as JSON."""
    json_path.write_text(json.dumps({"runs": runs, "fits": fits}, indent=1) + "\n")


def load_runs(json_path: Path, md_path: Path) -> list[dict]:
    """The runs that made the stored fits (``{"command", "minutes"}`` each): from
    ``json_path``, else the one run named in an earlier ``md_path``. Empty when neither
    exists."""
    if json_path.exists():
        return json.loads(json_path.read_text())["runs"]
    if md_path.exists():  # the run that made an earlier Markdown file
        text = md_path.read_text()
        made = re.search(r"total ([\d.]+) min here\):\s+```bash\s+(.*?)\n```", text)
        if made:
            command = made.group(2).replace("OMP_NUM_THREADS=1 nice -n 10 ", "")
            return [{"command": command, "minutes": float(made.group(1))}]
    return []


def load_draws(npz_path: Path) -> dict:
    """The stored seed-0 draws, ``{(method, target): tensor (NUM_EVAL, 2)}``."""
    if not npz_path.exists():
        return {}
    with np.load(npz_path) as data:
        return {tuple(k.split("|")): torch.from_numpy(data[k].astype("float32")) for k in data}


def save_draws(npz_path: Path, draws: dict) -> None:
    """Store the seed-0 draws (float16: the figure's resolution, a quarter of the bytes)."""
    arrays = {"|".join(key): x.numpy().astype("float16") for key, x in draws.items()}
    np.savez_compressed(npz_path, **arrays)


# ---- figure and report -------------------------------------------------------------------


def figure(draws: dict, path: Path, seed: int) -> None:
    """A scatter of each method's draws for one seed: per target, a row of the adversarial
    methods (after the target's own draws), then rows of the flows from the standard start,
    annealed and after forward KL."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = [t for t in TARGETS if any(key[1] == t for key in draws)]
    present = _ordered({m for m, _ in draws})
    groups = [
        [m for m in present if m in ADVERSARIAL],
        [m for m in present if m in FLOW and m not in ANNEALED | WARM],
        [m for m in present if m in ANNEALED],
        [m for m in present if m in WARM],
    ]
    groups = [g for g in groups if g]
    cols = 1 + max(len(g) for g in groups)
    rows = len(targets) * len(groups)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.0 * rows), squeeze=False)
    for t, target in enumerate(targets):
        locs, sd = TARGETS[target]
        lim = float(locs.abs().max()) + 1.0
        for g, group in enumerate(groups):
            row = t * len(groups) + g
            panels = [(m, draws.get((m, target))) for m in group]
            if g == 0:
                panels = [(f"{target}: target", target_draws(locs, sd, NUM_EVAL, 7))] + panels
            else:
                panels = [(None, None)] + panels
            for col in range(cols):
                ax = axes[row, col]
                name, x = panels[col] if col < len(panels) else (None, None)
                if name is None:
                    ax.axis("off")
                    continue
                if x is not None:
                    ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.3, color="C0" if col else "k")
                else:
                    ax.text(0, 0, "no draws stored", ha="center", fontsize=7)
                ax.scatter(locs[:, 0], locs[:, 1], s=8, marker="x", color="C3", linewidths=0.8)
                ax.set_xlim(-lim, lim)
                ax.set_ylim(-lim, lim)
                ax.set_aspect("equal")
                ax.set_xticks([])
                ax.set_yticks([])
                for part in (", annealed", ", after forward KL"):
                    name = name.replace(part, "\n" + part[2:])
                ax.set_title(name, fontsize=7)
    fig.suptitle(f"{NUM_EVAL} draws of each fitted guide, seed {seed} (x: the modes)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(fits: list[dict]) -> str:
    """Markdown: one row per method, per target the modes covered (mean, min-max), the mean
    high-quality fraction (min-max), the mean seconds per fit and the seeds."""
    head = ["method"]
    for target, (locs, _) in TARGETS.items():
        m = locs.shape[0]
        head += [f"{target}: modes of {m} (mean [min, max])", f"{target}: high quality", "s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in _ordered({f["method"] for f in fits}):
        cells = [method]
        for target in TARGETS:
            runs = [f for f in fits if f["method"] == method and f["target"] == target]
            if not runs:
                cells += ["not run", "", ""]
                continue
            modes = [r["modes"] for r in runs]
            quality = [r["quality"] for r in runs]
            secs = sum(r["seconds"] for r in runs) / len(runs)
            cells += [
                f"{sum(modes) / len(modes):.1f} [{min(modes)}, {max(modes)}]",
                f"{sum(quality) / len(quality):.2f} [{min(quality):.2f}, {max(quality):.2f}]",
                f"{secs:.0f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_fit_table(fits: list[dict]) -> str:
    """Markdown: every fit, with the draws per mode (sorted, largest first)."""
    lines = [
        "| target | method | seed | modes | high quality | draws within 3 sd, per mode | s "
        "| note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(fits, key=lambda f: (f["target"], METHODS.index(f["method"]), f["seed"])):
        counts = sorted(r["counts"], reverse=True)
        shown = " ".join(str(c) for c in counts if c > 0) or "none"
        lines.append(
            f"| {r['target']} | {r['method']} | {r['seed']} | {r['modes']} | {r['quality']:.3f} "
            f"| {shown} | {r['seconds']:.0f} | {r['stopped'] or ''} |"
        )
    return "\n".join(lines)


def cpu_model() -> str:
    """The processor's model name (from ``/proc/cpuinfo`` where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _steps_text(fits: list[dict], group: dict) -> str:
    """The SVI steps of the fits of ``group``'s methods: one number, or one per method."""
    steps = {f["method"]: f["steps"] for f in fits if f["method"] in group}
    if len(set(steps.values())) <= 1:
        return f"{next(iter(steps.values()), '-')}"
    return ", ".join(f"{s} ({m})" for m, s in steps.items())


def report(fits: list[dict], runs: list[dict], png: Path) -> str:
    """The Markdown report: the runs that made ``fits``, the machine, the set-up, the table per
    method, the figure at ``png`` (beside the report) and the table of every fit."""
    all_seeds = sorted({f["seed"] for f in fits})
    machine = (
        f"{platform.machine()} ({cpu_model()}), Python "
        f"{platform.python_version()}, torch {torch.__version__}, pyro {pyro.__version__}, "
        "1 torch thread"
    )
    history = "\n".join(f"    {r['command']}   # {r['minutes']} min" for r in runs)
    fit_minutes = sum(f["seconds"] for f in fits) / 60
    body = f"""# 2-D modes: GANs, f-GANs and flows on the ring and the grid

The rows were made by these runs (the later ones with `--merge`, which keeps the stored fits
and replaces or adds the fits it runs; the fits sum to {fit_minutes:.1f} min here):

```bash
{history}
```

(each as `OMP_NUM_THREADS=1 nice -n 10 ...`; `python benchmarks/gan_modes.py` alone runs every
row.) Every fit's numbers are in `gan_modes.json` and seed 0's draws in `gan_modes.npz`.

Machine: {machine}, a shared 2-core machine (the seconds include contention).

Targets: **ring**, 8 Gaussians on a circle of radius 2, sd 0.02 (Metz et al. 2017); **grid**,
5x5 Gaussians with spacing 2 (means -4..4), sd 0.05. Seeds {all_seeds[0]}..{all_seeds[-1]}.
Adversarial methods: an implicit generator (MLP 2-64-64-2 on N(0, I_2) noise) against an MLP
critic (2-64-64-1, ReLU), {_steps_text(fits, ADVERSARIAL)} SVI steps of 256 particles, Adam
(betas 0.5, 0.9) with lr 2e-3 for the critic and 1e-3 for the generator, on a `SampleTarget`
of 20000 draws. GAN is the non-saturating form; WGAN-GP has the one-sided penalty, lambda 10.
Flows: Pyro's `AutoNormalizingFlow` over an element-wise spline and 3 spline couplings
(16 bins, bound 5, identity at the start), {_steps_text(fits, FLOW)} SVI steps of 256
particles, Adam lr 5e-3, on the prior target (a `MixtureSameFamily` model), from the
identity flow, Q = N(0, I_2). "JSD" is `JensenShannon` (each particle a pair of one draw of P
and one of Q); "squared Hellinger" and "Pearson" are `FDivergence` on draws of Q alone. From
that start the bounded divergences see next to no gradient: the modes (sd
{TARGETS["ring"][1]:g} and {TARGETS["grid"][1]:g}) are so narrow that nearly every density ratio
is 0 or overflows, and a fit that the loss's own check finds saturated (gradient exactly 0 for
10 steps) is stopped (the note says when). Two ways past it: **annealed**, the target
convolved with N(0, s^2 I_2) (instance noise), s falling geometrically from
{NOISE_START:g} to {NOISE_END:g} over the first {ANNEAL_FRACTION:.0%} of the steps, then 0
(the exact target); **after forward KL**, the first {WARM_FRACTION:.0%} of the steps by
`ForwardKL`, the rest by the method's loss (the same Adam and its state: a fresh Adam's
first steps, each near lr in every parameter, threw the flow off the modes in trial runs),
as the loss's saturation warning itself suggests ("fit ForwardKL or ReverseKL first").

Metrics on {NUM_EVAL} draws of each fitted guide: a draw is *high quality* when it lies within
{QUALITY_SD:g} sd of some mode; a mode is *covered* when at least {COVER_FRACTION:.0%} of the
draws ({math.ceil(COVER_FRACTION * NUM_EVAL)}) lie within {QUALITY_SD:g} sd of it. Each cell:
mean over seeds [min, max]; "s": mean seconds per fit.

{table(fits)}

![draws per method, seed 0]({png.name})

## Every fit

{per_fit_table(fits)}
"""
    return body
