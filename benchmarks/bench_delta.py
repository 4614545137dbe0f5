"""Benchmark: delta patches (SFD2, issue 13) beside bsdiff4, xdelta3, `zstd --patch-from` and
detools, on the same pairs in the same run.

For each pair (successive Debian releases of ELF files, fetched with `apt-get download` into
benchmarks/work/delta/, and a synthetic pair): the patch size as a fraction of the new image
and against the best peer, and applying it — wall time, peak RSS of the applying process (GNU
time), throughput, and the ratio of that time to `openssl dgst -sha256` of the new image.
sfu applies as the agent does (`formats.delta.apply_patch`, the base read with positioned
reads, every output byte hashed and written); its in-process throughput (without the
interpreter's start) is given too. A last row applies a generated SFD2 patch of a large image
(--size-mib) to show that the memory stays flat whatever the image size.

    .venv/bin/python benchmarks/bench_delta.py --size-mib 256
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CommandFailed, bench_main, measure, run_measured, table

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "delta"
#: detools runs as `python -m detools` from its venv: a venv copied elsewhere keeps working (its
#: console scripts name their interpreter by absolute path).
DETOOLS = HERE / "work" / "detoolsvenv" / "bin" / "python"
BIN = Path(sys.executable).parent
MIB = 1 << 20
#: (label, package, old version, new version, file inside the package)
DEBIAN_PAIRS = [
    ("libcrypto.so.3 (libssl3 3.0.20 -> 3.0.22)", "libssl3", "3.0.20-1~deb12u2",
     "3.0.22-1~deb12u2", "usr/lib/x86_64-linux-gnu/libcrypto.so.3"),
    ("python3.11 (3.11.2-6+deb12u8 -> u9)", "python3.11-minimal", "3.11.2-6+deb12u8",
     "3.11.2-6+deb12u9", "usr/bin/python3.11"),
]
SYNTHETIC_MIB = 16


@dataclass(frozen=True)
class Tool:
    name: str
    make: Callable[[Path, Path, Path], list[str] | None]  # argv, or None: done in process
    apply: Callable[[Path, Path, Path], list[str]]


def _sfu_make(profile: str) -> Callable[[Path, Path, Path], list[str] | None]:
    def make(old: Path, new: Path, patch: Path) -> list[str] | None:
        from sfupdate.authoring.author import delta
        patch.write_bytes(delta.make_patch(old.read_bytes(), new.read_bytes(),
                                           delta.PROFILES[profile]))
        return None  # made in this process
    return make


def _sfu_apply(old: Path, patch: Path, out: Path) -> list[str]:
    return [sys.executable, __file__, "apply", str(old), str(patch), str(out)]


TOOLS = [
    Tool("sfu SFD2 (smallest: LZMA2)", _sfu_make("smallest"), _sfu_apply),
    Tool("sfu SFD2 (balanced: LZMA2, default)", _sfu_make("balanced"), _sfu_apply),
    Tool("sfu SFD2 (fast: zstd)", _sfu_make("fast"), _sfu_apply),
    Tool("bsdiff4 1.x", lambda o, n, p: [str(BIN / "bsdiff4"), str(o), str(n), str(p)],
         lambda o, p, out: [str(BIN / "bspatch4"), str(o), str(out), str(p)]),
    Tool("xdelta3 -9 -S djw", lambda o, n, p: ["xdelta3", "-9", "-S", "djw", "-e", "-f", "-s",
                                               str(o), str(n), str(p)],
         lambda o, p, out: ["xdelta3", "-d", "-f", "-s", str(o), str(p), str(out)]),
    Tool("zstd -19 --patch-from", lambda o, n, p: ["zstd", "-q", "-f", "-19", "--long=27",
                                                   f"--patch-from={o}", str(n), "-o", str(p)],
         lambda o, p, out: ["zstd", "-q", "-f", "-d", "--long=27", f"--patch-from={o}",
                            str(p), "-o", str(out)]),
    Tool("detools (sequential, lzma)",
         lambda o, n, p: [str(DETOOLS), "-m", "detools", "create_patch", str(o), str(n), str(p)],
         lambda o, p, out: [str(DETOOLS), "-m", "detools", "apply_patch", str(o), str(p),
                            str(out)]),
]


def apply_main(old: Path, patch: Path, out: Path) -> None:
    """The applying process sfu is measured by: the agent's decoder, a pread base, every
    byte hashed (on a second thread, as the envelope reader does) and written."""
    from sfupdate.formats.delta import apply_patch
    from sfupdate.formats.sfui.hashing import BackgroundHash
    from sfupdate.secure.board.slotio import SlotImageReader

    start = time.perf_counter()
    size = int(os.environ.get("SFD_SIZE", "0"))

    def chunks() -> Iterator[bytes]:
        with open(patch, "rb") as f:
            while chunk := f.read(MIB):
                yield chunk

    with SlotImageReader(os.open(old, os.O_RDONLY), old.stat().st_size, "base") as base, \
            open(out, "wb") as dst, BackgroundHash() as hasher:
        for block in apply_patch(chunks(), base, size):
            hasher.update(block)
            dst.write(block)
        dst.flush()
        os.fsync(dst.fileno())
        digest = hasher.digest().hex()
    print(f"{time.perf_counter() - start:.6f} {digest}")


def fetch_debian(label: str, package: str, old_v: str, new_v: str,
                 member: str) -> tuple[Path, Path] | str:
    """The file `member` of two versions of a Debian package (apt-get download), cached."""
    pair = []
    for version in (old_v, new_v):
        target = WORK / f"{package}_{version}" / member
        if not target.exists():
            deb_dir = WORK / "debs"
            deb_dir.mkdir(parents=True, exist_ok=True)
            got = subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=deb_dir,
                                 capture_output=True, text=True)
            debs = list(deb_dir.glob(f"{package}_{version.replace(':', '%3a')}_*.deb"))
            if got.returncode or not debs:
                return f"apt-get download {package}={version} failed: {got.stderr.strip()[-200:]}"
            subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(WORK / f"{package}_{version}")],
                           check=True)
        pair.append(target)
    return pair[0], pair[1]


def synthetic(directory: Path, size: int, seed: int = 13) -> tuple[Path, Path]:
    """A base of random blocks and a new image that moves, edits and inserts pieces of it."""
    rng = random.Random(seed)
    blocks = [rng.randbytes(64 * 1024) for _ in range(64)]
    old = b"".join(rng.choice(blocks) for _ in range(size // (64 * 1024)))
    new = bytearray(old[size // 4:] + old[:size // 4])
    for _ in range(400):
        at = rng.randrange(len(new))
        new[at:at + rng.randrange(0, 4096)] = rng.randbytes(rng.randrange(1, 4096))
        word = rng.randrange(len(new) - 4)
        new[word] = (new[word] + 4) & 0xFF
    (directory / "synthetic.old").write_bytes(old)
    (directory / "synthetic.new").write_bytes(bytes(new))
    return directory / "synthetic.old", directory / "synthetic.new"


def large_patch(directory: Path, size_mib: int) -> tuple[Path, Path, int]:
    """A base of `size_mib` MiB and an SFD2 patch (made without matching: known records) that
    copies it with small differences and inserts, for the flat-memory row."""
    from sfupdate.authoring.author.delta import encode_block, patch_bytes
    from sfupdate.formats.delta.patch import BLOCK, CODEC_ZSTD

    rng = random.Random(5)
    chunk = rng.randbytes(MIB)
    base = directory / "large.old"
    with base.open("wb") as f:
        for _ in range(size_mib):
            f.write(chunk)
    copy, insert = BLOCK - 4096, 4096
    diff = bytearray(copy)
    for at in range(0, copy, 997):
        diff[at] = 4
    blocks = []
    produced = 0
    for offset in range(0, size_mib * MIB - copy, copy):
        blocks.append(encode_block([(copy, insert, 0 if offset == 0 else -insert)],
                                   bytes(diff), rng.randbytes(insert), (CODEC_ZSTD,)))
        produced += copy + insert
    patch = directory / "large.sfd2"
    patch.write_bytes(patch_bytes(blocks))
    return base, patch, produced


def measure_apply(tool: Tool, old: Path, patch: Path, new: Path, out: Path,
                  runs: int) -> tuple[float, int, float | None]:
    """Median wall, largest peak RSS (KiB), and sfu's in-process seconds (else None)."""
    walls, peaks, inner = [], [], []
    env = {**os.environ, "SFD_SIZE": str(new.stat().st_size)}
    for _ in range(runs):
        out.unlink(missing_ok=True)
        _, sample, stdout = run_measured(tool.apply(old, patch, out), env=env)
        walls.append(sample.wall)
        peaks.append(sample.peak_rss_kib)
        if tool.apply is _sfu_apply:
            inner.append(float(stdout.split()[0]))
    if out.read_bytes() != new.read_bytes():
        raise CommandFailed(f"{tool.name} rebuilt a different image")
    walls.sort()
    return walls[len(walls) // 2], max(peaks), (sorted(inner)[len(inner) // 2] if inner
                                                 else None)


