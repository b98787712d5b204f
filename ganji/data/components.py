"""Component labels: which components a kanji is built from, and where they sit, from KanjiVG.

KanjiVG (Ulrich Apel and contributors, https://kanjivg.tagaini.net, CC BY-SA 3.0; the PyPI package
`kanjivg` ships its SVG files, one per character, as a top-level `kanji/` folder) draws every
character as strokes grouped into components: `<g kvg:element="木" kvg:position="left">` inside the
character's own group, nested as deep as the components are built. A component written in several
pieces (囗 around 玉 in 国) appears as several groups with `kvg:part="1"`, `"2"`, ...: one component
here.

Parse rule (`parse_components`):
- The character's group is the first group with a `kvg:element`; everything outside it (the stroke
  numbers) is ignored.
- A group with `kvg:element` is a component, named by that element as KanjiVG draws it (王 in 国,
  even where KanjiVG notes it is a partial 玉: `kvg:partial`, `kvg:original` and `kvg:variant` are
  not used). Its position is its own `kvg:position`, else the nearest one of the element-less
  groups between it and its parent component, else "none".
- A group without `kvg:element` only groups strokes or components: the walk goes through it
  without counting a level, and its position passes to the components inside (三 = 一 at the top and
  an element-less "bottom" group holding two 一: 一:top, 一:bottom).
- Parts: a group with `kvg:part` other than "1" continues the latest component of the same element
  that started with a part group in this character (part "1", or an orphan part, starts one). The
  parts form one component: its position is the one its parts state when they agree (parts that
  state none do not vote: 国's 囗 is kamae in both parts), "none" when they disagree (修's 攸 is left
  in part 1 and right in part 2); its children are its parts' children, and it sits wherever its
  shallowest part sits.
- Depth: the character is level 0, its components level 1, theirs level 2, and so on, counting the
  fewest steps through components (a part nested inside another component does not push its whole
  component deeper). `depth` keeps levels 1..depth; the pairs come in the document order of each
  component's first part, without repeats (林 = 木:left, 木:right; 品 has 口 three times, in two
  positions).

Keys are "ELEMENT:POSITION" strings ("木:left", "囗:kamae", "玉:none"); every component present also
sets its wildcard "ELEMENT:any", so "木 anywhere" is a column of its own. A dataset's vocabulary is
the keys at least `min_count` of its kanji have, most frequent first, ties in code point order of the
key string (deterministic), and its labels a uint8 multi-hot tensor over it; kanji KanjiVG lacks get
an all-zero row (they still train the unconditional path).

The SVGs are read with expat (the standard library) without namespaces, so the `kvg:` attributes
are plain names whatever the file declares; expat never fetches the external DTD, and a file that
declares entities (the "billion laughs" bomb) or is larger than any KanjiVG file is refused before
anything is expanded.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import xml.parsers.expat
from collections import Counter, deque
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ganji.errors import GanjiError

ANY = "any"
NONE = "none"
MAX_DEPTH = 4
MAX_SVG_BYTES = 1 << 20  # KanjiVG's largest file is under 10 kB
KANJIVG_URL = "https://kanjivg.tagaini.net"
KANJIVG_LICENCE = "CC BY-SA 3.0"

# KanjiVG's names for positions, for people (`describe_key`); any other name is shown as it is.
_POSITIONS = {
    "left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
    "middle": "in the middle", "kamae": "enclosing (kamae)", "kamaec": "inside an enclosure (kamae)",
    "tare": "hanging over the top left (tare)", "tarec": "under a tare", "nyo": "along the bottom left (nyō)",
    "nyoc": "above a nyō", NONE: "(no position given)", ANY: "anywhere",
}


def component_key(element: str, position: str) -> str:
    """"木:left" from ("木", "left")."""
    return f"{element}:{position}"


def split_key(key: str) -> tuple[str, str]:
    """("木", "left") from "木:left"; a key without ":" means the element anywhere."""
    element, sep, position = key.rpartition(":")
    return (element, position) if sep else (key, ANY)


PAIR_JOIN = "+"  # a pair of keys as one string: "艹:top+心:bottom" (no component or position has "+")


def join_pair(keys: tuple[str, ...]) -> str:
    """"艹:top+心:bottom" from ("艹:top", "心:bottom")."""
    return PAIR_JOIN.join(keys)


def split_pair(text: str) -> tuple[str, ...]:
    """("艹:top", "心:bottom") from "艹:top+心:bottom"."""
    return tuple(text.split(PAIR_JOIN))


def describe_key(key: str) -> str:
    """A key for people: "木 on the left", "囗 enclosing (kamae)", "木 anywhere"."""
    element, position = split_key(key)
    return f"{element} {_POSITIONS.get(position, f'at {position}')}"


def check_depth(depth: int) -> None:
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_DEPTH:
        raise GanjiError(f"--component-depth must be from 1 to {MAX_DEPTH} (got {depth})")


def check_min_count(min_count: int) -> None:
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise GanjiError(f"--component-min-count must be at least 1 (got {min_count})")


@dataclass
class _Component:
    element: str
    votes: list[str] = field(default_factory=list)  # the positions its parts state
    children: list[int] = field(default_factory=list)

    @property
    def position(self) -> str:
        stated = set(self.votes)
        return self.votes[0] if len(stated) == 1 else NONE


def _read_groups(svg: bytes) -> list[_Component]:
    """The character's components as a graph: [0] is the character, children by index, in document
    order of each component's first part."""
    nodes: list[_Component] = []
    open_parts: dict[str, int] = {}  # element -> the component its later parts continue
    stack: list[tuple[int, str | None]] = []  # per open <g> inside the character: (component, passed-on position)
    state = {"done": False}

    def start(tag: str, attrs: dict[str, str]) -> None:
        if tag != "g" or state["done"]:
            return
        element, position = attrs.get("kvg:element"), attrs.get("kvg:position") or None
        if not nodes:  # outside the character's group: wait for it
            if element:
                nodes.append(_Component(element))
                stack.append((0, None))
            return
        parent, passed = stack[-1]
        if not element:
            stack.append((parent, position or passed))
            return
        part = attrs.get("kvg:part")
        if part is not None and part != "1" and element in open_parts:
            index = open_parts[element]
        else:
            index = len(nodes)
            nodes.append(_Component(element))
            if part is not None:
                open_parts[element] = index
        if (stated := position or passed) is not None:
            nodes[index].votes.append(stated)
        if index not in nodes[parent].children and index != parent:
            nodes[parent].children.append(index)
        stack.append((index, None))  # a component's insides sit relative to it, not to its parent

    def end(tag: str) -> None:
        if tag != "g" or state["done"] or not nodes:
            return
        stack.pop()
        if not stack:
            state["done"] = True

    def entity(*_: Any) -> None:
        raise GanjiError("not a KanjiVG SVG: it declares XML entities (refused)")

    parser = xml.parsers.expat.ParserCreate()  # no namespaces: "kvg:element" is a plain attribute name
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.EntityDeclHandler = entity
    try:
        parser.Parse(svg, True)
    except xml.parsers.expat.ExpatError as exc:
        raise GanjiError(f"not a KanjiVG SVG: {xml.parsers.expat.errors.messages.get(exc.code, str(exc))} "
                         f"at line {exc.lineno}, column {exc.offset + 1}") from None
    if not nodes:
        raise GanjiError("not a KanjiVG SVG: no group names a character (kvg:element)")
    return nodes


