"""Mini-batch variational inference with any pyrodiv loss on PyTorch Lightning, data-parallel.

The model is the conjugate Normal mean: ``mu ~ Normal(0, 10)``, ``y_i ~ Normal(mu, 1)`` for
``i = 1..N`` (``N = 10**6`` by default). Each step sees a mini-batch of ``m`` observations
through ``pyro.plate("data", N, subsample=indices)``, which scales its log-likelihood by ``N/m``;
with ``--devices 2`` (``strategy="ddp"``) two processes train on disjoint mini-batches and
average their gradients. Adam's learning rate is held for half the run, then decays
geometrically. The fitted ``AutoNormal`` guide is printed next to the exact posterior
``Normal(mean, sd)``.

With ``--smoke`` (N = 4000, 50 epochs) the fit lands within a fraction of a posterior sd of the
exact mean and sd (``tests/test_lightning.py``). At N = 10**6 (posterior sd 0.001, mini-batches
of 10**4 noisy at the 0.01 level) the default 10 epochs brought ``loc`` within 0.5 posterior sd
and ``scale`` within 0.77 to 1.0 of the posterior sd on seeds 0 and 1.

Run it::

    python examples/svi_lightning.py --smoke --devices 2          # 2 DDP processes on CPU
    python examples/svi_lightning.py --accelerator gpu --devices 4  # 4 GPUs, N = 10**6
    python examples/svi_lightning.py --threads 1                # N = 10**6, 1 process

The last line printed is a JSON object with the fitted and exact parameters and the
throughput (observations per second of training, all processes together).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import time

import lightning.pytorch as pl
import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoNormal

import pyrodiv
from pyrodiv.inference.lightning import MiniBatches, PyroLightningModule

PRIOR_SD = 10.0
NOISE_SD = 1.0
TRUE_MU = 1.5


def model(idx, y, size):
    """``mu ~ Normal(0, 10)``; the mini-batch ``y = y_all[idx]`` of ``size`` observations."""
    mu = pyro.sample("mu", dist.Normal(torch.zeros((), dtype=y.dtype, device=y.device), PRIOR_SD))
    with pyro.plate("data", size, subsample=idx):
        pyro.sample("y", dist.Normal(mu, NOISE_SD), obs=y)


def exact_posterior(y: torch.Tensor) -> dict:
    """The conjugate posterior of ``mu``: precision ``1/10^2 + N``, mean ``sum(y)/precision``."""
    precision = PRIOR_SD**-2 + y.numel() / NOISE_SD**2
    return {"mean": float(y.double().sum()) / NOISE_SD**2 / precision, "sd": precision**-0.5}


def hold_then_decay(step: int, steps: int, final: float) -> float:
    """The learning-rate factor: 1 for the first half of the steps, then geometric down to
    ``final`` at the last step (the first half finds the posterior, the second averages the
    mini-batch noise down)."""
    half = steps / 2
    return 1.0 if step < half else final ** min(1.0, (step - half) / half)


class Throughput(pl.Callback):
    """Observations per second of training, all processes together (first epoch excluded
    when there are several: it pays for start-up)."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.start = None
        self.steps0 = 0
        self.rate = math.nan

    def on_train_epoch_start(self, trainer, module):
        if self.start is None or (trainer.current_epoch == 1 and trainer.max_epochs > 1):
            self.start, self.steps0 = time.perf_counter(), trainer.global_step

    def on_train_end(self, trainer, module):
        seconds = time.perf_counter() - self.start
        steps = trainer.global_step - self.steps0
        self.rate = steps * self.batch_size * trainer.world_size / seconds


