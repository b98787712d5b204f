"""`ganji bench`: the figures exist, are positive, and FLOPs match torch's own counter."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ganji.perf.bench import CountFlops, make_bench_recipe, bench_sample, bench_train
from ganji.models.unet import UNet, UNetConfig
from ganji.train.loop import normalise


def test_flop_counter_agrees_with_torch() -> None:
    net = UNet(UNetConfig(image_size=16, base_width=8))
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([1, 2])
    with CountFlops() as ours:
        net(x, t)
    with FlopCounterMode(display=False) as theirs:
        net(x, t)
    assert ours.total == theirs.get_total_flops() > 0


@pytest.mark.parametrize("model", ["vae", "gan", "ddpm", "flow"])
def test_bench_train_reports_positive_figures(model: str) -> None:
    opts = {"vae": {"base_width": 8, "latent_dim": 8}, "gan": {"layers": (16, 8, 8, 8), "latent_dim": 8, "disc_ratio": 2},
            "ddpm": {"base_width": 8, "timesteps": 50}, "flow": {"base_width": 8}}[model]
    r = bench_train(model, "cpu", size=16, batch_size=4, warmup=1, min_steps=1, max_seconds=0, options=opts)
    assert r.images_per_s > 0 and r.gflops_per_image > 0 and r.parameters > 0 and r.mfu is None
    assert r.epoch_s == pytest.approx((10_020 // 4) * 4 / r.images_per_s)


def test_bench_sample_scales_only_what_it_did_not_run() -> None:
    opts = {"base_width": 8, "timesteps": 40}
    full = bench_sample("ddpm", "ddpm", None, "cpu", size=16, batch_size=2, options=opts, extrapolate_after=3)
    assert full.model_calls == 40 and full.extrapolated_from_steps == 3
    ddim = bench_sample("ddpm", "ddim", 5, "cpu", size=16, batch_size=2, options=opts, extrapolate_after=30)
    assert ddim.model_calls == 5 and ddim.extrapolated_from_steps is None  # the whole sampler ran
    # Speeds themselves are `ganji bench`'s to print, not a test's to compare: only their sanity here.
    assert full.seconds_per_1000 > 0 and ddim.seconds_per_1000 > 0


@pytest.mark.parametrize("model", ["vae", "ddpm", "flow"])
def test_the_eager_baseline_trains_the_same_objective(model: str) -> None:
    """The plain loop `ganji bench train` compares against is the same model and loss: with the same
    weights, batch and random draws, its first loss is ganji's (fp32 on the CPU), and it learns."""
    opts = {"vae": {"base_width": 8, "latent_dim": 8}, "ddpm": {"base_width": 8, "timesteps": 50}, "flow": {"base_width": 8}}[model]
    recipe = make_bench_recipe(model, 16, 8, torch.device("cpu"), "fp32", False, opts)
    x = normalise(torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8), recipe.data_range, recipe.precision)
    plain = recipe.plain_eager_step(x)  # copies the networks as they are now
    torch.manual_seed(5)
    ours = recipe.train_step(x)["loss"]
    torch.manual_seed(5)
    first = plain()
    assert first.item() == pytest.approx(ours.item(), rel=1e-5)
    later = [plain() for _ in range(30)]
    # On one fixed batch the loss falls (means of five: the diffusion and flow losses draw a new t each step).
    assert torch.stack(later[-5:]).mean() < torch.stack([first, *later[:4]]).mean()


def test_bench_train_times_the_eager_baseline() -> None:
    r = bench_train("vae", "cpu", size=16, batch_size=4, warmup=1, min_steps=1, max_seconds=0,
                    options={"base_width": 8, "latent_dim": 8}, eager_baseline=True)
    assert r.eager_images_per_s is not None and 0 < r.eager_images_per_s < float("inf")


