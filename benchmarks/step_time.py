r"""SVI step time of each pyrodiv loss against Pyro's own losses, interleaved in one process.

One step is ``loss_and_grads`` plus an Adam step, with vectorized particles (1, 64 and 1024)
and an ``AutoNormal`` guide (a learnable Normal on the bimodal target, whose mixture support
``AutoNormal`` cannot transform), on three targets:

* ``bimodal``: the talk's prior target, :math:`\tfrac12 N(-7, 1.4) + \tfrac12 N(7, 1.4)`, a
  ``MixtureSameFamily`` site (so ``CrossEntropy`` applies);
* ``regression``: Bayesian linear regression, 10 features, N = 1000 (posterior target);
* ``eight_schools``: ``pyrodiv.zoo``'s ``eight_schools_noncentered`` (posterior target).

Baselines: ``Trace_ELBO`` (the reference of every ratio), ``RenyiELBO(alpha=0.5)``,
``TraceTailAdaptive_ELBO`` (more than one particle only) and ``JitTrace_ELBO``; three pyrodiv
losses are also timed compiled by :func:`pyrodiv.jit.jit` (``(jit)``). On the regression
there is also a hand-written pure-torch negative ELBO (reparameterized mean-field Normal,
closed-form log-densities, ``torch.optim.Adam``): the floor with no Pyro overhead. Its value
is checked against ``Trace_ELBO`` at the same guide parameters before timing.

When NumPyro is installed (the ``numpyro`` extra) every group also times NumPyro's jitted
``Trace_ELBO`` step on the same model (:mod:`numpyro_steps`), and every loss gets a ratio to
it; without NumPyro those rows are skipped with a printed note (``--no-numpyro`` skips them
too). Four losses are also timed through the compiled path,
``pyrodiv.divergences.compiled.compile`` (``(compiled)``; where it falls back, the results
say so), and again with ``pyrodiv.FusedAdam`` (one torch optimizer over all the parameters)
in place of Pyro's per-parameter Adam (``(compiled, fused Adam)``). A last group splits
Jensen-Shannon's step on the prior target into its program runs.

Ratios are medians of per-round paired ratios, with a distribution-free 95% interval
(:mod:`common`). Each group also times a second, independent ``Trace_ELBO`` (an A/A control):
its ratio, ideally 1, shows how far the load of the machine moved that group.

Writes ``benchmarks/results/step_time.md``::

    python benchmarks/step_time.py            # full run, a few minutes
    python benchmarks/step_time.py --quick    # seconds-long smoke run
"""

from __future__ import annotations

import math
import os
import platform
import warnings

import numpyro_steps
import pyro
import torch
import torch.nn.functional as F
from common import (
    arguments,
    interleave,
    make_step,
    markdown_table,
    ms,
    problems,
    ratio_summary,
    regression,
    regression_data,
    setup,
    write_results,
)
from pyro import poutine
from pyro.infer import SVI, JitTrace_ELBO, RenyiELBO, Trace_ELBO, TraceTailAdaptive_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.infer.enum import get_importance_trace

import pyrodiv
from pyrodiv.divergences.jit import jit
from pyrodiv.divergences.traces import Order

try:  # the compiled path (an opt-in lowering of the SVI loop); rows skipped without it
    from pyrodiv.divergences.compiled import compile as compile_loss
except ImportError:
    compile_loss = None

PARTICLES = (1, 64, 1024)
BASE = "Trace_ELBO"
FLOOR = "torch floor"
#: A second, independent Trace_ELBO: its ratio to the first shows the noise of a group.
CONTROL = "Trace_ELBO (A/A control)"
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


#: The pyrodiv losses of every table, by name.
OURS = {
    "ReverseKL": pyrodiv.ReverseKL,
    "ForwardKL": pyrodiv.ForwardKL,
    "JensenShannon": pyrodiv.JensenShannon,
    "FDivergence(squared_hellinger)": lambda **kw: pyrodiv.FDivergence("squared_hellinger", **kw),
    "FDivergence(amari_alpha, 0.5)": lambda **kw: pyrodiv.FDivergence(
        "amari_alpha", alpha=0.5, **kw
    ),
}
#: Those also timed compiled by :func:`pyrodiv.jit.jit`.
COMPILED = ("ReverseKL", "ForwardKL", "FDivergence(squared_hellinger)")
#: Those also timed through ``pyrodiv.divergences.compiled.compile`` (``(compiled)``).
LOWERED = ("ReverseKL", "ForwardKL", "JensenShannon", "FDivergence(squared_hellinger)")
#: NumPyro's jitted ``Trace_ELBO`` step (:mod:`numpyro_steps`), when NumPyro is installed.
NUMPYRO = "NumPyro Trace_ELBO (jit)"


