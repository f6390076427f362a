r"""One entry point for four MCMC kernels, and Gibbs sampling of discrete latent sites.

:func:`run_mcmc` samples the posterior :math:`p(z \mid x) \propto p(x, z)` of a Pyro model with
NUTS or HMC (:func:`~pyrodiv.inference.baselines.run_nuts`, ``run_hmc``), random-walk
Metropolis-Hastings (Pyro's ``RandomWalkKernel``: :math:`u' = u + h\,\varepsilon` in the
unconstrained space, accepted with probability :math:`\min(1, p(x, z') / p(x, z))`, Jacobians
included, :math:`h` adapted during warmup) or :class:`GibbsKernel`, which keeps the discrete
latent sites and draws each exactly from its full conditional, and moves the continuous sites
by an HMC, NUTS or random-walk step given them (Metropolis/HMC within Gibbs). All return the
``InferenceData`` of :func:`~pyrodiv.inference.baselines.run_nuts`; with Gibbs the discrete
sites are in the ``posterior`` group, in their integer dtype.

The Gibbs conditional. Let :math:`d` be a discrete site inside plates :math:`I` (one element
:math:`d_i` per plate index :math:`i`, conditionally independent given everything outside the
plates, which is what a Pyro plate declares), and :math:`r` every other latent value. Then

.. math::

    p(d_i = k \mid r, x) = \frac{\exp \ell_i(k)}{\sum_{k'} \exp \ell_i(k')}, \qquad
    \ell_i(k) = \sum_{s \ni d} \sum_{j \notin I}
        \log p(s_{ij} \mid \mathrm{pa}(s)) \Big|_{d_i = k},

the sum over the sites :math:`s` whose log-density depends on :math:`d` (its own prior term and
its children), summed over their dimensions that are not :math:`d`'s plates. The terms are read
from one trace of the model under ``poutine.enum`` with :math:`d` enumerated in parallel and
everything else conditioned, so all :math:`K` values and all :math:`i` are scored at once, and
normalized in log space (``logsumexp``). The sites are swept in the model's order, then the
continuous sites move by one step of the inner kernel, whose potential is
:math:`-\log p(x, z_c, d)` at the current :math:`d`; each step leaves :math:`p(z \mid x)`
invariant, so the sweep does. The inner kernel adapts its step size (and, for HMC and NUTS,
its mass matrix) during warmup, as it does alone.

Chains. Chain ``c`` is seeded with ``seed + c``, as in :mod:`pyrodiv.inference.baselines`.
``"rwmh"`` and ``"gibbs"`` chains run one after another in this process.

Example (the talk's two-component mixture, its assignment site ``z`` kept)::

    >>> import torch, pyro, pyro.distributions as dist
    >>> from pyro.ops.indexing import Vindex
    >>> def mixture(x):
    ...     w = pyro.sample("w", dist.Beta(2.0, 2.0))
    ...     with pyro.plate("data", len(x)):
    ...         z = pyro.sample("z", dist.Categorical(torch.stack([1 - w, w], -1)))
    ...         pyro.sample("x", dist.Normal(Vindex(torch.tensor([-1.0, 1.0]))[z], 1.0), obs=x)
    >>> idata = run_mcmc(mixture, torch.randn(8), kernel="gibbs", num_samples=100,
    ...                  warmup_steps=100, kernel_kwargs={"continuous": "rwmh"})
    >>> idata.posterior["z"].shape, str(idata.posterior["z"].dtype)
    ((1, 100, 8), 'int64')
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Mapping

import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer import HMC, MCMC, NUTS
from pyro.infer.autoguide.initialization import InitMessenger, init_to_uniform
from pyro.infer.mcmc import RandomWalkKernel
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel
from pyro.poutine.subsample_messenger import _Subsample
from torch.distributions import constraints
from torch.distributions.transforms import Transform

from ..validation import check_int, seeded
from .baselines import _CHAIN_METHODS, run_hmc, run_nuts
from .inference_data import _samples_to_idata

__all__ = ["GibbsKernel", "run_mcmc"]

KERNELS = ("nuts", "hmc", "rwmh", "gibbs")
_CONTINUOUS = {"hmc": HMC, "nuts": NUTS, "rwmh": RandomWalkKernel}


class _DiscreteValues(Transform):
    """The float representation of a discrete site in the flat state of ``pyro.infer.MCMC``;
    its inverse gives the values back in the site's dtype (``MCMC.get_samples`` applies it)."""

    domain = constraints.real
    codomain = constraints.real
    bijective = True

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype

    def _call(self, x):
        return x.to(torch.get_default_dtype())

    def _inverse(self, y):
        return y if self.dtype.is_floating_point else y.round().to(self.dtype)


