"""The model registry: the one list of the models ganji trains, and everything the rest of ganji asks of them.

One `ModelSpec` per model holds its recipe class (imported only when a model is built), its options
type (a dataclass whose fields carry their command-line help), the paper's run defaults, whether it
trains in bf16 on a GPU, its quick preset, a one-line description, and how it samples (`SamplingSpec`).
The command line, bench, compare, report, metrics, sampling and the training loop all ask the
registry; nothing outside ganji/recipes/ and ganji/models/ compares a model's name to a literal.

This module imports no torch, so that `ganji --help` and shell completion stay fast.

To add a model: write its recipe (a `Recipe` subclass in ganji/recipes/NAME.py; its networks in
ganji/models/ if they are new), its options dataclass and a `ModelSpec` entry below.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ganji.errors import GanjiError

if TYPE_CHECKING:
    from ganji.recipes.base import Recipe
    from ganji.runtime.config import TrainConfig

# Upper bounds on sizes that a request allocates from (a typo must not ask for 256 GB).
MAX_LATENT_DIM = 16_384
MAX_BASE_WIDTH = 1_024
MAX_TIMESTEPS = 100_000
MAX_SAMPLER_STEPS = 10_000

# Sampling defaults, named once (`ganji sample`, `ganji fid`, the study and the bench use them).
DEFAULT_SAMPLER_STEPS = 50  # a step-choosing sampler (DDIM, Euler, Heun) without --steps
DEFAULT_SAMPLE_BATCH = 256  # images generated at once
DEFAULT_GUIDANCE = 3.0  # classifier-free guidance w when components are asked for (`ganji sample --with`)
DEFAULT_AUTOGUIDANCE = 2.0  # autoguidance w with a guide run (`--guide-run`; Karras et al. 2024 use about 2)
MAX_GUIDANCE = 100.0


def option(default: Any, help: str, choices: tuple[str, ...] = ()) -> Any:
    """A model option: a dataclass field with its command-line help (and its allowed values).

    `ganji train` makes one command-line option per field name over every model (see ganji.cli.train).
    """
    return field(default=default, metadata={"help": help, "choices": choices})


def _check(checks: list[tuple[bool, str]]) -> None:
    for ok, message in checks:
        if not ok:
            raise GanjiError(message)


def within(flag: str, value: int, low: int, high: int) -> tuple[bool, str]:
    """A check that `low <= value <= high`, saying which bound was crossed."""
    if value < low:
        return False, f"{flag} must be at least {low} (got {value})"
    return value <= high, f"{flag} must be at most {high:,} (got {value:,})"


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


# -- options: one dataclass per model, defaults = the paper's final configuration -------------------


@dataclass
class VAEOptions:
    """ResNet VAE, latent 256; summed BCE-with-logits + KL (beta 1); Adam 1e-3, one-cycle LR."""

    latent_dim: int = option(256, "Latent size.")
    arch: str = option("resnet", "Architecture.", ("resnet", "conv"))
    beta: float = option(1.0, "Weight of the KL term.")
    base_width: int = option(64, "Base width; every width scales with it (the paper's 64).")
    # The decoder gives p(x|z) as one Bernoulli per pixel. Its mean (the paper's samples) averages the
    # strokes z could mean into grey blur; its mode (p > 0.5) draws the likeliest glyph, sharp (README
    # "What we tried": FID 233 -> 97 for the quick VAE, same weights).
    decoder_output: str = option("mean", "What a sample shows of the Bernoulli decoder: its mean (the paper's, blurred) or its mode (sharp).",
                                 ("mean", "mode"))

    def validate(self) -> None:
        _check([
            within("--latent-dim", self.latent_dim, 1, MAX_LATENT_DIM),
            (self.arch in ("resnet", "conv"), f"--arch must be resnet or conv for the VAE (got {self.arch!r})"),
            (self.decoder_output in ("mean", "mode"), f"--decoder-output must be mean or mode (got {self.decoder_output!r})"),
            (_finite(self.beta) and self.beta >= 0, f"--beta must be a finite number >= 0 (got {self.beta})"),
            within("--base-width", self.base_width, 1, MAX_BASE_WIDTH),
        ])


@dataclass
class GANOptions:
    """ResNet GAN, hinge loss + gradient penalty 10, up to 5 D steps per G step (stop once D acc > 0.9)."""

    latent_dim: int = option(128, "Latent size.")
    layers: tuple[int, ...] = option((512, 256, 128, 64), "Generator widths, comma-separated.")
    arch: str = option("resnet", "Architecture.", ("resnet", "dcgan"))
    loss: str = option("hinge", "Adversarial loss.", ("hinge", "wasserstein", "bce", "lsgan"))
    gp: float = option(10.0, "Gradient-penalty weight, not used with bce.")
    disc_ratio: int = option(5, "Most D steps per G step (fewer once D accuracy > 0.9).")
    disc_acc_stop: float = 0.9
    spectral_norm: bool = option(False, "Spectral norm on D's layers.")
    output_norm: bool = option(True, "resnet: BatchNorm in G's output block, as the paper; --no-output-norm avoids its collapse (README).")
    r1: float = option(0.0, "R1 penalty weight γ on real images (Mescheder et al. 2018); 0 = off.")
    diffaugment: bool = option(False, "DiffAugment: translation and cutout of every image D sees (Zhao et al. 2020); never flips.")
    # From this epoch on (1-based count of finished epochs; 0 = never), G's BatchNorm layers run in
    # inference mode with their running statistics frozen. The study's code did this by accident:
    # its epoch-end sampling called `self.eval()` under Lightning 2, which never switches back, so
    # its generator trained that way from the second epoch on (and recovered from an early collapse).
    bn_freeze_epoch: int = option(1, "After N epochs G's BatchNorm uses frozen running statistics, as the study's code did (0 = never).")
    g_betas: tuple[float, float] = (0.0, 0.99)
    d_betas: tuple[float, float] = (0.9, 0.999)

    def validate(self) -> None:
        _check([
            within("--latent-dim", self.latent_dim, 1, MAX_LATENT_DIM),
            (self.arch in ("resnet", "dcgan"), f"--arch must be resnet or dcgan for the GAN (got {self.arch!r})"),
            (self.loss in ("hinge", "wasserstein", "bce", "lsgan"), f"--loss must be hinge, wasserstein, bce or lsgan (got {self.loss!r})"),
            (_finite(self.gp) and self.gp >= 0, "--gp must be a finite number >= 0"),
            (_finite(self.r1) and self.r1 >= 0, f"--r1 must be a finite number >= 0 (got {self.r1})"),
            (self.bn_freeze_epoch >= 0, "--bn-freeze-epoch must be >= 0"),
            (self.disc_ratio >= 1, "--disc-ratio must be at least 1"),
            (len(self.layers) >= 2 and all(1 <= w <= 16 * MAX_BASE_WIDTH for w in self.layers),
             "--layers must be two or more positive widths, e.g. 512,256,128,64"),
            (all(0 <= b < 1 for b in (*self.g_betas, *self.d_betas)), "the GAN's Adam betas must be in [0, 1)"),
        ])


def _unet_width_checks(base_width: int, attention: bool) -> list[tuple[bool, str]]:
    """The U-Net's GroupNorm(4) needs widths in multiples of 4; attention's GroupNorm(8) and 4 heads, of 8."""
    step = 8 if attention else 4
    why = "with --attention (GroupNorm(8), 4 heads)" if attention else "(GroupNorm(4))"
    return [(step <= base_width <= MAX_BASE_WIDTH and base_width % step == 0,
             f"--base-width must be a positive multiple of {step} {why}, at most {MAX_BASE_WIDTH} (got {base_width})")]


@dataclass
class ConditioningOptions:
    """Component conditioning of the U-Net models (issue 19), off by default: the paper's are unconditional.

    With `condition="components"` the U-Net learns an embedding per (component, position) key of the
    dataset's KanjiVG labels (ganji.data.components), and training drops labels at random so that
    one network is both conditional and not: classifier-free guidance (Ho & Salimans 2022). How labels
    are thinned in training (whole label dropped, components kept, positions kept) is in
    ganji.recipes.unet_recipe.UNetRecipe.training_condition; the run keeps its `vocabulary` in its
    config (config.json and every checkpoint's header), so sampling needs no dataset.
    """

    condition: str = option("none", "Condition on each kanji's components (the dataset's KanjiVG labels), for `ganji sample --with`.",
                            ("none", "components"))
    condition_dropout: float = option(0.1, "With --condition: the share of training images whose whole label is dropped (Ho & Salimans 2022).")
    component_keep: float = option(0.5, "With --condition: each component of a training label is kept with this probability (with its position half the time), so partial requests are learnt.")
    component_mix: float = option(0.0, "With --condition: the share of two-part training kanji replaced by a made-up one, the first part of one beside (above) the second of another, labelled with both, so pairs no kanji has are learnt (0 = off).")
    component_regions: bool = option(False, "With --condition: each positioned key also scales and shifts the U-Net's features in its part of the image (C:left in the left half, ...), so every part is told where it goes (SPADE-style region map).")
    hold_out_requests: bool = option(False, "With --condition: leave out of training every kanji that has both parts of one of `ganji fid --condition components`'s existing pairs, and make none up, so those requests ask for combinations the run never saw.")
    vocabulary: tuple[str, ...] = ()  # the keys conditioned on: the dataset's, filled in when training starts
    held_out: tuple[str, ...] = ()  # with --hold-out-requests: the pairs left out ("艹:top+心:bottom"), filled in when training starts

    @property
    def conditional(self) -> bool:
        return self.condition == "components"

    def describe_condition(self) -> str:
        """", conditioned on 1,158 component keys" for reports (and the share of made-up kanji); "" when unconditional."""
        if not self.conditional:
            return ""
        mix = f", {self.component_mix:.0%} of two-part kanji made up" if self.component_mix else ""
        regions = " with region maps" if self.component_regions else ""
        held = f", the kanji of {len(self.held_out)} pairs held out" if self.held_out else ""
        return f", conditioned on {len(self.vocabulary):,} component keys{regions}{mix}{held}"

    def conditioning_checks(self) -> list[tuple[bool, str]]:
        return [
            (self.condition in ("none", "components"), f"--condition must be none or components (got {self.condition!r})"),
            (_finite(self.condition_dropout) and 0 <= self.condition_dropout < 1, f"--condition-dropout must be in [0, 1) (got {self.condition_dropout})"),
            (_finite(self.component_keep) and 0 < self.component_keep <= 1, f"--component-keep must be in (0, 1] (got {self.component_keep})"),
            (_finite(self.component_mix) and 0 <= self.component_mix <= 1, f"--component-mix must be in [0, 1] (got {self.component_mix})"),
            (self.conditional or not self.component_mix, "--component-mix needs --condition components"),
            (self.conditional or not self.component_regions, "--component-regions needs --condition components"),
            (self.conditional or not self.hold_out_requests, "--hold-out-requests needs --condition components"),
            (self.hold_out_requests or not self.held_out, "held-out pairs need --hold-out-requests"),
            (self.conditional or not self.vocabulary, "a component vocabulary needs --condition components"),
            (len(set(self.vocabulary)) == len(self.vocabulary), "the component vocabulary repeats a key"),
        ]


@dataclass
class DDPMOptions(ConditioningOptions):
    """U-Net predicting noise, T = 1024, cosine schedule, MSE; Adam 5e-5 with cosine annealing."""

    timesteps: int = option(1024, "Diffusion steps T.")
    schedule: str = option("cosine", "Noise schedule.", ("cosine", "linear"))
    attention: bool = option(False, "Self-attention after every U-Net block.")
    base_width: int = option(64, "Base width; every width scales with it (the paper's 64).")
    prediction: str = option("eps", "What the U-Net predicts: the noise (the paper's), v (Salimans & Ho 2022) or x0.", ("eps", "v", "x0"))
    loss_weighting: str = option("none", "Loss weight per timestep: none (the paper's) or min-snr (Hang et al. 2023).", ("none", "min-snr"))
    min_snr_gamma: float = option(5.0, "γ of --loss-weighting min-snr.")

    def validate(self) -> None:
        _check([
            (self.prediction in ("eps", "v", "x0"), f"--prediction must be eps, v or x0 (got {self.prediction!r})"),
            (self.loss_weighting in ("none", "min-snr"), f"--loss-weighting must be none or min-snr (got {self.loss_weighting!r})"),
            (_finite(self.min_snr_gamma) and self.min_snr_gamma > 0, f"--min-snr-gamma must be a finite number > 0 (got {self.min_snr_gamma})"),
            within("--timesteps", self.timesteps, 2, MAX_TIMESTEPS),
            (self.schedule in ("cosine", "linear"), f"--schedule must be cosine or linear (got {self.schedule!r})"),
            *_unet_width_checks(self.base_width, self.attention),
            *self.conditioning_checks(),
        ])


@dataclass
class FlowOptions(ConditioningOptions):
    """Rectified flow on the DDPM's U-Net: velocity target ε - x_0, logit-normal t (ganji.recipes.flow)."""

    time_sampling: str = option("logit-normal", "Training times t.", ("logit-normal", "uniform"))
    prediction: str = option("velocity", "What the U-Net outputs: the velocity ε - x_0, or x0, the clean image, read as the velocity (x_t - x̂_0) / t (Li & He 2025); x0-tanh: x0 through tanh, inside the images' range.",
                             ("velocity", "x0", "x0-tanh"))
    edge_margin: float = option(0.0, "Train on exact paper and exact ink moved this far beyond [-1, 1]; sampling's clamp to [-1, 1] then gives exact paper for near misses (0 = off; README).")
    attention: bool = option(False, "Self-attention after every U-Net block.")
    base_width: int = option(64, "Base width; every width scales with it (the paper's 64).")

    def validate(self) -> None:
        _check([
            (self.time_sampling in ("logit-normal", "uniform"), f"--time-sampling must be logit-normal or uniform (got {self.time_sampling!r})"),
            (self.prediction in ("velocity", "x0", "x0-tanh"), f"--prediction must be velocity, x0 or x0-tanh (got {self.prediction!r})"),
            (_finite(self.edge_margin) and 0 <= self.edge_margin <= 1, f"--edge-margin must be in [0, 1] (got {self.edge_margin})"),
            (self.edge_margin == 0 or self.prediction != "x0-tanh", "--edge-margin needs --prediction velocity or x0: tanh cannot reach beyond [-1, 1]"),
            *_unet_width_checks(self.base_width, self.attention),
            *self.conditioning_checks(),
        ])


# -- sampling -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sampler:
    """One way to turn noise into images, by name (`--sampler NAME`)."""

    name: str
    help: str
    chooses_steps: bool = True  # --steps sets its step count (False: fixed by the model, e.g. all T steps)
    deterministic: bool = True  # the same noise always gives the same image (with eta 0 where it has one)
    takes_eta: bool = False  # DDIM's η: 0 deterministic, 1 as noisy as ancestral sampling
    calls_per_step: int = 1  # network calls per step (Heun: 2, one fewer on the last step)

    def steps_within(self, calls: int) -> int:
        """The most steps whose network calls fit `calls` (at least one step): how models with
        first- and second-order samplers are compared at the same cost."""
        return max(1, (calls + self.calls_per_step - 1) // self.calls_per_step)


@dataclass(frozen=True)
class SamplerChoice:
    """A resolved sampler: its name, its step count (None where the model fixes it) and DDIM's η."""

    name: str
    steps: int | None = None
    eta: float = 0.0

    @property
    def label(self) -> str:
        """How reports name it, e.g. `ddim-20`, `ancestral`."""
        return self.name + (f"-{self.steps}" if self.steps is not None else "")

    @property
    def fields(self) -> dict[str, str | int | None]:
        """How result files record it (metrics.jsonl's evaluations, conditioning.json)."""
        return {"sampler": self.name, "steps": self.steps}


@dataclass(frozen=True)
class SamplingSpec:
    """How a model samples. No samplers: one network pass from a latent (VAE, GAN)."""

    samplers: tuple[Sampler, ...] = ()
    default: str | None = None  # `ganji sample` and `ganji fid` without --sampler
    fast: str | None = None  # few-step and deterministic: progress grids, evaluation, compare, interpolation
    aliases: dict[str, str] = field(default_factory=dict)  # old names still accepted

    @property
    def iterative(self) -> bool:
        """Whether sampling takes several network calls (a sampler and steps apply)."""
        return bool(self.samplers)

    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.samplers)

    def get(self, name: str) -> Sampler | None:
        name = self.aliases.get(name, name)
        return next((s for s in self.samplers if s.name == name), None)

    def fast_choice(self, calls: int) -> SamplerChoice | None:
        """The fast sampler with as many steps as `calls` network calls allow (None for a one-pass model)."""
        found = self.get(self.fast or "")
        return SamplerChoice(found.name, found.steps_within(calls)) if found else None


# -- the registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """Everything about one model that code outside its recipe may ask."""

    name: str  # the command-line name: `ganji train NAME`
    title: str  # how prose names it: VAE, GAN, DDPM
    description: str  # one line, for --help and reports
    recipe: str  # "module:Class" of its Recipe, imported on first use (torch is heavy)
    options_type: type
    batch_size: int  # the paper's (images per step)
    lr: float  # the paper's
    ema_decay: float  # ours: the paper used no EMA (0 = off)
    bf16: bool  # bf16 autocast on CUDA by default
    quick: dict[str, Any]  # `ganji compare --train quick` (ganji.report.presets): TrainConfig fields, model options under "options"
    sampling: SamplingSpec = SamplingSpec()
    bench_options: dict[str, Any] = field(default_factory=dict)  # `ganji bench train`: its worst-case step

    @property
    def can_condition(self) -> bool:
        """Whether its runs can be trained with `--condition components` (and sampled with --with)."""
        return issubclass(self.options_type, ConditioningOptions)

    def recipe_class(self) -> type[Recipe]:
        module, _, cls = self.recipe.partition(":")
        return getattr(importlib.import_module(module), cls)

    def options(self, **values: Any) -> Any:
        """This model's options with the given values (the rest at their defaults)."""
        known = {f.name for f in dataclasses.fields(self.options_type)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise GanjiError(f"{', '.join('--' + k.replace('_', '-') for k in unknown)} does not apply to the {self.name} model")
        return self.options_type(**values)

    def config(self, options: Any = None, **given: Any) -> TrainConfig:
        """A validated TrainConfig: the given fields, this model's defaults for the rest.

        `options` is an options instance or a dict of option values.
        """
        from ganji.runtime.config import TrainConfig

        if options is None or isinstance(options, dict):
            options = self.options(**(options or {}))
        given = {k: v for k, v in given.items() if v is not None}
        defaults = {"batch_size": self.batch_size, "lr": self.lr, "ema_decay": self.ema_decay}
        return TrainConfig(model=self.name, **{**defaults, **given}, options=options)


VAE = ModelSpec(
    name="vae", title="VAE", description="variational autoencoder (Kingma & Welling 2014): a ResNet encoder and decoder, blurry but fast",
    recipe="ganji.recipes.vae:VAERecipe", options_type=VAEOptions, batch_size=128, lr=1e-3, ema_decay=0.0, bf16=True,
    quick={"epochs": 4, "time_budget": 3.0, "sample_every": 1, "batch_size": 32,
           # The decoder's mode, not its mean: FID less than half as far for the same weights (README "What we tried").
           "options": {"latent_dim": 64, "base_width": 16, "beta": 0.1, "decoder_output": "mode"}},
)
GAN = ModelSpec(
    name="gan", title="GAN", description="generative adversarial network: ResNet generator and critic, hinge loss + gradient penalty",
    # fp32 on every device: bf16 stopped the study's GAN converging (experiment log, exps 4-7).
    recipe="ganji.recipes.gan:GANRecipe", options_type=GANOptions, batch_size=128, lr=1e-4, ema_decay=0.999, bf16=False,
    quick={"epochs": 20, "time_budget": 4.5, "sample_every": 1, "batch_size": 64, "lr": 2e-4,
           # R1 (γ 1): FID 252 -> 167 at the same 4.5 minutes on one machine (README "What we tried").
           "options": {"arch": "dcgan", "layers": (128, 64, 32), "latent_dim": 64, "loss": "bce", "disc_ratio": 1, "r1": 1.0}},
    bench_options={"disc_acc_stop": 2.0},  # every D step, every time: the worst case
)
DDPM = ModelSpec(
    name="ddpm", title="DDPM", description="denoising diffusion (Ho et al. 2020): a U-Net predicting the noise over T = 1024 steps",
    recipe="ganji.recipes.ddpm:DDPMRecipe", options_type=DDPMOptions, batch_size=32, lr=5e-5, ema_decay=0.9995, bf16=True,
    quick={"epochs": 3, "time_budget": 3.0, "sample_every": 1, "batch_size": 32, "lr": 1e-3,
           # x0 prediction, no loss weighting: FID 154 -> 51 against v + min-SNR at the same 3 epochs
           # (README "What we tried").
           "options": {"base_width": 16, "timesteps": 256, "prediction": "x0"}},
    sampling=SamplingSpec(
        samplers=(
            Sampler("ancestral", "all T steps (Ho et al. 2020, Algorithm 2)", chooses_steps=False, deterministic=False),
            Sampler("ddim", "DDIM (Song et al. 2021) with --steps steps; --eta adds noise", takes_eta=True),
            Sampler("dpm", "DPM-Solver++(2M) (Lu et al. 2022): second order, for few --steps (10-25)"),
        ),
        # DPM-Solver++ beats DDIM at 20 steps on the quick DDPM (README "What we tried").
        default="ancestral", fast="dpm", aliases={"ddpm": "ancestral"},
    ),
)

FLOW = ModelSpec(
    name="flow", title="flow", description="rectified flow (Liu et al. 2023): the DDPM's U-Net predicting the velocity of a straight path",
    # Not in the study: the DDPM's network, batch, learning rate, EMA and precision, for a fair comparison.
    recipe="ganji.recipes.flow:FlowRecipe", options_type=FlowOptions, batch_size=32, lr=5e-5, ema_decay=0.9995, bf16=True,
    quick={"epochs": 8, "time_budget": 7.0, "sample_every": 2, "batch_size": 32, "lr": 1e-3,
           # Exact paper for near misses: FID 33.9 -> 19.8 at the same 8 epochs (README "What we tried").
           "options": {"base_width": 16, "edge_margin": 0.25}},
    sampling=SamplingSpec(
        samplers=(
            Sampler("euler", "Euler's method, one network call per step"),
            Sampler("heun", "Heun's second-order method, two network calls per step (one on the last)", calls_per_step=2),
        ),
        # Heun-10 (19 calls) beats Euler-20 on the quick flow (README "What we tried").
        default="heun", fast="heun",
    ),
)

MODELS: tuple[ModelSpec, ...] = (VAE, GAN, DDPM, FLOW)
_BY_NAME = {m.name: m for m in MODELS}


def model_names() -> tuple[str, ...]:
    return tuple(_BY_NAME)


def spec(name: str) -> ModelSpec:
    """The model called `name`; a clear error listing the known ones."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise GanjiError(f"unknown model {name!r}: choose one of {', '.join(_BY_NAME)}") from None


def config_from_json(data: dict[str, Any]) -> TrainConfig:
    """A run's TrainConfig from its saved JSON (config.json's "config", or a checkpoint's); a clear error if edited into nonsense."""
    from ganji.runtime.config import TrainConfig

    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, str) or model not in _BY_NAME:
        raise GanjiError(f"config names an unknown model {model!r}")
    return TrainConfig.from_json(data, _BY_NAME[model].options_type)
