"""pyrodiv: fit probability distributions with any divergence, as drop-in Pyro SVI losses.

Example::

    import pyro, pyrodiv
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}),
                         loss=pyrodiv.ForwardKL(num_particles=256, vectorize_particles=True))
"""

from . import _moved
from .divergences.generators import GENERATOR_NAMES, Generator, get_generator
from .divergences.losses import (
    CUBO,
    CrossEntropy,
    DivergenceLoss,
    FDivergence,
    ForwardKL,
    JensenShannon,
    RenyiBound,
    ReverseKL,
    Wasserstein,
    get_loss,
)
from .divergences.targets import SampleTarget
from .inference.fit import FitResult, FitSettings, fit

_moved.install()

__version__ = "0.1.0"

# The comparison layer imports ArviZ, which is slow to import: load it on first use.
_LAZY = {
    "compare_posteriors": "inference.comparison",
    "run_nuts": "inference.baselines",
    "run_hmc": "inference.baselines",
    "guide_to_inference_data": "inference.inference_data",
    "psis_khat": "inference.diagnostics",
    "approximate": "inference.approximate",
    "Approximation": "inference.approximation",
    "ApproximateSettings": "inference.approximation",
    "ApproximationWarning": "inference.approximation",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'pyrodiv' has no attribute {name!r}")


__all__ = [
    "approximate",
    "Approximation",
    "ApproximateSettings",
    "ApproximationWarning",
    "compare_posteriors",
    "CUBO",
    "CrossEntropy",
    "DivergenceLoss",
    "FDivergence",
    "FitResult",
    "FitSettings",
    "ForwardKL",
    "GENERATOR_NAMES",
    "Generator",
    "JensenShannon",
    "RenyiBound",
    "ReverseKL",
    "SampleTarget",
    "Wasserstein",
    "fit",
    "get_generator",
    "get_loss",
    "guide_to_inference_data",
    "psis_khat",
    "run_hmc",
    "run_nuts",
]