def parse_components(svg: str | bytes, depth: int = 1) -> list[tuple[str, str]]:
    """The (element, position) pairs of a KanjiVG character's components to `depth` levels (1: its
    direct components), pieces (`kvg:part`) merged into one component, in document order, without
    repeats; a character without component groups (一): []. The rules are in the module docstring.

    Input that is not a KanjiVG SVG (not well-formed, no character group, entity declarations, over
    1 MiB) is a GanjiError saying so, never a partial label."""
    check_depth(depth)
    data = svg.encode("utf-8") if isinstance(svg, str) else bytes(svg)
    if len(data) > MAX_SVG_BYTES:
        raise GanjiError(f"not a KanjiVG SVG: {len(data):,} bytes, more than any KanjiVG file ({MAX_SVG_BYTES:,} at most)")
    nodes = _read_groups(data)
    level = {0: 0}
    queue = deque([0])
    while queue:  # breadth first: each component at its fewest steps from the character
        here = queue.popleft()
        for child in nodes[here].children:
            if child not in level:
                level[child] = level[here] + 1
                queue.append(child)
    pairs = [(nodes[i].element, nodes[i].position) for i in range(1, len(nodes)) if level.get(i, depth + 1) <= depth]
    return list(dict.fromkeys(pairs))


@lru_cache(maxsize=1)
def _kanji_folder() -> Path:
    """The `kanji/` folder of SVGs that the `kanjivg` distribution installs, found through its metadata."""
    try:
        dist = importlib.metadata.distribution("kanjivg")
    except importlib.metadata.PackageNotFoundError:
        raise GanjiError("KanjiVG is not installed: pip install kanjivg (it labels each kanji's components)") from None
    folder = Path(str(dist.locate_file("kanji")))
    if not (folder / "06728.svg").is_file():  # 木: any KanjiVG has it
        raise GanjiError(f"KanjiVG {dist.version} is installed but its SVG files are missing from {folder}: "
                         "pip install --force-reinstall kanjivg")
    return folder


def kanjivg_version() -> str:
    """The installed KanjiVG's version (its release date, e.g. "20260714"), for provenance."""
    try:
        return importlib.metadata.version("kanjivg")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def kanjivg_path(codepoint: int) -> Path:
    """Where KanjiVG keeps a character's main SVG (`kanji/056fd.svg`; variants such as
    `04e14-Kaisho.svg` are other files)."""
    if isinstance(codepoint, bool) or not isinstance(codepoint, int) or not 0 <= codepoint <= 0x10FFFF:
        raise ValueError(f"not a Unicode code point: {codepoint!r}")
    return _kanji_folder() / f"{codepoint:05x}.svg"


def kanjivg_svg(codepoint: int) -> bytes | None:
    """KanjiVG's SVG of a character (its main form, not a variant), or None when it has none."""
    try:
        return kanjivg_path(codepoint).read_bytes()
    except FileNotFoundError:
        return None


