"""Several processes, one run: the torch.distributed side of ganji's training loop.

`torchrun --nproc-per-node N -m ganji train ...` (or `ganji train ... --nproc N`, which launches
torchrun) starts N copies of the command; torchrun tells each its place through the environment
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). This module turns that into a `World`
and holds everything the loop and the recipes need to train as one:

- `setup()` / `teardown()`: the process group, initialised from the environment when WORLD_SIZE > 1,
  with gloo for CPU tensors and, where CUDA is present, NCCL for CUDA tensors (one group, both
  backends: `cpu:gloo,cuda:nccl`); a plain `ganji train` gets the single-process World and never
  touches torch.distributed.
- `local_device()`: under torchrun a CUDA run uses cuda:LOCAL_RANK, one GPU per process.
- Sharding of the global batch: `--batch-size B` is the *global* batch. Every rank draws the same
  global permutation of the epoch (a function of seed and epoch); with W ranks, rank r takes the
  r-th of W equal slices of every global batch (`rank_indices`), so the ranks' slices of one step
  together are exactly the batch a single process would train on. B must be divisible by W.
- Random draws that are per sample (noise, timesteps, latents, the gradient penalty's mixing
  weights) are drawn for the whole global batch on every rank from the same generator state and
  sliced (`World.draw`): every rank consumes the same random numbers as a single process, so the
  RNG state is identical on all ranks and equals the 1-process one. That is what makes a
  checkpoint independent of the world size (rank 0's RNG state is everyone's) and W processes train
  the same model as one process, up to the order of floating-point sums.
- Gradients: DistributedDataParallel (`World.ddp`) averages them over ranks; every recipe's loss is
  a mean over its rank's equal share of the batch, so the average equals the gradient of the loss
  averaged over the global batch.
- BatchNorm: `convert_sync_batchnorm` swaps BatchNorm2d for `SyncBatchNorm` (world size > 1 only),
  whose training statistics are those of the global batch. torch.nn.SyncBatchNorm accepts GPU
  inputs only; this one is built from differentiable operations around one all-reduce per layer,
  so it runs on CPU (gloo) and GPU (NCCL) alike, and its backward can itself be differentiated
  (the GAN's gradient penalty). Under torch.compile the graph breaks at that all-reduce.
- Logged losses are averaged over ranks (`World.mean_values`) at the loop's logging points only.
- Decisions that must be the same everywhere: `World.max` (stop requests, the time budget),
  `World.on_main` (rank 0 creates or finds the run; its result or its error reaches every rank),
  `World.sync_rng` (after work that only rank 0 does, such as sample grids and FID evaluations).

Only rank 0 writes (config, checkpoints, metrics, grids) and draws progress; see ganji.train.loop.
Nothing here pickles: objects travel between ranks as JSON in a uint8 tensor.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from ganji.errors import GanjiError

T = TypeVar("T")

# Rank 0 alone draws sample grids and runs --eval-every's FID while the others wait in a
# collective: the process group's timeout must outlast that.
TIMEOUT = timedelta(hours=1)

# Environment variables that torchrun sets for every worker.
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class ReportedOnMain(GanjiError):
    """An error that rank 0 ran into and told every rank about: only rank 0 prints it."""


@dataclass(frozen=True)
class World:
    """This process's place among the training processes: rank, world size, local rank."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun (its environment variables are set)

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and draws progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process: a process group, DDP, SyncBatchNorm and collectives."""
        return self.size > 1

    # -- the global batch ------------------------------------------------------------------------
    def draw(self, local_n: int, draw: Callable[[int], torch.Tensor]) -> torch.Tensor:
        """`draw(n)` for the global batch (local_n x world size) on every rank, this rank's slice.

        In a single process this is `draw(local_n)` itself: the same call as before ganji ran on
        several processes, so one-process runs are unchanged.
        """
        if self.size == 1:
            return draw(local_n)
        full = draw(local_n * self.size)
        return full[self.rank * local_n : (self.rank + 1) * local_n]

    # -- collectives (no-ops in a single process) ------------------------------------------------
    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of `tensor` over ranks (a new tensor; not differentiable)."""
        if self.size == 1:
            return tensor
        out = tensor.detach().clone()
        dist.all_reduce(out)
        return out.div_(self.size)

    def mean_values(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every value (scalar tensors on one device) averaged over ranks, in one all-reduce."""
        if self.size == 1 or not values:
            return values
        keys = list(values)  # the same order on every rank: the recipe's
        stacked = torch.stack([values[k].detach().float().reshape(()) for k in keys])
        dist.all_reduce(stacked)
        stacked.div_(self.size)
        return {k: stacked[i] for i, k in enumerate(keys)}

    def max(self, value: int) -> int:
        """The largest of every rank's `value`, on every rank (a CPU all-reduce: no GPU sync)."""
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def barrier(self) -> None:
        """Wait for every rank (an all-reduce of a CPU tensor, so it goes through gloo)."""
        if self.size > 1:
            dist.all_reduce(torch.zeros(1))

    def broadcast_json(self, obj: Any) -> Any:
        """Rank 0's `obj` (anything JSON can hold) on every rank; the argument is ignored elsewhere."""
        return obj if self.size == 1 else self._broadcast_from(obj, 0)

    def gather_json(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if self.size == 1:
            return [obj]
        return [self._broadcast_from(obj, src) for src in range(self.size)]

    def _broadcast_from(self, obj: Any, src: int) -> Any:
        """Rank `src`'s `obj` on every rank, as JSON bytes in CPU tensors (gloo)."""
        mine = self.rank == src
        payload = json.dumps(obj).encode("utf-8") if mine else b""
        length = torch.tensor([len(payload)], dtype=torch.int64)
        dist.broadcast(length, src=src)
        data = torch.frombuffer(bytearray(payload), dtype=torch.uint8) if mine else torch.empty(int(length.item()), dtype=torch.uint8)
        dist.broadcast(data, src=src)
        return obj if mine else json.loads(bytes(data.tolist()).decode("utf-8"))

    def on_main(self, fn: Callable[[], T], encode: Callable[[T], Any], decode: Callable[[Any], T]) -> T:
        """Run `fn` on rank 0 only and hand its result (or its GanjiError/OSError) to every rank.

        The result travels as JSON: `encode` turns it into JSON-able data, `decode` back. Other
        ranks raise `ReportedOnMain` with rank 0's message, so that the error is printed once.
        """
        if self.size == 1:
            return fn()
        if self.is_main:
            try:
                result = fn()
            except (GanjiError, OSError) as exc:
                self.broadcast_json({"error": str(exc) if isinstance(exc, GanjiError) else f"{exc.strerror or exc}: {exc.filename}"})
                raise
            self.broadcast_json({"ok": encode(result)})
            return result
        reply = self.broadcast_json(None)
        if "error" in reply:
            raise ReportedOnMain(reply["error"])
        return decode(reply["ok"])

    def sync_rng(self, device: torch.device) -> None:
        """Give every rank rank 0's RNG states (CPU, and the CUDA device's): after rank-0-only work."""
        if self.size == 1:
            return
        cpu = torch.get_rng_state()
        dist.broadcast(cpu, src=0)
        torch.set_rng_state(cpu)
        if device.type == "cuda":
            state = torch.cuda.get_rng_state(device)
            dist.broadcast(state, src=0)
            torch.cuda.set_rng_state(state, device)

    # -- models ----------------------------------------------------------------------------------
    def ddp(self, module: nn.Module, device: torch.device) -> nn.Module:
        """`module` wrapped in DistributedDataParallel (gradients averaged over ranks); itself if alone.

        Buffers are not broadcast at every forward: with SyncBatchNorm the running statistics are
        the same on every rank anyway, and the GAN calls D several times before one backward.
        """
        if self.size == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" and device.index is not None else None
        # `forward_sync_buffers` replaces `broadcast_buffers` in newer PyTorch (which warns about the old name).
        no_buffer_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in _ddp_parameters() else {"broadcast_buffers": False}
        return DistributedDataParallel(module, device_ids=ids, **no_buffer_sync)


SINGLE = World()


def _ddp_parameters() -> set[str]:
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    return set(inspect.signature(DistributedDataParallel.__init__).parameters)


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """Images per rank per step: the global batch split evenly; a clear error if it cannot be."""
    if batch_size % world_size != 0:
        raise GanjiError(
            f"--batch-size {batch_size} is the global batch and must be divisible by the number of processes ({world_size}): "
            f"use a multiple of {world_size}, e.g. {max(world_size, batch_size // world_size * world_size)}"
        )
    return batch_size // world_size


def rank_indices(perm: torch.Tensor, step_in_epoch: int, batch_size: int, rank: int = 0, rank_batch: int | None = None) -> torch.Tensor:
    """The dataset indices rank `rank` trains on at step `step_in_epoch` of the epoch.

    `perm` is the epoch's global permutation, the same on every rank; global batch i is
    perm[i*B:(i+1)*B] and rank r takes its r-th slice of `rank_batch` = B/W indices (see
    `per_rank_batch`, which checks it once; one process: the whole batch). Over one epoch each image
    of the (batch-aligned) permutation is seen exactly once, by exactly one rank.
    """
    b = batch_size if rank_batch is None else rank_batch
    start = step_in_epoch * batch_size + rank * b
    return perm[start : start + b]


# -- process group ---------------------------------------------------------------------------------
def world_from_env() -> World:
    """The World that torchrun's environment describes; the single process without it."""
    if not all(k in os.environ for k in TORCHRUN_ENV):
        return SINGLE
    try:
        rank, size, local = (int(os.environ[k]) for k in TORCHRUN_ENV)
    except ValueError:
        raise GanjiError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers (got {[os.environ[k] for k in TORCHRUN_ENV]})") from None
    if size < 1 or not 0 <= rank < size or local < 0:
        raise GanjiError(f"inconsistent torchrun environment: RANK={rank} WORLD_SIZE={size} LOCAL_RANK={local}")
    return World(rank=rank, size=size, local_rank=local, launched=True)


def backend() -> str:
    """gloo for CPU tensors, plus NCCL for CUDA tensors where there is CUDA.

    GANJI_DIST_BACKEND overrides it with any torch.distributed backend string (e.g. `gloo` where
    NCCL is missing); it must handle CPU tensors, which ganji's own small collectives use.
    """
    override = os.environ.get("GANJI_DIST_BACKEND")
    if override:
        return override
    if torch.cuda.is_available() and dist.is_nccl_available():
        return "cpu:gloo,cuda:nccl"
    return "gloo"


def setup() -> World:
    """This process's World; with WORLD_SIZE > 1, the process group is initialised from the environment.

    Under torchrun with CUDA, the process's current device becomes cuda:LOCAL_RANK (NCCL needs it).
    """
    world = world_from_env()
    if not world.distributed or dist.is_initialized():
        return world
    if not dist.is_available():
        raise GanjiError("this PyTorch build has no torch.distributed: train with one process")
    if torch.cuda.is_available() and world.local_rank < torch.cuda.device_count():
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(backend=backend(), init_method="env://", timeout=TIMEOUT)
    return world


def teardown(world: World, wait: bool = True) -> None:
    """Destroy the process group that `setup` made; with `wait`, once every rank has got here.

    After an error, `wait=False`: the other ranks may be anywhere, and torchrun stops them when
    this process exits.
    """
    if not (world.distributed and dist.is_initialized()):
        return
    try:
        if wait:
            world.barrier()
    finally:
        dist.destroy_process_group()


def local_device(device: torch.device, world: World) -> torch.device:
    """Under torchrun, CUDA means this process's own GPU: cuda:LOCAL_RANK."""
    if device.type != "cuda" or not world.launched:
        return device
    count = torch.cuda.device_count()
    if world.local_rank >= count:
        raise GanjiError(
            f"process {world.rank} has LOCAL_RANK {world.local_rank} but this machine has {count} GPU(s): "
            f"start at most {count} processes per machine (--nproc-per-node) or use --device cpu"
        )
    return torch.device("cuda", world.local_rank)


# -- SyncBatchNorm -------------------------------------------------------------------------------
class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; its backward is the same all-reduce, so it can be differentiated again."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _AllReduceSum.apply(grad)


@torch.compiler.disable
def _sum_over_ranks(slots: torch.Tensor) -> torch.Tensor:
    """`_AllReduceSum`, run eagerly: under torch.compile the network's graph breaks here (not
    every backend's collectives can be traced), and the rest of the layer is still compiled."""
    return _AllReduceSum.apply(slots)


class SyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the global batch (all ranks).

    Each rank computes its share's per-channel mean and sum of squared deviations; one all-reduce
    gathers every rank's (mean, M2, count), which are combined exactly (Chan et al.'s parallel
    variance), so the result is the statistics of the concatenated batch, up to rounding. In eval
    mode, or outside a process group, it is a plain BatchNorm2d. Its state dict is BatchNorm2d's, so
    checkpoints do not depend on the world size.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        world, rank = dist.get_world_size(), dist.get_rank()
        c = x.shape[1]
        # Statistics accumulate in float64 on the CPU and float32 on a GPU, as BatchNorm2d's kernels do.
        acc = torch.float64 if x.device.type == "cpu" else torch.float32
        xa = x.to(acc)
        count = x.numel() // c
        mean = xa.mean(dim=(0, 2, 3))
        m2 = (xa - mean.view(1, c, 1, 1)).square().sum(dim=(0, 2, 3))
        mine = torch.cat([mean, m2, mean.new_full((1,), float(count))])
        slots = torch.zeros(world, 2 * c + 1, device=x.device, dtype=acc)
        slots[rank] = mine
        every = _sum_over_ranks(slots)
        means, m2s, counts = every[:, :c], every[:, c : 2 * c], every[:, 2 * c :]
        n = counts.sum()
        g_mean = (counts * means).sum(0) / n
        g_m2 = m2s.sum(0) + (counts * (means - g_mean).square()).sum(0)
        invstd = torch.rsqrt(g_m2 / n + self.eps)
        # y = x * alpha + beta, as BatchNorm2d computes it.
        alpha = invstd * self.weight.to(acc) if self.affine else invstd
        beta = (self.bias.to(acc) if self.affine else 0.0) - g_mean * alpha
        y = x * alpha.to(x.dtype).view(1, c, 1, 1) + beta.to(x.dtype).view(1, c, 1, 1)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked.item())
                unbiased = g_m2 / (n - 1).clamp(min=1)  # the running variance is unbiased, as in BatchNorm2d
                self.running_mean.lerp_(g_mean.detach().to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), factor)
        return y


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """`module` with every BatchNorm2d replaced by a SyncBatchNorm sharing its parameters and buffers."""
    out = module
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, SyncBatchNorm):
        out = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            out.weight = module.weight
            out.bias = module.bias
        if module.track_running_stats:
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, convert_sync_batchnorm(child))
    return out
