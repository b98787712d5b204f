"""Made-up kanji (ganji.features.component_mix) for ComponentNet and for a conditional generator's
training (`--component-mix`): structure, cuts, composition, labels, seeding."""

from __future__ import annotations

import numpy as np
import torch

from ganji.data.components import kanjivg_components
from ganji.data.prepare import bundled_font
from ganji.data.render import GlyphRenderer, inspect_font
from ganji.features.component_mix import (
    LEFT_RIGHT,
    TOP_BOTTOM,
    MadeUpKanji,
    compose,
    cut_lines,
    mix_batch,
    part_pools,
    parts_of,
    structure_cuts,
    two_part_structure,
)



def render(chars: str, size: int = 32) -> np.ndarray:
    renderer = GlyphRenderer(inspect_font(bundled_font(), [ord(c) for c in chars]), size)
    return np.stack([renderer.render(ord(c)) for c in chars])


def test_two_part_structure_from_kanjivg() -> None:
    assert two_part_structure(kanjivg_components(ord("湖"))) == LEFT_RIGHT  # 氵 + 胡
    assert two_part_structure(kanjivg_components(ord("村"))) == LEFT_RIGHT  # 木 + 寸
    assert two_part_structure(kanjivg_components(ord("花"))) == TOP_BOTTOM  # 艹 + 化
    assert two_part_structure(kanjivg_components(ord("国"))) == 0  # 囗 around 玉
    assert two_part_structure(kanjivg_components(ord("一"))) == 0
    assert two_part_structure(None) == 0
    assert two_part_structure([("木", "right"), ("寸", "left")]) == 0  # the order says which is first


def test_parts_keys() -> None:
    vocab = ["氵:left", "氵:any", "胡:right", "寸:any", "艹:top"]
    parts = parts_of([kanjivg_components(ord(c)) for c in "湖村花国"], vocab)
    assert parts.structure.tolist() == [LEFT_RIGHT, LEFT_RIGHT, TOP_BOTTOM, 0]
    assert parts.first[0].tolist() == [1, 1, 0, 0, 0] and parts.second[0].tolist() == [0, 0, 1, 0, 0]
    assert parts.first[1].sum() == 0 and parts.second[1].tolist() == [0, 0, 0, 1, 0]  # 木:left is not in vocab
    assert parts.first[2].tolist() == [0, 0, 0, 0, 1]
    assert parts.first[3].sum() == 0 and parts.second[3].sum() == 0


def test_cut_lines_take_extra_strokes_never_leave_any() -> None:
    img = np.zeros((3, 32, 32), np.uint8)
    img[0, :, 2:10] = 255  # a left part, a gap at columns 10-13 and 20-21, a middle and a right part
    img[0, :, 14:20] = 255
    img[0, :, 22:30] = 255
    img[1, :, :] = 255  # no gap: the emptiest column in the middle half
    img[1, :, 17] = 0
    img[2, 3:12, :] = 255  # top and bottom
    img[2, 20:30, :] = 255
    first_end, second_start = cut_lines(img[:2], LEFT_RIGHT)
    assert first_end[0] == 21 and second_start[0] == 10  # the first part ends at the last gap; the second starts at the first
    assert first_end[1] == second_start[1] == 17
    first_end, second_start = cut_lines(img[2:], TOP_BOTTOM)
    assert first_end[0] == 19 and second_start[0] == 12
    assert structure_cuts(img, np.array([LEFT_RIGHT, 0, TOP_BOTTOM], np.int8))[0].tolist() == [21, 0, 19]


def test_compose_keeps_the_first_part_and_fills_the_square() -> None:
    images = render("村語花男")
    x = torch.from_numpy(images).float().unsqueeze(1) / 255
    structure = np.array([LEFT_RIGHT, LEFT_RIGHT, TOP_BOTTOM, TOP_BOTTOM], np.int8)
    first_end, second_start = structure_cuts(images, structure)
    assert 8 <= first_end[0] < 24 and 8 <= second_start[1] < 24
    made = compose(x[0], x[1], int(first_end[0]), int(second_start[1]), LEFT_RIGHT)  # 木 + 吾
    assert made.shape == (1, 32, 32)
    assert torch.equal(made[..., : first_end[0]], x[0, ..., : first_end[0]])  # 村's 木, untouched
    assert not torch.equal(made, x[0]) and not torch.equal(made, x[1])
    made = compose(x[2], x[3], int(first_end[2]), int(second_start[3]), TOP_BOTTOM)  # 艹 above 力
    assert made.shape == (1, 32, 32) and torch.equal(made[..., : first_end[2], :], x[2, ..., : first_end[2], :])


