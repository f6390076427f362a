r"""Posterior draws and fitted guides as ArviZ ``InferenceData``.

Two sources of draws give the same groups, so that an approximation and an MCMC baseline can be
compared variable by variable:

- :func:`samples_to_inference_data`: given draws of the latent sites (from MCMC or elsewhere),
  run the model conditioned on them;
- :func:`guide_to_inference_data`: draw :math:`z_s \sim q` from a fitted guide and run the model
  replayed on them; :func:`guide_log_weights` gives the importance log weights only.

Groups:

- ``posterior``: every latent sample site and every ``pyro.deterministic`` site, in constrained
  space, shape ``(chain, draw, *site_shape)``. A scalar site has shape ``(chain, draw)``.
- ``log_likelihood``: one variable per observed site, the pointwise
  :math:`\log p(x_i \mid z_s)` (unscaled, shape ``(chain, draw, *batch_shape)``).
- ``sample_stats``: ``lp`` = :math:`\log p(x, z_s)` (all sites, with plate scaling), and for
  guides ``log_q`` = :math:`\log q(z_s)` and ``log_weight`` = ``lp - log_q``.
- ``observed_data``: the observed values.

The programs run through the same :class:`~pyrodiv.divergences.traces.Runner` as training: once
for all draws under the particle plate (vectorized), checked against the first and last draws
recomputed one at a time. If the model or guide raises under the extra batch dimension, or the
two disagree (``X @ w`` for a ``to_event(1)`` weight ``w``, or ``.sum()`` without a dim), a
warning is given and every draw is evaluated one at a time.

With subsampling plates (``pyro.plate(..., subsample_size=m)``), one subsample is drawn and used
for every draw: ``log_likelihood`` and ``observed_data`` cover those m points, while ``lp`` and
``log_weight`` are scaled by size / m as in Pyro's ELBO (unbiased for the full data).

Randomness is drawn under ``pyro.set_rng_seed(seed)``; the global RNG state is restored after.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyro
import pyro.poutine as poutine
import torch

from ..divergences.traces import Order, Runner
from ..validation import check_positive_int, seeded
from . import arviz_adapter

__all__ = ["guide_log_weights", "guide_to_inference_data", "samples_to_inference_data"]


@dataclass
class _Draws:
    """Per-draw quantities, each with a leading dimension of size S."""

    latent: dict[str, torch.Tensor]
    deterministic: dict[str, torch.Tensor]
    log_likelihood: dict[str, torch.Tensor]
    log_joint: torch.Tensor
    log_q: torch.Tensor | None


@dataclass
class _Sites:
    """Names, per-draw shapes and observed values of the model's sites (one prototype)."""

    latent: list[str]
    deterministic: list[str]
    observed: list[str]
    value_shape: dict[str, torch.Size]
    log_prob_shape: dict[str, torch.Size]
    observed_values: dict[str, torch.Tensor]

    @staticmethod
    def from_trace(trace) -> _Sites:
        groups = {"latent": [], "deterministic": [], "observed": []}
        value_shape, log_prob_shape = {}, {}
        for name, site in trace.nodes.items():
            if site["type"] != "sample":
                continue
            if site["infer"].get("_deterministic"):
                groups["deterministic"].append(name)
            elif site["is_observed"]:
                groups["observed"].append(name)
            else:
                groups["latent"].append(name)
            value_shape[name] = site["value"].shape
            log_prob_shape[name] = torch.as_tensor(site["log_prob"]).shape
        observed_values = {n: trace.nodes[n]["value"].detach() for n in groups["observed"]}
        return _Sites(
            **groups,
            value_shape=value_shape,
            log_prob_shape=log_prob_shape,
            observed_values=observed_values,
        )


def _per_draw(value, shape: torch.Size, num_draws: int) -> torch.Tensor:
    """Reshape a (possibly broadcast) value to ``(num_draws, *shape)``: ``value`` lacks the
    draws dimension (the same for every draw) or has extra leading dimensions of which one
    has size ``num_draws`` and the others size 1."""
    value = torch.as_tensor(value)
    extra = value.dim() - len(shape)
    if extra > 0:
        value = value.reshape((math.prod(value.shape[:extra]),) + value.shape[extra:])
    return value.expand((num_draws,) + tuple(shape)).contiguous()


#: Numbers per draw (site values and pointwise observed log-densities) times draws that are
#: evaluated at once: more draws run in chunks, so that S draws of a model with N
#: observations need memory for about this many numbers at a time, not for S * N.
CHUNK_ELEMENTS = 2**24