def fused_step(problem, loss, tag: str, lr: float = 0.01):
    """:func:`common.make_step` with ``pyrodiv.FusedAdam`` in place of ``pyro.optim.Adam``."""
    if problem.guide is not None:
        guide = problem.guide(tag)
    else:
        guide = AutoNormal(problem.model)
        guide._pyro_name = f"{tag}.AutoNormal"
    svi = SVI(problem.model, guide, pyrodiv.FusedAdam({"lr": lr}), loss=loss)
    args, kwargs = problem.args, problem.call_kwargs()
    return lambda: svi.step(*args, **kwargs)


def losses(num_particles: int, prior: bool) -> dict[str, object]:
    """Every loss that applies to a target of this kind at this number of particles."""
    kw = {"num_particles": num_particles, "vectorize_particles": True}
    out = {
        BASE: Trace_ELBO(**kw),
        CONTROL: Trace_ELBO(**kw),
        "RenyiELBO(0.5)": RenyiELBO(alpha=0.5, **kw),
    }
    if num_particles > 1:
        out["TraceTailAdaptive_ELBO"] = TraceTailAdaptive_ELBO(**kw)
    out.update({name: make(**kw) for name, make in OURS.items()})
    if prior:
        out["CrossEntropy"] = pyrodiv.CrossEntropy(**kw)
    out["JitTrace_ELBO"] = JitTrace_ELBO(**kw)
    out.update({f"{name} (jit)": jit(OURS[name](**kw)) for name in COMPILED})
    if compile_loss is not None:
        out.update({f"{name} (compiled)": compile_loss(OURS[name](**kw)) for name in LOWERED})
    return out


# ---- the pure-torch floor ----------------------------------------------------------------


class TorchFloor:
    r"""The regression's negative ELBO in plain torch, for a mean-field Normal on
    :math:`(\beta, \log\sigma)` parameterized as ``AutoNormal`` is (scale = softplus):

    .. math::

        -\mathrm{ELBO} = \frac1K\sum_k \log q(\beta_k, u_k) - u_k
            - \log p(\beta_k) - \log p(\sigma_k) - \sum_n \log N(y_n; x_n^\top\beta_k,
            \sigma_k^2),\qquad \sigma_k = e^{u_k},

    with :math:`(\beta_k, u_k) = \mathrm{loc} + \mathrm{scale}\,\varepsilon_k` and the
    Jacobian :math:`-u_k` of :math:`\sigma = e^u`, exactly the density ``AutoNormal`` gives.

    Example::

        >>> X, y = regression_data()
        >>> floor = TorchFloor(X, y, num_particles=64)
        >>> loss = floor.step()
    """

    def __init__(self, X, y, num_particles: int, lr: float = 0.01, init_scale: float = 0.1):
        self.X, self.y, self.num_particles = X, y, num_particles
        d = X.shape[-1] + 1
        self.loc = torch.zeros(d, requires_grad=True)
        raw = math.log(math.expm1(init_scale))  # softplus^{-1}
        self.raw_scale = torch.full((d,), raw, requires_grad=True)
        self.optim = torch.optim.Adam([self.loc, self.raw_scale], lr=lr)

    def particle_losses(self) -> torch.Tensor:
        """Per-particle :math:`\\log q - \\log p` (shape ``(K,)``)."""
        scale = F.softplus(self.raw_scale)
        eps = torch.randn(self.num_particles, self.loc.shape[0])
        z = self.loc + scale * eps
        beta, u = z[:, :-1], z[:, -1]
        sigma = u.exp()
        log_q = (-0.5 * eps.square() - scale.log() - HALF_LOG_2PI).sum(-1) - u
        log_prior = (-0.5 * beta.square() - HALF_LOG_2PI).sum(-1)
        log_prior = log_prior + math.log(2.0) - HALF_LOG_2PI - 0.5 * sigma.square()
        mean = (self.X * beta[:, None, :]).sum(-1)
        resid = (self.y - mean) / sigma[:, None]
        n = self.y.shape[0]
        log_lik = -0.5 * resid.square().sum(-1) - n * (u + HALF_LOG_2PI)
        return log_q - log_prior - log_lik

    def step(self) -> float:
        """One Adam step on the mean of :meth:`particle_losses`; returns the loss."""
        self.optim.zero_grad()
        loss = self.particle_losses().mean()
        loss.backward()
        self.optim.step()
        return float(loss.detach())