def pair_rows(label: str, old: Path, new: Path, work: Path, runs: int) -> list[list[str]]:
    size = new.stat().st_size
    reference = measure(["openssl", "dgst", "-sha256", str(new)], runs).wall
    results: list[tuple[Tool, int | None, str, float, float, int, float | None]] = []
    for tool in TOOLS:
        patch = work / f"{tool.name.split()[0]}-{len(results)}.patch"
        try:
            start = time.perf_counter()
            argv = tool.make(old, new, patch)
            if argv is not None:
                subprocess.run(argv, check=True, capture_output=True)
            made = time.perf_counter() - start
            wall, peak, inner = measure_apply(tool, old, patch, new, work / "out", runs)
        except (OSError, subprocess.CalledProcessError, CommandFailed) as exc:
            results.append((tool, None, str(exc)[:80], 0.0, 0.0, 0, None))
            continue
        results.append((tool, patch.stat().st_size, "", made, wall, peak, inner))
    peers = [r[1] for r in results if r[1] is not None and not r[0].name.startswith("sfu")]
    best = min(peers) if peers else None
    rows = []
    for tool, length, error, made, wall, peak, inner in results:
        if length is None:
            rows.append([label, tool.name, f"unavailable: {error}", "", "", "", "", "", ""])
            continue
        throughput = f"{size / wall / 1e6:.0f}"
        if inner:
            throughput += f" ({size / inner / 1e6:.0f} in process)"
        rows.append([label, tool.name, f"{length:,}", f"{length / size:.4f}",
                     f"{length / best:.2f}" if best else "?", f"{made:.1f} s",
                     f"{peak / 1024:.0f} MiB", throughput,
                     f"{wall / reference:.1f}" + (f" ({inner / reference:.1f})" if inner
                                                  else "")])
    return rows


