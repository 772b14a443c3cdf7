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


def test_matrix_reads_hosts_and_their_pythons(tmp_path):
    from tests import matrix

    venv_python = tmp_path / ".venv-hosts" / "ComfyUI-new" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.touch()
    hosts = matrix.parse_hosts(os.pathsep.join(["/opt/ComfyUI-new", "/opt/Old=/usr/bin/python9",
                                                "/opt/Other", ""]), repo=tmp_path)
    assert [(h.tree, h.python) for h in hosts] == [
        ("/opt/ComfyUI-new", str(venv_python)),   # the repo's environment for that tree
        ("/opt/Old", "/usr/bin/python9"),          # named explicitly
        ("/opt/Other", sys.executable)]            # none: the running Python
    assert [(h.tree, h.python) for h in matrix.parse_hosts("")] == [(None, sys.executable)]


def test_matrix_counts_and_summary_name_each_host(tmp_path):
    from tests import matrix

    assert matrix.parse_counts("x\n== 3 failed, 400 passed, 2 skipped, 1 deselected in 9.1s ==\n") == {
        "failed": 3, "passed": 400, "skipped": 2, "deselected": 1}
    assert matrix.parse_counts("10 passed in 1.0s\n") == {"passed": 10}
    assert matrix.parse_counts("1 passed, 2 errors in 3s") == {"passed": 1, "errors": 2}
    old = tmp_path / "old"
    old.mkdir()
    (old / "comfyui_version.py").write_text('__version__ = "0.3.64"\n')
    results = [matrix.Result(matrix.Host(str(old), "py"), 0, {"passed": 400, "skipped": 2}),
               matrix.Result(matrix.Host("/nowhere", "py"), 1, {"passed": 390, "failed": 3}),
               matrix.Result(matrix.Host("/crashed", "py"), 2, {})]
    lines = matrix.summary(results)
    assert lines[2] == f"ComfyUI 0.3.64 at {old}: 400 passed, 0 failed, 2 skipped -> ok"
    assert lines[3] == "ComfyUI unknown at /nowhere: 390 passed, 3 failed -> FAILED (exit 1)"
    assert lines[4].endswith("-> FAILED (exit 2)")   # a run that ended without a count still fails
    assert lines[-1] == "matrix: 790 passed, 4 failed, 2 skipped"
