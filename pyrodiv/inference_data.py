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

The model is run once for all draws under an outer ``pyro.plate`` of size S placed to the left of
the model's own plates (vectorized). The first and last draws are then recomputed one at a time;
if the model or guide raises under the extra batch dimension, or the two disagree (a model that
does not broadcast, such as ``X @ w`` for a ``to_event(1)`` weight ``w``, or ``.sum()`` without
a dim), a warning is given and every draw is evaluated one at a time.

With subsampling plates (``pyro.plate(..., subsample_size=m)``), one subsample is drawn and used
for every draw: ``log_likelihood`` and ``observed_data`` cover those m points, while ``lp`` and
``log_weight`` are scaled by size / m as in Pyro's ELBO (unbiased for the full data).

Randomness is drawn under ``pyro.set_rng_seed(seed)``; the global RNG state is restored after.
"""

from __future__ import annotations

import contextlib
import math
import operator
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer.enum import get_importance_trace
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites, site_is_subsample

from pyrodiv import arviz_adapter

__all__ = ["guide_log_weights", "guide_to_inference_data", "samples_to_inference_data"]

_DRAWS_PLATE = "_pyrodiv_draws"


class _NotVectorizable(Exception):
    """The model or guide does not broadcast over the leftmost draws dimension."""


@dataclass
class _Draws:
    """Per-draw quantities, each with a leading dimension of size S."""

    latent: dict[str, torch.Tensor]
    deterministic: dict[str, torch.Tensor]
    log_likelihood: dict[str, torch.Tensor]
    log_joint: torch.Tensor
    log_q: torch.Tensor | None

    @staticmethod
    def cat(parts: list[_Draws]) -> _Draws:
        def cat_dict(name):
            return {
                k: torch.cat([getattr(p, name)[k] for p in parts]) for k in getattr(parts[0], name)
            }

        return _Draws(
            latent=cat_dict("latent"),
            deterministic=cat_dict("deterministic"),
            log_likelihood=cat_dict("log_likelihood"),
            log_joint=torch.cat([p.log_joint for p in parts]),
            log_q=None if parts[0].log_q is None else torch.cat([p.log_q for p in parts]),
        )

    def select(self, index: int) -> _Draws:
        def sel(d):
            return {k: v[index : index + 1] for k, v in d.items()}

        return _Draws(
            latent=sel(self.latent),
            deterministic=sel(self.deterministic),
            log_likelihood=sel(self.log_likelihood),
            log_joint=self.log_joint[index : index + 1],
            log_q=None if self.log_q is None else self.log_q[index : index + 1],
        )


@dataclass
class _Sites:
    """Names and shapes of the model's sites, read from one prototype trace."""

    latent: list[str]
    deterministic: list[str]
    observed: list[str]
    value_shape: dict[str, torch.Size]
    log_prob_shape: dict[str, torch.Size]
    observed_values: dict[str, torch.Tensor]

    @staticmethod
    def from_trace(trace) -> _Sites:
        latent, deterministic, observed = [], [], []
        for name, site in trace.nodes.items():
            if site["type"] != "sample":
                continue
            if site["infer"].get("_deterministic"):
                deterministic.append(name)
            elif site["is_observed"]:
                observed.append(name)
            else:
                latent.append(name)
        value_shape = {n: s["value"].shape for n, s in _sample_sites(trace)}
        log_prob_shape = {n: torch.as_tensor(s["log_prob"]).shape for n, s in _sample_sites(trace)}
        observed_values = {n: trace.nodes[n]["value"].detach() for n in observed}
        return _Sites(
            latent, deterministic, observed, value_shape, log_prob_shape, observed_values
        )


def _sample_sites(trace):
    return [(n, s) for n, s in trace.nodes.items() if s["type"] == "sample"]


def _check_positive_int(value, name: str) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


@contextlib.contextmanager
def _seeded(seed: int):
    """Seed torch, random and numpy with ``seed``; restore the previous RNG state on exit."""
    try:
        if isinstance(seed, bool):
            raise TypeError
        seed = operator.index(seed)
    except TypeError:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}") from None
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    state = pyro.util.get_rng_state()
    pyro.set_rng_seed(seed)
    try:
        yield
    finally:
        pyro.util.set_rng_state(state)


