"""Bad input never crashes (issue 7): a one-line error, a non-zero exit, and nothing on disk damaged.

Every case runs the real command line: `python -m ganji` in a subprocess where the entry point
itself matters (tracebacks, exit codes, environment), and `ganji.cli.main` in-process for the rest,
which is faster and just as strict: an exception that escapes `main` fails the test with its
traceback. Each case snapshots the sha256 of every file of the home folder (and of any input it
reads) before the command and compares after, so "nothing damaged" is checked byte for byte.

The runs are tiny (16 px kanji, widths of 8, two steps) and trained once for the whole module; each
test works on its own copy of that home folder.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import cli, one_line_error, own_home, succeeded, tree
from conftest import make_kanji
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ganji.data import folder_import
from ganji.runtime.checkpoint import load_checkpoint
from ganji.train.start import train

# On the CPU also where there is a GPU: these runs take milliseconds, torch.compile would take minutes.
TINY_VAE = {"batch_size": 8, "epochs": 1, "sample_every": 0, "log_every": 1, "device": "cpu",
            "options": {"latent_dim": 8, "base_width": 8}}
TINY_GAN = {"batch_size": 8, "epochs": 1, "sample_every": 0, "log_every": 1, "device": "cpu",
            "options": {"layers": (16, 8, 8, 8), "latent_dim": 8, "disc_ratio": 1}}
RESUME = ("train", "vae", "--run", "r", "--resume", "--max-steps", "4", "--device", "cpu", "-q")


# -- the shared trained home and its per-test copies ---------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """datasets k16 (16 px) and k32 (32 px); runs vae/r and gan/r on k16 (2 steps), vae/r32 on k32 (1 step)."""
    home = tmp_path_factory.mktemp("world") / "home"
    make_kanji(home, name="k16", size=16, limit=32)
    make_kanji(home, name="k32", size=32, limit=16)
    train(home, "vae", {**TINY_VAE, "dataset": "k32", "max_steps": 1}, run_name="r32")
    # vae/r last: it is the latest vae run, the one `ganji sample vae` and `--resume` pick.
    train(home, "gan", {**TINY_GAN, "dataset": "k16", "max_steps": 2}, run_name="r")
    train(home, "vae", {**TINY_VAE, "dataset": "k16", "max_steps": 2}, run_name="r")
    return home


@pytest.fixture
def home(world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own copy of the trained home, set as $GANJI_HOME."""
    return own_home(world, tmp_path, monkeypatch)


def run_dir(home: Path, model: str = "vae", name: str = "r") -> Path:
    return home / "runs" / model / name


# -- running the command line and checking its answer --------------------------------------------


# `python -m ganji`, with writes past a file size failing as the kernel makes them fail (EFBIG).
LIMITED = """import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
sys.argv = ["ganji", *sys.argv[2:]]
runpy.run_module("ganji", run_name="__main__")
"""