def kanjivg_components(codepoint: int, depth: int = 1) -> list[tuple[str, str]] | None:
    """`parse_components` of KanjiVG's file for a character, None when KanjiVG lacks it; a damaged
    file is a GanjiError naming it (reinstalling kanjivg is the fix: labels must not depend on it)."""
    svg = kanjivg_svg(codepoint)
    if svg is None:
        return None
    try:
        return parse_components(svg, depth)
    except GanjiError as exc:
        raise GanjiError(f"KanjiVG's file for {chr(codepoint)} (U+{codepoint:04X}), {kanjivg_path(codepoint)}, "
                         f"is damaged ({exc}): pip install --force-reinstall kanjivg") from None


def keys_of(pairs: list[tuple[str, str]]) -> list[str]:
    """Every key a character's (element, position) pairs set: each pair's and each element's wildcard."""
    keys = [component_key(e, p) for e, p in pairs]
    keys += [component_key(e, ANY) for e in dict.fromkeys(e for e, _ in pairs)]
    return list(dict.fromkeys(keys))


@dataclass
class ComponentLabels:
    """A dataset's component labels: uint8 N x V multi-hot over `vocabulary`, and where they came from."""

    tensor: torch.Tensor
    vocabulary: list[str]
    provenance: dict[str, Any] = field(default_factory=dict)


def label_codepoints(codepoints: list[int], depth: int = 1, min_count: int = 5) -> ComponentLabels:
    """Label characters from KanjiVG: row i holds the keys of `codepoints[i]` to `depth` levels.

    The vocabulary is every key (position and "any" keys alike) that at least `min_count` of the
    given characters have, ordered by how many have it, most first, ties in code point order of the
    key string: the same characters give the same vocabulary and bytes every time. A character
    KanjiVG lacks (or one without components, 一) gets an all-zero row. Provenance: where the labels
    came from and how many characters KanjiVG knows ("labelled") and have a key ("with_label")."""
    check_depth(depth)
    check_min_count(min_count)
    per_char: list[list[str] | None] = []
    for cp in codepoints:
        pairs = kanjivg_components(cp, depth)
        per_char.append(None if pairs is None else keys_of(pairs))
    counts = Counter(k for keys in per_char if keys for k in keys)
    vocabulary = sorted((k for k, c in counts.items() if c >= min_count), key=lambda k: (-counts[k], k))
    column = {k: i for i, k in enumerate(vocabulary)}
    tensor = torch.zeros(len(codepoints), len(vocabulary), dtype=torch.uint8)
    for row, keys in enumerate(per_char):
        for k in keys or ():
            if k in column:
                tensor[row, column[k]] = 1
    provenance = {
        "source": "KanjiVG",
        "version": kanjivg_version(),
        "licence": KANJIVG_LICENCE,
        "url": KANJIVG_URL,
        "depth": depth,
        "min_count": min_count,
        "labelled": sum(keys is not None for keys in per_char),
        "with_label": int(tensor.any(dim=1).sum()),
    }
    return ComponentLabels(tensor, vocabulary, provenance)


def request_keys(wanted: list[str], vocabulary: list[str]) -> tuple[str, ...]:
    """The vocabulary keys a request names ("魚:left", or "木" for "木:any"), checked: an unknown
    component or position is a one-line GanjiError naming the nearest known keys."""
    known = set(vocabulary)
    positions_of: dict[str, list[str]] = {}
    for key in vocabulary:
        element, position = split_key(key)
        positions_of.setdefault(element, []).append(position)
    keys: list[str] = []
    for text in wanted:
        element, position = split_key(text.strip())
        if not element:
            raise GanjiError(f"--with {text!r} names no component: give one such as 木:left, or 木 for anywhere")
        key = component_key(element, position)
        if key in known:
            if key not in keys:
                keys.append(key)
            continue
        if element in positions_of:
            raise GanjiError(f"{element} is not known at position {position!r}: try {', '.join(component_key(element, p) for p in positions_of[element])}")
        # Components are mostly single characters, where spelling distance means nothing: the
        # nearest names if any are close (multi-character names), else the most common components.
        near = difflib.get_close_matches(element, list(positions_of), n=5, cutoff=0.6) or list(positions_of)[:5]
        shown = ", ".join(f"{e} ({' '.join(p for p in positions_of[e] if p != ANY) or ANY})" for e in near)
        raise GanjiError(f"unknown component {element!r}: this run knows {len(positions_of):,} components; "
                         f"{'the nearest' if near[0] != list(positions_of)[0] else 'the most common'}: {shown}")
    return tuple(keys)


def multi_hot(keys: tuple[str, ...] | list[str], vocabulary: list[str], n: int = 1) -> torch.Tensor:
    """n identical rows of the multi-hot vector of `keys` over `vocabulary` (float32, n x V)."""
    column = {k: i for i, k in enumerate(vocabulary)}
    row = torch.zeros(len(vocabulary), dtype=torch.float32)
    for key in keys:
        row[column[key]] = 1.0
    return row.expand(n, -1).clone()