def _max_plate_nesting(*traces) -> int:
    dims = [
        frame.dim
        for trace in traces
        for _, site in _sample_sites(trace)
        for frame in site["cond_indep_stack"]
        if frame.vectorized and frame.dim is not None
    ]
    return -min(dims) if dims else 0


def _per_draw(value, shape: torch.Size, num_draws: int) -> torch.Tensor:
    """Reshape a (possibly broadcast) value to ``(num_draws, *shape)``.

    ``value`` either lacks the draws dimension (then it is the same for every draw) or has extra
    leading dimensions of which one has size ``num_draws`` and the others size 1.
    """
    value = torch.as_tensor(value)
    extra = value.dim() - len(shape)
    if extra > 0:
        lead = [d for d in value.shape[:extra] if d != 1]
        if len(lead) > 1 or (lead and lead[0] != num_draws):
            raise _NotVectorizable(
                f"shape {tuple(value.shape)} does not match {num_draws} draws of shape "
                f"{tuple(shape)}"
            )
        value = value.reshape((math.prod(value.shape[:extra]),) + value.shape[extra:])
    try:
        return value.expand((num_draws,) + tuple(shape)).contiguous()
    except RuntimeError as error:
        raise _NotVectorizable(str(error)) from None


def _log_prob_sum(trace, shapes: dict[str, torch.Size], num_draws: int) -> torch.Tensor:
    """Per-draw sum of the (scaled, masked) log densities of all sample sites of a trace."""
    total = torch.zeros(num_draws)
    for name, site in _sample_sites(trace):
        if name not in shapes:
            raise _NotVectorizable(f"site {name!r} is not in the prototype trace")
        lp = _per_draw(site["log_prob"].detach(), shapes[name], num_draws)
        total = total + lp.reshape(num_draws, -1).sum(-1)
    return total


def _collect(model_trace, guide_trace, sites: _Sites, guide_sites, num_draws: int) -> _Draws:
    """Read the per-draw quantities of one (vectorized or single-draw) pair of traces."""
    model_trace = prune_subsample_sites(model_trace)
    model_trace.compute_log_prob()
    for name in sites.latent + sites.deterministic + sites.observed:
        if name not in model_trace.nodes:
            raise _NotVectorizable(f"site {name!r} is missing from the model trace")

    def values(names):
        return {
            n: _per_draw(model_trace.nodes[n]["value"].detach(), sites.value_shape[n], num_draws)
            for n in names
        }

    log_likelihood = {
        n: _per_draw(
            model_trace.nodes[n]["unscaled_log_prob"].detach(),
            sites.log_prob_shape[n],
            num_draws,
        )
        for n in sites.observed
    }
    log_q = None
    if guide_trace is not None:
        guide_trace = prune_subsample_sites(guide_trace)
        guide_trace.compute_log_prob()
        log_q = _log_prob_sum(guide_trace, guide_sites.log_prob_shape, num_draws)
    return _Draws(
        latent=values(sites.latent),
        deterministic=values(sites.deterministic),
        log_likelihood=log_likelihood,
        log_joint=_log_prob_sum(model_trace, sites.log_prob_shape, num_draws),
        log_q=log_q,
    )


def _vectorize(fn: Callable, num_draws: int, max_plate_nesting: int) -> Callable:
    return pyro.plate(_DRAWS_PLATE, num_draws, dim=-max_plate_nesting - 1)(fn)


