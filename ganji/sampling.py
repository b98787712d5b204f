"""Generating images from a trained run: the code behind `ganji sample` (and the metrics' samples).

Every image leaves here as uint8 with the ink bright, exactly like the prepared dataset, so samples
and real images are always quantised the same way (values are clamped before the cast).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ganji.errors import GanjiError
from ganji.images import to_uint8
from ganji.recipes import MODELS, ModelSpec, SamplerChoice, config_from_json, spec
from ganji.recipes.registry import DEFAULT_AUTOGUIDANCE, DEFAULT_GUIDANCE, DEFAULT_SAMPLE_BATCH, DEFAULT_SAMPLER_STEPS, MAX_GUIDANCE, within
from ganji.recipes.base import Recipe
from ganji.runs import Run, find_run, read_run_config
from ganji.runtime.checkpoint import check_checkpoint_shapes, checkpoint_exists, load_checkpoint
from ganji.runtime.config import MAX_SEED
from ganji.runtime.device import choose_precision, resolve_device

# Defaults and bounds of a sampling request (`ganji sample`, `ganji fid`, the study), named once.
MAX_IMAGES = 1_000_000  # images per request (--n, rounded up to whole --interpolate rows)
MAX_BATCH_SIZE = 65_536
MAX_INTERPOLATE = 1_024
MAX_BEST_OF = 64  # candidates per image (--best-of)


@dataclass
class LoadedModel:
    recipe: Recipe
    model: str
    run_name: str
    checkpoint: Path
    step: int
    meta: dict[str, Any]
    guide: LoadedModel | None = None  # a weaker run of the same model, for autoguidance (`guide_run`)
    classifier: Any = None  # the run's noise-aware component classifier (ganji.features.noisy_component_net), for classifier guidance

    @property
    def spec(self) -> ModelSpec:
        return spec(self.model)


def load_model(
    home: Path,
    model: str,
    run_name: str | None = None,
    checkpoint: Path | None = None,
    device: str = "auto",
    precision: str = "auto",
    best: bool = False,
    guide_run: str | None = None,
    classifier: bool = False,
) -> LoadedModel:
    """A recipe with the weights (and EMA weights) of a run's checkpoint, ready to sample; with
    `best`, the run's lowest-FID checkpoint (best.safetensors, kept by `ganji train --eval-every`);
    with `guide_run`, also that run of the same model, checked to be able to guide this one
    (autoguidance, ganji.recipes.unet_recipe); with `classifier`, also the run's noise-aware
    component classifier (`ganji train-classifier`), for classifier guidance."""
    loaded = _load_one(home, model, run_name, checkpoint, device, precision, best)
    if classifier:
        loaded = _with_classifier(home, loaded, checkpoint)
    if guide_run is None:
        return loaded
    if not loaded.spec.sampling.iterative:
        raise GanjiError(f"--guide-run applies to the iterative models ({', '.join(m.name for m in MODELS if m.sampling.iterative)}), "
                         f"not to the {model}: it makes an image in one network pass")
    guide = _load_one(home, model, guide_run, None, device, precision, False)
    if guide.checkpoint == loaded.checkpoint:
        raise GanjiError(f"--guide-run {guide_run} is the run being sampled: a run cannot guide itself (name a weaker run of the same model)")
    why = loaded.recipe.guide_mismatch(guide.recipe)
    if why is not None:
        raise GanjiError(f"run {model}/{guide.run_name} cannot guide run {model}/{loaded.run_name}: {why}")
    return dataclasses.replace(loaded, guide=guide)


def _with_classifier(home: Path, loaded: LoadedModel, checkpoint: Path | None) -> LoadedModel:
    from ganji.features.noisy_component_net import load_classifier

    uses = "--classifier-guidance and --best-of"  # the two users of the classifier
    if loaded.model != "flow":
        raise GanjiError(f"{uses} apply to flow runs (the run's classifier learns the flow's path), not to the {loaded.model}")
    if not loaded.recipe.conditional:
        raise GanjiError(f"this flow run was trained without components: {uses} need one trained with --condition components")
    if checkpoint is not None:
        raise GanjiError(f"{uses} use the classifier in a run's folder: name the run (--run), not a --checkpoint file")
    run = find_run(home, loaded.model, loaded.run_name)
    classifier = load_classifier(run.path, f"{loaded.model}/{run.name}", list(loaded.recipe.cfg.options.vocabulary), loaded.recipe.device)
    return dataclasses.replace(loaded, classifier=classifier)


def _load_one(home: Path, model: str, run_name: str | None, checkpoint: Path | None, device: str, precision: str, best: bool) -> LoadedModel:
    run = None
    if checkpoint is None:
        run = find_run(home, model, run_name)
        checkpoint, run_name = (run.best_checkpoint_path if best else run.checkpoint_path), run.name
        if best and not checkpoint_exists(checkpoint):
            raise GanjiError(f"run {model}/{run.name} has no best.safetensors: it is kept when training measures FID (`--eval-every N`)")
        if not checkpoint_exists(checkpoint):
            raise GanjiError(f"run {model}/{run.name} has no checkpoint yet (training did not reach one)")
    model_spec = spec(model)
    ckpt = load_checkpoint(checkpoint)
    meta = ckpt.meta
    if meta.get("model") != model:
        raise GanjiError(f"{checkpoint} is a {meta.get('model')!r} checkpoint, not a {model} one")
    try:
        cfg = config_from_json(meta["config"])
        size, channels, step = int(meta["image_size"]), int(meta["channels"]), int(meta.get("step", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise GanjiError(f"{checkpoint} lacks its configuration ({exc})") from None
    except GanjiError as exc:
        raise GanjiError(f"checkpoint {checkpoint}: {exc}") from None
    if run is not None:
        _check_run_matches(run, checkpoint, size, channels)
    recipe_class = model_spec.recipe_class()
    # The weights the config describes must be the file's, checked on the header before anything is
    # built: an edited config (latent_dim 10^9) must not allocate what it says.
    check_checkpoint_shapes(checkpoint, recipe_class.weight_shapes(cfg, size, channels))
    dev = resolve_device(device)
    # Compilation pays off over long training, not for one sampling call.
    prec = choose_precision(model_spec.bf16, dev, precision, compile=False)
    recipe = recipe_class(cfg, size, channels, 1, prec)
    recipe.load_state(ckpt, {}, weights_only=True)
    return LoadedModel(recipe, model, run_name or checkpoint.stem, Path(checkpoint), step, meta)


def _check_run_matches(run: Run, checkpoint: Path, size: int, channels: int) -> None:
    """A run's checkpoint must be the run's own: same model and image shape as its config.json says.

    A damaged or badly edited config.json is an error too (the run folder is not what `ganji train`
    left); `--checkpoint FILE` samples from a checkpoint alone.
    """
    hint = f"; to sample from the checkpoint alone, pass --checkpoint {checkpoint}"
    try:
        saved = read_run_config(run)
        config_from_json(saved["config"])
    except GanjiError as exc:
        raise GanjiError(f"{exc}{hint}") from None
    if saved["config"].get("model") != run.model:
        raise GanjiError(f"{run.config_path} describes a {saved['config'].get('model')!r} run, not a {run.model} one{hint}")
    data = saved.get("dataset") or {}
    for key, have in (("size", size), ("channels", channels)):
        want = data.get(key)
        if want is not None and want != have:
            what = "px images" if key == "size" else "channels"
            raise GanjiError(
                f"{checkpoint} is for {have} {what}, but run {run.model}/{run.name} was trained on {want} {what} "
                f"(its config.json): the checkpoint belongs to another run"
            )


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of a and b (Shoemake 1985; White 2016 for latent walks).

    a, b: (N, ...) ; t: (K,) in [0, 1]  ->  (N, K, ...). Falls back to lerp when a ∥ b.
    """
    fa, fb = a.flatten(1), b.flatten(1)
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1 + 1e-7, 1 - 1e-7))[:, None]  # (N, 1)
    so = torch.sin(omega)
    tt = t[None, :]  # (1, K)
    wa = torch.where(so > 1e-6, torch.sin((1 - tt) * omega) / so, 1 - tt)
    wb = torch.where(so > 1e-6, torch.sin(tt * omega) / so, tt)
    out = wa[..., None] * fa[:, None, :] + wb[..., None] * fb[:, None, :]
    return out.reshape(a.shape[0], t.shape[0], *a.shape[1:])