def run(
    size=10**6,
    batch_size=10_000,
    epochs=10,
    devices=1,
    num_nodes=1,
    accelerator="cpu",
    strategy=None,
    loss="reverse_kl",
    particles=1,
    lr=0.05,
    final_lr=0.05,
    seed=0,
    threads=None,
) -> dict:
    """Train and return the fitted and exact parameters and the throughput (every rank
    returns the same parameters; DDP keeps them in step)."""
    if threads is not None:
        torch.set_num_threads(threads)
    world = devices * num_nodes
    if strategy is None:
        strategy = "ddp" if world > 1 else "auto"
    pyro.set_rng_seed(seed)  # the same data and initial guide in every process
    y = TRUE_MU + NOISE_SD * torch.randn(size)
    data = MiniBatches(y, batch_size=batch_size, seed=seed)
    steps = epochs * math.ceil(len(data) / world)  # optimizer steps per process
    divergence = pyrodiv.get_loss(loss, num_particles=particles, vectorize_particles=particles > 1)
    guide = AutoNormal(model)
    schedule = functools.partial(
        torch.optim.lr_scheduler.LambdaLR,
        lr_lambda=functools.partial(hold_then_decay, steps=steps, final=final_lr / lr),
    )
    module = PyroLightningModule(
        model,
        guide,
        divergence,
        lr=lr,
        scheduler=schedule if final_lr != lr else None,
        init_batch=data[0],
        optim_kwargs={"betas": (0.9, 0.9)},  # Adam forgets the large first gradients sooner
        model_kwargs={"size": size},
        seed=seed,
    )
    loader = torch.utils.data.DataLoader(data, batch_size=None, shuffle=True)
    meter = Throughput(batch_size)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[meter],
    )
    start = time.perf_counter()
    trainer.fit(module, loader)
    exact = exact_posterior(y)
    with torch.no_grad():
        loc, scale = float(guide.locs.mu), float(guide.scales.mu)
    return {
        "loss": loss,
        "devices": devices,
        "num_nodes": num_nodes,
        "world_size": trainer.world_size,
        "rank": trainer.global_rank,
        "size": size,
        "batch_size": batch_size,
        "steps_per_process": trainer.global_step,
        "loc": loc,
        "scale": scale,
        "exact_mean": exact["mean"],
        "exact_sd": exact["sd"],
        "loc_error_in_sd": (loc - exact["mean"]) / exact["sd"],
        "scale_ratio": scale / exact["sd"],
        "obs_per_s": meter.rate,
        "fit_seconds": time.perf_counter() - start,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="N=4000, a few hundred steps")
    parser.add_argument("--size", type=int, default=None, help="N (10**6; 4000 with --smoke)")
    parser.add_argument("--batch-size", type=int, default=None, help="10000 (250 with --smoke)")
    parser.add_argument("--epochs", type=int, default=None, help="10 (50 with --smoke)")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--num-nodes", type=int, default=1)
    parser.add_argument("--accelerator", default="cpu", help="cpu, gpu or auto")
    parser.add_argument("--strategy", default=None, help="ddp when devices*nodes > 1")
    parser.add_argument("--loss", default="reverse_kl", help="a pyrodiv.get_loss name")
    parser.add_argument("--particles", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument(
        "--final-lr",
        type=float,
        default=None,
        help="after half the steps, decay geometrically to this: lr/50, or 0.1/sqrt(N) (a "
        "tenth of the posterior sd's order) when smaller, so that the last steps' noise stays "
        "below the posterior sd",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process")
    args = parser.parse_args(argv)
    smoke = args.smoke
    size = args.size or (4000 if smoke else 10**6)
    result = run(
        size=size,
        batch_size=args.batch_size or (250 if smoke else 10_000),
        epochs=args.epochs or (50 if smoke else 10),
        devices=args.devices,
        num_nodes=args.num_nodes,
        accelerator=args.accelerator,
        strategy=args.strategy,
        loss=args.loss,
        particles=args.particles,
        lr=args.lr,
        final_lr=args.final_lr
        if args.final_lr is not None
        else min(args.lr / 50, 0.1 / size**0.5),
        seed=args.seed,
        threads=args.threads,
    )
    if result["rank"] == 0:
        print(
            f"{result['loss']} on {result['world_size']} process(es), N={result['size']}, "
            f"batch {result['batch_size']}, {result['steps_per_process']} steps per process"
        )
        print(f"fitted  q(mu) = Normal({result['loc']:.5f}, {result['scale']:.5f})")
        print(f"exact   p(mu | y) = Normal({result['exact_mean']:.5f}, {result['exact_sd']:.5f})")
        print(f"throughput {result['obs_per_s']:.4g} observations/s")
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