def _assert_same(vectorized: _Draws, single: _Draws) -> None:
    """Raise ``_NotVectorizable`` unless two evaluations of the same draw agree."""
    pairs = [("log p(x, z)", vectorized.log_joint, single.log_joint)]
    if vectorized.log_q is not None and single.log_q is not None:
        pairs.append(("log q(z)", vectorized.log_q, single.log_q))
    for group in ("deterministic", "log_likelihood"):
        for name, value in getattr(vectorized, group).items():
            pairs.append((f"{group} {name!r}", value, getattr(single, group)[name]))
    for label, a, b in pairs:
        if not a.is_floating_point():
            same = torch.equal(a, b)
        else:
            tol = math.sqrt(torch.finfo(a.dtype).eps)
            scale = max(1.0, float(b.abs().max())) if b.numel() and b.isfinite().all() else 1.0
            same = torch.allclose(a, b, rtol=tol, atol=tol * scale, equal_nan=True)
        if not same:
            raise _NotVectorizable(f"{label} differs between the vectorized and one-draw runs")


def _warn_sequential(what: str, error: Exception, num_draws: int) -> None:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    warnings.warn(
        f"{what} does not vectorize over draws ({reason}); evaluating the {num_draws} draws one "
        "at a time, which is slower. Write it to broadcast over a batch dimension on the left "
        "of its plates (for example (X * w).sum(-1), not X @ w).",
        RuntimeWarning,
        stacklevel=4,
    )


class _FixedSubsamples(Messenger):
    """Draw the subsample of each subsampling plate once and reuse it in every later run.

    So all draws (vectorized, one at a time, model and guide) see the same data points, and
    ``log_likelihood`` matches ``observed_data``.
    """

    def __init__(self):
        super().__init__()
        self.indices: dict[str, torch.Tensor] = {}

    def _pyro_sample(self, msg) -> None:
        if site_is_subsample(msg) and msg["value"] is None and msg["name"] in self.indices:
            msg["value"] = self.indices[msg["name"]]
            msg["done"] = True

    def _pyro_post_sample(self, msg) -> None:
        if site_is_subsample(msg) and msg["name"] not in self.indices:
            self.indices[msg["name"]] = msg["value"]


def _replay(fn: Callable, values: dict[str, torch.Tensor]) -> Callable:
    """``fn`` with its latent sites ``values`` fixed (observed and deterministic sites kept)."""
    trace = poutine.Trace()
    for name, value in values.items():
        trace.add_node(name, type="sample", value=value, is_observed=False, infer={})
    return poutine.replay(fn, trace=trace)


def _is_delta(fn) -> bool:
    while True:
        if isinstance(fn, dist.Delta):
            return True
        base = getattr(fn, "base_dist", None)
        if base is None:
            return False
        fn = base


# ----------------------------------------------------------------------------------------------
# Draws given: replay the model on them.


def _model_draws(model, samples: dict, args, kwargs, vectorize: bool) -> tuple[_Draws, _Sites]:
    """Evaluate the model at S given draws ``samples[name]`` of shape ``(S, *site_shape)``."""
    num_draws = next(iter(samples.values())).shape[0]

    def one(i):
        values = {k: v[i] for k, v in samples.items()}
        return poutine.trace(_replay(model, values)).get_trace(*args, **kwargs)

    with poutine.block(), _FixedSubsamples(), torch.no_grad():
        proto = prune_subsample_sites(one(0))
        proto.compute_log_prob()
        sites = _Sites.from_trace(proto)
        unknown = sorted(set(samples) - set(sites.latent))
        if unknown:
            raise ValueError(
                f"samples has draws of {unknown}, which are not latent sample sites of model"
            )
        missing = sorted(set(sites.latent) - set(samples))
        if missing:
            raise ValueError(
                f"samples has no draws of the latent site(s) {missing} of model "
                "(discrete sites marginalized by NUTS are not supported)"
            )

        def sequential():
            parts = [_collect(proto, None, sites, None, 1)]
            parts += [_collect(one(i), None, sites, None, 1) for i in range(1, num_draws)]
            return _Draws.cat(parts)

        if not vectorize:
            return sequential(), sites
        nesting = _max_plate_nesting(proto)
        try:
            reshaped = {}
            for name, value in samples.items():
                fn = proto.nodes[name]["fn"]
                batch_ndim = len(fn.batch_shape)
                if batch_ndim > nesting:
                    raise _NotVectorizable(f"site {name!r} has batch dims outside its plates")
                reshaped[name] = value.reshape(
                    (num_draws,) + (1,) * (nesting - batch_ndim) + value.shape[1:]
                )
            trace = poutine.trace(
                _replay(_vectorize(model, num_draws, nesting), reshaped)
            ).get_trace(*args, **kwargs)
            draws = _collect(trace, None, sites, None, num_draws)
            for i in sorted({0, num_draws - 1}):
                _assert_same(draws.select(i), _collect(one(i), None, sites, None, 1))
        except Exception as error:  # noqa: BLE001 - any failure means: not vectorizable
            _warn_sequential("model", error, num_draws)
            return sequential(), sites
        return draws, sites


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


