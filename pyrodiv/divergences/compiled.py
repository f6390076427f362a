r"""The compiled path: a loss's estimate on lowered tensor functions, recorded with ``torch.jit``.

:func:`compile` makes any :class:`~pyrodiv.divergences.loss_base.DivergenceLoss` run, for
static programs (a model with a Gaussian autoguide), on the pure tensor functions of
:mod:`pyrodiv.divergences.lowering` instead of Pyro's traces: per step

.. math::

    \varepsilon \sim N(0, I),\quad u_k = \mu_\theta + S_\theta \varepsilon_k,\quad
    \log p_k = \log p(\text{data}, T(u_k)),\quad
    \log q_k = \log q_\theta(u_k) - \log|\det J_T(u_k)|,

then the loss's own estimator (the one its plan table names for the target, e.g.
:func:`~pyrodiv.divergences.estimators.self_normalized_kl_forward` for ``ForwardKL`` on a
posterior) on :math:`(\log p_k, \log q_k)`, the whole recorded once with
:func:`torch.jit.trace` and replayed: no poutine handler, trace or Python loop over sites runs
after the first call. A training step (``loss_and_grads``, which ``SVI.step`` calls, and
:func:`pyrodiv.fit`'s loop) replays a second recording, of the forward *and* backward passes as
one graph without autograd (traced through autograd by ``make_fx``), several times faster on
small tensors than autograd's engine. The noise is drawn outside the graph in the shapes and
order of the eager guide run: at a seed the compiled loss makes the uncompiled one's draws and
gives its value and gradient (to rounding), for vectorized particles or one particle.

Lowered: the prior and posterior targets of every loss whose plan runs the guide first
(``ReverseKL``, ``ForwardKL`` and ``JensenShannon`` on a posterior, every ``FDivergence``,
``RenyiBound``, ``CUBO``) with ``AutoNormal``, ``AutoDiagonalNormal``,
``AutoMultivariateNormal``, ``AutoLowRankMultivariateNormal`` or another Gaussian
``AutoContinuous`` (``AutoWhitenedNormal``), and the spline-flow guide
:class:`~pyrodiv.inference.flow_guide.AutoWhitenedFlow`, whose distribution gives
:math:`\log q` with its draw (at a detached draw, by Newton steps from the known roots of its
splines). Everything else runs traced by
:func:`pyrodiv.divergences.jit.jit` (uncompiled for ``ForwardKL(estimator="msc")`` and dynamic
programs, which a recorded trace would freeze), after one ``UserWarning`` naming why: a sample
target or given draws, a plan that draws from the model, a non-Gaussian guide, sequential
particles, a subsampled plate, an enumerated site, a model that does not broadcast over the
particle plate, a dynamic program (the graph disagrees with the eager functions at one of
three fresh draws).

**Backends** (:data:`BACKENDS`): the graphs are replayed by torch.jit, or compiled by
inductor (``torch.compile`` of the same aten graph: fused C++ kernels, about 10 s to compile,
many times faster at thousands of particles or data points). ``backend="auto"`` times a
recorded step and uses inductor where it is slow enough (:attr:`Program.INDUCTOR_STEP`) for
the compilation to pay back over the steps expected.

As with :func:`~pyrodiv.divergences.jit.jit`, control flow that depends on values is frozen,
and the per-site NaN checks run at the first call only (the estimate's own check runs every
call). Tensors among the positional and keyword arguments are the graph's inputs; each new
non-tensor argument or data shape records a new graph.

Example::

    >>> import pyrodiv
    >>> loss = compile(pyrodiv.ReverseKL(num_particles=64, vectorize_particles=True))
    >>> svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), loss=loss)
"""

from __future__ import annotations

import math
import time
import warnings

import pyro
import torch
from pyro.poutine.runtime import _PYRO_STACK

from .bound_watch import WatchedValue
from .estimators import Estimate
from .jit import _fixed_arguments, traced_estimate
from .loss_base import DivergenceLoss
from .lowering import NotLowerable, lower
from .trace_pair import Run

__all__ = ["BACKENDS", "NotLowerable", "Program", "compile", "program"]

#: ``"jit"``: ``torch.jit.trace`` (recorded in a fraction of a second, the eager operations
#: replayed); ``"inductor"``: ``torch.compile`` of the same function (about 10 s to compile,
#: fused kernels, much faster at many particles or data); ``"auto"``: inductor where a step
#: is slow enough for the compilation to pay back (:attr:`Program.INDUCTOR_STEP`).
BACKENDS = ("auto", "jit", "inductor")


