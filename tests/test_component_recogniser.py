"""ComponentNet (the shipped recogniser) and the conditioning metrics built on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ganji.data.prepare import bundled_font
from ganji.data.render import GlyphRenderer, inspect_font
from ganji.errors import GanjiError
from ganji.features.component_mix import label_structure
from ganji.features.component_net import COMPONENT_NET_PATH, load_component_net
from ganji.metrics.conditioning import Request, real_parts, request_suite, score_requests


@pytest.fixture(scope="module")
def recogniser():
    return load_component_net()


def render(chars: str, size: int = 32) -> torch.Tensor:
    font = bundled_font()
    renderer = GlyphRenderer(inspect_font(font, [ord(c) for c in chars]), size)
    return torch.from_numpy(np.stack([renderer.render(ord(c)) for c in chars]))[:, None]


def test_shipped_weights_are_pinned_and_validated(recogniser, tmp_path: Path) -> None:
    v = recogniser.validation
    # Measured when the weights were made, on data they never saw (a font; characters): the bar a
    # hit rate is read against.
    assert v["held_out_font"]["precision"] >= 0.9 and v["held_out_font"]["recall"] >= 0.9
    assert v["held_out_characters_train_fonts"]["precision"] >= 0.8 and v["held_out_characters_train_fonts"]["recall"] >= 0.7
    # Made-up kanji (one held-out kanji's first part with another's second): new combinations.
    made_up = v["made_up_of_held_out_characters"]
    assert made_up["precision"] >= 0.8 and made_up["recall"] >= 0.8 and made_up["all_keys_found"] >= 0.7
    # Parts it trained on in combinations it did not, in the held-out font: what a new pair asks it to read.
    known_parts = v["made_up_of_trained_characters_held_out_font"]
    assert known_parts["precision"] >= 0.9 and known_parts["recall"] >= 0.9 and known_parts["all_keys_found"] >= 0.85
    damaged = tmp_path / "component_net.safetensors"
    damaged.write_bytes(COMPONENT_NET_PATH.read_bytes()[:-1] + b"\0")
    with pytest.raises(GanjiError, match="not the pinned"):
        load_component_net(damaged)


def test_finds_components_in_real_kanji(recogniser) -> None:
    images = render("林村休語湖花")
    assert recogniser.finds_all(images[:2], ["木:left"]).all()
    assert recogniser.finds_all(images[1:2], ["木:left", "寸:right"]).all()
    assert recogniser.finds_all(images[2:3], ["亻:left"]).all()
    assert recogniser.finds_all(images[3:4], ["言:left"]).all()
    assert recogniser.finds_all(images[4:5], ["氵:left"]).all()
    assert recogniser.finds_all(images[5:6], ["艹:top"]).all()
    # ...and not where they are absent: nothing of 氵 in 林, 村, 休, 語.
    assert not recogniser.finds_all(images[:4], ["氵:left"]).any()
    blank = torch.zeros(3, 1, 32, 32, dtype=torch.uint8)
    assert recogniser.found(blank).sum(dim=1).max() <= 2  # (an empty square reads as a thin 一 at most)
    for key in ("木:left", "氵:left", "亻:left", "艹:top"):
        assert not recogniser.finds_all(blank, [key]).any()
    with pytest.raises(GanjiError, match="does not know"):
        recogniser.finds_all(images, ["no-such:key"])


def test_request_suite_and_scores(recogniser) -> None:
    # Labels of 400 made-up kanji: A/B on the left, C/D on the right, E on top (single-key requests
    # need 100 of one key).
    vocab = ["木:left", "氵:left", "寸:right", "口:right", "艹:top", "木:any", "氵:any", "寸:any", "口:any", "艹:any"]
    rows = []
    for i in range(400):
        left, right = ("木:left", "寸:right") if i % 2 else ("氵:left", "口:right")
        if i % 7 == 0:
            left, right = "木:left", "口:right"
        keys = {left, right, left.split(":")[0] + ":any", right.split(":")[0] + ":any"}
        if i % 3 == 0:
            keys = {"艹:top", "艹:any"}
        rows.append([1 if k in keys else 0 for k in vocab])
    labels = torch.tensor(rows, dtype=torch.uint8)
    requests = request_suite(vocab, labels, list(range(0x4E00, 0x4E00 + 400)), set(vocab), per_kind=3)
    kinds = {r.kind for r in requests}
    assert kinds == {"existing", "new", "single"}
    for r in requests:
        cols = [vocab.index(k) for k in r.keys]
        together = labels[:, cols].bool().all(dim=1).any().item()
        assert together == (r.kind != "new")  # a "new" pair never occurs in the data; the others do
    assert ("氵:left", "寸:right") in [r.keys for r in requests if r.kind == "new"]

    # A generator that returns real kanji with the asked-for keys hits; one that ignores them misses.
    real = render("林村休湖花語")
    pictures = {("木:left", "寸:right"): real[1:2], ("氵:left",): real[3:4]}

    def obedient(keys, n, seed):
        return pictures.get(tuple(keys), real[2:3]).expand(n, -1, -1, -1).clone()

    def stubborn(keys, n, seed):
        return real[2:3].expand(n, -1, -1, -1).clone()  # 休, whatever is asked

    suite = [Request(("木:left", "寸:right"), "existing", "村"), Request(("氵:left",), "single")]
    def feats(images: torch.Tensor) -> np.ndarray:  # 4 x 4 average pixels as features: enough here
        return torch.nn.functional.avg_pool2d(images.float(), 8).flatten(1).double().numpy()

    # The "dataset": 400 renderings (U+4E00...), row for row with the labels; 村 and 湖 are not among them.
    dataset_feats = feats(render("".join(chr(0x4E00 + i) for i in range(400))))
    good = score_requests(suite, obedient, recogniser, feats, dataset_feats, labels, vocab, 4, 3.0)
    bad = score_requests(suite, stubborn, recogniser, feats, dataset_feats, labels, vocab, 4, 3.0)
    assert all(s.hit_rate == 1.0 for s in good.requests) and all(s.hit_rate == 0.0 for s in bad.requests)
    # Unasked (guidance 0), the obedient generator draws 休: no request's keys, so its chance is 0.
    assert all(s.chance == 0.0 for s in good.requests) and good.by_kind()["single"]["chance"] == 0.0

    def water_anyway(keys, n, seed):
        return real[3:4].expand(n, -1, -1, -1).clone()  # 湖 asked or not: 氵 by chance, every time

    lucky = score_requests(suite, water_anyway, recogniser, feats, dataset_feats, labels, vocab, 4, 3.0)
    assert [s.chance for s in lucky.requests] == [0.0, 1.0] and [s.hit_rate for s in lucky.requests] == [0.0, 1.0]

    # Each key of a request on its own: 林 for the pair has its 木 on the left, no 寸 on the right.
    def half_right(keys, n, seed):
        return (real[0:1] if len(keys) == 2 else real[3:4]).expand(n, -1, -1, -1).clone()

    halfway = score_requests(suite, half_right, recogniser, feats, dataset_feats, labels, vocab, 4, 3.0)
    assert halfway.requests[0].found_each == [1.0, 0.0] and halfway.requests[0].hit_rate == 0.0
    assert halfway.by_kind()["existing"]["first_found"] == 1.0 and halfway.by_kind()["existing"]["second_found"] == 0.0
    assert "first_found" not in halfway.by_kind()["single"]
    assert good.requests[0].to_json()["found_each"] == {"木:left": 1.0, "寸:right": 1.0}

    # A copier of dataset row 1 (labelled 木:left + 寸:right above): its nearest real kanji is that
    # row, so "nearest has" is 1 for the pair, asked or not.
    row_one = render(chr(0x4E01))

    def copier(keys, n, seed):
        return row_one.expand(n, -1, -1, -1).clone()

    copied = score_requests(suite[:1], copier, recogniser, feats, dataset_feats, labels, vocab, 4, 3.0)
    assert copied.requests[0].nearest_has == 1.0 and copied.requests[0].nearest_chance == 1.0 and copied.requests[0].nearest == [1] * 4
    assert all(s.novelty == 1.0 for s in good.requests)  # 村 and 湖 are not in the "dataset"
    assert good.fid_conditioned is not None and good.real_n > 0
    assert good.by_kind()["existing"]["hit_rate"] == 1.0 and bad.by_kind()["single"]["hit_rate"] == 0.0


def test_real_parts_are_the_dataset_read_the_same_way(recogniser) -> None:
    # A small real dataset, labelled by hand as KanjiVG labels it at depth 1.
    chars = "林村湖洋語花休"
    labelled = {"林": ["木:left", "木:right"], "村": ["木:left", "寸:right"], "湖": ["氵:left", "胡:right"],
                "洋": ["氵:left", "羊:right"], "語": ["言:left", "吾:right"], "花": ["艹:top", "化:bottom"], "休": ["亻:left", "木:right"]}
    positioned = sorted({k for keys in labelled.values() for k in keys} | {"口:bottom"})
    vocab = positioned + sorted({k.split(":")[0] + ":any" for k in positioned})
    column = {k: i for i, k in enumerate(vocab)}
    labels = np.zeros((len(chars), len(vocab)), bool)
    for row, c in enumerate(chars):
        for key in labelled[c]:
            labels[row, column[key]] = labels[row, column[key.split(":")[0] + ":any"]] = True
    images = render(chars)
    structure = label_structure(labels, vocab)

    # A new pair here: 語's 言 beside 村's 寸 (討), cut at the gap between the parts.
    speak_inch = real_parts(Request(("言:left", "寸:right"), "new"), images, labels, structure, column, 8, seed=0)
    assert speak_inch is not None and speak_inch.shape == (8, 1, 32, 32) and speak_inch.dtype == torch.uint8
    assert recogniser.finds_all(speak_inch, ["言:left", "寸:right"]).all()
    assert torch.equal(speak_inch[:, :, :, :8], images[4:5, :, :, :8].expand(8, -1, -1, -1))  # 語's left part, as it is
    # A single key: the real kanji that have it, as they are (the rows the FID compares against).
    wood_left = real_parts(Request(("木:left",), "single"), images, labels, structure, column, 8, seed=0)
    assert torch.equal(wood_left, images[[0, 1]])
    assert real_parts(Request(("艹:top", "口:bottom"), "new"), images, labels, structure, column, 8, seed=0) is None  # no 口 below to cut

    # score_requests reads them beside the model's samples: the same keys, the same recogniser.
    def ignores_requests(keys, n, seed):
        return images[6:7].expand(n, -1, -1, -1).clone()  # 休, whatever is asked

    def feats(x: torch.Tensor) -> np.ndarray:
        return torch.nn.functional.avg_pool2d(x.float(), 8).flatten(1).double().numpy()

    suite = [Request(("言:left", "寸:right"), "new"), Request(("艹:top", "口:bottom"), "new"), Request(("氵:left",), "single"),
             Request(("木:left", "寸:right"), "existing", "村")]
    score = score_requests(suite, ignores_requests, recogniser, feats, feats(images), torch.from_numpy(labels).to(torch.uint8),
                           vocab, 4, 3.0, dataset_images=images)
    assert [s.real_hit_rate for s in score.requests] == [1.0, None, 1.0, 1.0]
    assert [s.hit_rate for s in score.requests] == [0.0, 0.0, 0.0, 0.0]  # 休 has none of them
    # Real kanji: a pair that the font has (村) is read as the font draws it; new pairs and single keys have none.
    assert [(s.real_kanji_hit_rate, s.real_kanji) for s in score.requests] == [(None, 0), (None, 0), (None, 0), (1.0, 1)]
    existing = score.by_kind()["existing"]
    assert existing["real_kanji_hit_rate"] == 1.0 and existing["hit_rate_where_real_kanji"] == 0.0 and existing["real_kanji_requests"] == 1
    assert "real_kanji_hit_rate" not in score.by_kind()["new"] and score.requests[3].to_json()["real_kanji_hit_rate"] == 1.0
    blank = score_requests(suite[3:], ignores_requests, recogniser, feats, feats(images), torch.from_numpy(labels).to(torch.uint8),
                           vocab, 4, 3.0, dataset_images=torch.full_like(images, 255))
    assert blank.requests[0].real_kanji_hit_rate == 0.0  # read from the images, not from the labels
    new = score.by_kind()["new"]
    assert new["real_hit_rate"] == 1.0 and new["real_requests"] == 1 and new["requests"] == 2 and new["hit_rate_where_real"] == 0.0
    assert score.requests[0].to_json()["real_hit_rate"] == 1.0 and score.requests[0].real_found_each == [1.0, 1.0]
    assert new["real_first_found"] == 1.0 and new["real_second_found"] == 1.0
    without = score_requests(suite[:1], ignores_requests, recogniser, feats, feats(images), torch.from_numpy(labels).to(torch.uint8), vocab, 4, 3.0)
    assert without.requests[0].real_hit_rate is None and "real_hit_rate" not in without.by_kind()["new"]