def ganji(home: Path, *args: str, env: dict[str, str] | None = None, file_size_limit: int | None = None) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `python -m ganji ARGS`: the real entry point, tracebacks and all."""
    full_env = {**os.environ, "GANJI_HOME": str(home), "COLUMNS": "200", "OMP_NUM_THREADS": "1", **(env or {})}
    command = ["-m", "ganji"] if file_size_limit is None else ["-c", LIMITED, str(file_size_limit)]
    proc = subprocess.run([sys.executable, *command, *args], env=full_env, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def no_temp_files(root: Path) -> None:
    leftovers = [p for p in root.rglob("*") if p.name.endswith((".tmp", ".building")) or ".old" in p.name]
    assert leftovers == [], leftovers


# -- damaging files ------------------------------------------------------------------------------


def damage_checkpoint(path: Path, how: str) -> None:
    raw = path.read_bytes()
    if how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "garbage":
        path.write_bytes(os.urandom(4096))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "header-not-an-object":
        save_file(load_file(str(path)), str(path), metadata={"ganji": "[1, 2, 3]"})
    elif how == "foreign-tensor-keys":  # a valid file and header, but keys ganji never writes
        with open(path, "rb") as f:
            header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))["__metadata__"]
        save_file({**load_file(str(path)), "opt.broken": torch.zeros(1)}, str(path), metadata=header)
    else:
        raise ValueError(how)


CHECKPOINT_DAMAGE = ["truncated", "garbage", "empty", "header-not-an-object", "foreign-tensor-keys"]
CHECKPOINT_MESSAGE = ("unreadable", "not a ganji checkpoint")


@pytest.mark.parametrize("how", CHECKPOINT_DAMAGE)
def test_sample_from_a_damaged_checkpoint(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, how: str) -> None:
    ckpt = run_dir(home) / "checkpoint.safetensors"
    damage_checkpoint(ckpt, how)
    before = tree(home)
    out = tmp_path / "grid.png"
    args = ("sample", "vae", "-o", str(out), "-q")
    line = one_line_error(ganji(home, *args) if how == "truncated" else cli(capsys, *args), str(ckpt))
    assert any(m in line for m in CHECKPOINT_MESSAGE), line
    assert tree(home) == before and not out.exists()


@pytest.mark.parametrize("how", CHECKPOINT_DAMAGE)
def test_resume_from_a_damaged_checkpoint(home: Path, capsys: pytest.CaptureFixture, how: str) -> None:
    ckpt = run_dir(home) / "checkpoint.safetensors"
    damage_checkpoint(ckpt, how)
    before = tree(home)
    line = one_line_error(ganji(home, *RESUME) if how == "garbage" else cli(capsys, *RESUME), str(ckpt))
    assert any(m in line for m in CHECKPOINT_MESSAGE), line
    assert tree(home) == before


@pytest.mark.parametrize("step", ['"ten"', "null", "[3]"])
def test_resume_from_a_checkpoint_with_an_edited_step(home: Path, capsys: pytest.CaptureFixture, step: str) -> None:
    """A readable checkpoint whose progress record was edited by hand: refused, not a traceback."""
    ckpt = run_dir(home) / "checkpoint.safetensors"
    with open(ckpt, "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))["__metadata__"]
    meta = json.loads(header["ganji"])
    meta["step"] = json.loads(step)
    save_file(load_file(str(ckpt)), str(ckpt), metadata={**header, "ganji": json.dumps(meta)})
    before = tree(home)
    one_line_error(cli(capsys, *RESUME), str(ckpt), "cannot be resumed")
    assert tree(home) == before


@pytest.mark.parametrize("command", ["sample", "resume"])
def test_a_checkpoint_of_another_model(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, command: str) -> None:
    shutil.copy(run_dir(home, "gan") / "checkpoint.safetensors", run_dir(home) / "checkpoint.safetensors")
    before = tree(home)
    if command == "sample":
        one_line_error(cli(capsys, "sample", "vae", "-o", str(tmp_path / "g.png"), "-q"), "'gan' checkpoint, not a vae one")
        # The same through --checkpoint, from outside any run.
        one_line_error(cli(capsys, "sample", "vae", "--checkpoint", str(run_dir(home, "gan") / "checkpoint.safetensors"),
                           "-o", str(tmp_path / "g.png"), "-q"), "not a vae one")
    else:
        one_line_error(cli(capsys, *RESUME), "model='gan'", "needs 'vae'")
    assert tree(home) == before and not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("command", ["sample", "resume"])
def test_a_checkpoint_of_another_image_size(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, command: str) -> None:
    shutil.copy(run_dir(home, "vae", "r32") / "checkpoint.safetensors", run_dir(home) / "checkpoint.safetensors")
    before = tree(home)
    if command == "sample":
        one_line_error(cli(capsys, "sample", "vae", "--run", "r", "-o", str(tmp_path / "g.png"), "-q"),
                       "is for 32 px images", "trained on 16 px", "another run")
    else:
        one_line_error(cli(capsys, *RESUME), "image_size=32", "needs 16")
    assert tree(home) == before and not (tmp_path / "g.png").exists()


# -- edited or corrupt config.json ---------------------------------------------------------------


def edit_config(path: Path, how: str) -> None:
    data = json.loads(path.read_text())
    if how == "not-json":
        path.write_text(path.read_text()[:-40])
        return
    if how == "binary":
        path.write_bytes(b"\xff\xfe\x00garbage\x80")
        return
    if how == "empty":
        path.write_bytes(b"")
        return
    if how == "a-list":
        data = [data]
    elif how == "unknown-field":
        data["config"]["warp_speed"] = 9
    elif how == "wrong-type":
        data["config"]["epochs"] = "ten"
    elif how == "unknown-compile-mode":
        data["config"]["compile_mode"] = "warp"
    elif how == "float-widths":
        data["config"]["options"]["layers"] = [16.5, 8, 8, 8]
    elif how == "string-betas":
        data["config"]["options"]["g_betas"] = "fast"
    elif how == "other-model":
        data["config"]["model"] = "ddpm"
    else:
        raise ValueError(how)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("command", "model", "how"),
    [
        ("resume", "vae", "not-json"),
        ("resume", "vae", "binary"),
        ("resume", "vae", "empty"),
        ("resume", "vae", "a-list"),
        ("resume", "vae", "unknown-field"),
        ("resume", "vae", "wrong-type"),
        ("resume", "vae", "unknown-compile-mode"),
        ("resume", "gan", "float-widths"),
        ("resume", "gan", "string-betas"),
        ("resume", "vae", "other-model"),
        ("sample", "vae", "not-json"),
        ("sample", "vae", "wrong-type"),
        ("sample", "gan", "float-widths"),
        ("sample", "vae", "other-model"),
    ],
)
def test_an_edited_or_corrupt_run_config(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, command: str, model: str, how: str) -> None:
    config = run_dir(home, model) / "config.json"
    edit_config(config, how)
    before = tree(home)
    if command == "resume":
        result = cli(capsys, "train", model, "--run", "r", "--resume", "--max-steps", "4", "--device", "cpu", "-q")
    else:
        result = cli(capsys, "sample", model, "--run", "r", "-o", str(tmp_path / "g.png"), "-q")
    line = one_line_error(result)
    assert "config" in line, line
    if command == "sample":
        assert "--checkpoint" in line  # how to sample from the checkpoint alone
    assert tree(home) == before and not (tmp_path / "g.png").exists()


# -- datasets whose bytes no longer match their manifest -----------------------------------------


def flip_last_pixel(home: Path, name: str = "k16") -> Path:
    path = home / "datasets" / name / "images.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # the last byte of the image tensor: the file still parses, the sha256 differs
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("command", ["train", "resume"])
def test_a_dataset_that_no_longer_matches_its_manifest(home: Path, capsys: pytest.CaptureFixture, command: str) -> None:
    flip_last_pixel(home)
    before = tree(home)
    if command == "train":
        result = cli(capsys, "train", "vae", "--dataset", "k16", "--batch-size", "8", "--latent-dim", "8",
                     "--base-width", "8", "--max-steps", "1", "--run", "new", "-q")
    else:
        result = ganji(home, *RESUME)
    one_line_error(result, "'k16'", "do not match the sha256", "fetch-data --force")
    assert tree(home) == before


def test_a_manifest_that_is_not_an_object(home: Path, capsys: pytest.CaptureFixture) -> None:
    (home / "datasets" / "k16" / "manifest.json").write_text("[1, 2, 3]")
    before = tree(home)
    one_line_error(cli(capsys, "fetch-data", "--name", "k16", "--size", "16", "-q"), "not a JSON object")
    one_line_error(cli(capsys, *RESUME), "not a JSON object")
    assert tree(home) == before


# -- fonts that are not fonts --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["garbage", "png-image", "zip-archive"])
def test_a_file_that_is_not_a_font(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, kind: str) -> None:
    font = tmp_path / "font.ttf"
    if kind == "garbage":
        font.write_bytes(os.urandom(2048))
    elif kind == "png-image":
        font.write_bytes(png(glyph()))
    else:
        with zipfile.ZipFile(font, "w") as z:
            z.writestr("a.txt", "hello")
    before = tree(home, font)
    args = ("fetch-data", "--font", str(font), "--name", "f", "--size", "16", "--limit", "4", "-q")
    line = one_line_error(ganji(home, *args) if kind == "garbage" else cli(capsys, *args), "font")
    assert str(font) in line
    one_line_error(cli(capsys, *args[:3], "--name", "k16", "--size", "16", "--force", "-q"), "font")
    assert tree(home, font) == before
    assert sorted(p.name for p in (home / "datasets").iterdir()) == ["k16", "k32"]  # nothing half-built


# -- hostile zips --------------------------------------------------------------------------------


def glyph(size: int = 32) -> np.ndarray:
    """A bright cross on black, like the prepared kanji."""
    arr = np.zeros((size, size), np.uint8)
    arr[size // 4 : 3 * size // 4, size // 2 - 3 : size // 2 + 3] = 255
    arr[size // 2 - 3 : size // 2 + 3, size // 5 : size - size // 5] = 255
    return arr


def png(img: Image.Image | np.ndarray, fmt: str = "PNG", **kwargs) -> bytes:
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize("member", ["../escape.png", "a/../../up.png", "/abs.png"])
def test_a_zip_whose_entries_escape_the_folder(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, member: str) -> None:
    evil = tmp_path / "zips" / "evil.zip"
    evil.parent.mkdir()
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("ok.png", png(glyph()))
        z.writestr(zipfile.ZipInfo(member), png(glyph()))
    before = tree(tmp_path)
    args = ("fetch-data", "--from", str(evil), "--size", "16", "-q")
    result = ganji(home, *args) if member.startswith("..") else cli(capsys, *args)
    one_line_error(result, "refusing", "would escape the target folder")
    assert tree(tmp_path) == before  # nothing written beside the zip, nor in the home
    assert not (home / "datasets" / "evil").exists() and not Path("/abs.png").exists()


def deflated_zeros(megabytes: int) -> bytes:
    return b"\0" * (megabytes * 2**20)


def understate_size(archive: Path, member: str, claimed: int) -> None:
    """Rewrite the uncompressed size of `member` in both its headers: a zip bomb that lies."""
    raw = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as z:
        offset = z.getinfo(member).header_offset
    struct.pack_into("<I", raw, offset + 22, claimed)  # local file header
    name = member.encode()
    at = raw.find(b"PK\x01\x02")
    while at != -1:  # central directory: the entry whose name (at +46) is the member's
        if raw[at + 46 : at + 46 + len(name)] == name:
            struct.pack_into("<I", raw, at + 24, claimed)
        at = raw.find(b"PK\x01\x02", at + 4)
    archive.write_bytes(bytes(raw))


@pytest.mark.parametrize("kind", ["one-huge-entry", "understated-size", "many-entries", "bzip2-entry"])
def test_a_zip_bomb_is_refused_without_inflating_it(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, kind: str) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("a_ok.png", png(glyph()))
        if kind in ("one-huge-entry", "understated-size"):
            z.writestr("b_huge.bmp", deflated_zeros(48))  # 48 MB in ~50 KB
        elif kind == "many-entries":
            for i in range(80):  # each 1 MB (too small to be suspicious alone), 80 MB in all
                z.writestr(f"b_{i:03d}.bmp", deflated_zeros(1))
        else:
            z.writestr("b.png", png(glyph()), compress_type=zipfile.ZIP_BZIP2)
    if kind == "understated-size":
        understate_size(bomb, "b_huge.bmp", 4096)
    assert bomb.stat().st_size < 200_000
    before = tree(home, bomb)
    tracemalloc.start()
    try:
        result = cli(capsys, "fetch-data", "--from", str(bomb), "--size", "16", "-q")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    needle = {"one-huge-entry": "zip bomb", "understated-size": "lies about its size", "many-entries": "zip bomb",
              "bzip2-entry": "compression method"}[kind]
    one_line_error(result, "refusing", str(bomb), needle)
    assert peak < 16 * 2**20, f"{peak:,} bytes allocated: the entry was inflated"
    assert tree(home, bomb) == before and not (home / "datasets" / "bomb").exists()


def test_bytes_read_from_a_zip_are_capped_whatever_the_headers_say(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.png", png(glyph()))
        z.writestr("b.png", png(glyph()))
    from ganji.errors import GanjiError

    with zipfile.ZipFile(archive) as z:
        info = z.getinfo("b.png")
        budget = [info.file_size + 10]
        assert folder_import.read_member(archive, z, info, budget) == png(glyph())
        with pytest.raises(GanjiError, match="inflate to more than"):
            folder_import.read_member(archive, z, info, budget)  # the archive's budget is spent


# -- odd images in an imported folder ------------------------------------------------------------


def odd_image(kind: str) -> tuple[str, bytes]:
    g = glyph()
    if kind == "zero-bytes":
        return "b.png", b""
    if kind == "truncated-png":
        data = png(g)
        return "b.png", data[: len(data) // 2]
    if kind == "truncated-jpeg":
        data = png(g, "JPEG", quality=95)
        return "b.jpg", data[: len(data) // 2]
    if kind == "16-bit":
        return "b.png", png(Image.fromarray(g.astype(np.uint16) * 257))
    if kind == "cmyk":
        return "b.jpg", png(Image.fromarray(g).convert("CMYK"), "JPEG", quality=95)
    if kind == "palette":
        return "b.png", png(Image.fromarray(g).convert("P"))
    if kind == "animated-gif":
        frames = [Image.fromarray(g), Image.fromarray(255 - g), Image.new("L", g.shape, 128)]
        return "b.gif", png(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    if kind == "animated-png":
        frames = [Image.fromarray(g), Image.fromarray(255 - g)]
        return "b.png", png(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=50)
    raise ValueError(kind)


SKIPPED = ["zero-bytes", "truncated-png", "truncated-jpeg"]  # a clearly reported skip
CONVERTED = ["16-bit", "cmyk", "palette", "animated-gif", "animated-png"]  # converted; animations: first frame


@pytest.mark.parametrize("kind", SKIPPED + CONVERTED)
def test_odd_images_in_an_imported_folder(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, kind: str) -> None:
    src = tmp_path / "imgs"
    src.mkdir()
    (src / "a.png").write_bytes(png(glyph()))
    name, data = odd_image(kind)
    (src / name).write_bytes(data)
    if kind in CONVERTED:  # the case is what it says it is
        with Image.open(io.BytesIO(data)) as probe:
            want = {"16-bit": "I;16", "cmyk": "CMYK", "palette": "P"}.get(kind)
            assert probe.mode == want if want else probe.n_frames > 1, (kind, probe.mode)
    before = tree(home, src)
    out, _ = succeeded(cli(capsys, "fetch-data", "--from", str(src), "--name", "imp", "--size", "16"))
    manifest = json.loads((home / "datasets" / "imp" / "manifest.json").read_text())
    images = load_file(str(home / "datasets" / "imp" / "images.safetensors"))["images"]
    if kind in SKIPPED:
        assert manifest["files"] == ["a.png"] and manifest["skipped_unreadable"] == [name]
        assert "unreadable (skipped)" in out and name in out  # named in the summary, not dropped silently
        assert images.shape == (1, 1, 16, 16)
    else:
        assert manifest["files"] == ["a.png", name] and manifest["skipped_unreadable"] == []
        assert images.shape == (2, 1, 16, 16)
        diff = (images[0].float() - images[1].float()).abs().mean().item()
        assert diff < 8, f"{kind} converted to something else than the glyph (mean difference {diff:.1f})"
    after = tree(home, src)
    assert {k: v for k, v in after.items() if "/datasets/imp/" not in k} == before  # only the new dataset appeared


def test_a_folder_of_only_broken_images(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "broken"
    src.mkdir()
    (src / "zero.png").write_bytes(b"")
    (src / "cut.png").write_bytes(png(glyph())[:40])
    before = tree(home, src)
    one_line_error(ganji(home, "fetch-data", "--from", str(src), "--size", "16", "-q"), "no usable images", "2 unreadable")
    assert tree(home, src) == before and not (home / "datasets" / "broken").exists()


# -- bad numbers ---------------------------------------------------------------------------------


TRAIN = ("train", "vae", "--dataset", "k16", "--batch-size", "8", "--latent-dim", "8", "--base-width", "8", "-q")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("sample", "vae", "--n", "0"), "--n must be at least 1 (got 0)"),
        (("sample", "vae", "--n", "-4"), "--n must be at least 1 (got -4)"),
        (("sample", "vae", "--batch-size", "0"), "--batch-size must be at least 1"),
        (("sample", "vae", "--interpolate", "-2"), "--interpolate"),
        ((*TRAIN, "--epochs", "0"), "--epochs must be at least 1 (got 0)"),
        ((*TRAIN, "--epochs", "-3"), "--epochs must be at least 1 (got -3)"),
        ((*TRAIN, "--max-steps", "-1"), "--max-steps must be >= 0"),
        ((*TRAIN, "--compile-mode", "fast"), "--compile-mode must be one of default, reduce-overhead"),
        (("bench", "train", "--compile-mode", "default,fast"), "--compile-mode takes default, reduce-overhead"),
        (("train", "vae", "--dataset", "k16", "--batch-size", "-8", "-q"), "--batch-size must be at least 1"),
        (("train", "vae", "--dataset", "k16", "--latent-dim", "-8", "-q"), "--latent-dim must be at least 1"),
        (("train", "ddpm", "--dataset", "k16", "--base-width", "-8", "-q"), "--base-width"),
        (("train", "gan", "--dataset", "k16", "--layers", "16,-8", "-q"), "--layers"),
        (("train", "gan", "--dataset", "k16", "--layers", "16", "-q"), "--layers must be two or more"),
        (("sample", "vae", "--eta", "-1"), "--eta must be a number >= 0"),
        (("fetch-data", "--size", "-16", "-q"), "--size must be a positive number"),
        (("fetch-data", "--size", "100000", "-q"), "--size must be at most 1024"),
        (("fetch-data", "--limit", "-5", "-q"), "--limit must be at least 1"),
    ],
)
def test_bad_numbers(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, args: tuple[str, ...], message: str) -> None:
    before = tree(home)
    extra = ("-o", str(tmp_path / "g.png")) if args[0] == "sample" else ()
    one_line_error(cli(capsys, *args, *extra), message)
    assert tree(home) == before and not (tmp_path / "g.png").exists()
    assert sorted(p.name for p in (home / "runs" / "vae").iterdir()) == ["r", "r32"]  # no run folder started


def test_gan_layers_too_many_for_the_image_size_start_no_run(home: Path, capsys: pytest.CaptureFixture) -> None:
    before = tree(home)
    one_line_error(cli(capsys, "train", "gan", "--dataset", "k16", "--layers", "16,8,8,8,8", "--batch-size", "8",
                       "--max-steps", "1", "--run", "deep", "-q"), "--layers")
    assert tree(home) == before and not (home / "runs" / "gan" / "deep").exists()


def test_a_size_that_is_not_a_multiple_of_16(home: Path, capsys: pytest.CaptureFixture) -> None:
    # A dataset may have any size from 8 px (it says the models cannot use it); training refuses it.
    _, err = succeeded(cli(capsys, "fetch-data", "--name", "k24", "--size", "24", "--limit", "16", "-q"))
    assert "not a multiple of 16" in err
    before = tree(home)
    one_line_error(cli(capsys, "train", "vae", "--dataset", "k24", "--batch-size", "8", "--latent-dim", "8",
                       "--base-width", "8", "--max-steps", "1", "--run", "r24", "-q"), "multiple of 16 (got 24)")
    assert tree(home) == before and not (home / "runs" / "vae" / "r24").exists()


# -- no GPU --------------------------------------------------------------------------------------


def test_device_cuda_without_a_gpu(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    before = tree(home)
    # The real entry point with every GPU hidden (so this holds on a GPU machine too)...
    one_line_error(ganji(home, "sample", "vae", "--device", "cuda", "-o", str(tmp_path / "g.png"), "-q",
                         env={"CUDA_VISIBLE_DEVICES": ""}), "--device cuda", "no CUDA GPU")
    # ...and training, in-process, with torch told there is none.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    one_line_error(cli(capsys, *TRAIN, "--device", "cuda", "--max-steps", "1", "--run", "gpu"), "no CUDA GPU", "--device cpu")
    assert tree(home) == before and not (tmp_path / "g.png").exists() and not (home / "runs" / "vae" / "gpu").exists()


# -- a read-only home ----------------------------------------------------------------------------


def make_read_only(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Simulate `root` on a read-only file system (EROFS, which stops root too): every call that would
    create, change or remove something under it fails, as the kernel would make it fail."""
    top = str(root.resolve())

    def inside(path: object) -> bool:
        if isinstance(path, int):
            return False
        where = os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
        return where == top or where.startswith(top + os.sep)

    def refuse(path: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))  # type: ignore[arg-type]

    real = {name: getattr(os, name) for name in ("open", "mkdir", "replace", "rename", "unlink", "remove", "rmdir", "chmod")}
    real_open = io.open
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def os_open(path, flags, mode=0o777, *, dir_fd=None):
        if flags & writes and dir_fd is None and inside(path):
            refuse(path)
        return real["open"](path, flags, mode, dir_fd=dir_fd)

    def mkdir(path, mode=0o777, *, dir_fd=None):
        if dir_fd is None and inside(path) and not os.path.lexists(path):  # an existing one: EEXIST, as usual
            refuse(path)
        return real["mkdir"](path, mode, dir_fd=dir_fd)

    def moving(name):
        def move(src, dst, *a, **k):
            if inside(src) or inside(dst):
                refuse(dst)
            return real[name](src, dst, *a, **k)
        return move

    def changing(name):
        def change(path, *a, **k):
            if not k.get("dir_fd") and inside(path):
                refuse(path)
            return real[name](path, *a, **k)
        return change

    def open_(file, mode="r", *a, **k):
        if isinstance(file, (str, bytes, os.PathLike)) and set(mode) & set("wax+") and inside(file):
            refuse(file)
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(os, "mkdir", mkdir)
    for name in ("replace", "rename"):
        monkeypatch.setattr(os, name, moving(name))
    for name in ("unlink", "remove", "rmdir", "chmod"):
        monkeypatch.setattr(os, name, changing(name))
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(builtins, "open", open_)


