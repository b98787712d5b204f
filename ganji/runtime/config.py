"""A training run's configuration, saved as its config.json and in every checkpoint.

The fields every model shares live here; each model's own options (and its paper defaults for the
batch size, learning rate and EMA) come from the model registry, ganji.recipes.registry: build a
config with `spec(model).config(...)` and read one back with `config_from_json`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ganji.errors import GanjiError

# torch.compile's modes. "reduce-overhead" and "max-autotune" also capture CUDA graphs (one launch
# replays a whole forward or backward: for small batches the step is bound by kernel launches, not
# by FLOPs). Nothing is compiled on the CPU.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

MAX_SEED = 2**63 - 1  # torch.manual_seed takes a signed 64-bit integer

@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as the run's config.json."""

    model: str
    dataset: str = "kanji"
    epochs: int = 100
    batch_size: int = 0  # ModelSpec.config fills in the model's paper default
    lr: float = 0.0  # ModelSpec.config fills in the model's paper default
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | fp32 | bf16
    compile: bool = True  # torch.compile on CUDA only
    compile_mode: str = "default"  # default | reduce-overhead | max-autotune | max-autotune-no-cudagraphs
    ema_decay: float = -1.0  # ModelSpec.config fills in the model's default (0 disables)
    sample_every: int = 1  # epochs
    checkpoint_every: int = 1  # epochs
    log_every: int = 50  # steps between host syncs (progress, metrics log)
    max_steps: int = 0  # total steps of the run; 0: no limit
    time_budget: float = 0.0  # minutes; 0: no limit
    grid_n: int = 64  # images in each progress grid
    eval_every: int = 0  # epochs between FID evaluations (0: off); the best checkpoint is kept
    eval_n: int = 2000  # samples per evaluation
    eval_features: str = "kanji"  # kanji | inception
    init_from: str = ""  # a run of the same model whose last weights (and EMA) start this one; "" = fresh weights
    options: Any = None  # the model's options dataclass (ganji.recipes.registry), with a validate() method

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        checks = [
            (isinstance(self.seed, int) and 0 <= self.seed <= MAX_SEED, f"--seed must be between 0 and {MAX_SEED:,} (got {self.seed})"),
            (self.epochs >= 1, f"--epochs must be at least 1 (got {self.epochs})"),
            (self.batch_size >= 1, f"--batch-size must be at least 1 (got {self.batch_size})"),
            (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0, f"--lr must be a finite number > 0 (got {self.lr})"),
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
        for ok, message in checks:
            if not ok:
                raise GanjiError(message)
        if self.options is None or not hasattr(self.options, "validate"):
            raise GanjiError(f"the {self.model} config has no model options")
        self.options.validate()

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], options_type: type) -> TrainConfig:
        """Rebuild a config from its JSON (`options_type`: the model's options dataclass); a clear
        error if it was edited into nonsense. Use ganji.recipes.config_from_json, which knows the type."""
        try:
            data = dict(data)
            model = data["model"]
            raw = dict(data.pop("options") or {})
            known = {f.name for f in dataclasses.fields(options_type)}
            unknown = set(raw) - known
            if unknown:
                raise GanjiError(f"config has unknown {model} options: {', '.join(sorted(unknown))}")
            for f in dataclasses.fields(options_type):  # JSON has lists where the options have tuples
                if f.name in raw and isinstance(raw[f.name], list):
                    raw[f.name] = tuple(raw[f.name])
            top_known = {f.name for f in dataclasses.fields(cls)}
            extra = set(data) - top_known
            if extra:
                raise GanjiError(f"config has unknown fields: {', '.join(sorted(extra))}")
            try:
                cfg = cls(**data, options=options_type(**raw))
                _check_types(cfg)
            except GanjiError as exc:  # a value out of range: say that it is the config's
                raise GanjiError(f"config has an invalid value: {exc}") from None
            return cfg
        except GanjiError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
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
                kind = {"tuple[int, ...]": "integers", "tuple[str, ...]": "strings"}.get(want, "two numbers")
                raise GanjiError(f"config field {f.name!r} must be a list of {kind} (got {value!r})")
    cfg.validate()


def _is_tuple_of(value: Any, want: str) -> bool:
    """Does `value` fit `tuple[int, ...]` or `tuple[float, float]` (no bools, no strings)?"""
    if not isinstance(value, tuple) or any(isinstance(v, bool) for v in value):
        return False
    if want == "tuple[int, ...]":
        return all(isinstance(v, int) for v in value)
    if want == "tuple[str, ...]":
        return all(isinstance(v, str) for v in value)
    return len(value) == 2 and all(isinstance(v, (int, float)) for v in value)
