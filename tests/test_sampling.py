"""DoS-SDE/ODE solvers: recorded trajectories, Gaussian analytics, polynomial exactness."""

import math

import pytest
import torch

from dossr_core.sampling import (CORRECTED_THIRD_ORDER, parse_order, sample_dos_sde,
                                 solve_dos)
from dossr_core.schedule import DomainShiftSchedule, sd_alphas_cumprod
from tests.conftest import load_golden

ABAR = sd_alphas_cumprod()


def _per_item(v, x):
    return v.view(-1, *[1] * (x.dim() - 1))


def toy_denoiser(float32_lookup: bool):
    """The recorded toy eps-model, turned into x0 as the reference data says.

    ``float32_lookup`` rounds the two coefficients to float32 as the authors'
    ``_extract_into_tensor(...).float()`` does; it makes agreement exact.
    """
    def denoise(x, t):
        tt = _per_item(t.double(), x)
        eps = torch.tanh(0.7 * x) * (0.5 + tt / 1000) + 0.2 * torch.sin(3 * x + tt / 1000)
        abar = _per_item(ABAR[t], x)
        if float32_lookup:
            return (1 / abar).sqrt().float().double() * x - (1 / abar - 1).sqrt().float().double() * eps
        return (x - (1 - abar).sqrt() * eps) / abar.sqrt()
    return denoise


def _run_recorded(case, float32_lookup):
    shape = case["shape"]
    f64 = lambda v: torch.tensor(v, dtype=torch.float64).view(shape)
    out = sample_dos_sde(toy_denoiser(float32_lookup), f64(case["lr_latent"]),
                         DomainShiftSchedule.for_steps(case["steps"]), case["order"],
                         noise=f64(case["noises"][0]),
                         step_noises=[f64(n) for n in case["noises"][1:]])
    return out, f64(case["output"])


@pytest.mark.parametrize("case", range(5))
def test_reproduces_recorded_trajectories(case):
    ref = load_golden("dos_sde_reference.json")["cases"][case]
    out, expected = _run_recorded(ref, float32_lookup=False)
    assert out.dtype == torch.float64
    assert (out - expected).abs().max() <= 1e-6 * expected.abs().max()


@pytest.mark.parametrize("case", range(5))
def test_matches_recorded_trajectories_to_machine_precision(case):
    ref = load_golden("dos_sde_reference.json")["cases"][case]
    out, expected = _run_recorded(ref, float32_lookup=True)
    assert (out - expected).abs().max() <= 1e-12 * expected.abs().max()


# --- a Gaussian prior with its exact posterior-mean denoiser -----------------

M = torch.tensor([0.3, -0.5, 1.0, 0.0], dtype=torch.float64).view(1, 4, 1, 1)
S = torch.tensor([0.5, 1.0, 0.6, 0.8], dtype=torch.float64).view(1, 4, 1, 1)


def gaussian_posterior_denoiser(schedule, xhat0):
    """E[x0 | x_t] for x0 ~ N(M, S^2), written independently of the solver."""
    by_t = {int(t): i for i, t in enumerate(schedule.timesteps)}

    def denoise(x, t):
        i = by_t[int(t[0])]
        abar, eta = schedule.alphas_cumprod[i].item(), schedule.eta[i].item()
        alpha, sigma = math.sqrt(abar), math.sqrt(1 - abar)
        # x = alpha((1-eta) x0 + eta xhat0) + sigma eps
        y = (x - alpha * eta * xhat0) / (alpha * (1 - eta))   # = x0 + lam eps
        lam2 = (sigma / (alpha * (1 - eta))) ** 2
        return M + S ** 2 / (S ** 2 + lam2) * (y - M)
    return denoise


def analytic_marginal_at_zero(schedule, xhat0):
    abar, eta = schedule.alphas_cumprod[0].item(), schedule.eta[0].item()
    alpha, sigma = math.sqrt(abar), math.sqrt(1 - abar)
    mean = alpha * ((1 - eta) * M + eta * xhat0)
    var = (alpha * (1 - eta) * S) ** 2 + sigma ** 2
    return mean, var


def _channel_stats(x):
    return x.mean(dim=(0, 2, 3), keepdim=True), x.var(dim=(0, 2, 3), keepdim=True)


