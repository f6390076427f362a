r"""The training loop: ``pyro.infer.SVI`` steps with a progress bar, a loss history, an
optional plateau stop and a per-step callback.

Every part of pyrodiv that trains a guide (the demo, the zoo comparison, the examples and the
benchmarks) goes through :func:`fit`, so that they share one loop. Its options are one small
:class:`FitSettings`.

Example::

    >>> result = fit(model, guide, data, loss=pyrodiv.ForwardKL(num_particles=64),
    ...              settings=FitSettings(num_steps=2000, lr=0.05, progress=False))
    >>> result.losses[-1], result.seconds
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyro
from tqdm.auto import tqdm

from ..validation import check_positive_int


@dataclass(frozen=True)
class FitSettings:
    r"""Options of :func:`fit`.

    :param num_steps: the most SVI steps to take.
    :param lr: Adam's learning rate, used when ``optim`` is ``None``.
    :param optim: a Pyro optimizer (overrides ``lr``).
    :param progress: show a tqdm progress bar with the running mean loss.
    :param desc: the progress bar's label (default: the loss's divergence name).
    :param patience: stop once the mean loss over the last ``window`` steps has not improved
        on the best earlier window mean by more than ``tolerance`` (relative to its scale,
        :math:`\max(1, |\bar L|)`) for ``patience`` consecutive windows. ``None`` never stops
        early.
    :param window: steps per window of the plateau rule and of the progress bar's mean.
    :param tolerance: the plateau rule's relative improvement.

    Example::

        >>> FitSettings(num_steps=500).replace(lr=0.1).lr
        0.1
    """

    num_steps: int = 1000
    lr: float = 0.01
    optim: object | None = None
    progress: bool = True
    desc: str | None = None
    patience: int | None = None
    window: int = 100
    tolerance: float = 1e-3

    def __post_init__(self):
        check_positive_int(self.num_steps, "fit: num_steps")
        check_positive_int(self.window, "fit: window")
        if self.patience is not None:
            check_positive_int(self.patience, "fit: patience", none="None or ")
        if not self.lr > 0:
            raise ValueError(f"fit: lr must be positive, got {self.lr!r}")

    def replace(self, **changes) -> FitSettings:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def make_optim(self):
        """The Pyro optimizer: ``optim``, else ``pyro.optim.Adam({"lr": lr})``."""
        return self.optim if self.optim is not None else pyro.optim.Adam({"lr": self.lr})


#: The option names of :class:`FitSettings`, also taken by :func:`fit` as keywords.
FIT_OPTIONS = tuple(f.name for f in dataclasses.fields(FitSettings))


@dataclass
class FitResult:
    """The outcome of :func:`fit`: per-step losses, wall time and whether it stopped early
    (on a plateau, or because the callback asked to)."""

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
    settings: FitSettings | None = None,
    callback: Callable[[int, float], bool | None] | None = None,
    **kwargs,
) -> FitResult:
    r"""Train ``guide`` to ``model`` with ``pyro.infer.SVI(model, guide, optim, loss)``.

    Each step is :math:`\theta \leftarrow \mathrm{optim}(\theta, \nabla_\theta \hat D)`
    with the loss's gradient estimator :math:`\nabla_\theta \hat D(P\|Q_\theta)`; the loss
    value of every step is recorded.

    :param loss: any ``pyro.infer.ELBO``, e.g. ``pyrodiv.ForwardKL(num_particles=64)``.
    :param settings: a :class:`FitSettings`. Its fields may also be given as keywords
        (``num_steps=2000``), which override ``settings``.
    :param callback: called as ``callback(step, loss)`` after each step (``step`` counts from
        1); returning ``True`` stops the fit.
    :param args: the model's and guide's positional arguments.
    :param kwargs: their keyword arguments (those that are not options).
    :returns: :class:`FitResult` with the loss of every step and the seconds taken.

    Example::

        >>> result = fit(model, guide, loss=pyrodiv.ReverseKL(), num_steps=100,
        ...              progress=False)
        >>> result.num_steps
        100
    """
    options = {k: kwargs.pop(k) for k in list(kwargs) if k in FIT_OPTIONS}
    settings = (settings or FitSettings()).replace(**options)
    svi = pyro.infer.SVI(model, guide, settings.make_optim(), loss=loss)
    desc = settings.desc or getattr(loss, "divergence", type(loss).__name__)
    result = FitResult()
    best, stale, window = float("inf"), 0, settings.window
    start = time.perf_counter()
    bar = tqdm(range(settings.num_steps), disable=not settings.progress, desc=desc, leave=False)
    for step in bar:
        value = float(svi.step(*args, **kwargs))
        result.losses.append(value)
        if callback is not None and callback(step + 1, value):
            result.stopped_early = True
            break
        if (step + 1) % window:
            continue
        mean = sum(result.losses[-window:]) / window
        bar.set_postfix(loss=f"{mean:.4g}")
        if settings.patience is None:
            continue
        if mean < best - settings.tolerance * max(1.0, abs(mean)):
            best, stale = mean, 0
        else:
            stale += 1
            if stale >= settings.patience:
                result.stopped_early = True
                break
    bar.close()
    result.seconds = time.perf_counter() - start
    return result
