"""The one table of issue 15: every path, today's figure beside the machine's limit for it,
measured in the same run.

Each row is built by `row()`: a path's Sample (wall, CPU, peak RSS of the command), the
limits that bound it (seconds, by name: H, W, W', curl, the interpreter start), its goal
(a ratio to the largest limit, or seconds), the bytes it processed (for CPU seconds per GiB)
and the peak RSS of every other process it used (the agent, the server).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from common import Sample, table

GIB = 1 << 30
MIB = 1 << 20
#: Issue 15, deliverable 5: every process stays at or below this peak RSS.
RSS_GOAL_MIB = 64

#: What each limit is, for the notes under the table.
LIMITS = {
    "H": "`openssl dgst -sha256` of the SFUI (hashing)",
    "W": "`dd conv=notrunc,fsync bs=1M` of the SFUI into an existing file of the slot's size "
         "(writing a slot)",
    "W'": "`dd conv=fsync bs=1M` of the SFUI into a new file (writing a new file)",
    "curl": "`curl -o /dev/null` of the published SFUI from the same server (transfer)",
    "start": "`python -c pass` with the same interpreter (an interpreter start)",
}


@dataclass(frozen=True)
class Goal:
    """Issue 15's goal for a path: `ratio` x the largest limit (of the time without the fixed
    part, for a full update), or `seconds` of wall time."""

    ratio: float | None = None
    seconds: float | None = None

    def __str__(self) -> str:
        return f"<= {self.ratio:.2f}x" if self.ratio is not None else f"<= {self.seconds} s"


@dataclass(frozen=True)
class Row:
    path: str
    sample: Sample | None  # None: the path could not run here (`note` says why)
    limits: Mapping[str, float] = field(default_factory=dict)
    goal: Goal = Goal()
    size: int = 0  # bytes the path processes (0: a start-up)
    cpu: float = 0.0  # CPU seconds of every process (the command's own and the servers')
    rss_kib: Mapping[str, int] = field(default_factory=dict)  # process -> peak RSS
    fixed: float = 0.0  # seconds of the fixed part, for a full update
    note: str = ""

    @property
    def limit(self) -> float:
        return max(self.limits.values())

    @property
    def ratio(self) -> float:
        assert self.sample is not None
        return self.sample.wall / self.limit

    @property
    def ratio_without_fixed(self) -> float:
        assert self.sample is not None
        return (self.sample.wall - self.fixed) / self.limit

    @property
    def met(self) -> bool:
        """The goal, and the memory goal for every process."""
        assert self.sample is not None
        if self.goal.ratio is not None:
            speed = self.ratio_without_fixed <= self.goal.ratio
        else:
            speed = self.goal.seconds is not None and self.sample.wall <= self.goal.seconds
        return speed and all(kib <= RSS_GOAL_MIB * 1024 for kib in self.rss_kib.values())

    def cells(self) -> list[str]:
        if self.sample is None:
            return [self.path, "not run", "", "", str(self.goal), "", "", "", "", self.note]
        s = self.sample
        limits = ", ".join(f"{name} {seconds:.3f}" for name, seconds in self.limits.items())
        ratio = f"{self.ratio:.2f}"
        if self.fixed:
            ratio += f" ({self.ratio_without_fixed:.2f} without fixed)"
        per_gib = f"{self.cpu / (self.size / GIB):.2f}" if self.size else ""
        rss = ", ".join(f"{name} {kib / 1024:.0f}" for name, kib in self.rss_kib.items())
        return [self.path, f"{s.wall:.3f} ({s.fastest:.3f}-{s.slowest:.3f})",
                limits, ratio, str(self.goal),
                "yes" if self.met else "NO", f"{self.cpu:.2f}", per_gib, rss, self.note]


def row(path: str, sample: Sample | None, limits: Mapping[str, float], goal: Goal, *,
        size: int = 0, servers_cpu: float = 0.0, servers_rss: Mapping[str, int] | None = None,
        fixed: float = 0.0, note: str = "") -> Row:
    """A table row: `sample` is the measured command (its peak RSS is the "sfu" process's,
    its CPU is added to `servers_cpu`, the CPU the long-running processes spent per run)."""
    if sample is None:
        return Row(path, None, limits, goal, note=note)
    rss = {"sfu": sample.peak_rss_kib, **(servers_rss or {})}
    return Row(path, sample, dict(limits), goal, size, sample.cpu + servers_cpu, rss, fixed,
               note)


HEADERS = ["path", "today s (min-max)", "limits s (same run)", "ratio to the largest",
           "goal", "met",
           "CPU s", "CPU s/GiB", "peak RSS MiB", "note"]


def render(rows: list[Row]) -> str:
    return table(HEADERS, [r.cells() for r in rows])
