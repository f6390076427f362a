r"""Compiled divergence losses: trace a loss's estimate once with ``torch.jit`` and replay it.

:func:`jit` does for any :class:`~pyrodiv.divergences.losses.DivergenceLoss` what
:class:`pyro.infer.JitTrace_ELBO` does for ``Trace_ELBO``: the first call with a model and a
guide runs the loss normally (guessing the plate nesting and the target kind), then records
every tensor operation of one estimate (the guide's and the model's runs, the log-densities and
the estimator) with :func:`pyro.ops.jit.trace`, as a function of the unconstrained parameters
and the positional arguments. Later calls replay that graph, skipping Pyro's and pyrodiv's
Python plumbing; random draws are recorded as operations, so each call draws anew.

The value and gradient are those of the loss it wraps. For a static model with a Gaussian
autoguide, :func:`pyrodiv.divergences.compiled.compile` goes further (the programs lowered to
tensor functions, the gradient in the graph) and falls back to this for other programs.
What a recorded graph cannot do:

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

    The tensors among the positional arguments are the graph's inputs; any other positional
    argument (a flag, a size) is fixed in the graph, and each new value records a new one.

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
    loss._estimate = traced_estimate(loss._estimate, ignore_jit_warnings, jit_options)
    return loss


def traced_estimate(uncompiled, ignore_jit_warnings: bool = True, jit_options=None):
    """``uncompiled`` (a loss's ``_estimate(model, guide, args, kwargs)``) recorded once per
    model, guide, grad mode and fixed arguments with :func:`pyro.ops.jit.trace`, and replayed:
    the function that :func:`jit` installs (and :func:`pyrodiv.divergences.compiled.compile`
    falls back to)."""
    compiled = {}

    def _estimate(model, guide, args, kwargs):
        # the tensors are the graph's inputs; any other positional argument is fixed in it,
        # and a new value records a new graph
        tensors = tuple(a for a in args if isinstance(a, torch.Tensor))
        fixed = _fixed_arguments(args)
        # a graph recorded without autograd would lack the score-function terms
        key = (model, guide, torch.is_grad_enabled(), fixed)  # objects: ids can be reused
        if key not in compiled:
            template = list(args)

            def value_and_surrogate(*tensors, **kwargs):
                inputs = iter(tensors)
                full = [next(inputs) if isinstance(a, torch.Tensor) else a for a in template]
                est = uncompiled(model, guide, tuple(full), kwargs)
                return est.value, est.surrogate

            compiled[key] = pyro.ops.jit.trace(
                value_and_surrogate,
                ignore_warnings=ignore_jit_warnings,
                jit_options=None if jit_options is None else dict(jit_options),
            )
        return Estimate(*compiled[key](*tensors, **kwargs))

    return _estimate


def _fixed_arguments(args) -> tuple:
    """The positional arguments that are not tensors, by position (hashable: each distinct
    value records its own graph); a TypeError names one that cannot be hashed."""
    fixed = tuple((i, a) for i, a in enumerate(args) if not isinstance(a, torch.Tensor))
    for i, a in fixed:
        try:
            hash(a)
        except TypeError:
            raise TypeError(
                f"jit: positional argument {i} ({type(a).__name__}) is neither a tensor nor "
                "hashable, so it can be neither an input of the recorded graph nor fixed in it; "
                "pass its tensors as arguments, or make it a tuple"
            ) from None
    return fixed
