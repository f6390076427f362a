r"""Experiment 8: the talk's "practical uses": maximum likelihood is forward KL.

For data :math:`\mathcal D`, let :math:`P` be the point mass at the observed data set, written
as a Pyro model whose one site draws the data exactly (``dist.Delta``, or a one-hot
Categorical/Bernoulli). Then for a guide :math:`Q_\theta` over the same site,

.. math::

    H(P, Q_\theta) = -\mathbb{E}_P[\log q_\theta(y)] = -\sum_i \log q_\theta(y_i \mid x_i),

the negative log-likelihood, and ``pyrodiv.CrossEntropy`` (or ``ForwardKL``, which differs by
the constant :math:`H(P) = 0`) trains :math:`\theta` by maximum likelihood. Each case compares
that fit with the usual loss, minimized the same way (full-batch L-BFGS):

* Normal likelihood: mean squared error, i.e. least squares;
* Laplace likelihood: mean absolute error, i.e. the median (least absolute deviations);
* Bernoulli likelihood: binary cross-entropy (``BCEWithLogitsLoss``), logistic regression;
* Categorical likelihood: cross-entropy (``F.cross_entropy``), multinomial regression.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F

from .. import CrossEntropy, ForwardKL
from ..output import new_figure, save_figure


def _lbfgs(params, objective, iters: int = 200):
    opt = torch.optim.LBFGS(
        params,
        lr=1,
        max_iter=iters,
        tolerance_grad=1e-12,
        tolerance_change=1e-14,
        history_size=50,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        value = objective()
        value.backward()
        return value

    opt.step(closure)
    return float(objective().detach())


def _fit_pyro(model, guide, loss, iters: int = 200):
    """Minimize ``loss.differentiable_loss(model, guide)`` over the guide's params (L-BFGS)."""
    pyro.clear_param_store()
    guide()  # create the params
    params = [p.unconstrained() for p in pyro.get_param_store().values()]
    return _lbfgs(params, lambda: loss.differentiable_loss(model, guide), iters)


def make_data(n: int = 201, d: int = 3, classes: int = 4, seed: int = 0) -> dict:
    """Synthetic data: inputs ``X`` (n x d, with an intercept column), and targets for each
    likelihood (float64).

    Example::

        >>> make_data(n=11)["X"].shape
        torch.Size([11, 3])
    """
    g = torch.Generator().manual_seed(seed)
    X = torch.cat(
        [
            torch.ones(n, 1, dtype=torch.float64),
            torch.randn(n, d - 1, generator=g, dtype=torch.float64),
        ],
        -1,
    )
    w = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)[:d]
    y_normal = X @ w + 0.7 * torch.randn(n, generator=g, dtype=torch.float64)
    u = 2.0 * torch.rand(n, generator=g, dtype=torch.float64) - 1.0
    y_laplace = 3.0 - 1.5 * torch.sign(u) * torch.log1p(-u.abs())  # Laplace(3, 1.5)
    logits = X @ w
    y_bern = torch.bernoulli(torch.sigmoid(logits), generator=g)
    W = torch.randn(d, classes, generator=g, dtype=torch.float64)
    y_cat = torch.multinomial(torch.softmax(X @ W, -1), 1, generator=g).squeeze(-1)
    return {
        "X": X,
        "y_normal": y_normal,
        "y_laplace": y_laplace,
        "y_bernoulli": y_bern,
        "y_categorical": y_cat,
        "classes": classes,
    }


def normal_mse(data: dict, loss_cls=CrossEntropy) -> dict:
    r"""Normal likelihood :math:`y_i \sim N(x_i^\top w, \sigma^2)` fitted by cross-entropy,
    against least squares :math:`\hat w = \arg\min \|y - Xw\|^2` and
    :math:`\hat\sigma^2 = \mathrm{RSS}/n`.

    Example::

        >>> normal_mse(make_data(n=51))["max_abs_diff"] < 1e-3
        True
    """
    X, y = data["X"], data["y_normal"]
    n, d = X.shape

    def model():
        with pyro.plate("data", n):
            pyro.sample("y", dist.Delta(y))

    def guide():
        w = pyro.param("w", torch.zeros(d, dtype=torch.float64))
        sigma = pyro.param(
            "sigma", torch.tensor(1.0, dtype=torch.float64), constraint=dist.constraints.positive
        )
        with pyro.plate("data", n):
            pyro.sample("y", dist.Normal((X * w).sum(-1), sigma))

    _fit_pyro(model, guide, loss_cls(max_plate_nesting=1))
    w_fit = pyro.param("w").detach()
    s_fit = pyro.param("sigma").detach()
    w_ls = torch.linalg.lstsq(X, y.unsqueeze(-1)).solution.squeeze(-1)
    s_ls = ((y - X @ w_ls) ** 2).mean().sqrt()
    diff = max(float((w_fit - w_ls).abs().max()), float((s_fit - s_ls).abs()))
    return {
        "pyrodiv": {"w": w_fit.tolist(), "sigma": float(s_fit)},
        "reference": {"w": w_ls.tolist(), "sigma": float(s_ls)},
        "reference_name": "least squares (torch.linalg.lstsq)",
        "loss": loss_cls.__name__,
        "max_abs_diff": diff,
    }


