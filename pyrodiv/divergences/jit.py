r"""Compiled divergence losses: trace a loss's estimate once with ``torch.jit`` and replay it.

:func:`jit` does for any :class:`~pyrodiv.divergences.losses.DivergenceLoss` what
:class:`pyro.infer.JitTrace_ELBO` does for ``Trace_ELBO``: the first call with a model and a
guide runs the loss normally (guessing the plate nesting and the target kind), then records
every tensor operation of one estimate (the guide's and the model's runs, the log-densities and
the estimator) with :func:`pyro.ops.jit.trace`, as a function of the unconstrained parameters
and the positional arguments. Later calls replay that graph, skipping Pyro's and pyrodiv's
Python plumbing; random draws are recorded as operations, so each call draws anew.

The value and gradient are those of the loss it wraps. What a recorded graph cannot do:

* control flow that depends on tensor values is frozen at the first call, so the per-site
  NaN checks of :mod:`pyrodiv.divergences.traces` do not run again (the check of the final
  estimate in
  :meth:`~pyrodiv.divergences.loss_base.DivergenceLoss.estimate` still does, and names the loss);
* keyword arguments are baked in as constants (a new value of a non-tensor keyword argument,
  or a new tensor object, records a new graph); pass data positionally;
* every ``pyro.param`` must exist at the first call, as for ``JitTrace_ELBO``;
* a loss that keeps state between steps (``ForwardKL(estimator="msc")``) is refused.

One graph is recorded per model, guide, number of positional arguments, keyword arguments
and grad mode (``loss`` runs without autograd, ``loss_and_grads`` with it).

Example::

    >>> from pyrodiv import ReverseKL
    >>> loss = jit(ReverseKL(num_particles=64, vectorize_particles=True))
    >>> svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), loss=loss)
"""

from __future__ import annotations

import pyro.ops.jit
import torch

from .estimators import Estimate
from .losses import DivergenceLoss


def jit(loss: DivergenceLoss, ignore_jit_warnings: bool = True, jit_options=None):
    """Compile ``loss`` in place (see the module docstring) and return it.

    :param loss: a pyrodiv loss (``ReverseKL``, ``ForwardKL``, ``FDivergence``, ...).
    :param ignore_jit_warnings: silence the tracer's warnings about frozen control flow.
    :param jit_options: passed to :func:`torch.jit.trace` (``check_trace`` is off).

    Example::

        >>> from pyrodiv import ForwardKL
        >>> loss = jit(ForwardKL(num_particles=256, vectorize_particles=True))
        >>> loss.differentiable_loss(model, guide, data)  # records the graph     # doctest: +SKIP
    """
    if not isinstance(loss, DivergenceLoss):
        raise TypeError(f"jit: expected a pyrodiv DivergenceLoss, got {type(loss).__name__}")
    if getattr(loss, "estimator", None) == "msc":
        raise ValueError(
            "jit: Markovian score climbing keeps a chain state between steps, which a recorded "
            "graph would freeze; use ForwardKL(estimator='msc') uncompiled"
        )
    uncompiled = loss._estimate
    compiled = {}

    def _estimate(model, guide, args, kwargs):
        # a graph recorded without autograd would lack the score-function terms
        key = (model, guide, torch.is_grad_enabled())  # the objects: ids can be reused
        if key not in compiled:

            def value_and_surrogate(*args, **kwargs):
                est = uncompiled(model, guide, args, kwargs)
                return est.value, est.surrogate

            compiled[key] = pyro.ops.jit.trace(
                value_and_surrogate,
                ignore_warnings=ignore_jit_warnings,
                jit_options=None if jit_options is None else dict(jit_options),
            )
        return Estimate(*compiled[key](*args, **kwargs))

    loss._estimate = _estimate
    return loss