def _plate_nesting(trace) -> int:
    dims = [
        frame.dim
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized
    ]
    return -min(dims) if dims else 0


def _is_discrete(fn) -> bool:
    support = getattr(fn, "support", None)
    return bool(getattr(fn, "has_enumerate_support", False) or getattr(support, "is_discrete", 0))


def _latent_sites(trace) -> tuple[list[str], list[str]]:
    """Names of the discrete and of the continuous latent sites, in the model's order; a
    ``ValueError`` for a plate that subsamples, a discrete site that cannot be enumerated, or
    a discrete batch dimension outside the plates."""
    discrete, continuous = [], []
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        fn = site["fn"]
        if isinstance(fn, _Subsample):
            if fn.subsample_size is not None and fn.subsample_size < fn.size:
                raise ValueError(
                    f"plate {name!r} subsamples {fn.subsample_size} of {fn.size}: Gibbs "
                    "conditionals need the full data; drop subsample_size"
                )
            continue
        if not _is_discrete(fn):
            group = continuous
        elif not fn.has_enumerate_support:
            raise ValueError(
                f"discrete site {name!r} ({type(fn).__name__}) cannot be enumerated: Gibbs "
                "scores every value, so it needs a finite support (Categorical, Bernoulli, "
                "...) with its batch under pyro.plate, not .to_event()"
            )
        else:
            plate_dims = {f.dim for f in site["cond_indep_stack"] if f.vectorized}
            batch = fn.batch_shape
            for i, size in enumerate(batch):
                if size > 1 and i - len(batch) not in plate_dims:
                    raise ValueError(
                        f"discrete site {name!r} has batch dimension {i - len(batch)} of "
                        f"size {size} outside any pyro.plate: wrap it in a plate, so that "
                        "each element is drawn from its own conditional"
                    )
            group = discrete
        group.append(name)
    return discrete, continuous


