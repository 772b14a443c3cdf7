"""Smoke check of bench/gpu.py on this CPU (``--device cpu --small``): every row runs and is
printed. Run as on the GPU machine, whose Python lacks several of the host's requirements:
those are made unimportable, and PyAV and torchsde come from bench/stand_ins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench import gpu

REPO = Path(__file__).resolve().parents[2]
# The host's requirements that the GPU machine's Python does not have (torch, torchvision,
# torchaudio, safetensors, transformers, einops, aiohttp, pyyaml, scipy, tqdm, psutil are there).
ABSENT = ("sentencepiece", "kornia", "spandrel", "alembic", "sqlalchemy", "pydantic",
          "pydantic_settings", "comfyui_frontend_package", "comfyui_workflow_templates",
          "comfyui_embedded_docs")
STAND_IN = ("av", "torchsde")
DTYPES = ("bf16",)           # the half-precision path; fp32 is what every other CPU test runs

RUNNER = f"""
import importlib.abc, importlib.machinery, runpy, sys
for name in {ABSENT!r}:
    sys.modules[name] = None                       # import fails, find_spec says absent
class StandIns(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in {STAND_IN!r}:
            return importlib.machinery.PathFinder.find_spec(name, [{str(gpu.STAND_INS)!r}])
sys.meta_path.insert(0, StandIns())
sys.argv = ["bench/gpu.py", *sys.argv[1:]]
runpy.run_path("bench/gpu.py", run_name="__main__")
"""


def test_gpu_bench_runs_every_row_on_the_cpu(comfyui_path, sd2_mini_ckpt, dossr_mini_ckpt, tmp_path):
    out = tmp_path / "gpu.json"
    r = subprocess.run([sys.executable, "-c", RUNNER, "--comfyui", str(comfyui_path), "--device", "cpu",
                        "--small", "--runs", "1", "--dtypes", ",".join(DTYPES),
                        "--sd-checkpoint", str(sd2_mini_ckpt), "--dossr-checkpoint",
                        str(dossr_mini_ckpt), "--json", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": ""})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    table = r.stdout.split("medians after one warm-up", 1)[1]
    for case in gpu.cases(DTYPES, small=True):
        assert case.label in table, case.label
    assert "published" in table
    assert out.exists()
