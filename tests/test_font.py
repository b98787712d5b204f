"""`ganji font`: tracing known shapes, the font round trip, choosing glyphs, FONT.json, and bad input.

Tracing and building are checked on shapes whose answer is known (a filled square, a ring, two
squares) and on real kanji rendered at 32 px; the command line on a tiny VAE run (16 px kanji, 30
steps: enough for samples that differ from one another) trained once for the module, and on folders
of synthetic glyph images. Every command runs in-process through `ganji.cli.main`; an exception that
escapes it fails the test with its traceback.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from cli_support import cli, one_line_error, own_home, succeeded, tree
from conftest import make_font as make_rect_font
from conftest import make_kanji
from fontTools.pens.recordingPen import RecordingPen
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw

from ganji.data.store import load_dataset
from ganji.errors import GanjiError
from ganji.font.build import (ASCENT, DESCENT, FIRST_CODEPOINT, MAX_GLYPHS, UNITS_PER_EM, FontNames, build_font, check_font,
                              font_format)
from ganji.font.make import FontPlan, candidates_needed
from ganji.font.render import ink_iou, render_glyphs, specimen
from ganji.font.select import GlyphStats, SanityRange, choose, ink_pieces
from ganji.font.trace import Contour, TraceSettings, flatten, ink_area, orient, signed_area, trace_glyph

pytest.importorskip("potrace", reason="ganji font needs potracer (the `font` extra)")

TINY_VAE = {"batch_size": 16, "epochs": 100, "sample_every": 0, "log_every": 1, "device": "cpu",
            "options": {"latent_dim": 8, "base_width": 8}}
CPU = ("--device", "cpu", "-q")


# -- shapes with a known answer --------------------------------------------------------------------


def square(size: int = 32, lo: int = 8, hi: int = 24) -> np.ndarray:
    img = np.zeros((size, size), np.uint8)
    img[lo:hi, lo:hi] = 255
    return img


def ring(size: int = 32, outer: float = 12.0, inner: float = 6.0) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    r = np.hypot(xx - size / 2, yy - size / 2)
    return ((r <= outer) & (r >= inner)).astype(np.uint8) * 255


def cross(size: int = 32) -> np.ndarray:
    img = np.zeros((size, size), np.uint8)
    img[14:18, 4:28] = 255
    img[4:28, 14:18] = 255
    return img


def three_bars(size: int = 32) -> np.ndarray:
    img = np.zeros((size, size), np.uint8)
    for top in (4, 14, 24):
        img[top:top + 4, 4:28] = 255
    return img


def at_the_edges(size: int = 32) -> np.ndarray:
    """An L whose strokes run off the left and bottom edges of the square."""
    img = np.zeros((size, size), np.uint8)
    img[:, :3] = 255
    img[-3:, :] = 255
    return img


SHAPES = {"square": square, "ring": ring, "cross": cross, "three bars": three_bars, "edges": at_the_edges}
RING_AREA = math.pi * (12.0**2 - 6.0**2)


# -- 1. tracing ------------------------------------------------------------------------------------


def test_a_filled_square_traces_to_one_outline_of_its_area_and_place() -> None:
    contours = trace_glyph(square())
    assert len(contours) == 1
    assert ink_area(contours) == pytest.approx(256, rel=0.05)
    points = flatten(contours[0])
    assert np.allclose(points.min(0), [8, 8], atol=0.25) and np.allclose(points.max(0), [24, 24], atol=0.25)


def test_a_ring_traces_to_an_outline_and_a_hole_winding_opposite_ways() -> None:
    contours = trace_glyph(ring())
    assert len(contours) == 2
    areas = sorted((signed_area(c) for c in contours), key=abs)
    assert areas[0] * areas[1] < 0  # the hole winds the other way
    assert abs(areas[1]) == pytest.approx(math.pi * 12.0**2, rel=0.05)
    assert abs(areas[0]) == pytest.approx(math.pi * 6.0**2, rel=0.05)
    assert ink_area(contours) == pytest.approx(RING_AREA, rel=0.05)


def test_separate_blobs_are_separate_outlines_winding_alike() -> None:
    img = np.zeros((32, 32), np.uint8)
    img[2:10, 2:10] = 255
    img[20:30, 15:25] = 255
    contours = trace_glyph(img)
    assert len(contours) == 2
    areas = [signed_area(c) for c in contours]
    assert areas[0] * areas[1] > 0
    assert ink_area(contours) == pytest.approx(64 + 100, rel=0.05)


def test_ink_to_the_image_border_is_traced_whole() -> None:
    contours = trace_glyph(np.full((16, 16), 255, np.uint8))
    assert len(contours) == 1 and ink_area(contours) == pytest.approx(256, rel=0.01)
    assert ink_area(trace_glyph(at_the_edges())) == pytest.approx(3 * 32 + 3 * 29, rel=0.05)


@pytest.mark.parametrize("level", [0, 100])
def test_an_image_without_ink_traces_to_nothing(level: int) -> None:
    assert trace_glyph(np.full((32, 32), level, np.uint8)) == []  # 100 is below the 0.5 threshold


def test_a_glyph_is_one_2d_image() -> None:
    with pytest.raises(ValueError, match="one H x W image"):
        trace_glyph(np.zeros((1, 16, 16), np.uint8))


def test_a_higher_threshold_thins_the_ink() -> None:
    grey = np.asarray(Image.fromarray(ring()).resize((16, 16), Image.Resampling.BOX))  # grey edges
    thin = ink_area(trace_glyph(grey, TraceSettings(threshold=0.8)))
    thick = ink_area(trace_glyph(grey, TraceSettings(threshold=0.2)))
    assert 0 < thin < thick


@pytest.mark.parametrize(("settings", "text"), [
    (TraceSettings(threshold=0.0), "--threshold"), (TraceSettings(threshold=1.0), "--threshold"),
    (TraceSettings(upscale=0), "--upscale"), (TraceSettings(upscale=17), "--upscale"),
    (TraceSettings(alphamax=-0.1), "--alphamax"), (TraceSettings(alphamax=1.5), "--alphamax"),
])
def test_trace_settings_out_of_range_are_refused(settings: TraceSettings, text: str) -> None:
    with pytest.raises(GanjiError, match=text):
        settings.check()


def test_a_reversed_outline_winds_the_other_way_and_stays_closed() -> None:
    for contour in trace_glyph(ring()):
        back = contour.reversed()
        assert signed_area(back) == pytest.approx(-signed_area(contour))
        assert len(back.segments) == len(contour.segments)
        assert back.segments[-1][-1] == back.start  # closed: the last segment ends where it began
        assert contour.segments[-1][-1] == contour.start
        twice = back.reversed()
        assert twice.start == contour.start
        assert all(np.allclose(a, b) for a, b in zip(twice.segments, contour.segments))
        assert np.allclose(flatten(twice), flatten(contour))


def test_a_reversed_cubic_swaps_its_control_points() -> None:
    c = Contour((0.0, 0.0), (((1.0, 0.0),), ((2.0, 1.0), (2.0, 2.0), (1.0, 3.0)), ((0.0, 0.0),)))
    back = c.reversed()
    assert back.start == (0.0, 0.0)
    assert back.segments == (((1.0, 3.0),), ((2.0, 2.0), (2.0, 1.0), (1.0, 0.0)), ((0.0, 0.0),))


@pytest.mark.parametrize("outer_positive", [True, False])
def test_orient_sets_the_outer_outlines_sign_and_keeps_holes_opposite(outer_positive: bool) -> None:
    for contours in (trace_glyph(ring()), [c.reversed() for c in trace_glyph(ring())]):
        oriented = orient(contours, outer_positive)
        areas = sorted((signed_area(c) for c in oriented), key=abs)
        assert (areas[-1] > 0) == outer_positive
        assert (areas[0] > 0) != outer_positive
        assert ink_area(oriented) == pytest.approx(ink_area(contours))
    assert orient([], outer_positive) == []


# -- 2. the font round trip ------------------------------------------------------------------------


@pytest.fixture(params=[".otf", ".ttf"])
def shapes_font(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, list[int], np.ndarray]:
    images = np.stack([make() for make in SHAPES.values()])
    path = tmp_path / f"shapes{request.param}"
    codepoints = build_font(path, [trace_glyph(img) for img in images], 32, FontNames("Ganji Test Shapes", "unit test"),
                            truetype=request.param == ".ttf")
    return path, codepoints, images


def test_font_round_trip_reopens_with_every_code_point(shapes_font: tuple[Path, list[int], np.ndarray]) -> None:
    path, codepoints, images = shapes_font
    assert codepoints == [FIRST_CODEPOINT + i for i in range(len(images))]
    font = TTFont(str(path))
    assert ("glyf" in font) == (path.suffix == ".ttf") and ("CFF " in font) == (path.suffix == ".otf")
    cmap = font.getBestCmap()
    assert {cp: cmap[cp] for cp in codepoints} == {cp: f"uni{cp:04X}" for cp in codepoints}
    assert set(cmap) == {*codepoints, 0x20, 0x3000}
    assert check_font(path, codepoints) == []
    assert font["name"].getDebugName(1) == "Ganji Test Shapes"
    assert font["name"].getDebugName(6) == "Ganji-Test-Shapes-Regular"
    assert font["head"].unitsPerEm == UNITS_PER_EM == 1000
    assert all(font["hmtx"][f"uni{cp:04X}"][0] == 1000 for cp in codepoints)
    assert (font["OS/2"].sTypoAscender, font["OS/2"].sTypoDescender) == (ASCENT, DESCENT) == (880, -120)
    assert (font["hhea"].ascent, font["hhea"].descent) == (880, -120)
    assert font["OS/2"].fsType == 0  # installable, embeddable


def test_font_renders_back_to_its_source_images(shapes_font: tuple[Path, list[int], np.ndarray]) -> None:
    path, codepoints, images = shapes_font
    renders = render_glyphs(path, codepoints, 32)
    assert renders.shape == (len(images), 1, 32, 32) and renders.dtype == np.uint8
    iou = ink_iou(renders, images[:, None])
    assert iou.min() > 0.9, dict(zip(SHAPES, iou))
    ring_render = renders[list(SHAPES).index("ring"), 0]
    assert ring_render[15:17, 15:17].max() < 64  # the hole is a hole (the winding is right)
    assert ring_render[16, 16 - 9] >= 192  # and the ring around it is ink


def test_real_kanji_survive_the_round_trip(tmp_path: Path) -> None:
    home = tmp_path / "home"
    make_kanji(home, name="k32", size=32, limit=16)
    images = load_dataset(home, "k32").images.numpy()
    path = tmp_path / "kanji.otf"
    codepoints = build_font(path, [trace_glyph(img[0]) for img in images], 32, FontNames("K", "kanji"))
    assert check_font(path, codepoints) == []
    iou = ink_iou(render_glyphs(path, codepoints, 32), images)
    assert iou.mean() > 0.85 and iou.min() > 0.75, iou


def test_build_font_refuses_no_glyphs_and_too_many(tmp_path: Path) -> None:
    names = FontNames("X", "y")
    with pytest.raises(GanjiError, match="1 to 6,400"):
        build_font(tmp_path / "none.otf", [], 32, names)
    with pytest.raises(GanjiError, match="1 to 6,400"):
        build_font(tmp_path / "many.otf", [[]] * (MAX_GLYPHS + 1), 32, names)
    assert list(tmp_path.iterdir()) == []
    assert MAX_GLYPHS == 0xF8FF - 0xE000 + 1 == 6400


def test_font_format_and_names() -> None:
    assert font_format(Path("a.otf")) == ".otf" and font_format(Path("a.TTF")) == ".ttf"
    for bad in ("a.png", "a", "a.woff2", "otf"):
        with pytest.raises(GanjiError, match=r"\.otf.*\.ttf"):
            font_format(Path(bad))
    assert FontNames("Ganji (test) [1]/2", "").ps_name == "Ganji-test-12-Regular"
    assert FontNames("漢字", "").ps_name == "GanjiFake-Regular"
    assert len(FontNames("x" * 63, "").ps_name) <= 63
    for bad in ("", "   ", "x" * 64):
        with pytest.raises(GanjiError, match="--name"):
            FontNames(bad, "").check()


# -- 3. check_font finds problems ------------------------------------------------------------------


def test_check_font_reports_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "three.otf"
    codepoints = build_font(path, [trace_glyph(make()) for make in (square, ring, cross)], 32, FontNames("T", "t"))
    missing = check_font(path, [*codepoints, FIRST_CODEPOINT + 3])
    assert len(missing) == 1 and "U+E003" in missing[0]
    extra = check_font(path, codepoints[:2])
    assert len(extra) == 1 and "unexpected code points: U+E002" in extra[0]
    not_a_font = tmp_path / "not.otf"
    not_a_font.write_bytes(b"OTTO" + os.urandom(200))
    assert any("cannot reopen" in p for p in check_font(not_a_font, codepoints))
    text = tmp_path / "text.otf"
    text.write_text("hello")
    assert any("cannot reopen" in p for p in check_font(text, codepoints))
    # Someone else's font: its glyphs are not named uniXXXX, and one of them is empty.
    other = make_rect_font(tmp_path / "other.ttf", {0xE000: (100, 0, 900, 800), 0xE001: None})
    assert len(check_font(other, [0xE000, 0xE001])) >= 2


def test_check_font_catches_an_empty_glyph_and_bad_metrics(tmp_path: Path) -> None:
    path = tmp_path / "s.ttf"
    codepoints = build_font(path, [trace_glyph(square())], 32, FontNames("T", "t"), truetype=True)
    font = TTFont(str(path))
    font["glyf"]["uniE000"].numberOfContours = 0  # its outline gone
    font["glyf"]["uniE000"].coordinates, font["glyf"]["uniE000"].endPtsOfContours = [], []
    font["glyf"]["uniE000"].flags, font["glyf"]["uniE000"].program = [], None
    font["OS/2"].sTypoAscender = 800
    font["hmtx"]["uniE000"] = (500, 0)
    broken = tmp_path / "broken.ttf"
    font.save(str(broken))
    problems = " | ".join(check_font(broken, codepoints))
    assert "has no outline" in problems and "ascender" in problems


# -- rendering -------------------------------------------------------------------------------------


def test_ink_iou() -> None:
    blank = np.zeros((1, 1, 4, 4), np.uint8)
    left, right = blank.copy(), blank.copy()
    left[..., :2] = 255
    right[..., 1:3] = 255
    assert ink_iou(blank, blank).tolist() == [1.0]
    assert ink_iou(left, blank).tolist() == [0.0]
    assert ink_iou(left, right).tolist() == pytest.approx([1 / 3])
    faint = np.full((1, 1, 4, 4), 127, np.uint8)  # below half ink: no ink
    assert ink_iou(faint, blank).tolist() == [1.0]


def test_specimen_sets_each_glyph_in_its_cell(tmp_path: Path) -> None:
    path = tmp_path / "s.otf"
    codepoints = build_font(path, [trace_glyph(square()), trace_glyph(ring())], 32, FontNames("T", "t"))
    sheet = specimen(path, codepoints, "title", columns=16, cell=64)
    pad, label_h, title_h = 8, 16, 32
    assert sheet.size == (pad + 2 * (64 + pad), title_h + pad + 64 + label_h + pad)
    pixels = np.asarray(sheet)
    # The square's middle is ink (dark) in the first cell, the ring's centre is paper in the second.
    y = title_h + pad + 32
    assert pixels[y, pad + 32] < 64
    assert pixels[y, pad + 64 + pad + 32] > 192


# -- 4. choosing glyphs ----------------------------------------------------------------------------


def test_ink_pieces_counts_8_connected_regions() -> None:
    images = np.zeros((3, 1, 16, 16), np.uint8)
    images[0, 0, 1:4, 1:4] = 255  # a 3 x 3 block: 9
    images[0, 0, 5, 5] = images[0, 0, 6, 6] = 255  # touching at a corner: one piece of 2
    images[0, 0, 10:12, 2:14] = 255  # a bar: 24
    images[0, 0, 0, 15] = 200  # a speck in the corner: 1
    images[1, 0, 3:6, 3:6] = 127  # below half ink: nothing
    snake = np.zeros((16, 16), bool)  # one winding stroke: labels must travel far
    snake[1, 1:15] = snake[1:8, 14] = snake[7, 1:15] = snake[7:14, 1] = snake[13, 1:15] = True
    images[2, 0][snake] = 255
    pieces = ink_pieces(images)
    assert sorted(pieces[0].tolist()) == [1, 2, 9, 24]
    assert pieces[1].tolist() == []
    assert pieces[2].tolist() == [int(snake.sum())]
    stats = GlyphStats.of(images)
    assert stats.pieces.tolist() == [4, 0, 1] and stats.specks.tolist() == [2, 0, 0]
    assert stats.ink[0] == pytest.approx(36 / 256) and stats.ink[1] == 0
    assert stats.row(0) == {"ink": round(36 / 256, 4), "pieces": 4, "specks": 2}


def stats_of(ink: list[float], pieces: list[int], specks: list[int] | None = None) -> GlyphStats:
    return GlyphStats(np.array(ink), np.array(pieces), np.array(specks or [0] * len(ink)))


REAL = SanityRange(ink=(0.1, 0.3), pieces=(1, 5), specks_max=1, median=(0.2, 3), spread=(0.1, 2))


def test_choose_without_the_filter_keeps_every_inked_glyph_in_order() -> None:
    candidates = stats_of([0.2, 0.0, 0.9, 0.01, 0.0, 0.2], [3, 0, 1, 40, 0, 3])
    copies = np.array([True, False, False, False, False, True])
    assert choose(10, candidates, REAL, copies, filtered=False) == [0, 2, 3, 5]
    assert choose(2, candidates, REAL, copies, filtered=False) == [0, 2]


def test_choose_with_the_filter_drops_copies_and_odd_ones_and_prefers_typical_ones() -> None:
    #                         0     1    2     3     4     5     6     7
    candidates = stats_of([0.20, 0.0, 0.9, 0.22, 0.12, 0.20, 0.20, 0.29], [3, 0, 3, 3, 1, 3, 9, 5], [0, 0, 0, 0, 0, 0, 0, 2])
    copies = np.array([True, False, False, False, False, False, False, False])
    # 0 a copy, 1 blank, 2 too much ink, 6 too many pieces, 7 too many specks: 3, 4, 5 remain.
    assert choose(10, candidates, REAL, copies, filtered=True) == [3, 4, 5]
    # The two most typical (5 exactly the median, then 3), in generation order.
    assert choose(2, candidates, REAL, copies, filtered=True) == [3, 5]
    assert choose(1, candidates, REAL, copies, filtered=True) == [5]
    assert choose(5, candidates, REAL, np.ones(8, bool), filtered=True) == []


def test_sanity_range_of_real_stats() -> None:
    rng = np.random.default_rng(0)
    real = stats_of(list(rng.uniform(0.1, 0.3, 500)), list(rng.integers(1, 8, 500)), list(rng.integers(0, 2, 500)))
    sane = SanityRange.of(real)
    assert 0.1 <= sane.ink[0] < 0.11 and 0.29 < sane.ink[1] <= 0.3
    assert sane.pieces == (1.0, 7.0) and sane.specks_max == 1.0
    assert sane.passes(real).mean() > 0.95
    assert sane.oddness(stats_of([sane.median[0]], [int(sane.median[1])])).tolist() == pytest.approx([0.0])
    assert json.loads(json.dumps(sane.to_json()))["percentiles"] == [0.01, 0.99]


def test_candidates_needed_and_plan_paths() -> None:
    assert candidates_needed(8, True, None) == 16
    assert candidates_needed(8, False, None) == 8
    assert candidates_needed(8, True, 20) == 20
    with pytest.raises(GanjiError, match="--candidates must be at least --n"):
        candidates_needed(8, False, 7)
    plan = FontPlan(Path("out/fake.otf"), also_png=True)
    assert plan.map_path == Path("out/fake.otf.json")
    assert plan.specimen_path == Path("out/fake-specimen.png")
    assert (plan.glyph_dir, plan.sample_dir) == (Path("out/fake-glyphs"), Path("out/fake-samples"))
    assert plan.outputs() == [plan.output, plan.map_path, plan.specimen_path]
    assert FontPlan(Path("fake.ttf")).outputs() == [Path("fake.ttf"), Path("fake.ttf.json")]


# -- the command line ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dataset `kanji` (16 px, 64 characters) and a VAE run `r` on it (30 steps: samples differ)."""
    from ganji.train.start import train

    home = tmp_path_factory.mktemp("world") / "home"
    make_kanji(home, name="kanji", size=16, limit=64)
    train(home, "vae", {**TINY_VAE, "dataset": "kanji", "max_steps": 30}, run_name="r")
    return home


