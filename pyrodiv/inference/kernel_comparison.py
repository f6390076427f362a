r"""MCMC kernels next to the divergences: the talk's mixture with its assignments kept and
summed out, its quadrature reference, and the score of every method (accuracy, ESS per second).

**The mixture.** The talk writes a :math:`K`-component Gaussian mixture with its assignment
:math:`z` as a latent site,

.. math::

    \pi \sim \mathrm{Dirichlet}(2, \dots, 2), \qquad
    \mu \sim \mathrm{OrderedNormal}(0, 10^2), \qquad
    z_i \mid \pi \sim \mathrm{Categorical}(\pi), \qquad
    x_i \mid z_i, \mu \sim N(\mu_{z_i}, v_{z_i}),

with the variances :math:`v_k` known (the talk's). :func:`mixture_with_assignments` keeps
:math:`z` (for Gibbs, which draws it from its exact conditional);
:func:`mixture_marginal` sums it out as the talk does,
:math:`\log p(x_i \mid \pi, \mu) = \log \sum_k \pi_k N(x_i; \mu_k, v_k)`
(``MixtureSameFamily``), for NUTS, HMC, random-walk MH and the divergences. The two have the
same posterior over :math:`(\pi, \mu)`.

**Label switching.** The likelihood is unchanged when the components are relabelled, so with
an exchangeable prior the posterior has :math:`K!` copies of each mode. The prior here is
ordered: :class:`OrderedNormal` is :math:`K` independent :math:`N(0, 10^2)` locations
restricted to :math:`\mu_1 < \dots < \mu_K` (density :math:`K! \prod_k N(\mu_k; 0, 10^2)`),
so the posterior is the exchangeable one with each draw's components sorted by location,
and every method sees one copy. Pyro moves :math:`\mu` in the unconstrained space of
``constraints.ordered_vector`` (first location, log gaps).

**The reference.** For two components the posterior of :math:`(\pi_2, \mu_1, \mu_2)` is
three-dimensional: :func:`mixture_quadrature` integrates it on a grid (a coarse grid over
the data's range finds the mass, then a fine one of ``points`` nodes per axis spans 8
posterior sds around it), gives its means and sds, and draws from the cell masses (uniform
within a cell). More components: a long NUTS run on :func:`mixture_marginal`.

**The score.** :func:`score_methods` reads each method's draws against the reference with
:func:`~pyrodiv.inference.comparison.compare_posteriors`: the worst scalar variable's W1 and
the range of sd ratios, both in reference sds; ESS per second is the smallest bulk ESS over
the scalar variables per second of sampling (warmup included) for a chain, and its
independent draws per second of fitting for a divergence.

Example::

    >>> import torch
    >>> x = torch.tensor([-7.5, -6.1, -7.2, 6.8, 7.4, 7.1, 6.2, -8.0])
    >>> ref = mixture_quadrature(x, [1.4, 1.4], points=32)
    >>> [round(m, 1) for m in ref.mean["locs"]]
    [-7.2, 6.9]
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.ops.indexing import Vindex

from . import arviz_adapter
from .comparison import compare_posteriors

__all__ = [
    "OrderedNormal",
    "MixtureReference",
    "mixture_marginal",
    "mixture_quadrature",
    "mixture_with_assignments",
    "TALK_BIMODAL",
    "eight_schools_comparison",
    "mixture_comparison",
    "run_methods",
    "score_methods",
]

#: The talk's bimodal target (as ``pyrodiv.demo.mixtures.MIXTURES["two_even"]``): even weights,
#: means -7 and 7, variance 1.4 each.
TALK_BIMODAL = {"weights": [0.5, 0.5], "means": [-7.0, 7.0], "variances": [1.4, 1.4]}
#: The variables every method is scored on.
MIXTURE_VARIABLES = ("weights", "locs")

#: The prior of the locations: N(0, PRIOR_SD^2) each, ordered; of the weights: Dirichlet(2).
PRIOR_SD, PRIOR_CONCENTRATION = 10.0, 2.0


class OrderedNormal(dist.TorchDistribution):
    r"""``size`` independent :math:`N(\text{loc}, \text{scale}^2)` draws, sorted: the density
    :math:`K!\,\prod_k N(y_k; \text{loc}, \text{scale}^2)` on :math:`y_1 < \dots < y_K`
    (support ``constraints.ordered_vector``).

    Example::

        >>> d = OrderedNormal(0.0, 1.0, 2)
        >>> y = d.sample((3,))
        >>> bool((y[:, 0] < y[:, 1]).all()), d.event_shape
        (True, torch.Size([2]))
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.ordered_vector
    has_rsample = False

    def __init__(self, loc, scale, size: int, validate_args=None):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"OrderedNormal: size must be a positive int, got {size!r}")
        self.loc = torch.as_tensor(loc, dtype=torch.get_default_dtype())
        self.scale = torch.as_tensor(scale, dtype=torch.get_default_dtype())
        self.size = size
        batch = torch.broadcast_shapes(self.loc.shape, self.scale.shape)
        super().__init__(batch, torch.Size([size]), validate_args=validate_args)

    def sample(self, sample_shape=()):
        shape = torch.Size(sample_shape) + self.batch_shape + (self.size,)
        with torch.no_grad():
            draws = self.loc[..., None] + self.scale[..., None] * torch.randn(shape)
            return draws.sort(-1).values

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        normal = dist.Normal(self.loc[..., None], self.scale[..., None])
        return normal.log_prob(value).sum(-1) + math.lgamma(self.size + 1)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return OrderedNormal(
            self.loc.expand(batch_shape), self.scale.expand(batch_shape), self.size
        )


