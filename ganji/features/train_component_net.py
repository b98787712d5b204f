"""Train ComponentNet, the recogniser that checks component-conditioned samples (issue 19).

Reproduce the shipped weights (2 CPU cores, under an hour) with:

    apt-get install fonts-ipaexfont-mincho fonts-noto-cjk fonts-hanazono
    python -m ganji.features.train_component_net

Data: the kanji of the default dataset that KanjiVG labels, with their (component, position) keys
at depth 1 (ganji.data.components), keeping the keys that at least `--min-count` kanji have;
rendered at 64 px by the dataset's renderer in KanjiNet's six training fonts, each rendering seen
with fresh augmentation every epoch (KanjiNet's: affine jitter, stroke weight, blur, ink gamma).
Made-up kanji: a share `--mix` (0.9 by default; why: below) of each batch's two-part kanji (left +
right or top + bottom) keep their first part and take their second from another kanji of the same font and
structure, labelled with both parts' keys (ganji.features.component_mix): a request for a new pair
asks for a combination no real kanji has, and a recogniser trained on real characters alone reads
fewer of those.
Three things are held out, and what the weights file reports is measured on them:
- a font: Hanazono Mincho (another foundry's design), on the characters trained on;
- characters: one in ten labelled kanji (chosen by a hash of the code point), never seen in any font;
  a recogniser that finds components in kanji it has never seen is one that can check new ones;
- made-up kanji of those held-out characters' parts (each two-part one with another's second part,
  from a fixed seed), in the training fonts: new combinations of unseen parts;
and, the reading a request for a new pair needs, made-up kanji of the trained characters' parts in
the held-out font: new combinations of known parts. Trained on real kanji, a recogniser learns which
parts go together (鳥 on the right after 氵 or 貝, 𠂉 after 方) and reads a part by its neighbour;
made-up kanji, most of each batch's two-part ones, teach it to read each part where it is.

Training: the network starts from the shipped KanjiNet (its layers already know kanji strokes), one
sigmoid per key, binary cross-entropy with positives weighted `--pos-weight` times (a key is absent
from almost every kanji), AdamW with a one-cycle learning rate. The logit threshold that maximises
F1 on the held-out characters in the training fonts, real and made-up together, is stored with the
weights.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ganji.atomic import write_atomic
from ganji.data.components import kanjivg_components, label_codepoints
from ganji.features.component_mix import Parts, mix_batch, part_pools, parts_of, structure_cuts
from ganji.features.component_net import METADATA_KEY, shipped_state
from ganji.features.extractors import load_kanji_net
from ganji.features.kanji_net import INPUT_SIZE, KanjiNet
from ganji.features.resize import resize_to
from ganji.features.train_kanji_net import (
    HELD_OUT_FONT,
    TRAIN_FONTS,
    _font_path,
    augment,
    dataset_codepoints,
    render_font,
    training_arguments,
)

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "assets" / "features" / "component_net.safetensors"
HELD_OUT_SHARE = 10  # one in this many labelled kanji is never trained on


def held_out_character(codepoint: int) -> bool:
    """Whether a kanji is one of the held-out characters: a hash of its code point, so the choice is
    the same on every machine and does not depend on the dataset's order."""
    return hashlib.sha256(f"U+{codepoint:05X}".encode()).digest()[0] % HELD_OUT_SHARE == 0


@torch.no_grad()
def logits_of(net: KanjiNet, renders: np.ndarray, batch: int = 1000) -> torch.Tensor:
    net.eval()
    out = [net(resize_to(torch.from_numpy(renders[i : i + batch]).float().unsqueeze(1) / 255, INPUT_SIZE)) for i in range(0, len(renders), batch)]
    net.train()
    return torch.cat(out)


def precision_recall(logits: torch.Tensor, truth: np.ndarray, threshold: float) -> dict[str, float]:
    """Micro-averaged precision and recall over every (image, key) pair, and the share of images
    whose keys are all found (what a hit needs)."""
    found = (logits > threshold).numpy()
    true = truth > 0
    tp = int((found & true).sum())
    has = true.any(axis=1)
    all_found = (found | ~true).all(axis=1)[has]
    return {
        "precision": round(tp / max(int(found.sum()), 1), 4),
        "recall": round(tp / max(int(true.sum()), 1), 4),
        "all_keys_found": round(float(all_found.mean()) if len(all_found) else 0.0, 4),
        "images": int(len(truth)),
    }


