"""ComponentNet: which (component, position) pairs a kanji image is built from (issue 19's recogniser).

It measures component-conditioned generation: a sample asked for "魚 on the left and 山 on the
right" is a hit when ComponentNet finds both keys in it. Its layers are KanjiNet's (seven conv
layers and a 256-d feature, ganji.features.kanji_net), started from the shipped KanjiNet weights and
trained multi-label (one sigmoid per key of a vocabulary like ganji.data.components') on real
renderings in six fonts, the way KanjiNet itself was, and on made-up kanji built from two real ones'
parts (ganji.features.component_mix), since a request for a new pair asks for a combination no real
kanji has (the recipe, fonts and seed are in `python -m ganji.features.train_component_net`'s
docstring). Its precision and recall on a font it never saw, on characters it never saw and on
made-up kanji of those, are stored in the weights file and printed by the training script: they
say how far a hit rate can be trusted.

Input: uint8 images as datasets and samplers give them (ink bright), through KanjiNet's
`prepare_input`, the same path for real and generated images.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from ganji.errors import GanjiError
from ganji.features.kanji_net import KanjiNet, prepare_input

COMPONENT_NET_PATH = Path(__file__).resolve().parent.parent / "assets" / "features" / "component_net.safetensors"
# Pinned: the file made by `python -m ganji.features.train_component_net` (its docstring's command).
COMPONENT_NET_SHA256 = "e739a2894943710966e7ea08dd0e631bc52bac3259968ea717e23c4b1ad7cab6"
METADATA_KEY = "component_net"


@dataclass
class ComponentRecogniser:
    """The trained network, the keys its outputs stand for, the logit threshold above which a key
    counts as found, and the validation figures measured when it was trained."""

    net: KanjiNet
    vocabulary: list[str]
    threshold: float = 0.0  # on the logit; 0 is a probability of one half
    validation: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {key: i for i, key in enumerate(self.vocabulary)}

    def check_keys(self, keys: list[str]) -> list[int]:
        """The output columns of `keys`; a GanjiError naming any key the recogniser does not know."""
        unknown = [k for k in keys if k not in self.index]
        if unknown:
            raise GanjiError(
                f"the component recogniser does not know {', '.join(unknown)} (it knows the {len(self.vocabulary):,} "
                "keys that occur in enough kanji): ask for components it can check"
            )
        return [self.index[k] for k in keys]

    @torch.no_grad()
    def logits(self, images: Tensor, batch_size: int = 500) -> Tensor:
        """N x V logits for uint8 images N x C x H x W (ink bright)."""
        device = next(self.net.parameters()).device
        self.net.eval()
        parts = [self.net(prepare_input(images[i : i + batch_size]).to(device)).float().cpu() for i in range(0, len(images), batch_size)]
        return torch.cat(parts) if parts else torch.empty(0, len(self.vocabulary))

    def found(self, images: Tensor) -> Tensor:
        """N x V booleans: which keys the recogniser finds in each image."""
        return self.logits(images) > self.threshold

    def finds_all(self, images: Tensor, keys: list[str]) -> Tensor:
        """N booleans: whether every one of `keys` is found in each image (a hit)."""
        return self.hits(self.found(images), keys)

    def hits(self, found: Tensor, keys: list[str]) -> Tensor:
        """`finds_all` from `found(images)` already computed: images checked once, asked many ways."""
        return found[:, self.check_keys(keys)].all(dim=1)


def shipped_state(net: KanjiNet) -> dict[str, Tensor]:
    """Every weight in float16 (BatchNorm's batch counters dropped): what the package carries."""
    return {k: v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def load_component_net(path: Path = COMPONENT_NET_PATH, expected_sha256: str | None = COMPONENT_NET_SHA256) -> ComponentRecogniser:
    """The shipped recogniser, after checking the file's sha256."""
    if not path.is_file():
        raise GanjiError(f"the component recogniser's weights are missing from the package ({path}): reinstall ganji")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    if expected_sha256 is not None and sha != expected_sha256:
        raise GanjiError(f"{path} has sha256 {sha[:12]}..., not the pinned {expected_sha256[:12]}...: reinstall ganji")
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {})[METADATA_KEY])
            state = {k: f.get_tensor(k).float() for k in f.keys()}
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise GanjiError(f"{path} is not a readable component recogniser ({exc})") from None
    vocabulary = meta["vocabulary"]
    net = KanjiNet(num_classes=len(vocabulary))
    net.load_state_dict(state, strict=False)
    return ComponentRecogniser(net.eval(), vocabulary, float(meta.get("threshold", 0.0)), meta.get("validation", {}))