def check_floor(num_particles: int = 4096) -> str:
    """Compare the floor's negative ELBO with ``Trace_ELBO`` at ``AutoNormal``'s initial
    parameters (moved to a non-trivial point); raise if they differ by more than 4 standard
    errors of the difference (both are means of ``num_particles`` independent terms)."""
    X, y = regression_data()
    pyro.clear_param_store()
    guide = AutoNormal(regression, init_scale=0.1)
    guide(X, y)
    floor = TorchFloor(X, y, num_particles)
    with torch.no_grad():
        loc = torch.linspace(-1.0, 1.0, X.shape[-1] + 1) * 0.5
        floor.loc.copy_(loc)
        guide.locs.beta = loc[:-1].clone()
        guide.locs.sigma = loc[-1:].clone().squeeze(-1)
        values = floor.particle_losses()
        elbo = Trace_ELBO(num_particles=num_particles, vectorize_particles=True)
        pyro_value = elbo.loss(regression, guide, X, y)
    floor_value = float(values.mean())
    se = float(values.std()) * math.sqrt(2.0 / num_particles)
    gap = abs(floor_value - pyro_value) / se
    pyro.clear_param_store()
    if gap > 4.0:
        raise RuntimeError(
            f"torch floor {floor_value:.2f} and Trace_ELBO {pyro_value:.2f} differ by "
            f"{gap:.1f} standard errors: the floor does not compute the same loss"
        )
    return (
        f"Floor check ({num_particles} particles, AutoNormal parameters): torch floor "
        f"{floor_value:.2f}, Trace_ELBO {pyro_value:.2f}, difference {gap:.1f} standard errors "
        "(tolerance 4)."
    )


# ---- the benchmark -----------------------------------------------------------------------


#: The compiled path's fall-back notes seen while timing -> the groups they came from.
FALLBACKS: dict[str, set] = {}


def notes() -> list[str]:
    """What this run could not time, one line each (printed and written)."""
    out = []
    ok, why = numpyro_steps.available()
    if not ok:
        out.append(why)
    if compile_loss is None:
        out.append(
            "'(compiled)' rows skipped: pyrodiv.divergences.compiled is not in this checkout."
        )
    return out


def run(args):
    """Check the floor, then time every loss on every target and particle count."""
    setup(0)
    check = check_floor(512 if args.quick else 4096)
    print(check)
    has_numpyro = numpyro_steps.available()[0] and not args.no_numpyro
    if has_numpyro:
        numpyro_steps.single_thread()
    for note in notes():
        print(note)
    budget = 0.3 if args.quick else args.budget
    particles = (1, 64) if args.quick else PARTICLES
    results = {}  # (problem, K) -> timings
    for key, problem in problems().items():
        for k in particles:
            setup(0)
            steps = {
                name: make_step(problem, loss, f"{name}.{k}")
                for name, loss in losses(k, problem.prior).items()
            }
            if compile_loss is not None:
                kw = {"num_particles": k, "vectorize_particles": True}
                for name in LOWERED:
                    fused = f"{name} (compiled, fused Adam)"
                    loss = compile_loss(OURS[name](**kw))
                    steps[fused] = fused_step(problem, loss, f"{fused}.{k}")
            if key == "regression":
                floor = TorchFloor(*problem.args, num_particles=k)
                steps[FLOOR] = floor.step
            if has_numpyro:
                steps[NUMPYRO] = numpyro_steps.svi_step(key, k)
            with warnings.catch_warnings(record=True) as caught:  # JitTrace_ELBO's tracer
                warnings.simplefilter("always")
                timings = interleave(steps, budget_s=budget, min_rounds=3 if args.quick else 15)
            for w in caught:  # the compiled path's one note per loss where it falls back
                text = str(w.message)
                if text.startswith("pyrodiv.compile:"):
                    FALLBACKS.setdefault(text, set()).add(f"{key} K={k}")
            results[key, k] = timings
            print(f"\n{problem.name}, {k} particles ({len(timings[BASE])} rounds)")
            for name, t in timings.items():
                print(f"  {name:34s} {ms(t):>9s} ms  x{ratio_summary(timings, name, BASE)}")
    return check, results, particles


