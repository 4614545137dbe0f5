"""Run every benchmarks/bench_*.py and write one report (benchmarks/RESULTS.md by default).

    python benchmarks/run.py [--size-mib 256] [--large-size-mib 1024] [--runs 3]
                             [--only NAME ...] [-o benchmarks/RESULTS.md]

A benchmark is a module `bench_NAME.py` in this directory that defines
`run(size_mib: int, runs: int) -> str` (markdown; either parameter may be left out) or, failing
that, a `main()` that parses `--size-mib N` and prints markdown. The benchmarks named in
LARGE (sign/verify, install) get --large-size-mib, the others --size-mib. A benchmark that
raises is reported as a FAILED row with the error, and the others still run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import inspect
import io
import os
import platform
import ssl
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table

HERE = Path(__file__).resolve().parent
LARGE = frozenset({"sign_verify", "install"})


def discover() -> list[str]:
    return sorted(path.stem.removeprefix("bench_") for path in HERE.glob("bench_*.py"))


def call(name: str, size_mib: int, runs: int) -> str:
    """Import bench_NAME and return its markdown, through run() or else main()."""
    module = importlib.import_module(f"bench_{name}")
    bench_run = getattr(module, "run", None)
    if callable(bench_run):
        params = inspect.signature(bench_run).parameters
        offered = {"size_mib": size_mib, "runs": runs}
        result = bench_run(**{key: value for key, value in offered.items() if key in params})
        if not isinstance(result, str):
            raise TypeError(f"run() returned {type(result).__name__}, not markdown text")
        return result
    bench_main: Callable[[], object] | None = getattr(module, "main", None)
    if callable(bench_main):
        saved, sys.argv = sys.argv, [f"bench_{name}.py", "--size-mib", str(size_mib)]
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                bench_main()
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise RuntimeError(f"main() exited with {exc.code}") from exc
        finally:
            sys.argv = saved
        return out.getvalue()
    raise RuntimeError("defines neither run() nor main()")


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


def machine_rows() -> list[list[str]]:
    mem_kib = _first("/proc/meminfo", "MemTotal").split()[0]
    ram = f"{int(mem_kib) / 1024 / 1024:.1f} GiB" if mem_kib.isdigit() else "?"
    try:
        from cryptography.hazmat.backends.openssl import backend
        crypto_ssl = f"{backend.openssl_version_text()} (cryptography: sfu's signatures)"
    except ImportError:
        crypto_ssl = "? (cryptography not importable)"
    changed = [line for line in _command(["git", "status", "--porcelain"]).splitlines()
               if line != "?" and not line.endswith("RESULTS.md")]
    dirty = " (uncommitted changes)" if changed else ""
    return [
        ["CPU", _first("/proc/cpuinfo", "model name")],
        ["cores", f"{os.cpu_count()} ({len(os.sched_getaffinity(0))} usable by this process)"],
        ["RAM", ram],
        ["OS", f"{platform.system()} {platform.release()} {platform.machine()}"],
        ["Python", f"{platform.python_version()} ({sys.executable})"],
        ["OpenSSL CLI (the reference)", _command(["openssl", "version"])],
        ["OpenSSL in Python's hashlib (sfu's SHA-256)", ssl.OPENSSL_VERSION],
        ["OpenSSL in cryptography", crypto_ssl],
        ["load average at start (1/5/15 min)", " / ".join(f"{x:.2f}" for x in os.getloadavg())],
        ["sfupdate commit", _command(["git", "rev-parse", "--short", "HEAD"]) + dirty],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=256,
                        help="file size for most benchmarks (default 256)")
    parser.add_argument("--large-size-mib", type=int, default=1024,
                        help=f"file size for {', '.join(sorted(LARGE))} (default 1024)")
    parser.add_argument("--runs", type=int, default=3, help="runs per timed operation")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=discover(),
                        help="run only these benchmarks (default: all)")
    parser.add_argument("-o", "--output", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()

    started = datetime.datetime.now(datetime.UTC)
    machine = machine_rows()
    summary, sections = [], []
    for name in args.only or discover():
        size = args.large_size_mib if name in LARGE else args.size_mib
        print(f"== bench_{name} ({size} MiB, {args.runs} runs)", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            sections.append(call(name, size, args.runs).strip())
            status = "ok"
        except Exception as exc:
            status = f"FAILED: {type(exc).__name__}: {exc}".replace("\n", " ").replace("|", "/")
            sections.append(f"### bench_{name}: FAILED\n\n```\n{traceback.format_exc()}```")
            print(traceback.format_exc(), file=sys.stderr)
        summary.append([f"bench_{name}", size, status, f"{time.perf_counter() - start:.0f}"])

    loads = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    report = [
        "# Benchmark results\n",
        f"Written by `make bench` (benchmarks/run.py) on {started:%Y-%m-%d %H:%M} UTC. "
        "Every figure is a ratio to a reference measured in the same run on the same file; "
        "absolute seconds are shown only to make the ratios checkable. "
        "See docs/benchmarks.md for how to read them.\n",
        "## Machine\n", table(["", ""], [*machine, ["load average at end", loads]]), "",
        "## Benchmarks run\n",
        table(["benchmark", "size MiB", "status", "wall s"], summary), "",
        *[section + "\n" for section in sections],
    ]
    args.output.write_text("\n".join(report))
    print(f"wrote {args.output}", file=sys.stderr)
    if any(row[2] != "ok" for row in summary):
        sys.exit(1)


if __name__ == "__main__":
    main()
