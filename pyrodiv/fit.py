"""A short SVI fit loop with a progress bar, a loss history and an optional plateau stop.

Example::

    >>> result = fit(model, guide, data, loss=pyrodiv.ForwardKL(num_particles=64),
    ...              num_steps=2000, progress=False)
    >>> result.losses[-1], result.seconds
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pyro
from tqdm.auto import tqdm


@dataclass
class FitResult:
    """The outcome of :func:`fit`: per-step losses, wall time and whether it stopped early."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False

    @property
    def num_steps(self) -> int:
        return len(self.losses)


def fit(
    model,
    guide,
    *args,
    loss,
    num_steps: int = 1000,
    optim=None,
    progress: bool = True,
    patience: int | None = None,
    window: int = 100,
    tolerance: float = 1e-3,
    **kwargs,
) -> FitResult:
    r"""Train ``guide`` to ``model`` with ``pyro.infer.SVI`` and ``loss``.

    :param loss: any ``pyro.infer.ELBO``, e.g. ``pyrodiv.ForwardKL(num_particles=64)``.
    :param num_steps: the most SVI steps to take.
    :param optim: a Pyro optimizer; default ``pyro.optim.Adam({"lr": 0.01})``.
    :param progress: show a tqdm progress bar with the running mean loss.
    :param patience: stop once the mean loss over the last ``window`` steps has not improved
        on the best earlier window mean by more than ``tolerance`` (relative to its scale,
        :math:`\max(1, |\bar L|)`) for ``patience`` consecutive windows. ``None`` never stops
        early.
    :returns: :class:`FitResult` with the loss of every step and the seconds taken.
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"fit: num_steps must be an integer >= 1, got {num_steps!r}")
    if patience is not None and (not isinstance(patience, int) or patience < 1):
        raise ValueError(f"fit: patience must be None or an integer >= 1, got {patience!r}")
    if window < 1:
        raise ValueError(f"fit: window must be >= 1, got {window!r}")
    optim = optim if optim is not None else pyro.optim.Adam({"lr": 0.01})
    svi = pyro.infer.SVI(model, guide, optim, loss=loss)
    result = FitResult()
    best, stale = float("inf"), 0
    start = time.perf_counter()
    bar = tqdm(range(num_steps), disable=not progress, desc=type(loss).__name__, leave=False)
    for step in bar:
        result.losses.append(float(svi.step(*args, **kwargs)))
        if (step + 1) % window:
            continue
        mean = sum(result.losses[-window:]) / window
        bar.set_postfix(loss=f"{mean:.4g}")
        if patience is None:
            continue
        if mean < best - tolerance * max(1.0, abs(mean)):
            best, stale = mean, 0
        else:
            stale += 1
            if stale >= patience:
                result.stopped_early = True
                break
    bar.close()
    result.seconds = time.perf_counter() - start
    return result
