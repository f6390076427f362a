"""Pyro-tutorial-style programs, written as a Pyro user writes them, each with its closed form.

Every program broadcasts over a particle dimension on the left. Each comes with its data, an
exact guide where the posterior is in reach (so that every importance weight is the evidence
Z, and every divergence has a closed-form value there) and the log evidence log Z:

- ``coin``: Beta-Bernoulli (the coin-fairness tutorial), with a Beta guide;
- ``regression``: Bayesian linear regression with an intercept and known noise;
- ``hierarchical``: nested plates (groups and items), both subsampled, with a structured guide
  (mu, then each group given mu);
- ``ar1``: an AR(1) series in ``pyro.markov`` with a latent coefficient, a
  ``pyro.deterministic`` forecast, a ``pyro.factor`` and a tempered (``poutine.scale``)
  likelihood; conjugate, since its log joint is quadratic in the coefficient;
- ``VAE``: a variational autoencoder with ``pyro.module``; linear, it is probabilistic PCA, whose
  encoder can be the exact posterior;
- ``gmm``: the Gaussian mixture tutorial, with its assignment sampled in the guide, or
  enumerated (``enumerated_gmm``);
- ``hmm``: a two-state HMM over a plate of sequences, its states enumerated (also under
  ``poutine.scale``: ``tempered_hmm``), and the same HMM with the states summed out by a
  hand-written forward algorithm in a ``pyro.factor`` (``hmm_forward``).
"""

import math

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import config_enumerate
from pyro.ops.indexing import Vindex
from torch import nn
from torch.distributions import constraints

_F64 = {"dtype": torch.float64}


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def gaussian_log_z(log_joint, point=0.0):
    """log of the integral over a scalar theta of exp(log_joint(theta)), for a log joint that is
    exactly quadratic in theta: read off at -1, 0 and 1. Also the posterior mean and sd."""
    at = [float(log_joint(torch.tensor(point + d, **_F64))) for d in (-1.0, 0.0, 1.0)]
    precision = 2 * at[1] - at[0] - at[2]
    slope = (at[2] - at[0]) / 2
    mean = point + slope / precision
    log_z = at[1] + slope**2 / (2 * precision) + 0.5 * math.log(2 * math.pi / precision)
    return log_z, mean, precision**-0.5


# ---- Beta-Bernoulli ----------------------------------------------------------------------

FLIPS = (torch.rand(40, generator=_gen(10), **_F64) < 0.7).to(torch.float64)
COIN_PRIOR = (10.0, 10.0)


def coin(flips):
    fairness = pyro.sample("fairness", dist.Beta(*(flips.new_tensor(a) for a in COIN_PRIOR)))
    with pyro.plate("flips", flips.shape[0]):
        pyro.sample("obs", dist.Bernoulli(fairness), obs=flips)


def coin_guide(flips):
    alpha_q = pyro.param("alpha_q", flips.new_tensor(3.0), constraint=constraints.positive)
    beta_q = pyro.param("beta_q", flips.new_tensor(3.0), constraint=constraints.positive)
    pyro.sample("fairness", dist.Beta(alpha_q, beta_q))


def coin_posterior(flips=FLIPS):
    """The posterior's Beta parameters and the log evidence log B(a', b') - log B(a, b)."""
    heads = float(flips.sum())
    a, b = COIN_PRIOR[0] + heads, COIN_PRIOR[1] + flips.shape[0] - heads

    def log_beta(x, y):
        return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)

    return a, b, log_beta(a, b) - log_beta(*COIN_PRIOR)


def coin_exact():
    """Set ``coin_guide``'s parameters to the exact posterior."""
    a, b, _ = coin_posterior()
    pyro.param("alpha_q", torch.tensor(a, **_F64), constraint=constraints.positive)
    pyro.param("beta_q", torch.tensor(b, **_F64), constraint=constraints.positive)


# ---- Bayesian linear regression ----------------------------------------------------------

REG_N, REG_SIGMA = 30, 0.8
REG_X = torch.randn(REG_N, 2, generator=_gen(11), **_F64) @ torch.tensor(
    [[1.0, 0.7], [0.0, 0.7]], **_F64
)
REG_Y = 0.5 + (REG_X * torch.tensor([1.5, -0.8], **_F64)).sum(-1)
REG_Y = REG_Y + REG_SIGMA * torch.randn(REG_N, generator=_gen(12), **_F64)


