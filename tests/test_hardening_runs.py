"""Never lose work, round two (issue 16): one writer per run, files that are not files, hostile JSON.

Every case here failed on the code before the fix unless its docstring says otherwise ("passed
before": kept as a check of the general rule).
"""

from __future__ import annotations

import json
import os
import re
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_hardening_common import (
    TRAIN_VAE,
    cli,
    copy_world,
    ganji_many,
    no_hang,
    one_line_error,
    popen,
    succeeded,
    train_world,
    tree,
)

from ganji.errors import GanjiError

RESUME = ("train", "vae", "--run", "r", "--resume", "--max-steps", "4", "--device", "cpu", "-q")
DEEP = "[" * 100_000 + "]" * 100_000  # far past the recursion limit of json.loads


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_world(tmp_path_factory.mktemp("world") / "home")


@pytest.fixture
def home(world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return copy_world(world, tmp_path, monkeypatch)


def run_dir(home: Path, name: str = "r") -> Path:
    return home / "runs" / "vae" / name


def vae_runs(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "runs" / "vae").iterdir())


def make_special(path: Path, kind: str) -> None:
    """Put something at `path` that is not a regular file."""
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dangling-symlink":
        path.symlink_to(path.with_name("nowhere"))
    elif kind == "symlink-to-folder":
        path.with_name("elsewhere").mkdir()
        path.symlink_to(path.with_name("elsewhere"))
    elif kind == "device":
        if os.geteuid() != 0:
            pytest.skip("making a device node needs root")
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # the same device as /dev/null
    else:
        raise ValueError(kind)


def kind_of(path: Path) -> str:
    st = os.lstat(path)
    return {stat.S_IFDIR: "folder", stat.S_IFIFO: "fifo", stat.S_IFLNK: "link", stat.S_IFCHR: "device",
            stat.S_IFREG: "file"}[stat.S_IFMT(st.st_mode)]


def checkpoint_header(path: Path) -> dict[str, str]:
    with open(path, "rb") as f:
        return json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))["__metadata__"]


def set_meta_text(path: Path, text: str) -> None:
    save_file(load_file(str(path)), str(path), metadata={**checkpoint_header(path), "ganji": text})


def state(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(path)).items() if k.startswith(("net.", "ema.", "opt.", "rng."))}


def logged_steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


# -- names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["r2\n", " ", ".tiny.1.old", "a b", "-x", "..", "r\t"])
def test_run_names_are_plain_visible_names(home: Path, capsys: pytest.CaptureFixture, name: str) -> None:
    """Before: "r2\\n" passed the pattern ('$' matches before a trailing newline) and made a folder."""
    from ganji.runs import check_run_name

    before = tree(home)
    one_line_error(cli(capsys, *TRAIN_VAE, "--max-steps", "1", "--run", name), "invalid run name")
    assert tree(home) == before and vae_runs(home) == ["r"]
    with pytest.raises(GanjiError, match="invalid run name"):
        check_run_name(name)


