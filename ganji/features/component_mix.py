"""Made-up kanji with known components: new combinations for ComponentNet to learn and be tested on,
and for a conditional generator to learn from (`ganji train --component-mix`, `MadeUpKanji`).

A request for a new pair (氵 on the left, 鳥 on the right: no real kanji) asks for an image no real
kanji is, and the recogniser that checks it must read such combinations, not only the characters it
was trained on. So ComponentNet also trains on, and is validated on, made-up kanji: the left part
of one real kanji beside the right part of another (or the top of one above the bottom of another),
labelled with the two parts' keys (CutMix, Yun et al. 2019, with the cut at the components'
boundary instead of a random box).

Where the parts meet: a two-part kanji leaves a gap between them, a column (row) with no ink. In
the middle half of the image the first part is cut at the *last* gap and the second part from the
*first* one, so that where the parts' boundary is a gap a cut can only take extra strokes with a
part (a font may leave gaps both before and after the 古 of 湖 = 氵 + 胡), never leave part of one
behind: a label may miss a stroke group the image has, it does not name one the image lacks.
Without a gap the emptiest line is the cut. The second
part is squeezed or stretched to fill the rest of the width (kanji components change width with
their neighbours in real fonts too).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ganji.data.components import ANY, component_key, kanjivg_components, split_key, split_pair

LEFT_RIGHT, TOP_BOTTOM = 1, 2  # a kanji's two-part structure; 0: neither
FIRST_POSITION = {LEFT_RIGHT: "left", TOP_BOTTOM: "top"}
SECOND_POSITION = {LEFT_RIGHT: "right", TOP_BOTTOM: "bottom"}
GAP_INK = 255  # a line with at most one full pixel's ink (anti-aliasing's fringes) is a gap


@dataclass
class Parts:
    """Per character: its two-part structure (LEFT_RIGHT, TOP_BOTTOM or 0) and, over a vocabulary,
    the keys of its first part (left/top) and of its second part (right/bottom)."""

    structure: np.ndarray  # N int8
    first: np.ndarray  # N x V float32 multi-hot
    second: np.ndarray  # N x V float32 multi-hot


def two_part_structure(pairs: list[tuple[str, str]] | None) -> int:
    """LEFT_RIGHT for exactly a left and a right component (depth-1 pairs from
    ganji.data.components.kanjivg_components), TOP_BOTTOM for a top and a bottom, else 0."""
    if not pairs or len(pairs) != 2:
        return 0
    positions = [p for _, p in pairs]
    for kind in (LEFT_RIGHT, TOP_BOTTOM):
        if positions == [FIRST_POSITION[kind], SECOND_POSITION[kind]]:
            return kind
    return 0


def label_structure(labels: np.ndarray, vocabulary: list[str]) -> np.ndarray:
    """`two_part_structure` of every row of multi-hot labels (N x V bools over `vocabulary`), from its
    positioned keys (not the "C:any" ones): N int8, LEFT_RIGHT, TOP_BOTTOM or 0."""
    position = np.array([split_key(k)[1] for k in vocabulary])
    two = labels[:, position != ANY].sum(axis=1) == 2
    out = np.zeros(len(labels), np.int8)
    for kind in (LEFT_RIGHT, TOP_BOTTOM):
        has = [labels[:, position == p].any(axis=1) for p in (FIRST_POSITION[kind], SECOND_POSITION[kind])]
        out[two & has[0] & has[1]] = kind
    return out


def parts_of(pairs_per_char: list[list[tuple[str, str]] | None], vocabulary: list[str]) -> Parts:
    """`Parts` of characters from their depth-1 (element, position) pairs: a part's keys are its
    positioned key and its element's "any" key, where the vocabulary has them."""
    column = {k: i for i, k in enumerate(vocabulary)}
    n, v = len(pairs_per_char), len(vocabulary)
    structure = np.zeros(n, np.int8)
    first, second = np.zeros((n, v), np.float32), np.zeros((n, v), np.float32)
    for row, pairs in enumerate(pairs_per_char):
        kind = two_part_structure(pairs)
        if not kind or pairs is None:
            continue
        structure[row] = kind
        for target, (element, position) in zip((first, second), pairs):
            for key in (component_key(element, position), component_key(element, ANY)):
                if key in column:
                    target[row, column[key]] = 1
    return Parts(structure, first, second)


