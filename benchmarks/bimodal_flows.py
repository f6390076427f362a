r"""Normalizing-flow guides on the talk's bimodal target, under four divergences.

The target is the talk's prior :math:`P = \tfrac12 N(-7, 1.4) + \tfrac12 N(7, 1.4)` (variances),
a Pyro model with one ``MixtureSameFamily`` site and no observations. Each guide is built from
Pyro's own transforms:

* ``spline``: ``AutoNormalizingFlow`` with a fixed widening ``AffineTransform(0, 4)`` and a
  rational-quadratic ``Spline`` (16 bins, bound 12, initialized at the identity by
  :func:`pyrodiv.inference.flow_guide.identity_spline`), so :math:`Q` starts as :math:`N(0, 16)`
  and the spline reaches both modes;
* ``iaf``: ``AutoIAFNormal`` (two affine autoregressive layers). In one dimension an
  autoregressive network has no inputs to condition on, so each layer is a learned affine map
  and the guide is a Gaussian: it is the Gaussian baseline;
* ``planar``: ``AutoNormalizingFlow`` with eight ``Planar`` layers on :math:`N(0, 1)`;
* ``radial``: ``AutoNormalizingFlow`` with eight ``Radial`` layers on :math:`N(0, 1)`.

Each is trained with ``pyrodiv.ForwardKL``, ``pyrodiv.ReverseKL``, ``pyrodiv.JensenShannon`` and
``pyrodiv.FDivergence("squared_hellinger")`` (64 vectorized particles, 2000 steps of
ClippedAdam, seeds 0-2). Forward KL and
Jensen-Shannon on a prior target evaluate :math:`\log q` at :math:`P`'s draws, which needs the
flow's inverse: planar and radial layers have none in Pyro, so those pairs are reported as not
trainable.

The fitted :math:`Q` is scored exactly, by quadrature on a fine grid of the real line
(the unconstrained space is the real line here):

.. math::

    \mathrm{KL}(P\|Q) = \int p\,(\log p - \log q)\,dx, \qquad
    \mathrm{KL}(Q\|P) = \int q\,(\log q - \log p)\,dx,

with :math:`\log q` from the guide's ``get_posterior().log_prob`` on the grid, or, for the
layers without an inverse, from :math:`\log q(x) = \log N(u; 0, 1) - \log|T'(u)|` at
:math:`u = T^{-1}(x)` found by bisection (every layer here is monotone in one dimension).

Run (about 5.5 minutes; ``--quick``, one seed of 300 steps, takes about a minute)::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bimodal_flows.py [--quick]
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import AffineTransform, ComposeTransformModule, Planar, Radial
from pyro.infer import SVI
from pyro.infer.autoguide import AutoIAFNormal, AutoNormalizingFlow
from torch.distributions import constraints

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import BIMODAL_LOC, BIMODAL_VAR, arguments, command_line  # noqa: E402

import pyrodiv  # noqa: E402
from pyrodiv.inference.flow_guide import identity_spline  # noqa: E402

#: Quadrature grid: [-GRID_HALF_WIDTH, GRID_HALF_WIDTH] with GRID_POINTS points.
GRID_HALF_WIDTH = 30.0
GRID_POINTS = 24001
#: A mode is "covered" by the mass of Q within this distance of it.
MODE_RADIUS = 2.0
#: A fit "covers both modes" when Q has at least this mass near each (P has 0.455; the
#: broad Gaussian N(0, 50.4) has 0.138, which does not count).
COVERED = 0.2


class RealMixture(dist.MixtureSameFamily):
    """``MixtureSameFamily`` whose support is stated as ``real`` (torch's mixture constraint
    has no bijection, which autoguides need)."""

    support = constraints.real


def target(dtype=torch.float64) -> RealMixture:
    r""":math:`\tfrac12 N(-7, 1.4) + \tfrac12 N(7, 1.4)`."""
    loc = torch.tensor([-BIMODAL_LOC, BIMODAL_LOC], dtype=dtype)
    scale = torch.full((2,), BIMODAL_VAR, dtype=dtype).sqrt()
    return RealMixture(dist.Categorical(torch.ones(2, dtype=dtype)), dist.Normal(loc, scale))


def model():
    """The prior target: one latent site ``"x"`` drawn from :func:`target`."""
    return pyro.sample("x", target())


def spline_guide(count_bins: int = 16, bound: float = 12.0, widen: float = 4.0):
    """``AutoNormalizingFlow``: fixed ``AffineTransform(0, widen)``, then an identity spline."""

    def init(dim):
        return ComposeTransformModule(
            [AffineTransform(0.0, widen), identity_spline(dim, count_bins, bound)]
        )

    return AutoNormalizingFlow(model, init)


def planar_guide(layers: int = 8):
    """``AutoNormalizingFlow`` with ``layers`` ``Planar`` transforms."""
    return AutoNormalizingFlow(
        model, lambda d: ComposeTransformModule([Planar(d) for _ in range(layers)])
    )


def radial_guide(layers: int = 8):
    """``AutoNormalizingFlow`` with ``layers`` ``Radial`` transforms."""
    return AutoNormalizingFlow(
        model, lambda d: ComposeTransformModule([Radial(d) for _ in range(layers)])
    )


def iaf_guide():
    """``AutoIAFNormal`` with two layers (a Gaussian in one dimension)."""
    return AutoIAFNormal(model, hidden_dim=[16], num_transforms=2)


FLOWS = {
    "spline": spline_guide,
    "iaf": iaf_guide,
    "planar": planar_guide,
    "radial": radial_guide,
}

DIVERGENCES = {
    "forward KL": lambda **o: pyrodiv.ForwardKL(**o),
    "reverse KL": lambda **o: pyrodiv.ReverseKL(**o),
    "JSD": lambda **o: pyrodiv.JensenShannon(**o),
    "squared Hellinger": lambda **o: pyrodiv.FDivergence("squared_hellinger", **o),
}


def grid(guide=None) -> torch.Tensor:
    """The quadrature grid (float64): :data:`GRID_POINTS` points on
    :math:`[-30, 30]`, widened at the same spacing to 10 beyond 4000 draws of ``guide``'s
    :math:`Q` (a fit that ran away from :math:`P` is still scored on all of its mass)."""
    lo, hi = -GRID_HALF_WIDTH, GRID_HALF_WIDTH
    if guide is not None:
        with torch.no_grad():
            draws = guide.get_posterior().sample((4000,))
        lo = min(lo, float(draws.min()) - 10.0)
        hi = max(hi, float(draws.max()) + 10.0)
    step = 2 * GRID_HALF_WIDTH / (GRID_POINTS - 1)
    return torch.linspace(lo, hi, round((hi - lo) / step) + 1, dtype=torch.float64)


def _bisect(transform, x: torch.Tensor, lo: float = -60.0, hi: float = 60.0, iters: int = 90):
    """:math:`u` with :math:`T(u) = x` for a monotone non-decreasing 1-D ``transform``."""
    low = torch.full_like(x, lo)
    high = torch.full_like(x, hi)
    for _ in range(iters):
        mid = 0.5 * (low + high)
        below = transform(mid.unsqueeze(-1)).squeeze(-1) < x
        low = torch.where(below, mid, low)
        high = torch.where(below, high, mid)
    return 0.5 * (low + high)


@torch.no_grad()
def grid_log_q(guide, x: torch.Tensor) -> torch.Tensor:
    r""":math:`\log q(x)` of a 1-D flow guide on the points ``x``: the posterior's own
    ``log_prob`` where the flow has an inverse, else change of variables at the bisected
    :math:`u = T^{-1}(x)`."""
    posterior = guide.get_posterior()
    try:
        return posterior.log_prob(x.unsqueeze(-1))
    except (KeyError, NotImplementedError):
        pass
    transform = dist.transforms.ComposeTransform(posterior.transforms)
    u = _bisect(transform, x).unsqueeze(-1)
    y = transform(u)
    log_det = transform.log_abs_det_jacobian(u, y)
    return posterior.base_dist.log_prob(u) - log_det.reshape(posterior.base_dist.log_prob(u).shape)


def quadrature(guide) -> dict:
    """Exact scores of a fitted 1-D guide against :func:`target`, by the trapezoid rule:
    ``forward_kl`` KL(P||Q), ``reverse_kl`` KL(Q||P), ``mass_left``/``mass_right`` (Q's mass
    within :data:`MODE_RADIUS` of -7 and +7) and ``mass`` (Q's mass on the grid)."""
    x = grid(guide)
    dx = float(x[1] - x[0])
    log_p = target().log_prob(x)
    log_q = grid_log_q(guide, x)
    p, q = log_p.exp(), log_q.exp()

    def integral(values):
        return float(torch.trapezoid(values, dx=dx))

    def near(center):
        local = torch.linspace(center - MODE_RADIUS, center + MODE_RADIUS, 4001, dtype=x.dtype)
        return float(torch.trapezoid(grid_log_q(guide, local).exp(), local))

    forward = integral(torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)))
    reverse = integral(torch.where(q > 0, q * (log_q - log_p), torch.zeros_like(q)))
    return {
        "forward_kl": forward,
        "reverse_kl": reverse,
        "mass_left": near(-BIMODAL_LOC),
        "mass_right": near(BIMODAL_LOC),
        "mass": integral(q),
    }


