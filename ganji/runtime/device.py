"""Choosing the device and the numeric precision, with a correct CPU fallback for every GPU path."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ganji.errors import GanjiError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when present, else the CPU; `cuda` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise GanjiError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
        return torch.device("cuda")
    if name == "cpu":
        return torch.device("cpu")
    raise GanjiError(f"unknown device {name!r}: use auto, cpu or cuda")


@dataclass(frozen=True)
class Precision:
    """The numeric policy of a run: autocast dtype (or none), channels_last, compile and its mode."""

    device: torch.device
    bf16: bool
    channels_last: bool
    compile: bool
    compile_mode: str = "default"  # one of ganji.runtime.config.COMPILE_MODES (TrainConfig checks it); used only when `compile`
    # cuDNN tries its convolution algorithms on the first call of each shape and keeps the fastest;
    # the shapes of a run never change, so this costs seconds once (EDM's training does the same).
    cudnn_benchmark: bool = False

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    @property
    def name(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    @property
    def cuda_graphs(self) -> bool:
        """Whether compiled networks replay CUDA graphs: a CUDA device and a graph-capturing mode."""
        return self.compile and self.device.type == "cuda" and self.compile_mode in ("reduce-overhead", "max-autotune")

    def begin_step(self) -> None:
        """Called before every training step: with CUDA graphs, a new graph generation starts, so
        that no step reads a previous step's outputs after a replay has overwritten them."""
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()


def choose_precision(
    bf16_default: bool,
    device: torch.device,
    precision: str = "auto",
    compile: bool = True,
    compile_mode: str = "default",
    cudnn_benchmark: bool = True,
    channels_last: bool = True,
) -> Precision:
    """The policy for a model on `device`. `bf16_default`: whether the model trains under bf16 autocast
    on CUDA (its ModelSpec.bf16); the CPU always runs fp32 (bf16 is emulated there and far slower).
    `precision` overrides it (fp32 | bf16). The last three switch off parts of the CUDA policy, for
    `ganji bench train` to measure what each one buys."""
    cuda = device.type == "cuda"
    if precision == "auto":
        bf16 = cuda and bf16_default
    elif precision == "bf16":
        bf16 = True
    elif precision == "fp32":
        bf16 = False
    else:
        raise GanjiError(f"unknown precision {precision!r}: use auto, fp32 or bf16")
    return Precision(device=device, bf16=bf16, channels_last=cuda and channels_last, compile=cuda and compile, compile_mode=compile_mode,
                     cudnn_benchmark=cuda and cudnn_benchmark)


def apply_backend_settings(precision: Precision) -> None:
    """Set the process-wide backend flags the policy asks for (on CUDA; the CPU's are left alone)."""
    if precision.device.type == "cuda":
        torch.backends.cudnn.benchmark = precision.cudnn_benchmark


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocator peak on a GPU, resident set size on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """What a person would call the device: the GPU's name, or the CPU with its cores and threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import os
    import platform

    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
