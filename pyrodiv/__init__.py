"""pyrodiv: fit probability distributions with any divergence, as drop-in Pyro SVI losses.

Example::

    import pyro, pyrodiv
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}),
                         loss=pyrodiv.ForwardKL(num_particles=256, vectorize_particles=True))
"""

from .fit import FitResult, fit
from .generators import GENERATOR_NAMES, Generator, get_generator
from .losses import (
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
from .targets import SampleTarget

__version__ = "0.1.0"

# The comparison layer imports ArviZ, which is slow to import: load it on first use.
_LAZY = {
    "compare_posteriors": "comparison",
    "run_nuts": "baselines",
    "run_hmc": "baselines",
    "guide_to_inference_data": "inference_data",
    "psis_khat": "diagnostics",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'pyrodiv' has no attribute {name!r}")


__all__ = [
    "compare_posteriors",
    "CUBO",
    "CrossEntropy",
    "DivergenceLoss",
    "FDivergence",
    "FitResult",
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