def make_noise(recipe: Recipe, n: int, seed: int, interpolate: int = 0) -> torch.Tensor:
    """The n starting points (latents or x_T), drawn on the CPU so every device gets the same ones.

    With `interpolate` K, rows of K points walk (slerp) between two random points per row.
    """
    gen = torch.Generator().manual_seed(seed)
    if interpolate <= 1:
        return recipe.make_noise(n, gen)
    rows = math.ceil(n / interpolate)
    ends = recipe.make_noise(2 * rows, gen)
    walk = slerp(ends[:rows], ends[rows:], torch.linspace(0, 1, interpolate))
    return walk.reshape(rows * interpolate, *ends.shape[1:])


@dataclass(frozen=True)
class SampleRequest:
    """What to generate, resolved and checked once (`resolve`) before any work starts.

    `sampler` is None for a one-pass model (VAE, GAN). With `interpolate` K > 1, the images are rows
    of K walking between two random starting points (so `images` rounds n up to whole rows), drawn
    with a deterministic sampler so that nearby starting points give nearby kanji.
    """

    n: int
    seed: int = 0
    batch_size: int = DEFAULT_SAMPLE_BATCH
    sampler: SamplerChoice | None = None
    interpolate: int = 0
    use_ema: bool = True
    condition: tuple[str, ...] = ()  # component keys asked for (a conditional run); () = unconditional
    guidance: float = 0.0  # classifier-free guidance w with a condition (ganji.recipes.unet_recipe)
    classifier_scale: float = 0.0  # classifier guidance s with a condition (ganji.recipes.flow); 0 = off
    best_of: int = 1  # candidates drawn per image, the one the run's classifier reads best kept (`generate`); 1 = off

    @property
    def images(self) -> int:
        """How many images the request makes: n, or n rounded up to whole interpolation rows."""
        return self.interpolate * -(-self.n // self.interpolate) if self.interpolate > 1 else self.n

    @property
    def drawn(self) -> int:
        """How many images the sampler draws: `images` times `best_of`."""
        return self.images * self.best_of

    @classmethod
    def resolve(
        cls,
        model: ModelSpec,
        recipe: Recipe,
        n: int,
        *,
        seed: int = 0,
        batch_size: int = DEFAULT_SAMPLE_BATCH,
        sampler: str | None = None,
        steps: int | None = None,
        eta: float | None = None,
        interpolate: int = 0,
        use_ema: bool = True,
        strict: bool = True,
        fallback: str | None = None,
        with_keys: list[str] | None = None,
        guidance: float | None = None,
        guided: bool = False,
        classifier_scale: float | None = None,
        best_of: int | None = None,
    ) -> SampleRequest:
        """Fill in the defaults and check every value; a one-line GanjiError for anything wrong.

        `strict=False` (one --sampler/--steps for several models: `ganji fid --all`, `ganji compare`):
        a sampler this model lacks gives way to `fallback` (else its default), and --steps/--eta are
        ignored where they do not apply. Strict, they are errors. `guided`: the model has a guide run
        (`load_model(guide_run=...)`), so `guidance` is autoguidance's w, with or without components.
        `classifier_scale`: classifier guidance's s, for a request (`with_keys`) to a model loaded
        with its classifier (`load_model(classifier=True)`); `best_of`: candidates per image, kept by
        that classifier (`generate`).
        """
        cls.check_numbers(n, seed, batch_size, interpolate)
        if eta is not None and not (math.isfinite(eta) and eta >= 0):
            raise GanjiError(f"--eta must be a number >= 0 (got {eta})")
        request = cls(n=n, seed=seed, batch_size=batch_size, interpolate=interpolate, use_ema=use_ema)
        choice = _resolve_sampler(model, recipe, sampler, steps, eta, interpolate > 1, strict, fallback)
        keys, w = _resolve_condition(model, recipe, with_keys or [], guidance, guided)
        scale = check_classifier_scale(classifier_scale, bool(keys))
        k = check_best_of(best_of, bool(keys), interpolate)
        if request.images * k > MAX_IMAGES:
            raise GanjiError(f"--n {n} with --best-of {k} draws {request.images * k:,} images, over {MAX_IMAGES:,}")
        return dataclasses.replace(request, sampler=choice, condition=keys, guidance=w, classifier_scale=scale, best_of=k)

    @classmethod
    def check_numbers(cls, n: int, seed: int = 0, batch_size: int = DEFAULT_SAMPLE_BATCH, interpolate: int = 0) -> None:
        """The counts of a request, within their bounds (callers check them before loading a model, too)."""
        checks = [
            within("--n", n, 1, MAX_IMAGES),
            within("--batch-size", batch_size, 1, MAX_BATCH_SIZE),
            (0 <= seed <= MAX_SEED, f"--seed must be between 0 and {MAX_SEED:,} (got {seed})"),
            (interpolate == 0 or 2 <= interpolate <= MAX_INTERPOLATE,
             f"--interpolate must be 0 (off) or between 2 and {MAX_INTERPOLATE} (got {interpolate})"),
        ]
        for ok, message in checks:
            if not ok:
                raise GanjiError(message)
        images = cls(n=n, interpolate=interpolate).images
        if images > MAX_IMAGES:
            raise GanjiError(f"--n {n} in rows of --interpolate {interpolate} makes {images:,} images, over {MAX_IMAGES:,}")


def check_classifier_scale(scale: float | None, requested: bool) -> float:
    """Classifier guidance's s (None: off), checked: a number from 0 to MAX_GUIDANCE, for a request
    (`ganji sample` checks it before loading the classifier, `SampleRequest.resolve` again)."""
    if scale is None:
        return 0.0
    if not (math.isfinite(scale) and 0 <= scale <= MAX_GUIDANCE):
        raise GanjiError(f"--classifier-guidance must be a number from 0 to {MAX_GUIDANCE:g} (got {scale})")
    if scale and not requested:
        raise GanjiError("--classifier-guidance applies to a request for components (--with COMPONENT[:POSITION])")
    return scale


def check_best_of(best_of: int | None, requested: bool, interpolate: int = 0) -> int:
    """--best-of K (None: 1, off), checked: 1 to MAX_BEST_OF, for a request, not for interpolation
    rows (a kept candidate would break the walk)."""
    if best_of is None or best_of == 1:
        return 1
    if not 1 <= best_of <= MAX_BEST_OF:
        raise GanjiError(f"--best-of must be between 1 and {MAX_BEST_OF} (got {best_of})")
    if not requested:
        raise GanjiError("--best-of applies to a request for components (--with COMPONENT[:POSITION])")
    if interpolate > 1:
        raise GanjiError("--best-of keeps one of several candidates per image, which would break --interpolate's rows: use one or the other")
    return best_of


def _resolve_condition(model: ModelSpec, recipe: Recipe, wanted: list[str], guidance: float | None,
                       guided: bool = False) -> tuple[tuple[str, ...], float]:
    """The component keys asked for (`--with`: "魚:left", or "木" for "木:any"), checked against the
    run's vocabulary (an unknown component or position: a one-line error naming the nearest known
    keys, see ganji.data.components.request_keys), and the guidance w: classifier-free (default
    DEFAULT_GUIDANCE; 0 samples the unconditional model, bit for bit, 1 the conditional one alone),
    or with a guide run autoguidance (default DEFAULT_AUTOGUIDANCE, with or without components; 0:
    this run alone, bit for bit, and without its guide's network calls)."""
    if guidance is not None and not (math.isfinite(guidance) and 0 <= guidance <= MAX_GUIDANCE):
        raise GanjiError(f"--guidance must be a number from 0 to {MAX_GUIDANCE:g} (got {guidance})")
    default = DEFAULT_AUTOGUIDANCE if guided else DEFAULT_GUIDANCE
    if not wanted:
        if guided:
            return (), default if guidance is None else guidance
        if guidance is not None:
            raise GanjiError("--guidance applies to a request for components (--with COMPONENT[:POSITION]) or to a guide run (--guide-run)")
        return (), 0.0
    if not model.can_condition:
        able = " and ".join(m.name for m in MODELS if m.can_condition)
        raise GanjiError(f"--with applies to {able} runs trained with --condition components, not to the {model.name}")
    if not recipe.conditional:
        raise GanjiError(f"this {model.name} run was trained without components, so --with does not apply "
                         f"(train one with `ganji train {model.name} --condition components`)")
    from ganji.data.components import request_keys

    return request_keys(wanted, list(recipe.cfg.options.vocabulary)), default if guidance is None else guidance


def _resolve_sampler(
    model: ModelSpec, recipe: Recipe, name: str | None, steps: int | None, eta: float | None, interpolating: bool, strict: bool,
    fallback: str | None,
) -> SamplerChoice | None:
    sampling = model.sampling
    if not sampling.iterative:
        if strict and (name is not None or steps is not None or eta):
            raise GanjiError(f"the {model.name} model makes an image in one network pass: --sampler, --steps and --eta do not apply")
        return None
    explicit = name is not None
    found = sampling.get(name) if explicit else None
    if explicit and found is None:
        if strict:
            raise GanjiError(f"--sampler must be one of {', '.join(sampling.names())} for the {model.name} model (got {name!r})")
        explicit = False
    if not explicit:
        found = sampling.get(fallback or "") or sampling.get(sampling.default or "")
    assert found is not None, f"{model.name}'s sampling spec names no default sampler"
    if interpolating and not found.deterministic:
        if explicit:
            raise GanjiError(
                f"--sampler {found.name} draws fresh noise at every step, so nearby starting points do not give nearby "
                f"kanji: interpolate with a deterministic sampler such as {sampling.fast}"
            )
        found = sampling.get(sampling.fast or "")
        assert found is not None and found.deterministic
    if found.takes_eta:
        eta = eta or 0.0
        if interpolating and eta > 0:
            raise GanjiError("interpolation needs a deterministic sampler: leave --eta at 0")
    elif eta:
        if strict:
            raise GanjiError(f"--eta does not apply to the {found.name} sampler")
        eta = 0.0
    if not found.chooses_steps:
        if strict and steps is not None:
            raise GanjiError(f"--steps does not apply to the {found.name} sampler: it takes {recipe.model_calls(SamplerChoice(found.name))} steps")
        return SamplerChoice(found.name, None, 0.0)
    limit = recipe.max_steps(found.name)
    if not explicit and not strict and steps is not None:
        # One --steps for several models, each on its own sampler: the same network calls for each.
        steps = min(found.steps_within(steps), limit)
    steps = min(DEFAULT_SAMPLER_STEPS, limit) if steps is None else steps
    if not 1 <= steps <= limit:
        raise GanjiError(f"--steps must be between 1 and {limit} for the {found.name} sampler (got {steps})")
    return SamplerChoice(found.name, steps, eta or 0.0)


def generate(
    loaded: LoadedModel,
    request: SampleRequest,
    on_batch: Callable[[int], None] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """`request.images` images (uint8, N x C x H x W, ink bright) from a loaded model, in batches.

    With `request.best_of` K > 1, K candidates per image (starting points K·i ... K·i + K - 1 for
    image i, as a request for K·n images would draw them) and image i the candidate the run's
    noise-aware classifier gives the highest log p(request | x_0): best-of-K selection by a verifier,
    K times the sampling work. The classifier is not ComponentNet, the judge of
    `ganji fid --condition components`, but it reads the same labels (README, classifier guidance).

    on_batch(k) after each batch of k images drawn; on_step(i) after each network call of an
    iterative sampler (every image of the batch advanced one call).
    """
    recipe = loaded.recipe
    if (request.classifier_scale or request.best_of > 1) and loaded.classifier is None:
        raise GanjiError("classifier guidance and --best-of need the run's classifier: load the model with it (load_model(classifier=True))")
    guide = loaded.guide.recipe if loaded.guide is not None and request.guidance != 0 else None
    noise = make_noise(recipe, request.n * request.best_of, request.seed, request.interpolate)
    low, high = recipe.data_range
    out = []
    for b, start in enumerate(range(0, noise.shape[0], request.batch_size)):
        chunk = noise[start : start + request.batch_size]
        # Each batch's sampler noise from its own seed: the same images whatever came before.
        generator = torch.Generator(recipe.device).manual_seed((request.seed * 100_003 + b + 1) % 2**64)
        condition = recipe.condition_vector(request.condition, chunk.shape[0]) if request.condition else None
        images = recipe.generate(chunk, use_ema=request.use_ema, sampler=request.sampler, generator=generator, on_step=on_step,
                                 condition=condition, guidance=request.guidance, guide=guide,
                                 classifier=loaded.classifier, classifier_scale=request.classifier_scale)
        out.append(to_uint8(images, low, high).cpu())
        if on_batch is not None:
            on_batch(chunk.shape[0])
    images = torch.cat(out)[: noise.shape[0]]
    return images if request.best_of == 1 else _keep_best(loaded.classifier, recipe, images, request)


def _keep_best(classifier: Any, recipe: Recipe, candidates: torch.Tensor, request: SampleRequest) -> torch.Tensor:
    """Of each image's `best_of` consecutive candidates, the one the classifier reads the request in
    most surely (the first of equals)."""
    scores = torch.cat([classifier.read(chunk, recipe.condition_vector(request.condition, len(chunk))).cpu()
                        for chunk in candidates.split(request.batch_size)])
    best = scores.view(-1, request.best_of).argmax(1)
    return candidates.view(-1, request.best_of, *candidates.shape[1:])[torch.arange(len(best)), best]


def generate_tracked(loaded: LoadedModel, request: SampleRequest, track: Callable[[str, int], Callable[[int], None]],
                     label: str) -> torch.Tensor:
    """`generate`, reported to one progress bar `label` (a metrics Track) counted in network calls x
    images: per batch for one-pass models, per network call for iterative samplers."""
    calls = loaded.recipe.model_calls(request.sampler)
    advance = track(label, request.drawn * calls)
    if calls > 1:
        batch = min(request.batch_size, request.drawn)
        return generate(loaded, request, on_step=lambda _i: advance(batch))
    return generate(loaded, request, on_batch=advance)
