"""DoS-SDE and DoS-ODE multistep solvers (DESIGN §3).

The state is carried as ``x_t``; each step is the exact integral, in the
variable ``u = x0 + lam * eps``, of the SDE (or its probability-flow ODE) for a
polynomial-in-``lam`` model of ``x0_hat`` through the last one to three model
outputs. Written back in ``x`` every step is one linear combination

    x' = c_x * x + c_h * xhat0 + sum_k w_k * x0_hat_k + c_z * z

whose float64 coefficients stay moderate even where ``lam`` and ``kap`` are
~1e6 near ``t1``, so the update is safe in fp16/bf16 latents.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Optional, Sequence, Union

import torch

from .schedule import DomainShiftSchedule

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[int, int, torch.Tensor, torch.Tensor], None]

CORRECTED_THIRD_ORDER = "3-corrected"
"""Third order with ``D1`` corrected by ``D2``: exact for x0_hat quadratic in lam.

The published "order 3" uses the plain backward difference for ``D1`` and is
only second-order accurate; it stays the default because it is the paper's.
"""

ORDERS = (1, 2, 3, CORRECTED_THIRD_ORDER)


def parse_order(order: Union[int, str]) -> tuple[int, bool]:
    """``(order, corrected)`` from 1, 2, 3 or ``"3-corrected"`` (also as strings)."""
    key = str(order).strip().lower()
    if key == CORRECTED_THIRD_ORDER:
        return 3, True
    if key in ("1", "2", "3"):
        return int(key), False
    raise ValueError(f"order must be one of 1, 2, 3 or {CORRECTED_THIRD_ORDER!r}, got {order!r}")


def _x0_weights(lam_next: float, lams: Sequence[float], ode: bool, corrected: bool) -> list[float]:
    """Weights of the remembered x0_hat (newest first, at ``lams``) in u' (DESIGN §3).

    ``B``, ``C1``, ``C2`` integrate 1, ``(lam - lam_j)`` and ``(lam - lam_j)^2 / 2``
    against the SDE's (or ODE's) kernel from ``lam_j`` down to ``lam_next``;
    ``D1`` and ``D2`` are divided differences through the history.
    """
    l0, s = lams[0], lam_next
    log_r = math.log(s / l0)
    if ode:
        b, c1, c2 = 1.0 - s / l0, (s - l0) - s * log_r, (l0 * l0 - s * s + 2.0 * s * l0 * log_r) / 2.0
    else:
        b, c1, c2 = 1.0 - (s / l0) ** 2, -(s - l0) ** 2 / l0, (l0 - s) * (l0 - 3.0 * s) / 2.0 - s * s * log_r
    weights = [b] + [0.0] * (len(lams) - 1)
    if len(lams) == 1:
        return weights
    d1 = [1.0 / (l0 - lams[1]), -1.0 / (l0 - lams[1]), 0.0]
    d2 = [0.0, 0.0, 0.0]
    if len(lams) == 3:
        d1_prev = [0.0, 1.0 / (lams[1] - lams[2]), -1.0 / (lams[1] - lams[2])]
        d2 = [2.0 * (a - p) / (l0 - lams[2]) for a, p in zip(d1, d1_prev)]
        if corrected:
            d1 = [a + q * (l0 - lams[1]) / 2.0 for a, q in zip(d1, d2)]
    return [w + c1 * a + c2 * q for w, a, q in zip(weights, d1, d2)]


def _standard_normals(like: torch.Tensor, generator: Optional[torch.Generator]):
    """Endless standard-normal draws shaped like ``like``, made on the generator's device."""
    device = generator.device if generator is not None else like.device
    while True:
        z = torch.randn(like.shape, generator=generator, device=device, dtype=torch.float32)
        yield z.to(device=like.device, dtype=like.dtype)


def dos_start(lr_latent: torch.Tensor, schedule: DomainShiftSchedule,
              noise: Optional[torch.Tensor]) -> torch.Tensor:
    """Start state at the largest timestep: ``sqrt(abar) * xhat0 + sqrt(1 - abar) * noise``.

    ``noise=None`` gives the noise-free mean, the deterministic mode's start.
    """
    alpha, sigma = schedule.alpha[-1].item(), schedule.sigma[-1].item()
    x = alpha * lr_latent
    return x if noise is None else x + sigma * noise.to(lr_latent)


def solve_dos(denoiser: Denoiser, x: torch.Tensor, lr_latent: torch.Tensor,
              schedule: DomainShiftSchedule, order: Union[int, str] = 3, *,
              step_noises: Optional[Iterable[torch.Tensor]] = None,
              generator: Optional[torch.Generator] = None, ode: bool = False,
              callback: Optional[Callback] = None) -> torch.Tensor:
    """Run the solver from state ``x`` at the largest timestep down to timestep 0.

    One model evaluation per step, at every timestep but the smallest; the
    result is ``x`` at the smallest timestep (no further denoising).
    """
    max_order, corrected = parse_order(order)
    if x.shape != lr_latent.shape:
        raise ValueError(f"state {tuple(x.shape)} and LR latent {tuple(lr_latent.shape)} differ in shape")
    noises = iter(step_noises) if step_noises is not None else _standard_normals(x, generator)
    ts = schedule.timesteps.tolist()[::-1]
    lam, kap, a = (v.tolist()[::-1] for v in (schedule.lam, schedule.kap, schedule.a))
    steps = len(ts) - 1
    history: list[torch.Tensor] = []
    for i in range(steps):
        t = torch.full((x.shape[0],), ts[i], dtype=torch.long, device=x.device)
        x0_hat = denoiser(x, t).to(x)
        if callback is not None:
            callback(i, steps, x, x0_hat)
        history = [x0_hat] + history[:max_order - 1]
        weights = _x0_weights(lam[i + 1], [lam[i - k] for k in range(len(history))], ode, corrected)
        keep = (lam[i + 1] / lam[i]) ** (1 if ode else 2)
        x_next = (a[i + 1] * keep / a[i]) * x + (a[i + 1] * (kap[i + 1] - keep * kap[i])) * lr_latent
        for w, h in zip(weights, history):
            x_next = x_next + (a[i + 1] * w) * h
        if not ode:
            z = next(noises).to(x)
            x_next = x_next + (a[i + 1] * lam[i + 1] * math.sqrt(1.0 - keep)) * z
        x = x_next
    return x


def sample_dos_sde(denoiser: Denoiser, lr_latent: torch.Tensor, schedule: DomainShiftSchedule,
                   order: Union[int, str] = 3, *, noise: Optional[torch.Tensor] = None,
                   step_noises: Optional[Iterable[torch.Tensor]] = None,
                   generator: Optional[torch.Generator] = None, ode: bool = False,
                   callback: Optional[Callback] = None) -> torch.Tensor:
    """Super-resolve ``lr_latent`` (xhat0) with the DoS-SDE, or the DoS-ODE if ``ode``.

    ``denoiser(x_t, t)`` returns x0_hat for VP-space ``x_t`` and one integer
    timestep per batch item. ``noise`` starts the chain; ``step_noises`` gives
    one fresh draw per model evaluation; both default to draws from
    ``generator``. The ODE starts from the noise-free mean and draws nothing,
    so its output is the same for every seed.
    """
    if ode:
        noise = None
    elif noise is None:
        noise = next(_standard_normals(lr_latent, generator))
    x = dos_start(lr_latent, schedule, noise)
    return solve_dos(denoiser, x, lr_latent, schedule, order, step_noises=step_noises,
                     generator=generator, ode=ode, callback=callback)
