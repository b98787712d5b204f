"""Training a flow run's noise-aware component classifier (`ganji train-classifier`, [CG] §4).

The classifier (ganji.features.noisy_component_net) learns what the run learnt from, as the run saw
it: the run's dataset without the kanji of its held-out pairs (`--hold-out-requests`), two-part
kanji replaced by made-up ones at the run's `--component-mix` (never pairing a held-out pair), the
images widened at the run's `--edge-margin`, at noise levels t ~ U(0, 1) on the flow's path
x_t = (1 - t) x_0 + t ε; the loss is binary cross-entropy on every key of the (whole, never
thinned) label. AdamW with a one-cycle learning rate. Every random draw comes from one generator
seeded with `seed`, on the host, so a CPU run gives the same weights every time.

Recorded with the weights: the last epoch's mean loss, and, for a run with held-out pairs, how many
of the held-out kanji's keys the classifier finds (p > 1/2) at t = 0, 0.3 and 0.6: kanji it never
saw, what guidance towards those pairs relies on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ganji.atomic import write_atomic
from ganji.data.components import split_pair
from ganji.errors import GanjiError
from ganji.features.noisy_component_net import METADATA_KEY, NoisyComponentNet, classifier_path
from ganji.images import to_data_range
from ganji.recipes.flow import FlowRecipe, interpolate_path, widen_edges

MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 65_536
RECALL_TIMES = (0.0, 0.3, 0.6)  # noise levels of the held-out recall figures


def train_classifier(
    home: Path,
    model: str,
    run_name: str | None,
    *,
    epochs: int = 60,
    batch_size: int = 128,
    lr: float = 2e-3,
    width: int = 32,
    seed: int = 0,
    device: str = "auto",
    on_start: Callable[[int], None] | None = None,
    on_step: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Train the classifier of a component-conditioned flow run and store it in the run's folder
    (atomically: a classifier already there stays whole until the new one is complete). Returns the
    figures stored with it and the training time in seconds. on_start(total steps) once, on_step() after every step."""
    from ganji.data.store import load_dataset
    from ganji.features.component_mix import MadeUpKanji
    from ganji.metrics.conditioning import rows_with_pairs
    from ganji.recipes.registry import config_from_json, within
    from ganji.runs import find_run, read_run_config
    from ganji.runtime.config import MAX_SEED
    from ganji.runtime.device import resolve_device

    for ok, message in (within("--epochs", epochs, 1, MAX_EPOCHS), within("--batch-size", batch_size, 1, MAX_BATCH_SIZE),
                        (0 < lr < 1, f"--lr must be between 0 and 1 (got {lr})"),
                        (0 <= seed <= MAX_SEED, f"--seed must be between 0 and {MAX_SEED:,} (got {seed})")):
        if not ok:
            raise GanjiError(message)
    if model != "flow":
        raise GanjiError(f"classifier guidance is for flow runs (its path is the flow's straight one), not {model}")
    run = find_run(home, model, run_name)
    cfg = config_from_json(read_run_config(run)["config"])
    o = cfg.options
    if getattr(o, "condition", "none") != "components":
        raise GanjiError(f"run {model}/{run.name} was trained without --condition components: there is nothing to guide towards")
    dataset = load_dataset(home, cfg.dataset)
    vocabulary = list(o.vocabulary)
    if dataset.components is None or dataset.component_vocabulary != vocabulary:
        raise GanjiError(f"dataset {dataset.name!r} no longer has the component labels run {model}/{run.name} was trained on")
    codepoints = list(dataset.manifest.get("codepoints", []))
    column = {k: i for i, k in enumerate(vocabulary)}
    held_rows = rows_with_pairs(dataset.components.bool().numpy(), column, [split_pair(p) for p in o.held_out])
    keep = np.setdiff1d(np.arange(len(dataset)), held_rows)
    if len(keep) < batch_size:
        raise GanjiError(f"--batch-size {batch_size} is more than the {len(keep):,} kanji run {model}/{run.name} trained on")

    dev = resolve_device(device)
    images = dataset.images[torch.from_numpy(keep)].to(dev)
    labels = dataset.components[torch.from_numpy(keep)].to(dev)
    made_up = (MadeUpKanji(images, [codepoints[i] for i in keep], vocabulary, held_out=tuple(o.held_out))
               if o.component_mix > 0 and len(codepoints) == len(dataset) else None)

    torch.manual_seed(seed)  # the weights' initialisation
    net = NoisyComponentNet(dataset.size, dataset.channels, len(vocabulary), width).to(dev)
    steps_per_epoch = len(keep) // batch_size  # whole batches only: every step the same size
    total = epochs * steps_per_epoch
    optimiser = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=total)
    draws = torch.Generator().manual_seed(seed)  # order, times and noise, on the host: the same on any device
    if on_start is not None:
        on_start(total)
    started, step, losses = time.perf_counter(), 0, torch.zeros(steps_per_epoch)
    net.train()
    for _epoch in range(epochs):
        order = torch.randperm(len(keep), generator=draws).numpy()
        for k in range(steps_per_epoch):
            rows = order[k * batch_size : (k + 1) * batch_size]
            index = torch.from_numpy(rows).to(dev)
            x, y = images[index], labels[index]
            if made_up is not None:
                x, y, _ = made_up.mix(x, rows, y, o.component_mix, seed, step, 0, len(rows))
            x0 = widen_edges(to_data_range(x, FlowRecipe.data_range), o.edge_margin)
            t = torch.rand(len(rows), generator=draws).to(dev)
            noise = torch.randn(x0.shape, generator=draws).to(dev)
            loss = F.binary_cross_entropy_with_logits(net(interpolate_path(x0, noise, t), t), y.float())
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses[k] = loss.detach().cpu()
            step += 1
            if on_step is not None:
                on_step()
    net.eval()
    seconds = round(time.perf_counter() - started, 1)  # returned, not stored: the file is the same bytes for the same seed
    figures: dict[str, Any] = {"final_loss": round(float(losses.mean()), 6)}
    if len(held_rows):
        figures["held_out_recall"] = held_out_recall(net, dataset.images[torch.from_numpy(held_rows)].to(dev),
                                                     dataset.components[torch.from_numpy(held_rows)].to(dev), o.edge_margin, seed)
    meta = {"run": run.name, "model": model, "dataset": dataset.name, "vocabulary": vocabulary, "size": dataset.size,
            "channels": dataset.channels, "width": width, "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
            "held_out": list(o.held_out), "component_mix": o.component_mix, "edge_margin": o.edge_margin, "kanji": int(len(keep)),
            **figures}
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    write_atomic(classifier_path(run.path), lambda tmp: save_file(state, str(tmp), metadata={METADATA_KEY: json.dumps(meta, ensure_ascii=False)}))
    return {**meta, "seconds": seconds}


@torch.no_grad()
def held_out_recall(net: NoisyComponentNet, images: torch.Tensor, labels: torch.Tensor, margin: float, seed: int) -> dict[str, float]:
    """The share of the held-out kanji's (kanji, key) labels the classifier finds (p > 1/2) at each of
    RECALL_TIMES, the noise drawn from `seed`."""
    x0 = widen_edges(to_data_range(images, FlowRecipe.data_range), margin)
    truth = labels.bool()
    draws = torch.Generator().manual_seed(seed)
    out = {}
    for t in RECALL_TIMES:
        times = torch.full((len(x0),), t, device=x0.device)
        found = net(interpolate_path(x0, torch.randn(x0.shape, generator=draws).to(x0.device), times), times) > 0
        out[f"t={t:g}"] = round(float((found & truth).sum()) / max(int(truth.sum()), 1), 4)
    return out