@pytest.mark.parametrize("order", [1, 2, 3, CORRECTED_THIRD_ORDER])
def test_sde_many_steps_reproduces_gaussian_marginal(order):
    """Every timestep below t1; first order keeps an O(h) variance deficit of ~2 % here."""
    schedule = DomainShiftSchedule.for_steps(499)
    xhat0 = torch.full((16, 4, 48, 48), 0.7, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    out = sample_dos_sde(gaussian_posterior_denoiser(schedule, xhat0), xhat0, schedule, order,
                         generator=g)
    mean, var = _channel_stats(out)
    want_mean, want_var = analytic_marginal_at_zero(schedule, xhat0[:1, :, :1, :1])
    n = out.numel() / 4
    assert torch.all((mean - want_mean).abs() < 5 * want_var.sqrt() / math.sqrt(n))
    assert torch.all((var / want_var - 1).abs() < 5 * math.sqrt(2 / n))


@pytest.mark.parametrize("order", [1, 2, 3, CORRECTED_THIRD_ORDER])
def test_ode_is_seed_free_and_lands_on_the_analytic_mean(order):
    schedule = DomainShiftSchedule.for_steps(100)
    xhat0 = torch.full((1, 4, 2, 2), -0.4, dtype=torch.float64)
    den = gaussian_posterior_denoiser(schedule, xhat0)
    a = sample_dos_sde(den, xhat0, schedule, order, ode=True, generator=torch.Generator().manual_seed(3))
    b = sample_dos_sde(den, xhat0, schedule, order, ode=True, noise=torch.randn_like(xhat0) * 5)
    assert torch.equal(a, b)
    want_mean, _ = analytic_marginal_at_zero(schedule, xhat0)
    assert torch.allclose(a, want_mean.expand_as(a), atol=1e-4)


def test_ode_from_random_starts_keeps_the_marginal():
    """The probability-flow ODE maps the start distribution onto the right marginal."""
    schedule = DomainShiftSchedule.for_steps(100)
    xhat0 = torch.full((16, 4, 48, 48), 0.2, dtype=torch.float64)
    noise = torch.randn(xhat0.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x = schedule.alpha[-1].item() * xhat0 + schedule.sigma[-1].item() * noise
    out = solve_dos(gaussian_posterior_denoiser(schedule, xhat0), x, xhat0, schedule, 2, ode=True)
    mean, var = _channel_stats(out)
    want_mean, want_var = analytic_marginal_at_zero(schedule, xhat0[:1, :, :1, :1])
    n = out.numel() / 4
    assert torch.all((mean - want_mean).abs() < 5 * want_var.sqrt() / math.sqrt(n))
    assert torch.all((var / want_var - 1).abs() < 5 * math.sqrt(2 / n))


# --- polynomial exactness ----------------------------------------------------

COEFFS = (0.5, -0.8, 0.3)   # x0_hat = c0 + c1 lam + c2 lam^2


def _exact_step(u, lam_t, lam_s, coeffs, ode):
    """Closed-form transport of u from lam_t to lam_s under x0_hat = polynomial(lam)."""
    c0, c1, c2 = coeffs
    if ode:   # du/dlam = (u - x0)/lam
        integral = c0 * (1 / lam_s - 1 / lam_t) + c1 * math.log(lam_t / lam_s) + c2 * (lam_t - lam_s)
        return lam_s / lam_t * u + lam_s * integral
    # mean of the SDE: u_s = r^2 u_t + lam_s^2 int 2 x0(l) / l^3 dl
    integral = (c0 * (1 / lam_s ** 2 - 1 / lam_t ** 2) + 2 * c1 * (1 / lam_s - 1 / lam_t)
                + 2 * c2 * math.log(lam_t / lam_s))
    return (lam_s / lam_t) ** 2 * u + lam_s ** 2 * integral


def _step_errors(order, coeffs, ode):
    """Largest relative error of each solver step against the exact transport."""
    schedule = DomainShiftSchedule.from_timesteps([0, 40, 90, 140, 200, 260, 320])
    lam_of = {int(t): l for t, l in zip(schedule.timesteps, schedule.lam.tolist())}
    xhat0 = torch.linspace(-1, 1, 8, dtype=torch.float64).view(1, 2, 2, 2)

    def denoise(x, t):
        lam = lam_of[int(t[0])]
        return torch.full_like(x, coeffs[0] + coeffs[1] * lam + coeffs[2] * lam ** 2)

    states = []
    x = schedule.alpha[-1].item() * xhat0 + 0.3
    out = solve_dos(denoise, x, xhat0, schedule, order, ode=ode,
                    step_noises=[torch.zeros_like(xhat0)] * schedule.steps,
                    callback=lambda i, n, x_t, x0: states.append(x_t))
    states.append(out)
    lam, kap, a = (v.tolist()[::-1] for v in (schedule.lam, schedule.kap, schedule.a))
    errors = []
    for i in range(schedule.steps):
        u = states[i] / a[i] - kap[i] * xhat0
        u_next = _exact_step(u, lam[i], lam[i + 1], coeffs, ode)
        want = a[i + 1] * (u_next + kap[i + 1] * xhat0)
        errors.append(((states[i + 1] - want).abs().max() / want.abs().max()).item())
    return errors


@pytest.mark.parametrize("ode", [False, True])
def test_corrected_third_order_is_exact_for_quadratic_x0(ode):
    errors = _step_errors(CORRECTED_THIRD_ORDER, COEFFS, ode)
    assert max(errors[2:]) < 1e-12          # from the third step on, full history
    published = _step_errors(3, COEFFS, ode)
    assert max(published[2:]) > 1e-4       # the published rule is not


@pytest.mark.parametrize("ode", [False, True])
@pytest.mark.parametrize("order, coeffs, warm", [(1, (0.5, 0, 0), 0), (2, (0.5, -0.8, 0), 1),
                                                 (3, (0.5, -0.8, 0), 1)])
def test_each_order_is_exact_for_its_polynomial(order, coeffs, warm, ode):
    errors = _step_errors(order, coeffs, ode)
    assert max(errors[warm:]) < 1e-12


def test_warm_up_lowers_the_order_while_history_is_short():
    """Step 1 of order 2/3 equals order 1; step 2 of order 3 equals order 2."""
    e1, e2, e3 = (_step_errors(o, COEFFS, False) for o in (1, 2, 3))
    assert e2[0] == e1[0] and e3[0] == e1[0]
    assert e3[1] == e2[1]
    assert e3[2] != e2[2]


# --- the contract: noises, callback, dtype ----------------------------------

def _toy_setup(steps=5, dtype=torch.float32):
    schedule = DomainShiftSchedule.for_steps(steps)
    xhat0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)).to(dtype)
    return schedule, xhat0


