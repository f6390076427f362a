r"""The standard 2-D mode benchmark ("Are all GANs created equal?", made runnable).

Two targets, both mixtures of equally weighted isotropic Gaussians:

* **ring**: 8 Gaussians on a circle of radius 2, sd 0.02 (Metz et al. 2017, unrolled GANs);
* **grid**: a 5x5 grid with spacing 2 (means at -4, -2, 0, 2, 4 in each coordinate), sd 0.05.

Methods (each fit for a fixed number of SVI steps of 256 particles: 3000 for the adversarial
losses, 800 for the flows):

* ``GAN`` (non-saturating), ``LSGAN``, ``WGAN-GP`` (one-sided penalty, lambda 10),
  ``f-GAN forward KL`` and ``f-GAN reverse KL`` (:class:`~pyrodiv.AdversarialFDivergence` with
  ``"kl_forward"`` and ``"kl_reverse"``): an *implicit* generator guide (an MLP on 2-D noise)
  against an MLP critic, on a :class:`~pyrodiv.SampleTarget` of 20000 draws of the target;
* ``forward KL, flow``, ``reverse KL, flow``, ``JSD, flow``, ``squared Hellinger, flow`` and
  ``Pearson, flow``: :class:`~pyrodiv.ForwardKL`, :class:`~pyrodiv.ReverseKL`,
  :class:`~pyrodiv.JensenShannon` and :class:`~pyrodiv.FDivergence` with a spline flow guide
  (Pyro's ``AutoNormalizingFlow`` over identity-initialized spline and spline-coupling layers
  from :mod:`pyrodiv.inference.flow_guide`), on the prior target (a ``MixtureSameFamily``
  model, which has :math:`\log p`), from :math:`Q = N(0, I_2)`;
* the same flows ``annealed`` (the target convolved with :math:`N(0, s^2 I_2)`, :math:`s`
  annealed to 0) and ``after forward KL`` (the first half of the steps by forward KL): two ways
  past the saturation of the bounded divergences from that start.

Metrics, on 2000 draws of each fitted guide: a draw is **high quality** when it lies within
3 sd of some mode (Euclidean distance :math:`\le 3\sigma`); a mode is **covered** when at least
1% of the 2000 draws (20 draws) lie within 3 sd of it.

Run::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/gan_modes.py           # ~25 min, 3 seeds
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/gan_modes.py --quick   # ~2 min smoke run
    # only some methods and targets, merged into the stored results:
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/gan_modes.py --merge \
        --methods "JSD, flow; squared Hellinger, flow" --targets ring
"""

from __future__ import annotations

import argparse
import math
import platform
import re
import shlex
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import ComposeTransformModule, Permute
from pyro.infer.autoguide import AutoNormalizingFlow
from torch.distributions import constraints

import pyrodiv
from pyrodiv.inference.flow_guide import identity_spline, identity_spline_coupling

RESULTS = Path(__file__).resolve().parent / "results"
DOCS_STATIC = Path(__file__).resolve().parent.parent / "docs" / "_static" / "gan_modes"

#: Draws of the guide on which the metrics are computed.
NUM_EVAL = 2000
#: A draw within this many sd of a mode is high quality.
QUALITY_SD = 3.0
#: A mode is covered when at least this fraction of the draws is within ``QUALITY_SD`` of it.
COVER_FRACTION = 0.01


# ---- targets -----------------------------------------------------------------------------


def ring_locs(n: int = 8, radius: float = 2.0) -> torch.Tensor:
    """The means of the ring: ``n`` points equally spaced on a circle of ``radius``."""
    angle = torch.arange(n, dtype=torch.float32) * (2.0 * math.pi / n)
    return radius * torch.stack([angle.cos(), angle.sin()], -1)


def grid_locs(side: int = 5, spacing: float = 2.0) -> torch.Tensor:
    """The means of the grid: ``side`` x ``side`` points ``spacing`` apart, centred at 0."""
    axis = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2.0) * spacing
    gx, gy = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)


#: name -> (means, sd)
TARGETS = {"ring": (ring_locs(), 0.02), "grid": (grid_locs(), 0.05)}


class Mixture2D(dist.MixtureSameFamily):
    """``MixtureSameFamily`` whose support is stated as ``real_vector`` (torch's own mixture
    constraint has no transform, which the autoguides' initialization needs)."""

    @property
    def support(self):
        return constraints.real_vector


def mixture(locs: torch.Tensor, sd: float) -> Mixture2D:
    """The equally weighted mixture of ``N(loc, sd^2 I)`` over the rows of ``locs``."""
    components = dist.Normal(locs, torch.full_like(locs, sd)).to_event(1)
    return Mixture2D(dist.Categorical(torch.ones(locs.shape[0])), components)


