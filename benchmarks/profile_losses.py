r"""Where the pyrodiv losses spend their time, against Pyro's ``Trace_ELBO``.

Three parts, each interleaved in one process with one torch thread (:mod:`common`):

1. **cProfile breakdown** of one SVI step on the 10-D regression (N = 1000, ``AutoNormal``)
   at 64 and 1024 vectorized particles, and on the talk's 1-D bimodal target at one particle
   (where the fixed per-step overhead is everything). Each loss has its own profiler, switched
   on around its own steps only, so the losses share the machine's load. Times are per step
   *under the profiler* (which inflates Python-heavy parts), split into: running the model
   and guide with their log-probs (of which Pyro's validation checks), pyrodiv's structural
   checks, the reduction to per-particle log-densities, the estimator, backward and the
   optimizer.
2. **Ablations** (plain timing, no profiler): Pyro validation off
   (``pyro.validation_enabled(False)``), ``pyro.infer.JitTrace_ELBO`` against
   ``Trace_ELBO``, and ``torch.compile`` of the pure-torch floor loss
   (:class:`step_time.TorchFloor`), with its compile time.
3. **Before/after** (``--compare LABEL BEFORE AFTER``, repeatable; ``--compare-jit`` compiles
   the AFTER losses with its ``pyrodiv.jit.jit``): two copies of the ``pyrodiv`` package (for
   example the current one and one with a proposed patch applied), loaded side by side under
   different names and timed interleaved; ratio = after / before, median of paired ratios.

Writes ``benchmarks/results/profile.md``, keeping the hand-written ``## Findings`` section of an
earlier file as it is::

    python benchmarks/profile_losses.py                 # parts 1 and 2, a few minutes
    python benchmarks/profile_losses.py --quick         # seconds-long smoke run
    python benchmarks/profile_losses.py --compare LABEL /path/before /path/after   # and part 3
"""

from __future__ import annotations

import cProfile
import importlib.util
import pstats
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

import pyro
import torch
from common import (
    arguments,
    interleave,
    make_step,
    markdown_table,
    ms,
    problems,
    ratio_summary,
    setup,
)
from common import write_results as _write
from pyro.infer import JitTrace_ELBO, Trace_ELBO
from step_time import TorchFloor

import pyrodiv

#: The losses compared with Trace_ELBO, as (name, factory(package, **kw)).
LOSSES = {
    "ReverseKL": lambda pkg, **kw: pkg.ReverseKL(**kw),
    "ForwardKL": lambda pkg, **kw: pkg.ForwardKL(**kw),
    "JensenShannon": lambda pkg, **kw: pkg.JensenShannon(**kw),
    "FDivergence(squared_hellinger)": lambda pkg, **kw: pkg.FDivergence("squared_hellinger", **kw),
    "FDivergence(amari_alpha, 0.5)": lambda pkg, **kw: pkg.FDivergence(
        "amari_alpha", alpha=0.5, **kw
    ),
}
BASE = "Trace_ELBO"

FINDINGS_HEADING = "## Findings"
FINDINGS = f"""{FINDINGS_HEADING}

(Write the reading of the tables here; a re-run keeps this section as it is.)
"""


def kept_findings(path: str | Path) -> str:
    """The findings section of an earlier results file (hand-written, kept across re-runs),
    or the placeholder :data:`FINDINGS`."""
    path = Path(path)
    if path.exists():
        text = path.read_text()
        at = text.find("\n" + FINDINGS_HEADING + "\n")
        if at >= 0:
            return text[at + 1 :].rstrip() + "\n"
    return FINDINGS


# ---- part 1: cProfile breakdown ------------------------------------------------------------

