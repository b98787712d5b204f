"""Diffusion math: noise schedules, the forward process, and the DDPM and DDIM samplers.

References (equation numbers below are these papers'):
  [DDPM]  Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models", arXiv:2006.11239
  [IDDPM] Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models", arXiv:2102.09672
  [DDIM]  Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", arXiv:2010.02502
  [V]     Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion Models", arXiv:2202.00512
  [MSNR]  Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy", arXiv:2303.09556
  [DPM++] Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
          Models", arXiv:2211.01095

Notation [DDPM]:
  β_t    variance of the noise added at step t       α_t = 1 - β_t       ᾱ_t = Π_{s≤t} α_s
  q(x_t | x_0)          = N(√ᾱ_t x_0, (1-ᾱ_t) I)                                  (eq. 4)
  q(x_{t-1} | x_t, x_0) = N(μ̃_t(x_t, x_0), β̃_t I)                                 (eqs. 6-7)
  ε_θ(x_t, t)           the network's noise prediction
  x̂_0                   = (x_t - √(1-ᾱ_t) ε_θ) / √ᾱ_t   (eq. 4 solved for x_0; cf. eq. 15)
Timesteps are 0-based: index t = 0 is the papers' t = 1 (least noise), t = T-1 their t = T.

Sampling choices, shared by both samplers so that they agree with each other:
  * x̂_0 is clipped to the data range [-1, 1] at every step, as Ho et al.'s released sampler
    (`clip_denoised=True`) and improved-diffusion do. The last step returns x̂_0 itself, so samples
    come back inside [-1, 1]; no separate final clamp is applied here.
  * DDPM's reverse variance is σ_t² = β̃_t, the true posterior variance (eq. 7). [DDPM] §3.2 found
    β_t and β̃_t give similar results; they differ only in the last few steps (β̃_t/β_t = (1-ᾱ_{t-1})
    / (1-ᾱ_t) ≈ 1 elsewhere). The original GANji code used σ_t² = β_t with the unclipped eq. 11
    update; β̃_t is chosen here because it makes DDPM exactly DDIM with η = 1 over all T steps
    (the DDIM σ of eq. 16 with η = 1 is β̃_t), which the tests check.
  * The schedule is computed in float64 and stored in float32; the samplers do their arithmetic in
    float32 on the images (the model's output is cast to float32, e.g. when it runs under bf16
    autocast) and in Python floats (float64) for the per-step scalars.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import Tensor

__all__ = [
    "DEFAULT_DDIM_STEPS",
    "ModelFn",
    "NoiseSchedule",
    "ddim_sample",
    "ddim_timesteps",
    "ddpm_sample",
    "dpm_solver_sample",
    "eps_from_prediction",
    "min_snr_weight",
    "prediction_target",
    "q_sample",
    "ANCESTRAL",
    "sampling_steps",
]

ModelFn = Callable[[Tensor, Tensor], Tensor]  # (x_t, t LongTensor (N,)) -> predicted noise ε_θ(x_t, t)

DEFAULT_DDIM_STEPS = 50
COSINE_S = 0.008  # [IDDPM] §3.2: offset s so that β_t is not too small near t = 0
MAX_BETA = 0.999  # [IDDPM] §3.2: β_t clipped to at most 0.999 to avoid singularities near t = T
LINEAR_BETA_START, LINEAR_BETA_END = 1e-4, 0.02  # [DDPM] §4: β_1 = 1e-4 .. β_T = 0.02


@dataclass(frozen=True, eq=False)  # eq=False: compare by identity (tensor fields have no bool ==)
class NoiseSchedule:
    """The schedule's named tensors, each of length T, computed in float64 and stored in float32."""

    betas: Tensor  # β_t
    alphas: Tensor  # α_t = 1 - β_t
    alphas_cumprod: Tensor  # ᾱ_t = Π_{s≤t} α_s
    alphas_cumprod_prev: Tensor  # ᾱ_{t-1}, with ᾱ_{-1} = 1
    sqrt_alphas_cumprod: Tensor  # √ᾱ_t
    sqrt_one_minus_alphas_cumprod: Tensor  # √(1-ᾱ_t)
    posterior_variance: Tensor  # β̃_t = (1-ᾱ_{t-1}) / (1-ᾱ_t) · β_t                     (eq. 7)
    posterior_mean_coef_x0: Tensor  # √ᾱ_{t-1} β_t / (1-ᾱ_t)        μ̃_t's weight on x_0 (eq. 7)
    posterior_mean_coef_xt: Tensor  # √α_t (1-ᾱ_{t-1}) / (1-ᾱ_t)     μ̃_t's weight on x_t (eq. 7)

    @property
    def timesteps(self) -> int:
        """T, the number of diffusion steps."""
        return int(self.betas.shape[0])

    @classmethod
    def make(cls, name: str = "cosine", timesteps: int = 1024) -> NoiseSchedule:
        """Build the `cosine` or `linear` schedule over T = `timesteps` steps.

        cosine ([IDDPM] eq. 17): ᾱ(t) = f(t) / f(0), f(t) = cos²((t/T + s) / (1 + s) · π/2), s = 0.008,
            β_t = 1 - ᾱ(t+1) / ᾱ(t) clipped to at most 0.999, and ᾱ_t recomputed from the clipped β_t.
        linear ([DDPM] §4): β_t evenly spaced from 1e-4 to 0.02, whatever T is (as in the GANji
            study; [IDDPM] would rescale the endpoints by 1000/T).
        """
        if timesteps < 2:
            raise ValueError(f"timesteps must be at least 2 (got {timesteps})")
        if name == "linear":
            betas = torch.linspace(LINEAR_BETA_START, LINEAR_BETA_END, timesteps, dtype=torch.float64)
        elif name == "cosine":
            t_over_T = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
            f = torch.cos((t_over_T + COSINE_S) / (1 + COSINE_S) * math.pi / 2) ** 2
            abar = f / f[0]
            betas = (1 - abar[1:] / abar[:-1]).clamp(max=MAX_BETA)
        else:
            raise ValueError(f"unknown noise schedule {name!r}: use 'cosine' or 'linear'")
        alphas = 1 - betas
        abar = torch.cumprod(alphas, dim=0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        tensors = dict(
            betas=betas,
            alphas=alphas,
            alphas_cumprod=abar,
            alphas_cumprod_prev=abar_prev,
            sqrt_alphas_cumprod=abar.sqrt(),
            sqrt_one_minus_alphas_cumprod=(1 - abar).sqrt(),
            posterior_variance=betas * (1 - abar_prev) / (1 - abar),
            posterior_mean_coef_x0=abar_prev.sqrt() * betas / (1 - abar),
            posterior_mean_coef_xt=alphas.sqrt() * (1 - abar_prev) / (1 - abar),
        )
        return cls(**{key: value.float() for key, value in tensors.items()})

    def to(self, device: torch.device | str) -> NoiseSchedule:
        """The same schedule with every tensor on `device`."""
        return NoiseSchedule(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def _at(values: Tensor, t: Tensor) -> Tensor:
    """values[t] reshaped to (N, 1, 1, 1) to broadcast over images (a gather: no host sync)."""
    return values.gather(0, t.long()).reshape(-1, 1, 1, 1)


def q_sample(schedule: NoiseSchedule, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε   ([DDPM] eq. 4), for a batch x0 (N, C, H, W) and t (N,).

    The schedule must be on t's device (`NoiseSchedule.to`); traceable by torch.compile.
    """
    return _at(schedule.sqrt_alphas_cumprod, t) * x0 + _at(schedule.sqrt_one_minus_alphas_cumprod, t) * noise


def _predict_x0(x_t: Tensor, eps: Tensor, sqrt_abar: float, sqrt_one_minus_abar: float) -> Tensor:
    """x̂_0 = (x_t - √(1-ᾱ_t) ε̂) / √ᾱ_t   ([DDPM] eq. 4 solved for x_0), clipped to [-1, 1]."""
    return ((x_t - sqrt_one_minus_abar * eps) / sqrt_abar).clamp(-1.0, 1.0)


def _eps(model: ModelFn, x: Tensor, t: int) -> Tensor:
    """ε_θ(x_t, t) in float32, with t given to the model as a LongTensor (N,) on x's device."""
    return model(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)).float()


def _normal(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """z ~ N(0, I) shaped like x, drawn from `generator` (which must live on x's device)."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


@torch.no_grad()
def ddpm_sample(
    model: ModelFn,
    schedule: NoiseSchedule,
    x_T: Tensor,
    generator: torch.Generator | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Tensor:
    """Ancestral sampling over all T steps ([DDPM] Algorithm 2), from x_T ~ N(0, I) to x_0.

    For t = T-1 .. 0: x̂_0 from ε_θ(x_t, t) (clipped to [-1, 1]), then
        x_{t-1} = μ̃_t(x_t, x̂_0) + σ_t z,   z ~ N(0, I),  σ_t² = β̃_t,
    μ̃_t = √ᾱ_{t-1} β_t / (1-ᾱ_t) · x̂_0 + √α_t (1-ᾱ_{t-1}) / (1-ᾱ_t) · x_t   (eq. 7). With the
    unclipped x̂_0 this μ̃_t equals eq. 11's 1/√α_t (x_t - β_t/√(1-ᾱ_t) ε_θ). No noise is added at
    the last step, where μ̃_0 = x̂_0: the result is the final x_0 prediction, in [-1, 1].

    The z come from `generator`, so a seeded generator reproduces a run. The model runs under
    torch.no_grad(); on_step(i) is called after step i = 0 .. T-1.
    """
    sqrt_abar = schedule.sqrt_alphas_cumprod.tolist()
    sqrt_one_minus_abar = schedule.sqrt_one_minus_alphas_cumprod.tolist()
    coef_x0 = schedule.posterior_mean_coef_x0.tolist()
    coef_xt = schedule.posterior_mean_coef_xt.tolist()
    sigma = schedule.posterior_variance.sqrt().tolist()  # σ_t = √β̃_t
    x = x_T.float()
    for i, t in enumerate(reversed(range(schedule.timesteps))):
        eps = _eps(model, x, t)
        x0 = _predict_x0(x, eps, sqrt_abar[t], sqrt_one_minus_abar[t])
        mean = coef_x0[t] * x0 + coef_xt[t] * x  # μ̃_t(x_t, x̂_0)   (eq. 7)
        x = mean + sigma[t] * _normal(x, generator) if t > 0 else mean
        if on_step is not None:
            on_step(i)
    return x


def ddim_timesteps(timesteps: int, steps: int) -> list[int]:
    """The DDIM subsequence τ: `steps` timesteps evenly spaced from T-1 down to 0, both included.

    τ_i = round((T-1) · (S-1-i) / (S-1)) for i = 0 .. S-1 (strictly decreasing since S ≤ T); S = 1
    gives [T-1]; S = T gives every timestep. ValueError unless 1 ≤ steps ≤ T.
    """
    if not 1 <= steps <= timesteps:
        raise ValueError(f"DDIM steps must be between 1 and {timesteps} (got {steps})")
    if steps == 1:
        return [timesteps - 1]
    return [round((timesteps - 1) * (steps - 1 - i) / (steps - 1)) for i in range(steps)]


@torch.no_grad()
def ddim_sample(
    model: ModelFn,
    schedule: NoiseSchedule,
    x_T: Tensor,
    steps: int = DEFAULT_DDIM_STEPS,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Tensor:
    """DDIM sampling ([DDIM] eq. 12) over the subsequence `ddim_timesteps(T, steps)`.

    For each t in the subsequence, with t' the next (smaller) one and ᾱ_{t'} = 1 after the last:
        x̂_0 from ε_θ(x_t, t), clipped to [-1, 1];  ε̂ = (x_t - √ᾱ_t x̂_0) / √(1-ᾱ_t)
        σ   = η √((1-ᾱ_{t'}) / (1-ᾱ_t)) √(1 - ᾱ_t/ᾱ_{t'})                         (eq. 16)
        x_{t'} = √ᾱ_{t'} x̂_0 + √(1-ᾱ_{t'} - σ²) ε̂ + σ z,   z ~ N(0, I)             (eq. 12)
    ε̂ is recomputed from the clipped x̂_0 so that the update stays consistent with it (it equals
    ε_θ when nothing was clipped). eta = 0 is deterministic (no z is drawn); eta = 1 over all T
    steps is exactly `ddpm_sample`. The last step returns x̂_0, in [-1, 1].

    ValueError unless 1 ≤ steps ≤ T and eta ≥ 0. The z come from `generator`; the model runs under
    torch.no_grad(); on_step(i) is called after step i = 0 .. steps-1.
    """
    if eta < 0:
        raise ValueError(f"DDIM eta must be at least 0 (got {eta})")
    seq = ddim_timesteps(schedule.timesteps, steps)
    sqrt_abar = schedule.sqrt_alphas_cumprod.tolist()
    sqrt_one_minus_abar = schedule.sqrt_one_minus_alphas_cumprod.tolist()
    x = x_T.float()
    for i, t in enumerate(seq):
        last = i + 1 == len(seq)
        eps = _eps(model, x, t)
        x0 = _predict_x0(x, eps, sqrt_abar[t], sqrt_one_minus_abar[t])
        eps = (x - sqrt_abar[t] * x0) / sqrt_one_minus_abar[t]
        if last:
            x = x0  # ᾱ_{t'} = 1: x_{t'} = x̂_0, σ = 0
        else:
            t_next = seq[i + 1]
            one_minus_abar, one_minus_abar_next = sqrt_one_minus_abar[t] ** 2, sqrt_one_minus_abar[t_next] ** 2
            # 1 - ᾱ_t/ᾱ_{t'} = ((1-ᾱ_t) - (1-ᾱ_{t'})) / ᾱ_{t'}: precise even when ᾱ_t ≈ ᾱ_{t'} ≈ 1
            one_minus_ratio = (one_minus_abar - one_minus_abar_next) / sqrt_abar[t_next] ** 2
            sigma = eta * math.sqrt(one_minus_abar_next / one_minus_abar * max(one_minus_ratio, 0.0))
            direction = math.sqrt(max(one_minus_abar_next - sigma**2, 0.0))  # √(1-ᾱ_{t'} - σ²)
            x = sqrt_abar[t_next] * x0 + direction * eps
            if eta > 0:
                x = x + sigma * _normal(x, generator)
        if on_step is not None:
            on_step(i)
    return x


# -- what the network predicts, and how its loss is weighted -----------------------------------------
# With α_t = √ᾱ_t and σ_t = √(1-ᾱ_t), x_t = α_t x_0 + σ_t ε. The network may predict
#   eps: ε (the paper's),   x0: x_0,   v: α_t ε - σ_t x_0   ([V] §4, "v-parameterisation");
# the samplers take ε, recovered from either: ε = (x_t - α_t x̂_0) / σ_t, and from v: ε = σ_t x_t + α_t v.


def prediction_target(prediction: str, schedule: NoiseSchedule, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """The training target for the network's `prediction` (eps | x0 | v)."""
    if prediction == "eps":
        return noise
    if prediction == "x0":
        return x0
    if prediction == "v":
        return _at(schedule.sqrt_alphas_cumprod, t) * noise - _at(schedule.sqrt_one_minus_alphas_cumprod, t) * x0
    raise ValueError(f"unknown prediction {prediction!r}: use eps, x0 or v")


def eps_from_prediction(prediction: str, schedule: NoiseSchedule, out: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
    """ε̂ from the network's output `out` for `prediction` (eps | x0 | v), at x_t and t (N,)."""
    if prediction == "eps":
        return out
    alpha, sigma = _at(schedule.sqrt_alphas_cumprod, t), _at(schedule.sqrt_one_minus_alphas_cumprod, t)
    if prediction == "x0":
        return (x_t - alpha * out) / sigma
    if prediction == "v":
        return sigma * x_t + alpha * out
    raise ValueError(f"unknown prediction {prediction!r}: use eps, x0 or v")


def min_snr_weight(prediction: str, schedule: NoiseSchedule, t: Tensor, gamma: float) -> Tensor:
    """Per-sample loss weights (N,) of min-SNR-γ ([MSNR] eq. 9-10): the x_0-loss weight min(SNR_t, γ),
    with SNR_t = ᾱ_t / (1-ᾱ_t), expressed for the loss of each prediction: ÷ SNR_t for ε, ÷ (SNR_t + 1)
    for v, as is for x_0. It keeps the nearly clean timesteps from dominating the gradient."""
    abar = schedule.alphas_cumprod.gather(0, t.long())
    snr = abar / (1 - abar)
    clipped = snr.clamp(max=gamma)
    if prediction == "eps":
        return clipped / snr
    if prediction == "v":
        return clipped / (snr + 1)
    if prediction == "x0":
        return clipped
    raise ValueError(f"unknown prediction {prediction!r}: use eps, x0 or v")


@torch.no_grad()
def dpm_solver_sample(
    model: ModelFn,
    schedule: NoiseSchedule,
    x_T: Tensor,
    steps: int = DEFAULT_DDIM_STEPS,
    on_step: Callable[[int], None] | None = None,
) -> Tensor:
    """DPM-Solver++(2M) ([DPM++] Algorithm 2): a second-order multistep solver of the probability-flow
    ODE in data prediction, over the subsequence `ddim_timesteps(T, steps)` (one network call each).

    With λ_t = log(α_t / σ_t), h_i = λ_{t_i} - λ_{t_{i-1}}, and x̂_0 from ε_θ (clipped to [-1, 1], as
    the other samplers):
        first step:  x_{t_i} = (σ_{t_i} / σ_{t_{i-1}}) x_{t_{i-1}} - α_{t_i} (e^{-h_i} - 1) x̂_0^{(i-1)}
        then, with r = h_{i-1} / h_i and D = (1 + 1/(2r)) x̂_0^{(i-1)} - 1/(2r) x̂_0^{(i-2)}, the same
        update with D in place of x̂_0^{(i-1)};
        the last update (into t = 0) is first order again: its h is several times the one before, and
        the extrapolation D overshoots (on Gaussian data with exact ε̂, 20 steps: error 0.041 with it,
        0.006 without, against DDIM's 0.024; diffusers' DPMSolverMultistep does the same,
        `lower_order_final`).
    The call at the last timestep (t = 0) returns its x̂_0, as DDIM does. Deterministic; on_step(i)
    after each of the `steps` network calls.
    """
    seq = ddim_timesteps(schedule.timesteps, steps)
    sqrt_abar = schedule.sqrt_alphas_cumprod.tolist()
    sqrt_one_minus_abar = schedule.sqrt_one_minus_alphas_cumprod.tolist()
    lam = [math.log(a / s) for a, s in zip(sqrt_abar, sqrt_one_minus_abar)]  # λ_t
    x = x_T.float()
    x0_prev: Tensor | None = None
    for i, t in enumerate(seq):
        x0 = _predict_x0(x, _eps(model, x, t), sqrt_abar[t], sqrt_one_minus_abar[t])
        if on_step is not None:
            on_step(i)
        if i + 1 == len(seq):
            return x0
        t_next = seq[i + 1]
        h = lam[t_next] - lam[t]
        d = x0
        if x0_prev is not None and i + 2 < len(seq):
            r = (lam[t] - lam[seq[i - 1]]) / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
        x = (sqrt_one_minus_abar[t_next] / sqrt_one_minus_abar[t]) * x - sqrt_abar[t_next] * math.expm1(-h) * d
        x0_prev = x0
    return x


ANCESTRAL = ("ancestral", "ddpm")  # Algorithm 2's sampler; `ddpm` is its old name


def sampling_steps(sampler: str, steps: int | None, schedule: NoiseSchedule) -> int:
    """How many model calls a sampler makes per batch: ancestral → T; ddim → `steps` (default 50)."""
    if sampler in ANCESTRAL:
        return schedule.timesteps
    if sampler in ("ddim", "dpm"):
        return DEFAULT_DDIM_STEPS if steps is None else steps
    raise ValueError(f"unknown sampler {sampler!r}: use 'ancestral' (or 'ddpm'), 'ddim' or 'dpm'")