class Program:
    r"""One lowered, recorded estimate of a loss for one model, guide and argument pattern.

    ``program(args, kwargs)`` draws fresh noise and returns the
    :class:`~pyrodiv.divergences.estimators.Estimate`, :meth:`value_and_grads` the value and
    the gradients (``gradient=True``: from the joint graph); ``params`` are the guide's
    unconstrained parameters (the param store's own tensors), the graphs' first inputs.

    :raises NotLowerable: with the reason, when the programs cannot be lowered or the
        recorded graph disagrees with the eager functions at a fresh draw.
    """

    #: ``backend="auto"`` compiles with inductor when the recorded step takes longer than
    #: this (seconds) and the expected saving exceeds :attr:`INDUCTOR_PAYBACK`.
    INDUCTOR_STEP = 5e-3
    #: Seconds that inductor's saving must exceed (its compilation takes about 10 s).
    INDUCTOR_PAYBACK = 20.0

    def __init__(
        self, loss, model, guide, args, kwargs, backend="auto", steps=None, gradient=False
    ):
        if backend not in BACKENDS:
            raise ValueError(f"compile: backend must be one of {BACKENDS}, got {backend!r}")
        self.loss, self.guide = loss, guide
        self.lowered = lowered = lower(loss, model, guide, args, kwargs)
        kind = loss.check_target(model, args, kwargs)
        self.estimator = loss.plans()[kind].estimator
        self.names = lowered.param_names(args, kwargs)
        self.attributes = lowered.tensor_attributes()
        self.positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        self.keywords = sorted(k for k, v in kwargs.items() if isinstance(v, torch.Tensor))
        self.template = (list(args), dict(kwargs))
        self.watch = getattr(loss, "watch", None)
        self.params = [pyro.get_param_store()._params[name] for name in self.names]
        with torch.random.fork_rng():  # recording leaves the draws of the first call alone
            draws = [lowered.noise() for _ in range(1 + self.STATIC_CHECKS)]
        inputs = self._inputs(draws[0], args, kwargs)
        began = time.perf_counter()
        self.graph = self._record(inputs)
        joint_cost = self.JOINT_COST * (time.perf_counter() - began)
        checks = [self._inputs(noise, args, kwargs) for noise in draws[1:]]
        self._check_static(checks)
        self.backend, self.joint, self._deferred = "jit", None, None
        if gradient and backend == "jit" and joint_cost > self.JOINT_DEFER:
            self._deferred = [inputs, checks[0], joint_cost]  # recorded once it pays back
        elif gradient:
            self.joint = self._record_joint(inputs, checks[0])
        if backend == "inductor" or (backend == "auto" and self._worth_inductor(inputs, steps)):
            self._use_inductor(inputs)

    # ---- recording -----------------------------------------------------------------------

    def _inputs(self, noise, args, kwargs) -> tuple:
        guide = self.guide
        return (
            *self.params,
            *(getattr(guide, name) for name in self.attributes),
            *noise,
            *(args[i] for i in self.positions),
            *(kwargs[k] for k in self.keywords),
        )

    def _function(self, *inputs):
        """The estimate as a function of the inputs: ``(value, surrogate, watched)``, where
        ``watched`` holds what a bound's runaway watch is given: the bound's estimate (which
        differs from ``value`` where the loss reports another quantity, as Pearson's
        f-divergence does from its Renyi bound) and the mean log-weight."""
        start = len(self.params) + len(self.attributes)
        count = len(self.lowered.shapes)
        noise, data = inputs[start : start + count], iter(inputs[start + count :])
        args, kwargs = list(self.template[0]), dict(self.template[1])
        for i in self.positions:
            args[i] = next(data)
        for k in self.keywords:
            kwargs[k] = next(data)
        log_p, log_q = self.lowered.densities(noise, tuple(args), kwargs)
        run = Run(log_p, log_q, None, {}, {}, {})
        previous, capture = getattr(self.loss, "watch", None), WatchedValue()
        self.loss.watch = capture
        try:
            est = self.estimator(self.loss, run)
        finally:
            self.loss.watch = previous
        bound = est.value if capture.value is None else capture.value
        elbo = (log_p - log_q).detach().mean()
        return est.value, est.surrogate, torch.stack([bound.detach().reshape(()), elbo])

    def _eager(self, inputs):
        loss, self.loss.watch = self.loss, None
        try:
            with pyro.validation_enabled(False), torch.enable_grad():
                return self._function(*inputs)
        finally:
            loss.watch = self.watch

    def _record(self, inputs):
        self.loss.watch = None  # a watch is updated outside the graph, every call
        try:
            with pyro.validation_enabled(False), torch.enable_grad(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
                warnings.filterwarnings("ignore", message=".*torch.jit.trace. is deprecated")
                return torch.jit.trace(self._function, inputs, check_trace=False)
        except NotLowerable:
            raise
        except Exception as error:  # noqa: BLE001 - any program torch.jit cannot record
            raise NotLowerable(
                f"torch.jit cannot record it ({type(error).__name__}: {error})"
            ) from None
        finally:
            self.loss.watch = self.watch

    #: Fresh draws at which the recorded graph is compared with the eager functions.
    STATIC_CHECKS = 3
    #: The joint graph takes about this many times the forward graph's time to record.
    JOINT_COST = 10.0
    #: Above this estimated cost (s), ``"jit"`` runs the forward graph and autograd until the
    #: steps' time adds up to it, then records the joint graph (rent or buy: at most twice the
    #: better choice's time; a flow's joint graph takes 2 to 5 s, more than a short stage saves).
    JOINT_DEFER = 1.0

    def keep_forward_graph(self) -> None:
        """Never record the joint graph (a stage stopped by a deadline cannot pay it back)."""
        self._deferred = None

    def _check_static(self, checks) -> None:
        """Compare the graph with the eager functions at the inputs ``checks`` (fresh draws):
        a program whose structure depends on the values drawn is dynamic."""
        for inputs in checks:
            with torch.no_grad():
                recorded = self.graph(*inputs)
                eager = self._eager(inputs)
            pairs = zip(
                torch.cat([t.detach().reshape(-1) for t in recorded]).tolist(),
                torch.cat([t.detach().reshape(-1) for t in eager]).tolist(),
                strict=True,
            )
            for a, b in pairs:
                if math.isfinite(b) and not abs(a - b) <= 1e-6 * max(1.0, abs(b)):
                    raise NotLowerable(
                        "its structure depends on the values drawn (a dynamic program): the "
                        "recorded graph gives a different estimate at a fresh draw",
                        traceable=False,
                    )

    # ---- the gradient in the graph --------------------------------------------------------

    def _joint_function(self, *inputs):
        """``(value, watched, *gradients)``: the estimate and the gradient of its surrogate
        with respect to the parameters (0 for one it does not reach)."""
        value, surrogate, elbo = self._function(*inputs)
        grads = torch.autograd.grad(
            surrogate,
            inputs[: len(self.params)],
            allow_unused=True,
            materialize_grads=True,
        )
        return (value, elbo, *grads)

    def _aten(self, function, inputs):
        """``function`` traced to an aten graph (``make_fx``; through autograd for the joint
        function)."""
        from torch.fx.experimental.proxy_tensor import make_fx

        self.loss.watch = None
        try:
            with pyro.validation_enabled(False), torch.enable_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return make_fx(function)(*inputs)
        finally:
            self.loss.watch = self.watch

    def _record_joint(self, inputs, check):
        r"""The forward and backward passes recorded as one graph without autograd (replayed
        by the torch.jit interpreter, several times faster than autograd's engine on small
        tensors), checked against the surrogate graph and ``torch.autograd.grad`` at a fresh
        draw; ``None`` (the surrogate graph and ``backward`` are used) if that fails."""
        try:
            module = self._aten(self._joint_function, inputs)
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                joint = torch.jit.trace(module, inputs, check_trace=False)
                got = joint(*check)
        except Exception:  # noqa: BLE001 - a program autograd cannot be traced through
            return None
        self.aten_joint = module
        return joint if _close(got, self._reference_joint(check), 1e-8) else None

    def _reference_joint(self, inputs):
        with torch.enable_grad():
            value, surrogate, elbo = self.graph(*inputs)
        grads = torch.autograd.grad(
            surrogate, self.params, allow_unused=True, materialize_grads=True
        )
        return (value, elbo, *grads)

    # ---- inductor ------------------------------------------------------------------------

    def _worth_inductor(self, inputs, steps) -> bool:
        """Whether a step of the recorded graph (timed here, forward and gradient) is slow
        enough that inductor's compilation pays back over ``steps`` (1000 when unknown)."""
        best = math.inf
        for _ in range(3):
            began = time.perf_counter()
            if self.joint is not None:
                with torch.no_grad():
                    self.joint(*inputs)
            else:
                self._reference_joint(inputs)
            best = min(best, time.perf_counter() - began)
        saving = 0.7 * best * (steps if steps is not None else 1000)
        return best > self.INDUCTOR_STEP and saving > self.INDUCTOR_PAYBACK

    def _use_inductor(self, inputs) -> None:
        """Compile with ``torch.compile`` (inductor) from an aten graph (``make_fx``): the
        joint graph where there is one (run without autograd), else the estimate (autograd
        through AOTAutograd); checked against the recorded graph. On any failure the recorded
        graph stays, with one warning."""
        try:
            if self.joint is not None:
                compiled = torch.compile(self.aten_joint, dynamic=False, fullgraph=True)
                with torch.no_grad():
                    got = compiled(*inputs)  # the first call compiles
                want = self._reference_joint(inputs)
            else:
                module = self._aten(self._function, inputs)
                compiled = torch.compile(module, dynamic=False, fullgraph=True)
                got, want = compiled(*inputs), self.graph(*inputs)
        except Exception as error:  # noqa: BLE001 - no compiler, an unsupported operation
            warnings.warn(
                f"pyrodiv.compile: inductor could not compile {self.loss.divergence} "
                f"({type(error).__name__}: {str(error)[:200]}); it runs on the torch.jit graph",
                UserWarning,
                stacklevel=5,
            )
            return
        if not _close(got, want, 1e-3):
            warnings.warn(
                f"pyrodiv.compile: inductor's estimate of {self.loss.divergence} differs from "
                "the recorded graph's; it runs on the latter",
                UserWarning,
                stacklevel=5,
            )
            return
        if self.joint is not None:
            self.joint = compiled
        else:
            self.graph = compiled
        self.backend = "inductor"

    # ---- calling ---------------------------------------------------------------------------

    def refresh(self, args, kwargs) -> list[torch.Tensor]:
        """``params`` fetched from the param store again (after ``clear_param_store``
        the guide registers its parameters anew); returns them."""
        store = pyro.get_param_store()._params
        if any(name not in store for name in self.names):
            self.lowered.param_names(args, kwargs)  # the guide registers them again
        self.params = [store[name] for name in self.names]
        return self.params

    def __call__(self, args, kwargs) -> Estimate:
        self.refresh(args, kwargs)
        value, surrogate, watched = self.graph(*self._inputs(self.lowered.noise(), args, kwargs))
        if _PYRO_STACK:  # under SVI's param capture: let it see the parameters
            for name in self.names:
                pyro.param(name)
        if self.watch is not None and torch.is_grad_enabled():
            self.watch.update(*watched.tolist())
        return Estimate(value, surrogate)

    def value_and_grads(self, args, kwargs) -> tuple[float, list[torch.Tensor]]:
        """One training step's estimate (a float) and the gradients of its surrogate with
        respect to ``params``, from fresh draws (the joint graph where there is one)."""
        if self.joint is None:
            began = time.perf_counter()
            est = self(args, kwargs)
            grads = torch.autograd.grad(
                est.surrogate, self.params, allow_unused=True, materialize_grads=True
            )
            if self._deferred is not None:
                self._deferred[2] -= time.perf_counter() - began
                if self._deferred[2] <= 0:
                    inputs, check, _ = self._deferred
                    self._deferred, self.joint = None, self._record_joint(inputs, check)
            return float(est.value), list(grads)
        self.refresh(args, kwargs)
        inputs = self._inputs(self.lowered.noise(), args, kwargs)
        with torch.no_grad():
            value, watched, *grads = self.joint(*inputs)
        value = float(value)
        if self.watch is not None:
            self.watch.update(*watched.tolist())
        return value, grads


def _close(got, want, rtol: float) -> bool:
    """Whether two tuples of tensors agree to ``rtol`` relative to each one's scale (at least
    1); non-finite reference entries are not compared."""
    for a, b in zip(got, want, strict=True):
        a, b = a.detach(), b.detach()
        finite = torch.isfinite(b)
        scale = max(1.0, float(b[finite].abs().max())) if bool(finite.any()) else 1.0
        if not bool(((a - b)[finite].abs() <= rtol * scale).all()):
            return False
    return True


def _key(loss, model, guide, args, kwargs) -> tuple:
    """What a recorded graph is specific to: the programs, the particles, the non-tensor
    arguments and the tensors' shapes and dtypes."""
    shapes = tuple(
        (a.shape, a.dtype) for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)
    )
    fixed_kwargs = tuple(
        sorted((k, v) for k, v in kwargs.items() if not isinstance(v, torch.Tensor))
    )
    return (
        model,
        guide,
        loss.num_particles,
        loss.vectorize_particles,
        _fixed_arguments(args),
        fixed_kwargs,
        shapes,
    )