def _line_ink(images: np.ndarray, kind: int) -> np.ndarray:
    """Ink per column (LEFT_RIGHT) or per row (TOP_BOTTOM) of N x S x S uint8 images: N x S."""
    return images.astype(np.int64).sum(axis=1 if kind == LEFT_RIGHT else 2)


def cut_lines(images: np.ndarray, kind: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each image's first part ends and its second part begins (N ints each, in pixels from
    the left/top), searched in the middle half [S/4, 3S/4): the last and the first gap line there,
    or both at the emptiest line when there is no gap (module docstring)."""
    ink = _line_ink(images, kind)
    size = ink.shape[1]
    lo, hi = size // 4, 3 * size // 4
    middle = ink[:, lo:hi]
    gap = middle <= GAP_INK
    emptiest = lo + middle.argmin(axis=1)
    has_gap = gap.any(axis=1)
    first_gap = lo + gap.argmax(axis=1)
    last_gap = lo + (hi - lo - 1) - gap[:, ::-1].argmax(axis=1)
    first_end = np.where(has_gap, last_gap, emptiest)
    second_start = np.where(has_gap, first_gap, emptiest)
    return first_end.astype(np.int64), second_start.astype(np.int64)


def compose(first: torch.Tensor, second: torch.Tensor, first_end: int, second_start: int, kind: int) -> torch.Tensor:
    """One made-up kanji (C x S x S floats) from `first`'s part before `first_end` and `second`'s
    part from `second_start` on, the second resized to fill the rest of the square."""
    size = first.shape[-1]
    if kind == TOP_BOTTOM:
        return compose(first.transpose(-1, -2), second.transpose(-1, -2), first_end, second_start, LEFT_RIGHT).transpose(-1, -2)
    head = first[..., :first_end]
    tail = second[..., second_start:]
    if tail.shape[-1] != size - first_end:
        tail = F.interpolate(tail[None], size=(size, size - first_end), mode="bilinear", align_corners=False, antialias=True)[0]
    return torch.cat([head, tail], dim=-1)


def mix_batch(
    x: torch.Tensor,
    rows: torch.Tensor,
    y: torch.Tensor,
    parts: Parts,
    cuts: tuple[np.ndarray, np.ndarray],
    pool: dict[tuple[int, int], np.ndarray],
    group: np.ndarray,
    images: torch.Tensor,
    share: float,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace about `share` of a batch by made-up kanji; return the batch and its labels.

    x: the batch (N x 1 x S x S floats in [0, 1]) of training rows `rows` (indices into `images`,
    every training rendering, uint8 M x S x S), y their labels (N x V). A two-part row picked at
    random keeps its first part and takes its second from another rendering of the same group
    (`group[row]`: the font) and structure, drawn from `pool[(group, structure)]` (row indices);
    `cuts` are `cut_lines` of every rendering for its own structure."""
    x, y = x.clone(), y.clone()
    picked = torch.rand(len(rows), generator=gen) < share
    for i in torch.nonzero(picked).flatten().tolist():
        row = int(rows[i])
        kind = int(parts.structure[row])
        if not kind:
            continue
        donors = pool[(int(group[row]), kind)]
        other = int(donors[int(torch.randint(len(donors), (1,), generator=gen))])
        second = images[other].float().unsqueeze(0) / 255
        x[i] = compose(x[i], second, int(cuts[0][row]), int(cuts[1][other]), kind)
        y[i] = torch.from_numpy(np.maximum(parts.first[row], parts.second[other]))
    return x, y


