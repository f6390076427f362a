r"""The documentation's figures, made by the demo, with a manifest that ties each to its numbers.

``pyrodiv demo`` writes into ``results.json`` (key ``"docs_figures"``) the numbers that each
figure of :data:`DOC_FIGURES` shows (:func:`figure_numbers`). ``make docs-figures`` runs the
full demo and then :func:`write_docs_figures`, which copies those PNG files into
``docs/_static/demo`` and writes ``docs/_static/demo/figures.json``: for each figure its
SHA-256 and its numbers, and the demo's mode and seed.

The tests then check, cheaply, that the committed figures are current: every PNG has the hash
the manifest gives (a figure replaced or left behind without the manifest fails), the manifest
comes from a full run, its exact numbers (quadrature, the EMD linear programme) equal freshly
computed ones, and its fitted numbers equal a fresh run of the cheap, seeded fits.

    make docs-figures    # pyrodiv demo --out out/docs-figures, then main() on these folders:
    python -c 'from pyrodiv.demo.docs_figures import main; main()' out/docs-figures \
        docs/_static/demo
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

#: The figures the documentation shows (file stems in the demo's output folder).
DOC_FIGURES = (
    "normal_forward_kl",
    "bimodal_forward_kl",
    "bimodal_reverse_kl_left",
    "bimodal_jsd_0",
    "bimodal_jsd_right",
    "landscapes_all",
    "fdiv_table",
    "emd_plan",
)
MANIFEST = "figures.json"


def _normal(d):
    return None if not d else {"loc": d["loc"], "variance": d["variance"]}


def figure_numbers(results: dict) -> dict:
    """The numbers each figure of :data:`DOC_FIGURES` shows, from the demo's ``results``
    (figures whose experiment did not run are left out).

    Example::

        >>> figure_numbers({"emd": {"histograms": {"value": 0.7, "closed_form": 0.7,
        ...                                        "deck_value": 0.7}}})
        {'emd_plan': {'value': 0.7, 'closed_form': 0.7, 'deck_value': 0.7}}
    """
    out = {}
    if "normal" in results:
        r = results["normal"]
        out["normal_forward_kl"] = {
            "ours": _normal(r["ours"]),
            "exact": _normal(r["exact"]),
            "deck": _normal(r["deck"]),
        }
    for name, run in results.get("bimodal", {}).get("runs", {}).items():
        if f"bimodal_{name}" in DOC_FIGURES:
            out[f"bimodal_{name}"] = {
                "start": _normal(run["start"]),
                "ours": _normal(run["ours"]),
                "exact": _normal(run["exact"]),
                "deck": _normal(run["deck"]),
            }
    if "landscapes" in results:
        out["landscapes_all"] = {
            name: {
                "grid_min": _normal(info["grid_min"]),
                "best_exact": _normal(info["best_exact"]),
            }
            for name, info in results["landscapes"]["landscapes"].items()
        }
    if "fdiv_table" in results:
        rows = {}
        for label, row in results["fdiv_table"]["rows"].items():
            rows[label] = {"verdict": row["verdict"], "best_exact": _normal(row["best_exact"])}
            for start in ("narrow", "broad"):
                r = row.get(start)
                if r is not None:
                    rows[label][start] = _normal(r["fitted"]) or {"error": r["error"]}
        out["fdiv_table"] = rows
    if "emd" in results:
        h = results["emd"]["histograms"]
        out["emd_plan"] = {k: h[k] for k in ("value", "closed_form", "deck_value")}
    return out


def sha256(path) -> str:
    """The SHA-256 of a file, in hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_docs_figures(demo_out, docs_dir) -> dict:
    """Copy the :data:`DOC_FIGURES` of a finished demo run (``demo_out``, with its
    ``results.json``) into ``docs_dir`` and write the manifest ``docs_dir/figures.json``.

    :raises ValueError: if the run was not a full one, or a figure or its numbers are missing.
    """
    demo_out, docs_dir = Path(demo_out), Path(docs_dir)
    results = json.loads((demo_out / "results.json").read_text())
    meta = results["meta"]
    if meta["mode"] != "full":
        raise ValueError(f"{demo_out}: the docs figures come from a full run, not {meta['mode']}")
    numbers = results.get("docs_figures", {})
    docs_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "made_by": "make docs-figures (pyrodiv demo, then pyrodiv.demo.docs_figures.main)",
        "mode": meta["mode"],
        "seed": meta["seed"],
        "torch": meta["torch"],
        "figures": {},
    }
    for name in DOC_FIGURES:
        source = demo_out / f"{name}.png"
        if not source.is_file() or name not in numbers:
            raise ValueError(f"{demo_out}: no {name}.png or no numbers for it in results.json")
        shutil.copyfile(source, docs_dir / f"{name}.png")
        manifest["figures"][name] = {
            "file": f"{name}.png",
            "sha256": sha256(docs_dir / f"{name}.png"),
            "numbers": numbers[name],
        }
    (docs_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv=None) -> int:
    """``main([DEMO_OUT, DOCS_DIR])``, or those two from the command line."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    manifest = write_docs_figures(*argv)
    print(f"wrote {len(manifest['figures'])} figures and {MANIFEST} into {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