def program(
    loss: DivergenceLoss,
    model,
    guide,
    args: tuple,
    kwargs: dict,
    backend: str = "auto",
    steps: int | None = None,
    gradient: bool = False,
) -> Program:
    """The :class:`Program` of ``loss`` for these programs and arguments, recorded on first use
    and kept on the loss; raises :class:`NotLowerable` (each time) where it cannot lower.
    ``steps``: how many steps it will run, if known (for ``backend="auto"``); ``gradient``:
    also record the gradient in the graph (:meth:`Program.value_and_grads`, for
    :func:`pyrodiv.fit`)."""
    cache = loss.__dict__.setdefault("_programs", {})
    try:
        key = (backend, gradient, *_key(loss, model, guide, args, kwargs))
        found = cache.get(key)
    except TypeError:
        raise NotLowerable("a keyword argument is neither a tensor nor hashable") from None
    if found is None:
        try:
            found = Program(loss, model, guide, args, kwargs, backend, steps, gradient)
        except NotLowerable as why:
            found = why
        except TypeError as error:  # unhashable keyword arguments and the like
            found = NotLowerable(str(error))
        cache[key] = found
    if isinstance(found, NotLowerable):
        raise found
    return found


def compile(loss: DivergenceLoss, backend: str = "auto") -> DivergenceLoss:  # noqa: A001
    """Run ``loss`` on the compiled path (see the module docstring), in place; returns it.

    :param loss: a pyrodiv loss (``ReverseKL``, ``ForwardKL``, ``JensenShannon``,
        ``FDivergence``, ``RenyiBound``, ``CUBO``, ...).
    :param backend: one of :data:`BACKENDS`.
    :raises TypeError: for anything that is not a
        :class:`~pyrodiv.divergences.loss_base.DivergenceLoss`.

    Where a model and guide cannot be lowered, the loss runs traced by
    :func:`pyrodiv.divergences.jit.jit` (uncompiled for score climbing), after one
    ``UserWarning`` naming why.

    Example::

        >>> import pyrodiv
        >>> loss = compile(pyrodiv.ForwardKL(num_particles=256, vectorize_particles=True))
        >>> svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), loss=loss)
    """
    if not isinstance(loss, DivergenceLoss):
        raise TypeError(
            f"compile: expected a pyrodiv DivergenceLoss (ReverseKL, ForwardKL, ...), got "
            f"{type(loss).__name__}"
        )
    if backend not in BACKENDS:
        raise ValueError(f"compile: backend must be one of {BACKENDS}, got {backend!r}")
    if getattr(loss, "_compiled", False):
        return loss
    uncompiled = loss._estimate
    msc = getattr(loss, "estimator", None) == "msc"
    traced = traced_estimate(uncompiled)
    told = set()

    def _estimate(model, guide, args, kwargs):
        try:
            found = program(loss, model, guide, args, kwargs, backend)
        except NotLowerable as why:
            fallback = traced if why.traceable and not msc else uncompiled
            if str(why) not in told:
                told.add(str(why))
                instead = "traced by pyrodiv.jit" if fallback is traced else "uncompiled"
                warnings.warn(
                    f"pyrodiv.compile: {loss.divergence} is not lowered ({why}); it runs "
                    f"{instead} instead",
                    UserWarning,
                    stacklevel=4,
                )
            return fallback(model, guide, args, kwargs)
        est = found(args, kwargs)
        loss._params.update(zip(found.names, found.params, strict=True))
        return est

    uncompiled_step = loss.loss_and_grads

    def loss_and_grads(model, guide, *args, **kwargs):
        """The estimate and its gradient from one graph (accumulated into ``.grad`` as
        ``backward`` would), the loss's checks, and the parameters shown to ``SVI``."""
        try:
            found = program(loss, model, guide, args, kwargs, backend, gradient=True)
        except NotLowerable:
            return uncompiled_step(model, guide, *args, **kwargs)  # the fallback, noted
        value, grads = found.value_and_grads(args, kwargs)
        loss.check_finite(value)
        for p, grad in zip(found.params, grads, strict=True):
            p.grad = grad if p.grad is None else p.grad + grad
        if _PYRO_STACK:  # under SVI's param capture: let it see the parameters
            for name in found.names:
                pyro.param(name)
        loss._params.update(zip(found.names, found.params, strict=True))
        loss._check_gradients(value)
        return value

    loss._estimate = _estimate
    loss.loss_and_grads = loss_and_grads
    loss._compiled = True
    return loss
