"""Helpers shared by the benchmarks: measuring commands (one way: `run_measured`, and
`vm_hwm_kib` for a server that keeps running), generated files, tables.

Every figure is a ratio to a reference measured in the same run on the same file, never an
absolute time checked against a threshold.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


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


# --- the one way to measure a command: wall time, CPU time, peak RSS --------------------------

GNU_TIME = "/usr/bin/time"
HAVE_GNU_TIME = os.access(GNU_TIME, os.X_OK)


class CommandFailed(Exception):
    """A measured command exited non-zero; the message is the tail of its stderr."""


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds; a median when several runs were taken, as are the other figures
    cpu: float  # user + system seconds of the command and the children it reaped
    peak_rss_kib: int  # the largest process of its tree (the largest seen over runs)
    fastest: float = 0.0
    slowest: float = 0.0
    retried: int = 0  # runs that failed and were run again


def run_measured(argv: Sequence[str], env: Mapping[str, str] | None = None,
                 cwd: Path | None = None, check: bool = True) -> tuple[int, Sample, str]:
    """Run argv once: (exit code, its Sample, its stdout).

    CPU comes from os.wait4, which counts the children the command reaped (rauc runs
    mksquashfs, mkimage runs dtc). Peak RSS comes from GNU time, which forks the command from
    its own small process: Python starts children with vfork, and ru_maxrss keeps the
    parent's high-water mark across exec, so wait4 alone would report this benchmark's own
    peak as a floor (without /usr/bin/time, that floor is what is reported)."""
    with tempfile.NamedTemporaryFile() as out, tempfile.NamedTemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as rss:
        wrapped = [GNU_TIME, "-f", "%M", "-o", rss.name, *argv] if HAVE_GNU_TIME else argv
        start = time.perf_counter()
        proc = subprocess.Popen(wrapped, cwd=cwd, env=None if env is None else dict(env),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if check and code != 0:
            err.seek(0)
            lines = err.read().decode(errors="replace").strip().splitlines()
            tail = ([line for line in lines if "error" in line.lower()] or lines)[-2:]
            raise CommandFailed(f"rc {code}: {' / '.join(tail) or '(no output)'}")
        peak = int(rss.read().split()[-1]) if HAVE_GNU_TIME else usage.ru_maxrss
        out.seek(0)
        stdout = out.read().decode(errors="replace")
    return code, Sample(wall, usage.ru_utime + usage.ru_stime, peak), stdout


def sfu_argv(args: Sequence[str | Path]) -> list[str]:
    """argv of `sfu ARGS` as installed (this interpreter, the CLI's entry module)."""
    return [sys.executable, "-m", "sfupdate.cli.main", *map(str, args)]


def time_sfu(args: Sequence[str | Path], runs: int = 3) -> Sample:
    """`sfu ARGS` over `runs`: median wall and CPU time, the largest peak RSS."""
    samples = [run_measured(sfu_argv(args))[1] for _ in range(runs)]
    return summarise(samples)


def summarise(samples: Sequence[Sample], retried: int = 0) -> Sample:
    walls = [s.wall for s in samples]
    return Sample(statistics.median(walls), statistics.median(s.cpu for s in samples),
                  max(s.peak_rss_kib for s in samples), min(walls), max(walls), retried)


def vm_hwm_kib(pid: int) -> int:
    """The peak RSS of a running process (a server: the agent): /proc's VmHWM."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def bench_main(run: Callable[[int, int], str], doc: str | None, default_mib: int) -> None:
    """The command line of a benchmark module: `--size-mib N --runs N`, then its markdown."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=default_mib)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(run(args.size_mib, args.runs))