def _priors(x, variances):
    variances = torch.as_tensor(variances, dtype=x.dtype)
    if variances.dim() != 1 or len(variances) < 2 or not bool((variances > 0).all()):
        raise ValueError(f"variances must be 2 or more positive numbers, got {variances}")
    k = len(variances)
    weights = pyro.sample("weights", dist.Dirichlet(x.new_full((k,), PRIOR_CONCENTRATION)))
    locs = pyro.sample("locs", OrderedNormal(0.0, PRIOR_SD, k))
    return weights, locs, variances.sqrt()


def mixture_with_assignments(x, variances):
    r"""The talk's mixture with one assignment ``z`` per point kept as a site (see the
    module doc); ``variances`` are the components' known variances. For
    ``run_mcmc(..., kernel="gibbs")``."""
    weights, locs, scales = _priors(x, variances)
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Categorical(weights), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(Vindex(locs)[..., z], scales[z]), obs=x)


def mixture_marginal(x, variances):
    r"""The same mixture with the assignments summed out,
    :math:`p(x_i \mid \pi, \mu) = \sum_k \pi_k N(x_i; \mu_k, v_k)`."""
    weights, locs, scales = _priors(x, variances)
    with pyro.plate("data", len(x)):
        mix = dist.MixtureSameFamily(dist.Categorical(weights), dist.Normal(locs, scales))
        pyro.sample("x", mix, obs=x)


# ---------------------------------------------------------------- the quadrature reference


@dataclass
class MixtureReference:
    r"""The two-component posterior on a grid: ``axes`` (the midpoints of :math:`\pi_2`,
    :math:`\mu_1`, :math:`\mu_2`), ``widths`` (their cell widths), ``mass`` (each cell's
    posterior mass, summing to 1), ``mean`` and ``sd`` (``{"weights": [.., ..], "locs":
    [.., ..]}``)."""

    axes: tuple
    widths: tuple
    mass: torch.Tensor
    mean: dict
    sd: dict

    def draws(self, num_draws: int, seed: int = 0) -> dict:
        """``num_draws`` independent draws: a cell by its mass, then uniform within it;
        ``{"weights": (num_draws, 2), "locs": (num_draws, 2)}``."""
        generator = torch.Generator().manual_seed(seed)
        flat = torch.multinomial(self.mass.flatten(), num_draws, True, generator=generator)
        index = torch.unravel_index(flat, self.mass.shape)
        values = [
            axis[i] + width * (torch.rand(num_draws, generator=generator) - 0.5)
            for axis, width, i in zip(self.axes, self.widths, index, strict=True)
        ]
        w, mu1, mu2 = values
        return {"weights": torch.stack([1 - w, w], -1), "locs": torch.stack([mu1, mu2], -1)}

    def inference_data(self, num_draws: int = 20000, seed: int = 0):
        """The draws of :meth:`draws` as one chain of ``InferenceData``."""
        draws = {k: v[None] for k, v in self.draws(num_draws, seed).items()}
        return arviz_adapter.to_inference_data(draws, attrs={"source": "quadrature"})