def test_bench_train_times_each_compile_mode_asked_for(capsys) -> None:
    from ganji.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "train", "--models", "vae", "--device", "cpu", "--size", "16", "--batch-size", "4", "--warmup", "0",
              "--min-steps", "1", "--seconds", "0", "--no-eager-baseline", "--compile-mode", "default,reduce-overhead", "--json"])
    assert exit_info.value.code == 0
    rows = json.loads(capsys.readouterr().out)
    # A row per mode; nothing is compiled on the CPU, whatever the mode.
    assert [(r["model"], r["compile_mode"], r["compiled"]) for r in rows] == [("vae", "default", False), ("vae", "reduce-overhead", False)]
    assert all(r["images_per_s"] > 0 for r in rows)


def test_bench_train_profiles_where_a_step_goes(tmp_path) -> None:
    trace = tmp_path / "traces" / "ddpm.json"
    r = bench_train("ddpm", "cpu", size=16, batch_size=4, warmup=1, min_steps=1, max_seconds=0,
                    options={"base_width": 8, "timesteps": 50}, profile=2, trace=trace)
    p = r.profile
    assert p is not None and p.steps == 2 and p.timed_on == "cpu" and p.wall_ms_per_step > 0
    assert 0 < len(p.top) <= 12 and 0 < sum(op.share for op in p.top) <= 1 + 1e-9
    assert [op.self_ms_per_step for op in p.top] == sorted((op.self_ms_per_step for op in p.top), reverse=True)
    # A U-Net step is mostly convolutions, forward and backward.
    assert any("convolution" in op.name for op in p.top[:3])
    assert json.loads(trace.read_text())["traceEvents"] and not list(trace.parent.glob(".*.tmp"))


def test_bench_trace_needs_profile(tmp_path, capsys) -> None:
    from ganji.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "train", "--trace", str(tmp_path), "--models", "vae"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == "error: --trace needs --profile N (the number of steps to profile)"


def test_a_gpu_profile_counts_each_kernel_once() -> None:
    """The CUDA branch of the profile summary, on events shaped as torch.profiler's: CPU operators
    carry the kernel time they launched, and the kernels are listed again as events of their own."""
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    from ganji.perf.step_profile import summarise

    def event(key: str, device: DeviceType, self_cpu: float, self_gpu: float, count: int = 2) -> SimpleNamespace:
        return SimpleNamespace(key=key, count=count, device_type=device, self_cpu_time_total=self_cpu, self_device_time_total=self_gpu)

    events = [
        event("aten::convolution_backward", DeviceType.CPU, 40.0, 600.0),
        event("aten::cudnn_convolution", DeviceType.CPU, 30.0, 300.0),
        event("Optimizer.step#Adam.step", DeviceType.CPU, 500.0, 0.0),  # Python time only: no kernels
        event("sm90_xmma_dgrad_kernel", DeviceType.CUDA, 0.0, 600.0),
        event("sm90_xmma_fprop_kernel", DeviceType.CUDA, 0.0, 300.0),
        event("multi_tensor_apply_kernel", DeviceType.CUDA, 0.0, 100.0),
    ]
    rows, busy_ms = summarise(events, steps=2, on_cuda=True)
    assert busy_ms == pytest.approx(1000.0 / 1e3 / 2)  # the kernels' 1,000 us, once, over 2 steps
    assert [r.name for r in rows] == ["aten::convolution_backward", "aten::cudnn_convolution"]
    assert rows[0].self_ms_per_step == pytest.approx(0.3) and rows[0].share == pytest.approx(0.6) and rows[0].calls_per_step == 1
    # On the CPU the same events rank by CPU time, and nothing is a kernel.
    cpu_rows, cpu_busy = summarise(events[:3], steps=2, on_cuda=False)
    assert cpu_rows[0].name == "Optimizer.step#Adam.step" and cpu_busy == pytest.approx(570.0 / 1e3 / 2)


def test_ganji_and_the_eager_baseline_are_timed_alternately() -> None:
    from ganji.perf.bench import _alternating

    calls: list[str] = []
    ours, theirs = _alternating(lambda: calls.append("a"), lambda: calls.append("b"), torch.device("cpu"), min_steps=3, max_seconds=0)
    assert calls == ["a", "b"] * 3 and len(ours) == len(theirs) == 3 and min(ours + theirs) >= 0