def best_threshold(logits: torch.Tensor, truth: np.ndarray) -> float:
    """The logit threshold in [-3, 3] (steps of 0.25) with the highest micro F1."""
    best, best_f1 = 0.0, -1.0
    for threshold in np.arange(-3.0, 3.01, 0.25):
        pr = precision_recall(logits, truth, float(threshold))
        f1 = 2 * pr["precision"] * pr["recall"] / max(pr["precision"] + pr["recall"], 1e-9)
        if f1 > best_f1:
            best, best_f1 = float(threshold), f1
    return best


def rows_of(parts: Parts, rows: np.ndarray) -> Parts:
    """The `Parts` of characters `rows`, one entry per rendering."""
    return Parts(parts.structure[rows], parts.first[rows], parts.second[rows])


def made_up(renders: np.ndarray, parts: Parts, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every two-part rendering of one font with the second part of another of the same structure
    (uint8 renders and labels), from a fixed seed: the held-out made-up kanji."""
    group = np.zeros(len(renders), np.int64)
    rows = torch.from_numpy(np.flatnonzero(parts.structure > 0))
    images = torch.from_numpy(renders)
    x = images[rows].float().unsqueeze(1) / 255
    y = torch.zeros(len(rows), parts.first.shape[1])
    x, y = mix_batch(x, rows, y, parts, structure_cuts(renders, parts.structure), part_pools(parts, group), group, images, 1.0,
                     torch.Generator().manual_seed(seed))
    return (x[:, 0] * 255).round().clamp(0, 255).to(torch.uint8).numpy(), y.numpy()


def main(argv: list[str] | None = None) -> int:
    ap = training_arguments(__doc__ or "", 5, DEFAULT_OUT)
    ap.add_argument("--pos-weight", type=float, default=5.0)
    ap.add_argument("--mix", type=float, default=0.9, help="share of each batch's two-part kanji made up (component_mix)")
    ap.add_argument("--min-count", type=int, default=20, help="keep the keys at least this many labelled kanji have")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()

    # 1. Characters and their keys: the default dataset's kanji, in its order.
    codepoints = dataset_codepoints(args.limit)
    labels = label_codepoints(codepoints, depth=1, min_count=args.min_count)
    truth = labels.tensor.numpy().astype(np.float32)
    parts = parts_of([kanjivg_components(cp, 1) for cp in codepoints], labels.vocabulary)
    labelled = truth.any(axis=1)
    held = np.array([held_out_character(cp) for cp in codepoints])
    train_rows, held_rows = labelled & ~held, labelled & held
    print(f"{int(labelled.sum())} labelled kanji, {len(labels.vocabulary)} keys; "
          f"{int(train_rows.sum())} to train on, {int(held_rows.sum())} held out", flush=True)

    # 2. Render every font once.
    train_x, train_y, train_char, train_font, font_meta, held_char_x, held_made_up = [], [], [], [], [], [], []
    for f, spec in enumerate(TRAIN_FONTS):
        path = _font_path(spec)
        images, drew = render_font(path, codepoints)
        train_x.append(images[train_rows & drew])
        train_y.append(truth[train_rows & drew])
        train_char.append(np.flatnonzero(train_rows & drew))
        train_font.append(np.full(int((train_rows & drew).sum()), f))
        held_char_x.append((images[held_rows & drew], truth[held_rows & drew]))
        held_made_up.append(made_up(images[held_rows & drew], rows_of(parts, np.flatnonzero(held_rows & drew)), args.seed + f))
        font_meta.append({"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
        print(f"rendered {path.name} ({time.time() - t0:.0f} s)", flush=True)
    x_all = torch.from_numpy(np.concatenate(train_x))
    y_all = torch.from_numpy(np.concatenate(train_y))
    render_parts = rows_of(parts, np.concatenate(train_char))
    render_font_of = np.concatenate(train_font)
    cuts = structure_cuts(x_all.numpy(), render_parts.structure)
    pools = part_pools(render_parts, render_font_of)
    hana, hana_drew = render_font(Path(HELD_OUT_FONT), codepoints)
    hana_made_up = made_up(hana[train_rows & hana_drew], rows_of(parts, np.flatnonzero(train_rows & hana_drew)), args.seed + len(TRAIN_FONTS))

    # 3. Train from KanjiNet's layers: multi-label BCE, positives weighted, one-cycle AdamW.
    net = KanjiNet(num_classes=len(labels.vocabulary))
    net.body.load_state_dict(load_kanji_net().body.state_dict())
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=5e-4)
    steps_per_epoch = len(x_all) // args.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.15)
    pos_weight = torch.full((len(labels.vocabulary),), args.pos_weight)
    probe_x, probe_y = held_char_x[0]
    for epoch in range(args.epochs):
        order = torch.randperm(len(x_all), generator=gen)
        total = 0.0
        for s in range(steps_per_epoch):
            idx = order[s * args.batch_size : (s + 1) * args.batch_size]
            x, y = mix_batch(x_all[idx].float().unsqueeze(1) / 255, idx, y_all[idx], render_parts, cuts, pools, render_font_of, x_all,
                             args.mix, gen)
            loss = F.binary_cross_entropy_with_logits(net(resize_to(augment(x, gen), INPUT_SIZE)), y, pos_weight=pos_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        pr = precision_recall(logits_of(net, probe_x), probe_y, 0.0)
        mu = precision_recall(logits_of(net, held_made_up[0][0]), held_made_up[0][1], 0.0)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {total / steps_per_epoch:.4f}, held-out characters ({font_meta[0]['file']}): "
              f"precision {pr['precision']:.3f} recall {pr['recall']:.3f}; made up of them: precision {mu['precision']:.3f} "
              f"recall {mu['recall']:.3f} all keys {mu['all_keys_found']:.3f} ({time.time() - t0:.0f} s)", flush=True)

    # 4. Measure what ships: the float16-rounded weights, at the threshold chosen on held-out characters
    #    and the made-up kanji of them together.
    state = shipped_state(net)
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    held_logits = torch.cat([logits_of(net, x) for x, _ in held_char_x])
    held_truth = np.concatenate([y for _, y in held_char_x])
    made_logits = torch.cat([logits_of(net, x) for x, _ in held_made_up])
    made_truth = np.concatenate([y for _, y in held_made_up])
    # One threshold for real and made-up kanji alike: the recogniser must read both.
    threshold = best_threshold(torch.cat([held_logits, made_logits]), np.concatenate([held_truth, made_truth]))
    hana_rows = train_rows & hana_drew
    validation = {
        "held_out_characters_train_fonts": precision_recall(held_logits, held_truth, threshold),
        "made_up_of_held_out_characters": precision_recall(made_logits, made_truth, threshold),
        "held_out_font": {"file": Path(HELD_OUT_FONT).name, **precision_recall(logits_of(net, hana[hana_rows]), truth[hana_rows], threshold)},
        "held_out_font_and_characters": precision_recall(logits_of(net, hana[held_rows & hana_drew]), truth[held_rows & hana_drew], threshold),
        # What a "new" request asks of it: parts it trained on, in combinations it did not (in the held-out font).
        "made_up_of_trained_characters_held_out_font": precision_recall(logits_of(net, hana_made_up[0]), hana_made_up[1], threshold),
    }
    meta = {
        "vocabulary": labels.vocabulary,
        "threshold": threshold,
        "validation": validation,
        "labels": {k: v for k, v in labels.provenance.items()},
        "input_size": INPUT_SIZE,
        "epochs": args.epochs,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "pos_weight": args.pos_weight,
        "min_count": args.min_count,
        "mix": args.mix,
        "held_out_characters": f"one in {HELD_OUT_SHARE} by sha256 of the code point",
        "train_fonts": font_meta,
        "torch": torch.__version__,
        "seconds": round(time.time() - t0),
    }
    write_atomic(args.out, lambda tmp: save_file(state, str(tmp), metadata={METADATA_KEY: json.dumps(meta, ensure_ascii=False)}))
    sha = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(json.dumps({k: v for k, v in meta.items() if k != "vocabulary"}, indent=1, ensure_ascii=False))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB), sha256 {sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
