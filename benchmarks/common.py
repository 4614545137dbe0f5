"""Helpers shared by the benchmarks: measuring commands (one way: `run_measured` and
`measure`, and `Server` for a process that keeps running), generated files, tables.

Every figure is a ratio to a reference measured in the same run on the same file, never an
absolute time checked against a threshold.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
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


def measure(argv: Sequence[str], runs: int, before: Callable[[], None] | None = None,
            check_output: Callable[[str], None] | None = None, expect: int = 0) -> Sample:
    """`argv` over `runs` (each after `before`, if given): median wall and CPU time, the
    largest peak RSS. A run must exit with `expect`; `check_output` may refuse its stdout."""
    samples = []
    for _ in range(runs):
        if before is not None:
            before()
        code, sample, stdout = run_measured(argv, check=expect == 0)
        if code != expect:
            raise CommandFailed(f"{' '.join(argv[:5])}...: exit {code}, expected {expect}")
        if check_output is not None:
            check_output(stdout)
        samples.append(sample)
    return summarise(samples)


def summarise(samples: Sequence[Sample], retried: int = 0) -> Sample:
    walls = [s.wall for s in samples]
    return Sample(statistics.median(walls), statistics.median(s.cpu for s in samples),
                  max(s.peak_rss_kib for s in samples), min(walls), max(walls), retried)


class Server:
    """A process that keeps running (the agent, `sfu serve`): its peak RSS and CPU time over
    a stretch of work, read from /proc, since it is never reaped between runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def peak_rss_kib(self) -> int:
        """VmHWM: the high-water mark since the start, or since `reset_peak`."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmHWM in /proc/{self.pid}/status")

    def reset_peak(self) -> None:
        """Start a new high-water mark at the current RSS (clear_refs 5; Linux 4.0+), so that
        each measured row reports its own peak."""
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def cpu_seconds(self) -> float:
        """User + system time so far (fields 14 and 15 of /proc/PID/stat)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Watched:
    """What long-running processes spent over a stretch of `runs` runs: CPU seconds per run
    (all of them together) and each one's peak RSS (filled in when the stretch ends)."""

    cpu_per_run: float = 0.0
    rss_kib: dict[str, int] = field(default_factory=dict)


@contextlib.contextmanager
def watching(servers: Mapping[str, Server], runs: int) -> Iterator[Watched]:
    """Watch `servers` (by name) while the block runs `runs` measured commands."""
    for server in servers.values():
        server.reset_peak()
    start = {name: server.cpu_seconds() for name, server in servers.items()}
    watched = Watched()
    yield watched
    watched.cpu_per_run = sum(server.cpu_seconds() - start[name]
                              for name, server in servers.items()) / max(runs, 1)
    watched.rss_kib = {name: server.peak_rss_kib() for name, server in servers.items()}


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