@pytest.fixture
def home(world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own copy of the trained home, set as $GANJI_HOME."""
    return own_home(world, tmp_path, monkeypatch)


def font_map(font: Path) -> dict:
    return json.loads(font.with_name(font.name + ".json").read_text())


def outlines(path: Path) -> dict[int, list]:
    """Each mapped code point's outline as pen calls: what the font draws, whatever its timestamps."""
    font = TTFont(str(path))
    glyphs = font.getGlyphSet()
    drawn = {}
    for cp, name in font.getBestCmap().items():
        pen = RecordingPen()
        glyphs[name].draw(pen)
        drawn[cp] = pen.value
    return drawn


def write_glyph_pngs(folder: Path, count: int, size: int = 32) -> list[str]:
    """`count` different synthetic glyphs, black strokes on white: two to four straight strokes each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    names = []
    for i in range(count):
        img = Image.new("L", (size, size), 255)
        draw = ImageDraw.Draw(img)
        for _ in range(2 + i % 3):
            x0, y0, x1, y1 = (int(v) for v in rng.integers(3, size - 3, 4))
            if rng.random() < 0.5:
                draw.line([(x0, y0), (x1, y0)], fill=0, width=size // 8)
            else:
                draw.line([(x0, y0), (x0, y1)], fill=0, width=size // 8)
        draw.line([(size // 4, size // 2), (3 * size // 4, size // 2)], fill=0, width=size // 8)
        names.append(f"g{i:02d}.png")
        img.save(folder / names[-1])
    return names


def test_font_from_a_run_end_to_end(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out" / "fake.otf"
    stdout, _ = succeeded(cli(capsys, "font", "vae", "--n", "8", "--candidates", "8", "--no-filter", "-o", str(out),
                              "--also-png", "--no-measure", *CPU))
    assert "8 glyphs, U+E000-U+E007" in stdout and "ink IoU" in stdout
    codepoints = [FIRST_CODEPOINT + i for i in range(8)]
    assert check_font(out, codepoints) == []
    font = TTFont(str(out))
    assert set(font.getBestCmap()) - {0x20, 0x3000} == set(codepoints)
    assert font["name"].getDebugName(1) == "Ganji Fake VAE"
    doc = font_map(out)
    assert doc["font"] == "fake.otf" and doc["format"] == "otf" and doc["pixels"] == 16 and doc["dataset"] == "kanji"
    assert doc["source"] == {"model": "vae", "run": "r", "step": 30, "seed": 0, "sampler": None}
    assert doc["candidates"] == 8 and doc["filtered"] is False and doc["sanity"] is None
    glyphs = doc["glyphs"]
    assert [g["codepoint"] for g in glyphs] == [f"U+{cp:04X}" for cp in codepoints]
    assert [g["char"] for g in glyphs] == [chr(cp) for cp in codepoints]
    assert [g["glyph"] for g in glyphs] == [f"uni{cp:04X}" for cp in codepoints]
    assert [g["sample"] for g in glyphs] == [f"sample {i}" for i in range(8)]
    known = load_dataset(home, "kanji").manifest["codepoints"]
    for g in glyphs:
        near = g["nearest"]
        assert 0 <= near["row"] < 64 and near["distance"] >= 0
        assert near["char"] == chr(known[near["row"]]) and near["codepoint"] == f"U+{known[near['row']]:04X}"
        assert 0 < g["iou"] <= 1 and 0 < g["ink"] < 1 and g["pieces"] >= 1 and isinstance(g["copy"], bool)
    assert doc["fidelity"]["iou"] == pytest.approx(np.mean([g["iou"] for g in glyphs]), abs=1e-3)
    # A 30-step VAE draws grey blurs near the ink threshold: what matters here is that the number is measured.
    assert 0 < doc["fidelity"]["iou"] <= 1 and doc["fidelity"]["n"] == 8 and doc["fidelity"]["fid_raster"] is None
    # The PNGs: one traced glyph and one sample per code point, and a specimen sheet.
    pngs = sorted(f"uni{cp:04X}.png" for cp in codepoints)
    for folder in ("fake-glyphs", "fake-samples"):
        assert sorted(p.name for p in (out.parent / folder).iterdir()) == pngs
    assert Image.open(out.parent / "fake-glyphs" / "uniE000.png").size == (128, 128)
    assert Image.open(out.parent / "fake-samples" / "uniE000.png").size == (16, 16)
    with Image.open(out.parent / "fake-specimen.png") as sheet:
        sheet.load()
        assert sheet.width > 8 * 64
    # The samples in the PNGs are the ones in the font (ink dark on paper there).
    samples = np.stack([255 - np.asarray(Image.open(out.parent / "fake-samples" / p)) for p in pngs])[:, None]
    assert ink_iou(render_glyphs(out, codepoints, 16), samples).mean() == pytest.approx(doc["fidelity"]["iou"], abs=1e-3)


def test_font_with_the_filter_and_fid(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The default path: 2n candidates, the filter, FID of the raster samples and of the renders."""
    out = tmp_path / "fake.ttf"
    result = cli(capsys, "font", "vae", "--n", "10", "--no-filter", "--name", "My Fakes", "-o", str(out), *CPU)
    stdout, _ = succeeded(result)
    doc = font_map(out)
    assert doc["format"] == "ttf" and doc["name"] == "My Fakes" and "glyf" in TTFont(str(out))
    fid = doc["fidelity"]
    assert math.isfinite(fid["fid_raster"]) and math.isfinite(fid["fid_traced"]) and fid["n"] == 10
    assert "FID (kanji features, n = 10)" in stdout
    assert TTFont(str(out))["name"].getDebugName(1) == "My Fakes"
    # With the filter, twice --n candidates are drawn (whether or not a 30-step VAE's samples pass).
    filtered = tmp_path / "filtered.otf"
    code, stdout, stderr = cli(capsys, "font", "vae", "--n", "4", "--no-measure", "-o", str(filtered), *CPU)
    if code == 0:
        assert font_map(filtered)["candidates"] == 8 and font_map(filtered)["filtered"] is True
    else:
        one_line_error((code, stdout, stderr), "of 8 candidate images", "--no-filter")
        assert not filtered.exists()


def test_same_seed_same_font_other_seed_other_font(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # fonts carry a build time: pin it
    fonts = {}
    for key, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        out = tmp_path / key / "fake.otf"
        succeeded(cli(capsys, "font", "vae", "--n", "6", "--no-filter", "--no-measure", "--seed", seed, "-o", str(out), *CPU))
        fonts[key] = out
    a, b, c = (font_map(fonts[k]) for k in "abc")
    assert a == b  # nothing time-dependent in the map
    assert fonts["a"].read_bytes() == fonts["b"].read_bytes()
    assert a["source"]["seed"] == 3 and c["source"]["seed"] == 4
    assert [(g["ink"], g["pieces"]) for g in a["glyphs"]] != [(g["ink"], g["pieces"]) for g in c["glyphs"]]
    assert outlines(fonts["a"]) != outlines(fonts["c"])


def test_font_from_a_folder_of_glyph_images(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "glyphs"
    names = write_glyph_pngs(folder, 12)
    Image.new("L", (32, 32), 255).save(folder / "h_blank.png")  # paper only: left out as blank
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "folder.otf"
    stdout, stderr = succeeded(cli(capsys, "font", "--from-images", str(folder), "--n", "13", "--no-filter",
                                   "-o", str(out), "--no-measure", *CPU))
    doc = font_map(out)
    assert [g["sample"] for g in doc["glyphs"]] == names
    assert doc["rejected"]["blank"] == 1 and doc["candidates"] == 13
    assert doc["source"] == {"folder": str(folder)} and doc["name"] == "Ganji Fake Kanji"
    codepoints = [FIRST_CODEPOINT + i for i in range(12)]
    assert check_font(out, codepoints) == []
    assert set(TTFont(str(out)).getBestCmap()) - {0x20, 0x3000} == set(codepoints)
    assert "12 glyphs" in stdout and "only 12 of the 13 glyphs" in stderr
    assert doc["fidelity"]["iou"] > 0.7  # strokes two pixels wide at 16 px: their edges are half the ink


def test_training_kanji_from_a_folder_are_found_as_copies(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dataset = load_dataset(home, "kanji")
    images, known = dataset.images[:6].numpy(), dataset.manifest["codepoints"]
    folder = tmp_path / "copies"
    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(255 - img[0]).save(folder / f"{i}.png")  # black ink on white, as tools save them
    out = tmp_path / "copies.otf"
    succeeded(cli(capsys, "font", "--from-images", str(folder), "--n", "6", "--no-filter", "-o", str(out), "--no-measure", *CPU))
    glyphs = font_map(out)["glyphs"]
    assert [g["nearest"]["char"] for g in glyphs] == [chr(cp) for cp in known[:6]]
    # Distances between different kanji are ~20 here; a copy's is ~0 (feature batches differ in rounding).
    assert all(g["copy"] and g["nearest"]["distance"] < 0.1 for g in glyphs), glyphs
    # With the filter every one is a copy: nothing to build, and nothing written.
    filtered = tmp_path / "filtered.otf"
    one_line_error(cli(capsys, "font", "--from-images", str(folder), "--n", "3", "-o", str(filtered), *CPU),
                   "none is both new", "--no-filter")
    assert not filtered.exists() and not filtered.with_name("filtered.otf.json").exists()


def test_the_filter_keeps_new_sane_glyphs_and_drops_copies_and_odd_ones(home: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    """A folder of 6 training kanji (copies), 8 real kanji the run never saw (new, sane), a solid block
    and a field of specks (odd): the filter keeps only some of the unseen ones."""
    make_kanji(home, name="more", size=16, limit=80)
    more = load_dataset(home, "more").images.numpy()
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(255 - more[i, 0]).save(folder / f"a_copy{i}.png")
    for i in range(64, 72):
        Image.fromarray(255 - more[i, 0]).save(folder / f"b_new{i}.png")
    block = np.full((16, 16), 255, np.uint8)
    block[2:14, 2:14] = 0
    Image.fromarray(block).save(folder / "c_block.png")
    specks = np.full((16, 16), 255, np.uint8)
    specks[1::3, 1::3] = 0
    Image.fromarray(specks).save(folder / "d_specks.png")
    out = tmp_path / "filtered.otf"
    succeeded(cli(capsys, "font", "--from-images", str(folder), "--n", "8", "--candidates", "16", "-o", str(out),
                  "--no-measure", *CPU))
    doc = font_map(out)
    kept = [g["sample"] for g in doc["glyphs"]]
    assert doc["filtered"] is True and doc["candidates"] == 16
    assert kept and all(name.startswith("b_new") for name in kept), kept
    assert kept == sorted(kept)  # in the folder's order
    assert doc["rejected"]["copies"] == 6 and doc["rejected"]["odd"] >= 2 and doc["rejected"]["blank"] == 0
    assert not any(g["copy"] for g in doc["glyphs"])
    sanity = doc["sanity"]
    for g in doc["glyphs"]:
        assert sanity["ink"][0] <= g["ink"] <= sanity["ink"][1] and sanity["pieces"][0] <= g["pieces"] <= sanity["pieces"][1]
    assert check_font(out, [FIRST_CODEPOINT + i for i in range(len(kept))]) == []


# -- 7. bad input: one line, nothing written -------------------------------------------------------


def make_folder(tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / kind
    folder.mkdir()
    if kind == "non-images":
        (folder / "a.txt").write_text("hello")
        (folder / "b.json").write_text("{}")
    elif kind == "blank":
        Image.new("L", (32, 32), 255).save(folder / "white.png")
        Image.new("L", (16, 16), 0).save(folder / "black.png")  # all ink is a border of ink: paper, inverted
    elif kind == "faint":  # a mid-grey stroke: ink (past half), but not past a --threshold of 0.9
        img = np.full((16, 16), 255, np.uint8)
        img[4:12, 7:9] = 255 - 140
        Image.fromarray(img).save(folder / "faint.png")
    return folder


BAD = {
    "n 0": (["vae", "--n", "0"], ("--n must be 1 to 6,400", "got 0")),
    "n too many": (["vae", "--n", "6401"], ("--n must be 1 to 6,400",)),
    "png output": (["vae", "-o", "{out}/fake.png"], ("fake.png", ".otf", ".ttf")),
    "no suffix": (["vae", "-o", "{out}/fake"], (".otf",)),
    "under a file": (["vae", "-o", "{tmp}/afile/fake.otf"], ("afile",)),
    "output a folder": (["vae", "-o", "{tmp}/afolder.otf"], ("afolder.otf", "folder")),
    "map a folder": (["vae", "-o", "{tmp}/mapdir/fake.otf"], ("fake.otf.json", "folder")),
    "empty folder": (["--from-images", "{tmp}/empty"], ("no usable images", "empty")),
    "non-image folder": (["--from-images", "{tmp}/non-images"], ("no usable images", "2 non-image files")),
    "blank images": (["--from-images", "{tmp}/blank"], ("no glyph to build a font from", "every one is blank")),
    "faint images": (["--from-images", "{tmp}/faint", "--no-filter", "--threshold", "0.9"], ("no glyph had ink left to trace",)),
    "missing folder": (["--from-images", "{tmp}/nowhere"], ("does not exist",)),
    "a file as folder": (["--from-images", "{tmp}/afile"], ("afile", "is a file")),
    "neither": ([], ("give a MODEL", "--from-images")),
    "both": (["vae", "--from-images", "{tmp}/blank"], ("give a MODEL", "not both")),
    "few candidates": (["vae", "--n", "8", "--candidates", "4"], ("--candidates must be at least --n",)),
    "threshold": (["vae", "--threshold", "1.5"], ("--threshold",)),
    "upscale": (["vae", "--upscale", "0"], ("--upscale",)),
    "alphamax": (["vae", "--alphamax", "2"], ("--alphamax",)),
    "empty name": (["vae", "--name", " "], ("--name must not be empty",)),
    "long name": (["vae", "--name", "x" * 64], ("--name must be at most 63",)),
    "no run": (["ddpm"], ("no trained ddpm run", "ganji train ddpm")),
    "no such run": (["vae", "--run", "nope"], ("no vae run named 'nope'",)),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_writes_nothing(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, case: str) -> None:
    args, needles = BAD[case]
    for kind in ("empty", "non-images", "blank", "faint"):
        make_folder(tmp_path, kind)
    (tmp_path / "afile").write_text("a file, not a folder")
    (tmp_path / "afolder.otf").mkdir()
    (tmp_path / "mapdir" / "fake.otf.json").mkdir(parents=True)
    out = tmp_path / "out"
    args = [a.format(tmp=tmp_path, out=out) for a in args]
    if "-o" not in args:
        args += ["-o", str(out / "fake.otf")]
    if "--n" not in args:
        args += ["--n", "2"]
    before = tree(tmp_path)
    one_line_error(cli(capsys, "font", *args, *CPU), *needles)
    after = tree(tmp_path)
    # The feature cache of the home may be filled; nothing else was written, nothing changed.
    assert {k: v for k, v in after.items() if "/cache/" not in k} == before
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: chmod does not stop root from writing "
                    "(the 'under a file' case of test_bad_input_is_one_line_and_writes_nothing covers an unwritable output)")
def test_a_read_only_output_folder(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:  # pragma: no cover
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("chmod 0o555 does not make the folder read-only here")
        one_line_error(cli(capsys, "font", "vae", "--n", "2", "-o", str(folder / "fake.otf"), *CPU), "not writable")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


# -- 8. a failure keeps the previous font ----------------------------------------------------------


def test_a_failing_command_keeps_the_previous_font(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "fake.otf"
    succeeded(cli(capsys, "font", "vae", "--n", "3", "--no-filter", "--no-measure", "-o", str(out), *CPU))
    before = tree(tmp_path / "fake.otf", tmp_path / "fake.otf.json")
    assert len(before) == 2
    blank = make_folder(tmp_path, "blank")
    one_line_error(cli(capsys, "font", "--from-images", str(blank), "--n", "1", "-o", str(out), *CPU), "every one is blank")
    assert tree(tmp_path / "fake.otf", tmp_path / "fake.otf.json") == before
    # A font that fails its own checks never replaces the previous one, and leaves no temporary file.
    monkeypatch.setattr("ganji.font.make.check_font", lambda path, codepoints: ["made-up problem"])
    one_line_error(cli(capsys, "font", "vae", "--n", "2", "--no-filter", "--no-measure", "-o", str(out), *CPU),
                   "failed its checks", "made-up problem")
    assert tree(tmp_path / "fake.otf", tmp_path / "fake.otf.json") == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert check_font(out, [FIRST_CODEPOINT + i for i in range(3)]) == []


# -- found while writing these tests, then fixed -------------------------------------------------


@pytest.mark.parametrize("suffix", [".otf", ".ttf"])  # the CFF table's own names are Latin-1 only
def test_a_japanese_font_name(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, suffix: str) -> None:
    out = tmp_path / f"fake{suffix}"
    succeeded(cli(capsys, "font", "vae", "--n", "2", "--no-filter", "--no-measure", "--name", "偽の漢字", "-o", str(out), *CPU))
    font = TTFont(str(out))
    assert font["name"].getDebugName(1) == "偽の漢字"
    assert check_font(out, [FIRST_CODEPOINT, FIRST_CODEPOINT + 1]) == []


def test_a_blocked_png_folder_is_refused_before_anything_is_written(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "fake-glyphs").write_text("a file where the glyph folder goes")
    out = tmp_path / "fake.otf"
    one_line_error(cli(capsys, "font", "vae", "--n", "2", "--no-filter", "--no-measure", "--also-png", "-o", str(out), *CPU),
                   "fake-glyphs")
    assert not out.exists() and not out.with_name("fake.otf.json").exists()


def test_a_lone_speck_makes_no_glyph() -> None:
    """One faint pixel is a speck (at most TraceSettings.speck source pixels), not a glyph."""
    image = np.zeros((32, 32), np.uint8)
    image[10, 10] = 130
    assert trace_glyph(image) == []


def test_png_folders_always_match_the_font(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A smaller font written over a larger one leaves no PNG of a glyph it no longer has."""
    out = tmp_path / "fake.otf"
    for n in ("4", "2"):
        succeeded(cli(capsys, "font", "vae", "--n", n, "--no-filter", "--no-measure", "--also-png", "-o", str(out), *CPU))
    for folder in ("fake-glyphs", "fake-samples"):
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == ["uniE000.png", "uniE001.png"]


def test_bench_trace_scores_each_setting(home: Path, capsys: pytest.CaptureFixture) -> None:
    """`ganji bench trace`: one row per setting; tracing the dataset's own kanji at the defaults keeps
    most of their ink, and a far-off threshold keeps less."""
    out, _ = succeeded(cli(capsys, "bench", "trace", "--dataset", "kanji", "--n", "6", "--thresholds", "0.5,0.9",
                           "--upscales", "8", "--alphamax", "1", "--json"))
    rows = json.loads(out)
    assert [(r["threshold"], r["upscale"], r["alphamax"]) for r in rows] == [(0.5, 8, 1.0), (0.9, 8, 1.0)]
    assert rows[0]["iou"] > 0.8 and rows[0]["iou"] > rows[1]["iou"] and rows[0]["glyphs"] == 6
    one_line_error(cli(capsys, "bench", "trace", "--dataset", "kanji", "--thresholds", "half"), "--thresholds")
    one_line_error(cli(capsys, "bench", "trace", "--dataset", "kanji", "--upscales", "0"), "--upscale")


def test_the_command_line_loads_without_torch_numpy_or_pillow() -> None:
    """`ganji --help` and shell completion stay fast: registering every command (font's tracing
    settings included) imports none of the heavy libraries."""
    import subprocess
    import sys

    code = "import sys, ganji.cli; ganji.cli._register(); print(sorted(m for m in ('torch', 'numpy', 'PIL') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
