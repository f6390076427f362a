r"""Many independent fits of the talk's Normal guide, trained together as one.

The f-divergence table fits 15 generators from 2 starts, and the JSD basin count repeats one
fit over seeds: 38 fits of 4000 steps that share their target and their guide family. Here
they are one Pyro program with a batch dimension of ``B`` *rows*, trained by
:func:`pyrodiv.fit` with :class:`RowwiseDivergence`: row :math:`b` has its own
:math:`(\mu_b, \sigma_b)`, its own divergence and its own particles
(:math:`x_{kb} = \mu_b + \sigma_b\varepsilon_{kb}`), and its loss is the library's estimator
(:mod:`pyrodiv.estimators`, the one ``pyrodiv.FDivergence`` or ``pyrodiv.JensenShannon``
uses on a prior target) applied to that row's particles alone. The loss of the batch is the
sum over rows, so the gradient of row :math:`b`'s parameters is that row's own gradient
estimate, and Adam, which acts elementwise, takes for every row exactly the step a separate
fit would take from the same draws. One row alone reproduces ``pyrodiv.FDivergence`` bit for
bit (tested).

A row whose estimate or gradient stops being finite (:math:`f(p/q)` overflows where :math:`Q`
is far narrower than :math:`P`) is stopped there, as ``pyrodiv.fit`` stops a single fit: its
gradient is zeroed from then on and its failure (step and reason) is recorded, while the other
rows train on.

Example::

    >>> rows = [Row("kl_reverse", start=(1.0, 1.0)), Row("squared_hellinger", start=(1.0, 25.0))]
    >>> fits = fit_rows(target_model(bimodal()), rows, steps=200, lr=0.05, particles=64)
    >>> fits[0]["loc"] > 3
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from .common import bimodal, target_model  # noqa: F401  (used in the docstring example)


@dataclass(frozen=True)
class Row:
    """One fit of a batch: the divergence (``"jensen_shannon"`` for the two-sample JSD of
    ``pyrodiv.JensenShannon``, else a generator name of :func:`pyrodiv.get_generator` with
    ``params``, the estimate of ``pyrodiv.FDivergence``), the start ``(mu, variance)`` and the
    scale parameterization (``"L"``: :math:`\\sigma = |L|`; ``"exp"``: :math:`\\sigma = e^s`)."""

    divergence: str
    params: dict = field(default_factory=dict)
    start: tuple = (0.0, 1.0)
    scale: str = "L"
    two_sample: bool = False

    def key(self):
        return (self.divergence, tuple(sorted(self.params.items())), self.two_sample)


def batched_guide(rows: list[Row]):
    r"""The talk's guide for every row at once: ``pyro.param("loc")``, ``"L"`` and
    ``"log_scale"`` of shape ``(B,)``; row :math:`b` uses :math:`|L_b|` or :math:`e^{s_b}` as
    its :math:`\sigma_b` (the other parameter gets no gradient), and ``"x"`` is drawn in a plate
    ``"rows"`` of size ``B``. The parameters are float32, as in the talk."""
    f32 = torch.float32  # as the talk's guide (common.normal_guide), whatever the default
    loc0 = torch.tensor([float(r.start[0]) for r in rows], dtype=f32)
    sd0 = torch.tensor([math.sqrt(float(r.start[1])) for r in rows], dtype=f32)
    use_exp = torch.tensor([r.scale == "exp" for r in rows])
    for r in rows:
        if r.scale not in ("L", "exp"):
            raise ValueError(f"scale must be 'L' or 'exp', got {r.scale!r}")

    def guide():
        loc = pyro.param("loc", loc0.clone())
        L = pyro.param("L", sd0.clone())
        log_scale = pyro.param("log_scale", sd0.log())
        sigma = torch.where(use_exp, log_scale.exp(), L.abs())
        with pyro.plate("rows", len(rows), dim=-1):
            return pyro.sample("x", dist.Normal(loc, sigma))

    return guide


def batched_model(distribution, num_rows: int):
    """The one-site target model, drawn independently for each of ``num_rows`` rows."""

    def model():
        with pyro.plate("rows", num_rows, dim=-1):
            return pyro.sample("x", distribution)

    return model


def rows_state(rows: list[Row]) -> tuple[list[float], list[float]]:
    """``(locs, variances)`` of every row of :func:`batched_guide` in Pyro's param store."""
    store = pyro.get_param_store()
    loc = store["loc"].detach()
    L, log_scale = store["L"].detach(), store["log_scale"].detach()
    use_exp = torch.tensor([r.scale == "exp" for r in rows])
    sigma = torch.where(use_exp, log_scale.exp(), L.abs()).double()
    return loc.tolist(), (sigma**2).tolist()