def jsd_split(args) -> str:
    """Where Jensen-Shannon's and ForwardKL's time goes on the bimodal prior target at one
    particle: their steps, Jensen-Shannon's two runs (model first: x ~ P, log p and log q
    there; guide first: x ~ Q, log q and log p there), against Trace_ELBO's step and its
    one guide-first run (Pyro's ``get_importance_trace``), all interleaved."""
    setup(0)
    problem = problems(("bimodal",))["bimodal"]
    model, guide = problem.model, problem.guide("split")
    kw = {"num_particles": 1, "vectorize_particles": True}
    jsd = pyrodiv.JensenShannon(**kw)
    jsd.loss(model, guide)  # plate-nesting guess, target kind
    steps = {
        f"{BASE} step": make_step(problem, Trace_ELBO(**kw), "split.elbo"),
        "JensenShannon step": make_step(problem, pyrodiv.JensenShannon(**kw), "split.jsd"),
        "ForwardKL step (run 1 only)": make_step(problem, pyrodiv.ForwardKL(**kw), "split.fkl"),
        "the model traced alone (x ~ P, no log-densities)": lambda: poutine.trace(
            model
        ).get_trace(),
        "the guide traced alone (x ~ Q, no log-densities)": lambda: poutine.trace(
            guide
        ).get_trace(),
        f"{BASE}'s run: x ~ Q, log q, log p at x (get_importance_trace)": lambda: (
            get_importance_trace("flat", math.inf, model, guide, (), {})
        ),
        "JensenShannon's run 1: x ~ P, log p, log q at x (model first)": lambda: jsd.run(
            model, guide, (), {}, Order.MODEL_FIRST
        ),
        "JensenShannon's run 2: x ~ Q, log q, log p at x (guide first)": lambda: jsd.run(
            model, guide, (), {}, Order.GUIDE_FIRST
        ),
    }
    budget = 0.3 if args.quick else args.budget
    t = interleave(steps, budget_s=budget, min_rounds=3 if args.quick else 15)
    base = f"{BASE} step"
    rows = [[name, ms(v), str(ratio_summary(t, name, base))] for name, v in t.items()]
    return (
        "## Jensen-Shannon on a prior target: twice Trace_ELBO's program runs\n\n"
        "On a prior target the two-sample estimate needs draws from both P and Q and both "
        "densities at each: the model runs to draw x ~ P and the guide is evaluated there, "
        "then the guide draws x ~ Q and the model is evaluated there, four program runs where "
        "Trace_ELBO has two (guide, then model replayed). On the 1-D bimodal target at K=1 "
        "the programs are the step, so the step costs about twice Trace_ELBO's; the ratio "
        "falls to 1.0-1.1 where the tensor work dominates (the regression and eight schools "
        "above). ForwardKL runs only run 1, but drawing from the mixture P (a categorical "
        "draw, then the component) costs more than the guide's one Normal draw, which is "
        f"most of its excess over Trace_ELBO here. Interleaved, {len(t[base])} rounds, ms "
        "per call and paired ratio to Trace_ELBO's step:\n\n"
        + markdown_table(["call", "ms", f"x {base}"], rows)
    )


def verdict(ratio, bound: float) -> str:
    """``met`` / ``NOT met`` when the whole 95% interval is on one side of ``bound``, else
    the median's side, marked as within the noise."""
    if ratio.high <= bound:
        return "met"
    if ratio.low > bound:
        return "NOT met"
    return ("met" if ratio.median <= bound else "not met") + " (interval straddles)"


def _ratio(results, key, k, name, base):
    """The paired ratio of ``name`` to ``base`` in one group, or ``None`` if either is absent."""
    t = results.get((key, k))
    if t is None or name not in t or base not in t:
        return None
    return ratio_summary(t, name, base)


def goals(results, particles) -> str:
    """The speed goals, per pyrodiv loss: uncompiled at most 1.10x Trace_ELBO at equal
    particles on every target; compiled at most 3x NumPyro's jitted step and at most 1.2x the
    torch floor on the regression (1.1x at K >= 1024)."""
    names = [n for n in results[next(iter(results))] if n in OURS or n.endswith(")")]
    names = [n for n in names if n.split(" (")[0] in OURS]
    rows = []
    for name in names:
        ratios = [
            (r, key, k)
            for (key, k) in results
            if (r := _ratio(results, key, k, name, BASE)) is not None
        ]
        worst = max(ratios, key=lambda rkk: rkk[0].median)
        cells = [name, f"{worst[0]} ({worst[1]}, K={worst[2]}) {verdict(worst[0], 1.10)}"]
        r = _ratio(results, "regression", 64, name, NUMPYRO)
        cells.append("-" if r is None else f"{r} {verdict(r, 3.0)}")
        for k in particles:
            r = _ratio(results, "regression", k, name, FLOOR)
            bound = 1.1 if k >= 1024 else 1.2
            cells.append("-" if r is None else f"{r} {verdict(r, bound)} (<= {bound})")
        rows.append(cells)
    header = [
        "loss",
        "worst x Trace_ELBO, any target and K (<= 1.10, uncompiled goal)",
        "x NumPyro Trace_ELBO, regression K=64 (<= 3, compiled goal)",
    ] + [f"x torch floor, regression K={k} (compiled goal)" for k in particles]
    return markdown_table(header, rows)