def test_one_step_noise_per_model_evaluation_and_callback():
    schedule, xhat0 = _toy_setup(steps=5)
    taken, calls = [], []

    def noises():
        while True:
            taken.append(1)
            yield torch.zeros_like(xhat0)

    def denoise(x, t):
        assert t.dtype == torch.long and t.shape == (2,)
        return x * 0.5

    sample_dos_sde(denoise, xhat0, schedule, 3, noise=torch.zeros_like(xhat0), step_noises=noises(),
                   callback=lambda i, n, x, x0: calls.append((i, n, x.shape, x0.shape)))
    assert len(taken) == 5
    assert [c[0] for c in calls] == [0, 1, 2, 3, 4] and all(c[1] == 5 for c in calls)


def test_generator_makes_runs_repeatable_and_seeds_differ():
    schedule, xhat0 = _toy_setup()
    den = toy_denoiser(False)
    den32 = lambda x, t: den(x.double(), t).float()
    run = lambda seed: sample_dos_sde(den32, xhat0, schedule, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(7), run(7))
    assert not torch.allclose(run(7), run(8))


@pytest.mark.parametrize("dtype, tol", [(torch.float16, 2e-2), (torch.bfloat16, 8e-2)])
def test_low_precision_latents_stay_finite_and_close(dtype, tol):
    """Near t1 lam and kap are ~1e6; the x-space coefficients keep fp16 in range."""
    schedule, xhat0 = _toy_setup(dtype=torch.float64)
    noise = torch.randn(xhat0.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    zs = [torch.randn(xhat0.shape, generator=torch.Generator().manual_seed(10 + k), dtype=torch.float64)
          for k in range(5)]
    den = toy_denoiser(False)
    ref = sample_dos_sde(den, xhat0, schedule, 3, noise=noise, step_noises=zs)
    low = sample_dos_sde(lambda x, t: den(x.double(), t).to(dtype), xhat0.to(dtype), schedule, 3,
                         noise=noise.to(dtype), step_noises=[z.to(dtype) for z in zs])
    assert low.dtype == dtype
    assert torch.isfinite(low).all()
    assert (low.double() - ref).abs().max() < tol * ref.abs().max()


def test_order_names():
    assert parse_order(3) == (3, False) and parse_order("2") == (2, False)
    assert parse_order(CORRECTED_THIRD_ORDER) == (3, True)
    with pytest.raises(ValueError, match="order must be one of 1, 2, 3"):
        parse_order(4)
