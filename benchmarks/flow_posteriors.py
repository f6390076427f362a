r"""The flow guide against the whitened Gaussian on posteriordb posteriors with curved geometry.

For each model and divergence, ``approximate(guide="auto")`` and ``approximate(guide="flow")``
(the same pipeline, then ``flow_steps`` of spline layers started at the identity), 1000 guide
draws each, scored against posteriordb's reference draws with
:func:`pyrodiv.compare_posteriors`: the worst-variable W1 and the sd-ratio range in reference
sds, the fit's PSIS k-hat and its wall time. Writes ``flow_posteriors.md`` to ``--out``::

    python benchmarks/flow_posteriors.py [--models eight_schools,gp_pois_regr]
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings
from pathlib import Path

import torch

import pyrodiv
from pyrodiv.inference.approximate import approximate
from pyrodiv.inference.output import num, table
from pyrodiv.zoo.comparison import (
    REFERENCE_DRAWS_PER_CHAIN,
    _posteriordb_idata,
    resolve_model,
    summarize_by_method,
)

OUT = Path(__file__).resolve().parent / "results"


def run(models, divergences, posteriordb=None) -> list[list]:
    rows = []
    for name in models:
        entry = resolve_model(name)
        kwargs = entry.kwargs(posteriordb, torch.float64)
        reference = _posteriordb_idata(
            entry, entry.model, kwargs, posteriordb, REFERENCE_DRAWS_PER_CHAIN
        )
        for divergence in divergences:
            idatas, fits = {"posteriordb": reference}, {}
            for guide in ("auto", "flow"):
                began = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fit = approximate(
                        entry.model, divergence=divergence, guide=guide, model_kwargs=kwargs,
                        progress=False,
                    )  # fmt: skip
                    idatas[guide] = fit.to_inference_data(1000)
                fits[guide] = (fit.khat, time.perf_counter() - began)
            summary = summarize_by_method(
                pyrodiv.compare_posteriors(idatas, reference="posteriordb")
            ).set_index("method")
            for guide in ("auto", "flow"):
                s = summary.loc[guide]
                khat, seconds = fits[guide]
                rows.append(
                    [entry.name, divergence, guide, num(s["w1_max"], 3),
                     f"{num(s['sd_ratio_min'], 2)} / {num(s['sd_ratio_max'], 2)}",
                     num(khat, 2), num(seconds, 1)]
                )  # fmt: skip
                print(" | ".join(str(c) for c in rows[-1]), flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="eight_schools,gp_pois_regr")
    parser.add_argument("--divergences", default="reverse_kl,forward_kl")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--posteriordb", default=None)
    args = parser.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    models, divergences = args.models.split(","), args.divergences.split(",")
    rows = run(models, divergences, args.posteriordb)
    header = ["model", "divergence", "guide", "W1 max", "sd ratio min / max", "k-hat", "s"]
    text = (
        "# The flow guide against the Gaussian on posteriordb posteriors\n\n"
        f"Regenerate: `python benchmarks/flow_posteriors.py --models {args.models} "
        f"--divergences {args.divergences}`\n\n"
        "Default settings of `approximate` (`flow_steps` 2000), seed 0, float64, one torch "
        f"thread ({platform.machine()}, a 2-core machine shared with other work: times are "
        "rough). 1000 guide draws per fit against posteriordb's reference draws; W1 and sd "
        "ratios in reference sds over the scalar variables.\n\n" + table(header, rows) + "\n"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "flow_posteriors.md").write_text(text)
    print(f"wrote {out / 'flow_posteriors.md'}")


if __name__ == "__main__":
    main()
