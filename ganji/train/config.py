"""Training configuration: one dataclass per model with the paper's final settings as defaults.

Sources: the GANji study (REFERENCE.md, "VAE", "GAN", "DDPM") and its experiment log.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ganji.errors import GanjiError

# torch.compile's modes. "reduce-overhead" and "max-autotune" also capture CUDA graphs (one launch
# replays a whole forward or backward: for small batches the step is bound by kernel launches, not
# by FLOPs). Nothing is compiled on the CPU.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

MODELS = ("vae", "gan", "ddpm")


@dataclass
class VAEOptions:
    """ResNet VAE, latent 256; summed BCE-with-logits + KL (beta 1); Adam 1e-3, one-cycle LR."""

    latent_dim: int = 256
    arch: str = "resnet"  # resnet | conv
    beta: float = 1.0
    base_width: int = 64


@dataclass
class GANOptions:
    """ResNet GAN, hinge loss + gradient penalty 10, up to 5 D steps per G step (stop once D acc > 0.9)."""

    latent_dim: int = 128
    layers: tuple[int, ...] = (512, 256, 128, 64)
    arch: str = "resnet"  # resnet | dcgan
    loss: str = "hinge"  # hinge | wasserstein | bce | lsgan
    gp: float = 10.0
    disc_ratio: int = 5
    disc_acc_stop: float = 0.9
    spectral_norm: bool = False
    # From this epoch on (1-based count of finished epochs; 0 = never), G's BatchNorm layers run in
    # inference mode with their running statistics frozen. The study's code did this by accident:
    # its epoch-end sampling called `self.eval()` under Lightning 2, which never switches back, so
    # its generator trained that way from the second epoch on (and recovered from an early collapse).
    bn_freeze_epoch: int = 1
    g_betas: tuple[float, float] = (0.0, 0.99)
    d_betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class DDPMOptions:
    """U-Net predicting noise, T = 1024, cosine schedule, MSE; Adam 5e-5 with cosine annealing."""

    timesteps: int = 1024
    schedule: str = "cosine"  # cosine | linear
    attention: bool = False
    base_width: int = 64


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as the run's config.json."""

    model: str
    dataset: str = "kanji"
    epochs: int = 100
    batch_size: int = 0  # 0: the model's paper default
    lr: float = 0.0  # 0: the model's paper default
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | fp32 | bf16
    compile: bool = True  # torch.compile on CUDA only
    compile_mode: str = "default"  # default | reduce-overhead | max-autotune | max-autotune-no-cudagraphs
    ema_decay: float = -1.0  # <0: the model's default (0 disables)
    sample_every: int = 1  # epochs
    checkpoint_every: int = 1  # epochs
    log_every: int = 50  # steps between host syncs (progress, metrics log)
    max_steps: int = 0  # total steps of the run; 0: no limit
    time_budget: float = 0.0  # minutes; 0: no limit
    grid_n: int = 64  # images in each progress grid
    eval_every: int = 0  # epochs between FID evaluations (0: off); the best checkpoint is kept
    eval_n: int = 2000  # samples per evaluation
    eval_features: str = "kanji"  # kanji | inception
    options: Any = None  # VAEOptions | GANOptions | DDPMOptions

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise GanjiError(f"unknown model {self.model!r}: choose one of {', '.join(MODELS)}")
        defaults = PAPER_DEFAULTS[self.model]
        if self.batch_size == 0:
            self.batch_size = defaults["batch_size"]
        if self.lr == 0.0:
            self.lr = defaults["lr"]
        if self.ema_decay < 0:
            self.ema_decay = defaults["ema_decay"]
        if self.options is None:
            self.options = OPTIONS_TYPES[self.model]()
        self.validate()

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1 (got {self.epochs})"),
            (self.batch_size >= 1, f"--batch-size must be at least 1 (got {self.batch_size})"),
            (self.lr > 0, f"--lr must be positive (got {self.lr})"),
            (0.0 <= self.ema_decay < 1.0, f"--ema-decay must be in [0, 1) (got {self.ema_decay})"),
            (self.sample_every >= 0, "--sample-every must be >= 0"),
            (self.checkpoint_every >= 1, "--checkpoint-every must be >= 1"),
            (self.log_every >= 1, "--log-every must be >= 1"),
            (self.max_steps >= 0, f"--max-steps must be >= 0 (got {self.max_steps})"),
            (self.time_budget >= 0, f"--time-budget must be >= 0 (got {self.time_budget})"),
            (self.grid_n >= 1, "--grid-n must be >= 1"),
            (self.eval_every >= 0, f"--eval-every must be >= 0 (got {self.eval_every})"),
            (self.eval_n >= 10, f"--eval-n must be at least 10 (got {self.eval_n})"),
            (self.eval_features in ("kanji", "inception"), f"--eval-features must be kanji or inception (got {self.eval_features!r})"),
            (self.device in ("auto", "cpu", "cuda"), f"--device must be auto, cpu or cuda (got {self.device!r})"),
            (self.precision in ("auto", "fp32", "bf16"), f"--precision must be auto, fp32 or bf16 (got {self.precision!r})"),
            (self.compile_mode in COMPILE_MODES, f"--compile-mode must be one of {', '.join(COMPILE_MODES)} (got {self.compile_mode!r})"),
        ]
        o = self.options
        if isinstance(o, VAEOptions):
            checks += [
                (o.latent_dim >= 1, "--latent-dim must be at least 1"),
                (o.arch in ("resnet", "conv"), f"--arch must be resnet or conv for the VAE (got {o.arch!r})"),
                (o.base_width >= 1, "--base-width must be at least 1"),
            ]
        elif isinstance(o, GANOptions):
            checks += [
                (o.latent_dim >= 1, "--latent-dim must be at least 1"),
                (o.arch in ("resnet", "dcgan"), f"--arch must be resnet or dcgan for the GAN (got {o.arch!r})"),
                (o.loss in ("hinge", "wasserstein", "bce", "lsgan"), f"--loss must be hinge, wasserstein, bce or lsgan (got {o.loss!r})"),
                (o.gp >= 0, "--gp must be >= 0"),
                (o.bn_freeze_epoch >= 0, "--bn-freeze-epoch must be >= 0"),
                (o.disc_ratio >= 1, "--disc-ratio must be at least 1"),
                (len(o.layers) >= 2 and all(w >= 1 for w in o.layers), "--layers must be two or more positive widths, e.g. 512,256,128,64"),
                (all(0 <= b < 1 for b in (*o.g_betas, *o.d_betas)), "the GAN's Adam betas must be in [0, 1)"),
            ]
        elif isinstance(o, DDPMOptions):
            checks += [
                (o.timesteps >= 2, "--timesteps must be at least 2"),
                (o.schedule in ("cosine", "linear"), f"--schedule must be cosine or linear (got {o.schedule!r})"),
                (o.base_width >= 4 and o.base_width % 4 == 0, "--base-width must be a positive multiple of 4 (GroupNorm(4))"),
            ]
        for ok, message in checks:
            if not ok:
                raise GanjiError(message)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a config from config.json; a clear error if it was edited into nonsense."""
        try:
            data = dict(data)
            model = data["model"]
            if model not in MODELS:
                raise GanjiError(f"config names an unknown model {model!r}")
            opts_type = OPTIONS_TYPES[model]
            raw = dict(data.pop("options") or {})
            known = {f.name for f in dataclasses.fields(opts_type)}
            unknown = set(raw) - known
            if unknown:
                raise GanjiError(f"config has unknown {model} options: {', '.join(sorted(unknown))}")
            for name in ("layers", "g_betas", "d_betas"):
                if name in raw:
                    raw[name] = tuple(raw[name])
            top_known = {f.name for f in dataclasses.fields(cls)}
            extra = set(data) - top_known
            if extra:
                raise GanjiError(f"config has unknown fields: {', '.join(sorted(extra))}")
            try:
                cfg = cls(**data, options=opts_type(**raw))
                _check_types(cfg)
            except GanjiError as exc:  # a value out of range: say that it is the config's
                raise GanjiError(f"config has an invalid value: {exc}") from None
            return cfg
        except GanjiError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise GanjiError(f"config is not a valid ganji training config ({exc.__class__.__name__}: {exc})") from None


def _check_types(cfg: TrainConfig) -> None:
    """Reject hand-edited values of the wrong type (e.g. "epochs": "ten")."""
    for obj in (cfg, cfg.options):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            want = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
            if want in ("int",) and (not isinstance(value, int) or isinstance(value, bool)):
                raise GanjiError(f"config field {f.name!r} must be an integer (got {value!r})")
            if want == "float" and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise GanjiError(f"config field {f.name!r} must be a number (got {value!r})")
            if want == "str" and not isinstance(value, str):
                raise GanjiError(f"config field {f.name!r} must be a string (got {value!r})")
            if want == "bool" and not isinstance(value, bool):
                raise GanjiError(f"config field {f.name!r} must be true or false (got {value!r})")
            if want.startswith("tuple[") and not _is_tuple_of(value, want):
                kind = "integers" if want == "tuple[int, ...]" else "two numbers"
                raise GanjiError(f"config field {f.name!r} must be a list of {kind} (got {value!r})")
    cfg.validate()


def _is_tuple_of(value: Any, want: str) -> bool:
    """Does `value` fit `tuple[int, ...]` or `tuple[float, float]` (no bools, no strings)?"""
    if not isinstance(value, tuple) or any(isinstance(v, bool) for v in value):
        return False
    if want == "tuple[int, ...]":
        return all(isinstance(v, int) for v in value)
    return len(value) == 2 and all(isinstance(v, (int, float)) for v in value)


OPTIONS_TYPES: dict[str, type] = {"vae": VAEOptions, "gan": GANOptions, "ddpm": DDPMOptions}

# Paper settings that differ per model (REFERENCE.md). EMA is ours: the paper used none, but users of
# comparable tools expect EMA weights for sampling (on for the GAN and DDPM, off for the VAE).
PAPER_DEFAULTS: dict[str, dict[str, Any]] = {
    "vae": {"batch_size": 128, "lr": 1e-3, "ema_decay": 0.0},
    "gan": {"batch_size": 128, "lr": 1e-4, "ema_decay": 0.999},
    "ddpm": {"batch_size": 32, "lr": 5e-5, "ema_decay": 0.9995},
}