def _log_posterior_grid(x, scales, w, mu1, mu2) -> torch.Tensor:
    """Unnormalized log p(w, mu1, mu2 | x) on the grid (W, M1, M2), -inf where mu1 >= mu2."""
    out = torch.empty(len(w), len(mu1), len(mu2), dtype=x.dtype)
    lik1 = dist.Normal(mu1[:, None], scales[0]).log_prob(x)  # (M1, N)
    lik2 = dist.Normal(mu2[:, None], scales[1]).log_prob(x)  # (M2, N)
    for j, wj in enumerate(w):
        terms = torch.logaddexp((1 - wj).log() + lik1[:, None, :], wj.log() + lik2[None])
        out[j] = terms.sum(-1)
    prior = dist.Beta(PRIOR_CONCENTRATION, PRIOR_CONCENTRATION).log_prob(w)[:, None, None]
    normal = dist.Normal(0.0, PRIOR_SD)
    out += prior + normal.log_prob(mu1)[:, None] + normal.log_prob(mu2)
    return out.masked_fill(mu1[:, None] >= mu2, -math.inf)


def _moments(axes, mass):
    means, sds = [], []
    for d, axis in enumerate(axes):
        marginal = mass.sum([e for e in range(3) if e != d])
        mean = (marginal * axis).sum()
        means.append(float(mean))
        sds.append(float(((marginal * (axis - mean) ** 2).sum()).sqrt()))
    return means, sds


def _grid(lo: float, hi: float, n: int):
    width = (hi - lo) / n
    return lo + width * (torch.arange(n, dtype=torch.get_default_dtype()) + 0.5), width


def mixture_quadrature(x, variances, *, points: int = 64, span: float = 8.0):
    r"""The posterior of the two-component :func:`mixture_marginal` by quadrature: a coarse
    grid over :math:`\pi_2 \in (0, 1)` and both locations over the data's range (padded by 3
    component sds) finds the mass; the fine grid has ``points`` midpoints per axis over
    ``span`` sds either side of each coarse mean (clipped to :math:`(0, 1)` for the weight).
    A ``RuntimeError`` when the fine grid's edge cells hold more than :math:`10^{-6}` of the
    largest cell's mass on a side that is not clipped.

    :returns: a :class:`MixtureReference`.
    """
    x = torch.as_tensor(x, dtype=torch.get_default_dtype())
    scales = torch.as_tensor(variances, dtype=x.dtype).sqrt()
    if scales.shape != (2,):
        raise ValueError(
            f"mixture_quadrature integrates two components, got variances {variances}: for "
            "more, use a long NUTS run on mixture_marginal as the reference"
        )
    pad = 3 * float(scales.max())
    lo, hi = float(x.min()) - pad, float(x.max()) + pad
    coarse = [_grid(0.0, 1.0, 40), _grid(lo, hi, 120), _grid(lo, hi, 120)]
    axes = [a for a, _ in coarse]
    log_p = _log_posterior_grid(x, scales, *axes)
    means, sds = _moments(axes, (log_p - log_p.logsumexp((0, 1, 2))).exp())
    fine, clipped = [], []
    for d, (mean, sd) in enumerate(zip(means, sds, strict=True)):
        half = span * max(sd, coarse[d][1])
        a, b = mean - half, mean + half
        if d == 0:
            clipped.append((a <= 0.0, b >= 1.0))
            a, b = max(a, 0.0), min(b, 1.0)
        else:
            clipped.append((False, False))
        fine.append(_grid(a, b, points))
    axes = tuple(a for a, _ in fine)
    log_p = _log_posterior_grid(x, scales, *axes)
    mass = (log_p - log_p.logsumexp((0, 1, 2))).exp()
    top = float(mass.max())
    for d, (low_clipped, high_clipped) in enumerate(clipped):
        edges = mass.movedim(d, 0)
        for side, is_clipped in ((0, low_clipped), (-1, high_clipped)):
            if not is_clipped and float(edges[side].max()) > 1e-6 * top:
                raise RuntimeError(
                    f"mixture_quadrature: the grid's edge along axis {d} holds "
                    f"{float(edges[side].max()) / top:.1e} of the peak cell's mass; "
                    "raise span"
                )
    means, sds = _moments(axes, mass)
    widths = tuple(w for _, w in fine)
    mean = {"weights": [1 - means[0], means[0]], "locs": means[1:]}
    sd = {"weights": [sds[0], sds[0]], "locs": sds[1:]}
    return MixtureReference(axes, widths, mass, mean, sd)


# ---------------------------------------------------------------- running and scoring


