r"""The vectorization check of the runner: does a program broadcast over particles?

A model written for one draw can run under Pyro's particle plate without an error and still
be wrong there (``X @ w`` for a batched ``w``, ``.sum()`` without a dim). The first vectorized
run of each model and guide is therefore compared with particles :math:`0` and :math:`K-1`
recomputed one at a time (:func:`check_vectorized`): their :math:`\log p` and
:math:`\log q` must agree to :math:`\sqrt{\epsilon}` of the dtype. A program that fails runs
one particle at a time from then on, with one warning
(:func:`~pyrodiv.divergences.vectorization.warn_sequential`).

Example::

    >>> check_vectorized(call, nesting, run, subsamples)              # doctest: +SKIP
"""

from __future__ import annotations

import math
import warnings

import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites, site_is_subsample

from .densities import NotVectorizable, trace_log_density
from .enumeration import enumerate_model, marginal_log_density
from .replay import SetValues, is_guide_messenger, replay_guide_at
from .site_checks import is_delta
from .targets import is_sample_target
from .trace_pair import Order, PinSubsamples, Run, trace_pair

__all__ = ["check_vectorized", "warn_sequential"]


def check_vectorized(call, nesting: int, run: Run, subsamples: dict) -> None:
    """Recompute particles 0 and K-1 of a vectorized ``run`` one at a time; raise
    :class:`~pyrodiv.divergences.densities.NotVectorizable` if their log-densities differ.

    ``call`` is the runner's call (its programs, arguments, order and particle count). The
    model's log-density is not compared for a
    :class:`~pyrodiv.divergences.targets.SampleTarget`, whose ``log p`` is not a density."""
    model, guide, args, kwargs = call.model, call.guide, call.args, call.kwargs
    model_trace, guide_trace = run.traces[0]
    with torch.no_grad(), torch.random.fork_rng(), poutine.block():
        with PinSubsamples(subsamples):
            proto_model, proto_guide = trace_pair(
                model,
                guide,
                args,
                kwargs,
                call.order,
                nesting,
                None,
                call.set_draws(1, 0, None),
                call.enumerate,
            )
        for k in sorted({0, call.runner.num_particles - 1}):
            latents = {
                n: v[k].reshape(proto_model.nodes[n]["value"].shape)
                for n, v in run.latents.items()
            }
            program = enumerate_model(model, nesting) if call.enumerate else model
            with PinSubsamples(subsamples), SetValues(latents):
                single = poutine.trace(program).get_trace(*args, **kwargs)
            single = prune_subsample_sites(single)
            single.compute_log_prob()
            pairs, single_q = [], None
            if guide_trace is not None and not is_guide_messenger(guide):
                single_q = _rescored_guide(
                    call, (guide_trace, proto_guide), k, nesting, single, subsamples
                )
            if single_q is not None:
                pairs.append(("log q", run.log_q[k], trace_log_density(single_q, None)))
            # a SampleTarget's log p is not a density (its row is drawn afresh on each run)
            if not is_sample_target(model):
                if call.enumerate:
                    log_p = marginal_log_density(single, single_q, None, None)
                else:
                    log_p = trace_log_density(single, None)
                pairs.insert(0, ("log p", run.log_p[k], log_p))
            for label, a, b in pairs:
                a, b = a.detach(), b.detach()
                tol = math.sqrt(torch.finfo(a.dtype).eps)
                scale = max(1.0, float(b.abs())) if torch.isfinite(b) else 1.0
                if not torch.allclose(a, b, rtol=tol, atol=tol * scale, equal_nan=True):
                    raise NotVectorizable(
                        f"{label} of particle {k} differs between the vectorized and "
                        f"one-particle runs ({float(a):.6g} vs {float(b):.6g})"
                    )


def _rescored_guide(call, guide_traces, k, nesting, single, subsamples):
    """The guide's one-particle trace at particle ``k``'s draws (log-probs computed), or
    ``None`` for a guide that cannot score a draw it did not make itself (a flow without an
    inverse, such as ``BlockAutoregressive``, which looks its draws up in a cache): its log q
    is then not compared, and the model's log p still is."""
    args, kwargs = call.args, call.kwargs
    guide_trace, proto_guide = guide_traces
    try:
        if call.order in (Order.MODEL_FIRST, Order.GIVEN_DRAWS):
            single_q = replay_guide_at(call.guide, single, args, kwargs)
        else:
            values = _guide_values(guide_trace, proto_guide, k, -nesting - 1)
            with PinSubsamples(subsamples), SetValues(values):
                single_q = poutine.trace(call.guide).get_trace(*args, **kwargs)
        single_q = prune_subsample_sites(single_q)
        single_q.compute_log_prob()
    except (KeyError, NotImplementedError):
        return None
    return single_q


def _guide_values(guide_trace, proto_guide, k: int, dim: int) -> dict:
    """Particle ``k``'s values of the guide's random (non-Delta) sample sites, shaped as in
    the one-particle ``proto_guide``."""
    values = {}
    for name, site in guide_trace.nodes.items():
        if site["type"] != "sample" or is_delta(site["fn"]) or site_is_subsample(site):
            continue
        value = site["value"]
        axis = value.dim() - site["fn"].event_dim + dim
        if axis >= 0 and value.shape[axis] > 1:
            value = value.select(axis, k)
        values[name] = value.detach().reshape(proto_guide.nodes[name]["value"].shape)
    return values


def warn_sequential(model, error: Exception, num_particles: int) -> None:
    """Warn once that ``model`` runs its ``num_particles`` one at a time from now on, with the
    first line of ``error`` (what differed) and how to write the model so it broadcasts."""
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    name = getattr(model, "__name__", type(model).__name__)
    warnings.warn(
        f"{name} (or its guide) does not vectorize over particles ({reason}); running the "
        f"{num_particles} particles one at a time from now on, which is slower. Write it to "
        "broadcast over a batch dimension on the left of its plates (for example "
        "(X * w).sum(-1), not X @ w; z[..., 0], not z[..., 0:1]).",
        RuntimeWarning,
        stacklevel=4,
    )
