"""Every GPU-only speed path has a CPU fallback, chosen by `--device auto`, and the GPU paths'
numerics can be exercised on the CPU: bf16 autocast and channels_last give the same training step
as plain fp32 (up to bf16 rounding), and the policy a CUDA device would get is the one documented."""

from __future__ import annotations

import pytest
import torch

from ganji.recipes import spec
from ganji.runtime.device import Precision, apply_backend_settings, choose_precision, resolve_device
from ganji.train.loop import normalise

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU
TINY = {"vae": {"base_width": 8, "latent_dim": 8}, "ddpm": {"base_width": 8, "timesteps": 50}, "flow": {"base_width": 8},
        "gan": {"layers": (16, 8, 8, 8), "latent_dim": 8, "disc_ratio": 1}}


def test_auto_falls_back_to_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == CPU


@pytest.mark.parametrize("model", ["vae", "gan", "ddpm", "flow"])
def test_the_cpu_gets_plain_fp32_and_a_gpu_the_fast_paths(model: str) -> None:
    cpu = choose_precision(spec(model).bf16, CPU, "auto", compile=True)
    assert (cpu.bf16, cpu.channels_last, cpu.compile) == (False, False, False)
    assert cpu.memory_format() == torch.contiguous_format
    gpu = choose_precision(spec(model).bf16, CUDA, "auto", compile=True)
    assert (gpu.bf16, gpu.channels_last, gpu.compile) == (spec(model).bf16, True, True)
    assert choose_precision(spec(model).bf16, CUDA, "fp32", compile=False).bf16 is False
    assert choose_precision(spec(model).bf16, CUDA, "auto", compile=False).compile is False
    assert (cpu.cudnn_benchmark, gpu.cudnn_benchmark) == (False, True)
    assert choose_precision(spec(model).bf16, CUDA, cudnn_benchmark=False).cudnn_benchmark is False
    assert choose_precision(spec(model).bf16, CUDA, channels_last=False).memory_format() == torch.contiguous_format


def test_cudnn_autotuning_is_set_for_a_gpu_and_the_cpu_leaves_the_flag_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    _recipe("ddpm", choose_precision(spec("ddpm").bf16, CPU))
    assert torch.backends.cudnn.benchmark is False
    apply_backend_settings(choose_precision(spec("ddpm").bf16, CUDA))  # a recipe on CUDA calls this first
    assert torch.backends.cudnn.benchmark is True
    apply_backend_settings(choose_precision(spec("ddpm").bf16, CUDA, cudnn_benchmark=False))  # bench --no-cudnn-benchmark
    assert torch.backends.cudnn.benchmark is False


def _recipe(model: str, precision: Precision):
    torch.manual_seed(0)
    cfg = spec(model).config(batch_size=8, device="cpu", options=TINY[model])
    return spec(model).recipe_class()(cfg, 16, 1, 100, precision)


@pytest.mark.parametrize("model", ["vae", "gan", "ddpm", "flow"])
def test_on_the_cpu_adam_is_foreach_and_nothing_is_compiled(model: str) -> None:
    recipe = _recipe(model, choose_precision(spec(model).bf16, CPU, "auto", compile=True))
    assert not recipe.compiled
    for opt in recipe.optimizers.values():
        assert opt.defaults["foreach"] is True and not opt.defaults["fused"]


@pytest.mark.parametrize("model", ["vae", "ddpm", "flow"])
def test_bf16_autocast_and_channels_last_train_like_fp32(model: str) -> None:
    """The numerics of the CUDA policy (bf16 autocast, channels_last), run on the CPU: the first
    step's loss matches fp32's to bf16 precision, and the updated weights stay close."""
    images = torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    results = {}
    for name, prec in {
        "fp32": Precision(CPU, bf16=False, channels_last=False, compile=False),
        "channels_last": Precision(CPU, bf16=False, channels_last=True, compile=False),
        "bf16": Precision(CPU, bf16=True, channels_last=True, compile=False),
    }.items():
        recipe = _recipe(model, prec)
        x = normalise(images, recipe.data_range, prec)
        assert x.is_contiguous(memory_format=prec.memory_format())
        torch.manual_seed(2)
        step_lr = max(group["lr"] for opt in recipe.optimizers.values() for group in opt.param_groups)
        loss = recipe.train_step(x)["loss"].item()
        params = torch.cat([p.detach().float().flatten() for p in next(iter(recipe.nets.values())).parameters()])
        results[name] = (loss, params)
    ref_loss, ref_params = results["fp32"]
    assert results["channels_last"][0] == pytest.approx(ref_loss, rel=1e-5)
    # Adam's first step moves every weight by about lr * sign(gradient): where a gradient is ~0, the
    # other memory format's rounding may flip its sign (a difference of up to 2 lr). Such weights are
    # rare; every other weight must agree closely.
    diff = (results["channels_last"][1] - ref_params).abs()
    assert diff.max() <= 2 * step_lr * (1 + 1e-3)
    close = diff <= 1e-5 + 1e-4 * ref_params.abs()
    assert close.float().mean() >= 0.9999, f"{int((~close).sum())} of {close.numel()} weights differ"
    assert results["bf16"][0] == pytest.approx(ref_loss, rel=2e-2)  # bf16 has 8 bits of mantissa
    assert (results["bf16"][1] - ref_params).abs().max() < 1e-2  # one Adam step moves a weight by ~lr


@pytest.mark.parametrize("model", ["vae", "gan", "ddpm", "flow"])
def test_the_gpus_fused_adam_trains_like_the_cpus_foreach_adam(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU gets the fused Adam kernel (Recipe.fused_adam); PyTorch also has it on the CPU, so the
    GPU's optimiser can be checked here: three steps give the foreach optimiser's weights."""
    from ganji.recipes.base import Recipe

    images = torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    prec = Precision(CPU, bf16=False, channels_last=False, compile=False)
    weights = {}
    for fused in (False, True):
        monkeypatch.setattr(Recipe, "fused_adam", property(lambda self, fused=fused: fused))
        recipe = _recipe(model, prec)
        assert all(bool(opt.defaults["fused"]) is fused for opt in recipe.optimizers.values())
        x = normalise(images, recipe.data_range, prec)
        torch.manual_seed(5)
        for step in range(3):
            recipe.train_step(x)
            recipe.after_step(step)
        weights[fused] = torch.cat([p.detach().flatten() for net in recipe.nets.values() for p in net.parameters()])
    torch.testing.assert_close(weights[True], weights[False], rtol=1e-5, atol=1e-6)


def test_mfu_uses_the_named_gpus_bf16_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    from ganji.perf.bench import bf16_peak_tflops

    assert bf16_peak_tflops(CPU) is None  # no MFU on a CPU
    for name, peak in {"NVIDIA H100 80GB HBM3": 989.0, "NVIDIA H100 PCIe": 756.0, "NVIDIA H200": 989.0,
                       "NVIDIA A100-SXM4-80GB": 312.0, "Some Future GPU": None}.items():
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None, name=name: name)
        assert bf16_peak_tflops(CUDA) == peak, name
