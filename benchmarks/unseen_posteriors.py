r"""Held-out accuracy of :func:`pyrodiv.approximate` on posteriordb posteriors outside the zoo.

The zoo's twelve posteriors (``../shared/posteriordb``) are the ones the pipeline was tuned on.
This script checks it on other posteriordb posteriors with gold-standard reference draws,
whose Pyro models are written here from their Stan programs with the zoo's conventions
(:mod:`pyrodiv.zoo.models`: particle batch dimensions on the left, constrained parameters
through the supports of their distributions, Stan's flat priors as ``Normal(0, 1000)`` /
``HalfNormal(1000)``):

=====================  ==================================  ==============================
short name             posteriordb posterior               what it tests
=====================  ==================================  ==============================
arma11                 arma-arma11                         a recursion (MA errors), 4-D
gp_regr                gp_pois_regr-gp_regr                GP marginal likelihood, 3-D
hmm_example            hmm_example-hmm_example             HMM forward algorithm, simplex
                                                           and positive-ordered sites, 4-D
logmesquite            mesquite-logmesquite                regression, collinear logs, 8-D
hmm_drive_0            bball_drive_event_0-hmm_drive_0     HMM, exponential emissions, 6-D
earn_height            earnings-earn_height                regression in dollars: posterior
                                                           sds 10^2 to 10^4, 3-D
logearn_interaction    earnings-logearn_interaction        uncentred interaction, 5-D
=====================  ==================================  ==============================

Data and reference draws are read at run time from a posteriordb source tree given by
``--posteriordb``: a checkout of ``stan-dev/posteriordb`` or its bare git directory (files are
then read from ``HEAD`` with ``git show``); nothing is copied into this repository.

Each model is fitted with ``approximate(model, divergence=d)`` (default settings) for the
divergences of ``benchmarks/approximate.py`` and scored by the same functions: 1000 guide
draws and 1000 PSIS-resampled draws against the reference (10 chains thinned to 5000 draws),
worst-variable W1 and sd ratios in reference sds, k-hat, wall time; a fit passes when its W1
max <= 0.25 and every sd ratio is in [0.8, 1.25] (and its divergence stage did not fail).
``--nuts-models`` names the models whose NUTS (1 chain, 1000 warmup + 1000 draws) is run and
timed as a baseline; ``--append`` keeps the rows of the models not run, and the NUTS rows
of the models run without NUTS this time.

Writes ``unseen_posteriors.csv``, ``unseen_posteriors_variables.csv`` and
``unseen_posteriors.md`` to ``--out``::

    OMP_NUM_THREADS=1 python benchmarks/unseen_posteriors.py \
        --posteriordb /path/to/posteriordb [--models arma11,gp_regr] [--nuts-models ''] \\
        [--append] [--render]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import subprocess
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyro
import pyro.distributions as dist
import torch
from approximate import (
    DIVERGENCES,
    W1_LIMIT,
    _summary,
    _warm_up,
    fit_and_resample,
    nuts_reference,
)
from pyro.distributions import constraints
from pyro.distributions.torch_distribution import TorchDistribution

import pyrodiv
from pyrodiv.inference.inference_data import samples_to_inference_data
from pyrodiv.inference.output import num, table
from pyrodiv.zoo.comparison import REFERENCE_DRAWS_PER_CHAIN
from pyrodiv.zoo.models import FLAT_SCALE
from pyrodiv.zoo.posteriordb import group_draws

OUT = Path(__file__).resolve().parent / "results"
#: The full posteriordb repository (a checkout or its git directory): $POSTERIORDB_REPO, else a
#: ``posteriordb`` checkout beside this one.
BESIDE = Path(__file__).resolve().parents[2] / "posteriordb"
MIRROR = os.environ.get("POSTERIORDB_REPO", str(BESIDE))
DB = "posterior_database"


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


class PositiveOrderedNormal(TorchDistribution):
    r"""Independent normals restricted to :math:`0 < z_1 < \dots < z_K`, unnormalized.

    ``log_prob`` is :math:`\sum_k \log\mathcal N(z_k \mid \mu_k, s_k)`, the density Stan's
    ``positive_ordered[K] z; target += normal_lpdf(z[k] | mu[k], s[k])`` puts on the
    constrained set (the truncation's normalizing constant is dropped, as in Stan). Sampling
    (used only for initialization) sorts the absolute values of unrestricted draws.
    """

    arg_constraints = {"loc": constraints.real_vector, "scale": constraints.positive}
    support = constraints.positive_ordered_vector
    has_rsample = True

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, validate_args=None):
        self.loc, self.scale = loc, scale
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=validate_args)

    def rsample(self, sample_shape=()):
        shape = self._extended_shape(sample_shape)
        z = self.loc + self.scale * torch.randn(shape, dtype=self.loc.dtype)
        return z.abs().sort(-1).values

    def log_prob(self, value):
        return dist.Normal(self.loc, self.scale).log_prob(value).sum(-1)


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
    if K != 2:
        raise ValueError(f"hmm_drive_0 is written for K = 2 states, got K = {K}")
    theta1 = pyro.sample("theta1", dist.Dirichlet(alpha[0]))
    theta2 = pyro.sample("theta2", dist.Dirichlet(alpha[1]))
    loc = torch.tensor([0.0, 3.0], dtype=u.dtype)
    ones = torch.ones(K, dtype=u.dtype)
    phi = pyro.sample("phi", PositiveOrderedNormal(loc, ones))
    lam = pyro.sample("lambda", PositiveOrderedNormal(loc, ones))
    log_theta = torch.stack([theta1, theta2], -2).log()
    emission = dist.Exponential(phi[..., None, :]).log_prob(u[:, None]) + dist.Exponential(
        lam[..., None, :]
    ).log_prob(v[:, None])
    pyro.factor("uv", _hmm_log_likelihood(log_theta, emission))


def regression(X: torch.Tensor, y: torch.Tensor, *, flat_scale: float = FLAT_SCALE):
    r"""Linear regression with Stan's flat priors (posteriordb ``mesquite-logmesquite``,
    ``earnings-earn_height``, ``earnings-logearn_interaction``).

    .. math::

        \beta \sim \mathcal N(0, s)^{D}, \quad \sigma \sim \text{HalfNormal}(s)
        \;(\text{Stan: flat}), \quad y_n \sim \mathcal N(x_n^\top \beta, \sigma),

    with the design matrix ``X`` (N, D) built from the data as the Stan program's transformed
    data (see ``UNSEEN``), and :math:`s` = ``flat_scale`` (1000, or more where the posterior's
    scale needs it: earnings in dollars).
    """
    beta = pyro.sample(
        "beta", dist.Normal(_c(0.0, X), _c(flat_scale, X)).expand([X.shape[-1]]).to_event(1)
    )
    sigma = pyro.sample("sigma", dist.HalfNormal(_c(flat_scale, X)))
    with pyro.plate("data", X.shape[-2]):
        pyro.sample("y", dist.Normal((X * beta).sum(-1), sigma), obs=y)


# ---- posteriordb source ---------------------------------------------------------------------


class Source:
    """A posteriordb source tree: a checkout, or a bare git directory read at ``HEAD``."""

    def __init__(self, path: str):
        self.path = Path(path).expanduser()
        self.checkout = (self.path / DB).is_dir()
        if not self.checkout and not (self.path / "HEAD").is_file():
            raise FileNotFoundError(
                f"--posteriordb {str(self.path)!r} is neither a posteriordb checkout (with a "
                f"{DB}/ folder) nor its git directory"
            )

    def _git(self, *args: str) -> bytes:
        where = ["-C", str(self.path)] if self.checkout else ["--git-dir", str(self.path)]
        return subprocess.run(["git", *where, *args], check=True, capture_output=True).stdout

    def commit(self) -> str:
        try:
            return self._git("rev-parse", "HEAD").decode().strip()
        except (subprocess.CalledProcessError, FileNotFoundError):
            return "unknown (not a git tree)"

    def read(self, relative: str) -> bytes:
        if self.checkout:
            return (self.path / relative).read_bytes()
        try:
            return self._git("show", f"HEAD:{relative}")
        except subprocess.CalledProcessError as error:
            raise FileNotFoundError(f"{relative} not in {self.path} at HEAD") from error

    def json_zip(self, relative: str):
        raw = self.read(relative)
        if raw.startswith(b"version https://git-lfs"):
            raise ValueError(f"{relative} is a Git LFS pointer, not the file")
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            return json.loads(z.read(z.namelist()[0]))

    def posterior(self, name: str) -> dict:
        return json.loads(self.read(f"{DB}/posteriors/{name}.json"))

    def data(self, name: str) -> dict:
        data_name = self.posterior(name)["data_name"]
        return self.json_zip(f"{DB}/data/data/{data_name}.json.zip")

    def reference(self, name: str) -> dict[str, torch.Tensor]:
        chains = self.json_zip(f"{DB}/reference_posteriors/draws/draws/{name}.json.zip")
        flat = {k: [c[k] for c in chains] for k in chains[0]}
        return {k: torch.as_tensor(v) for k, v in group_draws(flat).items()}


# ---- registry -------------------------------------------------------------------------------


def _t(value) -> torch.Tensor:
    return torch.as_tensor(value, dtype=torch.float64)


def _mesquite_kwargs(d: dict) -> dict:
    """log weight on (1, log diam1, log diam2, log canopy_height, log total_height,
    log density, group)."""
    logs = [torch.log(_t(d[k])) for k in ("diam1", "diam2", "canopy_height", "total_height")]
    columns = [torch.ones(d["N"]), *logs, torch.log(_t(d["density"])), _t(d["group"])]
    return {"X": torch.stack(columns, -1), "y": torch.log(_t(d["weight"]))}


def _earn_height_kwargs(d: dict) -> dict:
    """earn (dollars) on (1, height): the posterior sds are 10^4, 10^2 and 10^2.5."""
    X = torch.stack([torch.ones(d["N"]), _t(d["height"])], -1)
    return {"X": X, "y": _t(d["earn"]), "flat_scale": 1e7}


def _logearn_interaction_kwargs(d: dict) -> dict:
    """log earn on (1, height, male, height * male): collinear, uncentred predictors."""
    height, male = _t(d["height"]), _t(d["male"])
    X = torch.stack([torch.ones(d["N"]), height, male, height * male], -1)
    return {"X": X, "y": torch.log(_t(d["earn"]))}


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
        Unseen(
            "hmm_drive_0",
            "bball_drive_event_0-hmm_drive_0",
            hmm_drive_0,
            lambda d: {"u": _t(d["u"]), "v": _t(d["v"]), "alpha": _t(d["alpha"]), "K": d["K"]},
        ),
        Unseen("earn_height", "earnings-earn_height", regression, _earn_height_kwargs),
        Unseen(
            "logearn_interaction",
            "earnings-logearn_interaction",
            regression,
            _logearn_interaction_kwargs,
        ),
    )
}
DEFAULT_MODELS = ",".join(UNSEEN)
NUTS_MODELS = "arma11,gp_regr,hmm_example,logmesquite,earn_height,logearn_interaction"


def reference_idata(entry: Unseen, source: Source, kwargs: dict):
    """The reference draws (10 chains, thinned to 400 draws each) as InferenceData."""
    draws = source.reference(entry.posterior)
    step = max(1, next(iter(draws.values())).shape[1] // REFERENCE_DRAWS_PER_CHAIN)
    latents = {k: v[:, ::step] for k, v in draws.items()}
    attrs = {"source": "posteriordb", "posterior": entry.posterior, "thinned_every": step}
    return samples_to_inference_data(entry.model, latents, attrs=attrs, **kwargs)


# ---- runs -----------------------------------------------------------------------------------


def run_model(entry: Unseen, source: Source, divergences, nuts: bool):
    """Fit every divergence to one posterior; the per-variable table and the per-fit rows."""
    kwargs = entry.data_to_kwargs(source.data(entry.posterior))
    idatas = {"posteriordb": reference_idata(entry, source, kwargs)}
    extra = []
    if nuts:
        idatas["nuts"], row = nuts_reference(entry.name, entry.model, kwargs)
        extra.append(row)
    for divergence in divergences:
        began = time.perf_counter()
        try:
            fitted, rows = fit_and_resample(entry.name, entry.model, kwargs, divergence)
        except Exception as error:  # a crash is a result here, recorded and reported
            reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"
            print(f"  {entry.name} {divergence}: FAILED {reason}", flush=True)
            for method in (divergence, f"{divergence}+psis"):
                seconds = time.perf_counter() - began if method == divergence else 0
                extra.append(
                    {"model": entry.name, "method": method, "stages": f"failed: {reason}",
                     "error": reason, "fit_seconds": seconds}
                )  # fmt: skip
            continue
        idatas.update(fitted)
        extra.extend(rows)
    comparison = pyrodiv.compare_posteriors(idatas, reference="posteriordb")
    comparison.insert(0, "model", entry.name)
    return comparison[comparison["method"] != "posteriordb"], extra


def summarize(variables: pd.DataFrame, extra: pd.DataFrame) -> pd.DataFrame:
    """``benchmarks/approximate.py``'s summary (pass rule included), plus the failed fits."""
    for column in (
        "nuts_same_run_s",
        "khat_fit",
        "gradient_evaluations",
        "warnings",
        "error",
        "fit_seconds",
        "model_seconds",
    ):
        if column not in extra.columns:
            extra[column] = math.nan
    summary = _summary(variables, extra, {})
    crashed = extra[extra["error"].notna()][["model", "method", "stages", "error"]]
    summary = pd.concat([summary, crashed], ignore_index=True)
    summary["passes"] = summary["passes"].fillna(False).astype(bool)
    return summary