def laplace_mae(data: dict, loss_cls=CrossEntropy) -> dict:
    r"""Laplace likelihood :math:`y_i \sim \mathrm{Laplace}(m, b)` fitted by cross-entropy,
    against the least-absolute-deviations solution: the median :math:`m` (``n`` odd) and
    :math:`\hat b = \frac1n\sum_i |y_i - m|`.

    Example::

        >>> laplace_mae(make_data(n=51))["max_abs_diff"] < 1e-3
        True
    """
    y = data["y_laplace"]
    n = y.numel()

    def model():
        with pyro.plate("data", n):
            pyro.sample("y", dist.Delta(y))

    def guide():
        m = pyro.param("m", y.mean())
        b = pyro.param(
            "b", torch.tensor(1.0, dtype=torch.float64), constraint=dist.constraints.positive
        )
        with pyro.plate("data", n):
            pyro.sample("y", dist.Laplace(m, b))

    # the L1 objective is piecewise linear in m: L-BFGS first, then a fine Adam polish
    loss = loss_cls(max_plate_nesting=1)
    _fit_pyro(model, guide, loss)
    params = [p.unconstrained() for p in pyro.get_param_store().values()]
    opt = torch.optim.Adam(params, lr=1e-3)
    for step in range(3000):
        for group in opt.param_groups:
            group["lr"] = 1e-3 * (1 - step / 3000) + 1e-6
        opt.zero_grad()
        loss.differentiable_loss(model, guide).backward()
        opt.step()
    m_fit, b_fit = pyro.param("m").item(), pyro.param("b").item()
    median = float(y.median())
    b_ref = float((y - median).abs().mean())
    diff = max(abs(m_fit - median), abs(b_fit - b_ref))
    return {
        "pyrodiv": {"loc": m_fit, "scale": b_fit},
        "reference": {"loc": median, "scale": b_ref},
        "reference_name": "median and mean absolute deviation",
        "loss": loss_cls.__name__,
        "max_abs_diff": diff,
    }


def bernoulli_bce(data: dict, loss_cls=CrossEntropy) -> dict:
    r"""Bernoulli likelihood :math:`y_i \sim \mathrm{Bernoulli}(\sigma(x_i^\top w))` fitted by
    cross-entropy, against logistic regression with ``torch.nn.BCEWithLogitsLoss``.

    Example::

        >>> bernoulli_bce(make_data(n=101))["max_abs_diff"] < 1e-3
        True
    """
    X, y = data["X"], data["y_bernoulli"]
    n, d = X.shape

    def model():
        with pyro.plate("data", n):
            pyro.sample("y", dist.Bernoulli(probs=y))  # draws exactly y

    def guide():
        w = pyro.param("w", torch.zeros(d, dtype=torch.float64))
        with pyro.plate("data", n):
            pyro.sample("y", dist.Bernoulli(logits=(X * w).sum(-1)))

    _fit_pyro(model, guide, loss_cls(max_plate_nesting=1))
    w_fit = pyro.param("w").detach()
    w_ref = torch.zeros(d, dtype=torch.float64, requires_grad=True)
    bce = torch.nn.BCEWithLogitsLoss()
    _lbfgs([w_ref], lambda: bce(X @ w_ref, y))
    diff = float((w_fit - w_ref.detach()).abs().max())
    return {
        "pyrodiv": {"w": w_fit.tolist()},
        "reference": {"w": w_ref.detach().tolist()},
        "reference_name": "torch.nn.BCEWithLogitsLoss",
        "loss": loss_cls.__name__,
        "max_abs_diff": diff,
    }


