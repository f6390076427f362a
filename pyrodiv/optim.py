r"""A Pyro optimizer that steps every parameter with one torch optimizer.

``pyro.optim.PyroOptim`` keeps one torch optimizer per parameter and steps each on its own:
per ``SVI`` step that is one Python ``step`` call, with its hooks and checks, per parameter.
:class:`Fused` keeps the same per-parameter interface (``optim_objs``, ``get_state``,
``set_state``, ``save``, ``load``, per-parameter ``optim_args``) but steps all the parameters of
a step with **one** torch optimizer, one parameter group per distinct set of hyperparameters.
A group runs torch's fused kernel where the optimizer has one for the parameters' device
(``Adam``, ``AdamW``: ``fused=True``, one kernel call per group, on the CPU too),
else ``foreach=True`` (one kernel per operation over all the group's parameters), unless the
arguments choose ``foreach`` or ``fused`` themselves; the ``foreach``/``fused`` a parameter's
view and state show are those of its arguments.

**Why the numbers are the same.** The optimizers allowed (:data:`ALLOWED`: torch's ``Adam``,
``AdamW``, ``Adamax``, ``NAdam``, ``RAdam``, ``SGD``, ``RMSprop``, ``Adagrad`` and Pyro's
``ClippedAdam``) are elementwise: with a parameter :math:`\theta_i`, its gradient :math:`g_i`
and its state :math:`s_i` (step count, moments),

.. math::

    (\theta_i, s_i) \leftarrow U_h(\theta_i, g_i, s_i)\quad\text{for each element } i,

with the same map :math:`U_h` for every element of a group with hyperparameters :math:`h`. One
optimizer over many parameters grouped by :math:`h` therefore applies exactly the maps that
one optimizer per parameter applies, to rounding. As in ``PyroOptim``, a step moves only the
parameters it is given (``SVI`` gives those of the step's trace), a parameter whose gradient is
``None`` is skipped by the torch optimizer, a parameter seen for the first time gets its
arguments from ``optim_args`` (a dict, or a callable of the parameter's name) and any state
waiting from :meth:`~pyro.optim.PyroOptim.set_state`.

**The per-parameter view.** ``optim_objs[p]`` is a stand-in for parameter ``p``'s optimizer:
``param_groups[0]`` reads and writes ``p``'s own hyperparameters (setting one, e.g. a learning
rate, reaches ``p`` only, and the groups are rebuilt before the next step), ``state_dict()``
gives ``p``'s state in the format of a torch optimizer over ``[p]``, so that
``get_state``/``save`` of a :class:`Fused` load into ``pyro.optim.Adam`` and back.
:func:`pyrodiv.fit` takes its compiled fast path with a :class:`Fused` optimizer as with
Pyro's, and hands the per-parameter state back to it at the end.

Example::

    >>> import pyro, pyrodiv
    >>> loss = pyrodiv.compile(pyrodiv.ReverseKL(num_particles=64, vectorize_particles=True))
    >>> svi = pyro.infer.SVI(model, guide, pyrodiv.FusedAdam({"lr": 0.01}), loss=loss)
    >>> svi.step(data)  # the same steps as pyro.optim.Adam({"lr": 0.01}) takes
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import MutableMapping

import pyro
import torch
from pyro.optim.clipped_adam import ClippedAdam
from pyro.optim.optim import PyroOptim, _load_state_dict

try:  # torch's own test of a tensor for its fused kernels (private; foreach=True without it)
    from torch.optim.optimizer import _device_dtype_check_for_fused
except ImportError:  # pragma: no cover
    _device_dtype_check_for_fused = None

from .inference.fit import ELEMENTWISE, _hyper

#: The torch optimizers :class:`Fused` takes: the elementwise ones (and Pyro's ClippedAdam).
ALLOWED = tuple(getattr(torch.optim, name) for name in ELEMENTWISE) + (ClippedAdam,)
#: Those run by torch's fused kernel (one kernel per group, CPU and GPU) unless the arguments
#: choose ``foreach`` or ``fused``; the others run ``foreach=True``. (``SGD``'s fused kernel
#: refuses a group where some parameters have a momentum buffer and some not yet.)
FUSABLE = (torch.optim.Adam, torch.optim.AdamW)
#: The group keys that choose how an update runs, not what it computes.
MODE_KEYS = ("foreach", "fused")


def _fusable(p) -> bool:
    if _device_dtype_check_for_fused is None:
        return False
    try:
        _device_dtype_check_for_fused(p)
    except RuntimeError:
        return False
    return True


def _check_constructor(constructor) -> None:
    if isinstance(constructor, PyroOptim):
        raise TypeError(
            "Fused: optim_constructor must be a torch optimizer class such as "
            f"torch.optim.Adam, got a Pyro optimizer instance {constructor!r}"
        )
    if constructor in ALLOWED:
        return
    name = getattr(constructor, "__name__", repr(constructor))
    if getattr(torch.optim, name, None) in ALLOWED and constructor is not ClippedAdam:
        hint = f"; pass the torch class torch.optim.{name}, not a wrapper of it"
    else:
        hint = " (an optimizer that is not elementwise, such as LBFGS, needs all parameters"
        hint += " at once and is stepped differently by pyro.optim.PyroOptim)"
    allowed = ", ".join(f"{c.__module__}.{c.__name__}" for c in ALLOWED)
    raise TypeError(f"Fused: optim_constructor must be one of {allowed}; got {name}{hint}")


def _equal(a: dict, b: dict) -> bool:
    """Equal hyperparameters (values that cannot be compared count as different)."""
    try:
        return bool(a == b)
    except (RuntimeError, ValueError, TypeError):
        return False


class _Objs(dict):
    """``optim_objs``: a dict that tells its owner when anyone else changes it (as
    :func:`pyrodiv.fit` does when it hands the state back), so the groups are rebuilt."""

    def __init__(self, owner):
        super().__init__()
        self.owner = owner

    def _changed(self):
        self.owner._dirty = True

    def __setitem__(self, key, value):
        self._changed()
        super().__setitem__(key, value)

    def __delitem__(self, key):
        self._changed()
        super().__delitem__(key)

    def _mutator(name):  # noqa: N805 -- a helper run in the class body
        def method(self, *args, **kwargs):
            self._changed()
            return getattr(dict, name)(self, *args, **kwargs)

        method.__name__ = name
        return method

    pop, popitem, clear, update, setdefault = map(
        _mutator, ("pop", "popitem", "clear", "update", "setdefault")
    )
    del _mutator


class _View(MutableMapping):
    """One parameter's hyperparameters (its ``param_groups[0]``): reads its group; a write
    changes that parameter's only."""

    __slots__ = ("_owner", "_param")

    def __init__(self, owner, param):
        self._owner, self._param = owner, param

    def __getitem__(self, key):
        if key == "params":
            return [self._param]
        mode = self._owner._mode[self._param]
        return mode[key] if key in mode else self._owner._group_of[self._param][key]

    def __setitem__(self, key, value):
        if key == "params":
            raise TypeError("Fused: a parameter's group cannot change its 'params'")
        mode = self._owner._mode[self._param]
        if key in mode:  # how p's update runs: chosen again at the next step
            mode[key] = value
            self._owner._dirty = True
        else:
            self._owner._set_hyper(self._param, key, value)

    def __delitem__(self, key):
        raise TypeError("Fused: hyperparameters cannot be deleted")

    def __iter__(self):
        return iter(self._owner._group_of[self._param])

    def __len__(self):
        return len(self._owner._group_of[self._param])

    def __repr__(self):
        return repr(dict(self))