class GibbsKernel(MCMCKernel):
    r"""Metropolis/HMC within Gibbs: discrete latent sites drawn exactly from their full
    conditionals, continuous sites moved by an inner Pyro kernel.

    Every latent site with an enumerable support (``Categorical``, ``Bernoulli``, ...,
    marked for enumeration or not) is discrete. One step draws each discrete site from its
    full conditional :math:`p(d_i = k \mid \text{rest}, x) \propto \exp \ell_i(k)` (see
    :mod:`pyrodiv.inference.mcmc_kernels`; one enumerated trace scores all values :math:`k` and
    elements :math:`i`), then takes one step of the inner kernel on the continuous sites.

    :param model: a Pyro model; each discrete site's batch dimensions must be plates.
    :param continuous: the inner kernel, ``"hmc"`` (default), ``"nuts"`` or ``"rwmh"``.
    :param continuous_kwargs: options of the inner kernel (``pyro.infer.HMC``, ``NUTS`` or
        ``RandomWalkKernel``), for example ``{"num_steps": 5}``.
    :param max_plate_nesting: the number of plate dimensions (found from one trace if None).

    ``pyro.infer.MCMC(GibbsKernel(model), ...).get_samples()`` gives the discrete sites in
    their own dtype. Diagnostics (acceptance rate, HMC divergences) are the inner kernel's.

    Example (a coin ``c`` chooses the prior mean of ``mu``)::

        >>> import torch, pyro, pyro.distributions as dist
        >>> from pyro.infer import MCMC
        >>> def model(y):
        ...     c = pyro.sample("c", dist.Bernoulli(0.5))
        ...     mu = pyro.sample("mu", dist.Normal(4.0 * c - 2.0, 1.0))
        ...     with pyro.plate("data", len(y)):
        ...         pyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> mcmc = MCMC(GibbsKernel(model, continuous="rwmh"), num_samples=50,
        ...             warmup_steps=50, disable_progbar=True)
        >>> mcmc.run(torch.zeros(3))
        >>> mcmc.get_samples()["c"].shape
        torch.Size([50])
    """

    def __init__(
        self,
        model: Callable,
        continuous: str = "hmc",
        continuous_kwargs: Mapping | None = None,
        max_plate_nesting: int | None = None,
    ):
        if not callable(model):
            raise ValueError(f"model must be a callable Pyro model, got {type(model).__name__}")
        if continuous not in _CONTINUOUS:
            raise ValueError(f"continuous must be one of {tuple(_CONTINUOUS)}, got {continuous!r}")
        if max_plate_nesting is not None:
            max_plate_nesting = check_int(max_plate_nesting, "max_plate_nesting", 0)
        self.model = model
        self.continuous = continuous
        self.continuous_kwargs = dict(continuous_kwargs or {})
        self.max_plate_nesting = max_plate_nesting
        self.transforms = None
        self._inner = None
        self._values: dict[str, torch.Tensor] = {}
        self._initial_params = None

    def setup(self, warmup_steps, *args, **kwargs):
        """Trace the model once with its arguments ``*args, **kwargs``: sort the latent sites
        into discrete and continuous, draw the first discrete values from the prior, and set
        up the inner kernel (``warmup_steps`` adaptation steps) on the conditioned model."""
        self._args, self._kwargs = args, kwargs
        # Continuous sites start as the inner kernel's init_strategy says (init_to_value for
        # a flat dist.ImproperUniform prior), discrete ones from the prior given them.
        init = self.continuous_kwargs.get("init_strategy", init_to_uniform)

        def start(site):
            return site["fn"].sample().detach() if _is_discrete(site["fn"]) else init(site)

        with poutine.block():
            trace = poutine.trace(InitMessenger(start)(self.model)).get_trace(*args, **kwargs)
        self._nesting = (
            _plate_nesting(trace) if self.max_plate_nesting is None else self.max_plate_nesting
        )
        self.discrete_sites, self.continuous_sites = _latent_sites(trace)
        if not self.discrete_sites and not self.continuous_sites:
            raise ValueError("model has no latent sample sites: there is nothing to sample")
        # Discrete values start at a prior draw; the first sweep redraws them given z_c.
        self._values.clear()
        self._values.update({n: trace.nodes[n]["value"].detach() for n in self.discrete_sites})
        self.transforms = {n: _DiscreteValues(v.dtype) for n, v in self._values.items()}
        params = {}
        if self.continuous_sites:
            options = dict(self.continuous_kwargs)
            if self.continuous != "rwmh":
                options.setdefault("max_plate_nesting", self._nesting)
            # The condition handler reads self._values (updated in place) at every call.
            conditioned = poutine.condition(self.model, data=self._values)
            inner = _CONTINUOUS[self.continuous](conditioned, **options)
            inner.setup(warmup_steps, *args, **kwargs)
            self._inner = inner
            self.transforms.update(inner.transforms)
            params.update(inner.initial_params)
        params.update({n: self.transforms[n](v) for n, v in self._values.items()})
        self._initial_params = params

    @property
    def initial_params(self):
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params):
        self._initial_params = dict(params)
        if self._inner is not None:
            self._inner.initial_params = {n: params[n] for n in self.continuous_sites}

    def conditional_log_probs(self, name: str, params: Mapping) -> tuple[torch.Tensor, ...]:
        r"""The full conditional of the discrete site ``name`` at the state ``params`` (as
        :meth:`sample` takes it; call :meth:`setup` first): the normalized
        :math:`\log p(d_i = k \mid \text{rest}, x)`, shape ``(*plate_sizes, K)`` over all
        ``max_plate_nesting`` plate dimensions (size 1 for the plates that do not hold the
        site), and the ``K`` enumerated values, shape ``(K, *event_shape)``."""
        if name not in self.discrete_sites:
            raise ValueError(f"{name!r} is not a discrete latent site ({self.discrete_sites})")
        data = {n: self.transforms[n].inv(params[n]) for n in self.continuous_sites}
        data.update(
            {n: self.transforms[n].inv(params[n]) for n in self.discrete_sites if n != name}
        )

        def mark(msg):
            return {"enumerate": "parallel"} if msg["name"] == name else {}

        model = poutine.infer_config(poutine.condition(self.model, data=data), mark)
        model = poutine.enum(model, first_available_dim=-1 - self._nesting)
        with poutine.block(), torch.no_grad():
            trace = poutine.trace(model).get_trace(*self._args, **self._kwargs)
            trace.compute_log_prob()
        site = trace.nodes[name]
        rank = self._nesting + 1
        plates = {f.dim for f in site["cond_indep_stack"] if f.vectorized}
        other_dims = [d for d in range(-self._nesting, 0) if d not in plates]
        total = 0.0
        for other, node in trace.nodes.items():
            if node["type"] != "sample":
                continue
            log_prob = torch.as_tensor(node["log_prob"])
            if log_prob.dim() > rank:
                raise ValueError(
                    f"site {other!r} has log-density shape {tuple(log_prob.shape)}, more "
                    f"dimensions than the {self._nesting} plate(s) and the enumeration of "
                    f"{name!r}: declare its batch dimensions with pyro.plate or .to_event()"
                )
            if other != name and (log_prob.dim() < rank or log_prob.shape[0] == 1):
                continue  # does not depend on the enumerated site
            total = total + (log_prob.sum(other_dims, keepdim=True) if other_dims else log_prob)
        total = total.movedim(0, -1)
        values = site["value"].reshape((-1,) + tuple(site["fn"].event_shape))
        return total - total.logsumexp(-1, keepdim=True), values

    def _draw(self, name: str, params: Mapping) -> torch.Tensor:
        log_probs, values = self.conditional_log_probs(name, params)
        index = dist.Categorical(logits=log_probs).sample()
        return values[index].reshape(self._values[name].shape)

    def sample(self, params):
        """One sweep: each discrete site from its full conditional, then one step of the
        inner kernel. ``params`` maps continuous sites to unconstrained values and discrete
        sites to their values as floats; returns the new state in the same form."""
        for name in self.discrete_sites:
            self._values[name] = self.transforms[name].inv(params[name])
        for name in self.discrete_sites:
            self._values[name] = self._draw(name, {**params, **self._as_params()})
        z = {n: params[n] for n in self.continuous_sites}
        if self._inner is not None:
            # The potential changed with the discrete values: recompute it at z.
            if isinstance(self._inner, HMC):
                self._inner.clear_cache()
            else:
                self._inner._energy_last = self._inner.potential_fn(z)
            z = self._inner.sample(z)
        return {**z, **self._as_params()}

    def _as_params(self) -> dict:
        return {n: self.transforms[n](v) for n, v in self._values.items()}

    def logging(self):
        return None if self._inner is None else self._inner.logging()

    def diagnostics(self):
        if self._inner is None:
            return {"acceptance rate": 1.0}
        return self._inner.diagnostics()

    def cleanup(self):
        if self._inner is not None:
            self._inner.cleanup()


