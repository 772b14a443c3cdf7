"""Per-image results of a batch, the summary printed at the end and the JSON report."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

DONE, SKIPPED, FAILED, CANCELLED = "done", "skipped", "failed", "cancelled"


@dataclass
class Result:
    """What happened to one input: *status* is done, skipped, failed or cancelled."""
    input: str
    output: str
    status: str
    server: str | None = None
    seconds: float | None = None
    error: str | None = None
    tries: int = 0
    extra_outputs: list = field(default_factory=list)


def counts(results) -> dict:
    out = {DONE: 0, SKIPPED: 0, FAILED: 0, CANCELLED: 0}
    for r in results:
        out[r.status] += 1
    return out


def exit_status(results) -> int:
    """0 when every image is done or was already done, 1 when any failed or was cancelled."""
    c = counts(results)
    return 1 if c[FAILED] or c[CANCELLED] else 0


def summary(results) -> str:
    """The lines printed at the end: totals, then each failed image with its reason."""
    c = counts(results)
    head = f"{c[DONE]} done, {c[SKIPPED]} skipped (already done), {c[FAILED]} failed"
    if c[CANCELLED]:
        head += f", {c[CANCELLED]} cancelled"
    lines = [head + f" of {len(results)} images"]
    for r in results:
        if r.status == FAILED:
            reason = (r.error or "unknown error").strip().replace("\n", "\n    ")
            lines.append(f"  failed: {r.input}: {reason}")
    return "\n".join(lines)


def write_json(path, results, write) -> None:
    """The JSON report (a list of results plus the totals), written with *write(path, bytes)*
    so that it is never seen half written."""
    data = {"counts": counts(results), "images": [asdict(r) for r in results]}
    write(Path(path), (json.dumps(data, indent=2) + "\n").encode("utf-8"))
