"""Sphinx configuration of the pyrodiv documentation.

Built with ``make docs`` (``sphinx-build -W --keep-going -n``): every warning, broken cross
reference included, fails the build. Nothing is fetched from the network at build time.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Autodoc imports every module; keep ArviZ and matplotlib quiet and off the display.
os.environ.setdefault("MPLBACKEND", "Agg")

import pyrodiv  # noqa: E402

project = "pyrodiv"
author = "the pyrodiv authors"
copyright = "pyrodiv authors"
version = release = pyrodiv.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

# Maths without the network: the sphinx-mathjax-offline extension (the docs extra) copies
# MathJax 3 into the built site and points mathjax_path at it, so offline readers get rendered
# formulas. Without it Sphinx's default (MathJax from a CDN) is used, and a note says so.
MATHJAX_OFFLINE = importlib.util.find_spec("sphinx-mathjax-offline") is not None
if MATHJAX_OFFLINE:
    extensions.append("sphinx-mathjax-offline")
else:
    print(
        "docs/conf.py: sphinx-mathjax-offline is not installed; the maths will load MathJax "
        "from a CDN (pip install sphinx-mathjax-offline for offline reading)"
    )

# Source pages under _modules for pyrodiv's own modules only: a name that a pyrodiv module
# imports (from ArviZ, Pyro or torch) is not followed to its library's source.
viewcode_follow_imported_members = False

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "examples/README.md"]
templates_path: list[str] = []

# Markdown pages: $...$ and $$...$$ maths, ::: fences, definition lists, heading anchors.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# API reference from the reST docstrings.
autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
    "show-inheritance": True,
}
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
# Methods that override torch or Pyro methods without a docstring of their own stay bare.
autodoc_inherit_docstrings = False
autodoc_mock_imports: list[str] = []

# Nitpicky mode: every cross reference must resolve. Without intersphinx (no network at build
# time), references to outside libraries cannot resolve; they are listed here by prefix.
nitpicky = True
_EXTERNAL = (
    "torch",
    "pyro",
    "np",
    "numpy",
    "pd",
    "pandas",
    "arviz",
    "az",
    "xarray",
    "scipy",
    "matplotlib",
    "collections",
    "typing",
    "os",
    "pathlib",
    "argparse",
    "dataclasses",
    "contextlib",
    "ot",
    "lightning",
    "enum",
)
nitpick_ignore_regex = [
    (r"py:.*", rf"({'|'.join(_EXTERNAL)})(\..*)?"),
    # Builtins and typing names that appear in signatures and ``:param type name:`` fields.
    (r"py:.*", r"(int|float|str|bool|dict|list|tuple|set|None|Any|Callable|Mapping|Sequence)"),
    (r"py:.*", r"(Tensor|InferenceData|DataFrame|Kwargs|PathLike|Path|MCMC|Figure|Axes)"),
    (r"py:.*", r"(optional|callable|array-like|tensor)"),
    # Private names (``_estimate``, private base classes) are not in the API reference.
    (r"py:.*", r"(.*\.)?_[a-zA-Z]\w*"),
]
# Names that their docstrings reference but that autodoc does not document (an instance
# attribute set in ``__init__``, a module constant without a doc comment).

html_theme = "sphinx_rtd_theme"
html_title = f"pyrodiv {release}"
html_static_path = ["_static"]
html_theme_options = {"navigation_depth": 3, "collapse_navigation": False}
html_show_sourcelink = False


def resolve_reexport(app, env, node, contnode):
    """Resolve ``pyrodiv.run_nuts`` and other re-exported names to where they are defined
    (``pyrodiv.baselines.run_nuts``), so that docstrings may use the public short names."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("pyrodiv."):
        return None
    *path, name = target.split(".")
    try:
        obj = getattr(importlib.import_module(".".join(path)), name)
    except (ImportError, AttributeError):
        return None
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or f"{module}.{qualname}" == target:
        return None
    return env.get_domain("py").resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], f"{module}.{qualname}", node, contnode
    )


def setup(app):
    app.connect("missing-reference", resolve_reexport)