def _check_sites(model, args, kwargs, seed, kernel: str) -> None:
    """Refuse, before sampling, a model without latent sites, and discrete sites for the
    kernels that would sum them out. A model with a site that cannot be sampled from its prior
    (``dist.ImproperUniform``) is left to the sampler."""
    try:
        with seeded(seed), poutine.block(), torch.no_grad():
            trace = poutine.trace(model).get_trace(*args, **kwargs)
    except NotImplementedError:
        return
    latent = {
        name: site
        for name, site in trace.nodes.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and not isinstance(site["fn"], _Subsample)
    }
    if not latent:
        raise ValueError("model has no latent sample sites: there is nothing to sample")
    discrete = [name for name, site in latent.items() if _is_discrete(site["fn"])]
    if discrete and kernel != "gibbs":
        raise ValueError(
            f"kernel={kernel!r} cannot keep the discrete latent site(s) {discrete} (Pyro sums "
            "them out, and the InferenceData needs their draws): use kernel='gibbs', which "
            "samples them from their full conditionals"
        )


def _run_sequential(name, make_kernel, model, args, kwargs, options) -> object:
    """Chains ``c = 0, 1, ...`` one after another, each seeded with ``seed + c``."""
    num_samples, warmup_steps, num_chains, seed, progress_bar = options
    runs = []
    start = time.perf_counter()
    for c in range(num_chains):
        with seeded(seed + c):
            mcmc = MCMC(
                make_kernel(),
                num_samples=num_samples,
                warmup_steps=warmup_steps,
                num_chains=1,
                disable_progbar=not progress_bar,
            )
            mcmc.run(*args, **kwargs)
        runs.append((mcmc.get_samples(), mcmc._diagnostics[0] or {}))
    wall_time = time.perf_counter() - start
    samples = {k: torch.stack([s[k] for s, _ in runs]) for k in runs[0][0]}
    diverging = torch.zeros(num_chains, num_samples, dtype=torch.bool)
    for c, (_, diagnostics) in enumerate(runs):
        diverging[c, [int(i) for i in diagnostics.get("divergences", [])]] = True
    attrs = {
        "sampler": name,
        "num_warmup": warmup_steps,
        "num_chains": num_chains,
        "chain_method": "sequential",
        "seed": seed,
        "wall_time_s": wall_time,
        "acceptance_rate": [float(d.get("acceptance rate", float("nan"))) for _, d in runs],
    }
    _warn_on_acceptance(name, attrs["acceptance_rate"])
    return _samples_to_idata(model, samples, args, kwargs, {"diverging": diverging}, attrs)


