"""How much the DoS-SDE solver itself costs next to the network, and what loading costs in memory.

    python bench/sampler_overhead.py [--reps 200] [--skip-load]

1. Time of the solver's own arithmetic per step (latent 4x64x64, batch 1, the
   model replaced by a free identity) against one forward pass of the
   full-size ControlNet at that size (random weights), measured side by side.
2. Peak RSS while loading a full-size random-weight checkpoint: a released-style
   .ckpt (fp32 DoSSR parts + ~3.4 GB of SD-prefixed tensors, ~5 GB in all) and
   the converted fp16 .safetensors, each in a fresh process; both right after
   loading (weights are mapped, not yet read) and after reading every weight.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dossr_core.nets import LatentHintControlNet  # noqa: E402
from dossr_core.sampling import solve_dos  # noqa: E402
from dossr_core.schedule import DomainShiftSchedule  # noqa: E402


def solver_seconds_per_step(order, ode: bool, reps: int) -> float:
    schedule = DomainShiftSchedule.for_steps(5)
    xhat0 = torch.randn(1, 4, 64, 64)
    x = torch.randn(1, 4, 64, 64)
    identity = lambda x_t, t: x_t
    noises = [torch.randn_like(xhat0) for _ in range(5)]
    solve_dos(identity, x, xhat0, schedule, order, ode=ode, step_noises=noises)  # warm-up
    start = time.perf_counter()
    for _ in range(reps):
        solve_dos(identity, x, xhat0, schedule, order, ode=ode, step_noises=noises)
    return (time.perf_counter() - start) / (reps * schedule.steps)


def controlnet_seconds(runs: int = 3) -> float:
    torch.manual_seed(0)
    net = LatentHintControlNet().eval()
    x, hint = torch.randn(1, 4, 64, 64), torch.randn(1, 4, 64, 64)
    t, context = torch.tensor([399]), torch.randn(1, 77, 1024)
    times = []
    with torch.inference_mode():
        net(x, hint, t, context)
        for _ in range(runs):
            start = time.perf_counter()
            net(x, hint, t, context)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


LOAD_PROBE = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    from dossr_core.checkpoint import load_dossr
    from tests.memory import peak_rss_kb
    before = peak_rss_kb()
    start = time.perf_counter()
    model = load_dossr({path!r})
    seconds = time.perf_counter() - start
    loaded = peak_rss_kb()
    nets = [model.controlnet, model.hint_encoder, model.preprocessor]
    touched = sum(float(p.float().sum()) for net in nets for p in net.parameters())
    print(before, loaded, peak_rss_kb(), seconds)
""")


def load_peak(path: str):
    out = subprocess.check_output([sys.executable, "-c", LOAD_PROBE.format(repo=str(REPO), path=path)],
                                  text=True)
    before, loaded, used, seconds = out.split()[-4:]
    return int(before) / 1024, int(loaded) / 1024, int(used) / 1024, float(seconds)


def write_full_checkpoints(folder: str):
    from dossr_core.convert import convert
    from tests.fake_dossr import dossr_state_dict, write_ckpt
    ckpt = os.path.join(folder, "dossr_default.ckpt")
    tensors = dossr_state_dict("full", seed=0)
    dossr_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
    write_ckpt(ckpt, tensors, extras_bytes=int(3.4e9))
    del tensors
    st = os.path.join(folder, "dossr_fp16.safetensors")
    convert(ckpt, st, torch.float16)
    return dossr_bytes, ckpt, st


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    net = controlnet_seconds()
    print(f"full-size ControlNet forward, latent 1x4x64x64: {net * 1e3:.0f} ms (median of 3)")
    print(f"{'solver':<16}{'ms/step':>10}{'share of one ControlNet pass':>32}")
    for order in (1, 2, 3, "3-corrected"):
        for ode in (False, True):
            per_step = solver_seconds_per_step(order, ode, args.reps)
            label = f"{order} {'ode' if ode else 'sde'}"
            print(f"{label:<16}{per_step * 1e3:>10.3f}{per_step / net:>31.5%}")

    if args.skip_load:
        return
    with tempfile.TemporaryDirectory(dir=os.environ.get("DOSSR_BENCH_TMP")) as folder:
        dossr_bytes, ckpt, st = write_full_checkpoints(folder)
        print(f"\nDoSSR parts in fp32: {dossr_bytes / 1e9:.2f} GB")
        print("peak RSS growth over the bare process: right after loading, and after every "
              "weight has been read once")
        print(f"{'file':<28}{'size GB':>9}{'RSS before':>12}{'loaded':>9}{'used':>9}{'load s':>8}")
        for path in (ckpt, st):
            before, loaded, used, seconds = load_peak(path)
            print(f"{os.path.basename(path):<28}{os.path.getsize(path) / 1e9:>9.2f}"
                  f"{before:>10.0f}MB{loaded - before:>7.0f}MB{used - before:>7.0f}MB{seconds:>8.1f}")


if __name__ == "__main__":
    main()