class RowwiseDivergence(pyro.infer.ELBO):
    r"""The sum over rows of each row's own divergence estimate (see the module docstring).

    ``rows`` gives each row's divergence; rows of the same divergence are evaluated together
    by the library's estimator, one row at a time. ``failures`` maps a failed row's index to
    ``(step, reason)``, and ``values`` holds the last step's per-row estimates.
    """

    def __init__(self, rows: list[Row], num_particles: int):
        super().__init__(num_particles=num_particles, max_plate_nesting=1)
        from .. import estimators, get_generator

        self.rows = list(rows)
        self.failures: dict[int, tuple[int, str]] = {}
        self.values = torch.zeros(len(rows))
        self.step = 0
        groups: dict = {}
        for b, row in enumerate(self.rows):
            groups.setdefault(row.key(), []).append(b)
        self._groups = []
        for index in groups.values():
            row = self.rows[index[0]]
            if row.two_sample:
                fn = estimators.jensen_shannon
            else:
                f = get_generator(row.divergence, **row.params)

                def fn(log_p, log_q, f=f):
                    return estimators.f_divergence(f, log_p, log_q)

            self._groups.append((index, row.two_sample, fn))
        self.needs_p_draws = any(row.two_sample for row in self.rows)

    def _log_densities(self, model, guide, args, kwargs):
        with pyro.plate("particles", self.num_particles, dim=-2):
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
                *args, **kwargs
            )
            q_site, p_site = guide_trace.nodes["x"], model_trace.nodes["x"]
            x = q_site["value"]
            at_q = (p_site["fn"].log_prob(x), q_site["fn"].log_prob(x))
            at_p = None
            if self.needs_p_draws:
                x_p = poutine.trace(model).get_trace(*args, **kwargs).nodes["x"]["value"]
                at_p = (p_site["fn"].log_prob(x_p), q_site["fn"].log_prob(x_p))
        return at_q, at_p

    def _surrogates(self, model, guide, args, kwargs):
        (lp_q, lq_q), at_p = self._log_densities(model, guide, args, kwargs)
        values, surrogates = [None] * len(self.rows), [None] * len(self.rows)
        for index, two_sample, fn in self._groups:
            for b in index:
                if two_sample:
                    columns = (at_p[0][:, b], at_p[1][:, b], lp_q[:, b], lq_q[:, b])
                else:
                    columns = (lp_q[:, b], lq_q[:, b])
                estimate = fn(*columns)
                values[b], surrogates[b] = estimate.value, estimate.surrogate
        return torch.stack(values), torch.stack(surrogates)

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            values, _ = self._surrogates(model, guide, args, kwargs)
        return float(values.sum())

    def loss_and_grads(self, model, guide, *args, **kwargs):
        self.step += 1
        with poutine.trace(param_only=True) as params:
            values, surrogates = self._surrogates(model, guide, args, kwargs)
        alive = torch.ones(len(self.rows), dtype=torch.bool)
        for b in self.failures:
            alive[b] = False
        finite = torch.isfinite(values) & torch.isfinite(surrogates)
        for b in torch.nonzero(alive & ~finite).flatten().tolist():
            self._fail(b, "the estimate is not finite")
        alive &= finite
        torch.where(alive, surrogates, torch.zeros_like(surrogates)).sum().backward()
        grads_ok = alive.clone()
        leaves = [site["value"].unconstrained() for site in params.trace.nodes.values()]
        for leaf in leaves:
            if leaf.grad is not None:
                grads_ok &= torch.isfinite(leaf.grad)
        for b in torch.nonzero(alive & ~grads_ok).flatten().tolist():
            self._fail(b, "the gradient is not finite")
        for leaf in leaves:
            if leaf.grad is not None:
                leaf.grad = torch.where(grads_ok, leaf.grad, torch.zeros_like(leaf.grad))
        self.values = values
        return float(torch.where(grads_ok, values, torch.zeros_like(values)).sum())

    def _get_trace(self, model, guide, args, kwargs):  # abstract in pyro.infer.ELBO; unused
        raise NotImplementedError("RowwiseDivergence draws its particles itself")

    def _fail(self, b: int, reason: str) -> None:
        row = self.rows[b]
        name = "Jensen-Shannon" if row.two_sample else f"f-divergence {row.divergence}"
        self.failures[b] = (self.step, f"{name}: {reason} at step {self.step}")


