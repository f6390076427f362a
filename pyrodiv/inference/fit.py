r"""The training loop: ``pyro.infer.SVI`` steps with a progress bar, a loss history, an
optional plateau stop and a per-step callback.

Every part of pyrodiv that trains a guide (the demo, the zoo comparison, the examples and the
benchmarks) goes through :func:`fit`, so that they share one loop. Its options are one small
:class:`FitSettings`.

**The compiled fast path** (``compile="auto"``, the default). Where the loss lowers
(:mod:`pyrodiv.divergences.compiled`: a pyrodiv loss, a static model, a Gaussian autoguide,
vectorized particles or one) and the optimizer is elementwise (Pyro's ``Adam``, ``ClippedAdam``,
``AdamW``, ``SGD``, ``RMSprop``, ``Adagrad``, ``Adamax``, ``NAdam``, ``RAdam``, given a dict of
arguments and no gradient clipping), a step is one call of a graph recorded with the
gradient in it (the forward and backward passes,
:meth:`~pyrodiv.divergences.compiled.Program.value_and_grads`) and one step of a single
optimizer over all the guide's unconstrained parameters, with no ``SVI`` param capture, no
autograd engine and no per-parameter optimizer loop. Because the optimizers are
elementwise, one optimizer over every parameter takes exactly the steps of Pyro's
per-parameter ones: the fit makes the same draws and ends at the same parameters as the
``SVI`` loop (to rounding). The single optimizer stands in ``optim.optim_objs`` for every
parameter during the fit (so a callback that changes the learning rate there reaches it) and
is split back into Pyro's per-parameter optimizers, state included, at the end. Anything else
runs the ``SVI`` loop with the loss as given; ``compile=True`` also compiles the loss there
(:func:`~pyrodiv.divergences.compiled.compile`, which says why it could not lower), and
``compile=False`` never compiles.

Example::

    >>> result = fit(model, guide, data, loss=pyrodiv.ForwardKL(num_particles=64),
    ...              settings=FitSettings(num_steps=2000, lr=0.05, progress=False))
    >>> result.losses[-1], result.seconds
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyro
import torch
from pyro.optim.clipped_adam import ClippedAdam
from tqdm.auto import tqdm

from ..divergences.compiled import NotLowerable, program
from ..divergences.compiled import compile as compile_loss
from ..divergences.loss_base import DivergenceLoss
from ..validation import check_positive_int

#: The values of ``FitSettings.compile``.
COMPILE_OPTIONS = ("auto", True, False, "jit", "inductor")


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
    :param compile: ``"auto"`` (the compiled fast path where it applies, else ``SVI``),
        ``True`` (as ``"auto"``, and otherwise the loss compiled in place,
        :func:`~pyrodiv.divergences.compiled.compile`, for the ``SVI`` loop),
        ``"jit"`` or ``"inductor"`` (as ``True``, with that backend of
        :func:`~pyrodiv.divergences.compiled.compile`) or ``False`` (``SVI`` with the loss as
        given); see the module docstring.

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
    compile: bool | str = "auto"

    def __post_init__(self):
        check_positive_int(self.num_steps, "fit: num_steps")
        check_positive_int(self.window, "fit: window")
        if self.patience is not None:
            check_positive_int(self.patience, "fit: patience", none="None or ")
        if not self.lr > 0:
            raise ValueError(f"fit: lr must be positive, got {self.lr!r}")
        if self.compile not in COMPILE_OPTIONS:
            raise ValueError(
                f"fit: compile must be one of {COMPILE_OPTIONS}, got {self.compile!r}"
            )

    @property
    def backend(self) -> str:
        """The compiled path's backend: ``"jit"``, ``"inductor"`` or ``"auto"``."""
        return self.compile if self.compile in ("jit", "inductor") else "auto"

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
    optim = settings.make_optim()
    step = None
    if settings.compile is not False:
        step = _fast_step(model, guide, args, kwargs, loss, optim, settings)
    if step is None:
        if settings.compile not in ("auto", False) and isinstance(loss, DivergenceLoss):
            loss = compile_loss(loss, settings.backend)
        svi = pyro.infer.SVI(model, guide, optim, loss=loss)
        step = _SVIStep(svi, args, kwargs)
    try:
        return _loop(step, loss, settings, callback)
    finally:
        step.close()


def _loop(step, loss, settings: FitSettings, callback) -> FitResult:
    """The steps, the history, the callback, the plateau rule and the progress bar."""
    desc = settings.desc or getattr(loss, "divergence", type(loss).__name__)
    result = FitResult()
    best, stale, window = float("inf"), 0, settings.window
    start = time.perf_counter()
    bar = tqdm(range(settings.num_steps), disable=not settings.progress, desc=desc, leave=False)
    for count in bar:
        value = float(step())
        result.losses.append(value)
        if callback is not None and callback(count + 1, value):
            result.stopped_early = True
            break
        if callback is not None:
            step.sync()  # hyperparameters the callback changed
        if (count + 1) % window:
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


class _SVIStep:
    """One ``SVI.step`` (the loop without the fast path)."""

    def __init__(self, svi, args, kwargs):
        self.svi, self.args, self.kwargs = svi, args, kwargs

    def __call__(self) -> float:
        return self.svi.step(*self.args, **self.kwargs)

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


