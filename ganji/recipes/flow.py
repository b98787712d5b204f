"""Training and sampling a rectified flow (flow matching) on the DDPM's U-Net.

References:
  [RF]  Liu, Gong & Liu 2023, "Flow Straight and Fast: Learning to Generate and Transfer Data with
        Rectified Flow", arXiv:2209.03003
  [FM]  Lipman et al. 2023, "Flow Matching for Generative Modeling", arXiv:2210.02747
  [SD3] Esser et al. 2024, "Scaling Rectified Flow Transformers for High-Resolution Image
        Synthesis", arXiv:2403.03206 (logit-normal t, §3.1)
  [EDM] Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models",
        arXiv:2206.00364 (Heun's method, Algorithm 1)
  [DDPM] Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models", arXiv:2006.11239
  [CG]  Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis", arXiv:2105.05233
        (classifier guidance, §4)
  [JiT] Li & He 2025, "Back to Basics: Let Denoising Generative Models Denoise", arXiv:2511.13720
        (x-prediction with the velocity loss, §4)

Notation: x_0 a real image in [-1, 1], ε ~ N(0, I), t ∈ [0, 1] (0 = data, 1 = noise).
  x_t = (1 - t) x_0 + t ε                      the straight path between them ([RF] eq. 1)
  v   = dx_t/dt = ε - x_0                      its velocity, the regression target
  loss ‖v_θ(x_t, t) - (ε - x_0)‖²              conditional flow matching ([FM] eq. 23 with σ_min = 0)
  t ~ logit-normal(0, 1): t = sigmoid(n), n ~ N(0, 1) (more training where the path is hardest,
      [SD3]), or t ~ U(0, 1) (`--time-sampling uniform`, as in [RF]).
  `--prediction x0`: the network outputs the clean image x̂_0 instead ([JiT]), read as the velocity
      v_θ = (x_t - x̂_0) / t (on the path, v = (x_t - x_0) / t; t clamped to T_MIN in training), and
      trained with the same loss on it: the network only has to draw kanji (mostly paper), not noise.
      `x0-tanh`: x̂_0 = tanh(output), so that it stays in the images' range [-1, 1] and paper can be
      exactly paper.
  `--edge-margin m`: the images' two exact values, paper (-1) and full ink (+1), are trained at
      -1 - m and +1 + m, the rest unchanged (the edge bins of [DDPM]'s discrete decoder, §3.3, which
      reach to ±∞, in the same spirit). Sampling already clamps to [-1, 1] before quantising, so a
      sample that lands within m of where paper was trained is exactly paper: without it, a velocity
      slightly off leaves faint grey on much of the paper (README, "What we tried").
Classifier guidance ([CG], `--classifier-guidance s` with a request): on this path the score is
  ∇ log p_t(x_t) = -ε̂ / t, and ε̂ = x_t + (1 - t) v_θ, so adding s ∇ log p_φ(y | x_t) to the score
  ([CG] §4) changes the velocity to
  v' = v_θ - s · t / (1 - t) · ∇ log p_φ(y | x_t)     (1 - t clamped to CG_EDGE: at t = 1 it is 0)
  with p_φ the run's noise-aware component classifier (ganji.features.noisy_component_net).
Sampling integrates dx/dt = v_θ(x, t) from x_1 ~ N(0, I) at t = 1 down to t = 0 on `steps` equal
steps: `euler` (one network call per step) or `heun` (Heun's second-order method, [EDM]
Algorithm 1: two calls per step, one on the last). Both are deterministic, so nearby
starting points give nearby kanji (interpolation).

The network is the DDPM's U-Net (ganji.models.unet), its time input TIME_SCALE · t, so that the
sinusoidal embedding sees the same range of values as the DDPM's integer timesteps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ganji.recipes.base import OnStep
from ganji.recipes.registry import DEFAULT_SAMPLER_STEPS, FlowOptions, SamplerChoice
from ganji.recipes.unet_recipe import UNetRecipe

if TYPE_CHECKING:
    from ganji.features.noisy_component_net import FlowClassifier

TIME_SCALE = 1000.0
T_MIN = 0.05  # x0 prediction: the velocity's 1/t is capped here ([JiT] clips the same way)
CG_EDGE = 0.05  # classifier guidance: 1 - t is clamped here, so the first step (t = 1) gets a finite push

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t (N,) in [0, 1]) -> v_θ(x_t, t)


def sample_time(n: int, kind: str, device: torch.device) -> torch.Tensor:
    """n training times in (0, 1): logit-normal(0, 1) ([SD3] §3.1) or uniform ([RF])."""
    if kind == "logit-normal":
        return torch.sigmoid(torch.randn(n, device=device))
    if kind == "uniform":
        return torch.rand(n, device=device)
    raise ValueError(f"unknown time sampling {kind!r}")


def widen_edges(x0: torch.Tensor, margin: float) -> torch.Tensor:
    """x_0 with exact paper (-1) moved to -1 - margin and exact ink (+1) to 1 + margin (`--edge-margin`)."""
    if margin == 0:
        return x0
    return x0 + margin * ((x0 >= 1).to(x0.dtype) - (x0 <= -1).to(x0.dtype))


def interpolate_path(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x_0 + t ε ([RF] eq. 1), for a batch x0 and t (N,)."""
    t = t.reshape(-1, 1, 1, 1).to(x0.dtype)
    return (1 - t) * x0 + t * noise


