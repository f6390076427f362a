r"""Pyro versions of posteriordb posteriors.

Each model is a plain function of its data (keyword tensors, following the Stan data names)
whose observed sites use ``pyro.plate`` and ``obs=``. Latent sites carry the posteriordb
reference parameter names where the Stan program samples them directly (``mu``, ``tau``,
``beta``, ``sigma``, ...). Where the reference stores a transformed parameter (eight schools'
``theta``, the GP's ``f``, GARCH's ``beta1``), that quantity is a ``pyro.deterministic`` site of
the same name, so a trace holds every reference parameter.

Conventions, shared by all models:

* **Particle batch dimension.** Every model broadcasts over batch dimensions on the left of
  the plates, as added by ``Trace_ELBO(vectorize_particles=True)`` or an outer ``pyro.plate``.
  A scalar latent then has shape ``(P, 1)`` (the ``1`` is the data plate) and a ``to_event(1)``
  vector latent ``(P, 1, D)``, so a linear predictor is written ``(X * beta).sum(-1)``, never
  ``X @ beta``; vectors are indexed ``beta[..., k]``.
* **Vector latents** are one site of shape ``(D,)``: ``to_event(1)`` for coefficient-like
  vectors (``beta``, ``mu``, ``sigma``, ``f_tilde``). The one exception is eight schools'
  ``theta_trans``, whose index is the plate's index (school ``j``); it is sampled inside the
  ``schools`` plate, still one site of shape ``(J,)``.
* **Flat priors.** A parameter that the Stan program leaves without a prior has a flat
  (improper) prior there. ``dist.ImproperUniform`` cannot be sampled, so Pyro's NUTS and the
  autoguides' default initialization both fail on it. The zoo uses a documented wide proper
  prior instead: ``Normal(0, flat_scale)`` on the real line and ``HalfNormal(flat_scale)`` on
  the positive half-line, with ``flat_scale = FLAT_SCALE = 1000`` by default (a keyword of
  each model concerned). For the zoo's data the shift of a posterior mean that this causes is
  below 0.001 posterior sd, far below the reference's own Monte Carlo error
  (about 0.01 sd). Parameters on bounded intervals get the exact flat prior, ``Uniform``.
* **Floating point.** Priors are built in the dtype of the data tensors. Use float64 for
  comparisons with the reference (``torch.set_default_dtype(torch.float64)`` before
  :func:`~pyrodiv.zoo.registry.get_model`).

Example::

    >>> import pyro, torch
    >>> from pyrodiv.zoo import eight_schools_noncentered
    >>> sigma = torch.tensor([15.0, 10.0, 16.0])
    >>> tr = pyro.poutine.trace(eight_schools_noncentered).get_trace(J=3, sigma=sigma)
    >>> tr.nodes["theta"]["value"].shape
    torch.Size([3])
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.distributions.torch_distribution import TorchDistribution
from torch.distributions.utils import broadcast_all

FLAT_SCALE = 1000.0
"""Scale of the wide proper priors that stand in for Stan's flat priors."""

__all__ = [
    "FLAT_SCALE",
    "OrderedNormal",
    "arK",
    "diamonds",
    "earnings_logearn_height",
    "eight_schools_noncentered",
    "garch11",
    "garch11_variance",
    "gp_pois_regr",
    "kidiq_kidscore_momiq",
    "kilpisjarvi",
    "low_dim_gauss_mix",
    "mesquite_logmesquite_logvolume",
    "nes2000",
    "sblrc_blr",
    "se_cholesky",
]


def _c(value: float, like: torch.Tensor) -> torch.Tensor:
    """A constant in the dtype and device of ``like``."""
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def _flat_real(like: torch.Tensor, flat_scale: float) -> dist.Normal:
    return dist.Normal(_c(0.0, like), _c(flat_scale, like))


def _flat_positive(like: torch.Tensor, flat_scale: float) -> dist.HalfNormal:
    return dist.HalfNormal(_c(flat_scale, like))


