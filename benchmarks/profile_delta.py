"""Where a delta apply's time goes, on the real pairs of bench_delta.py and each patch profile.

Each patch is applied twice in this process. Once step by step on one thread, each step of the
decoder timed on its own: the decompression of each kind of section (ctrl, diff, extra), the
decoding of the records, the base reads (`_base_bytes`), the bytewise addition (`add_bytes`),
the interleaving of added and literal bytes, then SHA-256 of the image and its write and
fsync. Then as the agent applies it (the read-ahead and helper threads, hashing on a thread,
write, fsync): wall time, the main thread's CPU time and the CPU time of all threads. Medians
of --runs. Used for docs/benchmarks.md ("Delta patches"); timing runs belong under
`flock /work/quiet.lock`.

    .venv/bin/python benchmarks/profile_delta.py [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_delta import DEBIAN_PAIRS, apply_main, fetch_debian
from common import table

from sfupdate.authoring.author.delta import PROFILES, make_patch
from sfupdate.formats.delta import patch as decoder
from sfupdate.secure.board.slotio import SlotImageReader

STEPS = ["ctrl", "diff", "extra", "records", "base reads", "add", "interleave", "sha256",
         "write+fsync"]


class Timers:
    """Seconds per step, summed over one apply."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def timed(self, step: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timing(*args: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args)
            finally:
                self.seconds[step] += time.perf_counter() - start
        return timing


def stepwise(old: Path, patch: bytes, size: int, out: Path) -> dict[str, float]:
    """One apply on this thread, each step timed (the decoder's functions wrapped)."""
    timers = Timers()
    decode = decoder._Sections.decode

    def section(piece: decoder._Section, length: int) -> bytearray:
        result: bytearray = timers.timed(piece.what, decode)(piece, length)
        return result

    saved = (decoder._Sections.decode, decoder._base_bytes, decoder.add_bytes,
             decoder._interleaved, decoder.BESIDE)
    decoder._Sections.decode = staticmethod(section)  # type: ignore[method-assign,assignment]
    decoder._base_bytes = timers.timed("base reads", decoder._base_bytes)
    decoder.add_bytes = timers.timed("add", decoder.add_bytes)
    interleave = decoder._interleaved
    decoder._interleaved = timers.timed(  # type: ignore[assignment]
        "interleave", lambda *args: iter(list(interleave(*args))))
    decoder.BESIDE = 1 << 62  # type: ignore[misc]  # no helper thread: one step at a time
    try:
        pieces: list[bytes] = []
        with SlotImageReader(os.open(old, os.O_RDONLY), old.stat().st_size, "base") as base:
            start = time.perf_counter()
            blocks = list(decoder._blocks(iter([patch]), size))
            read = time.perf_counter() - start
            cursor = 0
            for block in blocks:
                assembled, cursor = decoder._assemble(block, base, cursor)
                pieces += assembled
    finally:
        (decoder._Sections.decode, decoder._base_bytes, decoder.add_bytes,  # type: ignore
         decoder._interleaved, decoder.BESIDE) = saved
    seconds = timers.seconds
    seconds["records"] = read - seconds["ctrl"] - seconds["diff"] - seconds["extra"]
    image = b"".join(pieces)
    start = time.perf_counter()
    hashlib.sha256(image).digest()
    seconds["sha256"] = time.perf_counter() - start
    start = time.perf_counter()
    with open(out, "wb") as f:
        f.write(image)
        f.flush()
        os.fsync(f.fileno())
    seconds["write+fsync"] = time.perf_counter() - start
    seconds["records count"] = sum(len(block.xs) for block in blocks)
    return dict(seconds)


def as_agent(old: Path, patch: Path, size: int, out: Path) -> tuple[float, float, float]:
    """Wall, main-thread CPU and all-threads CPU seconds of bench_delta's applying code."""
    os.environ["SFD_SIZE"] = str(size)
    wall, main, every = time.perf_counter(), time.thread_time(), time.process_time()
    with open(os.devnull, "w") as quiet:
        stdout, sys.stdout = sys.stdout, quiet
        try:
            apply_main(old, patch, out)
        finally:
            sys.stdout = stdout
    return (time.perf_counter() - wall, time.thread_time() - main,
            time.process_time() - every)


def rows(label: str, old: Path, new: Path, work: Path, runs: int) -> Iterator[list[str]]:
    size = new.stat().st_size
    for name, profile in PROFILES.items():
        patch = make_patch(old.read_bytes(), new.read_bytes(), profile)
        patch_file = work / f"{name}.sfd2"
        patch_file.write_bytes(patch)
        steps = [stepwise(old, patch, size, work / "out") for _ in range(runs)]
        agent = [as_agent(old, patch_file, size, work / "out") for _ in range(runs)]
        if (work / "out").read_bytes() != new.read_bytes():
            raise SystemExit(f"{label} {name}: a different image was rebuilt")
        ms = {step: statistics.median(s[step] for s in steps) * 1000 for step in STEPS}
        wall, main, every = (statistics.median(a[i] for a in agent) * 1000 for i in range(3))
        yield [label, name, f"{len(patch):,}", f"{steps[0]['records count']:,.0f}",
               *(f"{ms[step]:.1f}" for step in STEPS), f"{sum(ms.values()):.1f}",
               f"{wall:.1f} ({size / wall / 1000:.0f} MB/s)", f"{main:.1f}", f"{every:.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    found: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, *spec in DEBIAN_PAIRS:
            pair = fetch_debian(label, *spec)
            if isinstance(pair, str):
                raise SystemExit(pair)
            found += rows(label.split()[0], *pair, Path(tmp), runs)
    headers = ["pair", "profile", "patch bytes", "records", *(f"{s} ms" for s in STEPS),
               "one thread ms", "as the agent ms", "main thread CPU ms", "all threads CPU ms"]
    print(table(headers, found))


if __name__ == "__main__":
    main()
