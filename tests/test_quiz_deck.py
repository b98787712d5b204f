"""`ganji quiz` decks: half real (no repeats), half generated split evenly, order fixed by the seed;
and one encoding path, so that real and generated cards differ in nothing but the glyph."""

from __future__ import annotations

import json
import struct
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from quiz_support import GAN, VAE, copy_world, glyph

from ganji.data.store import load_dataset
from ganji.errors import GanjiError
from ganji.images import to_uint8
from ganji.quiz.cards import encode_card
from ganji.quiz.deck import FAKE, REAL_SOURCE, Drawn, Source, check_deck_size, shuffle, split_evenly
from ganji.quiz.session import create_session, load_session
from ganji.quiz.sources import draw_deck, resolve_sources


@pytest.fixture
def world(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    return copy_world(tmp_path_factory.getbasetemp(), tmp_path / "home")


def png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        chunks.append(data[at + 4 : at + 8])
        at += 12 + length
    return chunks


def test_split_is_even_and_seeded() -> None:
    sources = [Source(FAKE, m, "r") for m in ("vae", "gan", "ddpm")]
    for total in (3, 20, 31):
        counts = split_evenly(total, sources, seed=0)
        assert sum(counts.values()) == total and max(counts.values()) - min(counts.values()) <= 1
        assert counts == split_evenly(total, sources, seed=0)
    # Which models get the extra card is drawn by the seed, not always the first ones.
    firsts = {tuple(split_evenly(20, sources, seed=s).values()) for s in range(12)}
    assert len(firsts) > 1


def test_deck_size_is_checked() -> None:
    for n in (0, 3, 1002):
        with pytest.raises(GanjiError, match="even number"):
            check_deck_size(n, 1)
    with pytest.raises(GanjiError, match="--n 6 or more"):
        check_deck_size(4, 3)


def test_deck_is_half_real_without_repeats_and_split_evenly(world: Path) -> None:
    sources = resolve_sources(world, [], {}, None)
    assert sources == [VAE, GAN]  # default: every model with a run (no ddpm or flow run here)
    drawn = draw_deck(world, sources, 12, seed=3, device="cpu")
    counts = Counter(d.source for d in drawn.drawn)
    assert counts == {REAL_SOURCE: 6, VAE: 3, GAN: 3} and drawn.dataset == "k16" and drawn.size == 16
    rows = [d.origin["row"] for d in drawn.drawn if d.source.real]
    assert len(set(rows)) == 6
    images = load_dataset(world, "k16").images
    for d in drawn.drawn:
        assert d.image.shape == (1, 16, 16) and d.image.dtype == np.uint8
        if d.source.real:
            assert np.array_equal(d.image, images[d.origin["row"]].numpy())
    deck = shuffle(drawn.drawn, 3)
    again = shuffle(draw_deck(world, sources, 12, seed=3, device="cpu").drawn, 3)
    assert [(c.source, c.origin) for c, _ in deck] == [(c.source, c.origin) for c, _ in again]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(deck, again))
    other = shuffle(draw_deck(world, sources, 12, seed=4, device="cpu").drawn, 4)
    assert [(c.source, c.origin) for c, _ in deck] != [(c.source, c.origin) for c, _ in other]
    assert [c.index for c, _ in deck] == list(range(12))


def test_session_files_say_nothing_but_the_place(world: Path) -> None:
    drawn = draw_deck(world, [VAE, GAN], 8, seed=0, device="cpu")
    session = create_session(world, shuffle(drawn.drawn, 0), seed=0, dataset=drawn.dataset, size=16, reader="ann",
                             generators=drawn.generators)
    files = sorted(p.name for p in (session.path / "cards").iterdir())
    assert files == [f"card-{i:03d}.png" for i in range(8)]
    sizes = set()
    for name in files:
        data = (session.path / "cards" / name).read_bytes()
        assert png_chunks(data) == [b"IHDR", b"IDAT", b"IEND"]
        with Image.open(session.path / "cards" / name) as img:
            sizes.add((img.size, img.mode))
            assert not img.info  # no metadata of any kind
    assert sizes == {((16, 16), "L")}
    deck = json.loads((session.path / "deck.json").read_text())
    assert deck["seed"] == 0 and deck["n"] == 8 and deck["reader"] == "ann" and deck["dataset"] == "k16"
    assert [g["model"] for g in deck["generators"]] == ["vae", "gan"] and sum(g["cards"] for g in deck["generators"]) == 4
    assert Counter(c["source"]["kind"] for c in deck["cards"]) == {"real": 4, "fake": 4}
    assert load_session(session.path).deck.cards == session.deck.cards


def test_real_and_fake_cards_of_equal_pixels_are_equal_bytes(tmp_path: Path) -> None:
    # A real card from a dataset tensor and a generated one from a model's output in [-1, 1] (through
    # to_uint8, as sampling makes it) with the same pixels: byte-identical files.
    real = torch.from_numpy(glyph(7))
    fake = to_uint8(real.float() / 127.5 - 1.0)
    assert torch.equal(real, fake)
    assert encode_card(real) == encode_card(fake.numpy()) == encode_card(real.numpy())
    session = create_session(tmp_path, shuffle([Drawn(REAL_SOURCE, real.numpy()), Drawn(VAE, fake.numpy())], 0), seed=0,
                             dataset="k16", size=16, reader=None, generators=[VAE.to_json()])
    a, b = ((session.path / "cards" / f"card-00{i}.png").read_bytes() for i in range(2))
    assert a == b
    # Black ink on white: the datasets store the ink bright, every card inverts it the same way.
    with Image.open(session.path / "cards" / "card-000.png") as img:
        assert np.array_equal(np.asarray(img), 255 - real.numpy()[0])
    # And the bytes are the fixed encoder's: decompressed IDAT holds the rows as they are.
    raw = zlib.decompress(a[a.index(b"IDAT") + 4 : a.index(b"IEND") - 8])
    assert len(raw) == 16 * 17


def test_runs_of_other_datasets_or_options_are_refused(world: Path) -> None:
    with pytest.raises(GanjiError, match="unknown model 'vea'"):
        resolve_sources(world, ["vea"], {}, None)
    with pytest.raises(GanjiError, match="--runs names gan"):
        resolve_sources(world, ["vae"], {"gan": "r"}, None)
    with pytest.raises(GanjiError, match="no trained ddpm run"):
        resolve_sources(world, ["ddpm"], {}, None)
    with pytest.raises(GanjiError, match="leave out --dataset other"):
        draw_deck(world, [VAE], 4, 0, dataset="other", device="cpu")
    with pytest.raises(GanjiError, match="too few for 100 real cards"):
        draw_deck(world, [VAE], 200, 0, device="cpu")