@pytest.mark.parametrize("command", ["fetch-data", "fetch-data --force", "train", "train --resume"])
def test_a_read_only_home(home: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    before = tree(home)
    args = {
        "fetch-data": ("fetch-data", "--name", "new", "--size", "16", "--limit", "4", "-q"),
        "fetch-data --force": ("fetch-data", "--name", "k16", "--size", "16", "--limit", "4", "--force", "-q"),
        "train": (*TRAIN, "--max-steps", "1", "--run", "new"),
        "train --resume": RESUME,
    }[command]
    with monkeypatch.context() as m:
        make_read_only(m, home)
        line = one_line_error(cli(capsys, *args), "Read-only file system", str(home))
    assert ".tmp" not in line and ".building" not in line  # the file meant, not a temporary name
    assert tree(home) == before
    no_temp_files(home)


def test_sampling_needs_no_write_access_to_the_home(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    before = tree(home)
    with monkeypatch.context() as m:
        make_read_only(m, home)
        succeeded(cli(capsys, "sample", "vae", "--n", "4", "-o", str(tmp_path / "g.png"), "-q"))
    assert tree(home) == before and (tmp_path / "g.png").is_file()


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: chmod does not stop root from writing "
                    "(test_a_read_only_home simulates a read-only home instead)")
def test_a_chmod_read_only_home(home: Path) -> None:  # pragma: no cover - only as a normal user
    before = tree(home)
    folders = [home, *(p for p in home.rglob("*") if p.is_dir())]
    for folder in folders:
        folder.chmod(0o555)
    try:
        one_line_error(ganji(home, *TRAIN, "--max-steps", "1", "--run", "new"), "Permission denied")
        one_line_error(ganji(home, "fetch-data", "--name", "k16", "--size", "16", "--limit", "4", "--force", "-q"),
                       "Permission denied")
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert tree(home) == before


# -- a full disk during a checkpoint write -------------------------------------------------------


def enospc_while_writing(tensors, filename, metadata=None):
    """What safetensors does when the disk fills up mid-write: part of the file, then its own error."""
    with open(filename, "wb") as f:
        f.write(b"\0" * 1000)
    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


REAL_REPLACE = os.replace


def enospc_at_rename(src, dst, *a, **k):
    if str(dst).endswith("checkpoint.safetensors"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return REAL_REPLACE(src, dst, *a, **k)


@pytest.mark.parametrize("where", ["while-writing", "at-rename"])
def test_a_full_disk_during_a_checkpoint_write(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    ckpt = run_dir(home) / "checkpoint.safetensors"
    before = tree(home)
    with monkeypatch.context() as m:
        if where == "while-writing":
            m.setattr("ganji.runtime.checkpoint.save_file", enospc_while_writing)
        else:
            import ganji.atomic

            m.setattr(ganji.atomic.os, "replace", enospc_at_rename)
        one_line_error(cli(capsys, *RESUME), "No space left on device", str(ckpt))
    # The previous checkpoint is intact and loads; only the metrics log saw the lost steps (a
    # resume drops records past its checkpoint's step).
    assert {k: v for k, v in tree(home).items() if not k.endswith("metrics.jsonl")} == \
           {k: v for k, v in before.items() if not k.endswith("metrics.jsonl")}
    assert load_checkpoint(ckpt).meta["step"] == 2
    no_temp_files(home)
    if where == "while-writing":  # once there is space again, the same command finishes the run
        succeeded(cli(capsys, *RESUME))
        assert load_checkpoint(ckpt).meta["step"] == 4
        steps = [json.loads(line)["step"] for line in (run_dir(home) / "metrics.jsonl").read_text().splitlines()]
        assert steps == [1, 2, 3, 4]
        succeeded(cli(capsys, "sample", "vae", "--n", "4", "-o", str(tmp_path / "g.png"), "-q"))


@pytest.mark.parametrize("command", ["train --resume", "fetch-data --force"])
def test_a_real_write_failure_keeps_the_previous_file(home: Path, command: str) -> None:
    if command == "train --resume":
        target = run_dir(home) / "checkpoint.safetensors"
        args = RESUME
    else:
        target = home / "datasets" / "k16" / "images.safetensors"
        args = ("fetch-data", "--name", "k16", "--size", "16", "--limit", "64", "--force", "-q")
    before = tree(home)
    # A real kernel-level write failure: past half the old file's size, writes fail with EFBIG.
    result = ganji(home, *args, file_size_limit=target.stat().st_size // 2)
    one_line_error(result, "File too large", str(target))
    after = tree(home)
    assert {k: v for k, v in after.items() if not k.endswith("metrics.jsonl")} == \
           {k: v for k, v in before.items() if not k.endswith("metrics.jsonl")}
    no_temp_files(home)
    if command == "train --resume":
        assert load_checkpoint(target).meta["step"] == 2
