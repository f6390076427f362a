"""``pyrodiv demo``: every figure and number of the talk "Introduction to Differentiable
Probabilistic Models", reproduced with pyrodiv's losses and checked against exact optima.

One module per group of experiments; each experiment is a function that returns a dict of
numbers and, given an output directory, writes its figures:

* :func:`~pyrodiv.demo.normal.learn_normal` (forward KL to N(-7.3, 3.2)),
* :func:`~pyrodiv.demo.mixtures.mixture_visuals`,
* :func:`~pyrodiv.demo.bimodal.bimodal_fits` (forward KL, reverse KL, JSD on the bimodal),
* :func:`~pyrodiv.demo.landscapes.landscapes`,
* :func:`~pyrodiv.demo.fdiv_table.fdiv_table`,
* :func:`~pyrodiv.demo.reparam.reparam_catalogue`,
* :func:`~pyrodiv.demo.emd.earth_movers`,
* :func:`~pyrodiv.demo.mle.mle_equivalences`.

:func:`~pyrodiv.demo.runner.run_demo` runs them all and writes ``results.json`` and
``report.md``; :func:`~pyrodiv.demo.example.run_example` runs one of them with the command line
of the ``examples/deck_*.py`` scripts.

Example::

    >>> from pyrodiv.demo import learn_normal
    >>> res = learn_normal(steps=200, lr=0.1)
    >>> sorted(res)[:3]
    ['deck', 'exact', 'figures']
"""

from .bimodal import bimodal_fits
from .emd import earth_movers
from .example import run_example
from .fdiv_table import fdiv_table
from .landscapes import landscapes
from .mixtures import mixture_visuals
from .mle import mle_equivalences
from .normal import learn_normal
from .reparam import reparam_catalogue
from .runner import EXPERIMENTS, run_demo

__all__ = [
    "EXPERIMENTS",
    "bimodal_fits",
    "earth_movers",
    "fdiv_table",
    "landscapes",
    "learn_normal",
    "mixture_visuals",
    "mle_equivalences",
    "reparam_catalogue",
    "run_demo",
    "run_example",
]
