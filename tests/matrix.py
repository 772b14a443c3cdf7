"""Run the test suite once per ComfyUI host: the host matrix.

    COMFYUI_PATHS=/opt/ComfyUI:/opt/ComfyUI-0.33 python -m tests.matrix -q [pytest args]

Each entry of ``COMFYUI_PATHS`` (``os.pathsep``-separated) is a host tree, optionally
``TREE=PYTHON`` to name the Python environment that runs it (hosts of different ages pin
different front-end and library versions, so each may need its own). Without ``=PYTHON``
the tree's environment is ``.venv-hosts/<tree folder name>`` in this repository if it
exists, else the Python running this. Each host gets its own pytest run, with
``COMFYUI_PATH`` set to it, so every result comes from exactly one host; the runs' outcomes
are summed up per host at the end. With ``COMFYUI_PATHS`` unset this is one plain pytest
run (host tests follow ``COMFYUI_PATH``, or are skipped). Exit status: 0 only if every run
passed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
OUTCOMES = ("passed", "failed", "errors", "skipped", "deselected", "xfailed", "xpassed")
SUMMARY = re.compile(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)")


@dataclass
class Host:
    tree: str | None        # None: the run without COMFYUI_PATHS
    python: str

    @property
    def label(self) -> str:
        if self.tree is None:
            return "(no host list)"
        from tests.hostlib.server import host_version

        return f"ComfyUI {host_version(self.tree)} at {self.tree}"


@dataclass
class Result:
    host: Host
    returncode: int
    counts: dict = field(default_factory=dict)


def parse_hosts(value: str | None, repo: Path = REPO) -> list[Host]:
    """The hosts of a ``COMFYUI_PATHS`` value (empty or None: one run without a host list)."""
    entries = [e for e in (value or "").split(os.pathsep) if e.strip()]
    if not entries:
        return [Host(None, sys.executable)]
    hosts = []
    for entry in entries:
        tree, _, python = entry.partition("=")
        tree = tree.strip()
        if not python:
            venv = repo / ".venv-hosts" / Path(tree).name / "bin" / "python"
            python = str(venv) if venv.exists() else sys.executable
        hosts.append(Host(tree, python))
    return hosts


def parse_counts(output: str) -> dict:
    """Outcome counts from pytest's closing line (the last line that has any)."""
    for line in reversed(output.splitlines()):
        found = SUMMARY.findall(line)
        if found and (" in " in line or line.startswith("=")):
            counts = {}
            for n, word in found:
                counts["errors" if word.startswith("error") else word] = int(n)
            return counts
    return {}


def run_host(host: Host, args: list[str]) -> Result:
    """One pytest run for *host*, its output passed through as it comes."""
    env = dict(os.environ)
    env.pop("COMFYUI_PATHS", None)
    if host.tree is not None:
        env["COMFYUI_PATH"] = host.tree
    print(f"\n===== host: {host.label} (python: {host.python})", flush=True)
    proc = subprocess.Popen([host.python, "-m", "pytest", *args], cwd=str(REPO), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line)
    proc.wait()
    return Result(host, proc.returncode, parse_counts("".join(lines)))


def passed(result: Result) -> bool:
    """pytest's exit 5 (nothing collected) counts as a failure: a host run must test."""
    return result.returncode == 0


def summary(results: list[Result]) -> list[str]:
    """One line per host, then the total in the form CI reads (``N passed, N failed``)."""
    lines = ["", "===== host matrix"]
    total = dict.fromkeys(OUTCOMES, 0)
    for r in results:
        shown = ", ".join(f"{r.counts.get(k, 0)} {k}" for k in ("passed", "failed", "errors", "skipped")
                          if k in ("passed", "failed") or r.counts.get(k))
        verdict = "ok" if passed(r) else f"FAILED (exit {r.returncode})"
        lines.append(f"{r.host.label}: {shown} -> {verdict}")
        for k in OUTCOMES:
            total[k] += r.counts.get(k, 0)
    failed = total["failed"] + total["errors"] + sum(1 for r in results if not passed(r) and
                                                      not r.counts.get("failed") and not r.counts.get("errors"))
    lines.append(f"matrix: {total['passed']} passed, {failed} failed, {total['skipped']} skipped")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    hosts = parse_hosts(os.environ.get("COMFYUI_PATHS"))
    if len(hosts) == 1 and hosts[0].tree is None:
        return subprocess.call([sys.executable, "-m", "pytest", *args], cwd=str(REPO))
    results = [run_host(h, args) for h in hosts]
    print("\n".join(summary(results)), flush=True)
    return 0 if all(passed(r) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