#: Categories of a step: (label, [(path fragment, function name), ...]); cumulative times of
#: the listed functions are added (they do not nest within one category).
TRACE_PYRODIV = [("pyrodiv/divergences/traces.py", "_traces")]
TRACE_PYRO = [("pyro/infer/enum.py", "get_importance_trace")]
CATEGORIES = [
    ("run model and guide, log-probs", None),
    (
        "  of which log_prob, score_parts",
        [
            ("pyro/poutine/trace_struct.py", "compute_log_prob"),
            ("pyro/poutine/trace_struct.py", "compute_score_parts"),
        ],
    ),
    (
        "  of which Pyro validation",
        [
            ("pyro/util.py", "check_model_guide_match"),
            ("pyro/util.py", "check_site_shape"),
            ("torch/distributions/distribution.py", "_validate_sample"),
        ],
    ),
    (
        "  of which pyrodiv point-mass marking",
        [("pyrodiv/divergences/site_checks.py", "mark_point_masses")],
    ),
    (
        "pyrodiv checks (densities, enumeration, target)",
        [
            ("pyrodiv/divergences/site_checks.py", "check_densities"),
            ("pyrodiv/divergences/site_checks.py", "check_enumeration"),
            ("pyrodiv/divergences/loss_base.py", "target_kind"),
            ("pyrodiv/divergences/loss_base.py", "check_target"),
        ],
    ),
    (
        "per-particle log p, log q (pyrodiv) / ELBO sums (Pyro)",
        [
            ("pyrodiv/divergences/densities.py", "trace_log_density"),
            ("pyrodiv/divergences/densities.py", "trace_score"),
            ("pyrodiv/divergences/traces.py", "_stack"),
            ("pyro/infer/trace_elbo.py", "_differentiable_loss_particle"),
        ],
    ),
    ("estimator (pyrodiv)", "estimator"),
    ("finite checks of the estimate", [("pyrodiv/divergences/loss_base.py", "estimate")]),
    ("backward", [("~", "<method 'run_backward' of 'torch._C._EngineBase' objects>")]),
    ("optimizer step", [("pyro/optim/optim.py", "__call__")]),
    (
        "fork_rng, plate-nesting guess (once)",
        [("torch/random.py", "fork_rng"), ("pyro/infer/elbo.py", "_guess_max_plate_nesting")],
    ),
]


def _matches(key, fragment: str, name: str) -> bool:
    path, _, func = key
    return func == name and fragment in path.replace("\\", "/")


def cumulative(stats: dict, pairs) -> float:
    """Total cumulative seconds of the functions named by ``(path fragment, name)`` pairs."""
    return sum(v[3] for k, v in stats.items() for f, n in pairs if _matches(k, f, n))


def estimator_seconds(stats: dict) -> float:
    """Cumulative seconds of ``pyrodiv.estimators`` (and ``losses._report``) functions,
    counting only the calls made from the losses (``pyrodiv/divergences/losses.py``)."""
    total = 0.0
    for (path, _, func), v in stats.items():
        path = path.replace("\\", "/")
        if "pyrodiv/divergences/estimators.py" in path or (
            "pyrodiv/divergences/losses.py" in path and func == "_report"
        ):
            for (cpath, _, _), cv in v[4].items():
                if "pyrodiv/divergences/losses.py" in cpath.replace("\\", "/"):
                    total += cv[3]
    return total


def breakdown(stats: dict, steps: int) -> list[float]:
    """Milliseconds per step in each of :data:`CATEGORIES`."""
    out = []
    for label, pairs in CATEGORIES:
        if pairs is None:
            seconds = cumulative(stats, TRACE_PYRODIV) or cumulative(stats, TRACE_PYRO)
        elif pairs == "estimator":
            seconds = estimator_seconds(stats)
        elif label.startswith("finite checks"):
            # estimate() minus _estimate(): the isfinite check of the value
            seconds = cumulative(stats, pairs) - cumulative(
                stats, [("pyrodiv/divergences/loss_base.py", "_estimate")]
            )
        else:
            seconds = cumulative(stats, pairs)
        out.append(1e3 * seconds / steps)
    return out


def profile_group(problem, k: int, steps: int) -> dict[str, tuple[float, list[float]]]:
    """Per loss: (ms per step unprofiled-equivalent total under cProfile, category ms)."""
    setup(0)
    kw = {"num_particles": k, "vectorize_particles": True}
    fns = {BASE: make_step(problem, Trace_ELBO(**kw), f"{BASE}.{k}")}
    for name, make in LOSSES.items():
        fns[name] = make_step(problem, make(pyrodiv, **kw), f"{name}.{k}")
    for fn in fns.values():  # set-up outside the profile
        fn()
        fn()
    profilers = {name: cProfile.Profile() for name in fns}
    totals = {name: 0.0 for name in fns}
    order = list(fns)
    rng = random.Random(0)
    for _ in range(steps):
        rng.shuffle(order)
        for name in order:
            start = time.perf_counter()
            profilers[name].enable()
            fns[name]()
            profilers[name].disable()
            totals[name] += time.perf_counter() - start
    out = {}
    for name, prof in profilers.items():
        stats = pstats.Stats(prof).stats
        out[name] = (1e3 * totals[name] / steps, breakdown(stats, steps))
    return out