def machine() -> str:
    """The CPU, its core count and the optional packages' versions, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            names = [line.split(":", 1)[1].strip() for line in info if "model name" in line]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    extra = numpyro_steps.versions() if numpyro_steps.available()[0] else "no NumPyro"
    return (
        f"Machine: {cpu}, {os.cpu_count()} cores shared with other jobs while this ran; {extra}."
    )


def report(check, results, particles, out, split: str = ""):
    """Print the tables and write them, with the goals, to ``out``."""
    sections = [
        machine(),
        "One SVI step = `loss_and_grads` + Adam step, vectorized particles K, an `AutoNormal` "
        "guide (a learnable Normal on the bimodal target). Cells: median ms per step; "
        "ratio = median of per-round paired ratios [95% interval]. Each group of a table (one "
        "target, one K) was timed interleaved in one process, so the ratios are paired "
        "(measured on the same load); the machine is shared with other jobs, so the absolute "
        "ms move between groups and runs, the ratios much less. "
        f"'{CONTROL}' is a second Trace_ELBO with its own guide, so its ratio (ideally 1) "
        f"shows how far the load on the machine moved that group's ratios. '{NUMPYRO}' is "
        "NumPyro's `jax.jit(svi.update)` with `Trace_ELBO` (vectorized particles) and Adam on "
        "the same model, data, guide family and float32, XLA on one thread, timed to "
        "`block_until_ready`; its compilation is not timed. '(jit)': `pyrodiv.jit.jit`; "
        "'(compiled)': `pyrodiv.divergences.compiled.compile`; '(compiled, fused Adam)': the "
        "same with `pyrodiv.FusedAdam` (one torch optimizer over all the parameters) in place "
        "of `pyro.optim.Adam`.",
        check,
        "The torch floor computes each particle's regression means by a broadcast product and "
        "sum, as the model is written; a compiled program that records it as a matrix product "
        "can run below it (the '(compiled)' rows at K=1024).",
    ] + notes()
    for key, problem in problems().items():
        names = list(results[key, particles[-1]])  # the largest K runs every loss
        rows = []
        for name in names:
            row = [name]
            for k in particles:
                t = results[key, k].get(name)
                row.append("-" if t is None else ms(t))
            for k in particles:
                r = _ratio(results, key, k, name, BASE)
                row.append("-" if r is None else str(r))
            rows.append(row)
        header = (
            ["loss"]
            + [f"ms, K={k}" for k in particles]
            + [f"x Trace_ELBO, K={k}" for k in particles]
        )
        rounds = ", ".join(f"K={k}: {len(results[key, k][BASE])}" for k in particles)
        text = f"## {problem.name}\n\nRounds: {rounds}.\n\n" + markdown_table(header, rows)
        others = [b for b in (NUMPYRO, FLOOR) if b in results[key, particles[-1]]]
        if others:
            rows = []
            for name in names:
                row = [name]
                for base in others:
                    for k in particles:
                        r = _ratio(results, key, k, name, base)
                        row.append("-" if r is None else str(r))
                rows.append(row)
            header = ["loss"] + [f"x {b}, K={k}" for b in others for k in particles]
            text += (
                f"\n\nThe same steps as ratios to {' and to '.join(others)} (paired, same "
                "rounds):\n\n" + markdown_table(header, rows)
            )
        sections.append(text)
    if FALLBACKS:
        lines = [f"- {text} ({', '.join(sorted(where))})" for text, where in FALLBACKS.items()]
        sections.append(
            "## Where the '(compiled)' rows fell back\n\nThese '(compiled)' rows time the "
            "fall-back the compiled path chose, not a lowered program:\n\n" + "\n".join(lines)
        )
    if split:
        sections.append(split)
    sections.append("## Goals\n\n" + goals(results, particles))
    text = "\n\n".join(sections)
    print("\n" + text)
    path = write_results(out, "Step time of the losses", text)
    print(f"\nwrote {path}")


def main(argv=None):
    parser = arguments(__doc__, "step_time.md", 15.0)
    parser.add_argument(
        "--no-numpyro", action="store_true", help="leave NumPyro out even when installed"
    )
    args = parser.parse_args(argv)
    check, results, particles = run(args)
    split = jsd_split(args)
    print("\n" + split)
    report(check, results, particles, args.out, split)


if __name__ == "__main__":
    main()