def _warn_on_acceptance(name: str, rates: list[float]) -> None:
    """A chain that (almost) never moves, or a random walk of tiny steps, mixes badly."""
    step = "kernel_kwargs init_step_size" if name == "RWMH" else "continuous_kwargs step_size"
    for c, rate in enumerate(rates):
        if rate < 0.05 or (name == "RWMH" and rate > 0.9):
            what = "rejects almost every proposal" if rate < 0.05 else "takes tiny steps"
            warnings.warn(
                f"{name} chain {c} accepted {rate:.1%} of its proposals after warmup: it "
                f"{what} and mixes badly; try more warmup_steps or set {step} near the "
                "posterior sd",
                RuntimeWarning,
                stacklevel=3,
            )


def run_mcmc(
    model: Callable,
    *args,
    kernel: str = "nuts",
    num_samples: int = 1000,
    warmup_steps: int = 1000,
    num_chains: int = 1,
    seed: int = 0,
    chain_method: str = "auto",
    kernel_kwargs: Mapping | None = None,
    progress_bar: bool = False,
    **kwargs,
):
    r"""Sample the posterior :math:`p(z \mid x) \propto p(x, z)` of ``model`` with one of four
    MCMC kernels; returns an ``arviz.InferenceData`` with the groups of
    :func:`~pyrodiv.inference.baselines.run_nuts`.

    - ``kernel="nuts"`` / ``"hmc"``: :func:`~pyrodiv.inference.baselines.run_nuts` /
      :func:`~pyrodiv.inference.baselines.run_hmc`; ``kernel_kwargs`` go to ``pyro.infer.NUTS``
      / ``HMC`` (``step_size``, ``num_steps``, ``target_accept_prob``, ...).
    - ``"rwmh"``: random-walk Metropolis-Hastings (``pyro.infer.mcmc.RandomWalkKernel``,
      step size adapted during warmup); ``kernel_kwargs``: ``init_step_size`` (float),
      ``target_accept_prob`` (default 0.234).
    - ``"gibbs"``: :class:`GibbsKernel`, discrete sites drawn exactly from their enumerated
      conditionals and kept in the ``posterior`` group; ``kernel_kwargs``: ``continuous``
      (``"hmc"``, ``"nuts"`` or ``"rwmh"``), ``continuous_kwargs``, ``max_plate_nesting``.

    Only ``"gibbs"`` accepts discrete latent sites; the others refuse them with a
    ``ValueError`` that names them. ``num_samples`` draws per chain follow ``warmup_steps``
    adaptation steps; chain ``c`` is seeded with ``seed + c``. ``chain_method`` applies to NUTS
    and HMC (see :mod:`pyrodiv.inference.baselines`); ``"rwmh"`` and ``"gibbs"`` chains run
    sequentially in this process. ``*args, **kwargs`` are the model's arguments, so the model
    cannot have a data argument named like an option.

    Example::

        >>> import torch, pyro, pyro.distributions as dist
        >>> def model(y):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        ...     with pyro.plate("data", len(y)):
        ...         pyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> idata = run_mcmc(model, torch.randn(20), kernel="rwmh", num_samples=500,
        ...                  warmup_steps=500, kernel_kwargs={"init_step_size": 0.3})
        >>> idata.attrs["sampler"], idata.posterior["mu"].shape
        ('RWMH', (1, 500))
    """
    if not isinstance(kernel, str) or kernel.lower() not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    kernel = kernel.lower()
    if not callable(model):
        raise ValueError(f"model must be a callable Pyro model, got {type(model).__name__}")
    num_samples = check_int(num_samples, "num_samples", 1)
    warmup_steps = check_int(warmup_steps, "warmup_steps", 0)
    num_chains = check_int(num_chains, "num_chains", 1)
    seed = check_int(seed, "seed", 0)
    if kernel_kwargs is not None and not isinstance(kernel_kwargs, Mapping):
        raise ValueError(f"kernel_kwargs must be a dict or None, got {kernel_kwargs!r}")
    options = dict(kernel_kwargs or {})
    _check_sites(model, args, kwargs, seed, kernel)
    if kernel in ("nuts", "hmc"):
        run = run_nuts if kernel == "nuts" else run_hmc
        common = dict(num_samples=num_samples, warmup_steps=warmup_steps, seed=seed)
        common.update(num_chains=num_chains, chain_method=chain_method, kernel_kwargs=options)
        return run(model, *args, **common, progress_bar=progress_bar, **kwargs)
    if chain_method not in _CHAIN_METHODS:
        raise ValueError(f"chain_method must be one of {_CHAIN_METHODS}, got {chain_method!r}")
    if chain_method == "parallel" and num_chains > 1:
        warnings.warn(
            f"kernel={kernel!r} runs its {num_chains} chains sequentially in this process",
            RuntimeWarning,
            stacklevel=2,
        )
    name, kernel_class = ("RWMH", RandomWalkKernel) if kernel == "rwmh" else ("Gibbs", GibbsKernel)
    make_kernel = functools.partial(kernel_class, model, **options)
    try:
        make_kernel()
    except TypeError as error:
        raise ValueError(f"kernel_kwargs for kernel={kernel!r}: {error}") from None
    run_options = (num_samples, warmup_steps, num_chains, seed, progress_bar)
    return _run_sequential(name, make_kernel, model, args, kwargs, run_options)
