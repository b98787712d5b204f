"""The pictures of `ganji compare`: samples side by side, progress over training, curves, neighbours.

Every figure is a matplotlib Figure written atomically as PNG; images are drawn black ink on white
paper, as people read kanji.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from ganji.atomic import write_bytes_atomic  # noqa: E402
from ganji.images import make_grid  # noqa: E402


@dataclass
class ModelPictures:
    """What the figures need of one model's run."""

    model: str
    label: str  # e.g. "ddpm (run r, step 3,000)"
    samples: torch.Tensor  # uint8 N x C x H x W, the same seed for every model
    grids: list[Path]  # the run's samples/step-*.png, in step order
    records: list[dict[str, Any]]  # the run's metrics.jsonl
    # (some evaluated samples, the nearest training image of each in feature space)
    neighbours: tuple[torch.Tensor, torch.Tensor] | None = None


def save_figure(fig: plt.Figure, path: Path, dpi: int = 110) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())


def _show(ax: plt.Axes, picture: Image.Image | np.ndarray, title: str) -> None:
    ax.imshow(np.asarray(picture), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def samples_figure(models: Sequence[ModelPictures], path: Path) -> None:
    """One labelled grid per model, side by side."""
    fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 4.4), squeeze=False)
    for ax, m in zip(axes[0], models):
        _show(ax, make_grid(m.samples), m.label)
    save_figure(fig, path)


def _step_of(grid: Path) -> int:
    match = re.search(r"step-(\d+)", grid.name)
    return int(match.group(1)) if match else 0


def progress_figure(models: Sequence[ModelPictures], path: Path, columns: int = 6, side: int = 4, pad: int = 2) -> None:
    """A strip per model: its sample grids over training (up to `columns`, evenly spaced), each cropped
    to the top-left side x side images so the strokes stay visible."""
    fig, axes = plt.subplots(len(models), columns, figsize=(2.2 * columns, 2.4 * len(models)), squeeze=False)
    for row, m in zip(axes, models):
        for ax in row:
            ax.axis("off")
        if not m.grids:
            row[0].set_title(f"{m.model}: no grids saved", fontsize=9)
            continue
        picks = np.unique(np.linspace(0, len(m.grids) - 1, min(columns, len(m.grids))).round().astype(int))
        extent = pad + side * (m.samples.shape[-1] + pad)  # make_grid's layout
        for ax, i in zip(row, picks):
            img = np.asarray(Image.open(m.grids[i]).convert("L"))[:extent, :extent]
            _show(ax, img, f"{m.model} step {_step_of(m.grids[i]):,}")
    save_figure(fig, path)


def training_figure(models: Sequence[ModelPictures], path: Path) -> None:
    """Loss curves per model (every logged loss), and FID over training where --eval-every logged it."""
    has_fid = any("eval" in r for m in models for r in m.records)
    rows = 2 if has_fid else 1
    fig, axes = plt.subplots(rows, len(models), figsize=(4.5 * len(models), 3.4 * rows), squeeze=False)
    for col, m in enumerate(models):
        ax = axes[0][col]
        losses = [r for r in m.records if "eval" not in r]
        keys = sorted({k for r in losses for k in r if k.startswith("loss")})
        for key in keys:
            pts = [(r["epoch"], r[key]) for r in losses if key in r]
            if pts:
                ax.plot(*zip(*pts), label=key, linewidth=1)
        ax.set_title(f"{m.model}: losses", fontsize=10)
        ax.set_xlabel("epoch")
        if keys:
            ax.legend(fontsize=7)
        if has_fid:
            ax = axes[1][col]
            pts = [(r["epoch"], r["eval"]["fid"]) for r in m.records if "eval" in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", linewidth=1)
            else:
                ax.text(0.5, 0.5, "not tracked\n(ganji train --eval-every N)", ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
            ax.set_title(f"{m.model}: FID during training", fontsize=10)
            ax.set_xlabel("epoch")
    fig.tight_layout()
    save_figure(fig, path)


def neighbours_figure(models: Sequence[ModelPictures], path: Path, count: int = 6) -> None:
    """For the first samples of each model: the sample (top) above its nearest training kanji (bottom)."""
    shown = [m for m in models if m.neighbours is not None]
    if not shown:
        return
    fig, axes = plt.subplots(len(shown), 1, figsize=(1.3 * count, 2.9 * len(shown)), squeeze=False)
    for ax, m in zip(axes[:, 0], shown):
        samples, nearest = m.neighbours  # type: ignore[misc]
        pairs = torch.cat([samples[:count], nearest[:count]])
        _show(ax, make_grid(pairs, columns=count), f"{m.model}: samples (top) and their nearest training kanji (bottom)")
    save_figure(fig, path)


def conditioning_figure(rows: Sequence[tuple[str, torch.Tensor, torch.Tensor]], path: Path, count: int = 8) -> None:
    """Component requests, one per row: its samples (top) above the nearest real kanji of each (bottom),
    titled with the request and its hit rate. `rows`: (title, samples, nearest real images)."""
    import matplotlib_fontja  # noqa: F401  (registers IPAex Gothic: the titles name kanji components)

    fig, axes = plt.subplots(len(rows), 1, figsize=(1.2 * count, 2.7 * len(rows)), squeeze=False)
    for ax, (title, samples, nearest) in zip(axes[:, 0], rows):
        _show(ax, make_grid(torch.cat([samples[:count], nearest[:count]]), columns=count), title)
    save_figure(fig, path)
