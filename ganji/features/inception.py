"""The FID Inception-v3: the network every published FID uses (Heusel et al. 2017).

It is torchvision's Inception-v3 with the changes of the TensorFlow graph the FID authors ported
(as pytorch-fid and clean-fid do): 1008 classes, and in the mixed blocks the pooling branch averages
without counting the zero padding, and the last block max-pools instead. Features are the 2,048
averages of the last block. Weights: the pytorch-fid release file (a plain state dict), read with
`torch.load(weights_only=True)`, or a safetensors file with the same keys.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import inception as tv

from ganji.errors import GanjiError

WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
INPUT_SIZE = 299
FEATURE_DIM = 2048


def _pool_avg(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _FIDInceptionA(tv.InceptionA):
    def _forward(self, x: Tensor) -> list[Tensor]:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch1x1(x), b5, b3, self.branch_pool(_pool_avg(x))]


class _FIDInceptionC(tv.InceptionC):
    def _forward(self, x: Tensor) -> list[Tensor]:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return [self.branch1x1(x), b7, d, self.branch_pool(_pool_avg(x))]


class _FIDInceptionE(tv.InceptionE):
    """Mixed_7b pools by averaging (without padding), Mixed_7c by taking the maximum."""

    def __init__(self, in_channels: int, pool: str) -> None:
        super().__init__(in_channels)
        self.pool = pool

    def _forward(self, x: Tensor) -> list[Tensor]:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pooled = _pool_avg(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return [self.branch1x1(x), b3, d, self.branch_pool(pooled)]


class FIDInception(nn.Module):
    """Images in [0, 1], N x 3 x 299 x 299 -> N x 2048 pool features."""

    def __init__(self) -> None:
        super().__init__()
        net = tv.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
        net.Mixed_5b = _FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = _FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = _FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = _FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = _FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = _FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = _FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = _FIDInceptionE(1280, "avg")
        net.Mixed_7c = _FIDInceptionE(2048, "max")
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        n = self.net
        x = 2 * x - 1  # the TensorFlow graph's input scaling
        x = n.maxpool1(n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x))))
        x = n.maxpool2(n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(x)))
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(n, name)(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The weights file's tensors: safetensors, or a state dict saved by torch (never unpickled freely)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - damaged or foreign files raise many kinds of errors
        raise GanjiError(f"{path} is not a readable Inception weights file ({exc.__class__.__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise GanjiError(f"{path} does not hold a state dict of tensors")
    return state


def load_fid_inception(path: Path) -> FIDInception:
    model = FIDInception()
    state = read_state_dict(path)
    # pytorch-fid's file names the torchvision modules at the top level (Conv2d_1a_3x3.conv.weight, ...).
    state = {k if k.startswith("net.") else f"net.{k}": v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        some = (missing or unexpected)[:2]
        raise GanjiError(f"{path} is not an FID Inception-v3 state dict ({len(missing)} missing, {len(unexpected)} unexpected keys, e.g. {some})")
    return model.eval()


def default_weights_path(cache: Path) -> Path:
    return cache / "inception" / WEIGHTS_FILE


def fetch_weights(cache: Path) -> Path:
    """Download pytorch-fid's weights once into the cache (atomically); a one-line error offline."""
    from ganji.atomic import write_atomic

    target = default_weights_path(cache)
    if target.is_file():
        return target
    try:
        from torch.hub import download_url_to_file

        write_atomic(target, lambda tmp: download_url_to_file(WEIGHTS_URL, str(tmp), progress=True))
    except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, socket errors, ...
        raise GanjiError(
            f"no Inception weights: could not download {WEIGHTS_URL} ({exc.__class__.__name__}; no network?). "
            f"Download it elsewhere and pass --inception-weights PATH, or use --features kanji (offline)"
        ) from None
    return target
