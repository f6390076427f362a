r"""How far a fitted guide can be trusted: the PSIS Pareto :math:`\hat k` of its log weights.

For draws :math:`z_s \sim q` the importance weights :math:`w_s = p(x, z_s) / q(z_s)` have a
finite variance only if :math:`q` has heavier tails than the posterior. Pareto-smoothed importance
sampling fits a generalized Pareto distribution to the largest weights; its shape :math:`\hat k`
estimates how many moments of :math:`w` exist (:math:`1/\hat k`). Yao, Vehtari, Simpson and
Gelman (2018), "Yes, but did it work?: Evaluating variational inference":

- :math:`\hat k < 0.5`: the guide is good (the weights have a finite variance);
- :math:`0.5 \le \hat k \le 0.7`: usable, importance-corrected estimates converge slowly;
- :math:`\hat k > 0.7`: unreliable (the guide is too narrow or misplaced somewhere).

Unlike Pyro's ``pyro.infer.importance.psis_diagnostic``, :math:`\hat k` is computed by ArviZ
(``az.psislw``), as for PSIS-LOO.
"""

from __future__ import annotations

from collections.abc import Callable

from . import arviz_adapter
from .inference_data import guide_log_weights

__all__ = ["psis_khat"]


def psis_khat(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int = 1000,
    seed: int = 0,
    **kwargs,
) -> float:
    r"""Pareto :math:`\hat k` of the weights :math:`\log w_s = \log p(x, z_s) - \log q(z_s)`.

    Draws ``num_samples`` times from the fitted ``guide`` (as
    :func:`pyrodiv.inference.inference_data.guide_log_weights`, with ``*args, **kwargs`` for model
    and
    guide) and returns the shape :math:`\hat k` that ``az.psislw`` fits to the largest weights:
    below 0.5 good, 0.5 to 0.7 usable, above 0.7 unreliable (Yao et al. 2018). A guide equal to
    the exact posterior has constant weights and gives :math:`-\infty`. Small ``num_samples``
    give noisy estimates (a few hundred at least; ``inf`` means fewer than 5 draws in the tail).

    Example::

        >>> import torch, pyro, pyro.distributions as dist
        >>> def model():
        ...     pyro.sample("z", dist.Normal(0.0, 1.0))
        >>> def narrow_guide():
        ...     pyro.sample("z", dist.Normal(0.0, 0.3))
        >>> psis_khat(model, narrow_guide, num_samples=2000) > 0.7
        True
    """
    log_weights = guide_log_weights(
        model, guide, *args, num_samples=num_samples, seed=seed, **kwargs
    )
    _, khat = arviz_adapter.psis(log_weights)
    return khat