@torch.no_grad()
def euler_sample(velocity: Velocity, x1: torch.Tensor, steps: int, on_step: Callable[[int], None] | None = None) -> torch.Tensor:
    """x_{t-h} = x_t - h v_θ(x_t, t) from t = 1 to 0 in `steps` equal steps h = 1/steps."""
    x = x1.float()
    times = torch.linspace(1.0, 0.0, steps + 1).tolist()
    for i in range(steps):
        t, t_next = times[i], times[i + 1]
        x = x + (t_next - t) * velocity(x, _full(x, t))
        if on_step is not None:
            on_step(i)
    return x


@torch.no_grad()
def heun_sample(velocity: Velocity, x1: torch.Tensor, steps: int, on_step: Callable[[int], None] | None = None) -> torch.Tensor:
    """Heun's method ([EDM] Algorithm 1): an Euler step to x', then the step again with the mean of
    the velocities at both ends, except on the last step to t = 0, which stays an Euler step (as in
    [EDM]: the velocity at t = 0 is where the path ends, x_0 itself is the answer). 2·steps - 1
    network calls; on_step after each."""
    x = x1.float()
    times = torch.linspace(1.0, 0.0, steps + 1).tolist()
    calls = 0

    def called() -> None:
        nonlocal calls
        if on_step is not None:
            on_step(calls)
        calls += 1

    for i in range(steps):
        t, t_next = times[i], times[i + 1]
        h = t_next - t
        d = velocity(x, _full(x, t))
        called()
        x_euler = x + h * d
        if t_next == 0.0:
            x = x_euler
        else:
            d_next = velocity(x_euler, _full(x, t_next))
            called()
            x = x + h * 0.5 * (d + d_next)
    return x


def velocity_from_x0(x0_hat: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, t_min: float = T_MIN) -> torch.Tensor:
    """v = (x_t - x̂_0) / t, t (N,) clamped to `t_min` ([JiT] §4: x-prediction read as a velocity).

    The clamp is for training, where t can come arbitrarily close to 0. Sampling divides by the true
    t (never 0 there: the last step evaluates at t = 1/steps), so that an Euler step from t to 0
    lands exactly on x̂_0; clamped, a step from t < T_MIN would keep part of the noise."""
    return (x_t - x0_hat) / t.clamp_min(t_min).reshape(-1, 1, 1, 1).to(x_t.dtype)


def read_output(output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, prediction: str, t_min: float = T_MIN) -> torch.Tensor:
    """The velocity the network's output stands for, by `--prediction` (module docstring)."""
    if prediction == "velocity":
        return output
    return velocity_from_x0(torch.tanh(output) if prediction == "x0-tanh" else output, x_t, t, t_min)


def classifier_guided(velocity: Velocity, grad_log_prob: Velocity, scale: float) -> Velocity:
    """v' = v_θ - s · t / (1 - t) · ∇ log p_φ(y | x_t) (module docstring, [CG] §4 on the flow's path),
    `grad_log_prob(x_t, t)` the classifier's gradient for the request."""

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        weight = (t / (1 - t).clamp_min(CG_EDGE)).reshape(-1, 1, 1, 1).to(x.dtype)
        return velocity(x, t) - scale * weight * grad_log_prob(x, t)

    return guided