def _evaluate(model, guide, num_draws, args, kwargs, vectorize, order, draws=None):
    """Run ``num_draws`` draws through the runner (guide-first, or at the given draws in
    order), in chunks of at most :data:`CHUNK_ELEMENTS` numbers, and collect the per-draw
    groups."""
    with poutine.block(), torch.no_grad():
        options = dict(keep_traces=True)
        try:
            first = None if draws is None else {k: v[:1] for k, v in draws.items()}
            rows = None if draws is None else torch.arange(1)
            proto = Runner(1)(model, guide, args, kwargs, order, pin=True, draws=first,
                              rows=rows, **options)  # fmt: skip
        except ValueError as error:
            if "has no sample sites" not in str(error):
                raise
            proto = None
        sites = None if proto is None else _Sites.from_trace(proto.traces[0][0])
        if sites is None or not sites.latent:
            raise ValueError(
                "model has no latent sample sites: there is nothing for the guide to approximate"
            )
        shapes = [sites.value_shape[n] for n in sites.latent + sites.deterministic]
        shapes += [sites.log_prob_shape[n] for n in sites.observed]
        per_draw = max(1, sum(math.prod(shape) for shape in shapes))
        size = max(1, min(num_draws, CHUNK_ELEMENTS // per_draw))
        parts, log_p, log_q = [], [], []
        for start in range(0, num_draws, size):
            count = min(size, num_draws - start)
            chunk = (
                None if draws is None else {k: v[start : start + count] for k, v in draws.items()}
            )
            rows = None if draws is None else torch.arange(count)
            run = Runner(count, vectorize)(model, guide, args, kwargs, order, pin=proto.subsamples,
                                           draws=chunk, rows=rows, **options)  # fmt: skip
            parts.extend(_run_groups(run, sites, count))
            log_p.append(run.log_p.detach())
            log_q.append(None if run.log_q is None else run.log_q.detach())
    groups = [{k: torch.cat([p[i][k] for p in parts]) for k in parts[0][i]} for i in range(3)]
    log_q = None if log_q[0] is None else torch.cat(log_q)
    return _Draws(*groups, log_joint=torch.cat(log_p), log_q=log_q), sites


def _run_groups(run, sites: _Sites, count: int) -> list[tuple]:
    """``(latent, deterministic, log_likelihood)`` values per trace of a run of ``count``
    draws (one trace when vectorized, else one per draw)."""
    parts = []
    for model_trace, _ in run.traces:
        n = count if len(run.traces) == 1 else 1

        def values(names, key="value", shapes=sites.value_shape, trace=model_trace, n=n):
            return {k: _per_draw(trace.nodes[k][key].detach(), shapes[k], n) for k in names}

        parts.append(
            (
                values(sites.latent),
                values(sites.deterministic),
                values(sites.observed, "unscaled_log_prob", sites.log_prob_shape),
            )
        )
    return parts


def _model_draws(model, samples: dict, args, kwargs, vectorize: bool) -> tuple[_Draws, _Sites]:
    """Evaluate the model at S given draws ``samples[name]`` of shape ``(S, *site_shape)``."""
    num_draws = next(iter(samples.values())).shape[0]
    try:
        return _evaluate(
            model, None, num_draws, args, kwargs, vectorize, Order.GIVEN_DRAWS, samples
        )
    except ValueError as error:
        text = str(error)
        if "the model has no such latent site" in text:
            raise ValueError(
                f"samples has draws of sites that are not latent sample sites of model ({text})"
            ) from None
        if "have no values for the model's latent site" in text:
            raise ValueError(
                f"samples has no draws of the latent site(s) of model ({text}); discrete sites "
                "marginalized by NUTS are not supported"
            ) from None
        raise


def samples_to_inference_data(
    model: Callable,
    samples: Mapping[str, torch.Tensor],
    *args,
    sample_stats: Mapping[str, torch.Tensor] | None = None,
    attrs: Mapping | None = None,
    vectorize: bool = True,
    **kwargs,
):
    r"""``InferenceData`` from given draws of every latent site of ``model``.

    ``samples[name]`` has shape ``(chain, draw, *site_shape)`` in constrained space (as
    ``pyro.infer.MCMC.get_samples(group_by_chain=True)`` gives). The model is run conditioned on
    each draw :math:`z_s` with ``*args, **kwargs``, which gives the ``pyro.deterministic`` sites,
    the pointwise log likelihood :math:`\log p(x_i \mid z_s)` of every observed site,
    ``sample_stats.lp`` :math:`= \log p(x, z_s)` and ``observed_data`` (see the module doc).
    ``sample_stats`` adds variables of shape ``(chain, draw)``; ``attrs`` become ``idata.attrs``.

    Example::

        >>> import torch, pyro, pyro.distributions as dist
        >>> def model(y):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     with pyro.plate("data", len(y)):
        ...         pyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> idata = samples_to_inference_data(model, {"mu": torch.randn(2, 100)}, torch.zeros(5))
        >>> idata.log_likelihood["y"].shape
        (2, 100, 5)
    """
    if not isinstance(samples, Mapping) or not samples:
        raise ValueError(
            "samples must be a non-empty dict of draws of shape (chain, draw, ...); model has "
            "no latent sites or none were sampled"
        )
    shapes = {tuple(torch.as_tensor(v).shape[:2]) for v in samples.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"samples must all have leading dims (chain, draw), got {shapes}")
    return _samples_to_idata(model, samples, args, kwargs, sample_stats, attrs, vectorize)


def _samples_to_idata(model, samples, args, kwargs, sample_stats, attrs, vectorize=True):
    """:func:`samples_to_inference_data` with the model's arguments as a tuple and a dict."""
    samples = {k: torch.as_tensor(v) for k, v in samples.items()}
    num_chains = next(iter(samples.values())).shape[0]
    flat = {k: v.reshape((-1,) + tuple(v.shape[2:])) for k, v in samples.items()}
    draws, sites = _model_draws(model, flat, args, kwargs, vectorize)
    return _to_idata(draws, sites, num_chains, sample_stats, attrs)


def _to_idata(draws: _Draws, sites: _Sites, num_chains: int, sample_stats, attrs):
    def by_chain(value):
        return value.reshape((num_chains, -1) + tuple(value.shape[1:]))

    posterior = {k: by_chain(v) for k, v in {**draws.latent, **draws.deterministic}.items()}
    stats = {"lp": by_chain(draws.log_joint)}
    if draws.log_q is not None:
        stats["log_q"] = by_chain(draws.log_q)
        stats["log_weight"] = by_chain(draws.log_joint - draws.log_q)
    stats.update(sample_stats or {})
    return arviz_adapter.to_inference_data(
        posterior,
        sample_stats=stats,
        log_likelihood={k: by_chain(v) for k, v in draws.log_likelihood.items()} or None,
        observed_data=sites.observed_values or None,
        attrs={"inference_library": "pyro", "inference_library_version": pyro.__version__}
        | dict(attrs or {}),
    )


def _guide_draws(model, guide, num_draws: int, args, kwargs, vectorize: bool):
    """Draw S times from the guide, replay the model, and evaluate both."""
    return _evaluate(model, guide, num_draws, args, kwargs, vectorize, Order.GUIDE_FIRST)


def guide_log_weights(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int = 1000,
    seed: int = 0,
    vectorize: bool = True,
    **kwargs,
) -> torch.Tensor:
    r"""Importance log weights :math:`\log w_s = \log p(x, z_s) - \log q(z_s)`, :math:`z_s \sim q`.

    ``num_samples`` draws from the fitted ``guide`` (any Pyro guide, autoguides included), the
    model replayed on each; both run with ``*args, **kwargs``. Plate scaling (subsampling) is
    applied as in Pyro's ELBO. Returns a tensor of shape ``(num_samples,)``. Its mean is an
    estimate of the ELBO and :math:`\operatorname{logsumexp}_s \log w_s - \log S` one of the
    log evidence :math:`\log p(x)`; the weights are constant (and equal to :math:`\log p(x)`)
    when the guide is the exact posterior.

    Example::

        >>> import torch, pyro, pyro.distributions as dist
        >>> def model():
        ...     pyro.sample("z", dist.Normal(0.0, 1.0))
        >>> def guide():
        ...     pyro.sample("z", dist.Normal(0.0, 1.0))
        >>> guide_log_weights(model, guide, num_samples=4).abs().max().item()
        0.0
    """
    draws, _ = _guide_draws_seeded(model, guide, num_samples, seed, args, kwargs, vectorize)
    return draws.log_joint - draws.log_q


def _guide_draws_seeded(model, guide, num_samples, seed, args, kwargs, vectorize):
    num_samples = check_positive_int(num_samples, "num_samples")
    with seeded(seed):
        return _guide_draws(model, guide, num_samples, args, kwargs, vectorize)


def guide_to_inference_data(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int = 1000,
    seed: int = 0,
    vectorize: bool = True,
    **kwargs,
):
    r"""``InferenceData`` of ``num_samples`` draws :math:`z_s \sim q` from a fitted guide.

    The groups are those of an MCMC run (see the module doc), with one chain: ``posterior``
    (latent and deterministic sites of the model, constrained space; scalar sites have shape
    ``(1, num_samples)``), ``log_likelihood`` (pointwise :math:`\log p(x_i \mid z_s)` per
    observed site), ``observed_data`` and ``sample_stats`` with ``lp`` :math:`= \log p(x, z_s)`,
    ``log_q`` :math:`= \log q(z_s)` and ``log_weight`` :math:`= \log p(x, z_s) - \log q(z_s)`
    (see :func:`guide_log_weights`). Works whatever loss trained the guide.

    ``vectorize=False`` evaluates the draws one at a time from the start (otherwise this only
    happens, with a warning, when the model or guide does not broadcast).

    Example::

        >>> import torch, pyro, pyro.distributions as dist
        >>> from pyro.infer.autoguide import AutoNormal
        >>> def model(y):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     with pyro.plate("data", len(y)):
        ...         pyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> y = torch.zeros(5)
        >>> guide = AutoNormal(model)
        >>> idata = guide_to_inference_data(model, guide, y, num_samples=100)
        >>> idata.posterior["mu"].shape, idata.log_likelihood["y"].shape
        ((1, 100), (1, 100, 5))
    """
    draws, sites = _guide_draws_seeded(model, guide, num_samples, seed, args, kwargs, vectorize)
    guide_name = getattr(guide, "__name__", None) or type(guide).__name__
    attrs = {"source": "guide", "guide": guide_name, "num_samples": num_samples, "seed": seed}
    return _to_idata(draws, sites, 1, None, attrs)