def test_mix_batch_labels_both_parts() -> None:
    chars = "村語湖花男"
    images = render(chars)
    vocab = ["木:left", "木:any", "吾:right", "吾:any", "言:left", "言:any", "氵:left", "胡:right", "艹:top", "力:bottom"]
    parts = parts_of([kanjivg_components(ord(c)) for c in chars], vocab)
    group = np.zeros(len(chars), np.int64)
    y = torch.from_numpy(np.maximum(parts.first, parts.second))
    x = torch.from_numpy(images).float().unsqueeze(1) / 255
    rows = torch.arange(len(chars))
    cuts, pools = structure_cuts(images, parts.structure), part_pools(parts, group)
    assert set(pools) == {(0, LEFT_RIGHT), (0, TOP_BOTTOM)}
    same_x, same_y = mix_batch(x, rows, y, parts, cuts, pools, group, torch.from_numpy(images), 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(same_x, x) and torch.equal(same_y, y)
    mixed_x, mixed_y = mix_batch(x, rows, y, parts, cuts, pools, group, torch.from_numpy(images), 1.0, torch.Generator().manual_seed(0))
    for i in range(len(chars)):
        first = set(np.flatnonzero(parts.first[i]))
        got = set(np.flatnonzero(mixed_y[i].numpy()))
        assert first <= got  # the row's own first part stays, labelled
        second = got - first
        kind = parts.structure[i]
        donors = [j for j in range(len(chars)) if parts.structure[j] == kind]
        assert any(second == set(np.flatnonzero(parts.second[j])) for j in donors)  # a donor's second part, labelled
    assert not torch.equal(mixed_x, x)
    again = mix_batch(x, rows, y, parts, cuts, pools, group, torch.from_numpy(images), 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], mixed_x) and torch.equal(again[1], mixed_y)  # seeded: the same batch again



GENERATOR_CHARS = "村語湖花男国一林相銅"
GENERATOR_VOCAB = ["木:left", "木:any", "吾:right", "吾:any", "言:left", "言:any", "氵:left", "氵:any", "胡:right", "艹:top",
                   "力:bottom", "田:top", "目:right", "金:left", "同:right"]


def made_up_source() -> tuple[MadeUpKanji, torch.Tensor, torch.Tensor, np.ndarray]:
    """A MadeUpKanji over ten 16 px kanji (two-part and not), their images and labels (N x V)."""
    images = torch.from_numpy(render(GENERATOR_CHARS, 16)).unsqueeze(1)
    source = MadeUpKanji(images, [ord(c) for c in GENERATOR_CHARS], GENERATOR_VOCAB)
    labels = torch.from_numpy(np.maximum(source.parts.first, source.parts.second)).to(torch.uint8)
    return source, images, labels, np.arange(len(GENERATOR_CHARS))


def test_made_up_kanji_for_a_generator() -> None:
    """Every picked two-part kanji keeps its first part, image and keys, and takes a donor's second
    part; the rest of the batch is untouched; share 0 changes nothing."""
    source, images, labels, rows = made_up_source()
    assert source.parts.structure.tolist() == [1, 1, 1, 2, 2, 0, 0, 1, 1, 1]  # 村語湖 花男 国一 林相銅
    x, y, made_up = source.mix(images, rows, labels, 0.0, seed=0, step=0, offset=0, global_n=len(rows))
    assert torch.equal(x, images) and torch.equal(y, labels) and not made_up.any()
    x, y, made_up = source.mix(images, rows, labels, 1.0, seed=0, step=0, offset=0, global_n=len(rows))
    assert made_up.tolist() == (source.parts.structure > 0).tolist()  # every two-part kanji, no other
    assert x.dtype == torch.uint8 and y.dtype == torch.uint8
    for i in rows:
        if not made_up[i]:
            assert torch.equal(x[i], images[i]) and torch.equal(y[i], labels[i])
            continue
        cut = int(source.cuts[0][i])
        kept = x[i, :, :, :cut] if source.parts.structure[i] == LEFT_RIGHT else x[i, :, :cut, :]
        whole = images[i, :, :, :cut] if source.parts.structure[i] == LEFT_RIGHT else images[i, :, :cut, :]
        assert torch.equal(kept, whole)  # the first part, pixel for pixel
        first = set(np.flatnonzero(source.parts.first[i]))
        got = set(np.flatnonzero(y[i].numpy()))
        donors = [j for j in rows if source.parts.structure[j] == source.parts.structure[i]]
        assert first <= got and any(got - first <= set(np.flatnonzero(source.parts.second[j])) for j in donors)
    assert not torch.equal(x, images)


def test_made_up_kanji_are_seeded_by_step_and_drawn_for_the_global_batch() -> None:
    """The same (seed, step) makes the same batch; another step another one; two ranks' halves with
    their offsets are the one-process batch (so a run resumes exactly under any number of processes)."""
    source, images, labels, rows = made_up_source()
    whole = source.mix(images, rows, labels, 0.5, seed=3, step=7, offset=0, global_n=10)
    again = source.mix(images, rows, labels, 0.5, seed=3, step=7, offset=0, global_n=10)
    assert all(torch.equal(a, b) for a, b in zip(whole, again))
    others = [source.mix(images, rows, labels, 0.5, seed=3, step=s, offset=0, global_n=10)[2] for s in range(8, 14)]
    assert any(not torch.equal(o, whole[2]) for o in others)
    halves = [source.mix(images[5 * r : 5 * r + 5], rows[5 * r : 5 * r + 5], labels[5 * r : 5 * r + 5], 0.5, seed=3, step=7,
                         offset=5 * r, global_n=10) for r in (0, 1)]
    for k in range(3):
        assert torch.equal(torch.cat([h[k] for h in halves]), whole[k])
