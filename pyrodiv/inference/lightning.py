r"""Train any pyrodiv loss with PyTorch Lightning: mini-batches, DDP, multi-GPU and multi-node.

A loss :math:`D(P\|Q_\phi)` is a ``pyro.infer.ELBO``, so ``loss(model, guide)`` is a
``torch.nn.Module`` whose ``forward(*batch)`` is ``loss.differentiable_loss(model, guide,
*batch)``. :class:`PyroLightningModule` wraps that module as a
``lightning.pytorch.LightningModule``: the guide's parameters are ordinary
``torch.nn.Parameter`` s (a :class:`~pyro.nn.PyroModule` guide or an autoguide), the
Trainer's optimizer steps them, and ``Trainer(strategy="ddp")`` averages their gradients
across processes.

**Mini-batches.** The model sees one mini-batch of :math:`m` of the :math:`N` observations and
scales its log-likelihood by :math:`N/m` (``pyro.plate("data", N, subsample=indices)``), so
that each process's surrogate is an unbiased estimate of the full-data one,

.. math::

    \log\tilde p(z) = \log p(z) + \frac{N}{m}\sum_{i\in B}\log p(y_i\mid z),\qquad
    \mathbb E_B\big[\log\tilde p(z)\big] = \log p(z) + \sum_{i=1}^N\log p(y_i\mid z).

With :math:`W` processes on disjoint batches :math:`B_1,\dots,B_W`, DDP averages the
:math:`W` gradients: the step is that of one process on a batch of :math:`Wm` observations,
with :math:`1/W` of its variance. The losses linear in :math:`\log\tilde p` (reverse KL) stay
unbiased; the self-normalized ones (forward KL, Jensen-Shannon, the f-divergences on a
posterior) carry the mini-batch bias described in the subsampling how-to, which falls with
:math:`m`.

:class:`MiniBatches` cuts the data into mini-batches once, one dataset item per batch, so
that a ``DataLoader(batch_size=None)`` yields whole batches by slicing (not by collating
:math:`m` rows) and Lightning's ``DistributedSampler`` deals disjoint batches to the
processes.

Example::

    >>> import pyro, pyro.distributions as dist, torch, lightning.pytorch as pl
    >>> from pyro.infer.autoguide import AutoNormal
    >>> from pyrodiv import ReverseKL
    >>> from pyrodiv.inference.lightning import MiniBatches, PyroLightningModule
    >>> y = 1.5 + torch.randn(1000)
    >>> def model(idx, y_batch, size):
    ...     mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    ...     with pyro.plate("data", size, subsample=idx):
    ...         pyro.sample("y", dist.Normal(mu, 1.0), obs=y_batch)
    >>> data = MiniBatches(y, batch_size=100)
    >>> module = PyroLightningModule(model, AutoNormal(model), ReverseKL(), lr=0.05,
    ...                              init_batch=data[0], model_kwargs={"size": len(y)})
    >>> loader = torch.utils.data.DataLoader(data, batch_size=None, shuffle=True)
    >>> pl.Trainer(max_epochs=20, logger=False, enable_progress_bar=False,
    ...            enable_checkpointing=False).fit(module, loader)  # doctest: +SKIP
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro.infer.elbo import ELBO

try:
    import lightning.pytorch as pl
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "pyrodiv.inference.lightning needs PyTorch Lightning: pip install 'pyrodiv[lightning]'"
    ) from error

from ..validation import check_int

__all__ = ["MiniBatches", "PyroLightningModule"]


class MiniBatches(torch.utils.data.Dataset):
    """The rows of ``tensors`` (all of one length :math:`N`) cut into mini-batches of
    ``batch_size`` rows after one random permutation (``seed``); item ``i`` is
    ``(indices, *rows)`` of batch ``i``, the indices being those to pass to
    ``pyro.plate(..., subsample=indices)``. The last, short batch is dropped unless
    ``drop_last=False``. Use it with ``DataLoader(data, batch_size=None, shuffle=True)``.

    Example::

        >>> data = MiniBatches(torch.arange(10.0), batch_size=4, seed=0)
        >>> len(data), data[0][0].shape
        (2, torch.Size([4]))
    """

    def __init__(self, *tensors, batch_size: int, seed: int = 0, drop_last: bool = True):
        if not tensors:
            raise ValueError("MiniBatches: give at least one tensor of observations")
        for k, t in enumerate(tensors):
            if not isinstance(t, torch.Tensor) or t.dim() == 0:
                raise TypeError(
                    f"MiniBatches: argument {k} must be a tensor with a first (data) dim"
                )
        size = tensors[0].shape[0]
        lengths = [t.shape[0] for t in tensors]
        if any(n != size for n in lengths):
            raise ValueError(f"MiniBatches: the tensors differ in length along dim 0: {lengths}")
        self.batch_size = check_int(batch_size, "MiniBatches: batch_size")
        if self.batch_size > size:
            raise ValueError(f"MiniBatches: batch_size {batch_size} exceeds the {size} rows")
        generator = torch.Generator().manual_seed(check_int(seed, "MiniBatches: seed", 0))
        self.order = torch.randperm(size, generator=generator, device="cpu").to(tensors[0].device)
        self.tensors = tensors
        self.size = size
        self.num_batches = size // self.batch_size if drop_last else -(-size // self.batch_size)

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, i):
        if not 0 <= i < self.num_batches:
            raise IndexError(f"MiniBatches: batch {i} out of range ({self.num_batches} batches)")
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        return (idx, *(t[idx] for t in self.tensors))


def _as_args(batch) -> tuple:
    return tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)


class PyroLightningModule(pl.LightningModule):
    r"""A pyrodiv loss (any ``pyro.infer.ELBO``) between ``model`` and ``guide`` as a
    ``LightningModule``: ``training_step(batch)`` returns
    ``loss.differentiable_loss(model, guide, *batch, **model_kwargs)``.

    :param model: the Pyro model; it takes a mini-batch (the items of the DataLoader, e.g.
        ``(indices, y)`` from :class:`MiniBatches`) and scales it by :math:`N/m`.
    :param torch.nn.Module guide: a :class:`~pyro.nn.PyroModule` guide or an autoguide, whose
        parameters the Trainer's optimizer steps (and DDP synchronizes).
    :param loss: a pyrodiv loss (``ReverseKL()``, ``ForwardKL(num_particles=...)``,
        ``FDivergence(...)``) or any other ``pyro.infer.ELBO``.
    :param float lr: the learning rate.
    :param optim: a ``torch.optim.Optimizer`` class (Adam by default).
    :param dict optim_kwargs: further keywords of ``optim``.
    :param scheduler: ``None`` or a callable ``optimizer -> torch.optim.lr_scheduler`` stepped
        after every optimizer step (e.g. ``functools.partial(LinearLR, start_factor=1.0,
        end_factor=0.05, total_iters=steps)``).
    :param init_batch: one mini-batch (as the DataLoader yields it) to run the loss on once
        at construction, so that an autoguide creates its parameters before the optimizer
        and DDP see them; without it, call :meth:`initialize` before ``Trainer.fit``.
    :param dict model_kwargs: keywords passed to the model and guide at every step (e.g.
        ``{"size": N}``).
    :param seed: under DDP every process reseeds Pyro with ``seed + rank`` when training
        starts (``torch.initial_seed() + rank`` when ``None``), so that the processes draw
        independent Monte Carlo particles; the parameters stay identical (DDP broadcasts
        rank 0's at the start).

    A NaN or infinite gradient raises a ``ValueError`` naming the divergence and the
    parameters, before the optimizer steps.
    """

    def __init__(
        self,
        model,
        guide,
        loss,
        *,
        lr: float = 0.01,
        optim=torch.optim.Adam,
        optim_kwargs: dict | None = None,
        scheduler=None,
        init_batch=None,
        model_kwargs: dict | None = None,
        seed: int | None = None,
    ):
        super().__init__()
        if not isinstance(loss, ELBO):
            raise TypeError(
                "PyroLightningModule: loss must be a pyrodiv loss or another pyro.infer.ELBO "
                f"(e.g. pyrodiv.ReverseKL()), got {type(loss).__name__}"
            )
        if not isinstance(guide, torch.nn.Module):
            raise TypeError(
                "PyroLightningModule: guide must be a torch.nn.Module (an autoguide or a "
                "pyro.nn.PyroModule) so that the Trainer's optimizer and DDP see its "
                f"parameters; got {type(guide).__name__}"
            )
        if not callable(model):
            raise TypeError(f"PyroLightningModule: model must be callable, got {model!r}")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"PyroLightningModule: lr must be a positive number, got {lr!r}")
        if not (isinstance(optim, type) and issubclass(optim, torch.optim.Optimizer)):
            raise TypeError(
                f"PyroLightningModule: optim must be a torch.optim.Optimizer class, got {optim!r}"
            )
        if seed is not None:
            check_int(seed, "PyroLightningModule: seed", 0)
        self.loss_fn = loss
        self.objective = loss(model, guide)  # pyro.infer.elbo.ELBOModule: model, guide, loss
        self.lr = float(lr)
        self.optim = optim
        self.optim_kwargs = dict(optim_kwargs or {})
        self.scheduler = scheduler
        self.model_kwargs = dict(model_kwargs or {})
        self.seed = seed
        self._last_value = math.nan
        if init_batch is not None:
            self.initialize(*_as_args(init_batch))

    @property
    def model(self):
        return self.objective.model

    @property
    def guide(self):
        return self.objective.guide

    @property
    def divergence(self) -> str:
        return getattr(self.loss_fn, "divergence", type(self.loss_fn).__name__)

    def initialize(self, *args) -> float:
        """Run the loss once on ``args`` (one mini-batch), without a gradient, so that a lazily
        built guide (an autoguide) creates its parameters; returns the loss value."""
        with torch.no_grad():
            value = self.objective(*args, **self.model_kwargs)
        return float(value)

    def forward(self, *args):
        """The differentiable loss on one mini-batch."""
        return self.objective(*args, **self.model_kwargs)

    def setup(self, stage: str):
        if not any(True for _ in self.parameters()):
            raise ValueError(
                f"PyroLightningModule ({self.divergence}): the guide has no parameters yet; an "
                "autoguide creates them on its first call. Pass init_batch= (one mini-batch) or "
                "call module.initialize(*batch) before Trainer.fit"
            )

    def on_train_start(self):
        if self.seed is not None or self.trainer.world_size > 1:
            base = self.seed if self.seed is not None else torch.initial_seed()
            pyro.set_rng_seed((base + self.global_rank) % 2**32)

    def training_step(self, batch, batch_idx):
        loss = self(*_as_args(batch))
        self._last_value = loss.detach()
        if self._trainer is not None and not getattr(self.trainer, "barebones", False):
            self.log("loss", self._last_value, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def on_after_backward(self):
        grads = [(name, p.grad) for name, p in self.named_parameters() if p.grad is not None]
        if not grads:
            return
        total = torch.stack(torch._foreach_norm([g for _, g in grads])).sum()
        if torch.isfinite(total):
            return
        bad = [name for name, g in grads if not torch.isfinite(g).all()]
        raise ValueError(
            f"{self.divergence}: the gradient of parameter(s) {bad} is NaN or inf (a density "
            "ratio beyond the floating-point range, or a non-differentiable point); start Q "
            "nearer P, lower lr or use more particles"
        )

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optim(params, lr=self.lr, **self.optim_kwargs)
        if self.scheduler is None:
            return optimizer
        schedule = {"scheduler": self.scheduler(optimizer), "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": schedule}
