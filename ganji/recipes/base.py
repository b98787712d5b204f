"""The contract between a model's recipe and the training engine."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from ganji.errors import GanjiError
from ganji.recipes.registry import MAX_SAMPLER_STEPS, SamplerChoice, spec
from ganji.runtime.checkpoint import CheckpointData
from ganji.runtime.config import TrainConfig
from ganji.runtime.device import Precision, apply_backend_settings
from ganji.runtime.distributed import SINGLE, World, convert_sync_batchnorm
from ganji.runtime.ema import EMA


OnStep = Callable[[int], None]  # called with the index of each network call of an iterative sampler


def match_parameter_layout(opt: torch.optim.Optimizer) -> None:
    """Give optimiser state the strides of its parameter (channels_last on CUDA).

    Checkpoints store tensors contiguous; the fused Adam kernel needs each moment laid out like
    its parameter, or resuming a channels_last run fails.
    """
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


class Recipe:
    """A model family's networks, optimisers, schedulers, loss and sampling.

    Subclasses build `self.nets` (name -> module), `self.optimizers`, `self.schedulers`, and say
    which networks get an EMA copy (`ema_nets`). `train_step` runs one step on a batch of real
    images (already on the device, in `data_range`, in the run's memory format) and returns the
    losses as detached device tensors (no host sync). `generate` maps noise to images in
    `data_range`, with the sampler chosen (and checked) by ganji.sampling.SampleRequest.

    Several processes (`world`, see ganji.runtime.distributed): the batch given to `train_step` is
    this rank's equal share of the global batch; `wire()` builds the training forwards through
    `self.parallel(net)` (DistributedDataParallel, then torch.compile where it applies); per-sample
    random draws go through `self.world.draw` (the global batch's draw, this rank's slice); losses
    are means over the rank's share (DDP averages the gradients, which makes them global means).
    BatchNorm2d layers become SyncBatchNorm when the world has more than one process. `self.nets`
    always holds the plain networks (checkpoints, EMA and sampling use them).
    """

    model_name: ClassVar[str]
    sampling_network: ClassVar[str]  # the network (in `nets`) that `generate` samples with
    data_range: ClassVar[tuple[float, float]] = (-1.0, 1.0)
    ema_nets: ClassVar[tuple[str, ...]] = ()
    compiles: ClassVar[bool] = True  # whether torch.compile applies to this model (see GANRecipe)

    def __init__(
        self, cfg: TrainConfig, image_size: int, channels: int, total_steps: int, precision: Precision, world: World | None = None
    ) -> None:
        if image_size % 16 != 0 or image_size < 16:
            raise GanjiError(f"image size must be a multiple of 16 (got {image_size}); prepare the dataset with --size 16, 32, 64, ...")
        if channels not in (1, 3):
            raise GanjiError(f"images must have 1 or 3 channels (got {channels})")
        self.cfg = cfg
        self.image_size = image_size
        self.channels = channels
        self.total_steps = max(1, total_steps)
        self.precision = precision
        self.device = precision.device
        self.world = world or SINGLE
        apply_backend_settings(precision)
        self.nets: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.emas: dict[str, EMA] = {}
        self.build()
        if self.world.distributed:
            self.nets = {name: convert_sync_batchnorm(net) for name, net in self.nets.items()}
        for net in self.nets.values():
            net.to(self.device, memory_format=precision.memory_format())
        self.make_optimizers()
        if cfg.ema_decay > 0:
            self.emas = {name: EMA(self.nets[name], cfg.ema_decay) for name in self.ema_nets}
        self.wire()

    @classmethod
    def weight_shapes(cls, cfg: TrainConfig, image_size: int, channels: int) -> dict[str, tuple[int, ...]]:
        """The shape of every network weight that `cfg` describes, keyed "NET.PARAM" as in a
        checkpoint, from networks built on the "meta" device: no memory, whatever the config says."""
        probe = cls.__new__(cls)  # only what `build` reads
        probe.cfg, probe.image_size, probe.channels, probe.nets = cfg, image_size, channels, {}
        probe.device = torch.device("meta")
        with torch.device("meta"):
            probe.build()
        return {f"{name}.{key}": tuple(t.shape) for name, net in probe.nets.items() for key, t in net.state_dict().items()}

    # -- to implement ----------------------------------------------------------------------------
    def build(self) -> None:
        """Make the networks (`self.nets`), on the CPU; the engine moves them to the device."""
        raise NotImplementedError

    def wire(self) -> None:
        """Make the callables `train_step` runs the networks through (with `self.parallel`)."""

    def make_optimizers(self) -> None:
        raise NotImplementedError

    @property
    def conditional(self) -> bool:
        """Whether training steps take labels and sampling a condition (see ganji.recipes.unet_recipe)."""
        return False

    def condition_vector(self, keys: tuple[str, ...] | list[str], n: int) -> torch.Tensor:
        """n rows of the network's label for a request of component keys (a conditional recipe's)."""
        raise GanjiError(f"this {self.model_name} run was trained without --condition components: it takes no components")

    def train_step(self, x: torch.Tensor, labels: torch.Tensor | None = None, made_up: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One step on `x`; a conditional recipe also gets the batch's rows of the dataset's labels
        and, with `--component-mix`, which rows are made-up kanji (ganji.features.component_mix)."""
        raise NotImplementedError

    def make_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def generate(
        self,
        noise: torch.Tensor,
        use_ema: bool = True,
        sampler: SamplerChoice | None = None,
        generator: torch.Generator | None = None,
        on_step: OnStep | None = None,
        condition: torch.Tensor | None = None,
        guidance: float = 0.0,
        guide: Recipe | None = None,
        classifier: Any = None,
        classifier_scale: float = 0.0,
    ) -> torch.Tensor:
        """Images in `data_range` from `noise` (see make_noise), by `sample` on the sampling network
        (its EMA copy unless `use_ema` is False), in eval mode, without gradients. A conditional model
        (ganji.recipes.unet_recipe) also takes `condition` (N x V multi-hot keys) and `guidance`; a
        U-Net model also a `guide`, a weaker run of it for autoguidance (checked by `guide_mismatch`);
        a conditional flow also a `classifier` (ganji.features.noisy_component_net) and its
        `classifier_scale` (classifier guidance, ganji.recipes.flow)."""
        extra: dict[str, Any] = {}
        if condition is not None:
            if not self.conditional:
                raise GanjiError(f"this {self.model_name} run was trained without --condition components: it takes no components")
            extra = {"condition": condition.to(self.device, torch.float32), "guidance": guidance}
            if classifier is not None and classifier_scale != 0:
                extra.update(classifier=classifier, classifier_scale=classifier_scale)
        with contextlib.ExitStack() as stack:
            net = stack.enter_context(self.sampling_net(self.sampling_network, use_ema))
            if guide is not None:
                extra.update(guidance=guidance, guide=stack.enter_context(guide.sampling_net(guide.sampling_network, use_ema)))
            return self.sample(net, noise.to(self.device), sampler, generator, on_step, **extra)

    def guide_mismatch(self, guide: Recipe) -> str | None:
        """Why `guide` cannot guide this model (autoguidance, ganji.recipes.unet_recipe), or None
        when it can. Only the U-Net models take a guide."""
        return f"the {self.model_name} model makes an image in one network pass: there is no sampler to guide"

    def sample(self, net: nn.Module, noise: torch.Tensor, sampler: SamplerChoice | None, generator: torch.Generator | None,
               on_step: OnStep | None) -> torch.Tensor:
        """Images from noise on the device with the sampling network. An iterative model runs `sampler`
        (its random draws from `generator`, on the recipe's device) and calls on_step(i) after each
        network call; a one-pass model ignores all three."""
        raise NotImplementedError

    def plain_eager_step(self, x: torch.Tensor) -> Callable[[], torch.Tensor]:
        """The baseline `ganji bench train` holds this recipe's step against: a closure running one
        training step of the same networks (copies, same weights) on `x` as someone would write it
        from the paper with nothing but PyTorch (fp32, plain Adam, no autocast, compile, channels_last,
        EMA or logging), returning its loss. The loss is written out again from the paper's equations
        rather than shared with `train_step`: the baseline must not inherit the engine's choices."""
        raise NotImplementedError

    @staticmethod
    def describe(options: Any) -> str:
        """The options in a few words, for reports (e.g. "U-Net width 64, T=1024 cosine")."""
        raise NotImplementedError

    # -- sampling facts (iterative models override them) ---------------------------------------------
    def model_calls(self, sampler: SamplerChoice | None) -> int:
        """Network evaluations per image with `sampler` (one for a one-pass model)."""
        return 1

    def max_steps(self, sampler: str) -> int:
        """The most steps `sampler` may take on this model (DDIM: T)."""
        return MAX_SAMPLER_STEPS

    def fast_sampler(self, calls: int) -> SamplerChoice | None:
        """The model's fast deterministic sampler with the steps that `calls` network calls allow
        (fewer if the model allows fewer), for progress grids and evaluations; None for a one-pass model."""
        choice = spec(self.model_name).sampling.fast_choice(calls)
        if choice is None or choice.steps is None:
            return choice
        return dataclasses.replace(choice, steps=min(choice.steps, self.max_steps(choice.name)))

    # -- shared helpers --------------------------------------------------------------------------
    def optimise(self, name: str, loss: torch.Tensor) -> None:
        """One optimiser step of `self.optimizers[name]` on `loss` (gradients set to None first)."""
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @property
    def fused_adam(self) -> bool:
        """The fused Adam kernel on a GPU: one launch for all parameters, and its step counters stay
        on the device (foreach Adam keeps them on the host). On the CPU foreach was as fast."""
        return self.device.type == "cuda"

    def adam(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
        """Adam; fused on a GPU, foreach on the CPU (see `fused_adam`)."""
        fused = self.fused_adam
        return torch.optim.Adam(params, lr=lr, betas=tuple(betas), fused=fused or None, foreach=None if fused else True)

    def maybe_compile(self, net: nn.Module) -> Callable:
        """`torch.compile(net)` in the run's compile mode when the policy says so (CUDA), else the module."""
        if not self.compiled:
            return net
        mode = self.precision.compile_mode
        return torch.compile(net) if mode == "default" else torch.compile(net, mode=mode)

    def parallel(self, net: nn.Module) -> nn.Module:
        """The module to train `net` through: DDP-wrapped with several processes, compiled where it applies."""
        return self.maybe_compile(self.world.ddp(net, self.device))

    @property
    def compiled(self) -> bool:
        """Whether this run's networks go through torch.compile (CUDA, --compile, and the model allows it)."""
        return self.precision.compile and self.compiles

    @contextlib.contextmanager
    def sampling_net(self, name: str, use_ema: bool = True) -> Iterator[nn.Module]:
        """The network to sample with (its EMA copy when there is one), in eval mode for the duration."""
        net = self.emas[name].model if use_ema and name in self.emas else self.nets[name]
        was_training = net.training
        net.eval()
        try:
            yield net
        finally:
            net.train(was_training)

    def set_epoch(self, epoch: int) -> None:
        """Called before the first step of every epoch (0-based), also when a run resumes mid-epoch."""

    def after_step(self, step: int) -> None:
        """Scheduler and EMA updates after optimiser step `step` (0-based)."""
        for sched in self.schedulers.values():
            sched.step()
        for ema in self.emas.values():
            ema.update(step)

    def plain_adam_step(self, name: str, loss_of: Callable[[nn.Module], torch.Tensor]) -> Callable[[], torch.Tensor]:
        """A `plain_eager_step` for a one-network model: a plain copy of network `name`, torch's Adam
        with its defaults at the run's learning rate, and the loss `loss_of(net)`."""
        net = self.plain_copies()[name]
        opt = torch.optim.Adam(net.parameters(), lr=self.cfg.lr)

        def step() -> torch.Tensor:
            loss = loss_of(net)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss.detach()

        return step

    def plain_copies(self) -> dict[str, nn.Module]:
        """fp32, contiguous, training-mode copies of the networks (for `plain_eager_step`)."""
        return {name: copy.deepcopy(net).float().to(memory_format=torch.contiguous_format).train() for name, net in self.nets.items()}

    def parameter_counts(self) -> dict[str, int]:
        return {name: sum(p.numel() for p in net.parameters()) for name, net in self.nets.items()}

    # -- checkpoint glue -------------------------------------------------------------------------
    def state(self) -> tuple[dict, dict, dict, dict]:
        nets = {name: net.state_dict() for name, net in self.nets.items()}
        emas = {name: ema.model.state_dict() for name, ema in self.emas.items()}
        optimizers = {name: opt.state_dict() for name, opt in self.optimizers.items()}
        schedulers = {name: sched.state_dict() for name, sched in self.schedulers.items()}
        return nets, emas, optimizers, schedulers

    def load_state(self, ckpt: CheckpointData, schedulers: dict[str, Any], weights_only: bool = False) -> None:
        """Load networks (and, unless `weights_only`, EMA, optimisers, schedulers) from a checkpoint."""
        for name, net in self.nets.items():
            self._load_module(net, ckpt.nets.get(name), name)
        for name, ema in self.emas.items():
            # A run trained without EMA (or an old checkpoint) samples from the raw weights.
            self._load_module(ema.model, ckpt.emas.get(name) or ckpt.nets.get(name), f"EMA {name}")
        if weights_only:
            return
        for name, opt in self.optimizers.items():
            sd = ckpt.optimizers.get(name)
            if sd is None:
                raise GanjiError(f"checkpoint has no optimiser state for {name!r}")
            # Keep this machine's kernel choice (fused on CUDA, foreach on CPU) when resuming elsewhere.
            for saved, live in zip(sd["param_groups"], opt.param_groups):
                for key in ("fused", "foreach", "capturable", "differentiable"):
                    if key in live:
                        saved[key] = live[key]
            try:
                opt.load_state_dict(sd)
            except (ValueError, KeyError, RuntimeError) as exc:
                raise GanjiError(f"checkpoint optimiser state for {name!r} does not fit this model ({exc})") from None
            match_parameter_layout(opt)
        for name, sched in self.schedulers.items():
            if name in schedulers:
                sched.load_state_dict(schedulers[name])

    def _load_module(self, net: nn.Module, state: dict[str, torch.Tensor] | None, what: str) -> None:
        if state is None:
            raise GanjiError(f"checkpoint has no weights for the {what} network: is it a {self.model_name} checkpoint?")
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise GanjiError(f"checkpoint weights do not fit this {self.model_name} ({what}): {first}") from None
