"""Train KanjiNet, the offline feature network of `ganji fid --features kanji`.

Reproduce the shipped weights (2 CPU cores, about 30 minutes) with:

    apt-get install fonts-ipaexfont-mincho fonts-noto-cjk fonts-hanazono
    python -m ganji.features.train_kanji_net --epochs 12 --seed 0

Data: the 10,020 kanji of the default dataset (JIS X 0213 ideographs in IPAex Gothic), rendered at
64 px by the dataset's own renderer in six training fonts (IPAex Gothic, IPAex Mincho, Noto Sans
CJK JP Regular/Bold, Noto Serif CJK JP Regular/Bold), each rendering seen with fresh augmentation
every epoch: small affine jitter, stroke weight changes (dilation/erosion), Gaussian blur and a gamma
change of the ink. Hanazono Mincho (HanaMinA, from GlyphWiki: another foundry's design) is held out
and the top-1 accuracy on its 10,020 renderings is what the weights' metadata reports.

Only the feature part (`body`) ships, as float16 safetensors with the sha256 pinned in
`ganji.features.kanji_extractor`; the classifier head is needed only here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ganji.atomic import write_atomic
from ganji.data.charset import covered, font_codepoints, kanji_codepoints
from ganji.data.prepare import bundled_font
from ganji.data.render import GlyphRenderer, inspect_font
from ganji.features.kanji_net import INPUT_SIZE, KanjiNet
from ganji.features.resize import resize_to

RENDER_SIZE = 64
TRAIN_FONTS = [
    "bundled:ipaexg.ttf",
    "/usr/share/fonts/opentype/ipaexfont-mincho/ipaexm.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Bold.ttc",
]
HELD_OUT_FONT = "/usr/share/fonts/truetype/hanazono/HanaMinA.ttf"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "assets" / "features" / "kanji_net.safetensors"


def _font_path(spec: str) -> Path:
    return bundled_font() if spec.startswith("bundled:") else Path(spec)


def render_font(path: Path, codepoints: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """64 px renderings of `codepoints` in one font (N x 64 x 64 uint8) and which ones drew ink."""
    info = inspect_font(path, codepoints)
    renderer = GlyphRenderer(info, RENDER_SIZE)
    out = np.zeros((len(codepoints), RENDER_SIZE, RENDER_SIZE), np.uint8)
    for i, cp in enumerate(codepoints):
        out[i] = renderer.render(cp)
    return out, out.reshape(len(codepoints), -1).any(axis=1)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random jitter of a batch of 64 px renderings (floats in [0, 1], N x 1 x 64 x 64)."""
    n = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    # Affine: rotation +-6 deg, scale 0.88-1.08, shear +-0.12, shift +-3 px.
    angle = uniform(-6, 6) * math.pi / 180
    scale = uniform(0.88, 1.08)
    shear = uniform(-0.12, 0.12)
    tx, ty = uniform(-0.09, 0.09), uniform(-0.09, 0.09)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin + shear * cos, tx], 1), torch.stack([sin, cos + shear * sin, ty], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Stroke weight: a quarter thicker (3x3 dilation), a sixth thinner (erosion), the rest as drawn.
    pick = torch.rand(n, generator=gen)
    thick = F.max_pool2d(x, 3, 1, 1)
    thin = -F.max_pool2d(-x, 3, 1, 1)
    x = torch.where((pick < 0.25).view(-1, 1, 1, 1), thick, x)
    x = torch.where((pick > 5 / 6).view(-1, 1, 1, 1), thin, x)
    # Blur half of them with sigma 0.3-1.5 px (a 7-tap Gaussian per image, as a grouped convolution).
    sigma = uniform(0.3, 1.5)
    taps = torch.arange(-3, 4, dtype=torch.float32)
    k1 = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None] ** 2))
    k1 = k1 / k1.sum(1, keepdim=True)
    blurred = F.conv2d(x.transpose(0, 1), k1.view(n, 1, 1, 7), padding=(0, 3), groups=n)
    blurred = F.conv2d(blurred, k1.view(n, 1, 7, 1), padding=(3, 0), groups=n).transpose(0, 1)
    x = torch.where((torch.rand(n, generator=gen) < 0.5).view(-1, 1, 1, 1), blurred, x)
    # Ink gamma 0.7-1.4: faint or saturated strokes, as generators produce.
    gamma = uniform(0.7, 1.4).view(-1, 1, 1, 1)
    return x.clamp(0, 1).pow(gamma)