# ----------------------------------------------------------------------------------------------
# Draws from a guide: replay the model on them.


def _guide_draws(
    model, guide, num_draws: int, args, kwargs, vectorize: bool
) -> tuple[_Draws, _Sites]:
    """Draw S times from the guide, replay the model, and evaluate both."""
    with poutine.block(), _FixedSubsamples(), torch.no_grad():
        proto_model, proto_guide = get_importance_trace(
            "flat", math.inf, model, guide, args, kwargs
        )
        sites = _Sites.from_trace(proto_model)
        if not sites.latent:
            raise ValueError(
                "model has no latent sample sites: there is nothing for the guide to approximate"
            )
        guide_sites = _Sites.from_trace(proto_guide)
        nesting = _max_plate_nesting(proto_model, proto_guide)

        def sequential():
            parts = [_collect(proto_model, proto_guide, sites, guide_sites, 1)]
            for _ in range(num_draws - 1):
                model_trace, guide_trace = get_importance_trace(
                    "flat", nesting, model, guide, args, kwargs
                )
                parts.append(_collect(model_trace, guide_trace, sites, guide_sites, 1))
            return _Draws.cat(parts)

        if not vectorize:
            return sequential(), sites
        try:
            model_trace, guide_trace = get_importance_trace(
                "flat",
                nesting + 1,
                _vectorize(model, num_draws, nesting),
                _vectorize(guide, num_draws, nesting),
                args,
                kwargs,
            )
            draws = _collect(model_trace, guide_trace, sites, guide_sites, num_draws)
            _check_guide_draws(model, guide, draws, guide_trace, sites, guide_sites, args, kwargs)
        except Exception as error:  # noqa: BLE001 - any failure means: not vectorizable
            _warn_sequential("model or guide", error, num_draws)
            return sequential(), sites
        return draws, sites


def _check_guide_draws(model, guide, draws, guide_trace, sites, guide_sites, args, kwargs):
    """Recompute the first and last vectorized draws one at a time and compare."""
    num_draws = draws.log_joint.shape[0]
    guide_trace = prune_subsample_sites(guide_trace)
    is_messenger = isinstance(poutine.unwrap(guide), poutine.messenger.Messenger)
    for i in sorted({0, num_draws - 1}):
        drawn = draws.select(i)
        latent = {k: v[0] for k, v in drawn.latent.items()}
        model_trace = poutine.trace(_replay(model, latent)).get_trace(*args, **kwargs)
        single = _collect(model_trace, None, sites, None, 1)
        if not is_messenger:
            # Condition on the guide's random choices only: its Delta sites (the unpacked
            # latents of AutoContinuous guides) are recomputed, as a Delta has no density off
            # its point and a recomputation may differ in the last bit.
            values = {
                name: _per_draw(site["value"].detach(), guide_sites.value_shape[name], num_draws)[
                    i
                ]
                for name, site in _sample_sites(guide_trace)
                if not _is_delta(site["fn"])
            }
            single_guide = poutine.trace(poutine.condition(guide, values)).get_trace(
                *args, **kwargs
            )
            single_guide = prune_subsample_sites(single_guide)
            single_guide.compute_log_prob()
            single.log_q = _log_prob_sum(single_guide, guide_sites.log_prob_shape, 1)
        _assert_same(drawn, single)


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
    num_samples = _check_positive_int(num_samples, "num_samples")
    with _seeded(seed):
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
