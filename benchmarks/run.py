"""`make bench`: every path of issue 15 in one table, printed and written to
benchmarks/RESULTS.md.

    SFU_BENCH_MIB=256 SFU_BENCH_RUNS=3 python benchmarks/run.py [--peers] [-o FILE]

SFU_BENCH_MIB: the firmware's size (default 256; the issue asks 1024 and 4096);
SFU_BENCH_RUNS: runs per measure, the median is reported (default 3). `--peers` appends the
peers side by side (bench_peers.py, at the same size). Each row's limits are measured in the
same run on the same files (benchmarks/world.py); the rows come from the bench_*.py modules,
each through the one row builder (benchmarks/paths.py).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import ssl
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_delivery
import bench_install
import bench_peers
import bench_sign_verify
import bench_startup
from common import Sample, table
from paths import GIB, LIMITS, RSS_GOAL_MIB, Goal, Row, render, row

from world import world

HERE = Path(__file__).resolve().parent
MIB = 1 << 20
#: The table's rows, in the issue's order.
MODULES = (bench_sign_verify, bench_install, bench_delivery, bench_startup)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"{name} must be a positive integer, not {value!r}")
    return int(value)


def _first(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def _command(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, check=False, capture_output=True, text=True, cwd=HERE)
    except OSError:
        return "?"
    return result.stdout.strip() or "?"


def _loads() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_rows() -> list[list[str]]:
    mem_kib = _first("/proc/meminfo", "MemTotal").split()[0]
    ram = f"{int(mem_kib) / 1024 / 1024:.1f} GiB" if mem_kib.isdigit() else "?"
    changed = [line for line in _command(["git", "status", "--porcelain"]).splitlines()
               if line != "?" and not line.endswith("RESULTS.md")]
    dirty = " (uncommitted changes)" if changed else ""
    return [
        ["CPU", _first("/proc/cpuinfo", "model name")],
        ["cores", f"{os.cpu_count()} ({len(os.sched_getaffinity(0))} usable by this process)"],
        ["RAM", ram],
        ["OS", f"{platform.system()} {platform.release()} {platform.machine()}"],
        ["Python", f"{platform.python_version()} ({sys.executable})"],
        ["OpenSSL CLI (H)", _command(["openssl", "version"])],
        ["OpenSSL in Python's hashlib (sfu's SHA-256)", ssl.OPENSSL_VERSION],
        ["load average at start (1/5/15 min)", _loads()],
        ["sfupdate commit", _command(["git", "rev-parse", "--short", "HEAD"]) + dirty],
    ]


def measure_rows(size: int, runs: int) -> tuple[list[Row], dict[str, Sample], bool]:
    """Every row, the limits' measures, and whether all rows could be measured (a module
    that fails gives a row saying so, and the others still run)."""
    rows: list[Row] = []
    ok = True
    with world(size, runs) as w:
        references = w.references
        for module in MODULES:
            name = module.__name__
            print(f"== {name}", file=sys.stderr, flush=True)
            try:
                rows += module.rows(w)
            except Exception as exc:
                ok = False
                print(traceback.format_exc(), file=sys.stderr)
                error = f"FAILED: {type(exc).__name__}: {exc}".replace("\n", " ")
                rows.append(row(name, None, {}, Goal(), note=error.replace("|", "/")))
    return rows, references, ok


def report(rows: list[Row], references: dict[str, Sample], size: int, runs: int,
           started: datetime.datetime, machine: list[list[str]], seconds: float,
           peers: str | None) -> str:
    per_gib = {name: f", {sample.cpu / (size / GIB):.2f} CPU s/GiB" if name != "start" else ""
               for name, sample in references.items()}
    limits = "\n".join(f"- **{name}** = {references[name].wall:.3f} s{per_gib[name]}: {what}"
                       for name, what in LIMITS.items() if name in references)
    limits += "\n- **curl**: " + LIMITS["curl"] + " (in its row)"
    parts = [
        "# Benchmark results\n",
        f"Written by `make bench` (benchmarks/run.py) on {started:%Y-%m-%d %H:%M} UTC, "
        f"{size // MIB} MiB firmware (SFU_BENCH_MIB), median of {runs} runs "
        f"(SFU_BENCH_RUNS), {seconds:.0f} s in all. See docs/benchmarks.md for how to read "
        "it.\n",
        "## Every path of issue 15\n",
        render(rows), "",
        "ratio = today's median wall time / the largest of its limits, all measured in this "
        "run on the same files (a full update's goal applies to its time without the fixed "
        "part, which has its own row). met = the goal, and every process at or below "
        f"{RSS_GOAL_MIB} MiB peak RSS. CPU s = user + system seconds of the command and of "
        "the processes it used (the agent, the server), per run; CPU s/GiB divides it by the "
        "firmware's size. peak RSS: `sfu` is the command; the agent and the servers' peaks "
        "are their high-water marks during the row's runs.\n",
        "The limits:\n", limits, "",
        "On a machine shared with other work the figures are noisy: the spread (min-max) "
        "and the load average below say how much. Ratios hold better than seconds.\n",
        "## Machine\n", table(["", ""], [*machine, ["load average at end", _loads()]]), "",
    ]
    if peers is not None:
        parts += ["## Peers side by side\n", peers.strip(), ""]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", action="store_true",
                        help="also run the peers side by side (bench_peers.py)")
    parser.add_argument("-o", "--output", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    size, runs = _env_int("SFU_BENCH_MIB", 256) * MIB, _env_int("SFU_BENCH_RUNS", 3)

    started, start = datetime.datetime.now(datetime.UTC), time.perf_counter()
    machine = machine_rows()
    rows, references, ok = measure_rows(size, runs)
    peers = None
    if args.peers:
        print("== bench_peers", file=sys.stderr, flush=True)
        peers = bench_peers.run(size // MIB, runs)
    print(render(rows))
    args.output.write_text(report(rows, references, size, runs, started, machine,
                                  time.perf_counter() - start, peers))
    print(f"wrote {args.output}", file=sys.stderr)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