def _run_times(summary: pd.DataFrame, extra: pd.DataFrame) -> list[str]:
    """Per model: NUTS time, the five fits' time, the whole model's time (fits, draws,
    scoring, NUTS)."""
    rows = []
    for model, group in summary.groupby("model", sort=False):
        fits = group[~group["method"].str.endswith("+psis") & (group["method"] != "nuts")]
        nuts = group.loc[group["method"] == "nuts", "wall_time_s"]
        total = extra.loc[extra["model"] == model, "model_seconds"].dropna()
        rows.append(
            [
                model,
                num(nuts.iloc[0], 1) if len(nuts) else "not run",
                num(fits["wall_time_s"].sum(), 1),
                num(total.iloc[0], 0) if len(total) else "-",
            ]
        )
    header = ["model", "NUTS 1000 + 1000 (s)", "5 fits (s)", "whole model (s)"]
    return [table(header, rows)]


def _pyrodiv_version() -> str:
    """The commit of the pyrodiv source in use, and its uncommitted files, if any."""
    root = Path(pyrodiv.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True
        ).stdout.decode()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "pyrodiv"],
            check=True,
            capture_output=True,
        ).stdout.decode()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown (not a git tree)"
    changed = [line[3:] for line in dirty.splitlines()]
    return f"`{commit.strip()}`" + (
        f" (uncommitted changes in {', '.join(changed)})" if changed else ""
    )