def part_pools(parts: Parts, group: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    """Row indices of every (group, structure) with a two-part structure: where donors come from."""
    out: dict[tuple[int, int], np.ndarray] = {}
    for g in np.unique(group):
        for kind in (LEFT_RIGHT, TOP_BOTTOM):
            rows = np.flatnonzero((group == g) & (parts.structure == kind))
            if len(rows):
                out[(int(g), kind)] = rows
    return out


def structure_cuts(images: np.ndarray, structure: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`cut_lines` of every image for its own structure (zeros where it has none)."""
    first_end = np.zeros(len(images), np.int64)
    second_start = np.zeros(len(images), np.int64)
    for kind in (LEFT_RIGHT, TOP_BOTTOM):
        rows = np.flatnonzero(structure == kind)
        if len(rows):
            first_end[rows], second_start[rows] = cut_lines(images[rows], kind)
    return first_end, second_start


class MadeUpKanji:
    """Made-up two-part kanji for training a component-conditioned generator (`--component-mix`).

    A request for a pair of components no kanji has (氵 on the left, 鳥 on the right) asks the
    network for a combination it never saw: real kanji teach it each part only beside the few parts
    it happens to occur with. Replacing some two-part training kanji by their first part beside the
    second part of another kanji of the same structure (the cut of the module docstring) shows it
    every part beside many others. The made-up kanji of a batch are decided for the global batch by a
    generator seeded with (seed, step), so a run resumes exactly under any number of processes, and
    drawn on the host: no device sync.
    """

    def __init__(self, images: torch.Tensor, codepoints: list[int], vocabulary: list[str], held_out: tuple[str, ...] = ()) -> None:
        """`images`: the dataset (uint8 N x 1 x S x S, on the training device), the characters
        `codepoints`, row for row; parts from KanjiVG's depth-1 components, labelled over the run's
        `vocabulary` (a part whose keys it lacks gets no label: like a thinned one, not a wrong one).
        `held_out`: pairs ("艹:top+心:bottom") never made up (`ganji train --hold-out-requests`)."""
        self.images = images
        self.parts = parts_of([kanjivg_components(cp, 1) for cp in codepoints], vocabulary)
        column = {key: i for i, key in enumerate(vocabulary)}
        self.held_out = [(column[first], column[second]) for first, second in map(split_pair, held_out)]
        self.cuts = structure_cuts(images[:, 0].cpu().numpy(), self.parts.structure)
        self.pools = part_pools(self.parts, np.zeros(len(images), np.int64))
        # Part labels on the device (uint8: a made-up label is the max of two rows, no host copy).
        self.first = torch.from_numpy(self.parts.first).to(images.device, torch.uint8)
        self.second = torch.from_numpy(self.parts.second).to(images.device, torch.uint8)

    def mix(
        self, x: torch.Tensor, rows: np.ndarray, labels: torch.Tensor, share: float, seed: int, step: int, offset: int, global_n: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch `x` (uint8, rows `rows` of the dataset, this rank's slice starting at `offset`
        of a global batch of `global_n`) with about `share` of its two-part kanji made up, their
        labels, and which rows are made up (N bools, on the device)."""
        rng = np.random.default_rng([seed, step, 19])
        picked = (rng.random(global_n) < share)[offset : offset + len(rows)]
        donor = rng.random(global_n)[offset : offset + len(rows)]
        made_up = np.zeros(len(rows), bool)
        x, labels = x.clone(), labels.clone()
        for i in np.flatnonzero(picked):
            row = int(rows[i])
            kind = int(self.parts.structure[row])
            if not kind:
                continue
            donors = self.pools[(0, kind)]
            other = int(donors[int(donor[i] * len(donors))])
            if not (self.parts.first[row].any() or self.parts.second[other].any()):
                continue  # no key to label it with: it would teach the null label a made-up kanji
            if any(self.parts.first[row, a] and self.parts.second[other, b] for a, b in self.held_out):
                continue  # a pair held out of training: the real kanji are left out, and so is a made-up one
            image = compose(x[i].float() / 255, self.images[other].float() / 255, int(self.cuts[0][row]), int(self.cuts[1][other]), kind)
            x[i] = image.mul(255).round_().clamp_(0, 255).to(torch.uint8)
            labels[i] = torch.maximum(self.first[row], self.second[other]).to(labels.dtype)
            made_up[i] = True
        return x, labels, torch.from_numpy(made_up).to(x.device)