def regression(x, y):
    """y ~ N(a + x . b, sigma^2), a ~ N(0, 2^2), b ~ N(0, I): the posterior of (a, b) is a
    correlated Gaussian."""
    a = pyro.sample("a", dist.Normal(x.new_tensor(0.0), 2.0))
    b = pyro.sample("b", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
    mean = a + (x * b).sum(-1)  # broadcasts over particles, unlike x @ b
    with pyro.plate("data", x.shape[0]):
        pyro.sample("y", dist.Normal(mean, REG_SIGMA), obs=y)


def regression_posterior(x=REG_X, y=REG_Y):
    """Mean and covariance of (a, b), and log Z = log N(y; 0, sigma^2 I + F S0 F^T)."""
    features = torch.cat([torch.ones(x.shape[0], 1, **_F64), x], -1)
    prior_cov = torch.diag(torch.tensor([4.0, 1.0, 1.0], **_F64))
    precision = torch.linalg.inv(prior_cov) + features.T @ features / REG_SIGMA**2
    cov = torch.linalg.inv(precision)
    mean = cov @ features.T @ y / REG_SIGMA**2
    marginal = REG_SIGMA**2 * torch.eye(x.shape[0], **_F64) + features @ prior_cov @ features.T
    log_z = float(dist.MultivariateNormal(torch.zeros_like(y), marginal).log_prob(y))
    return mean, cov, log_z


def set_mvn_guide(guide, mean, cov):
    """Set an ``AutoMultivariateNormal``'s parameters to N(mean, cov)."""
    tril = torch.linalg.cholesky(cov)
    scale = tril.diagonal()
    guide.loc.data.copy_(mean)
    guide.scale = scale
    guide.scale_tril = tril / scale[:, None]


# ---- nested plates with subsampling ------------------------------------------------------

GROUPS, ITEMS = 12, 8
MU_SD, TAU, NOISE = 1.5, 0.7, 1.0
NESTED_Y = (
    torch.randn(GROUPS, generator=_gen(13), **_F64) * TAU
    + 0.8
    + torch.randn(ITEMS, GROUPS, generator=_gen(14), **_F64) * NOISE
)  # NESTED_Y[item, group]


def hierarchical(y, group_size=None, item_size=None):
    mu = pyro.sample("mu", dist.Normal(y.new_tensor(0.0), MU_SD))
    with pyro.plate("groups", GROUPS, subsample_size=group_size, dim=-1) as g_idx:
        g = pyro.sample("g", dist.Normal(mu, TAU))
        with pyro.plate("items", ITEMS, subsample_size=item_size, dim=-2) as i_idx:
            pyro.sample("y", dist.Normal(g, NOISE), obs=y[i_idx][:, g_idx])


def hierarchical_posterior(y=NESTED_Y):
    """mu's posterior (mean, sd); each group's conditional posterior g | mu, y =
    N(shift + slope mu, cond_sd); and log Z (y jointly Gaussian)."""
    ybar_var = TAU**2 + NOISE**2 / ITEMS
    precision = 1 / MU_SD**2 + GROUPS / ybar_var
    mu_mean = float(y.mean(0).sum()) / ybar_var / precision
    g_precision = 1 / TAU**2 + ITEMS / NOISE**2
    shift = y.sum(0) / NOISE**2 / g_precision
    slope = 1 / TAU**2 / g_precision
    flat = y.reshape(-1)  # item-major: entry (i, j) at i * GROUPS + j
    group = torch.arange(GROUPS).repeat(ITEMS)
    cov = MU_SD**2 + TAU**2 * (group[:, None] == group[None, :]).to(torch.float64)
    cov = cov + NOISE**2 * torch.eye(flat.shape[0], **_F64)
    log_z = float(dist.MultivariateNormal(torch.zeros_like(flat), cov).log_prob(flat))
    return (mu_mean, precision**-0.5), (shift, slope, g_precision**-0.5), log_z


def hierarchical_guide(y, group_size=None, item_size=None):
    """mu ~ N(m, s); each group g_j | mu ~ N(shift_j + slope mu, sd_j): the posterior's form."""
    mu_loc = pyro.param("mu_loc", y.new_tensor(0.0))
    mu_scale = pyro.param("mu_scale", y.new_tensor(1.0), constraint=constraints.positive)
    shift = pyro.param("g_shift", y.new_zeros(GROUPS))
    slope = pyro.param("g_slope", y.new_tensor(0.5))
    g_scale = pyro.param("g_scale", y.new_ones(GROUPS), constraint=constraints.positive)
    mu = pyro.sample("mu", dist.Normal(mu_loc, mu_scale))
    with pyro.plate("groups", GROUPS, subsample_size=group_size, dim=-1) as idx:
        pyro.sample("g", dist.Normal(shift[idx] + slope * mu, g_scale[idx]))


def hierarchical_exact():
    (mu_mean, mu_sd), (shift, slope, g_sd), _ = hierarchical_posterior()
    for name, value, constraint in [
        ("mu_loc", torch.tensor(mu_mean, **_F64), constraints.real),
        ("mu_scale", torch.tensor(mu_sd, **_F64), constraints.positive),
        ("g_shift", shift, constraints.real),
        ("g_slope", torch.tensor(slope, **_F64), constraints.real),
        ("g_scale", torch.full((GROUPS,), g_sd, **_F64), constraints.positive),
    ]:
        pyro.param(name, value, constraint=constraint)


# ---- AR(1) with pyro.markov, pyro.deterministic, pyro.factor, poutine.scale --------------

AR_T, AR_PHI, AR_SIGMA, AR_TEMPERATURE = 25, 0.6, 0.5, 0.5
PHI_PRIOR_SD, SHRINK_TO, SHRINK_SD = 0.5, 0.3, 0.4


def _ar_series():
    noise = torch.randn(AR_T, generator=_gen(15), **_F64)
    ys = [noise[0]]
    for t in range(1, AR_T):
        ys.append(AR_PHI * ys[-1] + AR_SIGMA * noise[t])
    return torch.stack(ys)


AR_Y = _ar_series()


def ar1(y):
    """y_0 ~ N(0, 1); y_t ~ N(phi y_{t-1}, sigma^2) tempered by 1/2 (poutine.scale); a soft
    pull of phi towards 0.3 (pyro.factor); the next value's mean recorded (pyro.deterministic)."""
    phi = pyro.sample("phi", dist.Normal(y.new_tensor(0.0), PHI_PRIOR_SD))
    pyro.factor("shrink", -0.5 * ((phi - SHRINK_TO) / SHRINK_SD) ** 2)
    pyro.sample("y_0", dist.Normal(y.new_tensor(0.0), 1.0), obs=y[0])
    with poutine.scale(scale=AR_TEMPERATURE):
        for t in pyro.markov(range(1, y.shape[0])):
            pyro.sample(f"y_{t}", dist.Normal(phi * y[t - 1], AR_SIGMA), obs=y[t])
    pyro.deterministic("forecast", phi * y[-1])


def ar1_log_joint(phi, y=AR_Y):
    """The log joint of ``ar1``, written out by hand."""
    return (
        dist.Normal(0.0, PHI_PRIOR_SD).log_prob(phi)
        - 0.5 * ((phi - SHRINK_TO) / SHRINK_SD) ** 2
        + dist.Normal(0.0, 1.0).log_prob(y[0])
        + AR_TEMPERATURE * dist.Normal(phi * y[:-1], AR_SIGMA).log_prob(y[1:]).sum()
    )


def ar1_posterior():
    """(log Z, mean, sd) of phi: its log joint is quadratic."""
    return gaussian_log_z(ar1_log_joint)


def normal_guide(site):
    def guide(*args, **kwargs):
        loc = pyro.param(f"{site}_loc", torch.tensor(0.0, **_F64))
        scale = pyro.param(
            f"{site}_scale", torch.tensor(1.0, **_F64), constraint=constraints.positive
        )
        pyro.sample(site, dist.Normal(loc, scale))

    return guide


def set_normal_guide(site, loc, scale):
    pyro.param(f"{site}_loc", torch.tensor(loc, **_F64))
    pyro.param(f"{site}_scale", torch.tensor(scale, **_F64), constraint=constraints.positive)


# ---- a variational autoencoder -----------------------------------------------------------

VAE_N, VAE_DATA_DIM, VAE_LATENT, VAE_NOISE = 300, 6, 2, 0.3


def _vae_data():
    z = torch.randn(VAE_N, VAE_LATENT, generator=_gen(16), **_F64)
    mix = torch.randn(VAE_LATENT, VAE_DATA_DIM, generator=_gen(17), **_F64)
    x = torch.tanh(z @ mix) + VAE_NOISE * torch.randn(
        VAE_N, VAE_DATA_DIM, generator=_gen(18), **_F64
    )
    return x


VAE_X = _vae_data()


class VAE(nn.Module):
    """The VAE tutorial's structure: z ~ N(0, I); x ~ N(decoder(z), noise^2 I); the guide is
    N(encoder_loc(x), exp(encoder_log_scale(x))^2). With ``hidden=None`` both nets are linear,
    and the model is probabilistic PCA."""

    def __init__(self, hidden=None):
        super().__init__()

        def net(n_in, n_out):
            if hidden is None:
                return nn.Linear(n_in, n_out)
            return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out))

        self.decoder = net(VAE_LATENT, VAE_DATA_DIM)
        self.encoder_loc = net(VAE_DATA_DIM, VAE_LATENT)
        self.encoder_log_scale = net(VAE_DATA_DIM, VAE_LATENT)
        self.double()

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(VAE_LATENT), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), VAE_NOISE).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder_loc", self.encoder_loc)
        pyro.module("encoder_log_scale", self.encoder_log_scale)
        with pyro.plate("data", x.shape[0]):
            loc, log_scale = self.encoder_loc(x), self.encoder_log_scale(x)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def exact_linear_vae():
    """A linear VAE whose encoder is the exact posterior of its decoder, and log Z.

    The decoder's weight W has orthogonal columns, so the posterior covariance
    noise^2 (W^T W + noise^2 I)^-1 is diagonal and the mean-field encoder can be exact."""
    vae = VAE()
    q, _ = torch.linalg.qr(torch.randn(VAE_DATA_DIM, VAE_LATENT, generator=_gen(19), **_F64))
    weight = q * torch.tensor([1.5, 0.8], **_F64)
    bias = torch.linspace(-0.5, 0.5, VAE_DATA_DIM, **_F64)
    m = weight.T @ weight + VAE_NOISE**2 * torch.eye(VAE_LATENT, **_F64)
    m_inv = torch.linalg.inv(m)
    with torch.no_grad():
        vae.decoder.weight.copy_(weight)
        vae.decoder.bias.copy_(bias)
        vae.encoder_loc.weight.copy_(m_inv @ weight.T)
        vae.encoder_loc.bias.copy_(-(m_inv @ weight.T @ bias))
        vae.encoder_log_scale.weight.zero_()
        vae.encoder_log_scale.bias.copy_(0.5 * (VAE_NOISE**2 * m_inv.diagonal()).log())
    cov = weight @ weight.T + VAE_NOISE**2 * torch.eye(VAE_DATA_DIM, **_F64)
    log_z = float(dist.MultivariateNormal(bias, cov).log_prob(VAE_X).sum())
    return vae, log_z


