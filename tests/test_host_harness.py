"""The host-test harness itself (tests/hostlib), checked without a host."""

import os
import subprocess
import sys

def test_host_stub_packages_import_and_refuse_calls(tmp_path):
    """The stand-ins import the names the hosts use at start-up, and say what they are
    when something is actually called."""
    from tests.hostlib import server as hs

    folder = hs.stub_path(("torchaudio", "torchvision"))
    probe = (
        "import torchaudio, torchaudio.functional as AF, torchvision\n"
        "from torchaudio.transforms import MelScale\n"
        "from torchvision.transforms.functional import InterpolationMode\n"
        "for call in (lambda: AF.resample(0, 1, 2), lambda: MelScale(n_mels=4),\n"
        "             lambda: torchvision.models.efficientnet_v2_s()):\n"
        "    try:\n"
        "        call()\n"
        "    except NotImplementedError as e:\n"
        "        print('refused:', e)\n"
        "try:\n"
        "    torchaudio.load\n"
        "except AttributeError as e:\n"
        "    print('missing:', e)\n")
    r = subprocess.run([sys.executable, "-c", probe], cwd=str(tmp_path), capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(folder)})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["refused"] * 3 + ["missing"]
    assert "torchaudio.functional.resample() is not available" in lines[0]
    assert "torchaudio.transforms.MelScale() is not available" in lines[1]
    assert all("import-only stand-in" in ln for ln in lines)