def prior_target(locs: torch.Tensor, sd: float, noise: list | None = None):
    """The target as a Pyro model with one 2-D latent site ``x`` (a prior target: it has
    draws and :math:`\\log p`). With ``noise = [s]`` (a list the caller changes between steps)
    each component's sd is :math:`\\sqrt{sd^2 + s^2}`: the target convolved with
    :math:`N(0, s^2 I)` (instance noise, annealed to ``s = 0``)."""
    mix = mixture(locs, sd)

    def model():
        if noise is None or noise[0] == 0.0:
            pyro.sample("x", mix)
        else:
            pyro.sample("x", mixture(locs, math.hypot(sd, noise[0])))

    return model


def target_draws(locs: torch.Tensor, sd: float, n: int, seed: int) -> torch.Tensor:
    """``n`` draws of the mixture, from a fixed seed."""
    gen = torch.Generator().manual_seed(seed)
    which = torch.randint(locs.shape[0], (n,), generator=gen)
    return locs[which] + sd * torch.randn(n, 2, generator=gen)


# ---- metrics -----------------------------------------------------------------------------


def mode_metrics(
    draws: torch.Tensor,
    locs: torch.Tensor,
    sd: float,
    quality_sd: float = QUALITY_SD,
    cover_fraction: float = COVER_FRACTION,
) -> dict:
    """Modes covered and the high-quality fraction of ``draws`` (shape ``(N, 2)``).

    A draw is high quality when its distance to the nearest mean is at most ``quality_sd * sd``;
    a mode is covered when at least ``cover_fraction * N`` draws are within that distance of it.
    Non-finite draws count as low quality.

    Example::

        >>> locs = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
        >>> mode_metrics(torch.zeros(100, 2), locs, 0.05)["modes"]
        1
    """
    if draws.dim() != 2 or draws.shape[1] != locs.shape[1]:
        raise ValueError(f"draws must have shape (N, {locs.shape[1]}), got {tuple(draws.shape)}")
    n, locs = draws.shape[0], locs.to(draws)
    finite = torch.isfinite(draws).all(-1)
    dist_to = torch.cdist(draws.where(finite[:, None], torch.zeros_like(draws)), locs)
    nearest, index = dist_to.min(-1)
    good = finite & (nearest <= quality_sd * sd)
    counts = torch.bincount(index[good], minlength=locs.shape[0])
    need = math.ceil(cover_fraction * n)
    return {
        "modes": int((counts >= need).sum()),
        "quality": float(good.float().mean()),
        "counts": counts,
    }


# ---- guides and losses -------------------------------------------------------------------