def _linear(X: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``X beta`` for a design matrix (N, D) and a ``to_event(1)`` vector with batch dims."""
    return (X * beta).sum(-1)


class OrderedNormal(TorchDistribution):
    r"""The order statistics of ``size`` iid ``Normal(loc, scale)`` draws.

    .. math::

        p(z) = K! \prod_{k=1}^K \mathcal N(z_k \mid \mu, s), \qquad z_1 < \dots < z_K .

    This is the normalized version of Stan's ``ordered[K] z; z ~ normal(mu, s);`` (Stan drops
    the constant :math:`\log K!`). It is proper and can be sampled (sort iid normal draws), and
    its support ``constraints.ordered_vector`` gives NUTS and autoguides an unconstrained space.

    Example::

        >>> d = OrderedNormal(0.0, 2.0, size=2)
        >>> z = d.sample((5,))
        >>> bool((z[:, 0] < z[:, 1]).all()), d.log_prob(z).shape
        (True, torch.Size([5]))
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.ordered_vector
    has_rsample = True

    def __init__(self, loc, scale, size: int, validate_args=None):
        self.loc, self.scale = broadcast_all(loc, scale)
        self.size = int(size)
        super().__init__(self.loc.shape, torch.Size([self.size]), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(OrderedNormal, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape)
        new.scale = self.scale.expand(batch_shape)
        new.size = self.size
        super(OrderedNormal, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape=()):
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return (self.loc[..., None] + self.scale[..., None] * eps).sort(dim=-1).values

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        lp = dist.Normal(self.loc[..., None], self.scale[..., None]).log_prob(value).sum(-1)
        return lp + math.lgamma(self.size + 1)


def eight_schools_noncentered(J: int, sigma: torch.Tensor, y: torch.Tensor | None = None):
    r"""Eight schools, non-centred (posteriordb ``eight_schools-eight_schools_noncentered``).

    .. math::

        \mu \sim \mathcal N(0, 5), \quad \tau \sim \text{HalfCauchy}(5), \quad
        \tilde\theta_j \sim \mathcal N(0, 1), \quad
        \theta_j = \mu + \tau \tilde\theta_j, \quad
        y_j \sim \mathcal N(\theta_j, \sigma_j), \qquad j = 1..J .

    Latent sites: ``mu``, ``tau``, ``theta_trans`` (shape (J,), sampled inside the
    ``schools`` plate). Deterministic: ``theta`` (shape (J,)), as stored by the reference.
    Observed: ``y``.

    Example::

        >>> import pyro, torch
        >>> sigma = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
        >>> y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
        >>> tr = pyro.poutine.trace(eight_schools_noncentered).get_trace(J=8, sigma=sigma, y=y)
        >>> tr.nodes["theta_trans"]["value"].shape, tr.nodes["y"]["is_observed"]
        (torch.Size([8]), True)
    """
    if sigma.shape[-1] != J:
        raise ValueError(f"sigma has {sigma.shape[-1]} entries, expected J = {J}")
    mu = pyro.sample("mu", dist.Normal(_c(0.0, sigma), _c(5.0, sigma)))
    tau = pyro.sample("tau", dist.HalfCauchy(_c(5.0, sigma)))
    with pyro.plate("schools", J):
        theta_trans = pyro.sample("theta_trans", dist.Normal(_c(0.0, sigma), _c(1.0, sigma)))
        theta = pyro.deterministic("theta", mu + tau * theta_trans, event_dim=0)
        pyro.sample("y", dist.Normal(theta, sigma), obs=y)


def _regression(
    X: torch.Tensor,
    obs_name: str,
    obs: torch.Tensor | None,
    beta_prior: dist.Distribution,
    sigma_prior: dist.Distribution,
):
    """Shared body: beta ~ beta_prior (to_event(1)), sigma ~ sigma_prior, y ~ N(X beta, sigma)."""
    beta = pyro.sample("beta", beta_prior.expand([X.shape[-1]]).to_event(1))
    sigma = pyro.sample("sigma", sigma_prior)
    with pyro.plate("data", X.shape[-2]):
        pyro.sample(obs_name, dist.Normal(_linear(X, beta), sigma), obs=obs)


def kidiq_kidscore_momiq(
    mom_iq: torch.Tensor,
    kid_score: torch.Tensor | None = None,
    *,
    flat_scale: float = FLAT_SCALE,
):
    r"""Kid's IQ score on mother's IQ (posteriordb ``kidiq-kidscore_momiq``).

    .. math::

        \beta_1, \beta_2 \sim \text{flat} \approx \mathcal N(0, \texttt{flat\_scale}), \quad
        \sigma \sim \text{HalfCauchy}(2.5), \quad
        \text{kid\_score}_i \sim \mathcal N(\beta_1 + \beta_2\,\text{mom\_iq}_i, \sigma).

    The flat prior on ``beta`` is replaced by ``Normal(0, flat_scale)`` (see the module notes).
    The raw ``mom_iq`` (near 100) makes the posterior of ``beta`` strongly correlated, which
    defeats plain SVI from Pyro's default init: the learning rate must decay to well below the
    posterior sd of ``beta[..., 1]`` (about 0.06).

    Latent sites: ``beta`` (shape (2,)), ``sigma``. Observed: ``kid_score``.

    Example::

        >>> import pyro, torch
        >>> tr = pyro.poutine.trace(kidiq_kidscore_momiq).get_trace(
        ...     mom_iq=torch.tensor([100.0, 110.0]), kid_score=torch.tensor([80.0, 90.0]))
        >>> tr.nodes["beta"]["value"].shape
        torch.Size([2])
    """
    X = torch.stack([torch.ones_like(mom_iq), mom_iq], -1)
    _regression(
        X,
        "kid_score",
        kid_score,
        _flat_real(mom_iq, flat_scale),
        dist.HalfCauchy(_c(2.5, mom_iq)),
    )


def earnings_logearn_height(
    height: torch.Tensor,
    earn: torch.Tensor | None = None,
    *,
    flat_scale: float = FLAT_SCALE,
):
    r"""Log earnings on height (posteriordb ``earnings-logearn_height``).

    .. math::

        \beta \sim \text{flat}, \quad \sigma \sim \text{flat on } (0, \infty), \quad
        \log(\text{earn}_i) \sim \mathcal N(\beta_1 + \beta_2\,\text{height}_i, \sigma).

    Flat priors are ``Normal(0, flat_scale)`` for ``beta`` and ``HalfNormal(flat_scale)`` for
    ``sigma``. The observed site is ``log_earn`` (the log of ``earn``), as in the Stan program.

    Latent sites: ``beta`` (shape (2,)), ``sigma``. Observed: ``log_earn``.

    Example::

        >>> import pyro, torch
        >>> tr = pyro.poutine.trace(earnings_logearn_height).get_trace(
        ...     height=torch.tensor([66.0, 70.0]), earn=torch.tensor([20000.0, 30000.0]))
        >>> tr.nodes["log_earn"]["value"].round().tolist()
        [10.0, 10.0]
    """
    X = torch.stack([torch.ones_like(height), height], -1)
    log_earn = None if earn is None else torch.log(earn)
    _regression(
        X,
        "log_earn",
        log_earn,
        _flat_real(height, flat_scale),
        _flat_positive(height, flat_scale),
    )


def mesquite_logmesquite_logvolume(
    diam1: torch.Tensor,
    diam2: torch.Tensor,
    canopy_height: torch.Tensor,
    weight: torch.Tensor | None = None,
    *,
    flat_scale: float = FLAT_SCALE,
):
    r"""Log mesquite weight on log canopy volume (``mesquite-logmesquite_logvolume``).

    .. math::

        \beta \sim \text{flat}, \quad \sigma \sim \text{flat on } (0, \infty), \quad
        \log(\text{weight}_i) \sim \mathcal N\big(\beta_1 + \beta_2
            \log(\text{diam1}_i\,\text{diam2}_i\,\text{canopy\_height}_i), \sigma\big).

    Flat priors are ``Normal(0, flat_scale)`` and ``HalfNormal(flat_scale)``.

    Latent sites: ``beta`` (shape (2,)), ``sigma``. Observed: ``log_weight``.

    Example::

        >>> import pyro, torch
        >>> one = torch.ones(3)
        >>> tr = pyro.poutine.trace(mesquite_logmesquite_logvolume).get_trace(one, one, one)
        >>> tr.nodes["log_weight"]["value"].shape
        torch.Size([3])
    """
    log_canopy_volume = torch.log(diam1 * diam2 * canopy_height)
    X = torch.stack([torch.ones_like(log_canopy_volume), log_canopy_volume], -1)
    log_weight = None if weight is None else torch.log(weight)
    _regression(
        X,
        "log_weight",
        log_weight,
        _flat_real(diam1, flat_scale),
        _flat_positive(diam1, flat_scale),
    )


def kilpisjarvi(
    x: torch.Tensor,
    pmualpha: float,
    psalpha: float,
    pmubeta: float,
    psbeta: float,
    y: torch.Tensor | None = None,
    *,
    flat_scale: float = FLAT_SCALE,
):
    r"""Kilpisjärvi summer temperature trend (posteriordb ``kilpisjarvi_mod-kilpisjarvi``).

    .. math::

        \alpha \sim \mathcal N(\text{pmualpha}, \text{psalpha}), \quad
        \beta \sim \mathcal N(\text{pmubeta}, \text{psbeta}), \quad
        \sigma \sim \text{flat on } (0, \infty), \quad
        y_i \sim \mathcal N(\alpha + \beta x_i, \sigma).

    The flat prior on ``sigma`` is ``HalfNormal(flat_scale)``. The posterior is badly
    conditioned (``x`` is far from 0, so ``alpha`` and ``beta`` are almost perfectly
    correlated).

    Latent sites: ``alpha``, ``beta``, ``sigma`` (all scalars). Observed: ``y``.

    Example::

        >>> import pyro, torch
        >>> x = torch.tensor([3952.0, 3953.0, 3954.0])
        >>> y = torch.tensor([8.3, 10.9, 9.4])
        >>> tr = pyro.poutine.trace(kilpisjarvi).get_trace(x, 9.3, 100.0, 0.0, 0.033, y=y)
        >>> tr.nodes["alpha"]["value"].shape, tr.observation_nodes
        (torch.Size([]), ['y'])
    """
    alpha = pyro.sample("alpha", dist.Normal(_c(pmualpha, x), _c(psalpha, x)))
    beta = pyro.sample("beta", dist.Normal(_c(pmubeta, x), _c(psbeta, x)))
    sigma = pyro.sample("sigma", _flat_positive(x, flat_scale))
    with pyro.plate("data", x.shape[-1]):
        pyro.sample("y", dist.Normal(alpha + beta * x, sigma), obs=y)


def nes2000(
    real_ideo: torch.Tensor,
    race_adj: torch.Tensor,
    age_discrete: torch.Tensor,
    educ1: torch.Tensor,
    gender: torch.Tensor,
    income: torch.Tensor,
    partyid7: torch.Tensor | None = None,
    *,
    flat_scale: float = FLAT_SCALE,
):
    r"""Party identification in the 2000 NES survey (posteriordb ``nes2000-nes``).

    .. math::

        \beta \sim \text{flat}, \quad \sigma \sim \text{flat on } (0, \infty), \\
        \text{partyid7}_i \sim \mathcal N(\beta_1 + \beta_2\,\text{real\_ideo}_i
            + \beta_3\,\text{race\_adj}_i + \beta_4 [\text{age}_i = 2]
            + \beta_5 [\text{age}_i = 3] + \beta_6 [\text{age}_i = 4]
            + \beta_7\,\text{educ1}_i + \beta_8\,\text{gender}_i
            + \beta_9\,\text{income}_i, \sigma),

    where age is ``age_discrete`` (an integer 1..4). Flat priors are ``Normal(0, flat_scale)``
    and ``HalfNormal(flat_scale)``. All arguments but ``age_discrete`` are real tensors.

    Latent sites: ``beta`` (shape (9,)), ``sigma``. Observed: ``partyid7``.

    Example::

        >>> import pyro, torch
        >>> z = torch.ones(4)
        >>> age = torch.tensor([1, 2, 3, 4])
        >>> tr = pyro.poutine.trace(nes2000).get_trace(z, z, age, z, z, z)
        >>> tr.nodes["beta"]["value"].shape
        torch.Size([9])
    """
    dt = real_ideo
    X = torch.stack(
        [
            torch.ones_like(real_ideo),
            real_ideo,
            race_adj,
            (age_discrete == 2).to(dt.dtype),
            (age_discrete == 3).to(dt.dtype),
            (age_discrete == 4).to(dt.dtype),
            educ1,
            gender,
            income,
        ],
        -1,
    )
    _regression(
        X, "partyid7", partyid7, _flat_real(dt, flat_scale), _flat_positive(dt, flat_scale)
    )


def sblrc_blr(X: torch.Tensor, y: torch.Tensor | None = None):
    r"""Bayesian linear regression without intercept (posteriordb ``sblrc-blr``).

    .. math::

        \beta_d \sim \mathcal N(0, 10), \quad \sigma \sim \text{HalfNormal}(10), \quad
        y \sim \mathcal N(X\beta, \sigma).

    Latent sites: ``beta`` (shape (D,)), ``sigma``. Observed: ``y``.

    Example::

        >>> import pyro, torch
        >>> tr = pyro.poutine.trace(sblrc_blr).get_trace(torch.ones(4, 5))
        >>> tr.nodes["beta"]["value"].shape, tr.nodes["y"]["value"].shape
        (torch.Size([5]), torch.Size([4]))
    """
    _regression(X, "y", y, dist.Normal(_c(0.0, X), _c(10.0, X)), dist.HalfNormal(_c(10.0, X)))


def arK(K: int, y: torch.Tensor):
    r"""Autoregressive model of order K (posteriordb ``arK-arK``).

    .. math::

        \alpha \sim \mathcal N(0, 10), \quad \beta_k \sim \mathcal N(0, 10), \quad
        \sigma \sim \text{HalfCauchy}(2.5), \quad
        y_t \sim \mathcal N\Big(\alpha + \sum_{k=1}^K \beta_k y_{t-k}, \sigma\Big),
        \quad t = K+1..T.

    The model is conditional on the first K values of the series, so ``y`` (length T) is
    required; the observed site ``y`` holds ``y[K:]``. Because ``y`` is observed, the
    recursion is a regression on the lagged series (a (T-K, K) matrix), and it broadcasts over
    batch dimensions of the parameters.

    Latent sites: ``alpha``, ``beta`` (shape (K,)), ``sigma``. Observed: ``y`` (shape (T-K,)).

    Example::

        >>> import pyro, torch
        >>> tr = pyro.poutine.trace(arK).get_trace(K=2, y=torch.randn(10))
        >>> tr.nodes["beta"]["value"].shape, tr.nodes["y"]["value"].shape
        (torch.Size([2]), torch.Size([8]))
    """
    T = y.shape[-1]
    if not 0 < K < T:
        raise ValueError(f"need 0 < K < T, got K = {K}, T = {T}")
    # lags[t, k] = y[K + t - (k + 1)]: the (k+1)-th lag of the observation y[K + t].
    lags = torch.stack([y[K - 1 - k : T - 1 - k] for k in range(K)], -1)
    alpha = pyro.sample("alpha", dist.Normal(_c(0.0, y), _c(10.0, y)))
    beta = pyro.sample("beta", dist.Normal(_c(0.0, y), _c(10.0, y)).expand([K]).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfCauchy(_c(2.5, y)))
    with pyro.plate("data", T - K):
        pyro.sample("y", dist.Normal(alpha + _linear(lags, beta), sigma), obs=y[K:])


def garch11_variance(
    y: torch.Tensor,
    sigma1: float,
    mu: torch.Tensor,
    alpha0: torch.Tensor,
    alpha1: torch.Tensor,
    beta1: torch.Tensor,
) -> torch.Tensor:
    r"""Log conditional variances :math:`\log s_t^2` of a GARCH(1,1) series, for t = 1..T.

    .. math::

        s_1^2 = \sigma_1^2, \qquad
        s_t^2 = \alpha_0 + \alpha_1 (y_{t-1} - \mu)^2 + \beta_1 s_{t-1}^2 .

    The linear recursion is solved in closed form,
    :math:`s_t^2 = \sum_{j \le t} \beta_1^{t-j} e_j` with :math:`e_1 = \sigma_1^2` and
    :math:`e_j = \alpha_0 + \alpha_1 (y_{j-1} - \mu)^2`, in log space by a cumulative
    log-sum-exp: :math:`\log s_t^2 = t \log\beta_1 + \operatorname{logcumsumexp}_{j \le t}
    (\log e_j - j \log\beta_1)`. That is O(T) work, vectorized over the batch dimensions of the
    parameters (no Python loop over t). :math:`\log\beta_1` is clipped below at -30 (so
    :math:`\beta_1 < 10^{-13}` acts as :math:`10^{-13}`), which keeps the exponents finite.
    The terms reach :math:`T |\log\beta_1|` in size, so in float32 the relative error of
    :math:`s_t^2` is about :math:`10^{-7} T |\log\beta_1|` (1e-5 for T = 200 and
    :math:`\beta_1 = 0.3`); float64 is exact to about 1e-13.

    The parameters broadcast against ``y`` along its last (time) dimension, as in a Pyro data
    plate: each is a 0-dim tensor, or has batch shape ``B + (1,)``; the result has shape
    ``(T,)``, or ``B + (T,)``.

    Example::

        >>> y = torch.tensor([0.0, 1.0, -1.0])
        >>> half = torch.tensor(0.5)
        >>> garch11_variance(y, 1.0, torch.tensor(0.0), half, half, half).exp().tolist()
        [1.0, 1.0, 1.5]
    """
    mu, alpha0, alpha1, beta1 = (
        p if p.dim() else p.reshape(1) for p in (mu, alpha0, alpha1, beta1)
    )
    T = y.shape[-1]
    log_rest = torch.log(alpha0 + alpha1 * (y[..., :-1] - mu) ** 2)
    log_first = torch.log(_c(sigma1, y) ** 2).expand(log_rest.shape[:-1] + (1,))
    log_e = torch.cat([log_first, log_rest], -1)
    log_b = torch.log(beta1).clamp(min=-30.0)
    t = torch.arange(T, dtype=y.dtype, device=y.device)
    return t * log_b + torch.logcumsumexp(log_e - t * log_b, dim=-1)


def garch11(y: torch.Tensor, sigma1: float, *, flat_scale: float = FLAT_SCALE):
    r"""GARCH(1,1) volatility model (posteriordb ``garch-garch11``).

    .. math::

        \mu \sim \text{flat}, \quad \alpha_0 \sim \text{flat on } (0, \infty), \quad
        \alpha_1 \sim \text{Uniform}(0, 1), \quad
        \beta_1 \mid \alpha_1 \sim \text{flat on } (0, 1 - \alpha_1), \\
        s_1 = \sigma_1, \quad
        s_t = \sqrt{\alpha_0 + \alpha_1 (y_{t-1} - \mu)^2 + \beta_1 s_{t-1}^2}, \quad
        y_t \sim \mathcal N(\mu, s_t), \quad t = 1..T.

    Priors: ``mu ~ Normal(0, flat_scale)`` and ``alpha0 ~ HalfNormal(flat_scale)`` stand in for
    the flat priors; ``alpha1 ~ Uniform(0, 1)`` is exact. The constraint
    :math:`\beta_1 < 1 - \alpha_1` depends on another parameter, which neither NUTS nor an
    autoguide can follow (both fix a site's support at initialization). So the latent site is
    ``beta1_raw ~ Uniform(0, 1)``, and ``beta1 = (1 - alpha1) * beta1_raw`` is a deterministic
    site. The change of variables has Jacobian :math:`1 - \alpha_1`, added by
    ``pyro.factor("beta1_jacobian", log(1 - alpha1))``, so the joint prior on
    :math:`(\alpha_1, \beta_1)` is flat on the triangle, exactly as in Stan. The variance
    recursion is :func:`garch11_variance` (vectorized, no loop over t).

    ``y`` is required: the model is conditional on the observed series.

    Latent sites: ``mu``, ``alpha0``, ``alpha1``, ``beta1_raw``. Deterministic: ``beta1``.
    Observed: ``y``.

    Example::

        >>> import pyro, torch
        >>> tr = pyro.poutine.trace(garch11).get_trace(y=torch.randn(20), sigma1=0.5)
        >>> bool(tr.nodes["beta1"]["value"] < 1 - tr.nodes["alpha1"]["value"])
        True
    """
    mu = pyro.sample("mu", _flat_real(y, flat_scale))
    alpha0 = pyro.sample("alpha0", _flat_positive(y, flat_scale))
    alpha1 = pyro.sample("alpha1", dist.Uniform(_c(0.0, y), _c(1.0, y)))
    beta1_raw = pyro.sample("beta1_raw", dist.Uniform(_c(0.0, y), _c(1.0, y)))
    beta1 = pyro.deterministic("beta1", (1 - alpha1) * beta1_raw, event_dim=0)
    pyro.factor("beta1_jacobian", torch.log1p(-alpha1))
    log_s2 = garch11_variance(y, sigma1, mu, alpha0, alpha1, beta1)
    with pyro.plate("data", y.shape[-1]):
        pyro.sample("y", dist.Normal(mu, torch.exp(0.5 * log_s2)), obs=y)


def se_cholesky(
    x: torch.Tensor, alpha: torch.Tensor, rho: torch.Tensor, jitter: float = 1e-10
) -> torch.Tensor:
    r"""Cholesky factor of a squared-exponential kernel matrix plus jitter.

    .. math::

        K_{ij} = \alpha^2 \exp\!\big(-(x_i - x_j)^2 / (2\rho^2)\big) + \text{jitter}\,[i = j],
        \qquad L = \operatorname{chol}(K).

    ``alpha`` and ``rho`` are scalars with any batch shape ``B`` (ending in a size-1 data plate
    dimension, or empty); the result has shape ``B[:-1] + (N, N)`` (or ``(N, N)``). The kernel
    and its factorization are computed in float64 and returned in the dtype of ``x``: in float32
    a jitter of :math:`10^{-10}` (Stan's) does not keep ``K`` positive definite.

    Example::

        >>> L = se_cholesky(torch.tensor([0.0, 1.0]), torch.tensor(1.0), torch.tensor(1.0), 0.0)
        >>> round((L @ L.T)[0, 1].item(), 6) == round(math.exp(-0.5), 6)
        True
    """
    x64, alpha64, rho64 = (t.to(torch.float64) for t in (x, alpha, rho))
    d2 = (x64[..., :, None] - x64[..., None, :]) ** 2
    K = alpha64[..., None] ** 2 * torch.exp(-d2 / (2 * rho64[..., None] ** 2))
    K = K + jitter * torch.eye(x.shape[-1], dtype=torch.float64, device=x.device)
    return torch.linalg.cholesky(K).to(x.dtype)


def gp_pois_regr(
    x: torch.Tensor,
    k: torch.Tensor | None = None,
    *,
    jitter: float = 1e-10,
):
    r"""Gaussian-process Poisson regression (posteriordb ``gp_pois_regr-gp_pois_regr``).

    .. math::

        \rho \sim \text{Gamma}(25, 4), \quad \alpha \sim \text{HalfNormal}(2), \quad
        \tilde f \sim \mathcal N(0, I_N), \\
        f = \operatorname{chol}\big(K_{SE}(x; \alpha, \rho) + 10^{-10} I\big)\,\tilde f, \quad
        k_i \sim \text{Poisson}(\exp f_i),

    with :math:`K_{SE}(x)_{ij} = \alpha^2 \exp(-(x_i - x_j)^2 / (2\rho^2))` (Gamma in the
    shape-rate form). ``jitter`` is Stan's :math:`10^{-10}`; the kernel and its Cholesky
    factor are computed in float64 whatever the dtype of ``x`` (see :func:`se_cholesky`), so
    the model also runs in float32. ``k`` is a tensor of counts in a floating dtype.

    Latent sites: ``rho``, ``alpha``, ``f_tilde`` (shape (N,)). Deterministic: ``f`` (shape
    (N,), inside the data plate). Observed: ``k``.

    Example::

        >>> import pyro, torch
        >>> x = torch.linspace(-10, 10, 11)
        >>> tr = pyro.poutine.trace(gp_pois_regr).get_trace(x)
        >>> tr.nodes["f"]["value"].shape
        torch.Size([11])
    """
    N = x.shape[-1]
    rho = pyro.sample("rho", dist.Gamma(_c(25.0, x), _c(4.0, x)))
    alpha = pyro.sample("alpha", dist.HalfNormal(_c(2.0, x)))
    f_tilde = pyro.sample("f_tilde", dist.Normal(_c(0.0, x), _c(1.0, x)).expand([N]).to_event(1))
    L = se_cholesky(x, alpha, rho, jitter)
    with pyro.plate("data", N):
        f = pyro.deterministic("f", _linear(L, f_tilde), event_dim=0)
        pyro.sample("k", dist.Poisson(torch.exp(f)), obs=k)


def low_dim_gauss_mix(N: int, y: torch.Tensor | None = None):
    r"""Two-component Gaussian mixture (posteriordb ``low_dim_gauss_mix-low_dim_gauss_mix``).

    .. math::

        \sigma_k \sim \text{HalfNormal}(2), \quad
        \mu \sim \mathcal N(0, 2)^{\otimes 2} \text{ restricted to } \mu_1 < \mu_2, \quad
        \theta \sim \text{Beta}(5, 5), \\
        y_i \sim \theta\,\mathcal N(\mu_1, \sigma_1) + (1 - \theta)\,\mathcal N(\mu_2, \sigma_2).

    The ordered ``mu`` is :class:`OrderedNormal` (support ``ordered_vector``), which matches
    Stan's ``ordered[2] mu; mu ~ normal(0, 2)`` up to a constant. The component indicator is
    summed out (``MixtureSameFamily``).

    Latent sites: ``mu`` (shape (2,), ordered), ``sigma`` (shape (2,)), ``theta``.
    Observed: ``y``.

    Example::

        >>> import pyro, torch
        >>> tr = pyro.poutine.trace(low_dim_gauss_mix).get_trace(N=5)
        >>> mu = tr.nodes["mu"]["value"]
        >>> mu.shape, bool(mu[0] < mu[1])
        (torch.Size([2]), True)
    """
    like = y if y is not None else torch.zeros(())
    sigma = pyro.sample("sigma", dist.HalfNormal(_c(2.0, like)).expand([2]).to_event(1))
    mu = pyro.sample("mu", OrderedNormal(_c(0.0, like), _c(2.0, like), size=2))
    theta = pyro.sample("theta", dist.Beta(_c(5.0, like), _c(5.0, like)))
    mix = dist.MixtureSameFamily(
        dist.Categorical(probs=torch.stack([theta, 1 - theta], -1)), dist.Normal(mu, sigma)
    )
    with pyro.plate("data", N):
        pyro.sample("y", mix, obs=y)


def diamonds(X: torch.Tensor, Y: torch.Tensor | None = None):
    r"""Diamond prices, a brms linear regression (posteriordb ``diamonds-diamonds``).

    .. math::

        b_k \sim \mathcal N(0, 1), \quad \text{Intercept} \sim t_3(8, 10), \quad
        \sigma \sim \text{Half-}t_3(0, 10), \quad
        Y \sim \mathcal N(\text{Intercept} + X_c b, \sigma),

    where :math:`X_c` is ``X`` without its first (intercept) column, each column centred on
    its mean. The half-t prior is ``FoldedDistribution(StudentT(3, 0, 10))``. The posterior is
    hard (strongly correlated ``b``; N = 5000, 24 coefficients).

    Latent sites: ``b`` (shape (K-1,)), ``Intercept``, ``sigma``. Observed: ``Y``.

    Example::

        >>> import pyro, torch
        >>> X = torch.cat([torch.ones(6, 1), torch.randn(6, 3)], -1)
        >>> tr = pyro.poutine.trace(diamonds).get_trace(X)
        >>> tr.nodes["b"]["value"].shape
        torch.Size([3])
    """
    Xc = X[..., 1:] - X[..., 1:].mean(-2, keepdim=True)
    b = pyro.sample("b", dist.Normal(_c(0.0, X), _c(1.0, X)).expand([Xc.shape[-1]]).to_event(1))
    intercept = pyro.sample("Intercept", dist.StudentT(_c(3.0, X), _c(8.0, X), _c(10.0, X)))
    sigma = pyro.sample(
        "sigma",
        dist.FoldedDistribution(dist.StudentT(_c(3.0, X), _c(0.0, X), _c(10.0, X))),
    )
    with pyro.plate("data", X.shape[-2]):
        pyro.sample("Y", dist.Normal(intercept + _linear(Xc, b), sigma), obs=Y)
