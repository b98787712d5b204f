"""Shared fixtures: a fresh home folder per test, small kanji datasets made in a second, tiny fonts."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganji.data.prepare import build_kanji

Box = tuple[int, int, int, int]  # xMin, yMin, xMax, yMax in font units


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    monkeypatch.setenv("GANJI_HOME", str(folder))
    return folder


def make_kanji(home: Path, name: str = "kanji16", size: int = 16, limit: int = 256) -> Path:
    """A small prepared kanji dataset (the first `limit` characters at `size` px)."""
    return build_kanji(home, name=name, size=size, limit=limit, progress=False).path


def make_font(path: Path, glyphs: dict[int, Box | None], upem: int = 1000, cff: bool = False) -> Path:
    """A tiny font whose glyphs are filled rectangles (None: an empty glyph), CFF-flavoured or TrueType.

    Ascender 880 / descender -120, as CJK fonts set them, so the em box is y in [-120, 880].
    """
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.t2CharStringPen import T2CharStringPen
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    names = [".notdef"] + [f"g{cp:x}" for cp in glyphs]
    fb = FontBuilder(upem, isTTF=not cff)
    fb.setupGlyphOrder(names)
    fb.setupCharacterMap({cp: f"g{cp:x}" for cp in glyphs})
    drawn = {}
    for name, box in zip(names, [None, *glyphs.values()]):
        pen = T2CharStringPen(upem, None) if cff else TTGlyphPen(None)
        if box is not None:
            x0, y0, x1, y1 = box
            pen.moveTo((x0, y0))
            pen.lineTo((x0, y1))
            pen.lineTo((x1, y1))
            pen.lineTo((x1, y0))
            pen.closePath()
        drawn[name] = pen.getCharString() if cff else pen.glyph()
    if cff:
        fb.setupCFF("GanjiTest-Regular", {"FullName": "Ganji Test"}, drawn, {})
    else:
        fb.setupGlyf(drawn)
    # Left side bearing = the outline's xMin, as font editors write it.
    fb.setupHorizontalMetrics({name: (upem, box[0] if box else 0) for name, box in zip(names, [None, *glyphs.values()])})
    fb.setupHorizontalHeader(ascent=880, descent=-120)
    fb.setupNameTable({"familyName": "Ganji Test", "styleName": "Regular"})
    fb.setupOS2(sTypoAscender=880, sTypoDescender=-120, usWinAscent=880, usWinDescent=120)
    fb.setupPost()
    fb.save(str(path))
    return path


@pytest.fixture(scope="session", autouse=True)
def _torch_load_only_with_weights_only():
    """A runtime guard for the whole session: torch.load without weights_only=True fails the test.

    Unpickling runs whatever code a file holds; tests/test_no_pickle.py checks the source statically,
    this catches any call the tests actually make (ganji's or a library's).
    """
    import torch

    real_load = torch.load

    def guarded_load(*args, **kwargs):
        if kwargs.get("weights_only") is not True:
            raise AssertionError("torch.load called without weights_only=True: that would unpickle arbitrary code")
        return real_load(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "load", guarded_load)
        yield


def sample_images(loaded, n: int, **request):
    """`n` images from a loaded model through a resolved SampleRequest (as `ganji sample` makes them)."""
    from ganji.sampling import SampleRequest, generate

    return generate(loaded, SampleRequest.resolve(loaded.spec, loaded.recipe, n, **request))


def stub_conditioning_suite(monkeypatch: pytest.MonkeyPatch, key: str) -> dict:
    """`evaluate_conditioning` cut down to its draws: one single-key request (`key`) and the
    unconditional samples, 2 images each at seed 7, no recogniser or features; returns what it drew,
    by keys (() for the unconditional ones), filled in when it runs."""
    import ganji.metrics.conditioning as conditioning

    seen: dict = {}

    def fake_scores(requests, generate, *args, **kwargs):
        for keys in ((key,), ()):
            seen[keys] = generate(keys, 2, 7)
        return "score"

    monkeypatch.setattr(conditioning, "request_suite", lambda *a, **k: [conditioning.Request((key,), "single")])
    monkeypatch.setattr(conditioning, "score_requests", fake_scores)
    monkeypatch.setattr("ganji.metrics.protocol.dataset_features", lambda *a, **k: None)
    monkeypatch.setattr("ganji.features.extractors.load_extractor", lambda *a, **k: type("E", (), {"features": None})())
    return seen
