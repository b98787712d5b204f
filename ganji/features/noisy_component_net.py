"""A noise-aware component classifier, for classifier guidance of a component-conditioned flow run.

[CG] Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis", arXiv:2105.05233, §4:
a classifier p_φ(y | x_t, t) trained on noisy images steers sampling with its gradient,
∇ log p_t(x_t | y) = ∇ log p_t(x_t) + s · ∇ log p_φ(y | x_t), s the guidance scale.

Here y is a request's (component, position) keys and p_φ(y | x_t) = Π σ(logit_k) over them (one
sigmoid per key, multi-label, as ComponentNet's). The classifier is trained on the flow run's own
path, x_t = (1 - t) x_0 + t ε (ganji.recipes.flow), on the run's training data: its dataset without
the kanji it held out (`--hold-out-requests`), with made-up kanji at the run's `--component-mix`
(`ganji train-classifier`, ganji.train.classifier). It is not ComponentNet, the
judge of `ganji fid --condition components`: another network (a small CNN that sees t as an extra
input plane), trained on one font's renderings at every noise level, never on a held-out pair.

Stored in the run's folder as classifier.safetensors, its training figures in the file's metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from ganji.errors import GanjiError
from ganji.images import to_data_range

CLASSIFIER_FILE = "classifier.safetensors"  # in the run's folder
METADATA_KEY = "noisy_component_net"
DOWNSAMPLES = 3  # stride-2 stages: a 32 px image ends as 4 x 4 cells, so the head still knows where a part is


def _stage(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(8, c_out), nn.SiLU(),
        nn.Conv2d(c_out, c_out, 3, 1, 1), nn.GroupNorm(8, c_out), nn.SiLU(),
    )


class NoisyComponentNet(nn.Module):
    """Logits (N x V) of the vocabulary's keys for images x_t (N x C x S x S, the flow's range) at
    times t (N,) in [0, 1], t given as one more input plane. Four stages of two 3x3 convolutions
    (width w, 2w, 4w, 4w; the last three halve the size), flattened (not pooled: left and right must
    stay apart) into one linear layer."""

    def __init__(self, size: int, channels: int, vocabulary_size: int, width: int = 32) -> None:
        super().__init__()
        if width % 8 or width < 8:
            raise GanjiError(f"--width must be a multiple of 8, at least 8 (got {width})")
        if size % (2**DOWNSAMPLES):
            raise GanjiError(f"the classifier needs images whose size divides by {2**DOWNSAMPLES} (got {size} px)")
        self.features = nn.Sequential(
            _stage(channels + 1, width, 1), _stage(width, 2 * width, 2), _stage(2 * width, 4 * width, 2), _stage(4 * width, 4 * width, 2),
        )
        self.head = nn.Linear(4 * width * (size // 2**DOWNSAMPLES) ** 2, vocabulary_size)

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        plane = t.reshape(-1, 1, 1, 1).to(x_t.dtype).expand(-1, 1, *x_t.shape[-2:])
        return self.head(self.features(torch.cat([x_t, plane], dim=1)).flatten(1))


@dataclass
class FlowClassifier:
    """A trained NoisyComponentNet, the keys its outputs stand for and what its training recorded."""

    net: NoisyComponentNet
    vocabulary: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def log_prob(self, x_t: Tensor, t: Tensor, condition: Tensor) -> Tensor:
        """log p_φ(y | x_t, t) per image (N,) for the keys marked in `condition` (N x V multi-hot):
        the sum of log σ(logit_k) over them."""
        return (F.logsigmoid(self.net(x_t.float(), t.float())) * condition.float()).sum(1)

    def grad_log_prob(self, x_t: Tensor, t: Tensor, condition: Tensor) -> Tensor:
        """∇_x log p_φ(y | x_t, t) ([CG] §4), by one backward pass through the classifier alone."""
        with torch.enable_grad():
            x = x_t.detach().float().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.log_prob(x, t, condition).sum(), x)
        return grad

    @torch.no_grad()
    def read(self, images: Tensor, condition: Tensor) -> Tensor:
        """log p_φ(y | x_0) (N,) of finished images (uint8, ink bright, as `generate` returns them),
        at t = 0 and prepared as the classifier was trained: the flow's range, edges widened at the
        run's `--edge-margin` (`--best-of`: ganji.sampling)."""
        from ganji.recipes.flow import FlowRecipe, widen_edges

        device = next(self.net.parameters()).device
        x0 = widen_edges(to_data_range(images.to(device), FlowRecipe.data_range), float(self.meta.get("edge_margin", 0.0)))
        return self.log_prob(x0, torch.zeros(len(x0), device=device), condition.to(device))


def classifier_path(run_path: Path) -> Path:
    return run_path / CLASSIFIER_FILE


def load_classifier(run_path: Path, run_label: str, vocabulary: list[str], device: torch.device) -> FlowClassifier:
    """The classifier `ganji train-classifier` stored in a run's folder, checked to be for its vocabulary."""
    path = classifier_path(run_path)
    if not path.is_file():
        raise GanjiError(f"run {run_label} has no classifier: train one with `ganji train-classifier {run_label.split('/')[0]} "
                         f"--run {run_label.split('/')[-1]}` (a few minutes)")
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {})[METADATA_KEY])
            state = {k: f.get_tensor(k).float() for k in f.keys()}
        net = NoisyComponentNet(int(meta["size"]), int(meta["channels"]), len(meta["vocabulary"]), int(meta["width"]))
        net.load_state_dict(state)
    except (SafetensorError, OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise GanjiError(f"{path} is not a readable classifier ({exc}): train it again with `ganji train-classifier`") from None
    if list(meta["vocabulary"]) != list(vocabulary):
        raise GanjiError(f"{path} was trained for other component keys than run {run_label}'s: train it again with `ganji train-classifier`")
    for p in net.parameters():
        p.requires_grad_(False)
    return FlowClassifier(net.to(device).eval(), list(vocabulary), meta)
