"""What the two U-Net models (DDPM and flow) share: the network, its optimiser, their noise, the
network call their samplers make, and component conditioning with classifier-free guidance.

Classifier-free guidance (Ho & Salimans 2022, eq. 6, written with w counted from the unconditional
output): out = out(x, t, ∅) + w · (out(x, t, y) - out(x, t, ∅)). w = 0 is the unconditional model
(only its pass runs), w = 1 the conditional one, w > 1 pushes further towards the request. The
network's output (ε, v, x₀ or the flow's velocity) is affine in what every sampler derives from it,
so guiding the output guides the sampler.

Autoguidance (Karras et al. 2024, "Guiding a Diffusion Model with a Bad Version of Itself",
arXiv:2406.02507, eq. 2) guides with a weaker run of the same model instead of the null label:
out = out_guide(x, t, y) + w · (out(x, t, y) - out_guide(x, t, y)), y the request's label (none for an
unconditional sample). The paper's argument: a guide trained the same way but less (fewer epochs;
the paper also shrinks it) makes the same kind of mistakes, only more of them, so pushing away
from it removes mistakes rather than variety, and it works without a condition too, where the null
label has nothing to push from. `guide_mismatch` says which runs can guide which: their outputs
must mean the same thing for their difference to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from ganji.models.unet import UNet, UNetConfig
from ganji.recipes.base import Recipe


class UNetRecipe(Recipe):
    """A model whose network is ganji.models.unet.UNet(x, time), trained with Adam and cosine annealing.

    Its options have `base_width` and `attention`; images come from Gaussian noise of their shape.
    """

    ema_nets = ("unet",)
    sampling_network = "unet"

    def build(self) -> None:
        from ganji.data.components import split_key

        o = self.cfg.options
        positions = tuple(split_key(k)[1] for k in o.vocabulary) if o.conditional and o.component_regions else ()
        self.nets["unet"] = UNet(
            UNetConfig(image_size=self.image_size, channels=self.channels, base_width=o.base_width, attention=o.attention,
                       condition_dim=len(o.vocabulary) if o.conditional else 0, condition_positions=positions)
        )

    @property
    def conditional(self) -> bool:
        """Whether the network takes component labels (`--condition components`)."""
        return bool(self.cfg.options.conditional)

    def training_condition(self, labels: torch.Tensor | None, made_up: torch.Tensor | None = None) -> torch.Tensor | None:
        """The label a training step conditions on (float N x V), from the batch's rows of the
        dataset's multi-hot keys (uint8 N x V); None for an unconditional model (then nothing is drawn).

        Labels are thinned at random so that every request `ganji sample --with` can make is one the
        network was trained on:
        - each image's whole label is dropped with probability `condition_dropout`: the null label
          (all zeros) trains the unconditional model of classifier-free guidance (Ho & Salimans 2022
          drop 10-20%);
        - each component of an image is kept with probability `component_keep`, independently, so
          that partial requests (魚 on the left, nothing said about the rest) are in the training
          distribution (a component-label analogue of the caption dropout of text-to-image models);
        - a kept component always keeps its "C:any" key, and each of its position keys ("C:left") is
          kept with probability 1/2: "C:any" alone says "C somewhere", "C:any" + "C:left" says "C on
          the left". A position key never appears without its component's "C:any" key (the labels
          stay true statements), so a request for "C:left" is sent as both keys (`condition_vector`)
          and a request for "C" as "C:any" alone; both are what training showed.
        Made-up kanji (`made_up`, N bools: `--component-mix`) keep their whole label, both parts in
        their positions: they are there to teach pair requests, and the null label stays a model of
        real kanji alone.
        The draws are for the global batch and sliced to this rank, like t and ε.
        """
        if labels is None or not self.conditional:
            return None
        o = self.cfg.options
        element_of, is_any, components = self._key_structure(labels.device)
        n, v = labels.shape
        kept = self.world.draw(n, lambda m: torch.rand(m, components, device=labels.device)) < o.component_keep
        positioned = self.world.draw(n, lambda m: torch.rand(m, v, device=labels.device)) < 0.5
        dropped = self.world.draw(n, lambda m: torch.rand(m, device=labels.device)) < o.condition_dropout
        keep = kept[:, element_of] & (is_any | positioned) & ~dropped[:, None]
        if made_up is not None:
            keep = keep | made_up[:, None]
        return (labels.bool() & keep).float()

    def _key_structure(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
        """For the vocabulary's keys: the index of each key's component (V longs), whether it is the
        component's "any" key (V bools), and the number of components (computed once: no host sync
        in the step)."""
        from ganji.data.components import ANY, split_key

        cached = getattr(self, "_keys", None)
        if cached is None or cached[0].device != device:
            parts = [split_key(k) for k in self.cfg.options.vocabulary]
            index = {e: i for i, e in enumerate(dict.fromkeys(e for e, _ in parts))}
            cached = (torch.tensor([index[e] for e, _ in parts], device=device),
                      torch.tensor([p == ANY for _, p in parts], device=device), len(index))
            self._keys = cached
        return cached

    def condition_vector(self, keys: tuple[str, ...] | list[str], n: int) -> torch.Tensor:
        """n rows of the network's label (float32, n x V) for a request of vocabulary `keys` (from
        ganji.sampling.SampleRequest.resolve): the keys plus the "C:any" key of each component asked
        for at a position, as training presents them (`training_condition`)."""
        from ganji.data.components import ANY, component_key, multi_hot, split_key

        vocabulary = list(self.cfg.options.vocabulary)
        implied = [component_key(split_key(k)[0], ANY) for k in keys]
        return multi_hot(list(dict.fromkeys([*keys, *(k for k in implied if k in vocabulary)])), vocabulary, n)

    # Options that fix what the network's output means: a guide must share them (`guide_mismatch`).
    output_options: ClassVar[tuple[str, ...]] = ()

    def guide_mismatch(self, guide: Recipe) -> str | None:
        """Why `guide` cannot guide this model, or None: it must be the same model at the same image
        size, its output must mean the same (`output_options`), and for a conditional model it must
        know the same components (a request means the same to both) and have seen none of the kanji it
        holds out (`--hold-out-requests`); its width, attention, epochs and
        region maps may differ (that is what makes it weaker). An unconditional model may be guided
        by a conditional run: its null label is an unconditional model."""
        if type(guide) is not type(self):
            return f"the guide is a {guide.model_name} run, not a {self.model_name} one"
        if (guide.image_size, guide.channels) != (self.image_size, self.channels):
            return (f"the guide draws {guide.image_size} px images with {guide.channels} channel(s), this run "
                    f"{self.image_size} px with {self.channels}")
        for name in self.output_options:
            mine, theirs = getattr(self.cfg.options, name), getattr(guide.cfg.options, name)
            if mine != theirs:
                return f"the guide was trained with --{name.replace('_', '-')} {theirs}, this run with {mine}: their outputs differ in meaning"
        if self.conditional and list(getattr(guide.cfg.options, "vocabulary", [])) != list(self.cfg.options.vocabulary):
            return "the guide was not trained on the same components (--condition components on the same dataset)"
        saw = set(getattr(self.cfg.options, "held_out", ())) - set(getattr(guide.cfg.options, "held_out", ()))
        if saw:
            return f"the guide was trained on kanji this run holds out ({', '.join(sorted(saw))}): train it with --hold-out-requests too"
        return None

    def wire(self) -> None:
        self._forward = self.parallel(self.nets["unet"])

    def make_optimizers(self) -> None:
        opt = self.adam(self.nets["unet"].parameters(), self.cfg.lr)
        self.optimizers["unet"] = opt
        # The paper anneals per epoch over 100 epochs; per step over the whole run is the same curve.
        self.schedulers["unet"] = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.total_steps)

    def make_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.channels, self.image_size, self.image_size, generator=generator, device=generator.device)

    def draw_noise(self, like: torch.Tensor) -> torch.Tensor:
        """ε ~ N(0, I) shaped like the batch `like`, for the global batch and sliced to this rank
        (in one process: `randn_like`), in the run's memory format."""
        n, shape, fmt = like.shape[0], like.shape[1:], self.precision.memory_format()
        return self.world.draw(n, lambda m: torch.empty((m, *shape), dtype=like.dtype, device=like.device, memory_format=fmt).normal_())

    def network_fn(self, net: nn.Module, time_scale: float = 1.0, condition: torch.Tensor | None = None,
                   guidance: float = 0.0, guide: nn.Module | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """net(x, time_scale · t) as the samplers call it: under the run's autocast, in its memory
        format, the output in float32. With `guidance` w != 0 and a `guide` network: autoguidance,
        with or without a `condition`; with a `condition` (N x V keys) alone: classifier-free guidance,
        both passes in one network call of 2N images (module docstring). w = 0: the plain network."""
        fmt = self.precision.memory_format()

        def call(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            t = t * time_scale if time_scale != 1.0 else t
            with self.precision.autocast():
                if guide is not None and guidance != 0:
                    x = x.contiguous(memory_format=fmt)
                    given = () if condition is None else (condition,)
                    main, weak = net(x, t, *given).float(), guide(x, t, *given).float()
                    return weak + guidance * (main - weak)
                if condition is None or guidance == 0:
                    return net(x.contiguous(memory_format=fmt), t).float()
                both = net(torch.cat([x, x]).contiguous(memory_format=fmt), torch.cat([t, t]),
                           torch.cat([torch.zeros_like(condition), condition])).float()
            plain, conditioned = both.chunk(2)
            return plain + guidance * (conditioned - plain)

        return call