def run_methods(
    models: Mapping[str, Callable] | Callable,
    args: Sequence = (),
    kwargs: Mapping | None = None,
    *,
    kernels: Sequence[str] = ("nuts", "hmc", "rwmh"),
    divergences: Sequence[str] = ("reverse_kl", "forward_kl", "jensen_shannon"),
    num_samples: int = 1000,
    warmup_steps: int = 1000,
    fit_draws: int = 1000,
    kernel_kwargs: Mapping[str, Mapping] | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict:
    r"""Sample with each MCMC kernel (:func:`~pyrodiv.inference.mcmc_kernels.run_mcmc`, one
    chain of ``warmup_steps`` + ``num_samples``) and fit with each divergence
    (:func:`~pyrodiv.approximate` with its defaults, ``fit_draws`` guide draws).

    :param models: one model for all, or ``{kernel or divergence name: model, "default":
        model}`` (for example the model with its assignments for ``"gibbs"`` and the
        marginalized one for the rest).
    :param kernel_kwargs: ``{kernel: kernel_kwargs of run_mcmc}``.
    :returns: ``{method: (InferenceData, seconds)}``, the seconds measured around the call
        (warmup and compilation included for a chain, the whole pipeline for a fit).
    """
    from .approximate import approximate
    from .mcmc_kernels import run_mcmc

    def model_for(name):
        if callable(models):
            return models
        return models[name] if name in models else models["default"]

    kwargs = dict(kwargs or {})
    out = {}
    for kernel in kernels:
        began = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = run_mcmc(
                model_for(kernel), *args, kernel=kernel, num_samples=num_samples,
                warmup_steps=warmup_steps, seed=seed,
                kernel_kwargs=dict((kernel_kwargs or {}).get(kernel, {})), **kwargs,
            )  # fmt: skip
        out[kernel] = (idata, time.perf_counter() - began)
        if log is not None:
            log(f"{kernel}: {out[kernel][1]:.1f} s")
    for divergence in divergences:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = approximate(
                model_for(divergence), *args, divergence=divergence, model_kwargs=kwargs,
                seed=seed, progress=False,
            )  # fmt: skip
            idata = fit.to_inference_data(fit_draws)
        out[divergence] = (idata, fit.seconds)
        if log is not None:
            log(f"{divergence}: {fit.seconds:.1f} s")
    return out


def _min_bulk_ess(idata, var_names) -> float:
    table = arviz_adapter.summary(idata, var_names=list(var_names), kind="diagnostics")
    return float(table["ess_bulk"].min())


def score_methods(runs: Mapping, reference, var_names: Sequence[str]) -> list[dict]:
    r"""One row per method of :func:`run_methods`'s ``runs`` against ``reference`` (an
    ``InferenceData``), over the variables ``var_names``: ``method``, ``w1_max``,
    ``sd_ratio_min``, ``sd_ratio_max`` (reference sds), ``seconds`` and ``ess_per_s``; a
    method with a ``sample_stats`` group is a chain (bulk ESS), the others are independent
    draws."""
    idatas = {m: idata.posterior[list(var_names)] for m, (idata, _) in runs.items()}
    idatas = {
        m: arviz_adapter.to_inference_data({v: p[v].values for v in var_names})
        for m, p in idatas.items()
    }
    table = compare_posteriors(idatas, reference=reference)
    rows = []
    for method, (idata, seconds) in runs.items():
        part = table[table["method"] == method]
        is_chain = "sampler" in idata.attrs
        if is_chain:
            ess = _min_bulk_ess(idata, var_names)
        else:
            ess = float(idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"])
        rows.append(
            {
                "method": method,
                "w1_max": float(part["w1"].max()),
                "sd_ratio_min": float(part["sd_ratio"].min()),
                "sd_ratio_max": float(part["sd_ratio"].max()),
                "seconds": float(seconds),
                "ess_per_s": ess / float(seconds),
            }
        )
    return rows


def mixture_comparison(
    *,
    spec: Mapping | None = None,
    num_points: int = 100,
    kernels: Sequence[str] = ("gibbs", "nuts", "hmc", "rwmh"),
    divergences: Sequence[str] = ("reverse_kl", "forward_kl", "jensen_shannon"),
    num_samples: int = 1000,
    warmup_steps: int = 1000,
    reference_draws: int = 20000,
    kernel_kwargs: Mapping[str, Mapping] | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict:
    r"""Every kernel and divergence on the two-component mixture ``spec`` (default the talk's
    bimodal, :data:`TALK_BIMODAL`) fitted to ``num_points`` draws of it (seed ``seed``):
    Gibbs on :func:`mixture_with_assignments`, the rest on :func:`mixture_marginal`, scored
    against :func:`mixture_quadrature`. Unless ``kernel_kwargs`` says otherwise, Gibbs moves
    the weights and locations by NUTS, and HMC's trajectory length is 1 (with Pyro's 2 pi,
    its early warmup takes hundreds of leapfrog steps a draw: the step size starts small along
    the log gap of the ordered locations, whose posterior sd is about 0.02).

    :returns: ``{"rows": score_methods rows, "reference": {"mean", "sd"}, "num_points",
        "num_samples", "warmup_steps", "gibbs": {...}}``; ``"gibbs"`` (when Gibbs ran) has the
        posterior means of the weights and locations, the share of points whose most probable
        assignment is the component they were drawn from, and the drawn weight.
    """
    from .em import draw_mixture

    spec = dict(spec or TALK_BIMODAL)
    x = draw_mixture(spec, num_points, seed=seed)
    generator = torch.Generator().manual_seed(seed)  # draw_mixture's assignments, again
    drawn = torch.multinomial(
        torch.tensor(spec["weights"], dtype=torch.float64), num_points, True, generator=generator
    )
    reference = mixture_quadrature(x, spec["variances"])
    options = {"gibbs": {"continuous": "nuts"}, "hmc": {"trajectory_length": 1.0}}
    options.update(kernel_kwargs or {})
    runs = run_methods(
        {"gibbs": mixture_with_assignments, "default": mixture_marginal},
        (x, spec["variances"]), kernels=kernels, divergences=divergences,
        num_samples=num_samples, warmup_steps=warmup_steps, kernel_kwargs=options, seed=seed,
        log=log,
    )  # fmt: skip
    out = {
        "rows": score_methods(
            runs, reference.inference_data(reference_draws, seed), MIXTURE_VARIABLES
        ),
        "reference": {"mean": reference.mean, "sd": reference.sd},
        "num_points": num_points,
        "num_samples": num_samples,
        "warmup_steps": warmup_steps,
    }
    if "gibbs" in runs:
        idata = runs["gibbs"][0]
        z = arviz_adapter.get_draws(idata, "z").double().reshape(-1, num_points)
        mode = (z.mean(0) > 0.5).long() if len(spec["variances"]) == 2 else None
        out["gibbs"] = {
            "weights_mean": arviz_adapter.get_draws(idata, "weights").mean((0, 1)).tolist(),
            "locs_mean": arviz_adapter.get_draws(idata, "locs").mean((0, 1)).tolist(),
            "weight_drawn": float(drawn.double().mean()),
            "assignments_agreeing": float((mode == drawn).double().mean()),
        }
    return out


def eight_schools_comparison(
    *,
    kernels: Sequence[str] = ("nuts", "hmc", "rwmh"),
    divergences: Sequence[str] = ("reverse_kl", "forward_kl", "jensen_shannon"),
    num_samples: int = 1000,
    warmup_steps: int = 1000,
    posteriordb=None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict:
    r"""Every kernel and divergence on the zoo's eight schools (non-centred), scored against
    posteriordb's reference draws (a ``FileNotFoundError`` when no posteriordb folder is
    found, see :func:`pyrodiv.zoo.posteriordb.posteriordb_path`).

    :returns: ``{"rows": score_methods rows, "num_samples", "warmup_steps"}``.
    """
    from ..zoo.comparison import REFERENCE_DRAWS_PER_CHAIN, _posteriordb_idata, resolve_model

    entry = resolve_model("eight_schools")
    kwargs = entry.kwargs(posteriordb, torch.float64)
    reference = _posteriordb_idata(
        entry, entry.model, kwargs, posteriordb, REFERENCE_DRAWS_PER_CHAIN
    )
    runs = run_methods(
        entry.model, (), kwargs, kernels=kernels, divergences=divergences,
        num_samples=num_samples, warmup_steps=warmup_steps, seed=seed, log=log,
    )  # fmt: skip
    names = [
        v
        for v in arviz_adapter.var_names(reference)
        if all(v in idata.posterior for idata, _ in runs.values())
    ]
    return {
        "rows": score_methods(runs, reference, names),
        "num_samples": num_samples,
        "warmup_steps": warmup_steps,
    }
