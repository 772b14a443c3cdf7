"""The domain-shift schedule against the recorded sampler and DESIGN §2-3."""

import math

import pytest
import torch

from dossr_core.schedule import DomainShiftSchedule, respaced_timesteps
from tests.conftest import load_golden


def test_paper_grid_for_five_steps():
    assert respaced_timesteps(5) == [0, 100, 200, 299, 399, 499]
    assert DomainShiftSchedule.for_steps(5).timesteps.tolist() == [0, 100, 200, 299, 399, 499]


@pytest.mark.parametrize("case", range(5))
def test_matches_recorded_schedule(case):
    ref = load_golden("dos_sde_reference.json")["cases"][case]
    s = DomainShiftSchedule.for_steps(ref["steps"])
    f64 = lambda v: torch.tensor(v, dtype=torch.float64)
    assert s.timesteps.tolist() == ref["timesteps"]
    assert torch.allclose(s.alphas_cumprod, f64(ref["alphas_cumprod"]), rtol=1e-14, atol=0)
    assert torch.allclose(s.eta, f64(ref["etas"]), rtol=1e-14, atol=1e-20)
    assert torch.allclose(s.lam, f64(ref["lambdas"]), rtol=1e-13, atol=0)


def test_quantities_follow_their_definitions():
    s = DomainShiftSchedule.for_steps(7)
    assert s.alphas_cumprod.dtype == s.eta.dtype == s.lam.dtype == s.kap.dtype == torch.float64
    alpha, sigma = s.alphas_cumprod.sqrt(), (1 - s.alphas_cumprod).sqrt()
    assert torch.allclose(s.lam, sigma / (alpha * (1 - s.eta)), rtol=1e-15)
    assert torch.allclose(s.kap, s.eta / (1 - s.eta), rtol=1e-15)
    # eta is the half cosine of linspace(0.001, 0.999, t1) at the used timesteps
    g = 0.001 + s.timesteps.double() * (0.998 / 499)
    assert torch.allclose(s.eta, (1 - torch.cos(math.pi * g)) / 2, rtol=1e-12)
    # noise level grows with t
    assert bool((s.lam[1:] > s.lam[:-1]).all())


@pytest.mark.parametrize("kwargs, needle", [
    (dict(steps=0), "steps must be an integer in [1, 499]"),
    (dict(steps=500), "steps must be an integer in [1, 499]"),
    (dict(steps=2.5), "steps must be an integer"),
    (dict(steps=5, t1=1), "t1 must be an integer in [2, 1000]"),
    (dict(steps=5, t1=1001), "t1 must be an integer in [2, 1000]"),
])
def test_bad_arguments_say_the_allowed_range(kwargs, needle):
    with pytest.raises(ValueError) as err:
        DomainShiftSchedule.for_steps(**kwargs)
    assert needle in str(err.value)


def test_from_timesteps_refuses_t1_and_beyond():
    with pytest.raises(ValueError, match="below t1=500"):
        DomainShiftSchedule.from_timesteps([0, 250, 500])
    with pytest.raises(ValueError, match="distinct"):
        DomainShiftSchedule.from_timesteps([10, 10])
    assert DomainShiftSchedule.from_timesteps([499, 0, 250]).timesteps.tolist() == [0, 250, 499]


def test_repo_copy_of_reference_data_is_current():
    from tests.conftest import SHARED_GOLDEN, golden_dir
    if not SHARED_GOLDEN.exists():
        pytest.skip("no ../shared/golden beside this checkout to compare with")
    for src in SHARED_GOLDEN.glob("*.json"):
        assert (golden_dir() / src.name).read_bytes() == src.read_bytes(), src.name
