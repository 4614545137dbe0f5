"""Helpers shared by the benchmarks: timing commands, peak RSS, generated files, tables.

Every figure is a ratio to a reference measured in the same run on the same file, never an
absolute time checked against a threshold.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# VmHWM, not getrusage's ru_maxrss: Python starts children with vfork, and ru_maxrss keeps the
# parent's high-water mark across exec, so it would report the benchmark's own peak.
MEASURED_SFU = """
import sys
from sfupdate.cli.main import main
code = main(sys.argv[1:])
with open("/proc/self/status") as status:
    hwm = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
print("maxrss_kib", hwm, file=sys.stderr)
sys.exit(code)
"""


def make_random_file(path: Path, size: int) -> None:
    """Incompressible content, written in 1 MiB chunks."""
    chunk = 1024 * 1024
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n


def time_command(argv: Sequence[str], runs: int = 3) -> float:
    """Median wall time of argv over runs (output discarded)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sfu_measured(args: Sequence[str | Path]) -> list[str]:
    """argv that runs `sfu ARGS` and reports its own peak RSS on stderr (see peak_rss_kib)."""
    return [sys.executable, "-c", MEASURED_SFU, *map(str, args)]


def peak_rss_kib(stderr: str) -> int:
    """The peak RSS an `sfu_measured` run reported."""
    return int(stderr.split("maxrss_kib")[-1].split()[0])


def time_sfu(args: Sequence[str | Path], runs: int = 3) -> tuple[float, int]:
    """Median wall time of `sfu ARGS` and the largest peak RSS (KiB) seen."""
    times, peaks = [], []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(sfu_measured(args), check=False, capture_output=True,
                                text=True)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise RuntimeError(f"sfu {' '.join(map(str, args))} failed: "
                               f"{result.stderr.strip()}")
        peaks.append(peak_rss_kib(result.stderr))
    return statistics.median(times), max(peaks)


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