def categorical_ce(data: dict, loss_cls=CrossEntropy) -> dict:
    r"""Categorical likelihood :math:`y_i \sim \mathrm{Categorical}(\mathrm{softmax}(x_i^\top
    W))` fitted by cross-entropy, against ``torch.nn.functional.cross_entropy``. The first
    class's weights are pinned at 0 in both fits, so that :math:`W` is identifiable.

    Example::

        >>> categorical_ce(make_data(n=101))["max_abs_diff"] < 1e-3
        True
    """
    X, y, k = data["X"], data["y_categorical"], data["classes"]
    n, d = X.shape
    one_hot = F.one_hot(y, k).double()

    def logits_of(W):
        return (X.unsqueeze(-1) * torch.cat([torch.zeros(d, 1, dtype=W.dtype), W], -1)).sum(-2)

    def model():
        with pyro.plate("data", n):
            pyro.sample("y", dist.Categorical(probs=one_hot))  # draws exactly y

    def guide():
        W = pyro.param("W", torch.zeros(d, k - 1, dtype=torch.float64))
        with pyro.plate("data", n):
            pyro.sample("y", dist.Categorical(logits=logits_of(W)))

    _fit_pyro(model, guide, loss_cls(max_plate_nesting=1))
    W_fit = pyro.param("W").detach()
    W_ref = torch.zeros(d, k - 1, dtype=torch.float64, requires_grad=True)
    _lbfgs([W_ref], lambda: F.cross_entropy(logits_of(W_ref), y))
    diff = float((W_fit - W_ref.detach()).abs().max())
    return {
        "pyrodiv": {"W": W_fit.tolist()},
        "reference": {"W": W_ref.detach().tolist()},
        "reference_name": "torch.nn.functional.cross_entropy",
        "loss": loss_cls.__name__,
        "max_abs_diff": diff,
    }


def mle_equivalences(out_dir=None, *, n: int = 201, seed: int = 0, progress: bool = False):
    r"""All four equivalences (:func:`normal_mse`, :func:`laplace_mae`, :func:`bernoulli_bce`,
    :func:`categorical_ce`) with ``pyrodiv.CrossEntropy``, plus the Normal case with
    ``pyrodiv.ForwardKL``, on one synthetic data set of ``n`` points.

    Writes ``mle.png`` (pyrodiv's fitted parameters against the reference's).

    Example::

        >>> res = mle_equivalences(n=51)
        >>> max(c["max_abs_diff"] for c in res["cases"].values()) < 1e-3
        True
    """
    data = make_data(n=n, seed=seed)
    pyro.set_rng_seed(seed)
    cases = {
        "normal_mse": normal_mse(data),
        "normal_mse_forward_kl": normal_mse(data, ForwardKL),
        "laplace_mae": laplace_mae(data),
        "bernoulli_bce": bernoulli_bce(data),
        "categorical_ce": categorical_ce(data),
    }
    result = {"n": n, "seed": seed, "cases": cases, "figures": []}
    if out_dir is not None:
        fig, ax = new_figure(1, 1, size=(6.5, 5.0))
        markers = {
            "normal_mse": "o",
            "normal_mse_forward_kl": "+",
            "laplace_mae": "s",
            "bernoulli_bce": "^",
            "categorical_ce": "D",
        }
        lo, hi = 0.0, 0.0
        for name, case in cases.items():
            ours = _flatten(case["pyrodiv"])
            ref = _flatten(case["reference"])
            lo, hi = min(lo, *ours, *ref), max(hi, *ours, *ref)
            ax.plot(
                ref,
                ours,
                markers[name],
                ms=8,
                mfc="none" if name != "normal_mse_forward_kl" else None,
                label=f"{name}: max |diff| = {case['max_abs_diff']:.1e}",
            )
        ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8, zorder=0)
        ax.set_xlabel("reference fit (least squares, median, BCE, cross-entropy)")
        ax.set_ylabel("pyrodiv CrossEntropy / ForwardKL fit")
        ax.set_title(
            "Maximum likelihood = forward KL: every parameter on the diagonal", fontsize=10
        )
        ax.legend(fontsize=7)
        result["figures"].append(save_figure(fig, out_dir, "mle.png"))
    return result


def _flatten(params: dict) -> list[float]:
    out = []
    for v in params.values():
        t = torch.as_tensor(v, dtype=torch.float64).reshape(-1)
        out += t.tolist()
    return out