def test_default_run_names_never_collide(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: two runs started without --run in the same second shared one folder."""
    import ganji.runs
    from ganji.runs import create_run

    monkeypatch.setattr(ganji.runs, "new_run_name", lambda: "20260101-120000")
    a, b, c = (create_run(home, "vae", None) for _ in range(3))
    assert [a.name, b.name, c.name] == ["20260101-120000", "20260101-120000-2", "20260101-120000-3"]
    assert all(r.path.is_dir() for r in (a, b, c))


# -- one writer per run ------------------------------------------------------------------------------

HOLD = """import sys, time
from pathlib import Path
from ganji.runs import find_run, lock_run
lock = lock_run(find_run(Path(sys.argv[1]), "vae", "r"))
print("locked", flush=True)
time.sleep(120)
"""


def test_the_run_lock_names_its_holder_and_dies_with_it(home: Path) -> None:
    from ganji.runs import find_run, lock_run

    run = find_run(home, "vae", "r")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(home)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(GanjiError, match=f"run vae/r is being trained by process {holder.pid}"):
            lock_run(run)
    finally:
        holder.kill()  # SIGKILL: no handler runs, no clean-up; the kernel releases the lock
        holder.wait()
    with lock_run(run) as lock:  # not stale
        assert lock.held and run.lock_path.is_file()
        with pytest.raises(GanjiError, match=f"process {os.getpid()}"):
            lock_run(run)  # a second writer in the same process is refused too
    assert not run.lock_path.exists()  # released: nothing left in the run folder
    with pytest.raises(GanjiError, match="already exists"):
        lock_run(run, new=True)  # a run being created must not have been started meanwhile


def test_two_trainings_of_one_run_at_once(home: Path) -> None:
    """Before: both exited 0 into one folder, metrics.jsonl interleaving both."""
    args = (*TRAIN_VAE, "--max-steps", "4")
    procs = [popen(home, *args, "--run", "same") for _ in range(2)]
    lone = popen(home, *args, "--run", "lone")  # alongside: its own folder, the reference
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        results.append((proc.returncode, out, err))
    succeeded((lone.wait(timeout=180), *lone.communicate()))
    assert sorted(code != 0 for code, _, _ in results) == [False, True], results
    loser = next(r for r in results if r[0] != 0)
    line = one_line_error(loser)
    assert "being trained by process" in line or "already exists" in line, line
    same, lone = run_dir(home, "same"), run_dir(home, "lone")
    assert logged_steps(same) == logged_steps(lone) == [1, 2, 3, 4]
    a, b = state(same / "checkpoint.safetensors"), state(lone / "checkpoint.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_resumes_of_one_run_at_once(home: Path) -> None:
    """Before: both said "checkpoint saved at step 4" and the log repeated steps 3 and 4."""
    from ganji.runtime.checkpoint import load_checkpoint

    procs = [popen(home, *RESUME) for _ in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        results.append((proc.returncode, out, err))
    assert sorted(code != 0 for code, _, _ in results) == [False, True], results
    line = one_line_error(next(r for r in results if r[0] != 0))
    assert "being trained by process" in line or "nothing to resume" in line, line
    assert load_checkpoint(run_dir(home) / "checkpoint.safetensors").meta["step"] == 4
    assert logged_steps(run_dir(home)) == [1, 2, 3, 4]


# -- checkpoints that are not files, headers that lie ----------------------------------------------


@pytest.mark.parametrize("kind", ["dangling-symlink", "folder", "fifo", "symlink-to-folder"])
def test_only_a_missing_checkpoint_means_no_checkpoint(tmp_path: Path, kind: str) -> None:
    from ganji.runtime.checkpoint import checkpoint_exists, load_checkpoint

    assert checkpoint_exists(tmp_path / "missing.safetensors") is False
    path = tmp_path / "checkpoint.safetensors"
    make_special(path, kind)
    with pytest.raises(GanjiError, match=re.escape(str(path))):
        checkpoint_exists(path)
    with pytest.raises(GanjiError, match=re.escape(str(path))):
        load_checkpoint(path)  # a FIFO is never opened: this would block


@pytest.mark.parametrize("kind", ["dangling-symlink", "folder"])
def test_sampling_from_a_checkpoint_that_is_not_a_file(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, kind: str) -> None:
    """Passed before (as "no checkpoint yet"): kept for the general rule."""
    ckpt = run_dir(home) / "checkpoint.safetensors"
    ckpt.unlink()
    make_special(ckpt, kind)
    before = tree(home)
    one_line_error(cli(capsys, "sample", "vae", "-o", str(tmp_path / "g.png"), "-q"))
    one_line_error(cli(capsys, "sample", "vae", "--checkpoint", str(ckpt), "-o", str(tmp_path / "g.png"), "-q"), str(ckpt))
    assert tree(home) == before and not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("kind", ["dangling-symlink", "folder"])
def test_resuming_from_a_checkpoint_that_is_not_a_file(home: Path, capsys: pytest.CaptureFixture, kind: str) -> None:
    """Before: taken for "no checkpoint yet": retrained from step 0, rewrote config.json and the log."""
    ckpt = run_dir(home) / "checkpoint.safetensors"
    ckpt.unlink()
    make_special(ckpt, kind)
    before = tree(home)
    one_line_error(cli(capsys, *RESUME), str(ckpt))
    assert tree(home) == before and kind_of(ckpt) == ("folder" if kind == "folder" else "link")


@pytest.mark.parametrize("command", ["sample", "resume"])
@pytest.mark.parametrize("how", ["deep-json", "step-infinity", "step-nan"])
def test_a_checkpoint_header_with_hostile_json(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, how: str, command: str) -> None:
    """Before: RecursionError (deep) and OverflowError (step = Infinity) tracebacks."""
    ckpt = run_dir(home) / "checkpoint.safetensors"
    if how == "deep-json":
        set_meta_text(ckpt, DEEP)
    else:
        meta = json.loads(checkpoint_header(ckpt)["ganji"])
        meta["step"] = float("inf") if how == "step-infinity" else float("nan")
        set_meta_text(ckpt, json.dumps(meta))  # Python writes Infinity / NaN, as a hostile file would
    before = tree(home)
    args = ("sample", "vae", "-o", str(tmp_path / "g.png"), "-q") if command == "sample" else RESUME
    line = one_line_error(cli(capsys, *args), str(ckpt))
    assert "not a ganji checkpoint" in line or "unreadable" in line, line
    assert tree(home) == before and not (tmp_path / "g.png").exists()


def test_checkpoint_shapes_come_from_the_header_alone(home: Path, tmp_path: Path) -> None:
    from ganji.runtime.checkpoint import check_checkpoint_shapes, checkpoint_shapes, load_checkpoint

    ckpt = run_dir(home) / "checkpoint.safetensors"
    tensors = load_file(str(ckpt))
    shapes = checkpoint_shapes(ckpt)
    assert shapes == {k: tuple(v.shape) for k, v in tensors.items()}
    nets = {k.removeprefix("net."): v for k, v in shapes.items() if k.startswith("net.")}
    check_checkpoint_shapes(ckpt, nets)  # the checkpoint's own shapes agree
    key = next(iter(nets))
    with pytest.raises(GanjiError, match=re.escape(f"net.{key} is {nets[key]}")):
        check_checkpoint_shapes(ckpt, {**nets, key: (10**9, 8)})
    with pytest.raises(GanjiError, match="lacks net.nothing"):
        check_checkpoint_shapes(ckpt, {"nothing": (1,)})
    # A header that declares a terabyte, in a sparse file of that size: its shapes, read in no time;
    # loading it is refused before a byte of tensor is read.
    forged = tmp_path / "big.safetensors"
    header = json.dumps({"__metadata__": checkpoint_header(ckpt),
                         "net.decoder.huge": {"dtype": "F32", "shape": [2**38], "data_offsets": [0, 2**40]}}).encode()
    with open(forged, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + 2**40)
    assert checkpoint_shapes(forged) == {"net.decoder.huge": (2**38,)}
    with pytest.raises(GanjiError, match="more than this machine's memory"):
        load_checkpoint(forged)
    # One that declares more than the file holds is damaged.
    with open(forged, "r+b") as f:
        f.truncate(8 + len(header) + 4096)
    with pytest.raises(GanjiError, match="does not fit"):
        checkpoint_shapes(forged)


# -- run files with bad bytes or nested JSON ---------------------------------------------------------


@pytest.mark.parametrize("junk", [b"\xff\xfe\x80 not utf-8 {", DEEP.encode()])
def test_a_damaged_line_of_metrics_jsonl_is_skipped(home: Path, capsys: pytest.CaptureFixture, junk: bytes) -> None:
    """Before: UnicodeDecodeError and RecursionError tracebacks on `--resume`."""
    from ganji.runtime.metrics_log import MetricsLog

    metrics = run_dir(home) / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes() + junk + b"\n")
    assert [r["step"] for r in MetricsLog(metrics).read()] == [1, 2]
    succeeded(cli(capsys, *RESUME))
    assert logged_steps(run_dir(home)) == [1, 2, 3, 4]


def test_a_metrics_log_that_is_a_fifo_is_never_opened(tmp_path: Path) -> None:
    from ganji.runtime.metrics_log import MetricsLog

    path = tmp_path / "metrics.jsonl"
    os.mkfifo(path)
    log = MetricsLog(path)
    assert log.read() == []
    with pytest.raises(GanjiError, match="FIFO"):
        log.append({"step": 1})  # would block until a reader came
    assert kind_of(path) == "fifo"


@pytest.mark.parametrize("command", ["sample", "sample-named", "resume"])
def test_a_deeply_nested_run_config(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, command: str) -> None:
    """Before: RecursionError tracebacks, even from a plain `ganji sample vae` (listing the runs)."""
    (run_dir(home) / "config.json").write_text(DEEP)
    before = tree(home)
    args = {"sample": ("sample", "vae", "-o", str(tmp_path / "g.png"), "-q"),
            "sample-named": ("sample", "vae", "--run", "r", "-o", str(tmp_path / "g.png"), "-q"),
            "resume": RESUME}[command]
    line = one_line_error(cli(capsys, *args), "config")
    assert "nested too deeply" in line, line
    assert tree(home) == before and not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("command", ["sample", "resume"])
def test_a_run_config_that_is_a_fifo(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, command: str) -> None:
    """Passed before (the run is not listed): kept for the general rule."""
    config = run_dir(home) / "config.json"
    config.unlink()
    os.mkfifo(config)
    args = ("sample", "vae", "--run", "r", "-o", str(tmp_path / "g.png"), "-q") if command == "sample" else RESUME
    with no_hang():
        one_line_error(cli(capsys, *args))
    assert kind_of(config) == "fifo" and not (tmp_path / "g.png").exists()


# -- writing only where it may -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["folder", "fifo", "dangling-symlink", "symlink-to-folder", "device"])
def test_an_atomic_write_replaces_only_a_regular_file(tmp_path: Path, kind: str) -> None:
    from ganji.atomic import write_bytes_atomic

    target = tmp_path / "out.png"
    make_special(target, kind)
    was = kind_of(target)
    with pytest.raises(GanjiError, match="not a regular file: refusing to replace it"):
        write_bytes_atomic(target, b"data")
    assert kind_of(target) == was
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_atomic_write_replaces_a_file_or_a_link_to_one(tmp_path: Path) -> None:
    from ganji.atomic import write_bytes_atomic

    plain, real, link = tmp_path / "a.bin", tmp_path / "real.bin", tmp_path / "link.bin"
    plain.write_bytes(b"old")
    real.write_bytes(b"kept")
    link.symlink_to(real)
    write_bytes_atomic(plain, b"new")
    write_bytes_atomic(link, b"new")
    assert plain.read_bytes() == b"new" and link.read_bytes() == b"new" and not link.is_symlink()
    assert real.read_bytes() == b"kept"  # the link was replaced, never what it pointed to


@pytest.mark.parametrize("target", ["-o device", "-o link-to-device", "--out-dir fifo"])
def test_sample_never_replaces_what_is_not_a_regular_file(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, target: str) -> None:
    """Before: `-o d/null` on a device node exited 0 and replaced the node with a PNG."""
    d = tmp_path / "d"
    d.mkdir()
    if target == "--out-dir fifo":
        os.mkfifo(d / "00000.png")
        args, watched = ("--out-dir", str(d)), d / "00000.png"
    else:
        make_special(d / "null", "device")
        if target == "-o link-to-device":
            (d / "link.png").symlink_to(d / "null")
        watched = d / ("null" if target == "-o device" else "link.png")
        args = ("-o", str(watched))
    was = kind_of(watched)
    before = tree(home)
    one_line_error(cli(capsys, "sample", "vae", "--n", "4", *args, "-q"), str(watched), "not a regular file")
    assert kind_of(watched) == was
    if target == "-o link-to-device":
        assert kind_of(d / "null") == "device"
    assert tree(home) == before and not list(d.glob(".*.tmp"))


SUFFIXES = [("g.jpg", "JPEG"), ("g.jpeg", "JPEG"), ("g.tiff", "TIFF"), ("g.tif", "TIFF"), ("g.bmp", "BMP"),
            ("g.webp", "WEBP"), ("g.gif", "GIF"), ("g.PNG", "PNG"), ("grid", "PNG")]


def test_images_are_written_in_the_format_their_suffix_names(tmp_path: Path) -> None:
    """Before: PNG bytes under every name."""
    from PIL import Image

    from ganji.images import save_image

    picture = Image.new("L", (20, 12), 200)
    for name, fmt in SUFFIXES:
        save_image(tmp_path / name, picture)
        with Image.open(tmp_path / name) as img:
            assert img.format == fmt and img.size == (20, 12), name
    for name in ("g.txt", "g.pdf", "g.safetensors", "g.png.bak"):
        with pytest.raises(GanjiError, match=re.escape(Path(name).suffix)):
            save_image(tmp_path / name, picture)
        assert not (tmp_path / name).exists()


@pytest.mark.parametrize(("name", "fmt"), [("g.jpg", "JPEG"), ("grid", "PNG")])
def test_o_writes_the_format_its_suffix_names(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, name: str, fmt: str) -> None:
    """Before: PNG bytes in g.jpg."""
    from PIL import Image

    out = tmp_path / name
    succeeded(cli(capsys, "sample", "vae", "--n", "4", "-o", str(out), "-q"))
    with Image.open(out) as img:
        assert img.format == fmt and img.size[0] > 16


def test_o_with_a_suffix_that_names_no_image_format(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Before: PNG bytes written under that name."""
    before = tree(home)
    one_line_error(cli(capsys, "sample", "vae", "--n", "4", "-o", str(tmp_path / "g.txt"), "-q"), "'.txt'", ".png")
    assert tree(home) == before and not (tmp_path / "g.txt").exists()


# -- a failed run leaves nothing behind; requests are bounded ---------------------------------------


@pytest.mark.parametrize("option", [("--lr", "nan"), ("--lr", "inf"), ("--beta", "inf"), ("--beta", "nan"),
                                    ("--seed", str(2**64))])
def test_a_run_that_cannot_train_leaves_no_folder(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, option: tuple[str, str]) -> None:
    """Before: non-finite --lr/--beta trained (or failed) into a new run folder, which became the latest
    run, so a plain `ganji sample vae` then failed."""
    before = tree(home)
    one_line_error(cli(capsys, *TRAIN_VAE, "--max-steps", "2", "--run", "bad", *option), option[0])
    assert tree(home) == before and vae_runs(home) == ["r"]
    out, _ = succeeded(cli(capsys, "sample", "vae", "--n", "4", "-o", str(tmp_path / "g.png"), "-q"))
    assert "run r" in out


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_folder(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An allocation failure in the first steps (simulated): no run folder is left to be the latest."""
    from ganji.runtime.metrics_log import MetricsLog

    def out_of_memory(self: MetricsLog, record: dict) -> None:
        raise MemoryError("simulated allocation failure")

    with monkeypatch.context() as m:
        m.setattr(MetricsLog, "append", out_of_memory)
        try:
            cli(capsys, *TRAIN_VAE, "--max-steps", "2", "--run", "oom")
        except MemoryError:
            pass
    assert vae_runs(home) == ["r"]
    out, _ = succeeded(cli(capsys, "sample", "vae", "--n", "4", "-o", str(tmp_path / "g.png"), "-q"))
    assert "run r" in out


# -- requests that would allocate without bound: all in one subprocess, under an address-space cap --

BOUNDS = {
    "sample --n": (("sample", "vae", "--n", "1000000000"), "--n"),
    "sample --interpolate": (("sample", "vae", "--interpolate", "1000000000"), "--interpolate"),
    "sample --interpolate raising --n": (("sample", "vae", "--n", "1000000", "--interpolate", "1024"), "--interpolate"),
    "sample --seed": (("sample", "vae", "--seed", str(2**64)), "--seed"),
    "train ddpm --timesteps": (("train", "ddpm", "--dataset", "k16", "--timesteps", "1000000000", "--max-steps", "1",
                                "--run", "big"), "--timesteps"),
    "train vae --latent-dim": (("train", "vae", "--dataset", "k16", "--latent-dim", "1000000000", "--max-steps", "1",
                                "--run", "big"), "--latent-dim"),
}
CONFIG_LIES = {"latent 10^9": 10**9, "latent 1000": 1000}  # a checkpoint whose config does not describe its tensors


@pytest.fixture(scope="module")
def unbounded(world: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Every case of BOUNDS and CONFIG_LIES, run once in one subprocess capped at 8 GB of address space
    (a regression fails with a MemoryError there instead of taking the machine's memory)."""
    import shutil

    home = tmp_path_factory.mktemp("unbounded") / "home"
    shutil.copytree(world, home)
    out = tmp_path_factory.mktemp("out")
    commands = {}
    for case, (args, _) in BOUNDS.items():
        extra = ("-o", str(out / "g.png")) if args[0] == "sample" else ()
        commands[case] = [*args, *extra, "--device", "cpu", "-q"]
    for case, latent in CONFIG_LIES.items():
        name = "lie" + str(latent)
        shutil.copytree(run_dir(home), run_dir(home, name))
        ckpt = run_dir(home, name) / "checkpoint.safetensors"
        meta = json.loads(checkpoint_header(ckpt)["ganji"])
        meta["config"]["options"]["latent_dim"] = latent
        set_meta_text(ckpt, json.dumps(meta))
        commands[case] = ["sample", "vae", "--run", name, "--n", "4", "-o", str(out / "g.png"), "-q"]
    before = tree(home)
    results = dict(zip(commands, ganji_many(home, list(commands.values()))))
    return {"results": results, "changed": tree(home) != before, "home": home, "out": out}


@pytest.mark.parametrize("case", list(BOUNDS))
def test_requests_have_an_upper_bound(unbounded: dict, case: str) -> None:
    """Before: allocated without bound (a MemoryError under the cap) or, for --interpolate, silently
    raised --n; an overflowing seed was a traceback."""
    line = one_line_error(unbounded["results"][case], BOUNDS[case][1])
    assert re.search(r"\d[\d,_]{2,}", line), f"no bound in {line!r}"
    assert not unbounded["changed"] and not (unbounded["out"] / "g.png").exists()
    assert not (unbounded["home"] / "runs" / "ddpm").exists() and not run_dir(unbounded["home"], "big").exists()


@pytest.mark.parametrize("case", list(CONFIG_LIES))
def test_a_checkpoint_config_that_does_not_match_its_tensors(unbounded: dict, case: str) -> None:
    """Before: latent_dim 10^9 made `ganji sample` allocate hundreds of GB (a MemoryError under the
    cap); 1000 built the model and failed loading its weights."""
    line = one_line_error(unbounded["results"][case], "checkpoint")
    assert "latent" in line or "shape" in line or " is (" in line, line
    assert not unbounded["changed"] and not (unbounded["out"] / "g.png").exists()