def mlp(dims: list[int], act=torch.nn.ReLU) -> torch.nn.Sequential:
    """A fully connected network with ``act`` between its layers."""
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(torch.nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(act())
    return torch.nn.Sequential(*layers)


def implicit_guide(net: torch.nn.Module):
    """An implicit guide: ``x = net(eps)``, ``eps ~ N(0, I_2)`` drawn with ``pyro.sample`` (so
    every particle gets its own noise); ``x`` is a ``Delta`` and has no density."""

    def guide():
        gen = pyro.module("generator", net)
        eps = pyro.sample("eps", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        pyro.sample("x", dist.Delta(gen(eps)).to_event(1))

    return guide


def flow_transform(dim: int, layers: int = 3, bins: int = 16, bound: float = 5.0):
    """An element-wise spline, then ``layers`` spline couplings under swaps, all starting at
    the identity (:mod:`pyrodiv.inference.flow_guide`)."""
    parts = [identity_spline(dim, bins, bound)]
    swap = torch.arange(dim - 1, -1, -1)
    for _ in range(layers):
        parts += [identity_spline_coupling(dim, 32, bins, bound), Permute(swap)]
    return ComposeTransformModule(parts)


ADVERSARIAL = {
    "GAN": lambda critic, **o: pyrodiv.GAN(critic, non_saturating=True, **o),
    "LSGAN": lambda critic, **o: pyrodiv.LSGAN(critic, **o),
    "WGAN-GP": lambda critic, **o: pyrodiv.WGAN(critic, gradient_penalty=10.0, **o),
    "f-GAN forward KL": partial(pyrodiv.AdversarialFDivergence, "kl_forward"),
    "f-GAN reverse KL": partial(pyrodiv.AdversarialFDivergence, "kl_reverse"),
}
FLOW = {
    "forward KL, flow": pyrodiv.ForwardKL,
    "reverse KL, flow": pyrodiv.ReverseKL,
    "JSD, flow": pyrodiv.JensenShannon,
    "squared Hellinger, flow": partial(pyrodiv.FDivergence, "squared_hellinger"),
    "Pearson, flow": partial(pyrodiv.FDivergence, "pearson"),
}
#: Two ways past a saturated start (see ``fit``): the target convolved with N(0, s^2 I), s
#: annealed to 0 ("annealed"), and forward KL for the first WARM_FRACTION of the steps ("after
#: forward KL").
for _name in ("JSD", "squared Hellinger", "Pearson", "reverse KL"):
    FLOW[f"{_name}, flow, annealed"] = FLOW[f"{_name}, flow"]
for _name in ("JSD", "squared Hellinger", "Pearson", "reverse KL"):
    FLOW[f"{_name}, flow, after forward KL"] = FLOW[f"{_name}, flow"]
ANNEALED = {name for name in FLOW if name.endswith("annealed")}
WARM = {name for name in FLOW if name.endswith("after forward KL")}
WARM_FRACTION = 0.5
#: Instance noise: ``s`` falls geometrically from NOISE_START to NOISE_END over the first
#: ANNEAL_FRACTION of the steps, then is 0 (the exact target).
NOISE_START, NOISE_END, ANNEAL_FRACTION = 1.0, 0.01, 0.75
METHODS = list(ADVERSARIAL) + list(FLOW)


def fit(method: str, target: str, seed: int, steps: int, particles: int = 256) -> dict:
    """One fit; returns the metrics, ``NUM_EVAL`` draws of the guide and the seconds."""
    locs, sd = TARGETS[target]
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    options = {"num_particles": particles, "vectorize_particles": True}
    start = time.perf_counter()
    if method in ADVERSARIAL:
        model = pyrodiv.SampleTarget({"x": target_draws(locs, sd, 20000, 1000 + seed)})
        net = mlp([2, 64, 64, 2])
        critic = mlp([2, 64, 64, 1])
        loss = ADVERSARIAL[method](critic, **options)
        guide = implicit_guide(net)

        def rates(name):  # two timescales: the critic steps twice as fast
            lr = 2e-3 if name.startswith("critic.") else 1e-3
            return {"lr": lr, "betas": (0.5, 0.9)}

        optim = pyro.optim.Adam(rates)
    else:
        noise = [NOISE_START if method in ANNEALED else 0.0]
        model = prior_target(locs, sd, noise)
        guide = AutoNormalizingFlow(model, partial(flow_transform))
        loss = FLOW[method](**options)
        optim = pyro.optim.Adam({"lr": 5e-3})
    svi = pyro.infer.SVI(model, guide, optim, loss)
    values, stopped = [float("nan")], None
    anneal, warm = int(ANNEAL_FRACTION * steps), int(WARM_FRACTION * steps)
    offset = 0
    if method in WARM:  # forward KL first, then the method's own loss, the same optimizer
        first = pyro.infer.SVI(model, guide, optim, pyrodiv.ForwardKL(**options))
        values += [first.step() for _ in range(warm)]
        steps, offset = steps - warm, warm
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(steps):
            if method in ANNEALED:
                ratio = NOISE_END / NOISE_START
                noise[0] = NOISE_START * ratio ** (step / anneal) if step < anneal else 0.0
            try:
                values.append(svi.step())
            except ValueError as err:  # a NaN/inf gradient: stop; the guide is kept as is
                stopped = f"stopped at step {offset + step}: {str(err).split(';')[0]}"
                break
            saturated = [w for w in caught if "saturated" in str(w.message)]
            if saturated:  # the gradient is exactly 0 and stays so: Q will not move
                message = str(saturated[0].message).split(":")
                stopped = f"stopped at step {offset + step}: {message[0]}:{message[1]}"
                break
    seconds = time.perf_counter() - start
    with torch.no_grad():
        if method in ADVERSARIAL:
            draws = net(torch.randn(NUM_EVAL, 2))
        else:
            draws = guide.get_posterior().sample((NUM_EVAL,))
    out = mode_metrics(draws, locs, sd)
    out.update(draws=draws, seconds=seconds, last=values[-1], stopped=stopped)
    return out


# ---- stored results ----------------------------------------------------------------------


def load_fits(json_path: Path, md_path: Path) -> list[dict]:
    """Every stored fit: from ``json_path`` (written by :func:`main`), else from the per-fit
    table of an earlier ``md_path`` (the file's steps read from its text). Empty when neither
    exists."""
    import json

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
    import json

    json_path.write_text(json.dumps({"runs": runs, "fits": fits}, indent=1) + "\n")


def load_draws(npz_path: Path) -> dict:
    """The stored seed-0 draws, ``{(method, target): tensor (NUM_EVAL, 2)}``."""
    import numpy as np

    if not npz_path.exists():
        return {}
    with np.load(npz_path) as data:
        return {tuple(k.split("|")): torch.from_numpy(data[k].astype("float32")) for k in data}


def save_draws(npz_path: Path, draws: dict) -> None:
    """Store the seed-0 draws (float16: the figure's resolution, a quarter of the bytes)."""
    import numpy as np

    arrays = {"|".join(key): x.numpy().astype("float16") for key, x in draws.items()}
    np.savez_compressed(npz_path, **arrays)


# ---- output ------------------------------------------------------------------------------


def _ordered(methods) -> list[str]:
    return [m for m in METHODS if m in set(methods)]


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


def _choose(text: str | None, known: list[str], what: str) -> list[str]:
    """The names of ``text``, separated by ``;`` (all of ``known`` when ``None``), checked."""
    if text is None:
        return list(known)
    chosen = [name.strip() for name in text.split(";") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; known: {'; '.join(known)}")
    return chosen


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~2-minute smoke run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per method and target")
    parser.add_argument(
        "--seed-list", default=None, help="comma-separated seeds, instead of 0..seeds-1"
    )
    parser.add_argument("--gan-steps", type=int, default=None, help="SVI steps, adversarial")
    parser.add_argument("--flow-steps", type=int, default=None, help="SVI steps, flows")
    parser.add_argument(
        "--methods",
        default=None,
        help=f"methods separated by ';' (default all: {'; '.join(METHODS)})",
    )
    parser.add_argument("--targets", default=None, help="targets separated by ';' (ring; grid)")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the stored fits (the .json beside --out, else its per-fit table) and "
        "replace or add only the fits run now",
    )
    parser.add_argument(
        "--redraw",
        action="store_true",
        help="fit nothing: rewrite the Markdown and the figure from the stored fits and draws",
    )
    parser.add_argument("--out", default=str(RESULTS / "gan_modes.md"))
    parser.add_argument("--no-docs", action="store_true", help="do not copy the figure to docs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    gan_steps = args.gan_steps or (600 if args.quick else 3000)
    flow_steps = args.flow_steps or (300 if args.quick else 800)
    methods = _ordered(_choose(args.methods, METHODS, "methods"))
    targets = _choose(args.targets, list(TARGETS), "targets")
    if args.seed_list is not None:
        seeds = [int(s) for s in args.seed_list.split(",")]
    else:
        seeds = list(range(1 if args.quick else args.seeds))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path, npz_path, png = (
        out.with_suffix(".json"),
        out.with_suffix(".npz"),
        out.with_suffix(".png"),
    )
    fits, shown, runs = [], {}, []
    if args.redraw:
        methods, targets, args.merge = [], [], True
    if args.merge:
        fits = load_fits(json_path, out)
        shown = load_draws(npz_path)
        if json_path.exists():
            import json

            runs = json.loads(json_path.read_text())["runs"]
        elif out.exists():  # the run that made an earlier Markdown file
            text = out.read_text()
            made = re.search(r"total ([\d.]+) min here\):\s+```bash\s+(.*?)\n```", text)
            if made:
                command = made.group(2).replace("OMP_NUM_THREADS=1 nice -n 10 ", "")
                runs = [{"command": command, "minutes": float(made.group(1))}]
    total = time.perf_counter()
    for seed in seeds:
        for target in targets:
            for method in methods:
                steps = gan_steps if method in ADVERSARIAL else flow_steps
                r = fit(method, target, seed, steps)
                fits = [
                    f
                    for f in fits
                    if (f["method"], f["target"], f["seed"]) != (method, target, seed)
                ]
                fits.append(
                    {
                        "method": method,
                        "target": target,
                        "seed": seed,
                        "modes": r["modes"],
                        "quality": r["quality"],
                        "counts": r["counts"].tolist(),
                        "seconds": r["seconds"],
                        "stopped": r["stopped"],
                        "steps": steps,
                        "last_loss": r["last"],
                    }
                )
                if seed == 0:
                    shown[(method, target)] = r["draws"]
                print(
                    f"seed {seed} {target:4s} {method:24s} modes {r['modes']:2d} "
                    f"quality {r['quality']:.2f} last loss {r['last']:.3f} "
                    f"{r['seconds']:.0f} s {r['stopped'] or ''}",
                    flush=True,
                )
    total = time.perf_counter() - total
    command = " ".join(["python"] + [shlex.quote(a) for a in sys.argv])
    if not args.redraw:
        runs.append({"command": command, "minutes": round(total / 60, 1)})
    all_seeds = sorted({f["seed"] for f in fits})
    figure(shown, png, 0 if 0 in all_seeds else min(all_seeds))
    save_fits(json_path, fits, runs)
    save_draws(npz_path, shown)
    if not args.no_docs and not args.quick:
        DOCS_STATIC.mkdir(parents=True, exist_ok=True)
        (DOCS_STATIC / png.name).write_bytes(png.read_bytes())
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
    out.write_text(body)
    print(f"wrote {out}, {png}, {json_path.name} and {npz_path.name} in {total / 60:.1f} min")


if __name__ == "__main__":
    main()
