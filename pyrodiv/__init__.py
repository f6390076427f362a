"""pyrodiv: fit probability distributions with any divergence, as drop-in Pyro SVI losses.

Example::

    import pyro, pyrodiv
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}),
                         loss=pyrodiv.ForwardKL(num_particles=256, vectorize_particles=True))
"""

from .generators import GENERATOR_NAMES, Generator, get_generator
from .losses import (
    CrossEntropy,
    DivergenceLoss,
    FDivergence,
    ForwardKL,
    JensenShannon,
    ReverseKL,
)

__version__ = "0.1.0"

__all__ = [
    "CrossEntropy",
    "DivergenceLoss",
    "FDivergence",
    "ForwardKL",
    "GENERATOR_NAMES",
    "Generator",
    "JensenShannon",
    "ReverseKL",
    "get_generator",
]