def fit_rows(
    model_distribution_or_model,
    rows: list[Row],
    *,
    steps: int = 4000,
    lr: float = 0.03,
    particles: int = 256,
    seed: int = 0,
    record: int = 200,
    progress=False,
    target=None,
) -> list[dict]:
    r"""Fit every row of ``rows`` to the target with :func:`pyrodiv.fit` and
    :class:`RowwiseDivergence` (Adam at ``lr``, ``particles`` draws a row a step), from a
    cleared param store and ``pyro.set_rng_seed(seed)``.

    ``model_distribution_or_model`` is the target distribution (one site ``"x"``), or a
    one-site model as made by :func:`~pyrodiv.demo.common.target_model`, whose distribution is
    read from a trace. Returns one dict per row, as
    :func:`~pyrodiv.demo.common.fit_normal` does (``loc``, ``variance``, ``trajectory``),
    plus ``error``: ``None``, or the reason the row stopped (its values then stop at the last
    finite step). ``progress`` is ``False``, ``True`` or a
    :class:`~pyrodiv.demo.progress.Tracker` advanced by one unit per step.
    """
    import pyrodiv

    distribution = model_distribution_or_model
    if callable(distribution) and not isinstance(distribution, torch.distributions.Distribution):
        distribution = poutine.trace(distribution).get_trace().nodes["x"]["fn"]
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    num = len(rows)
    guide = batched_guide(rows)
    model = batched_model(distribution, num)
    loss = RowwiseDivergence(rows, particles)
    every = max(1, steps // max(1, record))
    locs0 = [float(r.start[0]) for r in rows]
    vars0 = [float(r.start[1]) for r in rows]
    trajs = [
        {"step": [0], "loc": [locs0[b]], "variance": [vars0[b]], "loss": []} for b in range(num)
    ]
    window = []
    tracker = progress if hasattr(progress, "advance") else None
    last = {"loc": list(locs0), "variance": list(vars0)}

    def callback(step, value):
        window.append(loss.values.clone())
        if step % every == 0 or step == steps:
            locs, variances = rows_state(rows)
            means = torch.stack(window).mean(0).tolist()
            for b in range(num):
                if b in loss.failures:
                    continue
                t = trajs[b]
                t["step"].append(step)
                t["loc"].append(locs[b])
                t["variance"].append(variances[b])
                t["loss"].append(means[b])
                last["loc"][b], last["variance"][b] = locs[b], variances[b]
            window.clear()
            if tracker is not None:
                tracker.advance(every if step % every == 0 else step % every)

    settings = pyrodiv.FitSettings(
        num_steps=steps, lr=lr, progress=progress is True, desc=f"{num} fits as one batch"
    )
    pyrodiv.fit(model, guide, loss=loss, settings=settings, callback=callback)
    out = []
    for b, row in enumerate(rows):
        failure = loss.failures.get(b)
        out.append(
            {
                "loc": last["loc"][b],
                "variance": last["variance"][b],
                "start": [float(row.start[0]), float(row.start[1])],
                "scale": row.scale,
                "steps": steps,
                "lr": lr,
                "seed": seed,
                "trajectory": trajs[b],
                "error": None if failure is None else failure[1],
                "failed_at": None if failure is None else failure[0],
            }
        )
    return out


def tail_mean(trajectory: dict, steps: int, fraction: float = 0.25) -> tuple[float, float]:
    """The mean ``(loc, variance)`` of a trajectory over its last ``fraction`` of ``steps``
    (Polyak averaging), or its last point if none is that late."""
    t = trajectory
    tail = [k for k, s in enumerate(t["step"]) if s > (1 - fraction) * steps]
    tail = tail or [len(t["step"]) - 1]
    return float(np.mean([t["loc"][k] for k in tail])), float(
        np.mean([t["variance"][k] for k in tail])
    )