#: Optimizers that update each element of each parameter on its own, so that one of them
#: over every parameter steps as Pyro's per-parameter ones do.
ELEMENTWISE = ("Adam", "AdamW", "Adamax", "NAdam", "RAdam", "SGD", "RMSprop", "Adagrad")


def _elementwise(optim) -> bool:
    """A Pyro optimizer wrapping an elementwise torch optimizer (dict or per-parameter
    arguments), with no gradient clipping and no state waiting to be loaded."""
    constructor = getattr(optim, "pt_optim_constructor", None)
    if not isinstance(optim, pyro.optim.PyroOptim) or constructor is None:
        return False
    torch_optimizer = getattr(torch.optim, getattr(constructor, "__name__", ""), None)
    known = constructor is torch_optimizer and constructor.__name__ in ELEMENTWISE
    return (
        (known or constructor is ClippedAdam)
        and not optim.pt_clip_args
        and not optim._state_waiting_to_be_consumed
    )


def _fast_step(model, guide, args, kwargs, loss, optim, settings: FitSettings):
    """The compiled fast step where it applies (see the module docstring), else ``None``."""
    if not isinstance(loss, DivergenceLoss) or not _elementwise(optim):
        return None
    try:
        found = program(
            loss, model, guide, args, kwargs, settings.backend, settings.num_steps, gradient=True
        )
    except NotLowerable:
        return None
    return _FastStep(found, loss, optim, args, kwargs)


class _Slot:
    """What stands in ``optim.optim_objs`` for one parameter during a compiled fit: that
    parameter's own hyperparameters (``param_groups[0]``, a view that the compiled loop reads
    after each callback) and the optimizer's state, so that a callback setting a learning
    rate there (as :func:`pyrodiv.approximate`'s monitor does) reaches that parameter only."""

    def __init__(self, optimizer, view: dict):
        self.optimizer, self.param_groups, self.state = optimizer, [view], optimizer.state

    def step(self, *args, **kwargs):
        raise RuntimeError("this parameter is stepped by pyrodiv.fit's compiled loop")


def _hyper(group: dict) -> dict:
    return {k: v for k, v in group.items() if k != "params"}


class _FastStep:
    """One compiled step: the estimate and its gradient from the recorded graph, one
    optimizer over every parameter, one group per distinct set of hyperparameters (each
    parameter's own stand in the Pyro optimizer's ``optim_objs`` until :meth:`close`)."""

    def __init__(self, found, loss, optim, args, kwargs):
        self.program, self.loss, self.optim = found, loss, optim
        self.args, self.kwargs = args, kwargs
        self.params = list(found.refresh(args, kwargs))
        self.views = {}
        for p in self.params:
            old = optim.optim_objs.get(p)  # a Pyro optimizer that already stepped: its state
            arguments = _hyper(old.param_groups[0]) if old else dict(optim._get_optim_args(p))
            if "foreach" in inspect.signature(optim.pt_optim_constructor).parameters:
                arguments["foreach"] = True  # one kernel per update, not one per parameter
            self.views[p] = {
                **_hyper(optim.pt_optim_constructor([p], **arguments).param_groups[0]),
                "params": [p],
            }
        self.optimizer = optim.pt_optim_constructor(self._groups())
        for p in self.params:
            old = optim.optim_objs.get(p)
            if old is not None and p in old.state:
                self.optimizer.state[p] = old.state[p]
            optim.optim_objs[p] = _Slot(self.optimizer, self.views[p])
            optim.grad_clip[p] = None
        loss._params.update(zip(found.names, self.params, strict=True))

    def _groups(self) -> list[dict]:
        """The parameters grouped by equal hyperparameters (their views)."""
        groups = []
        for p in self.params:
            hyper = _hyper(self.views[p])
            for group in groups:
                if _hyper(group) == hyper:
                    group["params"].append(p)
                    break
            else:
                groups.append({**hyper, "params": [p]})
        return groups

    def sync(self) -> None:
        """Regroup the parameters if a callback changed one's hyperparameters."""
        for group in self.optimizer.param_groups:
            hyper = _hyper(group)
            if any(_hyper(self.views[p]) != hyper for p in group["params"]):
                self.optimizer.param_groups = self._groups()
                return

    def __call__(self) -> float:
        value, grads = self.program.value_and_grads(self.args, self.kwargs)
        self.loss.check_finite(value)
        for p, grad in zip(self.params, grads, strict=True):
            p.grad = grad
        self.loss._check_gradients(value)
        self.optimizer.step()
        return value

    def close(self) -> None:
        """Hand the state back to Pyro's per-parameter optimizers."""
        optim, shared = self.optim, self.optimizer
        shared.zero_grad(set_to_none=False)  # as SVI leaves them
        for p in self.params:
            arguments = dict(optim._get_optim_args(p))
            single = optim.pt_optim_constructor([p], **arguments)
            single.param_groups[0].update(_hyper(self.views[p]))
            single.param_groups[0]["foreach"] = arguments.get("foreach")
            if p in shared.state:
                single.state[p] = shared.state[p]
            optim.optim_objs[p] = single
