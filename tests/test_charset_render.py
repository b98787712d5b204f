"""The kanji set and its rendering: charset counts, font coverage, one scale, centring, determinism."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_font, make_kanji
from fontTools.ttLib import TTFont
from fontTools.ttLib.ttCollection import TTCollection
from PIL import Image

from ganji.data.charset import covered, font_codepoints, kanji_codepoints
from ganji.data.prepare import bundled_font, build_kanji
from ganji.data.render import GlyphRenderer, _truetype_bounds, inspect_font, render_all
from ganji.data.store import dataset_path, load_dataset, tensor_sha256
from ganji.errors import GanjiError

YAMA, KAWA, ICHI = ord("山"), ord("川"), ord("一")


def test_jis0213_enumeration_and_the_bundled_fonts_coverage() -> None:
    cps = kanji_codepoints("jis0213")
    assert len(cps) == 13027 and list(cps) == sorted(set(cps))
    assert len(covered(cps, font_codepoints(bundled_font()))) == 10020


def test_jis0208_is_rows_16_to_84() -> None:
    cps = kanji_codepoints("jis0208")
    assert len(cps) == 6355
    assert ord("漢") in cps and ord("亜") in cps and cps[0] == ICHI  # sorted by code point, not JIS order
    assert ord("仝") not in cps  # row 1: JIS counts it as a symbol
    assert set(cps) <= set(kanji_codepoints("jis0213"))


def test_unknown_charset_is_a_clear_error(home: Path) -> None:
    with pytest.raises(GanjiError, match="unknown charset"):
        build_kanji(home, "k", charset="jis9999", progress=False)
    assert not dataset_path(home, "k").exists()


def test_a_glyph_the_font_lacks_is_excluded(tmp_path: Path) -> None:
    available = font_codepoints(bundled_font())
    lacking = next(cp for cp in kanji_codepoints("jis0213") if cp not in available)
    assert covered((YAMA, lacking, KAWA), available) == [YAMA, KAWA]
    # End to end, with a font that has only two of the charset's kanji.
    font = make_font(tmp_path / "two.ttf", {YAMA: (100, -100, 900, 850), KAWA: (150, -50, 850, 800)})
    ds_home = tmp_path / "h"
    build_kanji(ds_home, "two", size=16, font=font, progress=False)
    ds = load_dataset(ds_home, "two")
    assert ds.manifest["codepoints"] == [YAMA, KAWA] and ds.manifest["font_covers"] == 2
    assert ds.manifest["font"]["name"] == "Ganji Test"


def test_a_glyph_that_draws_nothing_is_skipped_and_counted(tmp_path: Path) -> None:
    font = make_font(tmp_path / "blank.otf", {YAMA: (100, -100, 900, 850), KAWA: None}, cff=True)
    info = inspect_font(font, [YAMA, KAWA])
    result = render_all(GlyphRenderer(info, 16), [YAMA, KAWA])
    assert result.codepoints == [YAMA] and result.blank == [KAWA] and result.images.shape == (1, 1, 16, 16)
    ds_home = tmp_path / "h"
    build_kanji(ds_home, "b", size=16, font=font, progress=False)
    assert load_dataset(ds_home, "b").manifest["blank_skipped"] == [KAWA]


def test_the_scale_fits_the_widest_outline(tmp_path: Path) -> None:
    """A glyph reaching beyond the em box shrinks every glyph alike; nothing is clipped."""
    glyphs = {YAMA: (100, -120, 900, 880), ICHI: (-300, 300, 1300, 400)}
    for cff in (False, True):
        font = make_font(tmp_path / f"wide{int(cff)}.{'otf' if cff else 'ttf'}", glyphs, cff=cff)
        info = inspect_font(font, list(glyphs))
        assert info.reach == pytest.approx(0.8)  # 1300 - 500 = 800 font units from the centre
        result = render_all(GlyphRenderer(info, 32), list(glyphs))
        assert result.clipped == []
        ichi = result.images[1, 0]
        cols = np.nonzero(ichi.any(axis=0))[0]
        assert cols[0] >= 1 and cols[-1] <= 30  # the one-pixel margin
        yama = result.images[0, 0]
        # 山's em-box-sized square spans 1/1.6 of the canvas: relative sizes are kept.
        assert 16 <= np.count_nonzero(yama.any(axis=0)) <= 22


def test_raw_glyph_boxes_match_fonttools() -> None:
    font = TTFont(str(bundled_font()), lazy=True)
    cmap = font.getBestCmap()
    names = [cmap[cp] for cp in covered(kanji_codepoints("jis0213"), set(cmap))[::97]]
    glyf = font["glyf"]
    hmtx = font["hmtx"]
    expected = []
    for n in names:
        g = glyf[n]
        shift = hmtx[n][1] - g.xMin
        expected.append((g.xMin + shift, g.yMin, g.xMax + shift, g.yMax))
    assert list(_truetype_bounds(font, names)) == expected


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    a = make_kanji(tmp_path / "a", "k", size=32, limit=200)
    b = make_kanji(tmp_path / "b", "k", size=32, limit=200)
    assert (a / "images.safetensors").read_bytes() == (b / "images.safetensors").read_bytes()
    assert tensor_sha256(load_dataset(tmp_path / "a", "k").images) == tensor_sha256(load_dataset(tmp_path / "b", "k").images)
    assert (a / "preview.png").read_bytes() == (b / "preview.png").read_bytes()


def test_glyphs_are_centred_and_unclipped(home: Path) -> None:
    make_kanji(home, "k", size=32, limit=400)
    ds = load_dataset(home, "k")
    imgs = ds.images.float()
    assert ds.images.shape == (400, 1, 32, 32)
    ring = torch.cat([imgs[:, 0, 0, :], imgs[:, 0, -1, :], imgs[:, 0, :, 0], imgs[:, 0, :, -1]], dim=-1)
    assert ring.max() == 0 and ds.manifest["clipped"] == []
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    mass = imgs.sum(dim=(1, 2, 3))
    assert bool((mass > 0).all())
    cy = ((imgs[:, 0] * ys).sum(dim=(1, 2)) / mass).mean()
    cx = ((imgs[:, 0] * xs).sum(dim=(1, 2)) / mass).mean()
    assert abs(cy - 15.5) < 1.0 and abs(cx - 15.5) < 1.0


def test_one_scale_keeps_relative_sizes(tmp_path: Path) -> None:
    info = inspect_font(bundled_font(), [ICHI, ord("鬱")])
    renderer = GlyphRenderer(info, 64)
    ichi, utsu = renderer.render(ICHI), renderer.render(ord("鬱"))
    rows = lambda a: np.count_nonzero(a.any(axis=1))  # noqa: E731
    assert rows(ichi) <= 8 and rows(utsu) >= 50  # 一 stays a thin stroke: no per-glyph fitting


def test_limit_takes_a_prefix_of_the_full_set(tmp_path: Path) -> None:
    make_kanji(tmp_path, "small", size=16, limit=30)
    make_kanji(tmp_path, "big", size=16, limit=90)
    small, big = load_dataset(tmp_path, "small"), load_dataset(tmp_path, "big")
    assert len(small) == 30 and len(big) == 90
    assert torch.equal(small.images, big.images[:30])
    assert small.manifest["codepoints"] == big.manifest["codepoints"][:30]


def test_manifest_records_what_was_made(home: Path) -> None:
    folder = make_kanji(home, "k", size=16, limit=70)
    m = json.loads((folder / "manifest.json").read_text("utf-8"))
    font_sha = hashlib.sha256(bundled_font().read_bytes()).hexdigest()
    assert m["source"] == "kanji" and m["charset"] == "jis0213" and m["size"] == 16 and m["count"] == 70
    assert m["font"] == {"name": "IPAexGothic", "file": "ipaexg.ttf", "sha256": font_sha}
    assert len(m["codepoints"]) == 70 and all(isinstance(cp, int) for cp in m["codepoints"])
    assert m["codepoints"] == sorted(m["codepoints"])
    assert m["images_sha256"] == tensor_sha256(load_dataset(home, "k").images)
    with Image.open(folder / "preview.png") as preview:
        assert preview.size == (8 * 18 + 2, 8 * 18 + 2)  # 64 of the 70, 8 x 8, 2 px padding


def test_jis0208_and_a_ttc_font(tmp_path: Path) -> None:
    ttc = tmp_path / "ipaex.ttc"
    collection = TTCollection()
    collection.fonts = [TTFont(str(bundled_font()), lazy=True)]
    collection.save(str(ttc))
    build_kanji(tmp_path, "ttc", size=16, limit=25, charset="jis0208", font=ttc, progress=False)
    build_kanji(tmp_path, "ttf", size=16, limit=25, charset="jis0208", progress=False)
    a, b = load_dataset(tmp_path, "ttc"), load_dataset(tmp_path, "ttf")
    assert torch.equal(a.images, b.images)  # face 0 of the collection is the same font
    assert a.manifest["codepoints"][0] == ICHI and a.manifest["charset"] == "jis0208"
