"""DoSSR Apply ControlNet's start/end percent run over the DoSSR steps, not the host's 0..999.

The sigma range is checked the way the control object uses it: a step acts when the host's
sigma of its grid timestep lies inside the range, with the host's SD2 sigma table in float32
and its log-linear interpolation for fractional timesteps.
"""

import functools
import math
from fractions import Fraction

import pytest
import torch

from dossr_core.control_range import OPEN_START_SIGMA, sigma_range, timestep_range
from dossr_core.schedule import T1, respaced_timesteps, sd_alphas_cumprod

ALPHAS = sd_alphas_cumprod()
SIGMAS = ((1 - ALPHAS) / ALPHAS).sqrt().float()      # the host's ModelSamplingDiscrete table
LOG_SIGMAS = SIGMAS.log()


@functools.lru_cache(maxsize=None)
def host_sigma(t: float) -> float:
    """``ModelSamplingDiscrete.sigma``: log-linear between table entries, t clamped to the table."""
    t = torch.tensor(t, dtype=torch.float32).clamp(0, len(SIGMAS) - 1)
    low, high, w = t.floor().long(), t.ceil().long(), t.frac()
    return float(((1 - w) * LOG_SIGMAS[low] + w * LOG_SIGMAS[high]).exp())


@functools.lru_cache(maxsize=None)
def step_sigmas(steps: int) -> list[float]:
    """Host sigma of each evaluated DoSSR step, largest first (the last timestep is not run)."""
    return [float(SIGMAS[t]) for t in respaced_timesteps(steps)[::-1][:-1]]


def controlled_steps(steps: int, start: float, end: float) -> list[int]:
    """The 0-based DoSSR steps (largest timestep first) whose sigma is in the range."""
    high, low = sigma_range(start, end, host_sigma)
    return [k for k, sigma in enumerate(step_sigmas(steps)) if low <= sigma <= high]


@pytest.mark.parametrize("start, end, want", [
    (0.0, 1.0, [0, 1, 2, 3, 4]),     # the whole sampling
    (0.5, 1.0, [3, 4]),              # second half: steps at 0.6 and 0.8
    (0.0, 0.5, [0, 1, 2]),           # first half: steps at 0, 0.2 and 0.4
    (0.2, 0.2, [1]),                 # exactly one step
    (0.3, 0.35, []),                 # between two steps
    (0.1, 0.9, [1, 2, 3, 4]),
])
def test_five_steps(start, end, want):
    assert controlled_steps(5, start, end) == want


def test_a_percent_on_a_step_includes_it_from_both_sides():
    """4 steps sit at 0, 0.25, 0.5, 0.75 (the third at timestep 250, rounded from 249.5)."""
    assert controlled_steps(4, 0.5, 1.0) == [2, 3]
    assert controlled_steps(4, 0.0, 0.5) == [0, 1, 2]


def test_under_the_hosts_own_mapping_the_same_range_did_nothing():
    """What the issue reported: the host maps 0.5 to timestep 499.5, above every DoSSR step,
    so its start 0.5 kept the ControlNet on for every step, and 0..0.5 left it off."""
    host_high = host_sigma((1 - 0.5) * 999)
    assert all(float(SIGMAS[t]) <= host_high for t in respaced_timesteps(5)[1:])
    assert controlled_steps(5, 0.0, 0.5) != controlled_steps(5, 0.5, 1.0)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 6, 7, 10, 20, 33, 50, 100, 499])
def test_step_k_of_n_sits_at_k_over_n(steps):
    """Every step whose position k/n is inside [start, end] acts (exact ties included); one
    more than a timestep (1/499) outside never does; every grid size, many ranges."""
    slack = Fraction(1, T1 - 1)
    on_steps = range(steps) if steps <= 20 else range(0, steps, steps // 13)
    percents = sorted({Fraction(i, 20) for i in range(21)} | {Fraction(k, steps) for k in on_steps})
    for start in percents:
        for end in (p for p in percents if p >= start):
            got = set(controlled_steps(steps, float(start), float(end)))
            inside = set(range(max(0, math.ceil(start * steps)), math.floor(end * steps) + 1))
            near = set(range(math.ceil((start - slack) * steps), math.floor((end + slack) * steps) + 1))
            inside, near = ({k for k in ks if k < steps} for ks in (inside, near))
            assert inside <= got <= near, (steps, start, end, sorted(got))


def test_open_ends_use_the_hosts_conventions():
    assert sigma_range(0.0, 1.0, host_sigma) == (OPEN_START_SIGMA, 0.0)
    high, low = timestep_range(0.25, 0.75)
    assert high % 1 == 0.5 and low % 1 == 0.5    # never on a grid timestep


def test_start_after_end_is_refused_with_advice():
    with pytest.raises(ValueError, match=r"start_percent \(0.8\) is after end_percent \(0.2\).*"
                                         r"make start_percent <= end_percent"):
        timestep_range(0.8, 0.2)
