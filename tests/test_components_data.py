"""Component labels from KanjiVG (ganji.data.components) and their place in the kanji dataset."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from conftest import make_kanji

from ganji.cli import main
from ganji.data import components as comp
from ganji.data.components import (
    ANY,
    NONE,
    component_key,
    describe_key,
    kanjivg_path,
    kanjivg_svg,
    kanjivg_version,
    keys_of,
    label_codepoints,
    multi_hot,
    parse_components,
    request_keys,
    split_key,
)
from ganji.data.prepare import build_kanji
from ganji.data.store import dataset_path, load_dataset, save_dataset
from ganji.errors import GanjiError
from ganji.home import datasets_dir


def components(char: str, depth: int = 1) -> list[tuple[str, str]]:
    svg = kanjivg_svg(ord(char))
    assert svg is not None, f"KanjiVG has no {char}"
    return parse_components(svg, depth)


def kvg(body: str) -> str:
    """A KanjiVG-shaped SVG around `body`: the character's group, after a DOCTYPE like KanjiVG's."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.0//EN" '
        '"http://www.w3.org/TR/2001/REC-SVG-20010904/DTD/svg10.dtd" [\n<!ATTLIST g\n'
        'xmlns:kvg CDATA #FIXED "http://kanjivg.tagaini.net"\nkvg:element CDATA #IMPLIED >\n]>\n'
        '<svg xmlns="http://www.w3.org/2000/svg"><g id="kvg:StrokePaths_x">'
        f'<g kvg:element="X">{body}</g></g><g id="kvg:StrokeNumbers_x"><g kvg:element="Y"/></g></svg>'
    )


# -- parsing real KanjiVG files --------------------------------------------------------------------


def test_known_kanji() -> None:
    assert components("林") == [("木", "left"), ("木", "right")]
    assert components("相") == [("木", "left"), ("目", "right")]
    # 国: 囗 encloses 玉 and is written in two parts (before and after it): one component; the file
    # gives 玉 no position.
    svg = kanjivg_svg(ord("国")).decode()
    assert svg.count('kvg:element="囗"') == 2 and 'kvg:part="2"' in svg
    assert components("国") == [("囗", "kamae"), ("玉", NONE)]
    # 修: 攸 is written in two parts, on the left and on the right: one component, no one position.
    assert components("修") == [("攸", NONE), ("彡", "right")]


def test_the_files_come_from_the_installed_package() -> None:
    assert kanjivg_path(ord("相")).name == "076f8.svg"
    assert kanjivg_path(ord("相")).parent.name == "kanji"
    assert kanjivg_version()[:4].isdigit()  # a release date such as 20260714
    assert kanjivg_path(0x4E14).with_name("04e14-Kaisho.svg").is_file()  # variants are other files
    with pytest.raises(ValueError, match="not a Unicode code point"):
        kanjivg_path(-1)


def test_depth_reaches_nested_components() -> None:
    shallow, deep = components("語"), components("語", depth=2)
    assert shallow == [("言", "left"), ("吾", "right")]
    assert set(shallow) < set(deep)  # 吾's own parts (五, 口) come in at depth 2
    assert {"五", "口"} <= {e for e, _ in deep}


def test_atomic_kanji_and_missing_characters() -> None:
    assert components("一") == []
    assert kanjivg_svg(0x2A6D6) is None  # a CJK Extension B code point KanjiVG does not draw


def test_element_less_groups_pass_their_position_on() -> None:
    svg = kvg('<g kvg:position="left"><g kvg:element="A"><path d=""/></g><g><g kvg:element="D"/></g></g>'
              '<g kvg:element="B" kvg:part="1" kvg:position="kamae"/><g kvg:element="C"/>'
              '<g kvg:element="B" kvg:part="2" kvg:position="kamae"/>')
    assert parse_components(svg) == [("A", "left"), ("D", "left"), ("B", "kamae"), ("C", NONE)]