# ---- the Gaussian mixture, its assignment sampled in the guide ---------------------------

GMM_N = 40
GMM_DATA = torch.cat(
    [
        torch.randn(GMM_N // 2, generator=_gen(20), **_F64) * 0.6 - 2.0,
        torch.randn(GMM_N // 2, generator=_gen(21), **_F64) * 0.6 + 2.5,
    ]
)
#: Globals for the known-globals variant: weights, locs, scale.
GMM_KNOWN = (
    torch.tensor([0.45, 0.55], **_F64),
    torch.tensor([-2.0, 2.5], **_F64),
    torch.tensor(0.6, **_F64),
)


def gmm(data, known=False):
    """The GMM tutorial's model: weights, locs and scale latent (or, ``known=True``, fixed at
    ``GMM_KNOWN``), one assignment per data point."""
    if known:
        weights, locs, scale = GMM_KNOWN
        locs = locs.expand(2)
    else:
        weights = pyro.sample("weights", dist.Dirichlet(data.new_ones(2)))
        scale = pyro.sample("scale", dist.LogNormal(data.new_tensor(0.0), 1.0))
        with pyro.plate("components", 2):
            locs = pyro.sample("locs", dist.Normal(data.new_tensor(0.0), 5.0))
    with pyro.plate("data", data.shape[0]):
        assignment = pyro.sample("assignment", dist.Categorical(weights))
        pyro.sample(
            "obs", dist.Normal(Vindex(locs.unsqueeze(-2))[..., assignment], scale), obs=data
        )


def gmm_responsibilities(data=GMM_DATA):
    """log p(assignment = k | data) and log Z for the known globals."""
    weights, locs, scale = GMM_KNOWN
    joint = weights.log() + dist.Normal(locs, scale).log_prob(data[:, None])
    log_z = joint.logsumexp(-1)
    return joint - log_z[:, None], float(log_z.sum())


def assignment_guide(data, known=False):
    logits = pyro.param("assignment_logits", data.new_zeros(data.shape[0], 2))
    with pyro.plate("data", data.shape[0]):
        pyro.sample("assignment", dist.Categorical(logits=logits))


def gmm_guide(data, known=False):
    """Mean-field over the globals; the assignment sampled per data point (score function)."""
    conc = pyro.param("weights_conc", data.new_ones(2), constraint=constraints.positive)
    scale_loc = pyro.param("scale_loc", data.new_tensor(0.0))
    locs_loc = pyro.param("locs_loc", data.new_tensor([-0.5, 0.5]))
    locs_scale = pyro.param(
        "locs_scale", data.new_tensor([0.3, 0.3]), constraint=constraints.positive
    )
    pyro.sample("weights", dist.Dirichlet(conc))
    pyro.sample("scale", dist.LogNormal(scale_loc, 0.2))
    with pyro.plate("components", 2):
        pyro.sample("locs", dist.Normal(locs_loc, locs_scale))
    assignment_guide(data)


# ---- a two-state HMM over a plate of sequences -------------------------------------------

HMM_SEQUENCES, HMM_T, HMM_SD = 5, 8, 0.7


def _hmm_data():
    gen = _gen(22)
    states = torch.zeros(HMM_SEQUENCES, HMM_T, dtype=torch.long)
    for t in range(1, HMM_T):
        flip = torch.rand(HMM_SEQUENCES, generator=gen) < 0.2
        states[:, t] = torch.where(flip, 1 - states[:, t - 1], states[:, t - 1])
    means = torch.tensor([-1.0, 1.0], **_F64)
    return means[states] + HMM_SD * torch.randn(HMM_SEQUENCES, HMM_T, generator=gen, **_F64)


HMM_Y = _hmm_data()  # (sequences, time)


def _hmm_globals(ys):
    probs = pyro.sample("probs_x", dist.Dirichlet(0.8 * torch.eye(2, **_F64) + 0.2).to_event(1))
    locs = pyro.sample("locs", dist.Normal(ys.new_tensor([-1.0, 1.0]), 1.0).to_event(1))
    return probs, locs


@config_enumerate
def hmm(ys):
    """The HMM tutorial's form: states enumerated in parallel along ``pyro.markov``."""
    probs, locs = _hmm_globals(ys)
    with pyro.plate("sequences", ys.shape[0], dim=-1):
        x = 0
        for t in pyro.markov(range(ys.shape[1])):
            x = pyro.sample(f"x_{t}", dist.Categorical(Vindex(probs)[..., x, :]))
            pyro.sample(f"y_{t}", dist.Normal(Vindex(locs)[..., x], HMM_SD), obs=ys[:, t])


def hmm_forward(ys):
    """The same HMM with its states summed out by the forward algorithm (log space)."""
    probs, locs = _hmm_globals(ys)
    log_trans = probs.log()
    with pyro.plate("sequences", ys.shape[0], dim=-1):
        log_alpha = log_trans[..., 0, :] + dist.Normal(locs, HMM_SD).log_prob(ys[:, 0, None])
        for t in range(1, ys.shape[1]):
            step = (log_alpha.unsqueeze(-1) + log_trans).logsumexp(-2)
            log_alpha = step + dist.Normal(locs, HMM_SD).log_prob(ys[:, t, None])
        pyro.factor("hmm", log_alpha.logsumexp(-1))


def hmm_guide(ys):
    conc = pyro.param("conc", 4 * torch.eye(2, **_F64) + 1.0, constraint=constraints.positive)
    loc = pyro.param("locs_loc", ys.new_tensor([-0.8, 0.9]))
    scale = pyro.param("locs_scale", ys.new_tensor([0.4, 0.4]), constraint=constraints.positive)
    pyro.sample("probs_x", dist.Dirichlet(conc).to_event(1))
    pyro.sample("locs", dist.Normal(loc, scale).to_event(1))


def tempered_hmm(ys):
    """The HMM under ``poutine.scale``: every site, the enumerated states too, at scale 1/2."""
    with poutine.scale(scale=0.5):
        hmm(ys)


#: The mixture tutorial as written for TraceEnum_ELBO: its assignment enumerated.
enumerated_gmm = config_enumerate(gmm)


def gmm_globals_guide(data):
    """``gmm_guide`` without the assignment, which the enumerated model sums out."""
    conc = pyro.param("weights_conc", data.new_ones(2), constraint=constraints.positive)
    scale_loc = pyro.param("scale_loc", data.new_tensor(0.0))
    locs_loc = pyro.param("locs_loc", data.new_tensor([-0.5, 0.5]))
    pyro.sample("weights", dist.Dirichlet(conc))
    pyro.sample("scale", dist.LogNormal(scale_loc, 0.2))
    with pyro.plate("components", 2):
        pyro.sample("locs", dist.Normal(locs_loc, 0.3))