def _markdown(
    summary: pd.DataFrame, extra: pd.DataFrame, command: str, commit: str, version: str
) -> str:
    models = list(dict.fromkeys(summary["model"]))
    lines = [
        "# `pyrodiv.approximate` on posteriordb posteriors outside the zoo",
        "",
        f"Regenerate: `{command}`",
        "",
        f"posteriordb commit: `{commit}`; pyrodiv: {version}. Models written in "
        "`benchmarks/unseen_posteriors.py` "
        f"from the Stan programs: {', '.join(models)}. None of them was used to tune "
        "`approximate`. Default settings of `approximate`, seed 0, float64, one torch thread, "
        "on a shared 2-core machine (under load from other work, so times are rough). "
        "Scored as `benchmarks/approximate.py`: 1000 guide draws "
        "(`method`) or 1000 draws PSIS-resampled from 2000 (`method+psis`) against the "
        "reference (10 chains of 1000, every 2nd draw: 5000 draws); a fit *passes* when its "
        f"worst-variable W1 <= {W1_LIMIT} reference sds, every sd ratio is in [0.8, 1.25], "
        "and the divergence's own stage did not collapse, run away or fail. NUTS: 1 chain, "
        "1000 warmup + 1000 draws, same run, where it was run (with `--append`, the NUTS "
        "rows of models not in `--nuts-models` are kept from the earlier run). k-hat: the "
        "fit's own "
        "(`fit.khat`, 1000 draws).",
        "",
        "## Per divergence",
        "",
    ]
    rows = []
    fits = summary[summary["method"] != "nuts"]
    for method, group in fits.groupby("method", sort=False):
        timed = group[group["nuts_s"].notna()]
        rows.append(
            [
                method,
                f"{int(group['passes'].sum())} of {len(group)}",
                num(group["w1_max"].median(), 3),
                num(group["w1_max"].max(), 3),
                num(group["wall_time_s"].sum(), 1),
                num(timed["wall_time_s"].sum() / timed["nuts_s"].sum(), 3) if len(timed) else "-",
                num(timed["time_fraction"].max(), 3) if len(timed) else "-",
            ]
        )
    header = [
        "method",
        "passes",
        "W1 max (median)",
        "W1 max (worst)",
        "time (s, summed)",
        "time / NUTS, summed",
        "worst fraction",
    ]
    lines += [table(header, rows), "", "## Per model", ""]
    rows = []
    for r in summary.itertuples():
        failed = isinstance(getattr(r, "error", None), str)
        rows.append(
            [
                r.model,
                r.method,
                "yes" if r.passes else "no",
                "crashed" if failed else num(r.w1_max, 3),
                "-" if failed else f"{num(r.sd_ratio_min, 2)} / {num(r.sd_ratio_max, 2)}",
                num(r.khat_fit, 2),
                num(r.wall_time_s, 1),
                num(r.time_fraction, 3),
                "-" if pd.isna(r.gradient_evaluations) else str(int(r.gradient_evaluations)),
            ]
        )
    header = [
        "model",
        "method",
        "passes",
        "W1 max",
        "sd ratio min / max",
        "k-hat",
        "time (s)",
        "x NUTS",
        "gradient evals",
    ]
    lines += [table(header, rows), "", "## Run time", ""]
    lines += _run_times(summary, extra) + ["", "## Stages and warnings", ""]
    for r in summary.itertuples():
        if r.method.endswith("+psis") or r.method == "nuts":
            continue
        lines.append(f"- {r.model}, {r.method}: {r.stages}")
        if isinstance(r.warnings, str) and r.warnings:
            lines.append(f"  - warned: {r.warnings}")
    return "\n".join(lines) + "\n"