def fit(
    flow: str, divergence: str, steps: int, lr: float = 0.03, particles: int = 64, seed: int = 0
):
    """Train ``FLOWS[flow]`` with ``DIVERGENCES[divergence]`` for ``steps`` Adam steps and
    score it by :func:`quadrature`. Returns ``(guide, row)``; ``row["error"]`` says why a pair
    cannot be trained (then the guide is ``None``)."""
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    guide = FLOWS[flow]()
    loss = DIVERGENCES[divergence](
        num_particles=particles, vectorize_particles=True, max_plate_nesting=0
    )
    svi = SVI(model, guide, pyro.optim.ClippedAdam({"lr": lr, "lrd": 0.1 ** (1 / steps)}), loss)
    row = {"flow": flow, "divergence": divergence, "steps": steps}
    start = time.perf_counter()
    try:
        for _ in range(steps):
            svi.step()
    except (KeyError, NotImplementedError, ValueError) as error:
        if "inverse" not in str(error) and not isinstance(error, KeyError):
            raise
        row["error"] = (
            f"needs log q at P's draws, and the flow has no inverse ({type(error).__name__})"
        )
        row["seconds"] = time.perf_counter() - start
        return None, row
    row["seconds"] = time.perf_counter() - start
    row.update(quadrature(guide))
    return guide, row


