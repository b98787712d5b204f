"""Full-size validation of the metrics on real kanji: do they move the right way?

    python -m ganji.metrics.validate [--dataset kanji] [--features kanji] [--home PATH]

The dataset is split into two random halves (seed 0). Half A is the "training set"; half B, and
degraded copies of it, play the generated samples: blur (sigma 0.5, 1, 2 px), additive Gaussian noise
(std 0.05, 0.15, 0.4), a collapsed set (10 images repeated), copies of A itself and pure noise.
Every row goes through the same extractor and `score_features` as `ganji fid`. The tests
(tests/test_metrics.py) check the same directions on 400 images per side.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from rich.table import Table
from torchvision.transforms.functional import gaussian_blur

from ganji.console import console
from ganji.data.store import load_dataset
from ganji.features.extractors import load_extractor
from ganji.home import cache_dir, resolve_home
from ganji.metrics.protocol import score_features
from ganji.runtime.device import resolve_device


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    k = 2 * int(3 * sigma) + 1
    return gaussian_blur(images.float(), [k, k], [sigma, sigma]).round().clamp(0, 255).to(torch.uint8)


def add_noise(images: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed)) * std * 255
    return (images.float() + noise).round().clamp(0, 255).to(torch.uint8)


def variants(b: torch.Tensor, a: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """The 'generated' sets: half B, degraded versions of it, a collapsed set, copies, noise."""
    noise = torch.randint(0, 256, b.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    collapsed = b[:10].repeat(-(-len(b) // 10), 1, 1, 1)[: len(b)]
    return [
        ("half B (real, unseen)", b),
        *[(f"B blurred sigma {s}", blur(b, s)) for s in (0.5, 1.0, 2.0)],
        *[(f"B + noise std {s}", add_noise(b, s)) for s in (0.05, 0.15, 0.4)],
        ("collapsed: 10 of B repeated", collapsed),
        ("copies: half A itself", a[: len(b)]),
        ("uniform noise", noise),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="kanji")
    ap.add_argument("--features", default="kanji")
    ap.add_argument("--inception-weights", type=Path, default=None)
    ap.add_argument("--home", type=Path, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table (for the README)")
    args = ap.parse_args(argv)
    home = resolve_home(args.home)
    data = load_dataset(home, args.dataset).images
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    half = len(data) // 2
    a, b = data[order[:half]], data[order[half : 2 * half]]
    extractor = load_extractor(args.features, resolve_device(args.device), cache_dir(home), args.inception_weights)
    start = time.perf_counter()
    real = extractor.features(a)
    table = Table(title=f"metrics on {args.dataset} halves ({half:,} vs {half:,} images, {extractor.name} features)")
    for col in ("generated side", "FID", "KID x1000", "precision", "recall", "copies", "NN dist"):
        table.add_column(col, justify="left" if col == "generated side" else "right")
    rows = []
    for name, images in variants(b, a):
        s = score_features(real, extractor.features(images))
        rows.append((name, f"{s['fid']:.3f}", f"{s['kid']:.3f} ± {s['kid_std']:.3f}", f"{s['precision']:.3f}",
                     f"{s['recall']:.3f}", f"{100 * s['novelty_copies']:.1f}%", f"{s['nn_distance']:.2f}"))
    footer = f"{time.perf_counter() - start:.0f} s on {extractor.device}"
    if args.markdown:
        print(f"| {' | '.join(str(col.header) for col in table.columns)} |")
        print("|" + "---|" * len(table.columns))
        for row in rows:
            print(f"| {' | '.join(row)} |")
        print(f"\n{table.title}; {footer}.")
        return 0
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(footer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
