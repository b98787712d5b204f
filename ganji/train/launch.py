"""`ganji train ... --nproc N`: start N training processes on this machine, as torchrun would.

Each process runs `python -m ganji train ...` with torchrun's environment (RANK, WORLD_SIZE,
LOCAL_RANK, ...); ganji.runtime.distributed takes it from there. Errors that every process would hit
alike (no GPU, too few GPUs) are checked here first, so that they are printed once.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid

import torch

from ganji.errors import GanjiError
from ganji.runtime.device import resolve_device


def check_devices_for(nproc: int, device: str) -> None:
    """Before starting N processes: the errors every one of them would print, said once here."""
    if resolve_device(device).type == "cuda" and torch.cuda.device_count() < nproc:
        raise GanjiError(
            f"--nproc {nproc} needs one GPU per process but this machine has {torch.cuda.device_count()}: "
            f"use --nproc {torch.cuda.device_count()} or --device cpu"
        )


def launch_torchrun(nproc: int, argv: list[str]) -> int:
    """Run `python -m ganji ARGV` in `nproc` processes as `torchrun --standalone --nproc-per-node N` does.

    Through torchrun's launcher API rather than its command line, whose option parser would take
    ganji's `--run` for an abbreviation of its own `--run-path`. Returns the exit status: the first
    failed process's (which has printed its error), or 130 after Ctrl-C.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # A failed process has printed its own one-line error; the launcher's log of the failure would repeat it.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    if "OMP_NUM_THREADS" not in os.environ:  # torchrun's default is 1; share this machine's cores instead
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()), rdzv_backend="c10d",
        rdzv_endpoint="localhost:0", max_restarts=0,
    )
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "ganji", *argv)
    except ChildFailedError as exc:
        _, failure = exc.get_first_failure()
        return failure.exitcode if failure.exitcode > 0 else 1
    except SignalException:
        return 130
    return 0