def figure(fits: dict, path: Path) -> None:
    """One panel per flow: P's density against each fitted Q."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = grid()
    keep = x.abs() <= 13
    xs = x[keep].numpy()
    p = target().log_prob(x[keep]).exp().numpy()
    fig, axes = plt.subplots(1, len(FLOWS), figsize=(4.2 * len(FLOWS), 3.4), sharey=True)
    for ax, flow in zip(axes, FLOWS, strict=True):
        ax.fill_between(xs, p, color="0.85", label="P")
        for divergence in DIVERGENCES:
            guide = fits.get((flow, divergence))
            if guide is None:
                ax.plot([], [], linestyle=":", label=f"{divergence}: not trainable")
                continue
            q = grid_log_q(guide, x[keep]).exp().numpy()
            ax.plot(xs, q, label=divergence)
        ax.set_title(flow)
        ax.set_xlabel("x")
        ax.legend(fontsize=7, loc="upper center")
    axes[0].set_ylabel("density")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cell(row: dict, key: str, digits: int = 3) -> str:
    return "-" if key not in row else f"{row[key]:.{digits}f}"


def covers_both(row: dict) -> bool:
    """Whether a fit puts at least :data:`COVERED` of its mass near each mode."""
    return min(row["mass_left"], row["mass_right"]) >= COVERED


def table(rows: list[dict]) -> str:
    """The results as a markdown table: seed 0's scores, and over all seeds the number of fits
    that cover both modes and the range of the two KLs."""
    lines = [
        "| flow | divergence | KL(P‖Q) nats | KL(Q‖P) nats "
        "| Q mass near −7 | Q mass near +7 | seconds | both modes (seeds) "
        "| KL(P‖Q) over seeds | KL(Q‖P) over seeds |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(
                f"| {row['flow']} | {row['divergence']} | not trainable: {row['error']} "
                f"| | | | {row['seconds']:.1f} | | | |"
            )
            continue
        runs = row["seeds"]
        both = sum(covers_both(r) for r in runs)
        fwd = [r["forward_kl"] for r in runs]
        rev = [r["reverse_kl"] for r in runs]
        lines.append(
            f"| {row['flow']} | {row['divergence']} | {_cell(row, 'forward_kl', 4)} "
            f"| {_cell(row, 'reverse_kl', 4)} | {_cell(row, 'mass_left')} "
            f"| {_cell(row, 'mass_right')} | {row['seconds']:.1f} | {both}/{len(runs)} "
            f"| {min(fwd):.3f}–{max(fwd):.3f} | {min(rev):.3f}–{max(rev):.3f}"
            f"{' †' if any(abs(r['mass'] - 1) > 1e-3 for r in runs) else ''} |"
        )
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = arguments(__doc__, "bimodal_flows.md", budget=0.0)
    parser.add_argument("--steps", type=int, default=None, help="Adam steps per fit")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per pair")
    args = parser.parse_args(argv)
    steps = args.steps or (300 if args.quick else 2000)
    seeds = args.seeds or (1 if args.quick else 3)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    pyro.enable_validation(False)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows, fits = [], {}
    total = time.perf_counter()
    for flow in FLOWS:
        for divergence in DIVERGENCES:
            guide, row = fit(flow, divergence, steps)
            fits[(flow, divergence)] = guide
            if "error" not in row:
                row["seeds"] = [row] + [
                    fit(flow, divergence, steps, seed=seed)[1] for seed in range(1, seeds)
                ]
            rows.append(row)
            print(
                flow,
                divergence,
                {k: v for k, v in row.items() if k not in ("flow", "divergence", "seeds")},
                flush=True,
            )
    total = time.perf_counter() - total
    png = out.with_suffix(".png")
    figure(fits, png)
    machine = (
        f"{platform.machine()}, {platform.processor() or 'cpu'}, Python "
        f"{platform.python_version()}, torch {torch.__version__}, pyro {pyro.__version__}, "
        f"one torch thread"
    )
    text = f"""# Normalizing flows on the talk's bimodal target

