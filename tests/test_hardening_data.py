"""Never lose work, round two (issue 16): datasets. A swap that a kill -9 cannot lose, sources that
are not files, images that cost far more than their size, headers and manifests that lie.

Every case here failed on the code before the fix unless its docstring says otherwise ("passed
before": kept as a check of the general rule that every path read may be a device, a FIFO, a
socket, a symlink or a folder).
"""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_kanji
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file
from test_hardening_common import cli, copy_world, env_for, ganji, hidden_leftovers, no_hang, one_line_error, succeeded, tree

from ganji.errors import GanjiError

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("world") / "home"
    make_kanji(home, name="k16", size=16, limit=32)
    make_kanji(home, name="k3", size=16, limit=3)
    return home


@pytest.fixture
def home(world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return copy_world(world, tmp_path, monkeypatch)


def datasets(home: Path) -> Path:
    return home / "datasets"


def glyph(size: int = 32) -> np.ndarray:
    arr = np.zeros((size, size), np.uint8)
    arr[size // 4 : 3 * size // 4, size // 2 - 3 : size // 2 + 3] = 255
    arr[size // 2 - 3 : size // 2 + 3, size // 5 : size - size // 5] = 255
    return arr


def encode(img: Image.Image | np.ndarray, fmt: str = "PNG") -> bytes:
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def make_special(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dangling-symlink":
        path.symlink_to(path.with_name("nowhere"))
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.close()
    else:
        raise ValueError(kind)


# -- names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [" ", ".tiny.1.old", "k16\n", "a b", "-k", "..", "."])
def test_dataset_names_are_plain_visible_names(home: Path, capsys: pytest.CaptureFixture, name: str) -> None:
    """Before: a lone space, hidden names like .tiny.1.old and a trailing newline were accepted."""
    before = tree(home)
    one_line_error(cli(capsys, "fetch-data", "--name", name, "--size", "16", "--limit", "4", "-q"), "invalid dataset name")
    assert tree(home) == before and hidden_leftovers(datasets(home)) == []
    assert sorted(p.name for p in datasets(home).iterdir()) == ["k16", "k3"]


def test_a_default_name_from_a_folder_is_made_plain(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A folder whose name has spaces imports under a plain name (before: the name as it was)."""
    src = tmp_path / " my glyphs (2)"
    src.mkdir()
    (src / "a.png").write_bytes(encode(glyph()))
    succeeded(cli(capsys, "fetch-data", "--from", str(src), "--size", "16", "-q"))
    assert (datasets(home) / "my-glyphs-2" / "manifest.json").is_file()


# -- sources that are not files --------------------------------------------------------------------


def test_from_dev_zero_is_refused_at_once(home: Path) -> None:
    """Before: read /dev/zero until memory ran out (22 GB; here a MemoryError under the child's cap)."""
    before = tree(home)
    one_line_error(ganji(home, "fetch-data", "--from", "/dev/zero", "--name", "z", "--size", "16", "-q", timeout=60),
                   "/dev/zero", "a device")
    assert tree(home) == before


@pytest.mark.parametrize("kind", ["fifo", "socket", "dangling-symlink", "device"])
def test_a_source_that_is_not_a_file_or_folder(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, kind: str) -> None:
    """Before: a FIFO named f.zip hung forever."""
    source = tmp_path / "f.zip"
    make_special(source, kind)
    before = tree(home)
    with no_hang():
        one_line_error(cli(capsys, "fetch-data", "--from", str(source), "--size", "16", "-q"), str(source))
        one_line_error(cli(capsys, "fid", "--images", str(source), "--dataset", "k16", "--n", "10", "-q"), str(source))
        one_line_error(cli(capsys, "fetch-data", "--font", str(source), "--name", "f", "--size", "16", "-q"), str(source))
    assert tree(home) == before and hidden_leftovers(datasets(home)) == []


def test_special_files_inside_an_imported_folder_are_skipped(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Passed before: kept for the general rule (a FIFO, /dev/zero and a dangling link named like images)."""
    src = tmp_path / "imgs"
    src.mkdir()
    (src / "a.png").write_bytes(encode(glyph()))
    for name, kind in (("b.png", "fifo"), ("c.png", "device"), ("d.png", "dangling-symlink")):
        make_special(src / name, kind)
    with no_hang():
        succeeded(cli(capsys, "fetch-data", "--from", str(src), "--name", "imp", "--size", "16", "-q"))
    assert json.loads((datasets(home) / "imp" / "manifest.json").read_text())["files"] == ["a.png"]


# -- a swap that a kill cannot lose ------------------------------------------------------------------

# `python -m ganji` that dies at one moment: "swap", kill -9 as the new dataset is moved into the
# place of the old one (moved aside just before); "build", SIGTERM as the first file of the new one is
# written (Python's default SIGTERM: no finally block runs).
DIE_AT = """import os, pathlib, runpy, signal, sys
when, name = sys.argv[1], sys.argv[2]
real_rename, real_replace = pathlib.Path.rename, os.replace
def rename(self, target):
    if when == "swap" and pathlib.Path(target).name == name and self.name != name:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_rename(self, target)
def replace(src, dst, *args, **kwargs):
    if when == "build" and ".building" in str(dst):
        os.kill(os.getpid(), signal.SIGTERM)
    return real_replace(src, dst, *args, **kwargs)
pathlib.Path.rename = rename
os.replace = replace
sys.argv = ["ganji", *sys.argv[3:]]
runpy.run_module("ganji", run_name="__main__")
"""


def die_at(home: Path, when: str, *args: str) -> int:
    proc = subprocess.run([sys.executable, "-c", DIE_AT, when, "k16", *args], env=env_for(home), capture_output=True, timeout=120)
    return proc.returncode


def test_kill_9_in_the_middle_of_a_force_swap(home: Path, capsys: pytest.CaptureFixture) -> None:
    """Before: no dataset at all afterwards (the old one moved aside, the new one not moved in), and
    nothing ever recovered either."""
    from ganji.data.store import load_dataset

    code = die_at(home, "swap", "fetch-data", "--name", "k16", "--size", "16", "--limit", "8", "--force", "-q")
    assert code == -9
    assert not (datasets(home) / "k16").exists() and hidden_leftovers(datasets(home))  # the moment it died
    # The next command that looks for the dataset finishes the swap (or undoes it) and cleans up.
    dataset = load_dataset(home, "k16")
    assert len(dataset) in (8, 32)
    assert hidden_leftovers(datasets(home)) == []
    succeeded(cli(capsys, "fetch-data", "--name", "k16", "--size", "16", "--limit", "8", "-q"))  # "already prepared"


def test_a_killed_build_leaves_nothing_that_force_does_not_clean(home: Path, capsys: pytest.CaptureFixture) -> None:
    """Before: the hidden .building folder of a SIGTERM'd fetch-data stayed for ever, --force or not."""
    before = tree(home / "datasets" / "k16")
    code = die_at(home, "build", "fetch-data", "--name", "k16", "--size", "16", "--limit", "8", "--force", "-q")
    assert code == -15
    assert any(name.endswith(".building") for name in hidden_leftovers(datasets(home)))
    assert tree(home / "datasets" / "k16") == before  # the dataset itself was never touched
    succeeded(cli(capsys, "fetch-data", "--name", "k16", "--size", "16", "--limit", "8", "--force", "-q"))
    assert hidden_leftovers(datasets(home)) == []
    assert json.loads((datasets(home) / "k16" / "manifest.json").read_text())["count"] == 8


def test_two_builds_of_one_dataset_are_exclusive(home: Path, capsys: pytest.CaptureFixture) -> None:
    from ganji.data.store import dataset_lock

    before = tree(home)
    with dataset_lock(home, "k16"):
        one_line_error(cli(capsys, "fetch-data", "--name", "k16", "--size", "16", "--limit", "8", "--force", "-q"),
                       f"dataset 'k16' is being prepared by process {os.getpid()}")
    assert tree(home) == before and hidden_leftovers(datasets(home)) == []


# -- images that cost far more than their size ------------------------------------------------------

# Imports a folder in a child (numpy and Pillow only, capped at 2 GB of address space) and prints
# what it kept and how much its peak resident memory grew during the import.
IMPORT_PEAK = """import json, resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))
from ganji.data.folder_import import import_images
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = import_images(Path(sys.argv[1]), 64)
grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024
print(json.dumps({"files": result.files, "unreadable": result.skipped_unreadable, "grew": grew,
                  "means": [float(a.mean()) for a in result.images]}))
"""


def test_small_files_that_decode_to_huge_images_cost_megabytes(tmp_path: Path) -> None:
    """Before: a 1 x 20,000 PNG was padded to 20,000² (400 MB, then Lanczos over it) and a transparent
    3,000² RGBA one flattened in float64 (300 MB): here both failed under the 2 GB cap or grew the
    peak far past the bound. (The issue's full-size cases, measured with /usr/bin/time -v: 3.0 GB and
    5.3 GB before, 0.69 GB and 0.91 GB after, of which 0.66 GB is importing torch.)"""
    src = tmp_path / "bombs"
    src.mkdir()
    Image.new("L", (1, 20_000), 255).save(src / "thin.png")
    rgba = Image.new("RGBA", (3000, 3000), (0, 0, 0, 0))
    ImageDraw.Draw(rgba).rectangle((1200, 600, 1800, 2400), fill=(0, 0, 0, 255))  # black ink on nothing
    rgba.save(src / "wide.png")
    del rgba
    assert (src / "thin.png").stat().st_size < 1000 and (src / "wide.png").stat().st_size < 100_000
    proc = subprocess.run([sys.executable, "-c", IMPORT_PEAK, str(src)], env=env_for(tmp_path), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["files"] == ["thin.png", "wide.png"], report
    assert report["grew"] < 120 * 2**20, f"the import grew the peak by {report['grew']:,} bytes"
    assert 0 < report["means"][1] < 255  # the bar is there, contrasting with its paper


def test_only_the_accepted_formats_are_decoded(tmp_path: Path) -> None:
    """Before: any format Pillow knows was decoded whatever the suffix (here a TIFF and a PPM named .png)."""
    from ganji.data.folder_import import import_images

    src = tmp_path / "imgs"
    src.mkdir()
    (src / "a.png").write_bytes(encode(glyph()))
    (src / "b.png").write_bytes(encode(glyph(), "TIFF"))
    (src / "c.png").write_bytes(encode(glyph(), "PPM"))
    result = import_images(src, 16)
    assert result.files == ["a.png"] and result.skipped_unreadable == ["b.png", "c.png"]


def test_large_images_import_like_their_small_selves(tmp_path: Path) -> None:
    """Downscaling first changes little: a 4,096 px glyph imports within a few grey levels of the same
    glyph at 512 px (a check that the reduction keeps what the output needs)."""
    from ganji.data.folder_import import import_images

    src = tmp_path / "imgs"
    src.mkdir()
    big = Image.fromarray(glyph(512)).resize((4096, 4096), Image.Resampling.NEAREST)
    big.save(src / "big.png")
    Image.fromarray(glyph(512)).save(src / "small.png")
    result = import_images(src, 32)
    diff = np.abs(result.images[0].astype(float) - result.images[1].astype(float))
    assert diff.mean() < 2 and diff.max() < 40


# -- dataset files that lie ------------------------------------------------------------------------


def images_file(home: Path, name: str = "k16") -> Path:
    return datasets(home) / name / "images.safetensors"


def forge_header(path: Path, shape: list[int], sparse: bool) -> None:
    """Rewrite a dataset file to declare `shape` (uint8): in a sparse file that large, or in a small one."""
    header = json.dumps({"images": {"dtype": "U8", "shape": shape, "data_offsets": [0, int(np.prod(shape))]}}).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + (int(np.prod(shape)) if sparse else 1024))


@pytest.mark.parametrize("how", ["terabyte-sparse", "terabyte-small-file", "manifest-agrees", "not-square", "labels"])
def test_a_dataset_header_that_promises_too_much(home: Path, capsys: pytest.CaptureFixture, how: str) -> None:
    """Before: the whole declared tensor was read (a 1 TiB sparse file: until memory ran out), and a
    non-square one trained into a shape mismatch traceback."""
    from ganji.data.store import load_dataset, tensor_sha256

    path = images_file(home)
    manifest_path = datasets(home) / "k16" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    needle = {"terabyte-sparse": "declares images of shape", "terabyte-small-file": "cannot read",
              "manifest-agrees": "more than this machine's memory", "not-square": "not square",
              "labels": "declares labels"}[how]
    if how == "terabyte-sparse":
        forge_header(path, [2**20, 1, 1024, 1024], sparse=True)
    elif how == "terabyte-small-file":
        forge_header(path, [2**20, 1, 1024, 1024], sparse=False)
    elif how == "manifest-agrees":
        forge_header(path, [2**20, 1, 1024, 1024], sparse=True)
        manifest_path.write_text(json.dumps({**manifest, "count": 2**20, "size": 1024}))
    elif how == "not-square":
        images = load_file(str(path))["images"][:, :, :, :8].contiguous()
        save_file({"images": images}, str(path))
        manifest_path.write_text(json.dumps({**manifest, "size": 8, "images_sha256": tensor_sha256(images)}))
    else:
        import torch

        save_file({**load_file(str(path)), "labels": torch.zeros(10**6, dtype=torch.int64)}, str(path))
    before = tree(home)
    with pytest.raises(GanjiError, match=needle):
        load_dataset(home, "k16")
    one_line_error(cli(capsys, "train", "vae", "--dataset", "k16", "--batch-size", "8", "--latent-dim", "8",
                       "--base-width", "8", "--max-steps", "1", "--run", "x", "--device", "cpu", "-q"), "'k16'", needle)
    assert tree(home) == before and not (home / "runs" / "vae" / "x").exists()


def test_an_images_file_that_is_a_fifo(home: Path) -> None:
    from ganji.data.store import load_dataset

    path = images_file(home)
    path.unlink()
    os.mkfifo(path)
    with no_hang(), pytest.raises(GanjiError, match="a FIFO"):
        load_dataset(home, "k16")


@pytest.mark.parametrize("what", ["deep", "infinity"])
def test_a_hostile_manifest(home: Path, capsys: pytest.CaptureFixture, what: str) -> None:
    """Before: RecursionError traceback (deep); Infinity for a count passed the JSON reader."""
    manifest = datasets(home) / "k16" / "manifest.json"
    if what == "deep":
        manifest.write_text(DEEP)
    else:
        manifest.write_text(manifest.read_text().replace('"count": 32', '"count": Infinity'))
    before = tree(home)
    needle = "nested too deeply" if what == "deep" else "Infinity"
    one_line_error(cli(capsys, "fetch-data", "--name", "k16", "--size", "16", "-q"), "not valid JSON", needle)
    one_line_error(cli(capsys, "train", "vae", "--dataset", "k16", "--batch-size", "8", "--max-steps", "1", "--run", "x",
                       "--device", "cpu", "-q"), "not valid JSON")
    assert tree(home) == before


def test_fid_images_against_a_dataset_of_three(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Before: KID's own ValueError ("KID needs at least 2 images on each side") as a traceback."""
    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(12):
        (src / f"{i:02d}.png").write_bytes(encode(np.roll(glyph(), i, axis=1)))
    one_line_error(cli(capsys, "fid", "--images", str(src), "--dataset", "k3", "--n", "10", "-q"),
                   "'k3' has only 3 images", "at least 4")