def _full(x: torch.Tensor, t: float) -> torch.Tensor:
    return torch.full((x.shape[0],), t, dtype=torch.float32, device=x.device)


class FlowRecipe(UNetRecipe):
    model_name = "flow"
    output_options = ("prediction", "edge_margin")

    def train_step(self, x: torch.Tensor, labels: torch.Tensor | None = None, made_up: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        o: FlowOptions = self.cfg.options
        # t and ε for the global batch, this rank's slice (see ganji.runtime.distributed).
        t = self.world.draw(x.shape[0], lambda m: sample_time(m, o.time_sampling, self.device))
        noise = self.draw_noise(x)
        x = widen_edges(x, o.edge_margin)
        x_t = interpolate_path(x, noise, t)
        cond = self.training_condition(labels, made_up)
        with self.precision.autocast():
            pred = self._forward(x_t, t * TIME_SCALE) if cond is None else self._forward(x_t, t * TIME_SCALE, cond)
        loss = F.mse_loss(read_output(pred.float(), x_t, t, o.prediction), noise - x)
        self.optimise("unet", loss)
        return {"loss": loss.detach()}

    def sample(self, net: nn.Module, noise: torch.Tensor, sampler: SamplerChoice | None, generator: torch.Generator | None,
               on_step: OnStep | None, condition: torch.Tensor | None = None, guidance: float = 0.0,
               guide: nn.Module | None = None, classifier: FlowClassifier | None = None, classifier_scale: float = 0.0) -> torch.Tensor:
        sampler = sampler or SamplerChoice("euler", DEFAULT_SAMPLER_STEPS)
        output, prediction = self.network_fn(net, TIME_SCALE, condition, guidance, guide), self.cfg.options.prediction
        # Guidance mixes the network's outputs (for x0, the clean images) as it would velocities.
        velocity = output if prediction == "velocity" else lambda x, t: read_output(output(x, t), x, t, prediction, t_min=1e-6)
        if classifier is not None and classifier_scale != 0 and condition is not None:
            wanted = condition
            velocity = classifier_guided(velocity, lambda x, t: classifier.grad_log_prob(x, t, wanted), classifier_scale)
        if sampler.name == "euler":
            return euler_sample(velocity, noise, sampler.steps or DEFAULT_SAMPLER_STEPS, on_step)
        if sampler.name == "heun":
            return heun_sample(velocity, noise, sampler.steps or DEFAULT_SAMPLER_STEPS, on_step)
        raise ValueError(f"unknown flow sampler {sampler.name!r}")

    def model_calls(self, sampler: SamplerChoice | None) -> int:
        sampler = sampler or SamplerChoice("euler", DEFAULT_SAMPLER_STEPS)
        steps = sampler.steps or DEFAULT_SAMPLER_STEPS
        return 2 * steps - 1 if sampler.name == "heun" else steps

    def plain_eager_step(self, x: torch.Tensor) -> Callable[[], torch.Tensor]:
        x = x.float().contiguous()
        logit_normal = self.cfg.options.time_sampling == "logit-normal"
        prediction, margin = self.cfg.options.prediction, self.cfg.options.edge_margin

        def loss(unet: nn.Module) -> torch.Tensor:
            # [FM] eq. 23 on [RF]'s straight path: ‖v_θ((1-t) x₀ + t ε, t) - (ε - x₀)‖², t = σ(n) or U(0, 1).
            t = (torch.sigmoid(torch.randn(len(x), device=x.device)) if logit_normal else torch.rand(len(x), device=x.device)).view(-1, 1, 1, 1)
            noise = torch.randn_like(x)
            x0 = widen_edges(x, margin)
            x_t = (1 - t) * x0 + t * noise
            out = unet(x_t, t.flatten() * TIME_SCALE)
            return F.mse_loss(read_output(out, x_t, t.flatten(), prediction), noise - x0)

        return self.plain_adam_step("unet", loss)

    @staticmethod
    def describe(o: FlowOptions) -> str:
        target = {"velocity": "", "x0": ", x0 prediction", "x0-tanh": ", x0 prediction through tanh"}[o.prediction]
        margin = f", edge margin {o.edge_margin:g}" if o.edge_margin else ""
        return f"U-Net width {o.base_width}{' + attention' if o.attention else ''}, rectified flow{target}, {o.time_sampling} t{margin}{o.describe_condition()}"