def run(size_mib: int = 256, runs: int = 3) -> str:
    WORK.mkdir(parents=True, exist_ok=True)
    rows: list[list[str]] = []
    notes = []
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        work = Path(tmp)
        for label, *spec in DEBIAN_PAIRS:
            pair = fetch_debian(label, *spec)
            if isinstance(pair, str):
                notes.append(f"- {label}: skipped ({pair})")
                continue
            rows += pair_rows(label, *pair, work, runs)
        mib = min(size_mib, SYNTHETIC_MIB)
        old, new = synthetic(work, mib * MIB)
        rows += pair_rows(f"synthetic {mib} MiB (moved, edited, inserted)", old, new, work,
                          runs)
        base, patch, produced = large_patch(work, size_mib)
        (work / "large.new").unlink(missing_ok=True)
        env = {**os.environ, "SFD_SIZE": str(produced)}
        reference_file = work / "large.ref"
        shutil.copyfile(base, reference_file)
        reference = measure(["openssl", "dgst", "-sha256", str(reference_file)], runs).wall
        _, sample, stdout = run_measured(_sfu_apply(base, patch, work / "large.out"), env=env)
        inner = float(stdout.split()[0])
        large = [[f"generated {size_mib} MiB (flat memory)", "sfu SFD2 (fast: zstd)",
                  f"{patch.stat().st_size:,}", f"{patch.stat().st_size / produced:.4f}", "",
                  "", f"{sample.peak_rss_kib / 1024:.0f} MiB",
                  f"{produced / sample.wall / 1e6:.0f} ({produced / inner / 1e6:.0f} in "
                  "process)", f"{sample.wall / reference:.1f} ({inner / reference:.1f})"]]
    headers = ["pair", "tool", "patch bytes", "of new image", "vs best peer", "make",
               "apply peak RSS", "apply MB/s", "apply / openssl sha256"]
    return "\n".join([
        "### Delta patches (issue 13)", "",
        table(headers, rows + large), "",
        "`vs best peer`: patch size over the smallest peer patch of that pair (goal <= 0.90). "
        "`apply / openssl sha256`: apply time over `openssl dgst -sha256` of the new image "
        "(the hashing limit); in parentheses sfu's time inside the process, without the "
        "interpreter's start. Peak RSS by GNU time (the whole process).", *notes, ""])


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "apply":
        apply_main(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
        return
    bench_main(run, __doc__, 256)


if __name__ == "__main__":
    main()