def test_parts_are_one_component() -> None:
    # B's parts disagree on their position (none). E's second part sits inside C, but its first part
    # makes E a direct component, placed by the only part that states a position; C's insides are
    # level 2, and so are E's (G, inside its second part).
    svg = kvg('<g kvg:element="B" kvg:part="1" kvg:position="left"><g kvg:element="F"/></g><g kvg:element="E" kvg:part="1"/>'
              '<g kvg:element="C" kvg:position="right"><g kvg:element="E" kvg:part="2" kvg:position="top">'
              '<g kvg:element="G"><g kvg:element="I"/></g></g><g kvg:element="H"/></g>'
              '<g kvg:element="B" kvg:part="2" kvg:position="right"/>')
    assert parse_components(svg) == [("B", NONE), ("E", "top"), ("C", "right")]
    assert parse_components(svg, depth=2) == [("B", NONE), ("F", NONE), ("E", "top"), ("C", "right"), ("G", NONE), ("H", NONE)]
    assert parse_components(svg, depth=3) == [("B", NONE), ("F", NONE), ("E", "top"), ("C", "right"), ("G", NONE), ("I", NONE), ("H", NONE)]
    # A part "1" starts a new component even when one of that element is open: two 口, two positions.
    again = kvg('<g kvg:element="口" kvg:part="1" kvg:position="top"/><g kvg:element="口" kvg:part="2" kvg:position="top"/>'
                '<g kvg:element="口" kvg:part="1" kvg:position="bottom"/>')
    assert parse_components(again) == [("口", "top"), ("口", "bottom")]


@pytest.mark.parametrize(
    ("svg", "message"),
    [
        ("<svg><g kvg:element='X'>", "not a KanjiVG SVG: no element found at line 1"),
        ("<svg><g kvg:element='X'></svg>", "not a KanjiVG SVG: mismatched tag at line 1, column 27"),
        (b"\xff\xfe<svg/>", "not a KanjiVG SVG"),
        ("", "not a KanjiVG SVG: no element found"),
        ("<svg><g><path/></g></svg>", "no group names a character"),
        ("<svg><g kvg:element='X'>&nbsp;</g></svg>", "undefined entity"),
        ("<!DOCTYPE svg [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>"
         "<!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;'><!ENTITY d '&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;'>]>"
         "<svg><g kvg:element='&d;&d;&d;&d;&d;&d;&d;&d;'/></svg>", "declares XML entities"),
        ("<svg>" + " " * (2 << 20) + "</svg>", "more than any KanjiVG file"),
    ],
)
def test_bad_svg_is_a_clear_error(svg: str | bytes, message: str) -> None:
    start = time.perf_counter()
    with pytest.raises(GanjiError, match=message):
        parse_components(svg)
    assert time.perf_counter() - start < 2  # refused, never expanded


def test_a_damaged_kanjivg_file_stops_the_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(comp, "kanjivg_svg", lambda cp: b"<svg><g kvg:element='" if cp == ord("相") else None)
    with pytest.raises(GanjiError, match=r"KanjiVG's file for 相 \(U\+76F8\), .*076f8\.svg, is damaged \(not a KanjiVG SVG: .*\): pip install --force-reinstall kanjivg"):
        label_codepoints([ord("林"), ord("相")])


# -- keys ----------------------------------------------------------------------------------------


def test_keys_and_requests() -> None:
    assert component_key("囗", "kamae") == "囗:kamae" and split_key("囗:kamae") == ("囗", "kamae")
    assert keys_of([("木", "left"), ("木", "right")]) == ["木:left", "木:right", "木:any"]
    assert keys_of(components("国")) == ["囗:kamae", "玉:none", "囗:any", "玉:any"]
    assert split_key("魚:left") == ("魚", "left") and split_key("木") == ("木", ANY)
    assert describe_key("囗:kamae") == "囗 enclosing (kamae)" and describe_key("木:any") == "木 anywhere"
    assert describe_key("玉:none") == "玉 (no position given)" and describe_key("X:⿵A") == "X at ⿵A"
    vocabulary = ["木:any", "木:left", "目:right", "目:any"]
    assert request_keys(["木", "目:right"], vocabulary) == ("木:any", "目:right")
    row = multi_hot(("木:any", "目:right"), vocabulary, 2)
    assert row.tolist() == [[1, 0, 1, 0], [1, 0, 1, 0]]
    with pytest.raises(GanjiError, match="木 is not known at position 'top': try 木:any, 木:left"):
        request_keys(["木:top"], vocabulary)
    with pytest.raises(GanjiError, match="unknown component '魚'.*the most common: 木 \\(left\\), 目 \\(right\\)"):
        request_keys(["魚:left"], vocabulary)
    with pytest.raises(GanjiError, match="names no component"):
        request_keys([":left"], vocabulary)