@torch.no_grad()
def accuracy(net: KanjiNet, renders: np.ndarray, labels: np.ndarray, batch: int = 1000) -> float:
    net.eval()
    right = 0
    for i in range(0, len(renders), batch):
        x = torch.from_numpy(renders[i : i + batch]).float().unsqueeze(1) / 255
        right += int((net(resize_to(x, INPUT_SIZE)).argmax(1) == torch.from_numpy(labels[i : i + batch])).sum())
    return right / len(renders)


def shipped_state(net: KanjiNet) -> dict[str, torch.Tensor]:
    """The feature part in float16 (BatchNorm's batch counter dropped): what the package carries."""
    return {
        f"body.{k}": v.detach().to(torch.float16).contiguous()
        for k, v in net.body.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }


def training_arguments(description: str, epochs: int, out: Path) -> argparse.ArgumentParser:
    """The options the feature networks' training scripts share (this one and train_component_net)."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=epochs)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=out)
    ap.add_argument("--limit", type=int, default=None, help="first N characters only (for a quick try)")
    return ap


def dataset_codepoints(limit: int | None = None) -> list[int]:
    """The default dataset's characters, in its order (JIS X 0213 kanji the bundled font covers)."""
    return covered(kanji_codepoints("jis0213"), font_codepoints(bundled_font()))[:limit]


def main(argv: list[str] | None = None) -> int:
    args = training_arguments(__doc__ or "", 12, DEFAULT_OUT).parse_args(argv)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()

    # 1. Characters: the default dataset's, in its order (the class index is the position).
    codepoints = dataset_codepoints(args.limit)
    labels = np.arange(len(codepoints), dtype=np.int64)

    # 2. Render every font once.
    fonts = [_font_path(s) for s in TRAIN_FONTS]
    train_x, train_y, font_meta = [], [], []
    for path in fonts:
        images, drew = render_font(path, codepoints)
        train_x.append(images[drew])
        train_y.append(labels[drew])
        font_meta.append({"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "glyphs": int(drew.sum())})
        print(f"rendered {path.name}: {int(drew.sum())} glyphs ({time.time() - t0:.0f} s)", flush=True)
    x_all = torch.from_numpy(np.concatenate(train_x))
    y_all = torch.from_numpy(np.concatenate(train_y))
    held_images, held_drew = render_font(Path(HELD_OUT_FONT), codepoints)
    held_x, held_y = held_images[held_drew], labels[held_drew]

    # 3. Train: AdamW, one-cycle learning rate, label smoothing 0.1.
    net = KanjiNet(num_classes=len(codepoints))
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=5e-4)
    steps_per_epoch = len(x_all) // args.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.15)
    probe = np.linspace(0, len(held_x) - 1, min(1000, len(held_x))).astype(int)
    for epoch in range(args.epochs):
        net.train()
        order = torch.randperm(len(x_all), generator=gen)
        total = 0.0
        for s in range(steps_per_epoch):
            idx = order[s * args.batch_size : (s + 1) * args.batch_size]
            x = augment(x_all[idx].float().unsqueeze(1) / 255, gen)
            loss = F.cross_entropy(net(resize_to(x, INPUT_SIZE)), y_all[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss)
        probe_acc = accuracy(net, held_x[probe], held_y[probe])
        print(
            f"epoch {epoch + 1}/{args.epochs}: loss {total / steps_per_epoch:.3f}, held-out top-1 on "
            f"{len(probe)} chars {probe_acc:.3f} ({time.time() - t0:.0f} s)",
            flush=True,
        )

    # 4. Measure what ships: the float16-rounded feature part under the trained classifier.
    state = shipped_state(net)
    net.body.load_state_dict({k[5:]: v.float() for k, v in state.items()}, strict=False)
    held_acc = accuracy(net, held_x, held_y)
    train_acc = accuracy(net, np.asarray(x_all[:: 7].numpy()), np.asarray(y_all[:: 7].numpy()))
    meta = {
        "classes": len(codepoints),
        "input_size": INPUT_SIZE,
        "epochs": args.epochs,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "train_fonts": font_meta,
        "held_out_font": {"file": Path(HELD_OUT_FONT).name, "glyphs": int(held_drew.sum())},
        "held_out_top1": round(held_acc, 4),
        "train_fonts_top1_clean": round(train_acc, 4),
        "torch": torch.__version__,
        "seconds": round(time.time() - t0),
    }
    write_atomic(args.out, lambda tmp: save_file(state, str(tmp), metadata={"kanji_net": json.dumps(meta)}))
    sha = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(json.dumps(meta, indent=1))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB), sha256 {sha}")
    print(f"held-out font ({meta['held_out_font']['file']}) top-1: {held_acc:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
