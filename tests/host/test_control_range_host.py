"""DoSSR Apply ControlNet's start/end percent on the real host: 0..1 runs over the DoSSR steps.

The composed graph (DoSSR Apply ControlNet + DoSSR Sigmas + DoSSR SDE Sampler in
SamplerCustomAdvanced) at 5 steps evaluates the UNet at timesteps 499, 399, 299, 200, 100,
i.e. at 0, 0.2, 0.4, 0.6 and 0.8 of the way through. The probe node DoSSRTestCountUNet
records, per UNet call, whether the ControlNet's residuals reached it.
"""

from __future__ import annotations

import uuid

import pytest

from tests.host.dossr_prompts import dossr_prompt
from tests.hostlib.server import ComfyClient, read_unet_calls, write_png

GRID = [499.0, 399.0, 299.0, 200.0, 100.0]
DOSSR_CONTROL = {"input": 0, "middle": 1, "output": 12}
SUBFOLDER = "control_range_host"


@pytest.fixture
def image(comfy_server) -> str:
    path = comfy_server.base_dir / "input" / SUBFOLDER / "lr_20x14.png"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_png(path, 20, 14, seed=7)
    return f"{SUBFOLDER}/{path.name}"


def ranged_prompt(image: str, start: float, end: float, log) -> dict:
    prompt = dossr_prompt(image, steps=5, seed=9, composed=True, count_log=log,
                          prefix=f"{SUBFOLDER}/{start:g}_{end:g}_{uuid.uuid4().hex[:8]}")
    prompt["apply"]["inputs"].update(start_percent=start, end_percent=end)
    return prompt


@pytest.mark.parametrize("start, end, controlled", [
    (0.0, 1.0, GRID),                   # the default: every step
    (0.5, 1.0, [200.0, 100.0]),         # the second half only
    (0.0, 0.5, [499.0, 399.0, 299.0]),  # the first half only (the host's scale: every step)
    (0.2, 0.2, [399.0]),                # one step
])
def test_percent_range_runs_over_the_dossr_steps(comfy_server, image, tmp_path, start, end, controlled):
    log = tmp_path / f"unet_{uuid.uuid4().hex[:8]}.jsonl"
    comfy_server.run(ranged_prompt(image, start, end, log), timeout=300)
    calls = read_unet_calls(log)
    assert [c["timestep"] for c in calls] == GRID, calls
    got = [c["timestep"] for c in calls if c["control"] == DOSSR_CONTROL]
    assert got == controlled, calls
    assert all(c["control"] in (None, DOSSR_CONTROL) for c in calls), calls


def test_start_after_end_is_refused(comfy_server, image, tmp_path):
    entry = comfy_server.run(ranged_prompt(image, 0.8, 0.2, tmp_path / "unet.jsonl"), timeout=300,
                             check=False)
    err = ComfyClient.execution_error(entry)
    assert err is not None and err["node_type"] == "DoSSRApplyControlNet", entry.get("status")
    message = err["exception_message"]
    assert "start_percent (0.8) is after end_percent (0.2)" in message, message
    assert "Traceback" not in message