# -- labels over a set of kanji ------------------------------------------------------------------


def test_vocabulary_keeps_frequent_keys_in_order() -> None:
    chars = "林相村植柿語話読森休体"
    labels = label_codepoints([ord(c) for c in chars], depth=1, min_count=3)
    counts = labels.tensor.sum(0).tolist()
    assert labels.vocabulary[0] == "木:any" and "木:left" in labels.vocabulary and "言:left" in labels.vocabulary
    assert all(c >= 3 for c in counts) and counts == sorted(counts, reverse=True)
    ties = [k for k, c in zip(labels.vocabulary, counts) if c == counts[-1]]
    assert ties == sorted(ties)  # equal counts: in code point order of the key
    assert "目:right" not in labels.vocabulary  # only 相 has it
    row = labels.tensor[chars.index("林")]
    assert row[labels.vocabulary.index("木:left")] == 1 and row[labels.vocabulary.index("言:left")] == 0
    assert labels.tensor.dtype == torch.uint8 and labels.tensor.shape == (len(chars), len(labels.vocabulary))
    assert labels.provenance == {"source": "KanjiVG", "version": kanjivg_version(), "licence": "CC BY-SA 3.0",
                                 "url": "https://kanjivg.tagaini.net", "depth": 1, "min_count": 3,
                                 "labelled": len(chars), "with_label": len(chars) - 1}  # 体 (亻 + 本): no key in 3
    everything = label_codepoints([ord(c) for c in chars], depth=1, min_count=1)
    assert len(everything.vocabulary) > len(labels.vocabulary) and "目:right" in everything.vocabulary
    deeper = label_codepoints([ord(c) for c in chars], depth=2, min_count=1)
    assert set(everything.vocabulary) < set(deeper.vocabulary) and deeper.provenance["depth"] == 2


def test_characters_kanjivg_lacks_get_empty_rows() -> None:
    labels = label_codepoints([ord("林"), 0x2A6D6, ord("一"), ord("相")], min_count=1)
    assert labels.tensor[1].sum() == 0 and labels.tensor[2].sum() == 0 and labels.tensor[0].sum() > 0
    assert labels.provenance["labelled"] == 3 and labels.provenance["with_label"] == 2


def test_bad_depth_and_count() -> None:
    with pytest.raises(GanjiError, match=r"--component-depth must be from 1 to 4 \(got 0\)"):
        label_codepoints([ord("林")], depth=0)
    with pytest.raises(GanjiError, match=r"--component-depth must be from 1 to 4 \(got 5\)"):
        parse_components(kanjivg_svg(ord("林")), depth=5)
    with pytest.raises(GanjiError, match=r"--component-min-count must be at least 1 \(got 0\)"):
        label_codepoints([ord("林")], min_count=0)


# -- the dataset ---------------------------------------------------------------------------------