def _names(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [n for n in names if n not in UNSEEN]
    if unknown:
        raise ValueError(f"unknown models {unknown}; known: {', '.join(UNSEEN)}")
    return names


def main(args) -> None:
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    out = Path(args.out)
    source = Source(args.posteriordb)
    names, nuts_models = _names(args.models), _names(args.nuts_models)
    files = {k: out / f"unseen_posteriors_{k}.csv" for k in ("variables", "extra")}
    if not args.render:
        version = _pyrodiv_version()
        variables, extra = [], []
        if args.append:  # keep the other models' rows, and NUTS's where it is not rerun

            def kept(table_):
                rerun = table_["model"].isin(names)
                old_nuts = (table_["method"] == "nuts") & ~table_["model"].isin(nuts_models)
                return table_[~rerun | old_nuts]

            variables = [kept(pd.read_csv(files["variables"]))]
            extra = kept(pd.read_csv(files["extra"])).to_dict("records")
        _warm_up()
        for name in names:
            began = time.perf_counter()
            table_, rows = run_model(
                UNSEEN[name], source, args.divergences.split(","), name in nuts_models
            )
            seconds = time.perf_counter() - began
            for row in rows:
                row["model_seconds"] = seconds
                row["pyrodiv"] = version
            variables.append(table_)
            extra += rows
            print(f"{name}: {seconds:.0f} s", flush=True)
            pd.concat(variables).to_csv(files["variables"], index=False)
            pd.DataFrame(extra).to_csv(files["extra"], index=False)
    variables = pd.read_csv(files["variables"])
    extra = pd.read_csv(files["extra"])
    summary = summarize(variables, extra)
    summary.to_csv(out / "unseen_posteriors.csv", index=False)
    command = (
        "OMP_NUM_THREADS=1 python benchmarks/unseen_posteriors.py "
        f"--posteriordb {args.posteriordb} --models {args.models} "
        f"--nuts-models '{args.nuts_models}'" + (" --append" if args.append else "")
    )
    version = "; ".join(str(v) for v in extra.get("pyrodiv", pd.Series()).dropna().unique())
    text = _markdown(summary, extra, command, source.commit(), version or "unknown")
    (out / "unseen_posteriors.md").write_text(text)
    print(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posteriordb", default=MIRROR, help="posteriordb checkout or git dir")
    parser.add_argument("--models", default=DEFAULT_MODELS, help=f"of: {', '.join(UNSEEN)}")
    parser.add_argument("--divergences", default=",".join(DIVERGENCES))
    parser.add_argument(
        "--nuts-models",
        default=NUTS_MODELS,
        help="models whose NUTS (1 chain, 1000 warmup + 1000 draws) is run and timed as a "
        "baseline ('' for none; hmm_drive_0's takes over half an hour on one thread)",
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep other models' rows, and the NUTS rows of models not in --nuts-models",
    )
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--render", action="store_true", help="only rewrite the report")
    main(parser.parse_args())
