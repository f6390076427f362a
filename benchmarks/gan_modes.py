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
    # fit nothing: rewrite the report and the figure from the stored results
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/gan_modes.py --redraw

The stored results, the figure and the Markdown report are written by ``gan_modes_output.py``.
"""

from __future__ import annotations

import argparse
import math
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


def _ordered(methods) -> list[str]:
    return [m for m in METHODS if m in set(methods)]


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
    # The output imports the settings above from this module, so it is imported here, not at
    # the top (run as a script, this file is ``__main__`` and ``gan_modes`` loads once more).
    import gan_modes_output as output

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
        fits = output.load_fits(json_path, out)
        shown = output.load_draws(npz_path)
        runs = output.load_runs(json_path, out)
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
    output.figure(shown, png, 0 if 0 in all_seeds else min(all_seeds))
    output.save_fits(json_path, fits, runs)
    output.save_draws(npz_path, shown)
    if not args.no_docs and not args.quick:
        DOCS_STATIC.mkdir(parents=True, exist_ok=True)
        (DOCS_STATIC / png.name).write_bytes(png.read_bytes())
    out.write_text(output.report(fits, runs, png))
    print(f"wrote {out}, {png}, {json_path.name} and {npz_path.name} in {total / 60:.1f} min")


if __name__ == "__main__":
    main()
