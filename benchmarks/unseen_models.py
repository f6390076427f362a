r"""The held-out posteriors of ``benchmarks/unseen_posteriors.py``: Pyro models and data mappings.

Each model is written from its posteriordb Stan program with the zoo's conventions
(:mod:`pyrodiv.zoo.models`): particle batch dimensions on the left, constrained parameters
through the supports of their distributions, latent sites named as in the reference draws, and
Stan's improper flat priors replaced by the wide proper priors ``Normal(0, s)`` /
``HalfNormal(s)`` with ``s = FLAT_SCALE = 1000`` (``dist.ImproperUniform`` cannot be sampled,
so NUTS and the autoguides' initialization fail on it). Where the posterior's own scale makes
1000 informative, ``s`` is raised so that the prior shifts no posterior mean by more than
0.001 posterior sd (the zoo's rule), checked with the exact conjugate posterior at the
reference's mean :math:`\sigma`: earnings in dollars use ``1e7``, mesquite's grams ``1e5``
(at 1000 the shift would be 0.11 sd). The shifts at the chosen scales are at most 0.0009 sd
(kidscore_interaction) and below 2e-5 sd elsewhere. Proper priors are copied as they are.

=======================  ==================================  ==============================
short name               posteriordb posterior               what it tests
=======================  ==================================  ==============================
arma11                   arma-arma11                         a recursion (MA errors), 4-D
gp_regr                  gp_pois_regr-gp_regr                GP marginal likelihood, 3-D
hmm_example              hmm_example-hmm_example             HMM forward algorithm, simplex
                                                             and positive-ordered sites, 4-D
logmesquite              mesquite-logmesquite                regression, collinear logs, 8-D
hmm_drive_0              bball_drive_event_0-hmm_drive_0     HMM, exponential emissions, 6-D
earn_height              earnings-earn_height                regression in dollars: posterior
                                                             sds 10^2 to 10^4, 3-D
logearn_interaction      earnings-logearn_interaction        uncentred interaction, 5-D
kidscore_interaction     kidiq-kidscore_interaction          uncentred interaction (mom_iq
                                                             near 100), half-Cauchy sigma, 5-D
mesquite                 mesquite-mesquite                   untransformed regression in grams:
                                                             sds 36 to 221, 8-D
logmesquite_logvash      mesquite-logmesquite_logvash        log volume = log area + log canopy
                                                             height: collinear, 7-D
logearn_logheight_male   earnings-logearn_logheight_male     log height (sd 0.06 around 4.2):
                                                             intercept-slope correlation
                                                             near -1, 4-D
hmm_drive_1              bball_drive_event_1-hmm_drive_1     HMM, normal emissions, ordered
                                                             (real) sites, sds near 0.005, 6-D
nes1976                  nes1976-nes                         regression, 10-D, N = 1184 (the
                                                             zoo's ``nes2000`` model, other
                                                             data)
sblri                    sblri-blr                           proper priors, posterior sds near
                                                             0.001 (the zoo's ``sblrc_blr``
                                                             model, other data)
=======================  ==================================  ==============================

Example::

    >>> import pyro, torch
    >>> tr = pyro.poutine.trace(regression).get_trace(torch.ones(3, 2), torch.zeros(3))
    >>> tr.nodes["beta"]["value"].shape
    torch.Size([2])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.distributions.torch_distribution import TorchDistribution

from pyrodiv.zoo import get_entry
from pyrodiv.zoo.models import FLAT_SCALE, nes2000, sblrc_blr


def _c(value: float, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


# ---- models ---------------------------------------------------------------------------------


def arma11(y: torch.Tensor):
    r"""ARMA(1, 1) (posteriordb ``arma-arma11``).

    .. math::

        \mu \sim \mathcal N(0, 10), \quad \phi, \theta \sim \mathcal N(0, 2), \quad
        \sigma \sim \text{HalfCauchy}(2.5), \\
        \nu_1 = \mu + \phi\mu, \quad \nu_t = \mu + \phi y_{t-1} + \theta\varepsilon_{t-1},
        \quad \varepsilon_t = y_t - \nu_t, \quad \varepsilon_t \sim \mathcal N(0, \sigma).

    The map :math:`y \mapsto \varepsilon` is triangular with unit diagonal, so Stan's
    ``err ~ normal(0, sigma)`` is the observed site ``y ~ N(nu, sigma)``. The recursion runs
    over time with the parameters' batch shape (a scalar latent is ``(P, 1)`` under particles).
    """
    mu = pyro.sample("mu", dist.Normal(_c(0.0, y), _c(10.0, y)))
    phi = pyro.sample("phi", dist.Normal(_c(0.0, y), _c(2.0, y)))
    theta = pyro.sample("theta", dist.Normal(_c(0.0, y), _c(2.0, y)))
    sigma = pyro.sample("sigma", dist.HalfCauchy(_c(2.5, y)))
    c = y[1:] - mu - phi * y[:-1]  # err_t + theta err_{t-1}, t = 2..T
    err = [y[:1] - mu - phi * mu]
    for t in range(c.shape[-1]):
        err.append(c[..., t : t + 1] - theta * err[-1])
    nu = y - torch.cat(err, -1)
    with pyro.plate("data", y.shape[-1]):
        pyro.sample("y", dist.Normal(nu, sigma), obs=y)


def gp_regr(x: torch.Tensor, y: torch.Tensor):
    r"""Gaussian-process regression, marginal likelihood (posteriordb ``gp_pois_regr-gp_regr``).

    .. math::

        \rho \sim \text{Gamma}(25, 4), \quad \alpha \sim \text{HalfNormal}(2), \quad
        \sigma \sim \text{HalfNormal}(1), \\
        y \sim \mathcal N\big(0,\; K_{SE}(x; \alpha, \rho) + \sigma I\big),

    with :math:`K_{SE}(x)_{ij} = \alpha^2 \exp(-(x_i - x_j)^2 / (2\rho^2))`. As in the Stan
    program, :math:`\sigma` (not :math:`\sigma^2`) is added to the diagonal. The model has no
    plate: a scalar latent is ``(P,)`` under particles and ``y`` one multivariate site.
    """
    rho = pyro.sample("rho", dist.Gamma(_c(25.0, x), _c(4.0, x)))
    alpha = pyro.sample("alpha", dist.HalfNormal(_c(2.0, x)))
    sigma = pyro.sample("sigma", dist.HalfNormal(_c(1.0, x)))
    d2 = (x[:, None] - x[None, :]) ** 2
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    cov = alpha[..., None, None] ** 2 * torch.exp(-d2 / (2 * rho[..., None, None] ** 2))
    cov = cov + sigma[..., None, None] * eye
    mvn = dist.MultivariateNormal(torch.zeros_like(x), scale_tril=torch.linalg.cholesky(cov))
    pyro.sample("y", mvn, obs=y)


class OrderedVectorNormal(TorchDistribution):
    r"""Independent normals restricted to :math:`z_1 < \dots < z_K`, unnormalized.

    ``log_prob`` is :math:`\sum_k \log\mathcal N(z_k \mid \mu_k, s_k)`, the density Stan's
    ``ordered[K] z; target += normal_lpdf(z[k] | mu[k], s[k])`` puts on the constrained set
    (the truncation's normalizing constant is dropped, as in Stan). Unlike the zoo's
    :class:`~pyrodiv.zoo.models.OrderedNormal`, each component has its own location. Sampling
    (used only for initialization) sorts unrestricted draws.
    """

    arg_constraints = {"loc": constraints.real_vector, "scale": constraints.positive}
    support = constraints.ordered_vector
    has_rsample = True

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, validate_args=None):
        self.loc, self.scale = loc, scale
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=validate_args)

    def _restrict(self, z: torch.Tensor) -> torch.Tensor:
        return z.sort(-1).values

    def rsample(self, sample_shape=()):
        shape = self._extended_shape(sample_shape)
        z = self.loc + self.scale * torch.randn(shape, dtype=self.loc.dtype)
        return self._restrict(z)

    def log_prob(self, value):
        return dist.Normal(self.loc, self.scale).log_prob(value).sum(-1)


class PositiveOrderedNormal(OrderedVectorNormal):
    r"""As :class:`OrderedVectorNormal`, on :math:`0 < z_1 < \dots < z_K` (Stan's
    ``positive_ordered[K]``); sampling sorts the absolute values of unrestricted draws."""

    support = constraints.positive_ordered_vector

    def _restrict(self, z: torch.Tensor) -> torch.Tensor:
        return z.abs().sort(-1).values


def _hmm_log_likelihood(log_theta: torch.Tensor, emission: torch.Tensor) -> torch.Tensor:
    r"""Stan's forward algorithm: :math:`\gamma_1 = e_1`,
    :math:`\gamma_{t,k} = \operatorname{logsumexp}_j(\gamma_{t-1,j} + \log\theta_{jk}) + e_{t,k}`,
    returns :math:`\operatorname{logsumexp}_k \gamma_{N,k}`. ``log_theta`` is ``(..., K, K)``
    (row j: from state j), ``emission`` ``(..., N, K)``."""
    gamma = emission[..., 0, :]
    for t in range(1, emission.shape[-2]):
        gamma = (gamma[..., :, None] + log_theta).logsumexp(-2) + emission[..., t, :]
    return gamma.logsumexp(-1)


def hmm_example(y: torch.Tensor, K: int = 2):
    r"""Two-state HMM with unit-variance normal emissions (posteriordb
    ``hmm_example-hmm_example``).

    .. math::

        \theta_1, \theta_2 \sim \text{Dirichlet}(1, 1) \;(\text{Stan: no prior}), \quad
        0 < \mu_1 < \mu_2, \; \mu_1 \sim \mathcal N(3, 1), \; \mu_2 \sim \mathcal N(10, 1), \\
        p(y \mid \theta, \mu) = \sum_{z} \prod_t \theta_{z_{t-1} z_t}\,
        \mathcal N(y_t \mid \mu_{z_t}, 1) \quad (\text{uniform } z_1, \text{ up to } K^{-1}),

    the hidden states summed out by the forward algorithm (a ``pyro.factor``). ``theta1``,
    ``theta2`` are simplex sites, ``mu`` a positive-ordered site.
    """
    if K != 2:
        raise ValueError(f"hmm_example is written for K = 2 states, got K = {K}")
    ones = torch.ones(K, dtype=y.dtype)
    theta1 = pyro.sample("theta1", dist.Dirichlet(ones))
    theta2 = pyro.sample("theta2", dist.Dirichlet(ones))
    loc = torch.tensor([3.0, 10.0], dtype=y.dtype)
    mu = pyro.sample("mu", PositiveOrderedNormal(loc, ones))
    log_theta = torch.stack([theta1, theta2], -2).log()
    emission = dist.Normal(mu[..., None, :], 1.0).log_prob(y[:, None])
    pyro.factor("y", _hmm_log_likelihood(log_theta, emission))


def _drive_hmm(name: str, alpha: torch.Tensor, K: int, ordered: type, emission: Callable):
    r"""The body shared by the basketball-drive HMMs: :math:`\theta_k \sim
    \text{Dirichlet}(\alpha_k)`, ordered :math:`\phi, \lambda` with location-wise priors
    :math:`\mathcal N((0, 3), 1)` (``ordered`` is the distribution class), and the forward
    algorithm on ``emission(phi, lambda)`` (``(..., N, K)``) as the factor ``"uv"``."""
    if K != 2:
        raise ValueError(f"{name} is written for K = 2 states, got K = {K}")
    theta1 = pyro.sample("theta1", dist.Dirichlet(alpha[0]))
    theta2 = pyro.sample("theta2", dist.Dirichlet(alpha[1]))
    loc = torch.tensor([0.0, 3.0], dtype=alpha.dtype)
    ones = torch.ones(K, dtype=alpha.dtype)
    phi = pyro.sample("phi", ordered(loc, ones))
    lam = pyro.sample("lambda", ordered(loc, ones))
    log_theta = torch.stack([theta1, theta2], -2).log()
    pyro.factor(
        "uv", _hmm_log_likelihood(log_theta, emission(phi[..., None, :], lam[..., None, :]))
    )


def hmm_drive_0(u: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor, K: int = 2):
    r"""Two-state HMM of basketball drives, exponential emissions (posteriordb
    ``bball_drive_event_0-hmm_drive_0``).

    .. math::

        \theta_k \sim \text{Dirichlet}(\alpha_k), \quad
        0 < \phi_1 < \phi_2, \; \phi \sim \mathcal N((0, 3), 1), \quad
        0 < \lambda_1 < \lambda_2, \; \lambda \sim \mathcal N((0, 3), 1), \\
        e_{t,k} = \log\text{Exp}(u_t \mid \phi_k) + \log\text{Exp}(v_t \mid \lambda_k),

    the hidden states summed out by the forward algorithm (a ``pyro.factor``), as in
    :func:`hmm_example`.
    """

    def emission(phi, lam):
        return dist.Exponential(phi).log_prob(u[:, None]) + dist.Exponential(lam).log_prob(
            v[:, None]
        )

    _drive_hmm("hmm_drive_0", alpha, K, PositiveOrderedNormal, emission)


def hmm_drive_1(
    u: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor, tau: float, rho: float, K: int = 2
):
    r"""Two-state HMM of basketball drives, normal emissions (posteriordb
    ``bball_drive_event_1-hmm_drive_1``).

    .. math::

        \theta_k \sim \text{Dirichlet}(\alpha_k), \quad
        \phi_1 < \phi_2, \; \phi \sim \mathcal N((0, 3), 1), \quad
        \lambda_1 < \lambda_2, \; \lambda \sim \mathcal N((0, 3), 1), \\
        e_{t,k} = \log\mathcal N(u_t \mid \phi_k, \tau) + \log\mathcal N(v_t \mid \lambda_k, \rho),

    with :math:`\tau, \rho` data; ``phi`` and ``lambda`` are ordered on the real line (Stan's
    ``ordered[K]``, :class:`OrderedVectorNormal`), the rest as :func:`hmm_drive_0`.
    """

    def emission(phi, lam):
        return dist.Normal(phi, tau).log_prob(u[:, None]) + dist.Normal(lam, rho).log_prob(
            v[:, None]
        )

    _drive_hmm("hmm_drive_1", alpha, K, OrderedVectorNormal, emission)


def regression(
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    flat_scale: float = FLAT_SCALE,
    sigma_cauchy: float | None = None,
):
    r"""Linear regression with Stan's flat priors (posteriordb ``mesquite-logmesquite``,
    ``earnings-earn_height``, ``earnings-logearn_interaction``, ``kidiq-kidscore_interaction``,
    ``mesquite-mesquite``, ``mesquite-logmesquite_logvash``,
    ``earnings-logearn_logheight_male``).

    .. math::

        \beta \sim \mathcal N(0, s)^{D} \;(\text{Stan: flat}), \quad
        \sigma \sim \text{HalfNormal}(s) \;(\text{Stan: flat}) \text{ or }
        \text{HalfCauchy}(c), \quad y_n \sim \mathcal N(x_n^\top \beta, \sigma),

    with the design matrix ``X`` (N, D) built from the data as the Stan program's transformed
    data (see ``UNSEEN``), :math:`s` = ``flat_scale`` (1000, or more where the posterior's
    scale needs it) and :math:`c` = ``sigma_cauchy`` where the Stan program has
    ``sigma ~ cauchy(0, c)`` (else ``None``: flat).
    """
    beta = pyro.sample(
        "beta", dist.Normal(_c(0.0, X), _c(flat_scale, X)).expand([X.shape[-1]]).to_event(1)
    )
    if sigma_cauchy is None:
        sigma = pyro.sample("sigma", dist.HalfNormal(_c(flat_scale, X)))
    else:
        sigma = pyro.sample("sigma", dist.HalfCauchy(_c(sigma_cauchy, X)))
    with pyro.plate("data", X.shape[-2]):
        pyro.sample("y", dist.Normal((X * beta).sum(-1), sigma), obs=y)


# ---- data mappings --------------------------------------------------------------------------


def _t(value) -> torch.Tensor:
    return torch.as_tensor(value, dtype=torch.float64)


def _design(d: dict, *columns: torch.Tensor) -> torch.Tensor:
    """The design matrix (N, 1 + len(columns)): an intercept column, then ``columns``."""
    return torch.stack([torch.ones(d["N"], dtype=torch.float64), *columns], -1)


def _mesquite_kwargs(d: dict) -> dict:
    """log weight on (1, log diam1, log diam2, log canopy_height, log total_height,
    log density, group)."""
    logs = [torch.log(_t(d[k])) for k in ("diam1", "diam2", "canopy_height", "total_height")]
    X = _design(d, *logs, torch.log(_t(d["density"])), _t(d["group"]))
    return {"X": X, "y": torch.log(_t(d["weight"]))}


def _mesquite_raw_kwargs(d: dict) -> dict:
    """weight (grams) on (1, diam1, diam2, canopy_height, total_height, density, group),
    untransformed: posterior sds 36 to 221, sigma near 280; flat scale 1e5."""
    keys = ("diam1", "diam2", "canopy_height", "total_height", "density", "group")
    X = _design(d, *(_t(d[k]) for k in keys))
    return {"X": X, "y": _t(d["weight"]), "flat_scale": 1e5}


def _logmesquite_logvash_kwargs(d: dict) -> dict:
    """log weight on (1, log canopy volume, log canopy area, log canopy shape,
    log total_height, group), with volume = diam1 diam2 canopy_height, area = diam1 diam2,
    shape = diam1 / diam2."""
    d1, d2, ch = _t(d["diam1"]), _t(d["diam2"]), _t(d["canopy_height"])
    logs = [torch.log(d1 * d2 * ch), torch.log(d1 * d2), torch.log(d1 / d2)]
    X = _design(d, *logs, torch.log(_t(d["total_height"])), _t(d["group"]))
    return {"X": X, "y": torch.log(_t(d["weight"]))}


def _earn_height_kwargs(d: dict) -> dict:
    """earn (dollars) on (1, height): the posterior sds are 10^4, 10^2 and 10^2.5."""
    return {"X": _design(d, _t(d["height"])), "y": _t(d["earn"]), "flat_scale": 1e7}


def _logearn_interaction_kwargs(d: dict) -> dict:
    """log earn on (1, height, male, height * male): collinear, uncentred predictors."""
    height, male = _t(d["height"]), _t(d["male"])
    return {"X": _design(d, height, male, height * male), "y": torch.log(_t(d["earn"]))}


def _logearn_logheight_male_kwargs(d: dict) -> dict:
    """log earn on (1, log height, male)."""
    X = _design(d, torch.log(_t(d["height"])), _t(d["male"]))
    return {"X": X, "y": torch.log(_t(d["earn"]))}


def _kidscore_interaction_kwargs(d: dict) -> dict:
    """kid_score on (1, mom_hs, mom_iq, mom_hs * mom_iq); sigma ~ HalfCauchy(2.5)."""
    hs, iq = _t(d["mom_hs"]), _t(d["mom_iq"])
    return {"X": _design(d, hs, iq, hs * iq), "y": _t(d["kid_score"]), "sigma_cauchy": 2.5}


def _drive_kwargs(d: dict) -> dict:
    return {"u": _t(d["u"]), "v": _t(d["v"]), "alpha": _t(d["alpha"]), "K": d["K"]}


def _zoo_kwargs(zoo_name: str) -> Callable[[dict], dict]:
    """The data mapping of the zoo entry whose Stan program the posterior shares (float64)."""
    return lambda d: get_entry(zoo_name).data_to_kwargs(d, torch.float64)


# ---- registry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unseen:
    """A held-out posterior: its posteriordb name, Pyro model and data mapping. The model's
    latent sites carry the reference names (no mapping of the draws is needed)."""

    name: str
    posterior: str
    model: Callable
    data_to_kwargs: Callable[[dict], dict]


UNSEEN = {
    e.name: e
    for e in (
        Unseen("arma11", "arma-arma11", arma11, lambda d: {"y": _t(d["y"])}),
        Unseen(
            "gp_regr",
            "gp_pois_regr-gp_regr",
            gp_regr,
            lambda d: {"x": _t(d["x"]), "y": _t(d["y"])},
        ),
        Unseen(
            "hmm_example",
            "hmm_example-hmm_example",
            hmm_example,
            lambda d: {"y": _t(d["y"]), "K": d["K"]},
        ),
        Unseen("logmesquite", "mesquite-logmesquite", regression, _mesquite_kwargs),
        Unseen("hmm_drive_0", "bball_drive_event_0-hmm_drive_0", hmm_drive_0, _drive_kwargs),
        Unseen("earn_height", "earnings-earn_height", regression, _earn_height_kwargs),
        Unseen(
            "logearn_interaction",
            "earnings-logearn_interaction",
            regression,
            _logearn_interaction_kwargs,
        ),
        Unseen(
            "kidscore_interaction",
            "kidiq-kidscore_interaction",
            regression,
            _kidscore_interaction_kwargs,
        ),
        Unseen("mesquite", "mesquite-mesquite", regression, _mesquite_raw_kwargs),
        Unseen(
            "logmesquite_logvash",
            "mesquite-logmesquite_logvash",
            regression,
            _logmesquite_logvash_kwargs,
        ),
        Unseen(
            "logearn_logheight_male",
            "earnings-logearn_logheight_male",
            regression,
            _logearn_logheight_male_kwargs,
        ),
        Unseen(
            "hmm_drive_1",
            "bball_drive_event_1-hmm_drive_1",
            hmm_drive_1,
            lambda d: {**_drive_kwargs(d), "tau": float(d["tau"]), "rho": float(d["rho"])},
        ),
        Unseen("nes1976", "nes1976-nes", nes2000, _zoo_kwargs("nes2000")),
        Unseen("sblri", "sblri-blr", sblrc_blr, _zoo_kwargs("sblrc")),
    )
}
DEFAULT_MODELS = ",".join(UNSEEN)
NUTS_MODELS = "arma11,gp_regr,hmm_example,logmesquite,earn_height,logearn_interaction"