Command: `{command_line()}` (run as `OMP_NUM_THREADS=1 nice -n 10`).

Machine: {machine}, a shared 2-core machine (the seconds include contention). Total
{total:.0f} s.

Target: the talk's prior $P = \\tfrac12 N(-7, 1.4) + \\tfrac12 N(7, 1.4)$ (variances), a Pyro model
with one `MixtureSameFamily` site. Each fit: {steps} steps of `ClippedAdam` (lr 0.03 decaying to
0.003), 64 vectorized particles. The first columns are seed 0 (its seconds; the figure is
seed 0 too); the last three summarize seeds 0 to {seeds - 1}: how many fits put at least
{COVERED:g} of Q's mass near each mode, and the range of each KL. KL(P‖Q) and KL(Q‖P) are
exact, by the trapezoid rule on
{GRID_POINTS} points of $[-{GRID_HALF_WIDTH:g}, {GRID_HALF_WIDTH:g}]$ with $\\log q$ from the
guide's `get_posterior()`; "mass near ±7" is Q's mass within ±{MODE_RADIUS:g} of each mode (P has
0.455 near each).

Flows (see `benchmarks/bimodal_flows.py`): `spline` is `AutoNormalizingFlow` with a fixed
`AffineTransform(0, 4)` and an identity-initialized rational-quadratic `Spline` (16 bins, bound
12); `iaf` is `AutoIAFNormal` (two layers; in one dimension each autoregressive layer is an affine
map, so this guide is a Gaussian); `planar` and `radial` are `AutoNormalizingFlow` with eight
`Planar` or `Radial` layers. Forward KL and JSD on a prior target evaluate $\\log q$ at P's draws,
which needs the flow's inverse; Pyro's `Planar` and `Radial` have none.

{table(rows)}

† Q's mass on the quadrature grid is more than 0.001 away from 1 in some seed (none when absent).

![P against each fitted Q]({png.name})
"""
    out.write_text(text)
    print(f"wrote {out} and {png}")
    return rows


if __name__ == "__main__":
    main()
