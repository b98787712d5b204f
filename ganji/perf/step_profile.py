"""Where a training step's time goes: `ganji bench train --profile N`.

A few steps run under torch.profiler; the operators are ranked by their self time on the device
that ran them (CUDA kernel time on a GPU, CPU time on the CPU), per step. On a GPU the profile also
says how much of the step's wall time the GPU was busy: a step whose kernels fill a small share of
its wall time is bound by kernel launches and Python (small batches: the remedy is CUDA graphs or
bigger batches), one near 100% by the kernels themselves (the remedy is fewer FLOPs or faster
kernels). Issue 8 asks for this: reach the targets, or explain with a profile what bounds them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from ganji.atomic import write_atomic
from ganji.runtime.device import synchronize


@dataclass
class OpTime:
    name: str
    calls_per_step: float
    self_ms_per_step: float
    share: float  # of all operators' self time


@dataclass
class StepProfile:
    steps: int
    timed_on: str  # "cuda" (kernel time) or "cpu"
    wall_ms_per_step: float
    busy_ms_per_step: float  # the sum of every operator's self time on `timed_on`, per step
    top: list[OpTime] = field(default_factory=list)

    @property
    def busy_share(self) -> float:
        """Busy time / wall time: near 1, the kernels bound the step; far below, launches and Python do."""
        return self.busy_ms_per_step / self.wall_ms_per_step if self.wall_ms_per_step > 0 else 0.0


def _self_us(event: Any, on_cuda: bool) -> float:
    """An averaged event's self time in microseconds on the device that ran it."""
    if not on_cuda:
        return float(event.self_cpu_time_total)
    # `self_device_time_total` in recent PyTorch, `self_cuda_time_total` before it.
    return float(getattr(event, "self_device_time_total", getattr(event, "self_cuda_time_total", 0.0)))


def _is_kernel(event: Any) -> bool:
    """A GPU-side event (a kernel or a memcpy), as opposed to the CPU operator that launched it."""
    return getattr(event, "device_type", DeviceType.CPU) != DeviceType.CPU


def summarise(events: list[Any], steps: int, on_cuda: bool, top: int = 12) -> tuple[list[OpTime], float]:
    """(the top operators by self time per step, the busy time per step in ms) from key_averages().

    On the CPU every operator's self CPU time counts. On a GPU the operators (CPU-side events,
    readable names such as aten::convolution_backward) are ranked by the kernel time they launched,
    and the busy time is the sum over the kernels themselves, which the profiler lists as events of
    their own: summing both would count each kernel twice.
    """
    ops = [e for e in events if not (on_cuda and _is_kernel(e)) and _self_us(e, on_cuda) > 0]
    kernels_us = sum(_self_us(e, True) for e in events if on_cuda and _is_kernel(e))
    busy_us = kernels_us if kernels_us > 0 else sum(_self_us(e, on_cuda) for e in ops)
    ops.sort(key=lambda e: _self_us(e, on_cuda), reverse=True)
    rows = [
        OpTime(
            name=e.key,
            calls_per_step=e.count / steps,
            self_ms_per_step=_self_us(e, on_cuda) / 1e3 / steps,
            share=min(1.0, _self_us(e, on_cuda) / busy_us) if busy_us else 0.0,
        )
        for e in ops[:top]
    ]
    return rows, busy_us / 1e3 / steps


def profile_steps(step: Callable[[], Any], device: torch.device, steps: int, top: int = 12, trace: Path | None = None) -> StepProfile:
    """Run `step` `steps` times under torch.profiler; the top operators by self time, per step.

    `trace`: also write the Chrome/Perfetto trace there (atomically).
    """
    on_cuda = device.type == "cuda"
    # Kineto (the profiler's tracer) logs an error line when a CUDA build of torch finds no GPU: quiet
    # its log (6 is above its highest level).
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    synchronize(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        wall = time.perf_counter() - start
    rows, busy_ms = summarise(list(prof.key_averages()), steps, on_cuda, top)
    if trace is not None:
        write_atomic(trace, lambda tmp: prof.export_chrome_trace(str(tmp)))
    return StepProfile(
        steps=steps,
        timed_on="cuda" if on_cuda else "cpu",
        wall_ms_per_step=wall * 1e3 / steps,
        busy_ms_per_step=busy_ms,
        top=rows,
    )