class _Slot:
    """What stands in ``optim_objs`` for one parameter: its hyperparameters
    (``param_groups``), its state and ``state_dict``/``load_state_dict`` in the format of a
    torch optimizer over that parameter alone. It is not stepped on its own."""

    __slots__ = ("owner", "param", "param_groups")

    def __init__(self, owner, param):
        self.owner, self.param, self.param_groups = owner, param, [_View(owner, param)]

    @property
    def state(self) -> dict:
        found = self.owner._state.get(self.param)
        return {} if found is None else {self.param: found}

    def state_dict(self) -> dict:
        return self.owner._single(self.param).state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        single = self.owner._single(self.param)
        single.load_state_dict(state_dict)
        self.owner._adopt(self.param, single)

    def step(self, *args, **kwargs):
        raise RuntimeError(
            "Fused: one parameter's optimizer is not stepped alone; call the Fused optimizer"
        )

    def zero_grad(self, set_to_none: bool = True) -> None:
        grad = self.param.grad
        if set_to_none:
            self.param.grad = None
        elif grad is not None:
            grad.detach_().zero_()


class Fused(PyroOptim):
    r"""A drop-in ``pyro.optim.PyroOptim`` that steps all of a step's parameters with one
    torch optimizer (torch's fused kernel or ``foreach=True``); see the module docstring.

    :param optim_constructor: the torch optimizer class, one of :data:`ALLOWED` (elementwise:
        ``torch.optim.Adam``, ``AdamW``, ``SGD``, ... or Pyro's ``ClippedAdam``).
    :param optim_args: its arguments, a dict or a callable of the parameter's name returning
        one (as for ``PyroOptim``); parameters with equal arguments share a group.
    :param clip_args: gradient clipping, as for ``PyroOptim`` (``clip_norm`` per parameter).
    :raises TypeError: for another optimizer (e.g. ``torch.optim.LBFGS``) or ``optim_args``
        that is neither a dict nor callable.
    :raises ValueError: for a dict of arguments the optimizer refuses.

    Example::

        >>> optim = Fused(torch.optim.Adam, lambda name: {"lr": 0.1 if "loc" in name else 0.01})
        >>> svi = pyro.infer.SVI(model, guide, optim, loss=pyrodiv.ReverseKL())
    """

    def __init__(self, optim_constructor, optim_args, clip_args=None):
        _check_constructor(optim_constructor)
        if not (isinstance(optim_args, dict) or callable(optim_args)):
            raise TypeError(
                f"Fused: optim_args must be a dict or a callable, got {type(optim_args)!r}"
            )
        if clip_args is not None and not (isinstance(clip_args, dict) or callable(clip_args)):
            raise TypeError(
                f"Fused: clip_args must be a dict or a callable, got {type(clip_args)!r}"
            )
        if isinstance(optim_args, dict):
            try:  # refuse bad arguments now, not at the first step
                optim_constructor([torch.zeros(1, requires_grad=True)], **optim_args)
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"Fused: optim_args {optim_args!r} are refused by "
                    f"{optim_constructor.__name__}: {error}"
                ) from error
        super().__init__(optim_constructor, optim_args, clip_args)
        keys = inspect.signature(optim_constructor).parameters
        self._mode_keys = tuple(k for k in MODE_KEYS if k in keys)
        self._mode: dict = {}  # parameter -> its foreach/fused as given (not as run)
        self.optim_objs = _Objs(self)
        self._group_of: dict = {}  # parameter -> the group dict holding its hyperparameters
        self._state = defaultdict(dict)  # parameter -> its state (shared by every rebuild)
        self._optimizer = None  # the one torch optimizer
        self._stepped = frozenset()  # the parameters in its groups
        self._dirty = True

    def __call__(self, params, *args, **kwargs) -> None:
        """Step the parameters ``params`` (those of one ``SVI`` step) with one optimizer."""
        current = params if isinstance(params, (set, frozenset)) else set(params)
        if not current:
            return
        if self._dirty or current != self._stepped:
            self._rebuild(current)
        if self.pt_clip_args:
            for p in current:
                if self.grad_clip[p] is not None:
                    self.grad_clip[p](p)
        self._optimizer.step(*args, **kwargs)

    # ---- bookkeeping -------------------------------------------------------------------

    def _run_as(self, p) -> dict:
        """``p``'s hyperparameters as its group runs them: torch's fused kernel
        (:data:`FUSABLE`, a floating tensor on a device that has it), else ``foreach=True``,
        unless its arguments chose ``foreach``, ``fused`` or ``differentiable``."""
        hyper = {**_hyper(self._group_of[p]), **self._mode[p]}
        if any(hyper.get(k) is not None for k in MODE_KEYS) or hyper.get("differentiable"):
            return hyper
        if self.pt_optim_constructor in FUSABLE and _fusable(p):
            hyper["fused"] = True
        elif "foreach" in self._mode_keys:
            hyper["foreach"] = True
        return hyper

    def _adopt(self, p, source) -> None:
        """Take ``p``'s hyperparameters and state from a per-parameter optimizer ``source``
        (one Pyro would make, or one :func:`pyrodiv.fit` handed back)."""
        hyper = _hyper(source.param_groups[0])
        self._mode[p] = {k: hyper.get(k) for k in self._mode_keys}
        self._group_of[p] = {**hyper, "params": [p]}
        self._state.pop(p, None)
        found = source.state.get(p)
        if found:
            self._state[p] = found
        dict.__setitem__(self.optim_objs, p, _Slot(self, p))
        self._dirty = True

    def _first_seen(self, p):
        """The optimizer ``PyroOptim`` would make for a new parameter ``p``, with any state
        waiting for it."""
        single = self.pt_optim_constructor([p], **self._get_optim_args(p))
        name = pyro.get_param_store().param_name(p)
        waiting = self._state_waiting_to_be_consumed.pop(name, None)
        if waiting is not None:
            _load_state_dict(single, waiting)
        self.grad_clip[p] = self._get_grad_clip(p)
        return single

    def _single(self, p):
        """A torch optimizer over ``[p]`` alone with ``p``'s hyperparameters and state."""
        single = self.pt_optim_constructor([p])
        single.param_groups[0].update({**_hyper(self._group_of[p]), **self._mode[p]})
        if p in self._state:
            single.state[p] = self._state[p]
        return single

    def _set_hyper(self, p, key, value) -> None:
        group = self._group_of[p]
        if len(group["params"]) == 1:
            group[key] = value
        else:  # p leaves its group at the next step
            self._group_of[p] = {**group, key: value, "params": [p]}
            self._dirty = True

    def _rebuild(self, current) -> None:
        """One optimizer over ``current``, grouped by equal hyperparameters."""
        for p, obj in list(self.optim_objs.items()):
            if not (isinstance(obj, _Slot) and obj.owner is self):
                self._adopt(p, obj)
        for p in current:
            if p not in self.optim_objs:
                self._adopt(p, self._first_seen(p))
        for p in self._group_of.keys() - current:  # kept, not stepped: a group of its own
            self._group_of[p] = {**_hyper(self._group_of[p]), "params": [p]}
        groups = []
        for p in current:
            hyper = self._run_as(p)
            for group in groups:
                if _equal(_hyper(group), hyper):
                    group["params"].append(p)
                    break
            else:
                groups.append({**hyper, "params": [p]})
        self._optimizer = self.pt_optim_constructor(groups)
        self._optimizer.state = self._state
        for group in self._optimizer.param_groups:
            for p in group["params"]:
                self._group_of[p] = group
        self._stepped = frozenset(current)
        self._dirty = False


def FusedAdam(optim_args, clip_args=None) -> Fused:  # noqa: N802 -- as pyro.optim.Adam
    """:class:`Fused` ``torch.optim.Adam``: a drop-in for ``pyro.optim.Adam`` with the same
    arguments and the same steps, one optimizer step for all the parameters.

    Example::

        >>> svi = pyro.infer.SVI(model, guide, FusedAdam({"lr": 0.01}), loss=loss)
    """
    return Fused(torch.optim.Adam, optim_args, clip_args)
