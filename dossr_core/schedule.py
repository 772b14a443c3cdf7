"""The domain-shift noise schedule of DoSSR (DESIGN §2-3).

Everything here is float64: the solver's coefficients are built from these
numbers, and near ``t1`` they span eleven orders of magnitude.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

T1 = 500
NUM_TRAIN_TIMESTEPS = 1000
BETA_START = 0.00085
BETA_END = 0.012


def sd_alphas_cumprod(num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
                      beta_start: float = BETA_START,
                      beta_end: float = BETA_END) -> torch.Tensor:
    """abar_t of Stable Diffusion's scaled-linear betas, for t = 0..T-1."""
    betas = torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end),
                           num_train_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def shift_etas(t1: int = T1, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """eta_t for t = 0..T-1: a half cosine from ~0 to ~1 over [0, t1), then exactly 1."""
    g = torch.linspace(0.001, 0.999, t1, dtype=torch.float64)
    eta = torch.ones(num_train_timesteps, dtype=torch.float64)
    eta[:t1] = (1.0 - torch.cos(math.pi * g)) / 2.0
    return eta


def respaced_timesteps(steps: int, t1: int = T1) -> list[int]:
    """``steps + 1`` ascending timesteps over [0, t1 - 1]: the authors' respacing rule.

    A running float starts at 0 and advances by ``(t1 - 1) / steps``; each value
    is rounded with Python's ``round`` (so 5 steps give 0, 100, 200, 299, 399, 499).
    """
    stride = (t1 - 1) / steps
    position, timesteps = 0.0, []
    for _ in range(steps + 1):
        timesteps.append(round(position))
        position += stride
    return timesteps


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class DomainShiftSchedule:
    """Per used timestep (ascending): abar, eta, and the solver's lam and kap.

    With ``a_t = sqrt(abar_t) * (1 - eta_t)`` the state ``x_t`` maps to
    ``u_t = x_t / a_t - kap_t * xhat0 = x0 + lam_t * eps``, a plain
    variance-exploding diffusion of the HR latent ``x0`` (DESIGN §3).
    """

    timesteps: torch.Tensor        # int64, ascending
    alphas_cumprod: torch.Tensor   # float64, per used timestep
    eta: torch.Tensor
    t1: int = T1

    @classmethod
    def for_steps(cls, steps: int, t1: int = T1,
                  num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
                  beta_start: float = BETA_START, beta_end: float = BETA_END) -> "DomainShiftSchedule":
        """The schedule the paper samples with: ``steps`` model evaluations below ``t1``."""
        _check_range("num_train_timesteps", num_train_timesteps, 2, 100_000)
        _check_range("t1", t1, 2, num_train_timesteps)
        _check_range("steps", steps, 1, t1 - 1)
        return cls.from_timesteps(respaced_timesteps(steps, t1), t1, num_train_timesteps,
                                  beta_start, beta_end)

    @classmethod
    def from_timesteps(cls, timesteps, t1: int = T1,
                       num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
                       beta_start: float = BETA_START, beta_end: float = BETA_END) -> "DomainShiftSchedule":
        """A schedule on given training timesteps (any order, distinct, all below ``t1``)."""
        _check_range("t1", t1, 2, num_train_timesteps)
        ts = sorted(int(t) for t in timesteps)
        if len(ts) < 2 or len(set(ts)) != len(ts):
            raise ValueError(f"need at least two distinct timesteps, got {ts}")
        if ts[0] < 0 or ts[-1] >= t1:
            raise ValueError(f"timesteps must lie in [0, {t1 - 1}] (below t1={t1}, where the "
                             f"shift is complete and lam is infinite), got {ts[0]}..{ts[-1]}")
        index = torch.tensor(ts, dtype=torch.long)
        abar = sd_alphas_cumprod(num_train_timesteps, beta_start, beta_end)[index]
        eta = shift_etas(t1, num_train_timesteps)[index]
        return cls(timesteps=index, alphas_cumprod=abar, eta=eta, t1=t1)

    @property
    def alpha(self) -> torch.Tensor:
        return self.alphas_cumprod.sqrt()

    @property
    def sigma(self) -> torch.Tensor:
        return (1.0 - self.alphas_cumprod).sqrt()

    @property
    def a(self) -> torch.Tensor:
        """Weight of the clean latent in x_t: ``alpha_t * (1 - eta_t)``."""
        return self.alpha * (1.0 - self.eta)

    @property
    def lam(self) -> torch.Tensor:
        """Noise level of the u-diffusion: ``sigma_t / a_t``."""
        return self.sigma / self.a

    @property
    def kap(self) -> torch.Tensor:
        """Weight of xhat0 in u: ``eta_t / (1 - eta_t)``."""
        return self.eta / (1.0 - self.eta)

    @property
    def steps(self) -> int:
        return len(self.timesteps) - 1
