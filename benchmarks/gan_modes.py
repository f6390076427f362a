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
* ``forward KL, flow`` and ``reverse KL, flow``: :class:`~pyrodiv.ForwardKL` and
  :class:`~pyrodiv.ReverseKL` with a spline flow guide (Pyro's ``AutoNormalizingFlow`` over
  identity-initialized spline and spline-coupling layers from
  :mod:`pyrodiv.inference.flow_guide`), on the prior target (a ``MixtureSameFamily`` model,
  which has :math:`\log p`).

Metrics, on 2000 draws of each fitted guide: a draw is **high quality** when it lies within
3 sd of some mode (Euclidean distance :math:`\le 3\sigma`); a mode is **covered** when at least
1% of the 2000 draws (20 draws) lie within 3 sd of it.

Run::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/gan_modes.py           # ~15 min, 3 seeds
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/gan_modes.py --quick   # ~2 min smoke run
"""

from __future__ import annotations

import argparse
import math
import platform
import shlex
import sys
import time
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


def prior_target(locs: torch.Tensor, sd: float):
    """The target as a Pyro model with one 2-D latent site ``x`` (a prior target: it has
    draws and :math:`\\log p`)."""
    mix = mixture(locs, sd)

    def model():
        pyro.sample("x", mix)

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
FLOW = {"forward KL, flow": pyrodiv.ForwardKL, "reverse KL, flow": pyrodiv.ReverseKL}
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
        model = prior_target(locs, sd)
        guide = AutoNormalizingFlow(model, partial(flow_transform))
        loss = FLOW[method](**options)
        optim = pyro.optim.Adam({"lr": 5e-3})
    svi = pyro.infer.SVI(model, guide, optim, loss)
    values, stopped = [float("nan")], None
    for step in range(steps):
        try:
            values.append(svi.step())
        except ValueError as err:  # a NaN/inf gradient: the run stops; the guide is kept as is
            stopped = f"stopped at step {step}: {str(err).split(';')[0]}"
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


# ---- output ------------------------------------------------------------------------------


def figure(draws: dict, path: Path, seed: int) -> None:
    """A scatter of each method's draws (columns) on each target (rows), for one seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = list(TARGETS)
    fig, axes = plt.subplots(
        len(targets), len(METHODS) + 1, figsize=(2.2 * (len(METHODS) + 1), 2.3 * len(targets))
    )
    for row, target in enumerate(targets):
        locs, sd = TARGETS[target]
        lim = float(locs.abs().max()) + 1.0
        truth = target_draws(locs, sd, NUM_EVAL, 7)
        panels = [("target", truth)] + [(m, draws[(m, target)]) for m in METHODS]
        for col, (name, x) in enumerate(panels):
            ax = axes[row, col]
            ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.3, color="C0" if col else "k")
            ax.scatter(locs[:, 0], locs[:, 1], s=8, marker="x", color="C3", linewidths=0.8)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=8)
            if col == 0:
                ax.set_ylabel(target, fontsize=9)
    fig.suptitle(f"{NUM_EVAL} draws of each fitted guide, seed {seed} (x: the modes)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results: dict, seeds: list[int]) -> str:
    """Markdown: one row per method, per target the modes covered (mean, min-max), the mean
    high-quality fraction (min-max) and the mean seconds per fit."""
    head = ["method"]
    for target, (locs, _) in TARGETS.items():
        m = locs.shape[0]
        head += [f"{target}: modes of {m} (mean [min, max])", f"{target}: high quality", "s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in METHODS:
        cells = [method]
        for target in TARGETS:
            runs = [results[(method, target, s)] for s in seeds]
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


def per_fit_table(results: dict) -> str:
    """Markdown: every fit, with the draws per mode (sorted, largest first)."""
    lines = [
        "| target | method | seed | modes | high quality | draws within 3 sd, per mode | s "
        "| note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (method, target, seed), r in sorted(
        results.items(), key=lambda kv: (kv[0][1], METHODS.index(kv[0][0]), kv[0][2])
    ):
        counts = sorted(r["counts"].tolist(), reverse=True)
        shown = " ".join(str(c) for c in counts if c > 0) or "none"
        lines.append(
            f"| {target} | {method} | {seed} | {r['modes']} | {r['quality']:.3f} | {shown} "
            f"| {r['seconds']:.0f} | {r['stopped'] or ''} |"
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~2-minute smoke run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per method and target")
    parser.add_argument("--gan-steps", type=int, default=None, help="SVI steps, adversarial")
    parser.add_argument("--flow-steps", type=int, default=None, help="SVI steps, flows")
    parser.add_argument("--out", default=str(RESULTS / "gan_modes.md"))
    parser.add_argument("--no-docs", action="store_true", help="do not copy the figure to docs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    gan_steps = args.gan_steps or (600 if args.quick else 3000)
    flow_steps = args.flow_steps or (300 if args.quick else 800)
    seeds = list(range(1 if args.quick else args.seeds))
    results, shown = {}, {}
    total = time.perf_counter()
    for seed in seeds:
        for target in TARGETS:
            for method in METHODS:
                steps = gan_steps if method in ADVERSARIAL else flow_steps
                r = fit(method, target, seed, steps)
                results[(method, target, seed)] = r
                if seed == 0:
                    shown[(method, target)] = r["draws"]
                print(
                    f"seed {seed} {target:4s} {method:18s} modes {r['modes']:2d} "
                    f"quality {r['quality']:.2f} last loss {r['last']:.3f} "
                    f"{r['seconds']:.0f} s {r['stopped'] or ''}",
                    flush=True,
                )
    total = time.perf_counter() - total
    out = Path(args.out)
    png = out.with_suffix(".png")
    figure(shown, png, seeds[0])
    if not args.no_docs and not args.quick:
        DOCS_STATIC.mkdir(parents=True, exist_ok=True)
        (DOCS_STATIC / png.name).write_bytes(png.read_bytes())
    command = " ".join(["python"] + [shlex.quote(a) for a in sys.argv])
    machine = (
        f"{platform.machine()} ({cpu_model()}), Python "
        f"{platform.python_version()}, torch {torch.__version__}, pyro {pyro.__version__}, "
        "1 torch thread"
    )
    body = f"""# 2-D modes: GANs, f-GANs and flows on the ring and the grid

Regenerate with (total {total / 60:.1f} min here):

```bash
OMP_NUM_THREADS=1 nice -n 10 {command}
```

Machine: {machine}, a shared 2-core machine (the seconds include contention).

Targets: **ring**, 8 Gaussians on a circle of radius 2, sd 0.02 (Metz et al. 2017); **grid**,
5x5 Gaussians with spacing 2 (means -4..4), sd 0.05. Seeds {seeds[0]}..{seeds[-1]}.
Adversarial methods: an implicit generator (MLP 2-64-64-2 on N(0, I_2) noise) against an MLP
critic (2-64-64-1, ReLU), {gan_steps} SVI steps of 256 particles, Adam (betas 0.5, 0.9) with
lr 2e-3 for the critic and 1e-3 for the generator, on a `SampleTarget` of 20000 draws. GAN is
the non-saturating form; WGAN-GP has the one-sided penalty, lambda 10. Flows: Pyro's
`AutoNormalizingFlow` over an element-wise spline and 3 spline couplings (16 bins, bound 5,
identity at the start), {flow_steps} SVI steps of 256 particles, Adam lr 5e-3, on the prior
target (a `MixtureSameFamily` model).

Metrics on {NUM_EVAL} draws of each fitted guide: a draw is *high quality* when it lies within
{QUALITY_SD:g} sd of some mode; a mode is *covered* when at least {COVER_FRACTION:.0%} of the
draws ({math.ceil(COVER_FRACTION * NUM_EVAL)}) lie within {QUALITY_SD:g} sd of it. Each cell:
mean over seeds [min, max]; "s": mean seconds per fit.

{table(results, seeds)}

![draws per method, seed {seeds[0]}]({png.name})

## Every fit

{per_fit_table(results)}
"""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body)
    print(f"wrote {out} and {png} in {total / 60:.1f} min")


if __name__ == "__main__":
    main()
