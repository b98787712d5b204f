"""No host syncs in the hot loop: a training step never waits for the device to report a value.

On a GPU a sync stalls the CPU until every queued kernel has run, so the next step's launches
cannot overlap the current step's work. The ops that sync are the ones whose result the host
must read: `aten._local_scalar_dense` (behind `.item()`, `float(t)`, `bool(t)`, `if t:`) and
ops with data-dependent output shapes (`nonzero`, boolean-mask indexing, `masked_select`,
`unique`). A dispatch mode sees the same ops on the CPU, so this is checked here without a GPU,
with the optimiser a GPU gets: fused Adam, whose step counters live on the device (the CPU's
foreach Adam reads its host-side counters with `.item()`, which on a GPU run is no device sync).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ganji.recipes import spec
from ganji.recipes.base import Recipe
from ganji.runtime.device import Precision
from ganji.train.loop import epoch_permutation, normalise

SYNCING = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique", "_unique2", "unique_consecutive", "unique_dim", "item"}
CPU = torch.device("cpu")
TINY = {"vae": {"base_width": 8, "latent_dim": 8}, "ddpm": {"base_width": 8, "timesteps": 50}, "flow": {"base_width": 8},
        "gan": {"layers": (16, 8, 8, 8), "latent_dim": 8}}


class CountSyncs(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._overloadpacket.__name__
        if name in SYNCING:
            self.seen.append(name)
        elif name in ("index", "index_put", "index_put_") and any(  # t[mask]: its size is the mask's count
            torch.is_tensor(i) and i.dtype == torch.bool for i in args[1] if i is not None
        ):
            self.seen.append(f"{name} with a boolean mask")
        return func(*args, **(kwargs or {}))


@pytest.fixture(autouse=True)
def gpu_optimiser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Recipe, "fused_adam", property(lambda self: True))


def _syncs_per_step(model: str, steps: int = 3, **options) -> list[str]:
    torch.manual_seed(0)
    cfg = spec(model).config(batch_size=4, device="cpu", options={**TINY[model], **options})
    precision = Precision(CPU, bf16=False, channels_last=False, compile=False)
    recipe = spec(model).recipe_class()(cfg, 16, 1, 100, precision)
    assert all(opt.defaults["fused"] for opt in recipe.optimizers.values())
    images = torch.randint(0, 256, (16, 1, 16, 16), dtype=torch.uint8)
    perm = epoch_permutation(0, 0, len(images))
    with CountSyncs() as counter:
        for step in range(steps):  # what TrainLoop.run_steps does between two log steps
            x = normalise(images[perm[step * 4 : (step + 1) * 4]], recipe.data_range, precision)
            losses = recipe.train_step(x)
            recipe.after_step(step)
            sums = {k: v.clone() for k, v in losses.items()}
            for k, v in losses.items():
                sums[k] = sums[k] + v
    return counter.seen


@pytest.mark.parametrize("model", ["vae", "ddpm", "flow"])
def test_vae_and_ddpm_steps_never_sync(model: str) -> None:
    assert _syncs_per_step(model) == []


def test_the_gan_syncs_only_for_its_early_stop_of_d_steps() -> None:
    """The original's early stop (no more D steps once D's accuracy > 0.9) needs the accuracy on
    the host: one read per D step, and none when there is a single D step."""
    assert _syncs_per_step("gan", disc_ratio=1) == []
    seen = _syncs_per_step("gan", steps=2, disc_ratio=3, disc_acc_stop=2.0)  # never stops early: 3 D steps
    assert seen == ["_local_scalar_dense"] * 6


def test_the_counter_sees_a_sync() -> None:
    with CountSyncs() as counter:
        t = torch.ones(3)
        t.sum().item()
        _ = t[t > 0]
        bool(t.sum() > 0)
    assert counter.seen == ["_local_scalar_dense", "index with a boolean mask", "_local_scalar_dense"]