def test_kanji_dataset_stores_labels_deterministically(home: Path) -> None:
    make_kanji(home, name="a", size=16, limit=400)
    make_kanji(home, name="b", size=16, limit=400)
    a, b = load_dataset(home, "a"), load_dataset(home, "b")
    assert a.components is not None and a.components.dtype == torch.uint8
    assert a.components.shape == (400, len(a.component_vocabulary)) and len(a.component_vocabulary) > 10
    assert (a.path / "images.safetensors").read_bytes() == (b.path / "images.safetensors").read_bytes()
    assert a.manifest["components"] == b.manifest["components"]
    described = a.manifest["components"]
    assert {k: described[k] for k in ("source", "licence", "url", "depth", "min_count")} == {
        "source": "KanjiVG", "licence": "CC BY-SA 3.0", "url": "https://kanjivg.tagaini.net", "depth": 1, "min_count": 5}
    assert described["version"] == kanjivg_version() and len(described["sha256"]) == 64
    # Row i labels image i: the dataset's i-th character, as KanjiVG draws it, for every row.
    cps = a.manifest["codepoints"]
    vocabulary = a.component_vocabulary
    labelled = 0
    for i, cp in enumerate(cps):
        pairs = comp.kanjivg_components(cp)
        labelled += pairs is not None
        want = {k for k in keys_of(pairs or []) if k in vocabulary}
        assert {vocabulary[j] for j in torch.nonzero(a.components[i]).flatten().tolist()} == want, chr(cp)
    assert described["labelled"] == labelled > 100 and described["with_label"] == int(a.components.any(1).sum())


def test_limit_labels_the_first_images(home: Path) -> None:
    # --limit N: the first N images and their labels, over the vocabulary of those N.
    build_kanji(home, name="small", size=16, limit=400, progress=False, component_depth=2, component_min_count=2)
    small = load_dataset(home, "small")
    expected = label_codepoints(small.manifest["codepoints"], depth=2, min_count=2)
    assert small.component_vocabulary == expected.vocabulary and torch.equal(small.components, expected.tensor)
    assert small.manifest["components"]["depth"] == 2 and small.manifest["components"]["min_count"] == 2


def test_damaged_labels_are_caught(home: Path) -> None:
    from safetensors.torch import save_file

    make_kanji(home, name="k", size=16, limit=400)
    d = load_dataset(home, "k")
    flipped = d.components.clone()
    flipped[0, 0] ^= 1
    # A bit flipped on disk: the images and the manifest as they were, one label changed.
    save_file({"images": d.images, "components": flipped}, str(d.path / "images.safetensors"))
    with pytest.raises(GanjiError, match="component labels do not match the sha256"):
        load_dataset(home, "k")
    save_file({"images": d.images, "components": flipped[:, 1:].contiguous()}, str(d.path / "images.safetensors"))
    with pytest.raises(GanjiError, match="declares component labels of shape"):
        load_dataset(home, "k")


def test_datasets_without_labels_still_load(home: Path) -> None:
    save_dataset(datasets_dir(home) / "plain", torch.zeros(4, 1, 16, 16, dtype=torch.uint8), {"source": "folder"})
    d = load_dataset(home, "plain")
    assert d.components is None and d.component_vocabulary is None and "components" not in d.manifest


def test_fetch_data_options(home: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        main(["fetch-data", "--size", "16", "--limit", "400", "--name", "d2", "--component-depth", "2",
              "--component-min-count", "3", "-q"])
    assert done.value.code in (0, None)
    out = capsys.readouterr().out
    d2 = load_dataset(home, "d2")
    p = d2.manifest["components"]
    assert (p["depth"], p["min_count"]) == (2, 3)
    row = f"{p['with_label']:,} of 400 kanji labelled ({p['labelled']:,} in KanjiVG), {len(d2.component_vocabulary):,} keys"
    assert row in " ".join(out.split()), out
    assert f"KanjiVG {kanjivg_version()}, depth 2" in " ".join(out.split())
    manifest = json.loads((dataset_path(home, "d2") / "manifest.json").read_text(encoding="utf-8"))
    keys = [split_key(k) for k in manifest["components"]["vocabulary"]]
    assert {position for _, position in keys} <= {ANY, NONE, "left", "right", "top", "bottom", "kamae", "kamaec",
                                                  "tare", "tarec", "nyo", "nyoc", "middle"}
    assert sum(position == ANY for _, position in keys) > 5 and sum(position != ANY for _, position in keys) > 5