def part_profile(args) -> str:
    probs = problems(("bimodal", "regression"))
    groups = [("bimodal", 1), ("regression", 64), ("regression", 1024)]
    sections = []
    for key, k in groups:
        steps = args.profile_steps if k < 1024 else max(3, args.profile_steps // 8)
        if args.quick:
            steps = 3
        result = profile_group(probs[key], k, steps)
        names = list(result)
        rows = [["total per step (profiled)"] + [f"{result[n][0]:.2f}" for n in names]]
        for i, (label, _) in enumerate(CATEGORIES):
            rows.append([label] + [f"{result[n][1][i]:.2f}" for n in names])
        title = f"### {probs[key].name}, K={k} ({steps} profiled steps each, ms per step)"
        sections.append(title + "\n\n" + markdown_table(["part"] + names, rows))
        print(sections[-1] + "\n")
    return "\n\n".join(sections)


# ---- part 2: ablations -----------------------------------------------------------------------


def without_validation(step):
    def run():
        with pyro.validation_enabled(False):
            return step()

    return run


def part_ablations(args) -> str:
    budget = 0.3 if args.quick else args.budget
    probs = problems(("bimodal", "regression"))
    sections = []
    groups = [("bimodal", 1), ("regression", 64)] + ([] if args.quick else [("regression", 1024)])
    rows = []
    for key, k in groups:
        setup(0)
        kw = {"num_particles": k, "vectorize_particles": True}
        p = probs[key]
        steps = {
            BASE: make_step(p, Trace_ELBO(**kw), "a"),
            f"{BASE}, no validation": without_validation(make_step(p, Trace_ELBO(**kw), "b")),
            "JitTrace_ELBO": make_step(p, JitTrace_ELBO(ignore_jit_warnings=True, **kw), "c"),
            "ReverseKL": make_step(p, pyrodiv.ReverseKL(**kw), "d"),
            "ReverseKL, no validation": without_validation(
                make_step(p, pyrodiv.ReverseKL(**kw), "e")
            ),
            "ForwardKL": make_step(p, pyrodiv.ForwardKL(**kw), "f"),
            "ForwardKL, no validation": without_validation(
                make_step(p, pyrodiv.ForwardKL(**kw), "g")
            ),
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = interleave(steps, budget_s=budget, min_rounds=3 if args.quick else 15)
        for name in steps:
            rows.append([f"{p.name}, K={k}", name, ms(t[name]), str(ratio_summary(t, name, BASE))])
        print(markdown_table(["target", "loss", "ms", "x Trace_ELBO"], rows[-len(steps) :]))
    sections.append(
        "### Validation off and JIT (ratio to Trace_ELBO with validation, paired medians "
        "[95% interval])\n\n" + markdown_table(["target", "loss", "ms", "x Trace_ELBO"], rows)
    )
    sections.append("### torch.compile of the pure-torch floor (regression)\n\n" + _compile(args))
    return "\n\n".join(sections)


def _compile(args) -> str:
    if args.quick:
        return "(skipped with --quick: compiling takes tens of seconds)"
    budget = 0.3 if args.quick else args.budget
    probs = problems(("regression",))
    X, y = probs["regression"].args
    rows = []
    for k in (64,) if args.quick else (64, 1024):
        setup(0)
        eager = TorchFloor(X, y, k)
        compiled = TorchFloor(X, y, k)
        start = time.perf_counter()
        try:
            compiled.particle_losses = torch.compile(compiled.particle_losses)
            compiled.step()
        except Exception as exc:  # no compiler, unsupported platform
            return f"torch.compile unavailable here: {type(exc).__name__}: {exc}"
        compile_s = time.perf_counter() - start
        t = interleave({"eager": eager.step, "compiled": compiled.step}, budget_s=budget)
        ratio = ratio_summary(t, "compiled", "eager")
        steps_to_pay = compile_s / max(
            1e-9, statistics.median(t["eager"]) - statistics.median(t["compiled"])
        )
        pay = f"{steps_to_pay:.0f}" if ratio.median < 1 else "never"
        rows.append([k, ms(t["eager"]), ms(t["compiled"]), str(ratio), f"{compile_s:.1f}", pay])
    return markdown_table(
        ["K", "eager ms", "compiled ms", "compiled / eager", "compile s", "steps to repay"], rows
    )


# ---- part 3: before / after ------------------------------------------------------------------


def load_package(folder: str | Path, alias: str):
    """Import the ``pyrodiv`` package found in ``folder`` under the name ``alias``."""
    init = Path(folder) / "pyrodiv" / "__init__.py"
    if not init.exists():
        raise ValueError(f"--compare: no pyrodiv package in {folder} (expected {init})")
    spec = importlib.util.spec_from_file_location(
        alias, init, submodule_search_locations=[str(init.parent)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    spec.loader.exec_module(module)
    return module


def part_compare(args) -> str:
    """Each ``--compare`` / ``--compare-jit`` pair of packages, timed interleaved with
    Trace_ELBO; with ``--compare-jit`` the losses of AFTER are compiled by its
    ``pyrodiv.jit.jit`` (the first call, which records the graph, is timed apart)."""
    budget = 0.3 if args.quick else args.budget
    probs = problems()
    groups = [("bimodal", 1), ("eight_schools", 1), ("regression", 64)]
    if not args.quick:
        groups += [("regression", 1024)]
    comparisons = [(c, False) for c in args.compare or []]
    comparisons += [(c, True) for c in args.compare_jit or []]
    head = [
        "target",
        "loss",
        "before ms",
        "after ms",
        "after / before",
        "before x Trace_ELBO",
        "after x Trace_ELBO",
    ]
    sections = []
    for index, ((label, before_dir, after_dir), compiled) in enumerate(comparisons):
        before = load_package(before_dir, f"pyrodiv_before{index}")
        after = load_package(after_dir, f"pyrodiv_after{index}")
        if compiled:
            jit = importlib.import_module(f"pyrodiv_after{index}.jit").jit
        rows, first_calls = [], []
        for key, k in groups:
            setup(0)
            kw = {"num_particles": k, "vectorize_particles": True}
            p = probs[key]
            steps = {BASE: make_step(p, Trace_ELBO(**kw), f"{index}.base")}
            for name, make in LOSSES.items():
                loss = make(after, **kw)
                steps[f"{name} before"] = make_step(p, make(before, **kw), f"{index}.b.{name}")
                steps[f"{name} after"] = make_step(
                    p, jit(loss) if compiled else loss, f"{index}.a.{name}"
                )
            if compiled:
                for name in LOSSES:
                    start = time.perf_counter()
                    steps[f"{name} after"]()
                    first_calls.append(
                        [f"{p.name}, K={k}", name, f"{1e3 * (time.perf_counter() - start):.0f}"]
                    )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = interleave(steps, budget_s=budget, min_rounds=3 if args.quick else 15)
            for name in LOSSES:
                b, a = f"{name} before", f"{name} after"
                rows.append(
                    [
                        f"{p.name}, K={k}",
                        name,
                        ms(t[b]),
                        ms(t[a]),
                        str(ratio_summary(t, a, b)),
                        str(ratio_summary(t, b, BASE)),
                        str(ratio_summary(t, a, BASE)),
                    ]
                )
            print(markdown_table(head, rows[-len(LOSSES) :]))
        text = (
            f"### {label}\n\nBefore: `{before_dir}`; after: `{after_dir}`"
            + (", losses compiled with `pyrodiv.jit.jit`" if compiled else "")
            + ". Paired medians [95% interval].\n\n"
            + markdown_table(head, rows)
        )
        if first_calls:
            text += "\n\nFirst call (runs the loss and records its graph), ms:\n\n"
            text += markdown_table(["target", "loss", "first call ms"], first_calls)
        sections.append(text)
    return "\n\n".join(sections)


def main(argv=None):
    parser = arguments(__doc__, "profile.md", 10.0)
    parser.add_argument("--profile-steps", type=int, default=200)
    for flag, what in (
        ("--compare", "folders holding a pyrodiv package each; repeatable"),
        ("--compare-jit", "as --compare, with AFTER's losses compiled by its pyrodiv.jit.jit"),
    ):
        parser.add_argument(
            flag, nargs=3, action="append", metavar=("LABEL", "BEFORE", "AFTER"), help=what
        )
    parser.add_argument(
        "--parts",
        nargs="*",
        default=["profile", "ablations"],
        choices=["profile", "ablations"],
        help="parts 1 and 2 to run, none for only part 3 (part 3 runs when --compare is given)",
    )
    args = parser.parse_args(argv)
    setup(0)
    body = ""
    if "profile" in args.parts:
        body += "## cProfile breakdown\n\n" + part_profile(args)
    if "ablations" in args.parts:
        body += "\n\n## Ablations\n\n" + part_ablations(args)
    if args.compare or args.compare_jit:
        body += "\n\n## Before / after\n\n" + part_compare(args)
    body += "\n\n" + kept_findings(args.out)
    path = _write(args.out, "Profile of the losses", body)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
