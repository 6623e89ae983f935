"""Sampling profiles of running processes with py-spy (`pip install py-spy`; not a project
dependency): `--profile` records the web workers during an extra B1 run and summarises
where their CPU time goes (samples holding the GIL, so waits on PostgreSQL or Redis do not
count; `--profile-wall` counts them too)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

PY_SPY = shutil.which("py-spy")
_LOCATION = re.compile(r" \(.*?/(?:site-packages|lib/python3\.\d+|main)/")


def available() -> bool:
    return PY_SPY is not None


def record(
    pids: list[int], seconds: float, out_dir: Path, label: str, gil: bool = True
) -> list[subprocess.Popen[bytes]]:
    """Start py-spy on each pid for `seconds`; wait on the returned processes."""
    if PY_SPY is None:
        raise RuntimeError("py-spy is not installed: pip install py-spy")
    out_dir.mkdir(parents=True, exist_ok=True)
    spies = []
    for pid in pids:
        argv = [PY_SPY, "record", "--pid", str(pid), "-d", str(round(seconds)), "-r", "200", "-f", "raw"]
        argv += ["-o", str(out_dir / f"{label}-{pid}.txt"), "--nonblocking"]
        if gil:
            argv.append("--gil")
        spies.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return spies


def summarize(files: list[Path], top: int = 25) -> dict[str, Any]:
    """Inclusive and self shares per frame ("function (file:line)"), largest first."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = [_LOCATION.sub(" (", frame) for frame in stack.split(";")]
            for frame in set(frames):
                inclusive[frame] += n
            own[frames[-1]] += n

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(frame, round(100 * n / max(1, total), 1)) for frame, n in counter.most_common(top)]

    # Skip gunicorn's outer frames, present in every sample.
    interesting = Counter({f: n for f, n in inclusive.items() if n < 0.9 * total})
    return {"samples": total, "inclusive_percent": share(interesting), "self_percent": share(own)}
