"""Which DoSSR steps a ControlNet's start/end percent covers (DESIGN §3, §5).

The host reads a ControlNet's percent over its whole 0..999 schedule, but every DoSSR
step lies below t1 = 500, so there any start under about 0.5 would do nothing. Here the
percent runs over the DoSSR steps instead: 0 is the first step (timestep t1 - 1), 1 the
end of sampling (timestep 0), and step k of n sits at k / n, as the respacing rule places
it. Both ends are inclusive, as in the host.

The result is a range of timesteps whose ends lie half-way between integers, so that a
grid timestep never sits on a boundary: the host compares sigmas, and a boundary on a
table value would make the answer depend on float rounding.
"""

from __future__ import annotations

import math
from typing import Callable

from .schedule import T1

#: Host convention for an open start: a sigma above any schedule's (``percent_to_sigma(0)``).
OPEN_START_SIGMA = 999999999.9


def percent_to_timestep(percent: float, t1: int = T1) -> float:
    """The DoSSR timestep *percent* of the way through sampling: t1 - 1 at 0, 0 at 1."""
    return (1.0 - percent) * (t1 - 1)


def timestep_range(start: float, end: float, t1: int = T1) -> tuple[float, float]:
    """(highest, lowest) timestep the control acts on, each half-way between integers.

    A step is in when its timestep, once rounded to the grid, is the rounded timestep of
    a percent in [start, end]; ``inf`` / ``-inf`` for an open end (start <= 0, end >= 1).
    ValueError when start is after end: the control would act on no step.
    """
    if start > end:
        raise ValueError(f"start_percent ({start:g}) is after end_percent ({end:g}), so the "
                         f"ControlNet would act on no step: make start_percent <= end_percent "
                         f"(0 = the first DoSSR step, 1 = the last).")
    high = math.inf if start <= 0 else math.floor(percent_to_timestep(start, t1) + 0.5) + 0.5
    low = -math.inf if end >= 1 else math.ceil(percent_to_timestep(end, t1) - 0.5) - 0.5
    return high, low


def sigma_range(start: float, end: float, sigma_of: Callable[[float], float],
                t1: int = T1) -> tuple[float, float]:
    """(highest, lowest) sigma of :func:`timestep_range`, in the host's ``timestep_range``
    form, ``sigma_of`` mapping a (fractional) timestep to the model's sigma."""
    high, low = timestep_range(start, end, t1)
    return (OPEN_START_SIGMA if math.isinf(high) else float(sigma_of(high)),
            0.0 if math.isinf(low) else float(sigma_of(low)))
